"""What hook points cost: idle during training, and capturing every attention pattern.

1. Idle hook points: a training step (fwd + bwd + AdamW) of the model as shipped vs
   an identical copy whose HookPoints are swapped for a bare identity function (the
   "no hook points" baseline). Target: <= 2% slower (ratio <= 1.02).
2. Capturing every layer's hook_pattern with run_with_cache (explicit attention path)
   vs a plain forward (fused SDPA). Target: <= 1.5x.

Variants alternate within one process and ratios of medians are printed.
Shape: nanoGPT's CPU baby (4 layers, 4 heads, d_model 128, context 64, batch 12, vocab 65).

    python benchmarks/hooks_overhead.py [--rounds 7] [--steps 20] [--threads N]
"""
from __future__ import annotations

import argparse
import copy
from typing import Callable

import torch

from gptdecoder.hooks import HookPoint
from gptdecoder.model import GPT, GPTConfig
from timing import add_threads_option, apply_threads, median_seconds

V, T, B = 65, 64, 12


def without_hook_points(model: GPT) -> GPT:
    """A copy of model with every HookPoint replaced by a plain identity function."""

    def nothing(x: torch.Tensor) -> torch.Tensor:
        return x

    nothing.fns = []  # attention asks its score/pattern hook points for .fns
    bare = copy.deepcopy(model)
    for module in list(bare.modules()):
        for name, child in list(module._modules.items()):
            if isinstance(child, HookPoint):
                del module._modules[name]
                setattr(module, name, nothing)
    assert not any(isinstance(m, HookPoint) for m in bare.modules())
    return bare


def train_step_fn(model: GPT, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def step() -> None:
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def median_ratio(fn: Callable[[], None], baseline: Callable[[], None], rounds: int, reps: int) -> tuple[float, float, float]:
    """(median seconds of fn, of baseline, ratio of medians), alternating the two."""
    t = median_seconds({"fn": fn, "baseline": baseline}, rounds, reps, warmup=2)
    return t["fn"], t["baseline"], t["fn"] / t["baseline"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="repetitions per timed round")
    add_threads_option(parser)
    args = parser.parse_args()
    apply_threads(args)

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=4, n_head=4, d_model=128, dropout=0.0))
    bare = without_hook_points(model)
    x, y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
    print(f"shape: 4 layers, 4 heads, d_model 128, context {T}, batch {B}, vocab {V}; {torch.get_num_threads()} threads")

    with_hp, no_hp, ratio = median_ratio(train_step_fn(model, x, y), train_step_fn(bare, x, y), args.rounds, args.steps)
    print(f"train step, idle hook points: {with_hp * 1e3:.2f} ms vs {no_hp * 1e3:.2f} ms without hook points "
          f"-> ratio {ratio:.3f} (overhead {100 * (ratio - 1):+.1f}%, target <= +2%)")

    model.eval()
    patterns = [name for name in model.hook_dict if name.endswith("hook_pattern")]
    with torch.no_grad():
        capture, plain, ratio = median_ratio(
            lambda: model.run_with_cache(x, names_filter=patterns), lambda: model(x), args.rounds, args.steps
        )
    print(f"forward capturing all {len(patterns)} patterns: {capture * 1e3:.2f} ms vs plain forward "
          f"{plain * 1e3:.2f} ms -> ratio {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
