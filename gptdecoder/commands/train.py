"""``python -m gptdecoder train -c config.yaml`` (or ``python demo.py -c config.yaml``).

Trains through ``gptdecoder.train.train_from_config``, then draws the run's pictures
from what it wrote (loss and accuracy curves; for a task, the predicted distribution and
the last block's attention for one held-out example, from the checkpoint) when
``output.plots`` is on. The task is built once, by the config's checks, and handed to
the training and to the pictures.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Optional

from gptdecoder.config import load_config_and_task
from gptdecoder.runs import load_run, read_metrics
from gptdecoder.tasks import Task
from gptdecoder.train import train_from_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="config.yaml", help="YAML config (default: config.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.max_iters=500 (repeatable)")
    parser.add_argument("--out", help="run directory (default: output.dir, or runs/<config stem>)")
    parser.add_argument("--resume", action="store_true", help="continue from the run directory's ckpt.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def write_figures(run_dir: Path, results: dict, task: Optional[Task] = None) -> list[Path]:
    """The run's PNGs, drawn from metrics.jsonl (and, for a task, its checkpoint; ``task``
    is the run's task when the caller has it, else it is read from the run)."""
    from gptdecoder.commands.files import save_figure  # matplotlib: only when pictures are drawn
    from gptdecoder.lab.figures import training_figures

    records = read_metrics(run_dir)
    if results.get("task") == "text":  # loss curves only: no need to load the model back
        records.append({"iter": results["iters"], "whole_val_loss": results["val_loss"]})  # the final score
        figures = training_figures(records, text=True)
    else:  # a prompt with many distinct symbols says more than 0 0 0 0 1
        run = load_run(run_dir, task=task)
        held_out = run.task.test_examples(run.config.eval.examples)[:50]
        example = max(held_out, key=lambda e: len(set(e[0])))
        figures = training_figures(records, run.model, run.task, example)
    return [save_figure(figure, run_dir / name) for name, figure in figures.items()]


def run(args: argparse.Namespace) -> int:
    config, task = load_config_and_task(args.config, args.set)
    if args.out:
        config = dataclasses.replace(config, output=dataclasses.replace(config.output, dir=args.out))
    try:
        results = train_from_config(config, resume=args.resume, progress=not args.no_progress, task=task)
    finally:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    if results and config.output.plots:  # results is empty on DDP ranks other than 0
        paths = write_figures(Path(config.output.dir), results, task)
        print("pictures: " + " ".join(p.name for p in paths))
    return 0
