"""Time to 100% held-out accuracy on minGPT's sort demo, against minGPT's own figure.

    python benchmarks/sort_demo.py [--seeds 3] [--config config.yaml]

minGPT's demo (gpt-nano: 3 layers, 3 heads, d 48; batch 64, lr 5e-4, 2,000 iters)
took 20.6 s of training on this machine. Ours trains the default config.yaml until every
held-out prompt is sorted right; "training seconds" excludes the periodic evaluations
(they are reported separately as wall time).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

MINGPT_SECONDS = 20.6
ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--seeds", type=int, default=1, help="train this many seeds (1337, 1338, ...)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    from gptdecoder.config import load_config
    from gptdecoder.train import train_from_config

    print(f"imports: {time.perf_counter() - t0:.1f} s")
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.seeds):
            config = load_config(args.config, ["output.plots=false"])
            config.train.seed += i
            config.output.dir = str(Path(tmp) / f"seed{config.train.seed}")
            r = train_from_config(config, progress=False, verbose=False)
            reached = r["test_accuracy"] >= 1.0
            times.append(r["train_seconds"] if reached else float("inf"))
            print(f"seed {config.train.seed}: {r['test_accuracy']:.2%} held-out after {r['iters']} iters, "
                  f"{r['train_seconds']:.2f} s training ({r['train_wall_seconds']:.2f} s with evals), "
                  f"{r['precision']}")
    ours = statistics.median(times)
    print(f"time to 100%: {ours:.2f} s (median of {len(times)}) vs minGPT {MINGPT_SECONDS} s "
          f"-> {MINGPT_SECONDS / ours:.1f}x faster")
    return 0 if ours <= 5.0 else 1


if __name__ == "__main__":
    sys.exit(main())
