"""Shared timing for the benchmarks: alternate the variants, keep medians.

These machines are shared and noisy, so absolute times mean little; running every
variant round-robin in one process makes load from other processes hit all of them
alike, and the ratio of medians is the figure to quote.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")


def apply_threads(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def median_seconds(variants: dict[str, Callable[[], object]], rounds: int, reps: int = 1,
                   warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each variant, timed round-robin (``reps`` calls per round)."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            times[name].append((time.perf_counter() - start) / reps)
    return {name: statistics.median(t) for name, t in times.items()}
