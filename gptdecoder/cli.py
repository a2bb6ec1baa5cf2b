"""``python -m gptdecoder <command>``: one entry point, one module per command.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``; this
file only wires them up and turns a UserError into one ``error: ...`` line (exit 2).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from gptdecoder.commands import ablate, bench, compile, explain, export, generate, inspect_masks, lab, pictures, train
from gptdecoder.errors import UserError

# command -> (module implementing it, one-line help)
COMMANDS = {
    "train": (train, "train a model from a YAML config (same as demo.py)"),
    "generate": (generate, "sample from a trained run (text or task), or chat in a REPL"),
    "inspect-masks": (inspect_masks, "step through attention and loss masks for one example, with checks"),
    "ablate": (ablate, "held-out accuracy with each attention head ablated in turn"),
    "pictures": (pictures, "draw the attention lab's pictures of a run (a task's example, or text)"),
    "explain": (explain, "a report on how a model works: heads that matter, their roles, logit lens, the circuit"),
    "bench": (bench, "run a grid of configs x axes x seeds (cached, in parallel) and tabulate the results"),
    "export": (export, "export a run to a Hugging Face transformers directory"),
    "compile": (compile, "a Tracr-compiled RASP program as a run directory (needs the tracr extra)"),
    "lab": (lab, "the live lab: a local page to type prompts, see attention and switch heads off"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gptdecoder", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(_handler=module.run)  # not "run": commands have a --run option
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._handler(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that cannot be written or read (a file where a directory goes, ...)
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
