"""nanoGPT checkpoints as our GPT: the name mapping and the checks, no code from nanoGPT.

nanoGPT (github.com/karpathy/nanoGPT) saves ``ckpt.pt`` as a dict with ``model_args``
(n_layer, n_head, n_embd, block_size, bias, vocab_size, dropout) and ``model`` (a state
dict with GPT-2's names under ``transformer.``). Its architecture is GPT-2's with the
exact GELU, so the weights map one to one onto ours; ``gptdecoder.runs.load_model``
reads the file (weights only) and calls ``nanogpt_model``.

=================================  ================================
nanoGPT                            gptdecoder GPT
=================================  ================================
transformer.wte / wpe              wte / wpe
transformer.h.{i}.*                blocks.{i}.*  (nn.Linear both: no transpose)
transformer.ln_f                   ln_final
lm_head (tied to wte)              lm_head (tied to wte)
_orig_mod. prefix (torch.compile)  stripped
transformer.h.{i}.attn.bias        ignored (a causal-mask buffer older versions saved)
=================================  ================================

A character-level nanoGPT run keeps its vocabulary in ``meta.pkl``, a pickle of
``{'vocab_size': int, 'itos': {int: str}, 'stoi': {str: int}}`` that nanoGPT's
``prepare.py`` writes beside the data and ``sample.py`` reads from
``data/<config['dataset']>/meta.pkl``. ``meta_paths`` lists where to look for it,
``read_char_vocabulary`` reads it with ``gptdecoder.safe_pickle`` (plain values only:
no global is looked up, so nothing in the file runs) and turns it, checked, into our
``CharTokenizer``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePath
from typing import Any, Optional

import torch

from gptdecoder.config import validate_model
from gptdecoder.data.tokenizers import CharTokenizer
from gptdecoder.errors import UserError
from gptdecoder.model import GPT, GPTConfig
from gptdecoder.safe_pickle import load_plain


# nanoGPT's model_args and the defaults of its GPTConfig, which fill in what a checkpoint leaves out
NANOGPT_ARGS: dict[str, Any] = {"block_size": 1024, "vocab_size": 50304, "n_layer": 12, "n_head": 12, "n_embd": 768,
                                "dropout": 0.0, "bias": True}
_COMPILED_PREFIX = "_orig_mod."  # torch.compile's wrapper puts it before every parameter name
_MASK_BUFFER = re.compile(r"transformer\.h\.\d+\.attn\.bias")  # the causal mask older nanoGPT saved
META = "meta.pkl"  # a character-level dataset's vocabulary


def nanogpt_config(model_args: Any, tie_weights: bool = True) -> GPTConfig:
    """Our GPTConfig for nanoGPT's ``model_args``: exact GELU, MLP 4x, LayerNorm eps 1e-5 as ours."""
    if not isinstance(model_args, dict):
        raise UserError(f"model_args is a {type(model_args).__name__}, not a dict")
    unknown = sorted(set(model_args) - set(NANOGPT_ARGS))
    if unknown:
        raise UserError(f"model_args has {', '.join(map(str, unknown))}, which nanoGPT's GPT does not: "
                        f"a modified model this loader cannot build")
    args = {**NANOGPT_ARGS, **model_args}
    for key, default in NANOGPT_ARGS.items():
        value = args[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok:
            raise UserError(f"model_args[{key!r}] = {value!r}: expected {type(default).__name__}")
    config = GPTConfig(vocab_size=args["vocab_size"], block_size=args["block_size"], n_layer=args["n_layer"],
                       n_head=args["n_head"], d_model=args["n_embd"], mlp_ratio=4, dropout=float(args["dropout"]),
                       bias=args["bias"], tie_weights=tie_weights, activation="gelu")
    try:
        validate_model(config)
    except UserError as e:
        raise UserError(f"model_args describe a model we cannot build: {e}") from None
    return config


def _nanogpt_name(name: str) -> Optional[str]:
    """nanoGPT's parameter name -> ours: transformer.h.0.attn.c_attn.weight -> blocks.0.attn.c_attn.weight.
    None for a name outside nanoGPT's naming (reported as unexpected)."""
    if name == "lm_head.weight":
        return name
    rest = name.removeprefix("transformer.")
    if rest == name:
        return None
    if rest.startswith("h."):
        return "blocks." + rest.removeprefix("h.")
    if rest.startswith("ln_f."):
        return "ln_final." + rest.removeprefix("ln_f.")
    return rest  # wte.*, wpe.*; anything else is not one of our names and is reported as unexpected


def _nanogpt_name_of(ours: str) -> str:
    """Our parameter name -> nanoGPT's (the inverse of ``_nanogpt_name``), for messages."""
    if ours.startswith("blocks."):
        return "transformer.h." + ours.removeprefix("blocks.")
    if ours.startswith("ln_final."):
        return "transformer.ln_f." + ours.removeprefix("ln_final.")
    return ours if ours == "lm_head.weight" else "transformer." + ours


def nanogpt_model(checkpoint: dict, where: str = "checkpoint") -> GPT:
    """Our GPT with the weights of a nanoGPT checkpoint dict (``model_args`` + ``model``).

    nanoGPT's Linear layers are nn.Linear, the same (out, in) layout as ours: unlike
    Hugging Face's Conv1D nothing is transposed. Its LM head is tied to the token
    embedding (both names are in the state dict, one tensor); a head that differs from
    the embedding is loaded untied. ``where`` names the file in error messages.
    """
    weights = checkpoint["model"]
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise UserError(f"{where}: 'model' is not a state dict of tensors")
    theirs: dict[str, str] = {}  # our name -> nanoGPT's, for messages
    state: dict[str, torch.Tensor] = {}
    foreign: list[str] = []  # names nanoGPT's GPT never has
    for name, tensor in weights.items():
        bare = name
        while bare.startswith(_COMPILED_PREFIX):
            bare = bare.removeprefix(_COMPILED_PREFIX)
        if _MASK_BUFFER.fullmatch(bare):
            continue  # a constant causal mask, not a parameter; ours is built from block_size
        ours = _nanogpt_name(bare)
        if ours is None:
            foreign.append(name)
            continue
        if ours in state:
            raise UserError(f"{where}: {theirs[ours]!r} and {name!r} are the same parameter")
        theirs[ours], state[ours] = name, tensor

    head, embedding = state.get("lm_head.weight"), state.get("wte.weight")
    tied = head is None or (embedding is not None and head.shape == embedding.shape and torch.equal(head, embedding))
    if tied:
        state.pop("lm_head.weight", None)
    config = nanogpt_config(checkpoint["model_args"], tie_weights=tied)
    model = GPT(config)
    expected = {n: t.shape for n, t in model.state_dict().items() if not (tied and n == "lm_head.weight")}
    missing = sorted(_nanogpt_name_of(n) for n in set(expected) - set(state))
    unexpected = sorted(foreign + [theirs[n] for n in set(state) - set(expected)])
    if missing or unexpected:
        shown = [f"missing {', '.join(missing[:3])}" if missing else "", f"unexpected {', '.join(unexpected[:3])}"
                 if unexpected else ""]
        raise UserError(f"{where}: the weights do not fit model_args (bias={config.bias}): "
                        + "; ".join(s for s in shown if s))
    for name, tensor in state.items():
        if tensor.shape != expected[name]:
            raise UserError(f"{where}: {theirs[name]} has shape {tuple(tensor.shape)}, model_args imply "
                            f"{tuple(expected[name])}")
    model.load_state_dict(state, strict=not tied)  # tied: lm_head.weight is wte.weight, checked above
    return model


# -- meta.pkl: a character model's vocabulary ------------------------------------------------------


def nanogpt_dataset(checkpoint: dict) -> Optional[str]:
    """The dataset named in the checkpoint's training config (``config['dataset']``), or None."""
    settings = checkpoint.get("config")
    dataset = settings.get("dataset") if isinstance(settings, dict) else None
    return dataset if isinstance(dataset, str) else None


def meta_paths(checkpoint_path: Path, checkpoint: dict) -> list[Path]:
    """Where a nanoGPT checkpoint's meta.pkl may be, in the order to try: beside the checkpoint
    (its out_dir), then ``data/<dataset>/meta.pkl`` in the out_dir's parent -- nanoGPT's
    repository, where out-shakespeare-char/ckpt.pt and data/shakespeare_char/meta.pkl sit
    side by side. A dataset name that is absolute or climbs out with '..' is not followed."""
    paths = [checkpoint_path.parent / META]
    dataset = nanogpt_dataset(checkpoint)
    if dataset and not PurePath(dataset).is_absolute() and ".." not in PurePath(dataset).parts:
        root = Path(os.path.abspath(checkpoint_path)).parent.parent  # lexical: out_dir/.. as the user sees it
        paths.append(root / "data" / dataset / META)
    return paths


def read_char_vocabulary(path: Path, model_vocab: int) -> CharTokenizer:
    """The character tokenizer of nanoGPT's ``meta.pkl`` at ``path``, for a model with
    ``model_vocab`` token ids; a hostile, unreadable or ill-fitting file is a one-line UserError."""
    return char_tokenizer(load_plain(path, "nanoGPT vocabulary"), model_vocab, f"nanoGPT vocabulary {str(path)!r}")


def char_tokenizer(meta: Any, model_vocab: int, where: str) -> CharTokenizer:
    """``meta.pkl``'s dict as a CharTokenizer, checked: ``itos`` maps every id 0..vocab_size-1 to
    one character, ``stoi`` is its inverse, and the model has at least vocab_size ids (nanoGPT
    may pad its vocabulary, never shrink it)."""
    if not isinstance(meta, dict) or not {"vocab_size", "itos", "stoi"} <= set(meta):
        raise UserError(f"{where} is not nanoGPT's character vocabulary (a dict with vocab_size, itos and stoi)")
    vocab, itos, stoi = meta["vocab_size"], meta["itos"], meta["stoi"]
    if type(vocab) is not int or vocab < 1:
        raise UserError(f"{where}: vocab_size is {_shown(vocab)}, not a positive int")
    if vocab > model_vocab:
        raise UserError(f"{where} has {vocab} characters but the model only {model_vocab} token ids: "
                        f"they do not belong together")
    if not isinstance(itos, dict) or not isinstance(stoi, dict):
        raise UserError(f"{where}: itos and stoi must be dicts (id -> character, character -> id)")
    keys = [k for k in itos if type(k) is not int or not 0 <= k < vocab]
    if keys or len(itos) != vocab:
        problem = f"has the key {_shown(keys[0])}" if keys else f"has {len(itos)} entries"
        raise UserError(f"{where}: itos {problem}; it must map each id 0..{vocab - 1} (vocab_size {vocab}) to a "
                        f"character")
    chars = [itos[i] for i in range(vocab)]
    for i, c in enumerate(chars):
        if type(c) is not str or len(c) != 1:
            raise UserError(f"{where}: itos[{i}] is {_shown(c)}, not one character")
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise UserError(f"{where}: itos[{i}] is {c!r}, a lone surrogate (no text has it)")
    first = {}
    for i, c in enumerate(chars):
        if c in first:
            raise UserError(f"{where}: itos maps both {first[c]} and {i} to {c!r}")
        first[c] = i
    if any(type(i) is not int for i in stoi.values()) or stoi != first:
        wrong = next((c for c in first if stoi.get(c) != first[c] or type(stoi.get(c)) is not int),
                     next(iter(set(stoi) - set(first)), None))
        raise UserError(f"{where}: stoi is not the inverse of itos (at {_shown(wrong)}: stoi has "
                        f"{_shown(stoi.get(wrong))}, itos says {_shown(first.get(wrong))})")
    return CharTokenizer("".join(chars))


def _shown(value: Any) -> str:
    """A value of a meta.pkl for a message: a short repr of a string or number, else its type
    (a container from a file can be nested too deeply, or be too long, to print)."""
    if isinstance(value, (str, int, float)) or value is None:
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 64 else "a large int"
        return text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(value).__name__}"
