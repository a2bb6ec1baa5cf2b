"""Circuits: which edges of the model's computational graph carry a task.

The graph (Elhage et al. 2021's residual-stream view, as ACDC and EAP use it). Every
component *writes* into the residual stream, and every later component *reads* the sum
of what was written before it, so each (writer, reader) pair is an edge:

    senders    embed, pos (when positions are added), each head L{l}H{h}, each MLP{l}
    receivers  each head's query, key and value input (L{l}H{h}.q / .k / .v), each MLP{l},
               and the logits

A head of layer l reads every sender of layers < l; MLP l also reads layer l's heads; the
logits read everything. The receivers are separate tensors thanks to TransformerLens's
split hook points (``blocks.{i}.hook_q_input`` / ``k_input`` / ``v_input``,
``hook_mlp_in``) and the senders thanks to ``attn.hook_result`` (see gptdecoder/hooks.py).

What an edge *carries* is asked with a clean prompt and its corrupted twin (the same
length, a different answer; ``Task.corrupt``). The metric is the logit difference between
the clean and the corrupted answer tokens, averaged over the answer positions where they
differ (``metric="kl"``: minus the KL divergence from the clean run's predictions).
Patching an edge means: its receiver reads the sender's output from the corrupted run
instead of the current one. Then:

- ``edge_scores(method="eap")``: edge attribution patching (Syed et al. 2023), a linear
  estimate of every edge's patching effect from two forward passes and one backward pass:
  (corrupted output - clean output) . d metric / d receiver input.
- ``method="eap-ig"`` (Hanna et al. 2024): the same with the gradient averaged over
  inputs interpolated between the clean and the corrupted embeddings (integrated
  gradients): better where the metric is far from linear.
- ``method="exact"``: each edge patched alone, one forward pass per edge: the truth the
  estimates are checked against.
- ``find_circuit``: the smallest set of edges, found ACDC-style (Conmy et al. 2023), that
  keeps ``share`` of the clean-vs-corrupted metric when every other edge is patched;
  reported with its faithfulness (the share it really keeps) and its size.

A sender's total attribution (node attribution) is the sum of its edges' scores.
Everything here is a pure function of a model and pairs; nothing is printed or written.
"""
from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from gptdecoder.lab.ablation import HeldOut, encode_examples
from gptdecoder.model import GPT
from gptdecoder.tasks import Example, Task

METHODS = ("eap", "eap-ig", "exact")
METRICS = ("logit_diff", "kl")
DEFAULT_SHARE = 0.9  # the share of the metric a circuit must keep
IG_STEPS = 5  # interpolation points for EAP-IG, at the midpoints (k + 1/2) / steps of the path


# -- the graph -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Graph:
    """The nodes and allowed edges of a model: ``allowed[s, r]`` is True when sender s is
    written before receiver r reads (an edge). Names as in the module docstring."""

    n_layer: int
    n_head: int
    senders: tuple[str, ...]
    receivers: tuple[str, ...]
    allowed: torch.Tensor = field(compare=False)  # (S, R) bool (the names decide equality)

    @property
    def n_edges(self) -> int:
        return int(self.allowed.sum())

    def edges(self) -> list[tuple[str, str]]:
        """Every edge as (sender, receiver), in sender-major order."""
        return [(self.senders[s], self.receivers[r]) for s, r in self.allowed.nonzero().tolist()]

    def edge_index(self, sender: str, receiver: str) -> tuple[int, int]:
        if sender not in self.senders or receiver not in self.receivers:
            raise ValueError(f"no edge {sender} -> {receiver}: senders are {', '.join(self.senders)}; receivers are "
                             f"each head's .q/.k/.v, each MLP and logits")
        s, r = self.senders.index(sender), self.receivers.index(receiver)
        if not self.allowed[s, r]:
            raise ValueError(f"no edge {sender} -> {receiver}: the sender is not written before the receiver reads")
        return s, r

    def mask(self, edges: Sequence[tuple[str, str]]) -> torch.Tensor:
        """(S, R) bool: True on the given edges."""
        out = torch.zeros_like(self.allowed)
        for sender, receiver in edges:
            out[self.edge_index(sender, receiver)] = True
        return out

    def head_receivers(self, layer: int, kind: str) -> list[int]:
        """The receiver indices of layer ``layer``'s heads' ``kind`` ("q", "k" or "v") inputs, by head."""
        return [self.receivers.index(f"L{layer}H{h}.{kind}") for h in range(self.n_head)]


def sender_stage(name: str) -> int:
    """Where a sender writes: 0 for the inputs, 2l+1 for layer l's heads, 2l+2 for MLP l."""
    if name in ("embed", "pos"):
        return 0
    if name.startswith("MLP"):
        return 2 * int(name[3:]) + 2
    return 2 * int(name[1 : name.index("H")]) + 1


def receiver_stage(name: str, n_layer: int) -> int:
    """Where a receiver reads: 2l+1 for layer l's head inputs, 2l+2 for MLP l, then the logits."""
    if name == "logits":
        return 2 * n_layer + 1
    return sender_stage(name.split(".")[0])


def graph_of(model: GPT) -> Graph:
    """The graph of ``model`` (any GPT: the position input exists when positions are added)."""
    L, H = model.config.n_layer, model.config.n_head
    senders = ["embed"] + (["pos"] if "hook_pos_embed" in model.hook_dict else [])
    receivers: list[str] = []
    for layer in range(L):
        senders += [f"L{layer}H{h}" for h in range(H)] + [f"MLP{layer}"]
        receivers += [f"L{layer}H{h}.{kind}" for kind in "qkv" for h in range(H)] + [f"MLP{layer}"]
    receivers.append("logits")
    s_stage = torch.tensor([sender_stage(s) for s in senders])
    r_stage = torch.tensor([receiver_stage(r, L) for r in receivers])
    return Graph(L, H, tuple(senders), tuple(receivers), s_stage[:, None] < r_stage[None, :])


# -- clean / corrupted pairs and the metric ------------------------------------------------------


@dataclass(frozen=True)
class Pairs:
    """Clean prompts and their corrupted twins, teacher-forced as in training: row i of
    ``corrupted`` is the twin of row i of ``clean``, of the same length."""

    clean: HeldOut
    corrupted: HeldOut
    differs: torch.Tensor  # (N, T) bool: answer positions where the clean and corrupted targets differ
    description: str = ""  # what the corruption changes, in words

    def __len__(self) -> int:
        return self.clean.x.size(0)

    def to(self, device: torch.device) -> "Pairs":
        move = lambda h: HeldOut(*(None if t is None else t.to(device) for t in (h.x, h.y, h.mask, h.pos)))
        return Pairs(move(self.clean), move(self.corrupted), self.differs.to(device), self.description)


def pairs_from_examples(clean: Sequence[Example], corrupted: Sequence[Example], task: Optional[Task] = None,
                        description: str = "") -> Pairs:
    """Pairs from (prompt, answer) examples, row by row (``task`` gives coupled position ids)."""
    if len(clean) != len(corrupted) or not clean:
        raise ValueError(f"{len(clean)} clean and {len(corrupted)} corrupted examples: expected as many, at least one")
    for (p, a), (q, b) in zip(clean, corrupted):
        if len(p) != len(q) or len(a) != len(b):
            raise ValueError(f"a corrupted example must have its clean one's prompt and answer lengths: "
                             f"{len(p)}+{len(a)} vs {len(q)}+{len(b)} tokens")
    c, d = encode_examples(clean, task), encode_examples(corrupted, task)
    if (c.pos is None) != (d.pos is None) or (c.pos is not None and not torch.equal(c.pos, d.pos)):
        raise ValueError("a corrupted example must have its clean one's position ids (no sender carries positions given as ids)")
    differs = (c.mask == 1) & (c.y != d.y) & (c.y >= 0)
    if not bool(differs.any()):
        raise ValueError("no answer token differs between the clean and the corrupted examples: nothing to trace")
    return Pairs(c, d, differs, description)


def make_pairs(task: Task, n: int = 256, seed: int = 0) -> Pairs:
    """``n`` clean/corrupted pairs for a task, at its longest training length: held-out
    prompts first, then training-side ones if the held-out side has fewer (a circuit is
    about the mechanism, not about generalising)."""
    span = task.length_range
    variant = task.length_variant(span[1]) if span else task
    rng = random.Random(seed)
    clean: list[Example] = []
    corrupted: list[Example] = []
    for examples in (variant.test_examples(n, seed), variant.train_examples(n, seed)):
        for prompt, answer in examples:
            if len(clean) == n:
                break
            twin = variant.corrupt(prompt, rng)
            if twin is not None:
                clean.append((prompt, answer))
                corrupted.append((twin, variant.solve(twin)))
    if not clean:
        raise ValueError(f"task {task.name!r} gave no corrupted prompt that changes the answer")
    return pairs_from_examples(clean, corrupted, task, task.corruption)


def logit_difference(logits: torch.Tensor, pairs: Pairs) -> torch.Tensor:
    """Mean over the differing answer positions of logit(clean token) - logit(corrupted token)."""
    clean_y = pairs.clean.y.clamp(min=0)[..., None]
    corrupted_y = pairs.corrupted.y.clamp(min=0)[..., None]
    diff = (logits.gather(-1, clean_y) - logits.gather(-1, corrupted_y))[..., 0]  # (N, T)
    weights = pairs.differs.to(diff.dtype)
    return (diff * weights).sum() / weights.sum()


def metric_fn(metric: str, pairs: Pairs, clean_logits: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """logits -> a scalar that is high for the clean behaviour."""
    if metric == "logit_diff":
        return lambda logits: logit_difference(logits, pairs)
    if metric == "kl":
        reference = F.log_softmax(clean_logits.detach().float(), dim=-1)
        where = pairs.clean.mask == 1  # every answer position

        def minus_kl(logits: torch.Tensor) -> torch.Tensor:
            log_p = F.log_softmax(logits.float(), dim=-1)
            kl = (reference.exp() * (reference - log_p)).sum(-1)  # (N, T)
            return -kl[where].mean()
        return minus_kl
    raise ValueError(f"metric={metric!r}: expected one of {', '.join(METRICS)}")


# -- running the graph -------------------------------------------------------------------------


@contextlib.contextmanager
def split_heads(model: GPT) -> Iterator[None]:
    """Each head's q/k/v inputs and output as tensors of their own, for the with-block."""
    before = (model.blocks[0].split_qkv_input, model.blocks[0].attn.use_attn_result)
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    try:
        yield
    finally:
        model.set_use_split_qkv_input(before[0])
        model.set_use_attn_result(before[1])


class GraphRun:
    """The hooks of one forward pass over the graph.

    Records every sender's output (``outputs``, in sender order, each (B, T, C)). Given
    ``corrupted`` outputs (S, B, T, C) and ``patched`` (S, R) weights, each receiver reads
    its input plus sum_s patched[s, r] * (corrupted[s] - outputs[s]): 1 replaces edge
    (s, r) by its corrupted value, 0 leaves it clean. With ``tap`` each receiver's input
    becomes a tensor of its own, kept in ``taps`` as (receiver indices, tensor) for autograd.
    ``inputs`` (a function of the sender index and the tensor) may replace the embeddings.
    """

    def __init__(self, graph: Graph, corrupted: Optional[torch.Tensor] = None,
                 patched: Optional[torch.Tensor] = None, tap: bool = False,
                 inputs: Optional[Callable[[int, torch.Tensor], torch.Tensor]] = None) -> None:
        self.graph, self.corrupted, self.patched, self.tap, self.inputs = graph, corrupted, patched, tap, inputs
        self.outputs: list[torch.Tensor] = []
        self.taps: list[tuple[list[int], torch.Tensor]] = []

    def hooks(self) -> list[tuple[str, Callable]]:
        g = self.graph
        hooks: list[tuple[str, Callable]] = [("hook_embed", self.sender)]
        if "pos" in g.senders:
            hooks.append(("hook_pos_embed", self.sender))
        for layer in range(g.n_layer):
            for kind in "qkv":
                hooks.append((f"blocks.{layer}.hook_{kind}_input", self.receiver(g.head_receivers(layer, kind))))
            hooks.append((f"blocks.{layer}.attn.hook_result", self.sender))
            hooks.append((f"blocks.{layer}.hook_mlp_in", self.receiver([g.receivers.index(f"MLP{layer}")])))
            hooks.append((f"blocks.{layer}.hook_mlp_out", self.sender))
        hooks.append((f"blocks.{g.n_layer - 1}.hook_resid_post", self.receiver([len(g.receivers) - 1])))
        return hooks

    def sender(self, x: torch.Tensor, hook) -> Optional[torch.Tensor]:
        if x.dim() == 4:  # hook_result (B, T, nh, C): one sender per head
            self.outputs.extend(x.unbind(2))
            return None
        if self.inputs is not None:
            x = self.inputs(len(self.outputs), x)
        self.outputs.append(x)
        return x

    def receiver(self, indices: list[int]) -> Callable:
        def read(x: torch.Tensor, hook) -> torch.Tensor:
            if self.patched is not None:
                n = len(self.outputs)  # the senders written so far: exactly the ones this receiver reads
                delta = self.corrupted[:n] - torch.stack(self.outputs)  # (n, B, T, C)
                weights = self.patched[:n][:, indices].to(delta.dtype)  # (n, len(indices))
                if x.dim() == 4:  # one copy per head
                    x = x + torch.einsum("sbtc,sn->btnc", delta, weights)
                else:
                    x = x + torch.einsum("sbtc,s->btc", delta, weights[:, 0])
            if self.tap:  # a tensor of its own: its gradient is this receiver's alone
                # (still on the graph, so earlier receivers' gradients flow through it; a model
                # whose parameters need no gradient gets one started here)
                x = x.clone() if x.requires_grad else x.detach().clone().requires_grad_(True)
                self.taps.append((indices, x))
            return x
        return read


def run_graph(model: GPT, data: HeldOut, run: GraphRun) -> torch.Tensor:
    """The logits of ``model`` on ``data`` with ``run``'s hooks (heads split for the call)."""
    with split_heads(model), model.hooks(run.hooks()):
        logits, _ = model(data.x, position_ids=data.pos)
    return logits


# -- scores ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeScores:
    """Every edge's estimated (or, for "exact", measured) change of the metric when that
    edge alone is patched: negative = the edge carries the clean behaviour."""

    graph: Graph
    scores: torch.Tensor  # (S, R), 0 where there is no edge
    method: str
    metric: str
    clean: float  # the metric on the clean prompts
    corrupted: float  # on the corrupted ones

    def ranked(self) -> list[tuple[str, str, float]]:
        """(sender, receiver, score) of every edge, largest |score| first."""
        s_idx, r_idx = self.graph.allowed.nonzero(as_tuple=True)
        values = self.scores[s_idx, r_idx]
        order = values.abs().argsort(descending=True, stable=True).tolist()
        return [(self.graph.senders[s_idx[i]], self.graph.receivers[r_idx[i]], float(values[i])) for i in order]

    def node_scores(self) -> dict[str, float]:
        """Each sender's attribution: the sum of its edges' scores."""
        return {name: float(self.scores[i].sum()) for i, name in enumerate(self.graph.senders)}


@dataclass(frozen=True)
class Baseline:
    """What every score and circuit is measured against, computed once per (model, pairs):
    the graph, the pairs on the model's device, every sender's clean and corrupted output
    (S, N, T, C), the metric function and its clean and corrupted values."""

    graph: Graph
    pairs: Pairs
    clean_outputs: torch.Tensor
    corrupted_outputs: torch.Tensor
    measure: Callable[[torch.Tensor], torch.Tensor]
    metric: str
    clean: float
    corrupted: float

    def faithfulness(self, value: float) -> float:
        """The share of the clean-vs-corrupted difference that ``value`` keeps."""
        return (value - self.corrupted) / (self.clean - self.corrupted)


@torch.no_grad()
def baseline(model: GPT, pairs: Pairs, metric: str = "logit_diff") -> Baseline:
    """The clean and the corrupted runs; ValueError when the metric does not tell them apart
    (identical pairs, an untrained model): there is then nothing to trace."""
    graph = graph_of(model)
    pairs = pairs.to(next(model.parameters()).device)
    clean_run, corrupted_run = GraphRun(graph), GraphRun(graph)
    clean_logits = run_graph(model, pairs.clean, clean_run)
    corrupted_logits = run_graph(model, pairs.corrupted, corrupted_run)
    measure = metric_fn(metric, pairs, clean_logits)
    clean, corrupted = float(measure(clean_logits)), float(measure(corrupted_logits))
    if not math.isfinite(clean - corrupted) or abs(clean - corrupted) <= 1e-6 * max(1.0, abs(clean)):
        raise ValueError(f"the metric ({metric}) is {clean:.4g} on the clean prompts and {corrupted:.4g} on the "
                         f"corrupted ones: no difference to trace")
    return Baseline(graph, pairs, torch.stack(clean_run.outputs), torch.stack(corrupted_run.outputs), measure, metric,
                    clean, corrupted)


@contextlib.contextmanager
def evaluating(model: GPT) -> Iterator[None]:
    """The model in eval mode (no dropout) for the with-block, then back in its own mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _gradient_scores(model: GPT, base: Baseline, alphas: Sequence[float]) -> torch.Tensor:
    """(corrupted - clean outputs) . the metric's gradient at each receiver, the gradient
    averaged over the inputs clean + alpha * (corrupted - clean), one pass per alpha."""
    graph, pairs = base.graph, base.pairs
    n_inputs = 2 if "pos" in graph.senders else 1
    delta = base.corrupted_outputs - base.clean_outputs  # (S, N, T, C)
    scores = torch.zeros(graph.allowed.shape)
    for alpha in alphas:
        def interpolate(i: int, x: torch.Tensor, alpha=alpha) -> torch.Tensor:
            return x + alpha * delta[i] if i < n_inputs else x
        run = GraphRun(graph, tap=True, inputs=interpolate if alpha else None)
        with torch.enable_grad():
            value = base.measure(run_graph(model, pairs.clean, run))
            # a receiver the metric does not depend on at all (e.g. the answer is read before it) gets no gradient
            grads = torch.autograd.grad(value, [t for _, t in run.taps], allow_unused=True)
        for (indices, tap), grad in zip(run.taps, grads):
            grad = torch.zeros_like(tap) if grad is None else grad
            if grad.dim() == 4:  # (B, T, nh, C): one receiver per head
                scores[:, indices] += torch.einsum("sbtc,btnc->sn", delta, grad).float().cpu() / len(alphas)
            else:
                scores[:, indices[0]] += torch.einsum("sbtc,btc->s", delta, grad).float().cpu() / len(alphas)
    return scores * graph.allowed


@torch.no_grad()
def patched_metric(model: GPT, base: Baseline, patched: torch.Tensor) -> float:
    """The metric with the edges where ``patched`` (S, R) is True read from the corrupted run."""
    run = GraphRun(base.graph, base.corrupted_outputs, patched.to(base.corrupted_outputs.device))
    return float(base.measure(run_graph(model, base.pairs.clean, run)))


def edge_scores(model: GPT, pairs: Pairs, method: str = "eap", metric: str = "logit_diff",
                steps: int = IG_STEPS, base: Optional[Baseline] = None) -> EdgeScores:
    """Every edge's effect on the metric when patched: estimated ("eap", "eap-ig") or measured ("exact")."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    if method == "eap" and metric == "kl":
        raise ValueError("method='eap' with metric='kl': the KL divergence's gradient is 0 at the clean run, so every "
                         "EAP score would be 0; use method='eap-ig' or 'exact'")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: expected a positive integer")
    with evaluating(model):
        base = base if base is not None else baseline(model, pairs, metric)
        if method == "exact":
            scores = torch.zeros(base.graph.allowed.shape)
            for s, r in base.graph.allowed.nonzero().tolist():
                one = torch.zeros_like(base.graph.allowed)
                one[s, r] = True
                scores[s, r] = patched_metric(model, base, one) - base.clean
        else:
            alphas = [0.0] if method == "eap" else [(k + 0.5) / steps for k in range(steps)]
            scores = _gradient_scores(model, base, alphas)
    return EdgeScores(base.graph, scores, method, base.metric, base.clean, base.corrupted)


# -- circuits --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Circuit:
    """A set of edges and how much of the behaviour it keeps.

    ``faithfulness`` = (metric with every other edge patched - corrupted metric) /
    (clean metric - corrupted metric): 1 is the whole model's behaviour, 0 none of it."""

    graph: Graph
    edges: tuple[tuple[str, str, float], ...]  # (sender, receiver, score), largest |score| first
    faithfulness: float
    share: float  # the share it was asked to keep
    clean: float
    corrupted: float
    method: str  # the scores that ordered the search
    metric: str
    n_pairs: int
    description: str = ""
    scores: Optional[EdgeScores] = field(default=None, compare=False, repr=False)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def n_total(self) -> int:
        return self.graph.n_edges

    def nodes(self) -> list[str]:
        """The nodes the circuit touches (see ``circuit_nodes``)."""
        return circuit_nodes(self.edges)

    def to_dict(self) -> dict:
        return {
            "edges": [{"sender": s, "receiver": r, "score": round(v, 6)} for s, r, v in self.edges],
            "n_edges": self.n_edges, "n_total": self.n_total, "faithfulness": round(self.faithfulness, 6),
            "share": self.share, "metric": self.metric, "method": self.method,
            "metric_clean": round(self.clean, 6), "metric_corrupted": round(self.corrupted, 6),
            "n_pairs": self.n_pairs, "corruption": self.description,
        }


def circuit_nodes(edges: Sequence[tuple[str, str, float]]) -> list[str]:
    """The senders and receiving nodes (a head without its .q/.k/.v) of ``edges``, in order of appearance."""
    seen: list[str] = []
    for sender, receiver, _ in edges:
        for node in (sender, receiver.split(".")[0]):
            if node not in seen:
                seen.append(node)
    return seen


def node_inputs(edges: Sequence[tuple[str, str, float]], n_layer: int) -> list[tuple[str, list[tuple[str, list[str], float]]]]:
    """What each receiving node of a circuit reads, from the logits down:
    [(node, [(sender, its inputs there e.g. ["v", "k"], the largest |score|), ...]), ...],
    senders by their strongest edge first."""
    reads: dict[str, dict[str, tuple[list[str], float]]] = {}
    for sender, receiver, score in edges:
        node, _, kind = receiver.partition(".")
        kinds, best = reads.setdefault(node, {}).get(sender, ([], 0.0))
        kinds = sorted(kinds + ([kind] if kind else []), key="qkv".index)
        reads[node][sender] = (kinds, max(best, abs(score)))
    order = sorted(reads, key=lambda node: -receiver_stage(node, n_layer))
    return [(node, sorted(((s, k, v) for s, (k, v) in reads[node].items()), key=lambda item: -item[2]))
            for node in order]


def _dangling(graph: Graph, keep: torch.Tensor) -> torch.Tensor:
    """``keep`` without edges that cannot matter: from a head or MLP no kept edge feeds
    (it then computes its corrupted output anyway), or into one whose output no kept edge
    reads (other than the logits). Repeated until nothing changes."""
    keep = keep.clone()
    node_of_receiver = [r.split(".")[0] for r in graph.receivers]
    while True:
        fed = {node_of_receiver[r] for r in keep.any(0).nonzero()[:, 0].tolist()}
        read = {graph.senders[s] for s in keep.any(1).nonzero()[:, 0].tolist()}
        before = int(keep.sum())
        for s, r in keep.nonzero().tolist():
            sender, node = graph.senders[s], node_of_receiver[r]
            if (sender not in ("embed", "pos") and sender not in fed) or (node != "logits" and node not in read):
                keep[s, r] = False
        if int(keep.sum()) == before:
            return keep


def find_circuit(model: GPT, pairs: Pairs, share: float = DEFAULT_SHARE, method: str = "eap-ig",
                 metric: str = "logit_diff", scores: Optional[EdgeScores] = None) -> Circuit:
    """A small set of edges that keeps ``share`` of the metric, found ACDC-style (greedy).

    1. Order the edges by |score| (``method``'s scores on these pairs, or ``scores``,
       which must be of this model and ``metric``).
    2. The shortest prefix of that order whose circuit keeps ``share`` (a doubling then a
       bisection, one patched forward pass per try).
    3. ACDC's pass (Conmy et al. 2023): from the logits backwards, try removing each kept
       edge; it stays out if the circuit still keeps ``share``.
    4. Drop dangling edges (they change nothing). Faithfulness is measured on the result;
       it may exceed 1 when the edges left out worked against the answer.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share={share}: expected a number in (0, 1]")
    with evaluating(model):
        base = baseline(model, pairs, metric)
        graph = base.graph
        if scores is None:
            scores = edge_scores(model, pairs, method, metric, base=base)
        elif scores.graph != graph or scores.metric != metric:
            raise ValueError(f"scores of {scores.metric} on another graph or metric: expected {metric} on this model")

        def kept(keep: torch.Tensor) -> float:
            return base.faithfulness(patched_metric(model, base, graph.allowed & ~keep))

        s_idx, r_idx = graph.allowed.nonzero(as_tuple=True)
        order = scores.scores[s_idx, r_idx].abs().argsort(descending=True, stable=True)

        def prefix(k: int) -> torch.Tensor:
            keep = torch.zeros_like(graph.allowed)
            keep[s_idx[order[:k]], r_idx[order[:k]]] = True
            return keep

        # 2. the shortest prefix: double until it keeps the share, then bisect (every edge keeps all of it)
        hi = 1
        while hi < len(order) and kept(prefix(hi)) < share:
            hi *= 2
        hi = min(hi, len(order))
        lo = hi // 2
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            if kept(prefix(mid)) >= share:
                hi = mid
            else:
                lo = mid
        keep = prefix(hi)
        # 3. ACDC's pass: receivers from the logits backwards, each one's weakest edges first
        r_stage = [receiver_stage(r, graph.n_layer) for r in graph.receivers]
        candidates = sorted(keep.nonzero().tolist(),
                            key=lambda e: (-r_stage[e[1]], abs(float(scores.scores[e[0], e[1]]))))
        for s, r in candidates:
            keep[s, r] = False
            if not kept(keep) >= share:  # NaN keeps the edge too
                keep[s, r] = True
        keep = _dangling(graph, keep)
        faithfulness = kept(keep)
    edges = sorted(((graph.senders[s], graph.receivers[r], float(scores.scores[s, r])) for s, r in keep.nonzero().tolist()),
                   key=lambda e: -abs(e[2]))
    return Circuit(graph, tuple(edges), faithfulness, share, base.clean, base.corrupted, scores.method, metric,
                   len(pairs), pairs.description, scores)


def exercised_edges(edges: Sequence[tuple[str, str]], base: Baseline, atol: float = 1e-6) -> list[tuple[str, str]]:
    """The edges of a known circuit (e.g. a compiler's) that these pairs can run through:
    both the sender's and the receiving node's outputs differ between some clean prompt and
    its twin. A circuit found by patching can only contain these: a clean prompt and its
    twin share their positions (and so anything computed from positions alone), and an
    edge into a node whose output never changes carries nothing."""
    moved = (base.corrupted_outputs - base.clean_outputs).abs().flatten(1).amax(1) > atol  # (S,)

    def changes(node: str) -> bool:
        return node == "logits" or bool(moved[base.graph.senders.index(node)])

    return [(s, r) for s, r in edges if changes(s) and changes(r.split(".")[0])]


def edge_roc_auc(scores: EdgeScores, true_edges: Sequence[tuple[str, str]]) -> float:
    """ROC AUC of ranking the edges by |score| against the true edge set (ACDC's measure):
    the chance that a true edge outranks a false one, ties counted half."""
    truth = scores.graph.mask(true_edges)[scores.graph.allowed]
    values = scores.scores[scores.graph.allowed].abs()
    pos, neg = values[truth], values[~truth]
    if not len(pos) or not len(neg):
        raise ValueError("edge ROC AUC needs at least one true and one false edge")
    greater = (pos[:, None] > neg[None, :]).float().sum()
    ties = (pos[:, None] == neg[None, :]).float().sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
