"""What hook points cost: idle during training, and capturing every attention pattern.

1. Idle hook points: a training step (fwd + bwd + AdamW) of the model as shipped vs
   an identical copy whose HookPoints are swapped for a bare identity function (the
   "no hook points" baseline). Target: <= 2% slower (ratio <= 1.02).
2. Capturing every layer's hook_pattern with run_with_cache (explicit attention path)
   vs a plain forward (fused SDPA). Target: <= 1.5x.

Variants alternate within one process; each figure is the median over rounds of the
ratio within a round. The idle-hook difference is a small part of a training step,
smaller than the step-to-step noise of a shared machine, so it alternates single steps
(--pairs of them) and also prints the quartiles of the per-pair ratios to show how well
the median is pinned down.
Shape: nanoGPT's CPU baby (4 layers, 4 heads, d_model 128, context 64, batch 12, vocab 65).

    python benchmarks/hooks_overhead.py [--pairs 300] [--rounds 7] [--steps 20] [--threads N]
"""
from __future__ import annotations

import argparse
import copy
import statistics

import torch

from gptdecoder.hooks import HookPoint
from gptdecoder.model import GPT, GPTConfig
from timing import adamw_step, add_threads_option, apply_threads, paired_ratio, round_robin

V, T, B = 65, 64, 12


def without_hook_points(model: GPT) -> GPT:
    """A copy of model with every HookPoint replaced by a plain identity function."""

    def nothing(x: torch.Tensor) -> torch.Tensor:
        return x

    nothing.is_watched = lambda: False  # attention asks its score/pattern hook points
    bare = copy.deepcopy(model)
    for module in list(bare.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, HookPoint):
                delattr(module, name)  # nn.Module.__delattr__ unregisters the child
                setattr(module, name, nothing)
    assert not any(isinstance(m, HookPoint) for m in bare.modules())
    return bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300, help="alternating single training steps per variant")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the capture comparison")
    parser.add_argument("--steps", type=int, default=20, help="forward passes per round of the capture comparison")
    add_threads_option(parser)
    args = parser.parse_args()
    apply_threads(args)

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=4, n_head=4, d_model=128, dropout=0.0))
    bare = without_hook_points(model)
    x, y = torch.randint(0, V, (B, T)), torch.randint(0, V, (B, T))
    print(f"shape: 4 layers, 4 heads, d_model 128, context {T}, batch {B}, vocab {V}; {torch.get_num_threads()} threads")

    steps = {"hooked": adamw_step(model, lambda: model(x, y)[1]), "bare": adamw_step(bare, lambda: bare(x, y)[1])}
    times = round_robin(steps, args.pairs, warmup=5)
    ratio = paired_ratio(times, "hooked", "bare")
    q1, _, q3 = statistics.quantiles([a / b for a, b in zip(times["hooked"], times["bare"])], n=4)
    print(f"train step, idle hook points: {statistics.median(times['hooked']) * 1e3:.2f} ms vs "
          f"{statistics.median(times['bare']) * 1e3:.2f} ms without hook points (medians of {args.pairs})")
    print(f"  -> ratio {ratio:.4f} (overhead {100 * (ratio - 1):+.2f}%, target <= +2%); "
          f"per-pair ratios: quartiles {q1:.3f} .. {q3:.3f}")

    model.eval()
    patterns = [name for name in model.hook_dict if name.endswith("hook_pattern")]
    with torch.no_grad():
        times = round_robin(
            {"capture": lambda: model.run_with_cache(x, names_filter=patterns), "plain": lambda: model(x)},
            args.rounds, args.steps, warmup=2,
        )
    print(f"forward capturing all {len(patterns)} patterns: {statistics.median(times['capture']) * 1e3:.2f} ms "
          f"vs plain forward {statistics.median(times['plain']) * 1e3:.2f} ms "
          f"-> ratio {paired_ratio(times, 'capture', 'plain'):.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
