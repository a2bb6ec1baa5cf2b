"""The length-generalisation study's targets, printed from its two grids.

The study is two bench files: configs/bench/length_generalization.yaml (sort, copy, reverse
and addition under five position encodings, 3 seeds) and
configs/bench/length_generalization_coupled.yaml (the shipped position-coupling configs,
3 seeds). With ``--run`` this script runs both, as a user would (``python -m gptdecoder
bench -c FILE --workers N``), and times each whole command; without it, it reads the
results.json files the bench command wrote. Then it prints each target of the study --
mean ± std over seeds, the seeds that met it, and met / missed -- and the training time of
each shipped coupled config. Cells already trained are cached by the bench command, so a
timed ``--run`` must start from empty output directories (``--fresh`` moves them aside).
Absolute times depend on the machine and on what else it runs: the load average is printed.

    python benchmarks/length_generalization.py [--run [--fresh] [--workers 2]]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "configs" / "bench" / "length_generalization.yaml"
COUPLED = ROOT / "configs" / "bench" / "length_generalization_coupled.yaml"
OUTS = {STUDY: ROOT / "runs" / "length_generalization", COUPLED: ROOT / "runs" / "length_generalization_coupled"}
STUDY_MINUTES, CONFIG_MINUTES = 40, 5

# (what, grid, base, variant (model axis value or None), length, at least)
TARGETS = [
    ("addition_coupled, exact match at 20 digits (2x)", COUPLED, "addition", None, 20, 0.95),
    ("addition_coupled, exact match at 30 digits (3x; a goal)", COUPLED, "addition", None, 30, 0.90),
    ("copy_coupled, exact match at 16 (2x)", COUPLED, "copy", None, 16, 0.95),
    ("reverse_coupled, exact match at 16 (2x)", COUPLED, "reverse", None, 16, 0.95),
    ("copy, randomized positions sampled at evaluation, at 12 (1.5x)", STUDY, "configs/bench/lengthgen_copy.yaml",
     "learned+random", 12, 0.80),
    ("sort, NoPE, at 16 (2x)", STUDY, "configs/bench/lengthgen_sort.yaml", "nope", 16, 0.98),
]


def run_grid(bench: Path, workers: int, fresh: bool) -> float:
    """Run one bench file with the command line; returns its wall time in seconds."""
    out = OUTS[bench]
    if fresh and out.exists():
        aside = out.with_name(out.name + f".before-{int(time.time())}")
        out.rename(aside)
        print(f"moved {out} aside to {aside}", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gptdecoder", "bench", "-c", str(bench), "--workers", str(workers)],
                   cwd=ROOT, check=True)
    return time.perf_counter() - start


def read_rows(bench: Path) -> list[dict]:
    path = OUTS[bench] / "results.json"
    if not path.is_file():  # a user error: one line, exit 2
        print(f"error: {path} is missing: run `python -m gptdecoder bench -c {bench.relative_to(ROOT)}` "
              "first, or this script with --run", file=sys.stderr)
        raise SystemExit(2)
    return json.loads(path.read_text())


def percent(values: list[float]) -> str:
    if not values:
        return "no data"
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f}% ± {100 * std:.1f}%"


def target_line(rows: list[dict], base: str, variant: Optional[str], length: int, at_least: float) -> str:
    chosen = [r for r in rows if r["base"] == base and (variant is None or r.get("model") == variant)]
    ok = [r for r in chosen if r["status"] == "ok"]
    scores = [r["accuracy_by_length"][str(length)] for r in ok if str(length) in (r["accuracy_by_length"] or {})]
    tokens = [r["token_accuracy_by_length"][str(length)] for r in ok
              if str(length) in (r.get("token_accuracy_by_length") or {})]
    learned = sum(1 for r in ok if r.get("learned"))
    met = sum(1 for s in scores if s >= at_least)
    verdict = "met" if scores and met == len(chosen) else "MISSED"
    return (f"{percent(scores)} exact (per token {percent(tokens)}); {met} of {len(chosen)} seeds >= "
            f"{100 * at_least:.0f}%, {learned} learned their training lengths -> {verdict}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="run both grids (else read their results.json)")
    parser.add_argument("--fresh", action="store_true", help="with --run: move earlier outputs aside, so nothing is cached")
    parser.add_argument("--workers", type=int, default=2, help="bench --workers (default 2)")
    args = parser.parse_args(argv)
    walls: dict[Path, float] = {}
    if args.run:
        for bench in (STUDY, COUPLED):
            walls[bench] = run_grid(bench, args.workers, args.fresh)
    rows = {bench: read_rows(bench) for bench in (STUDY, COUPLED)}

    print(f"length-generalisation study; {os.cpu_count()} CPU cores, load average now "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("\ntargets (mean ± std over seeds):")
    for what, bench, base, variant, length, at_least in TARGETS:
        print(f"  {what}: {target_line(rows[bench], base, variant, length, at_least)}")

    print("\ntime:")
    for bench in (STUDY, COUPLED):
        ok = [r for r in rows[bench] if r["status"] == "ok"]
        train = sum(r["train_seconds"] or 0 for r in ok)
        wall = (f"{walls[bench] / 60:.1f} min wall time with --workers {args.workers} (measured)" if bench in walls
                else "wall time not measured here (--run measures it)")
        print(f"  {bench.relative_to(ROOT)}: {len(rows[bench])} cells, {wall}; "
              f"{train / 60:.1f} min of training summed over cells")
    if walls:
        total = sum(walls.values()) / 60
        print(f"  the whole study: {total:.1f} min (target <= {STUDY_MINUTES} min) -> "
              f"{'met' if total <= STUDY_MINUTES else 'MISSED'}")
    for row in rows[COUPLED]:
        if row["status"] == "ok":
            minutes = row["train_seconds"] / 60
            print(f"  {row['base']} seed {row['seed']}: {minutes:.1f} min of training (one thread, beside another "
                  f"cell; target <= {CONFIG_MINUTES} min) -> {'met' if minutes <= CONFIG_MINUTES else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
