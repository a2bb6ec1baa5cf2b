"""What the Trainer needs from training data, whatever it is: the DataSource interface.

A data source hands out the batch of any optimizer step, scores a model, and knows
the vocabulary and context sizes the model must have. Synthetic tasks
(gptdecoder/data/tasks.py) and text corpora (gptdecoder/data/text.py) are its two
implementations; the Trainer and ``train_from_config`` see only this interface.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import NamedTuple, Optional, Protocol

import torch


class Batch(NamedTuple):
    """One optimizer step's training data, each (B, T)."""

    x: torch.Tensor  # input token ids
    y: torch.Tensor  # the next token at each position; -1 where nothing is to be predicted
    mask: torch.Tensor  # the loss weight of each position (0 over a task's prompt)
    pos: Optional[torch.Tensor] = None  # position ids, for a task that gives its own (position coupling)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The random seed of one process's batch at one optimizer step.

    A batch depends only on (seed, rank, step), so a resumed run continues with exactly
    the batches it would have seen, and DDP processes draw different ones. CRC32 of the
    text is stable across processes and machines (Python's hash() is salted per process).
    """
    return zlib.crc32(f"{seed}/{rank}/{step}".encode())


class DataSource(Protocol):
    """Batches by step, evaluation and results, for one process of a run."""

    vocab_size: int  # token ids are 0 .. vocab_size-1
    min_block_size: int  # the shortest context that holds a training sequence
    block_size: int  # the context to build when the config leaves model.block_size out

    def get_batch(self, step: int) -> Batch:
        """The training batch of optimizer step ``step`` (a function of the seed, rank and step)."""
        ...

    def evaluate(self, model: torch.nn.Module, final: bool = False) -> dict:
        """Scores for metrics.jsonl (quick, during training) or results.json (``final``).
        An "accuracy" key lets training stop early at train.stop_at_accuracy."""
        ...

    def save(self, run_dir: Path) -> None:
        """Write into the run directory what reading the run needs later (e.g. the tokenizer)."""
        ...

    def describe(self) -> str:
        """One line on what is trained on, printed when training starts."""
        ...

    def summary(self, results: dict) -> list[str]:
        """Lines that report the final scores of ``results``, printed when training ends."""
        ...
