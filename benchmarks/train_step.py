"""Training-step throughput: our GPT vs transformers' GPT2LMHeadModel of the same shape.

nanoGPT's CPU "baby" shape: 4 layers, 4 heads, d_model 128, context 64, batch 12,
vocab 65, dropout 0. A step is forward + backward + AdamW step. All variants run in
one process, round-robin, and ratios of median step times are printed:

* ours fp32 vs HF fp32 (like for like)
* ours at precision 'auto' (bf16 autocast on CPUs with native bf16) vs HF fp32
* ours vs HF, both under the same resolved 'auto' precision

    python benchmarks/train_step.py [--steps 30] [--rounds 5] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import transformers

from gptdecoder import runtime
from gptdecoder.model import GPT, GPTConfig
from timing import adamw_step, add_threads_option, apply_threads, paired_ratio, round_robin

V, T, B, L, H, D = 65, 64, 12, 4, 4, 128


def make_step(model: torch.nn.Module, hf: bool, precision: str):
    """A closure running one training step on a fixed random batch."""
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))

    def compute_loss() -> torch.Tensor:
        with runtime.autocast("cpu", precision):
            if hf:  # HF shifts the labels itself: position t is scored against labels[t + 1]
                return model(input_ids=x, labels=x).loss
            return model(x, y)[1]

    return adamw_step(model, compute_loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    add_threads_option(parser)
    args = parser.parse_args()
    apply_threads(args)
    auto = runtime.resolve_precision("auto", "cpu")

    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, d_model=D, dropout=0.0)).train()
    hf_config = transformers.GPT2Config(vocab_size=V, n_positions=T, n_embd=D, n_layer=L, n_head=H,
                                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                        bos_token_id=None, eos_token_id=None)
    hf_model = transformers.GPT2LMHeadModel(hf_config).train()
    variants = {
        "ours fp32": make_step(ours, False, "fp32"),
        f"ours {auto}": make_step(ours, False, auto),
        "HF fp32": make_step(hf_model, True, "fp32"),
        f"HF {auto}": make_step(hf_model, True, auto),
    }
    times = round_robin(variants, args.rounds, args.steps, warmup=3)
    median = {name: statistics.median(t) for name, t in times.items()}

    print(f"shape: {L} layers, {H} heads, d_model {D}, context {T}, batch {B}, vocab {V}; "
          f"fwd+bwd+AdamW(fused); {torch.get_num_threads()} threads; 'auto' precision = {auto}")
    for name, seconds in median.items():
        print(f"{name:10s} {seconds * 1e3:7.2f} ms/step  {B * T / seconds:9.0f} tokens/s")
    print("speed-ups (HF step time / ours, median of per-round ratios; target >= 1.25x):")
    print(f"  ours fp32 vs HF fp32:       {paired_ratio(times, 'HF fp32', 'ours fp32'):.2f}x")
    print(f"  ours {auto} vs HF fp32:       {paired_ratio(times, 'HF fp32', f'ours {auto}'):.2f}x")
    print(f"  ours {auto} vs HF {auto}:       {paired_ratio(times, f'HF {auto}', f'ours {auto}'):.2f}x")


if __name__ == "__main__":
    main()
