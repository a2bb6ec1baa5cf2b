"""Run directories for the attention-lab tests, written without the trainer.

The lab's commands only read a run (through gptdecoder.runs.load_run), so their tests
do not need one trained: a freshly initialised model saved in the checkpoint format is
enough, and it keeps these tests independent of the trainer.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

TINY_TASK = "model: {n_layer: 2, n_head: 2, d_model: 16}\ntask: {name: sort, params: {length: 4, num_digits: 3}}\n"


def write_untrained_run(run_dir: Path, config_text: str = TINY_TASK, seed: int = 0) -> Path:
    """A run directory holding ckpt.pt of a freshly initialised model for ``config_text``."""
    from gptdecoder.config import load_config, resolve_task
    from gptdecoder.model import GPT
    from gptdecoder.runs import CHECKPOINT
    from gptdecoder.storage import save_checkpoint

    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.yaml"
    config_path.write_text(config_text)
    config = resolve_task(load_config(config_path))
    torch.manual_seed(seed)
    model = GPT(config.model)
    state = {"model": model.state_dict(), "model_config": dataclasses.asdict(config.model),
             "config": config.to_dict(), "iter": 0}
    save_checkpoint(run_dir / CHECKPOINT, state)
    return run_dir
