"""``python -m gptdecoder compile PROGRAM --out DIR``: a Tracr-compiled program as a run directory.

Compiles one of Tracr's library programs (``gptdecoder.tracr.programs``) for a vocabulary
and a maximum length, converts it into our GPT, checks that the two give the same
outputs on every input up to that length (2,000 random ones when there are more) and
writes a run directory that ``load_model``, ``explain``, ``ablate``, ``pictures`` and the
viewer open like any other:

    ckpt.pt        the converted weights (no optimizer: nothing is trained)
    config.yaml    the model (norm none, ReLU, its own head and MLP sizes) and the task
                   ``compiled`` with the program, vocabulary and length
    compiled.json  what the compiler placed where (each head's and MLP's RASP expression)
                   and its circuit as edges of gptdecoder.lab.circuits' graph

Needs the optional extra: ``pip install -e ".[tracr]"``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import yaml

from gptdecoder.errors import UserError
from gptdecoder.storage import save_checkpoint, write_atomic

COMPILED_INFO = "compiled.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="frac_prevs, pair_balance, shuffle_dyck, reverse, sort or hist")
    parser.add_argument("--vocab", help="the input tokens, comma-separated (default: the program's own, "
                                        "e.g. a,b,x for frac_prevs); numbers are read as numbers")
    parser.add_argument("--max-len", type=int, default=5, help="longest input, without BOS (default 5)")
    parser.add_argument("--out", required=True, help="the run directory to write")


def parse_vocab(text: str) -> list:
    """'a,b,x' -> ['a', 'b', 'x']; '1,2,3' -> [1, 2, 3]."""
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if len(tokens) < 2 or len(set(tokens)) != len(tokens):
        raise UserError(f"--vocab {text!r}: expected at least two distinct comma-separated tokens")
    return [int(t) if t.lstrip("-").isdigit() else t for t in tokens]


def run(args: argparse.Namespace) -> int:
    from gptdecoder.config import config_from_dict
    from gptdecoder.tracr import all_inputs, check_equal, compile_program, compiled_info, to_gpt

    vocab = parse_vocab(args.vocab) if args.vocab else None
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out}: the directory is not empty (pick a new one)")
    compiled = compile_program(args.program, vocab, args.max_len)
    model, tokens = to_gpt(compiled)
    inputs = all_inputs(compiled.vocab, compiled.max_len)
    problems = check_equal(compiled, model, tokens, inputs)
    if problems:
        raise UserError(f"the converted model disagrees with Tracr on {len(problems)} of {len(inputs)} inputs, "
                        f"e.g. {problems[0]}")
    raw = {"model": dataclasses.asdict(model.config),
           "task": {"name": "compiled", "params": {"program": compiled.name, "vocab": list(compiled.vocab),
                                                   "max_len": compiled.max_len}},
           "output": {"dir": str(out), "plots": False}}
    config = config_from_dict(raw)
    info = compiled_info(compiled, tokens)
    save_checkpoint(out / "ckpt.pt", {"model": model.state_dict(), "model_config": dataclasses.asdict(model.config),
                                       "config": config.to_dict(), "iter": 0})
    write_atomic(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    write_atomic(out / COMPILED_INFO, json.dumps(info, indent=2) + "\n")

    c = model.config
    print(f"{compiled.name}: {info['about']}; vocab {list(compiled.vocab)}, up to {compiled.max_len} tokens after BOS")
    print(f"model: {c.n_layer} layers x {c.n_head} heads of size {c.d_head}, d_model {c.d_model}, MLP {c.d_mlp}, "
          f"no norm, ReLU; output {'numerical' if tokens.numerical else 'categorical'}, {len(tokens.values)} values")
    print(f"same outputs as Tracr on all {len(inputs)} inputs checked")
    for block, job in info["blocks"].items():
        print(f"  {block}: {job}")
    print(f"the compiler's circuit: {len(info['edges'])} edges ({', '.join(' -> '.join(e) for e in info['edges'])})")
    print(f"wrote {out}/ (ckpt.pt, config.yaml, {COMPILED_INFO}); next: python -m gptdecoder explain --run {out}")
    return 0
