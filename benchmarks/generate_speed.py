"""KV-cache generation vs full-recompute generation, tokens per second.

The full-recompute sampler is the minGPT/nanoGPT way: every new token re-runs the
whole context (cropped to block_size). Both run in the same process, alternating,
and the median of the per-round ratios is printed, so noise from other processes
mostly cancels.

    python benchmarks/generate_speed.py [--new-tokens 250] [--repeats 9] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics

import torch

from gptdecoder.model import GPT, GPTConfig
from gptdecoder.sampling import sample_next
from timing import add_threads_option, apply_threads, paired_ratio, round_robin


@torch.inference_mode()
def generate_full_recompute(model: GPT, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy generation that re-encodes the whole (cropped) context for every token."""
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size :])
        next_id = sample_next(logits[:, -1, :], do_sample=False)
        idx = torch.cat((idx, next_id), dim=1)
    return idx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=9, help="alternating runs per side (the median is kept)")
    add_threads_option(parser)
    args = parser.parse_args()
    apply_threads(args)

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=65, block_size=256, n_layer=4, n_head=4, d_model=128)
    model = GPT(config).eval()
    prompt = torch.zeros((1, 1), dtype=torch.long)
    n = args.new_tokens

    def cached() -> None:
        model.generate(prompt, n, do_sample=False)

    def full() -> None:
        generate_full_recompute(model, prompt, n)

    same = torch.equal(model.generate(prompt, n, do_sample=False), generate_full_recompute(model, prompt, n))
    times = round_robin({"cached": cached, "full": full}, args.repeats, warmup=0)  # alternating
    cached_tps, full_tps = n / statistics.median(times["cached"]), n / statistics.median(times["full"])
    print(f"shape: 4 layers, 4 heads, d_model 128, block_size 256, vocab 65; {n} new tokens, batch 1, "
          f"{torch.get_num_threads()} torch threads for both sides (generate() does not change it)")
    print(f"same greedy tokens: {same}")
    print(f"kv-cache generate:       {cached_tps:8.0f} tokens/s  (median of {args.repeats})")
    print(f"full-recompute generate: {full_tps:8.0f} tokens/s  (median of {args.repeats})")
    print(f"speed-up (kv-cache / full recompute, median of per-round ratios): "
          f"{paired_ratio(times, 'full', 'cached'):.2f}x  (target >= 3x)")


if __name__ == "__main__":
    main()
