"""Grid wall time: ``bench --workers 1`` (one cell after another) vs ``--workers N`` (a process pool).

The same small grid -- sort and reverse x 2 widths x 2 seeds = 8 cells, each a fixed
number of steps (no early stop, so every run does the same work) -- is run by the
command line as a user would, into fresh output directories (nothing cached), once
serially and once with N workers (default: one per core). Rounds alternate the order
(ABBA) so drifting load hits both alike; the figure is the median ratio over rounds.
It also checks that both give the same numbers, and prints the load average, since the
machine may be shared. On Linux with autogroup scheduling (kernel.sched_autogroup_enabled=1)
the CPU is shared between sessions, not processes: while another session keeps the cores
busy, this one gets its share however many workers it runs, and the speed-up shrinks
towards 1 -- the figure means something only on an otherwise idle machine.

    python benchmarks/bench_workers.py [--workers N] [--iters 150] [--rounds 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from timing import alternating, paired_ratio

ROOT = Path(__file__).resolve().parent.parent


def grid_file(directory: Path, iters: int) -> Path:
    spec = {
        "base": [str(ROOT / "configs" / "tasks" / "sort.yaml"), str(ROOT / "configs" / "tasks" / "reverse.yaml")],
        "axes": {"model.d_model": [32, 64]},
        "seeds": [0, 1],
        "set": [f"train.max_iters={iters}", "train.max_seconds=null", "train.stop_at_accuracy=null",
                "train.batch_size=128", f"train.eval_interval={iters}", "eval.examples=500",
                "eval.train_examples=200"],
    }
    path = directory / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_grid(grid: Path, out: Path, workers: int) -> float:
    """Seconds for ``python -m gptdecoder bench -c GRID --out OUT --workers N``, process start included."""
    cmd = [sys.executable, "-m", "gptdecoder", "bench", "-c", str(grid), "--out", str(out), "--workers", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or "0 failed" not in done.stdout:
        sys.exit(f"bench failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def cells(out: Path) -> list[dict]:
    """The grid's rows (results.json)."""
    return json.loads((out / "results.json").read_text())


def autogroup() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool size (default: os.cpu_count())")
    parser.add_argument("--iters", type=int, default=150, help="training steps per cell")
    parser.add_argument("--rounds", type=int, default=1, help="serial + pool pairs to time")
    args = parser.parse_args()
    if args.workers < 2:
        parser.error(f"--workers {args.workers}: expected 2 or more (it is compared with --workers 1)")
    print(f"{os.cpu_count()} cores; 8 cells of {args.iters} steps; --workers 1 vs --workers {args.workers}")
    if autogroup():
        print("note: autogroup scheduling is on: other sessions' load caps this one's share of the cores")
    times: dict[int, list[float]] = {1: [], args.workers: []}
    numbers: dict[tuple[int, int], list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        grid = grid_file(tmp, args.iters)
        for r, workers in alternating(range(args.rounds), [1, args.workers]):
            out = tmp / f"round{r}-workers{workers}"
            load = os.getloadavg()[0]
            times[workers].append(run_grid(grid, out, workers))
            rows = cells(out)
            numbers[r, workers] = [(row["test_accuracy"], row["final_loss"]) for row in rows]
            # the cells' own training seconds, summed: how fast each cell ran, whatever ran beside it
            print(f"round {r + 1}: --workers {workers}: {times[workers][-1]:.1f} s wall, cells' training "
                  f"{sum(row['train_seconds'] for row in rows):.1f} s in all (load average before: {load:.2f}, "
                  f"after: {os.getloadavg()[0]:.2f})", flush=True)
            if len(times[1]) == len(times[args.workers]):  # both halves of this round are done
                same = "same numbers" if numbers[r, 1] == numbers[r, args.workers] else "DIFFERENT NUMBERS"
                print(f"round {r + 1}: speed-up {times[1][-1] / times[args.workers][-1]:.2f}x ({same})", flush=True)
    print(f"speed-up of --workers {args.workers} over --workers 1: {paired_ratio(times, 1, args.workers):.2f}x "
          f"(median of {args.rounds} round(s))")

if __name__ == "__main__":
    main()
