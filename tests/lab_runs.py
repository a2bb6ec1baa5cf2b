"""Run directories for the tests, most written without the trainer.

The lab's commands (and generate, export) only read a run (through gptdecoder.runs.load_run),
so their tests do not need one trained: a freshly initialised model saved in the checkpoint
format is enough, and it keeps these tests independent of the trainer. A text run needs its
tokenizer files too: train_text_run trains a tiny one briefly.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gptdecoder.model import GPT

TINY_TASK = "model: {n_layer: 2, n_head: 2, d_model: 16}\ntask: {name: sort, params: {length: 4, num_digits: 3}}\n"


def write_untrained_run(run_dir: Path, config_text: str = TINY_TASK, seed: int = 0) -> Path:
    """A run directory holding ckpt.pt of a freshly initialised model for ``config_text``."""
    from conftest import tiny_model
    from gptdecoder.config import load_config, resolve_task
    from gptdecoder.runs import CHECKPOINT
    from gptdecoder.storage import save_checkpoint

    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.yaml"
    config_path.write_text(config_text)
    config = resolve_task(load_config(config_path))
    model = tiny_model(seed, **dataclasses.asdict(config.model))
    state = {"model": model.state_dict(), "model_config": dataclasses.asdict(config.model),
             "config": config.to_dict(), "iter": 0}
    save_checkpoint(run_dir / CHECKPOINT, state)
    return run_dir


def write_run(run_dir: Path, model: "GPT", raw_config: dict) -> Path:
    """A run directory as the trainer leaves it (config + ckpt.pt) for ``model``, without training."""
    from gptdecoder.config import config_from_dict

    config = config_from_dict(raw_config)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "model_config": dataclasses.asdict(model.config),
             "config": config.to_dict(), "iter": 0}
    torch.save(state, run_dir / "ckpt.pt")
    return run_dir


TEXT = "".join(f"ROMEO: speak {i % 5}, fair Juliet; the night is young.\nJULIET: ay, {i % 3} times.\n" for i in range(200))


def train_text_run(tmp_path: Path, tokenizer: str = "char", iters: int = 30) -> Path:
    """A real (tiny, briefly trained) text run in tmp_path, through the trainer."""
    from gptdecoder.config import config_from_dict
    from gptdecoder.train import train_from_config

    corpus = tmp_path / "play" / "input.txt"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text(TEXT, encoding="utf-8")
    raw = {
        "task": {"name": "text"},
        "data": {"path": str(corpus), "tokenizer": tokenizer, "vocab_size": 300, "vocab_dir": str(tmp_path / "vocab")},
        "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "block_size": 16},
        "train": {"batch_size": 16, "max_iters": iters, "lr": 1e-2, "min_lr": 1e-3, "warmup_iters": 5,
                  "eval_interval": iters, "stop_at_accuracy": None, "precision": "fp32", "num_threads": 1},
        "eval": {"quick_examples": 8},
        "output": {"dir": str(tmp_path / f"run_{tokenizer}"), "plots": False},
    }
    train_from_config(config_from_dict(raw), progress=False, verbose=False)
    return tmp_path / f"run_{tokenizer}"


def train_tiny_sort(root: Path, length: int = 4) -> Path:
    """A tiny sort run (2 layers x 2 heads, d_model 16) trained for up to 150 steps through the
    CLI into root/run: enough for heads to differ and for ablating one to cost accuracy."""
    from gptdecoder import cli

    config = root / "tiny.yaml"
    config.write_text(f"""
model: {{n_layer: 2, n_head: 2, d_model: 16}}
task: {{name: sort, params: {{length: {length}, num_digits: 3}}}}
train: {{batch_size: 64, max_iters: 150, eval_interval: 50, log_interval: 50, warmup_iters: 5, lr: 1.0e-2,
        precision: fp32, seed: 0}}
eval: {{examples: 64, train_examples: 32}}
output: {{plots: false}}
""")
    assert cli.main(["train", "-c", str(config), "--out", str(root / "run"), "--no-progress"]) == 0
    return root / "run"
