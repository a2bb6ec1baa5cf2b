"""Run the model benchmarks and write what they print into README.md.

The figures in the README's "Benchmarks" section are this script's output, never typed by hand: each
benchmark measures its baseline in the same run and prints its own ratio, and this
script only collects those lines (with the machine and torch version they came from)
between the two marker comments in README.md.

    python benchmarks/report.py             # run them and rewrite the README section
    python benchmarks/report.py --dry-run   # run them and print the section only
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from gptdecoder import runtime

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
# (script and its arguments, the lines of its output that carry the figures, by their start)
GENERATE_LINES = ("shape:", "same greedy", "kv-cache", "full-recompute", "speed-up")
BENCHMARKS = [
    (["train_step.py", "--rounds", "9"], ("shape:", "ours ", "HF ", "speed-ups", "  ours")),
    (["hooks_overhead.py"], ("shape:", "train step", "  -> ratio", "forward capturing")),
    (["generate_speed.py"], GENERATE_LINES),  # torch's default thread count
    (["generate_speed.py", "--threads", "1"], GENERATE_LINES),  # what `generate` uses by default
    (["circuits.py"], ("Circuits", "|", "EAP,", "explain on")),  # trains the four default models once
    (["tracr_circuits.py"], ("Edge ROC", "|", "lowest")),
    (["live_lab.py"], ("model:", "one /api", "load:", "first contentful")),
]


def run(command: list[str], keep: tuple[str, ...]) -> list[str]:
    """The output lines of ``benchmarks/<command>`` that start with one of ``keep``."""
    print(f"running benchmarks/{' '.join(command)} ...", flush=True)
    out = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], capture_output=True, text=True,
                         check=True).stdout
    return [line.rstrip() for line in out.splitlines() if line.startswith(keep)]


def section() -> str:
    machine = (f"{os.cpu_count()} CPU cores ({platform.machine()}, native bf16: "
               f"{'yes' if runtime.cpu_has_native_bf16() else 'no'}), torch {torch.__version__}, "
               f"{datetime.date.today().isoformat()}")
    lines = [START, "", f"Printed by `python benchmarks/report.py` on {machine}:", ""]
    for command, keep in BENCHMARKS:
        lines += [f"`python benchmarks/{' '.join(command)}`", "", "```", *run(command, keep), "```", ""]
    return "\n".join(lines + [END])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the section instead of writing README.md")
    args = parser.parse_args()
    text = section()
    if args.dry_run:
        print(text)
        return 0
    readme = README.read_text()
    if START not in readme or END not in readme:
        print(f"error: {README} has no {START} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = readme.split(START, 1)
    README.write_text(head + text + rest.split(END, 1)[1])
    print(f"wrote the benchmark section of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
