"""The command-line commands, one module per command: add_arguments(parser) and run(args) -> int.

``gptdecoder/cli.py`` maps each command name to its module here. A command parses
nothing itself (cli.py hands it the parsed ``args``), reads runs through
``gptdecoder.runs``, calls the library (``gptdecoder.lab`` for the attention lab) and
prints; bad input raises ``gptdecoder.errors.UserError``, which cli.py turns into one
``error: ...`` line and exit code 2.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from gptdecoder.runs import LoadedModel


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


def text_for(loaded: "LoadedModel", text: Optional[str], n_chars: int = 2000) -> str:
    """What a command examines a text model on: ``text`` (``--text``), or for our text run the
    start of its corpus's validation split (text it was not trained on)."""
    from gptdecoder.data.text import validation_text
    from gptdecoder.errors import UserError

    if text is not None:
        return text
    if loaded.kind == "run" and loaded.config is not None and loaded.config.data.path:
        return validation_text(loaded.config.data.path, n_chars)
    raise UserError(f"{loaded.description} has no task and no corpus of ours: pass --text \"...\" to examine, "
                    f"or -c CONFIG naming a task")
