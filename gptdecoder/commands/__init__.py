"""The command-line commands, one module per command: add_arguments(parser) and run(args) -> int.

``gptdecoder/cli.py`` maps each command name to its module here. A command parses
nothing itself (cli.py hands it the parsed ``args``), reads runs through
``gptdecoder.runs``, calls the library (``gptdecoder.lab`` for the attention lab) and
prints; bad input raises ``gptdecoder.errors.UserError``, which cli.py turns into one
``error: ...`` line and exit code 2.
"""
from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--run PATH`` and ``-c CONFIG`` for the commands that examine a model on a task's
    held-out examples (ablate, explain): any model ``gptdecoder.runs.load_model`` opens,
    and for one without a task of its own, the config that names it."""
    # dest run_dir: the command line keeps each command's entry point in args.run
    parser.add_argument("--run", dest="run_dir", metavar="PATH", required=True,
                        help="run directory written by the trainer (e.g. runs/config), Hugging Face GPT-2 "
                             "directory or nanoGPT ckpt.pt")
    parser.add_argument("-c", "--config", default=None,
                        help="for a model without a task (Hugging Face, nanoGPT, text runs): the YAML config "
                             "whose task's held-out examples are used (a task run's own config may be given, "
                             "another task's is refused)")
