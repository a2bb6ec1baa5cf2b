"""``python -m gptdecoder inspect-masks``: the mask debugger on one held-out example.

Prints the alignment table (input, target, loss mask), the causal mask, one head's
attention step by step (Q.K^T, scaled, masked, softmax) and a list of PASS/FAIL
checks. The exit code is 1 if any check fails, so the command doubles as a test.
``--mask none`` and ``--loss-mask all`` plant deliberate bugs that the checks must
catch. The model is a trained one (``--run PATH``: a run directory, a Hugging Face
GPT-2 directory or a nanoGPT checkpoint) or, by default, a freshly initialised one
built from the config. A task run brings its own task; any other model takes the task
from ``-c CONFIG`` (see ``gptdecoder.runs.task_for``). The work is done by
``gptdecoder.lab.masks``.
"""
from __future__ import annotations

import argparse

import torch

from gptdecoder.config import load_config, resolve_task
from gptdecoder.errors import UserError
from gptdecoder.tasks.compiled import NOT_FOR, CompiledTask
from gptdecoder.lab.masks import EXAMPLE_POOL, held_out_examples, mask_report
from gptdecoder.model import GPT
from gptdecoder.runs import load_model, task_for
from gptdecoder.tasks import Task, get_task

DEFAULT_CONFIG = "config.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=None,
                        help=f"YAML config whose task and model are used (default: {DEFAULT_CONFIG}); with --run, "
                             "the task for a model that has none (Hugging Face, nanoGPT, text runs); "
                             "a task run's own config may be given, another task's is refused")
    # dest run_dir: the command line keeps each command's entry point in args.run
    parser.add_argument("--run", dest="run_dir", metavar="PATH",
                        help="a trained model: run directory, Hugging Face GPT-2 directory or nanoGPT ckpt.pt; "
                             "default: a freshly initialised model")
    parser.add_argument("--example", type=int, default=0,
                        help=f"which held-out example, 0..{EXAMPLE_POOL - 1} (default 0)")
    parser.add_argument("--layer", type=int, default=0, help="layer of the head to step through (default 0)")
    parser.add_argument("--head", type=int, default=0, help="head to step through (default 0)")
    parser.add_argument("--mask", choices=("causal", "none"), default="causal",
                        help="'none' removes the causal mask: a deliberate bug the checks must catch")
    parser.add_argument("--loss-mask", choices=("answer", "all"), default="answer",
                        help="'all' also scores the prompt tokens: a deliberate bug the checks must catch")
    parser.add_argument("--seed", type=int, default=0, help="seed for the freshly initialised model")


def load_model_and_task(args: argparse.Namespace) -> tuple[GPT, Task, str]:
    """(model in eval mode on CPU, task, where the model came from) for the command's arguments."""
    if args.run_dir:
        loaded = load_model(args.run_dir, device="cpu")
        task = task_for(loaded, args.config)
        source = loaded.description if loaded.task is not None else f"{loaded.description}, task from {args.config}"
        return loaded.model, task, source
    config_path = args.config or DEFAULT_CONFIG
    config = load_config(config_path)
    if config.is_text:
        raise UserError(f"{config_path} trains on text: inspect-masks needs a task config")
    task = get_task(config.task.name, **config.task.params)
    torch.manual_seed(args.seed)
    model = GPT(resolve_task(config).model).eval()
    return model, task, f"freshly initialised from {config_path} (seed {args.seed}); pass --run PATH for a trained one"


def run(args: argparse.Namespace) -> int:
    model, task, source = load_model_and_task(args)
    if task.name == CompiledTask.name:
        raise UserError(f"inspect-masks steps through a prompt and its answer; {NOT_FOR}")
    n_layer, n_head = model.config.n_layer, model.config.n_head
    if not 0 <= args.layer < n_layer:
        raise UserError(f"--layer {args.layer}: the model has layers 0..{n_layer - 1}")
    if not 0 <= args.head < n_head:
        raise UserError(f"--head {args.head}: the model has heads 0..{n_head - 1}")
    examples = held_out_examples(task)
    if not 0 <= args.example < len(examples):
        raise UserError(f"--example {args.example}: expected 0..{len(examples) - 1} "
                        f"({len(examples)} held-out examples)")

    report = mask_report(model, task, examples[args.example], layer=args.layer, head=args.head, mask=args.mask,
                         loss_mask=args.loss_mask, example_index=args.example)
    print(f"model: {source}")
    print(report.text)
    return 1 if report.failed else 0
