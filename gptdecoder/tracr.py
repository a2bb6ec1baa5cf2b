"""Compiled programs as ground truth: a Tracr model, converted into this project's GPT.

Tracr (Lindner et al. 2023, DeepMind) compiles a RASP program into transformer weights in
which every head and MLP has a known job. Converted here, such a model is an ordinary
run directory: the lab, the viewer and ``explain`` open it, and the compiler's own graph
says which edges the circuit finder should find. Optional: ``pip install -e ".[tracr]"``
(tracr-pypi, with jax and dm-haiku); nothing else in the project imports this module.

What a compiled model is, in our terms (``GPTConfig``): no normalisation (``norm: none``),
ReLU MLPs with their own hidden size (``mlp_hidden``), heads whose size is not d_model /
n_head (``head_size``), learned token and position embeddings, a separate LM head. The
first token is always BOS (every head may fall back on it). Tracr builds causal models
when asked (``causal=True``: the weights are the same, only a mask is added); ours are
always causal, so programs are compiled that way, and the output at position t is the
program run on the tokens up to t (for every shipped program but ``sort``, whose ranks are
computed at each token from the tokens before it: compiled causally, it no longer sorts).

The read-out: Tracr reads the answer from a subspace of the residual stream. Our LM head
gives one logit per output value, after the input tokens (``CompiledVocab``):

* categorical programs: logit(v) = the residual's coordinate for value v (Tracr's argmax);
* numerical programs (e.g. ``frac_prevs``): the output is one coordinate, x. Each value
  v the program can produce gets logit(v) = 2 v x - v^2, which is -(x - v)^2 up to a term
  that is the same for every v: the argmax is the nearest value, and the raw number is
  ``numerical_output`` (the residual coordinate itself).

Input tokens get logit -100 (read through Tracr's constant "one" coordinate), so the
argmax is always an output value.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from gptdecoder.errors import UserError
from gptdecoder.model import GPT, GPTConfig

BOS, PAD = "BOS", "compiler_pad"
INPUT_LOGIT = -100.0  # what an input token scores in the LM head: never the argmax
ANSWER_PREFIX = "="  # output symbols are spelled "=a", "=0.5": apart from the input tokens


def _require_tracr() -> None:
    try:
        import tracr  # noqa: F401
    except ImportError:
        raise UserError('compiled programs need Tracr: pip install -e ".[tracr]" (tracr-pypi, jax, dm-haiku)') from None


@dataclass(frozen=True)
class Program:
    """A library program: how to build it, its default vocabulary, and what it computes."""

    build: Callable[[int], Any]  # max_len -> the RASP program
    vocab: tuple
    about: str


def programs() -> dict[str, Program]:
    """The programs ``compile`` knows (Tracr's own library, tracr.compiler.lib)."""
    _require_tracr()
    from tracr.compiler import lib
    from tracr.rasp import rasp

    return {
        "frac_prevs": Program(lambda n: lib.make_frac_prevs(rasp.tokens == "x"), ("a", "b", "x"),
                              "the fraction of the tokens so far that are 'x' (numerical)"),
        "pair_balance": Program(lambda n: lib.make_pair_balance(rasp.tokens, "(", ")"), ("(", ")", "x"),
                                "the fraction of '(' minus the fraction of ')' so far (numerical)"),
        "shuffle_dyck": Program(lambda n: lib.make_shuffle_dyck(["()"]), ("(", ")", "x"),
                                "whether the brackets so far are balanced (categorical)"),
        "reverse": Program(lambda n: lib.make_reverse(rasp.tokens), ("a", "b", "c"),
                           "the tokens in reverse order (categorical)"),
        "sort": Program(lambda n: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=n, min_key=1), (1, 2, 3),
                        "sort, compiled causally (categorical): each token's rank counts only the tokens up to "
                        "it, so the output is not the sorted prefix"),
        "hist": Program(lambda n: lib.make_hist(), ("a", "b", "c"),
                        "how often each token occurs so far (categorical)"),
    }


@dataclass(frozen=True)
class CompiledVocab:
    """Our token ids: Tracr's input tokens (its own ids, BOS and pad included), then one
    token per output value. ``values`` are the output values in that order."""

    inputs: tuple  # index = Tracr's input id
    values: tuple  # output value j has our id len(inputs) + j
    numerical: bool

    @property
    def symbols(self) -> list[str]:
        return [str(t) for t in self.inputs] + [f"{ANSWER_PREFIX}{v}" for v in self.values]

    def input_ids(self, tokens: Sequence) -> list[int]:
        """[BOS, *tokens] as ids; ValueError naming a token outside the vocabulary."""
        unknown = [t for t in tokens if t not in self.inputs or t in (BOS, PAD)]
        if unknown:
            raise ValueError(f"token {unknown[0]!r} is not in the compiled vocabulary "
                             f"{[t for t in self.inputs if t not in (BOS, PAD)]}")
        return [self.inputs.index(BOS)] + [self.inputs.index(t) for t in tokens]

    def value_id(self, value) -> int:
        return len(self.inputs) + self.values.index(value)


@dataclass(frozen=True)
class Compiled:
    """A compiled program and what it takes to convert and check it."""

    name: str
    vocab: tuple  # the program's input tokens
    max_len: int
    assembled: Any  # tracr's AssembledTransformerModel (causal)
    graph: Any  # the compiler's networkx graph of RASP expressions
    craft_model: Any
    sink: Any  # the output expression's node
    program: Any  # the RASP program


def compile_program(name: str, vocab: Optional[Sequence] = None, max_len: int = 5) -> Compiled:
    """Compile library program ``name`` for ``vocab`` (default: the program's own) and
    sequences of up to ``max_len`` tokens, causally, keeping the compiler's graph."""
    _require_tracr()
    from tracr.compiler import (basis_inference, craft_graph_to_model, craft_model_to_transformer,
                                expr_to_craft_graph, rasp_to_graph)
    from tracr.craft import bases
    from tracr.rasp import rasp

    known = programs()
    if name not in known:
        raise UserError(f"unknown program {name!r}: expected one of {', '.join(known)}")
    if not isinstance(max_len, int) or not 3 <= max_len <= 16:
        raise UserError(f"--max-len {max_len!r}: expected 3..16 (explain's probes need 4 positions with BOS)")
    vocab = tuple(vocab) if vocab else known[name].vocab
    if BOS in vocab or PAD in vocab:
        raise UserError(f"--vocab {list(vocab)}: {BOS!r} and {PAD!r} are the compiler's own tokens")
    program = known[name].build(max_len)
    try:  # the passes of tracr's compile_rasp_to_model, one by one, so that the graph is kept
        extracted = rasp_to_graph.extract_rasp_graph(program)
        graph, sources, sink = extracted.graph, extracted.sources, extracted.sink
        basis_inference.infer_bases(graph, sink, set(vocab), max_len)
        expr_to_craft_graph.add_craft_components_to_rasp_graph(
            graph, bos_dir=bases.BasisDirection(rasp.tokens.label, BOS), mlp_exactness=100)
        craft_model = craft_graph_to_model.craft_graph_to_model(graph, sources)
        assembled = craft_model_to_transformer.craft_model_to_transformer(
            craft_model=craft_model, graph=graph, sink=sink, max_seq_len=max_len, causal=True,
            compiler_bos=BOS, compiler_pad=PAD)
    except Exception as e:  # e.g. letters for a program that compares numbers
        message = " ".join(str(e).split())[:200]
        raise UserError(f"Tracr cannot compile {name} for vocab {list(vocab)}: {type(e).__name__}: {message}") from None
    import jax

    assembled.forward = jax.jit(assembled.forward)  # the same computation, compiled once per length: faster apply
    return Compiled(name, vocab, max_len, assembled, graph, craft_model, sink, program)


# -- conversion ------------------------------------------------------------------------------


def categorical_values(compiled: Compiled) -> Optional[tuple]:
    """The values a categorical program can output, in Tracr's output order; None for a
    numerical program (whose values ``to_gpt`` finds by running every input)."""
    encoding = getattr(compiled.assembled.output_encoder, "encoding_map", None)
    return tuple(sorted(encoding, key=encoding.get)) if encoding else None


def readout(compiled: Compiled) -> np.ndarray:
    """(D, n_outputs): the residual coordinates Tracr reads the answer from (one column
    per value for a categorical program, one column for a numerical one)."""
    labels = list(compiled.assembled.residual_labels)
    label = compiled.program.label
    values = categorical_values(compiled)
    if values is None:  # numerical: one coordinate
        matrix = np.zeros((len(labels), 1), np.float32)
        matrix[labels.index(label), 0] = 1.0
        return matrix
    matrix = np.zeros((len(labels), len(values)), np.float32)
    for j, value in enumerate(values):
        matrix[labels.index(f"{label}:{value}"), j] = 1.0
    return matrix


def to_gpt(compiled: Compiled) -> tuple[GPT, CompiledVocab]:
    """The compiled model as our GPT (same numbers: ``check_equal`` compares them)."""
    params = {k: {kk: torch.tensor(np.asarray(vv)) for kk, vv in v.items()} for k, v in compiled.assembled.params.items()}
    encoding = compiled.assembled.input_encoder.encoding_map
    inputs = tuple(sorted(encoding, key=encoding.get))
    values = categorical_values(compiled)
    numerical = values is None
    if numerical:  # the values it takes on the inputs (Tracr's own value set is not always complete)
        values = _numerical_values(compiled, _converted(compiled, params, len(inputs)))
    vocab = CompiledVocab(inputs, values, numerical)
    model = _converted(compiled, params, len(vocab.symbols))
    config, d_model = model.config, model.config.d_model
    U = torch.tensor(readout(compiled))  # (D, n_out)
    one = list(compiled.assembled.residual_labels).index("one")
    with torch.no_grad():
        head = torch.zeros(config.vocab_size, d_model)
        head[: len(inputs), one] = INPUT_LOGIT
        for j, value in enumerate(values):
            if numerical:  # 2 v x - v^2: the nearest value wins
                head[len(inputs) + j] = 2 * float(value) * U[:, 0]
                head[len(inputs) + j, one] -= float(value) ** 2
            else:
                head[len(inputs) + j] = U[:, j]
        model.lm_head.weight.copy_(head)
    return model.eval(), vocab


def _copy_weights(model: GPT, params: dict, n_inputs: int) -> None:
    """Tracr's embeddings, attention and MLP weights into ``model`` (its LM head is left alone)."""
    with torch.no_grad():
        model.wte.weight.zero_()
        model.wte.weight[:n_inputs] = params["token_embed"]["embeddings"]  # output tokens are never read
        model.wpe.weight.copy_(params["pos_embed"]["embeddings"])
        for i, block in enumerate(model.blocks):
            attn, mlp = f"transformer/layer_{i}/attn", f"transformer/layer_{i}/mlp"
            # haiku's Linear computes x @ w + b with w (in, out); torch's weight is (out, in)
            block.attn.c_attn.weight.copy_(torch.cat([params[f"{attn}/{p}"]["w"].T for p in ("query", "key", "value")]))
            block.attn.c_attn.bias.copy_(torch.cat([params[f"{attn}/{p}"]["b"] for p in ("query", "key", "value")]))
            block.attn.c_proj.weight.copy_(params[f"{attn}/linear"]["w"].T)
            block.attn.c_proj.bias.copy_(params[f"{attn}/linear"]["b"])
            block.mlp.c_fc.weight.copy_(params[f"{mlp}/linear_1"]["w"].T)
            block.mlp.c_fc.bias.copy_(params[f"{mlp}/linear_1"]["b"])
            block.mlp.c_proj.weight.copy_(params[f"{mlp}/linear_2"]["w"].T)
            block.mlp.c_proj.bias.copy_(params[f"{mlp}/linear_2"]["b"])


def _converted(compiled: Compiled, params: dict, vocab_size: int) -> GPT:
    """Our GPT with Tracr's embeddings, attention and MLPs (``params``: its weights as
    tensors) and ``vocab_size`` rows of LM head, left at zero for the caller to fill."""
    model_config = compiled.assembled.model_config
    token_embed, pos_embed = params["token_embed"]["embeddings"], params["pos_embed"]["embeddings"]
    config = GPTConfig(vocab_size=vocab_size, block_size=pos_embed.size(0), n_layer=model_config.num_layers,
                       n_head=model_config.num_heads, d_model=token_embed.size(1), head_size=model_config.key_size,
                       mlp_hidden=params["transformer/layer_0/mlp/linear_1"]["w"].size(1), norm="none",
                       activation="relu", tie_weights=False, bias=True)
    model = GPT(config)
    _copy_weights(model, params, token_embed.size(0))
    with torch.no_grad():
        model.lm_head.weight.zero_()
    return model.eval()


@torch.no_grad()
def _numerical_values(compiled: Compiled, model: GPT) -> tuple:
    """The distinct values (to 6 decimals) a numerical program outputs on every input;
    UserError when there are too many inputs to run them all (a value missed would be
    read as its neighbour)."""
    total = sum(len(compiled.vocab) ** n for n in range(1, compiled.max_len + 1))
    if total > MAX_INPUTS:
        raise UserError(f"{compiled.name} is numerical: its values are found by running every input, and "
                        f"{total:,} inputs are more than {MAX_INPUTS:,}; use a shorter --max-len or a smaller --vocab")
    encoding = compiled.assembled.input_encoder.encoding_map
    column = torch.tensor(readout(compiled))[:, 0]  # (D,)
    last = f"blocks.{model.config.n_layer - 1}.hook_resid_post"
    found = set()
    by_length: dict[int, list] = {}
    for tokens in all_inputs(compiled.vocab, compiled.max_len):
        by_length.setdefault(len(tokens), []).append([encoding[BOS]] + [encoding[t] for t in tokens])
    for rows in by_length.values():
        _, cache = model.run_with_cache(torch.tensor(rows), names_filter=last)
        found.update(round(float(v), 6) for v in (cache[last][:, 1:] @ column).flatten())
    return tuple(sorted(found))


def decode(model: GPT, vocab: CompiledVocab, tokens: Sequence) -> list:
    """The program's output at every position after BOS, as Tracr's ``apply`` decodes it:
    values (categorical), or the raw numbers (numerical)."""
    idx = torch.tensor([vocab.input_ids(tokens)])
    with torch.no_grad():
        if vocab.numerical:
            return numerical_output(model, vocab, idx)[0, 1:].tolist()
        logits, _ = model(idx)
    return [vocab.values[int(i) - len(vocab.inputs)] for i in logits[0, 1:].argmax(-1)]


def numerical_output(model: GPT, vocab: CompiledVocab, idx: torch.Tensor) -> torch.Tensor:
    """(B, T): a numerical program's raw output, read back from the value logits (they are
    2 v x - v^2 for each value v, so two of them give x)."""
    logits, _ = model(idx)
    first = len(vocab.inputs)
    if len(vocab.values) == 1:
        v = float(vocab.values[0])
        return (logits[..., first] + v * v) / (2 * v) if v else torch.zeros_like(logits[..., first])
    lo, hi = 0, len(vocab.values) - 1  # the two extreme values: the widest gap, the least rounding
    v0, v1 = float(vocab.values[lo]), float(vocab.values[hi])
    return (logits[..., first + hi] - logits[..., first + lo] + v1 * v1 - v0 * v0) / (2 * (v1 - v0))


def tracr_output(compiled: Compiled, tokens: Sequence) -> list:
    """Tracr's own answer at every position after BOS (``AssembledTransformerModel.apply``)."""
    return list(compiled.assembled.apply([BOS, *tokens]).decoded[1:])


MAX_INPUTS = 2000  # inputs checked one by one; beyond, a random sample of this many


def all_inputs(vocab: Sequence, max_len: int, limit: int = MAX_INPUTS, seed: int = 0) -> list[tuple]:
    """Every input up to ``max_len`` tokens, or ``limit`` random ones when there are more."""
    total = sum(len(vocab) ** n for n in range(1, max_len + 1))
    if total <= limit:
        return [seq for n in range(1, max_len + 1) for seq in itertools.product(vocab, repeat=n)]
    rng = np.random.default_rng(seed)
    return [tuple(vocab[i] for i in rng.integers(0, len(vocab), rng.integers(1, max_len + 1))) for _ in range(limit)]


# -- the compiler's graph: which block reads which --------------------------------------------


def block_names(compiled: Compiled) -> dict[str, list[str]]:
    """RASP expression label -> the blocks the compiler placed it in, in our names:
    ["L1H0"] for an aggregate, ["MLP0"] for a map, ["L0H0", "MLP0"] for a selector width
    (a head, then the MLP that turns its output into a number)."""
    from tracr.compiler import assemble, nodes
    from tracr.craft import transformers

    _, module_names = assemble._get_model_config_and_module_names(compiled.craft_model)
    heads: dict[int, str] = {}
    mlp_outputs: list[tuple[str, set]] = []
    for module_name, block in zip(module_names, compiled.craft_model.blocks):
        layer = int(module_name.split("layer_")[1].split("/")[0])
        if isinstance(block, transformers.MLP):
            mlp_outputs.append((f"MLP{layer}", set(block.snd.output_space.basis)))
        else:
            for h, head in enumerate(block.as_multi().heads()):
                heads[id(head)] = f"L{layer}H{h}"

    def place(block) -> list[str]:
        if isinstance(block, transformers.AttentionHead):
            return [heads[id(block)]]
        if isinstance(block, transformers.MultiAttentionHead):
            return [heads[id(h)] for h in block.heads()]
        if isinstance(block, transformers.MLP):  # MLPs of one layer are merged: found by what they write
            written = set(block.snd.output_space.basis)
            return [name for name, basis in mlp_outputs if written and written <= basis][:1]
        if isinstance(block, transformers.SeriesWithResiduals):
            return [name for part in block.blocks for name in place(part)]
        raise TypeError(f"unexpected compiled block {type(block).__name__}")

    return {label: place(data[nodes.MODEL_BLOCK]) for label, data in compiled.graph.nodes.items()
            if data.get(nodes.MODEL_BLOCK) is not None}


def compiled_edges(compiled: Compiled) -> list[tuple[str, str]]:
    """The compiler's circuit as edges of our graph (gptdecoder.lab.circuit_graph): which block's
    output each head reads through its query, key and value inputs and each MLP reads,
    and which block writes the answer. ``tokens`` is our ``embed``, ``indices`` our ``pos``."""
    from tracr.compiler import nodes
    from tracr.rasp import rasp

    placed = block_names(compiled)

    def writer(expr) -> str:
        if expr.label == rasp.tokens.label:
            return "embed"
        if expr.label == rasp.indices.label:
            return "pos"
        return placed[expr.label][-1]  # a selector width's number is written by its MLP

    edges = set()
    for label, data in compiled.graph.nodes.items():
        if label not in placed:
            continue
        expr = data[nodes.EXPR]
        if isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
            head = placed[label][0]
            edges.add((writer(expr.selector.queries), f"{head}.q"))
            edges.add((writer(expr.selector.keys), f"{head}.k"))
            if isinstance(expr, rasp.Aggregate):
                edges.add((writer(expr.sop), f"{head}.v"))
            else:
                edges.add((head, placed[label][1]))  # the width head feeds its own MLP
        else:  # Map, SequenceMap, LinearSequenceMap: an MLP reading its children
            for child in expr.children:
                edges.add((writer(child), placed[label][0]))
    edges.add((writer(compiled.program), "logits"))
    return sorted(edges)


def head_jobs(compiled: Compiled) -> dict[str, str]:
    """Our block name -> what the compiler placed there, e.g. {"L1H0": "frac_prevs (aggregate)"}."""
    from tracr.compiler import nodes

    jobs: dict[str, list[str]] = {}
    for label, blocks in block_names(compiled).items():
        kind = type(compiled.graph.nodes[label][nodes.EXPR]).__name__
        words = {"Aggregate": "aggregate", "SelectorWidth": "selector width", "Map": "map",
                 "SequenceMap": "sequence map", "LinearSequenceMap": "linear sequence map"}.get(kind, kind)
        for block in blocks:
            jobs.setdefault(block, []).append(f"{label} ({words})")
    return {block: ", ".join(sorted(labels)) for block, labels in sorted(jobs.items())}


def compiled_info(compiled: Compiled, vocab: CompiledVocab) -> dict:
    """What a compiled run records beside its weights (compiled.json): plain values only."""
    return {
        "program": compiled.name, "about": programs()[compiled.name].about, "vocab": list(compiled.vocab),
        "max_len": compiled.max_len, "numerical": vocab.numerical, "inputs": [str(t) for t in vocab.inputs],
        "values": [v if isinstance(v, (int, float, str, bool)) else str(v) for v in vocab.values],
        "output": compiled.program.label, "blocks": head_jobs(compiled),
        "edges": [list(edge) for edge in compiled_edges(compiled)],
    }


def check_equal(compiled: Compiled, model: GPT, vocab: CompiledVocab, inputs: Sequence[tuple],
                tolerance: float = 1e-4) -> list[str]:
    """The inputs on which our model and Tracr's ``apply`` disagree (categorical: any
    different value; numerical: |difference| > tolerance), as readable lines; [] when equal."""
    problems = []
    for tokens in inputs:
        ours, theirs = decode(model, vocab, tokens), tracr_output(compiled, tokens)
        if vocab.numerical:
            same = all(abs(a - float(b)) <= tolerance for a, b in zip(ours, theirs))
        else:
            same = ours == theirs
        if not same:
            problems.append(f"{list(tokens)}: ours {ours}, Tracr's {theirs}")
    return problems


__all__ = ["BOS", "PAD", "Program", "programs", "CompiledVocab", "Compiled", "compile_program", "to_gpt", "decode",
           "numerical_output", "tracr_output", "all_inputs", "compiled_edges", "head_jobs", "compiled_info",
           "check_equal", "readout", "categorical_values", "block_names"]
