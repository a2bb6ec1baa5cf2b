"""``python -m gptdecoder bench -c configs/bench.yaml``: a grid of runs -- base configs x axes x seeds.

The grid itself (cells, cache, executors, summaries) is ``gptdecoder.bench``; this
command reads the arguments, shows progress, and writes the output directory:

* ``results.csv`` / ``results.json``: one row per cell (``bench.summaries.row_columns``:
  base, one column per axis, seed, status, error, learned, then ``RESULT_FIELDS``, cell);
* ``results.md``: mean +- std and min-max over seeds per variant, how many seeds learned
  their training lengths, and the exact and per-token accuracy at 1.5x and 2x the
  longest training length over the seeds that learned;
* ``results.png`` (accuracy and training time per task and variant) and ``length.png``
  (accuracy against test length, one panel per task; a variant that did not learn dashed);
* ``cells/<hash>/``: each cell's run directory and its ``result.json``.
"""
from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from gptdecoder import bench
from gptdecoder.errors import UserError
from gptdecoder.storage import write_atomic

HELP_EPILOG = """\
bench file (YAML):
  base: configs/tasks/sort.yaml      # a config file, a list of them, or {label: config file}
  axes:                              # dotted config keys (as in --set) -> the values to try,
    model.d_model: [32, 64]          #   as a list, or as {name: value} to label them by name
    task.params.length: [6, 8]
  seeds: [0, 1, 2]                   # train.seed of each cell
  set: [train.max_seconds=60]        # overrides applied to every cell
  out: runs/bench                    # default: runs/<bench file stem>
  learned_threshold: 0.99            # held-out accuracy a cell must reach to count as learned

Cells are the product of the bases, the axes and the seeds; every cell's config is built
and checked before anything trains. Each cell trains into OUT/cells/<hash>/, with plots
off and one torch thread unless set otherwise; the hash covers its resolved config, the
training code (model, tasks, data, training loop: editing them retrains) and torch's
version -- not its labels: renaming a base or a named axis value re-summarises the grid
without training it again. Re-running a grid skips the cells that finished: an
interrupted grid (even one killed outright) resumes where it stopped. Failed cells (an
exception, a non-finite loss) are recorded with their error, the grid goes on, and they
are retried on the next run. A cell below learned_threshold is marked "did not learn" and
left out of the accuracy at longer lengths.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = HELP_EPILOG
    parser.add_argument("-c", "--config", default="configs/bench.yaml", help="bench file (default: configs/bench.yaml)")
    parser.add_argument("--out", help="output directory (default: the bench file's out, else runs/<its stem>)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="cells trained at once (default: one per core, os.cpu_count()); 1 trains in this "
                             "process, one cell after another; with --executor ray, the local Ray's CPUs")
    parser.add_argument("--executor", choices=bench.EXECUTORS, default="pool",
                        help="pool: local processes (default); ray: a Ray cluster (RAY_ADDRESS if set, else a "
                             "local one with --workers CPUs; run directories are written where the cells run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every cell, e.g. --set train.max_seconds=60 (repeatable)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="list the cells (cached, failed or to run) and write nothing")
    mode.add_argument("--summarise-only", "--summarize-only", action="store_true",
                      help="train nothing: write results.* and the figures from the cells already trained, "
                           "under the bench file's current labels; cells not trained yet are listed as missing")


def run(args: argparse.Namespace) -> int:
    spec = bench.load_bench(args.config)
    out = Path(args.out or spec.out)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise UserError(f"--workers {workers}: expected a positive number")
    cells = bench.expand(spec, args.set, out)  # every config checked before anything trains
    if args.dry_run:
        for cell, record in zip(cells, bench.recorded(cells)):
            state = {"ok": "cached", "failed": "failed, to retry"}.get(record["status"], "to run")
            print(f"{cell.key}  {state}  {cell.describe()}")
        return 0
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot use {str(out)!r} as the output directory: {e.strerror or e}") from None
    if Path(spec.path).resolve() != (out / "bench.yaml").resolve():
        write_atomic(out / "bench.yaml", Path(spec.path).read_bytes())  # the grid these results are of
    if args.summarise_only:
        print(f"bench {spec.path}: {len(cells)} cells, summarised from {out}/cells (nothing trained)", flush=True)
        records = bench.recorded(cells)
    else:
        records, cached = train_cells(spec.path, cells, out, workers, args.executor)
    rows = [bench.row_of(cell, record, spec.learned_threshold) for cell, record in zip(cells, records)]
    write_results(rows, list(spec.axes), out, spec.path, spec.learned_threshold)
    count = Counter(r["status"] for r in rows)
    rest = f"{cached} cached" if not args.summarise_only else f"{count['missing']} missing" + (
        " (not trained: run without --summarise-only to train them)" if count["missing"] else "")
    print(f"{count['ok']} ok, {count['failed']} failed, {rest}: "
          f"{out}/results.md, results.csv, results.json, results.png, length.png")
    return 0


def train_cells(bench_path: str, cells: Sequence[bench.Cell], out: Path, workers: int,
                executor: str) -> tuple[list[dict], int]:
    """Train what is not cached, with progress; returns every cell's record and how many were cached."""
    progress = Progress(len(cells))
    where = "in this process" if (workers == 1 and executor == "pool") else f"{executor}, {workers} workers"
    print(f"bench {bench_path}: {len(cells)} cells ({where}) -> {out}", flush=True)
    try:
        return bench.run_cells(cells, workers, executor, progress.update), progress.cached
    finally:
        progress.close()


class Progress:
    """One bar for the grid on a terminal (cells done / failed / cached), a line per cell otherwise."""

    def __init__(self, total: int) -> None:
        from tqdm.auto import tqdm

        self.total, self.done, self.failed, self.cached = total, 0, 0, 0
        self.bar = tqdm(total=total, unit="cell", dynamic_ncols=True, disable=None)
        self.lines = self.bar.disable

    def update(self, cell: bench.Cell, record: dict, cached: bool) -> None:
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


def write_results(rows: Sequence[dict], axes: Sequence[str], out: Path, bench_path: str,
                  learned_threshold: float) -> None:
    """results.json, results.csv, results.md (``bench.write_tables``), results.png and length.png into ``out``."""
    bench.write_tables(rows, axes, out, bench_path, learned_threshold)
    from gptdecoder.commands.files import save_figure  # matplotlib: only when a figure is drawn
    from gptdecoder.lab.bench_figures import bench_figure, bench_length_figure

    labels = bench.base_labels(list(dict.fromkeys(r["base"] for r in rows)))
    bars = [{"task": labels[r["base"]], "model": bench.variant_label({a: r[a] for a in axes}),
             "test_accuracy": r["test_accuracy"], "train_seconds": r["train_seconds"]}
            for r in rows if r["status"] == "ok"]
    save_figure(bench_figure(bars), out / "results.png")
    points = bench.length_points(rows, axes)
    save_figure(bench_length_figure(points, labels), out / "length.png")


def _percent(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.1%}"
