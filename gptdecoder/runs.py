"""A run directory, read back: checkpoint, resolved config, metrics, results.

The trainer writes a run directory; everything else (generate, export, ablate, the
mask debugger, the pictures, the notebook) only reads one, through this module, so
no view needs the trainer. Checkpoints are loaded with ``weights_only=True``: they
hold tensors and plain values only, so opening one never runs code from it.

A run directory holds::

    config.yaml     the resolved config (vocab_size and block_size filled in)
    ckpt.pt         model, optimizer, schedule, step, RNG states, config
    metrics.jsonl   one JSON record per logged step or evaluation
    results.json    the final scores
    tokenizer/      text runs only: what decoding needs
"""
from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Optional, Union

import torch

from gptdecoder.atomic import write_atomic
from gptdecoder.config import Config, config_from_dict
from gptdecoder.errors import UserError
from gptdecoder.model import GPT, GPTConfig
from gptdecoder.tasks import TASKS, Task, get_task

CHECKPOINT = "ckpt.pt"
CHECKPOINT_KEYS = ("model", "model_config", "config", "iter")


def save_checkpoint(path: Union[str, Path], state: dict) -> None:
    """torch.save, atomically: a crash mid-save keeps the previous checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def read_checkpoint(path: Union[str, Path], device: str = "cpu") -> dict:
    """The checkpoint's state dict; UserError for a missing, unreadable or foreign file.

    ``weights_only=True``: a file that needs arbitrary unpickling is refused, unrun.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        reason = " ".join(str(e).split())[:300]
        raise UserError(f"cannot read checkpoint {str(path)!r} safely: {type(e).__name__}: {reason}") from None
    missing = set(CHECKPOINT_KEYS) - set(state if isinstance(state, dict) else {})
    if missing:
        raise UserError(f"{str(path)!r} is not a gptdecoder checkpoint (missing {', '.join(sorted(missing))})")
    return state


@dataclasses.dataclass
class Run:
    """A trained run, loaded back: the model (eval mode), its resolved config and task."""

    model: GPT
    config: Config
    task: Optional[Task]  # None for a text run
    run_dir: Path


def load_run(run_dir: Union[str, Path], device: str = "cpu") -> Run:
    """Load ``run_dir/ckpt.pt``; UserError if the directory or checkpoint is missing or unreadable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {str(run_dir)!r} does not exist")
    state = read_checkpoint(run_dir / CHECKPOINT, device)
    try:
        config = config_from_dict(state["config"])
        model = GPT(GPTConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
    except (UserError, TypeError, ValueError, RuntimeError, AssertionError) as e:
        raise UserError(f"checkpoint in {str(run_dir)!r} does not match this version of gptdecoder: {e}") from None
    model.to(device).eval()
    task = get_task(config.task.name, **config.task.params) if config.task.name in TASKS else None
    return Run(model=model, config=config, task=task, run_dir=run_dir)


def read_metrics(run_dir: Union[str, Path]) -> list[dict]:
    """The records of ``metrics.jsonl`` in order ([] when there is none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
