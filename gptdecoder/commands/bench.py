"""``python -m gptdecoder bench -c configs/bench.yaml``: a grid of runs -- base configs x axes x seeds.

The grid itself (cells, cache, executors, summaries) is ``gptdecoder.grid``; this
command reads the arguments, shows progress, and writes the output directory:

* ``results.csv`` / ``results.json``: one row per cell (base, one column per axis,
  seed, status, error, test_accuracy, accuracy_by_length, train_max_length,
  train_seconds, params, iters, final_loss, cell);
* ``results.md``: mean +- std and min-max over seeds per variant, and the accuracy at
  1.5x and 2x the longest training length per task and variant;
* ``results.png`` (accuracy and training time per task and variant) and ``length.png``
  (accuracy against test length, one panel per task);
* ``cells/<hash>/``: each cell's run directory and its ``result.json``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
from pathlib import Path
from typing import Optional, Sequence

from gptdecoder import grid
from gptdecoder.errors import UserError
from gptdecoder.lab.report import json_ready
from gptdecoder.lab.report import json_ready
from gptdecoder.storage import write_atomic

HELP_EPILOG = """\
bench file (YAML):
  base: configs/tasks/sort.yaml      # a config file, or a list of them
  axes:                              # dotted config keys (as in --set) -> the values to try
    model.d_model: [32, 64]
    task.params.length: [6, 8]
  seeds: [0, 1, 2]                   # train.seed of each cell
  set: [train.max_seconds=60]        # overrides applied to every cell
  out: runs/bench                    # default: runs/<bench file stem>

Cells are the product of the bases, the axes and the seeds; every cell's config is built
and checked before anything trains. Each cell trains into OUT/cells/<hash>/, with plots
off and one torch thread unless set otherwise; the hash covers its resolved config, the
training code (model, tasks, data, training loop: editing them retrains) and torch's version.
Re-running a grid skips the cells that finished: an interrupted grid resumes where it
stopped. Failed cells (an exception, a non-finite loss) are recorded with their error,
the grid goes on, and they are retried on the next run.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = HELP_EPILOG
    parser.add_argument("-c", "--config", default="configs/bench.yaml", help="bench file (default: configs/bench.yaml)")
    parser.add_argument("--out", help="output directory (default: the bench file's out, else runs/<its stem>)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="cells trained at once (default: one per core, os.cpu_count()); 1 trains in this "
                             "process, one cell after another; with --executor ray, the local Ray's CPUs")
    parser.add_argument("--executor", choices=grid.EXECUTORS, default="pool",
                        help="pool: local processes (default); ray: a Ray cluster (RAY_ADDRESS if set, else a "
                             "local one with --workers CPUs; run directories are written where the cells run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every cell, e.g. --set train.max_seconds=60")
    parser.add_argument("--dry-run", action="store_true", help="list the cells (and which are cached), train nothing")


def run(args: argparse.Namespace) -> int:
    bench = grid.load_bench(args.config)
    out = Path(args.out or bench.out)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise UserError(f"--workers {workers}: expected a positive number")
    cells = grid.expand(bench, args.set, out)  # every config checked before anything trains
    if args.dry_run:
        for cell in cells:
            print(f"{cell.key}  {'cached' if grid.cached_record(cell) else 'to run'}  {cell.describe()}")
        return 0
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot use {str(out)!r} as the output directory: {e.strerror or e}") from None
    if Path(bench.path).resolve() != (out / "bench.yaml").resolve():
        write_atomic(out / "bench.yaml", Path(bench.path).read_bytes())  # the grid these results are of
    progress = Progress(len(cells))
    where = "in this process" if (workers == 1 and args.executor == "pool") else f"{args.executor}, {workers} workers"
    print(f"bench {bench.path}: {len(cells)} cells ({where}) -> {out}", flush=True)
    try:
        records = grid.run_cells(cells, workers, args.executor, progress.update)
    finally:
        progress.close()
    rows = [grid.row_of(cell, record) for cell, record in zip(cells, records)]
    write_results(rows, list(bench.axes), out, bench.path)
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"{len(rows) - failed} ok, {failed} failed ({progress.cached} cached): "
          f"{out}/results.md, results.csv, results.json, results.png, length.png")
    return 0


class Progress:
    """One bar for the grid on a terminal (cells done / failed / cached), a line per cell otherwise."""

    def __init__(self, total: int) -> None:
        from tqdm.auto import tqdm

        self.total, self.done, self.failed, self.cached = total, 0, 0, 0
        self.bar = tqdm(total=total, unit="cell", dynamic_ncols=True, disable=None)
        self.lines = self.bar.disable

    def update(self, cell: grid.Cell, record: dict, cached: bool) -> None:
        self.done += 1
        self.cached += cached
        self.failed += record.get("status") != "ok"
        results = record.get("results") or {}
        if record.get("status") == "ok":
            what = f"ok, test {_percent(results.get('test_accuracy'))}, {results.get('train_seconds', 0):.1f} s"
        else:
            what = f"FAILED: {record.get('error', '')}"
        line = f"[{self.done}/{self.total}] {cell.describe()}: {'cached, ' if cached else ''}{what}"
        if self.lines:
            print(line, flush=True)
        else:
            if record.get("status") != "ok":
                self.bar.write(line)
            self.bar.set_postfix(failed=self.failed, cached=self.cached, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# -- the output directory ----------------------------------------------------------------------


def write_results(rows: Sequence[dict], axes: Sequence[str], out: Path, bench_path: str = "") -> None:
    """results.json, results.csv, results.md, results.png and length.png into ``out``."""
    # strict JSON: a NaN or infinite number (a diverged run's loss) is written as null
    write_atomic(out / "results.json", json.dumps(json_ready(list(rows)), indent=2, default=str, allow_nan=False) + "\n")
    write_atomic(out / "results.csv", results_csv(rows, axes))
    write_atomic(out / "results.md", results_markdown(rows, axes, bench_path))
    from gptdecoder.commands.files import save_figure  # matplotlib: only when a figure is drawn
    from gptdecoder.lab.figures import bench_figure, bench_length_figure

    labels = grid.base_labels(list(dict.fromkeys(r["base"] for r in rows)))
    bars = [{"task": labels[r["base"]], "model": grid.variant_label({a: r[a] for a in axes}),
             "test_accuracy": r["test_accuracy"], "train_seconds": r["train_seconds"]}
            for r in rows if r["status"] == "ok"]
    save_figure(bench_figure(bars), out / "results.png")
    save_figure(bench_length_figure(grid.length_points(rows, axes), labels), out / "length.png")


def columns(axes: Sequence[str]) -> list[str]:
    return ["base", *axes, "seed", "status", "error", "test_accuracy", "accuracy_by_length", "train_max_length",
            "train_seconds", "params", "iters", "final_loss", "cell"]


def results_csv(rows: Sequence[dict], axes: Sequence[str]) -> str:
    """The rows as CSV; dicts and lists (accuracy_by_length, list-valued axes) as JSON."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns(axes), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else v)
                         for k, v in row.items()})
    return text.getvalue()


def results_markdown(rows: Sequence[dict], axes: Sequence[str], bench_path: str = "") -> str:
    summary = grid.summarise(rows, axes)
    labels = grid.base_labels(list(dict.fromkeys(r["base"] for r in rows)))
    failed = [r for r in rows if r["status"] != "ok"]
    lines = [f"# Benchmark{' ' + bench_path if bench_path else ''}", "",
             f"{len(rows)} cells, {len(rows) - len(failed)} ok, {len(failed)} failed. Held-out exact match "
             "over the seeds of each variant: mean ± sample std (± 0 with one seed), then min–max; "
             "failed cells are left out of the numbers.", ""]
    head = ["task", *axes, "seeds ok", "test accuracy", "min–max", "train s", "params"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in summary:
        acc, seconds = entry["test_accuracy"], entry["train_seconds"]
        lines.append("| " + " | ".join([
            labels[entry["base"]], *(_cell(entry["values"][a]) for a in axes), f"{entry['ok']}/{entry['seeds']}",
            f"{acc['mean']:.1%} ± {acc['std']:.1%}" if acc else "—",
            f"{acc['min']:.1%}–{acc['max']:.1%}" if acc else "—",
            f"{seconds['mean']:.1f}" if seconds else "—",
            f"{entry['params']:,}" if entry["params"] is not None else "—",
        ]) + " |")
    lines += ["", "## Length generalisation", "",
              "Exact match at 1.5× and 2× the longest training length, mean ± std over seeds. Where that "
              "length was not tested, the longest tested length below it is used: `@N` names the length "
              "each number is measured at (`@N` at or below the training length means no longer input was "
              "tested there; raise eval.longer_by). — : no length data.", ""]
    variants = list(dict.fromkeys(grid.variant_label(e["values"]) for e in summary))
    bases = list(dict.fromkeys(e["base"] for e in summary))
    for factor in ("1.5x", "2x"):
        lines += [f"**{factor.replace('x', '×')}**", "", "| task | " + " | ".join(variants) + " |",
                  "|---|" + "---|" * len(variants)]
        for base in bases:
            cells = []
            for variant in variants:
                entry = next((e for e in summary if e["base"] == base and grid.variant_label(e["values"]) == variant),
                             None)
                value = entry and entry[f"at_{factor}"]
                cells.append(f"{value['mean']:.1%} ± {value['std']:.1%} @{value['length']}" if value else "—")
            lines.append(f"| {labels[base]} | " + " | ".join(cells) + " |")
        lines.append("")
    if failed:
        lines += ["## Failed cells", "", "| task | " + " | ".join([*axes, "seed", "error"]) + " |",
                  "|---|" + "---|" * (len(axes) + 2)]
        for row in failed:
            lines.append(f"| {labels[row['base']]} | " + " | ".join(
                [*(_cell(row[a]) for a in axes), str(row["seed"]), _cell(row["error"])]) + " |")
        lines.append("")
    return "\n".join(lines)


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|")


def _percent(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.1%}"
