"""``python -m gptdecoder ablate --run PATH``: which heads does a trained task model depend on?

Each head in turn is ablated (its ``hook_z`` slice replaced by zeros, or by its mean
over the held-out set) and the held-out exact match is measured again. Writes
``ablation_<mode>.md`` (a markdown table), ``.csv`` and ``.png`` (a layer x head
heatmap) and prints the table. The work is done by ``gptdecoder.lab.ablation``.

``--run`` is a run directory, a Hugging Face GPT-2 directory or a nanoGPT checkpoint.
A task run brings its task and receives the files; any other model takes the task from
``-c CONFIG`` (see ``gptdecoder.runs.task_for``) and needs ``--out``: a directory we did
not write is not ours to add files to.
"""
from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from gptdecoder.storage import write_atomic
from gptdecoder.commands import add_model_arguments
from gptdecoder.errors import UserError
from gptdecoder.lab.ablation import ablation_rows, encode_examples, head_ablation_scores, markdown_table
from gptdecoder.runs import load_model, task_for

CSV_FIELDS = ["layer", "head", "accuracy", "drop"]


def csv_text(rows: list[dict]) -> str:
    """The ablation rows as CSV, one line per head."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--mode", choices=("zero", "mean"), default="zero",
                        help="replace the head's output by zeros, or by its mean over the held-out set")
    parser.add_argument("--examples", type=int, default=1000, help="held-out examples to score (default 1000)")
    parser.add_argument("--out", help="where to write the table and heatmap (default: the run directory; "
                                      "required for other models)")


def run(args: argparse.Namespace) -> int:
    # matplotlib is imported only when the command runs: cli.py imports every command
    # module to build its parser, and the other commands should not pay for it
    from gptdecoder.commands.files import save_figure
    from gptdecoder.lab.figures import plot_head_scores

    if args.examples < 1:
        raise UserError(f"--examples {args.examples}: expected at least 1")
    loaded = load_model(args.run_dir, device="cpu")
    model, task = loaded.model, task_for(loaded, args.config)
    if args.out is None and loaded.kind != "run":
        raise UserError(f"{loaded.description}: pass --out DIR for the table and heatmap "
                        f"(they go into a run directory only when it is one of ours)")
    examples = task.test_examples(args.examples, seed=0)
    if not examples:
        raise UserError(f"task {task.name!r} has no held-out examples to score")
    data = encode_examples(examples, task)
    baseline, scores = head_ablation_scores(model, data, args.mode)
    rows = ablation_rows(baseline, scores)

    out = Path(args.out or loaded.path)
    stem = f"ablation_{args.mode}"
    table = markdown_table(rows, baseline, args.mode)
    write_atomic(out / f"{stem}.md", table)
    write_atomic(out / f"{stem}.csv", csv_text(rows))
    figure = plot_head_scores(scores.numpy(), f"{task.name}: held-out accuracy with one head {args.mode}-ablated",
                              "exact-match accuracy", baseline=baseline)
    save_figure(figure, out / f"{stem}.png")
    print(f"{task.name}: {data.x.size(0)} held-out examples")
    print(table)
    print(f"wrote {out / f'{stem}.md'}, .csv and .png")
    return 0
