"""Shared timing for the benchmarks: alternate the variants, compare within rounds.

These machines are shared and noisy, so absolute times mean little. Every variant
runs once per round, round-robin in one process, with the order reversed every other
round (ABBA), so load from other processes and order effects hit all of them alike.
The figure to quote is a ratio; ``paired_ratio`` takes it within each round (the two
runs of a round are seconds apart) and keeps the median over rounds, which is steadier
than a ratio of two medians when the machine's speed drifts during the run.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Iterator, Sequence, TypeVar

import torch

R = TypeVar("R")  # a round
V = TypeVar("V")  # a variant


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")


def apply_threads(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def round_robin(variants: dict[str, Callable[[], object]], rounds: int, reps: int = 1,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each variant in each round (``reps`` calls per round), order ABBA."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants.items())
    for r in range(rounds):
        for name, fn in order if r % 2 == 0 else reversed(order):
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            times[name].append((time.perf_counter() - start) / reps)
    return times


def alternating(rounds: Sequence[R], variants: Sequence[V]) -> Iterator[tuple[R, V]]:
    """(round, variant) pairs, every variant once per round, in reverse order every other
    round (ABBA): the order in which to run a benchmark whose runs are too long to repeat."""
    for r, round_ in enumerate(rounds):
        for variant in variants if r % 2 == 0 else reversed(variants):
            yield round_, variant


def median_seconds(variants: dict[str, Callable[[], object]], rounds: int, reps: int = 1,
                   warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each variant, timed round-robin."""
    return {name: statistics.median(t) for name, t in round_robin(variants, rounds, reps, warmup).items()}


def adamw_step(model: torch.nn.Module, compute_loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """A closure running one training step: compute_loss(), backward, fused AdamW, zero grads."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def step() -> None:
        compute_loss().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def paired_ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of times[numerator][i] / times[denominator][i]."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator]))
