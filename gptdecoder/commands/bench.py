"""``python -m gptdecoder bench -c configs/bench.yaml``: a grid of tasks x model sizes x seeds.

Each cell is an ordinary training run (its own run directory under ``out``); the grid's
results are gathered into results.csv, results.md (every run, then means per task and
model) and results.png (held-out accuracy and training time per task and model).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
from pathlib import Path

from gptdecoder.config import build_section, load_config, read_yaml_mapping
from gptdecoder.errors import UserError
from gptdecoder.train import train_from_config


@dataclasses.dataclass
class BenchConfig:
    tasks: list = dataclasses.field(default_factory=lambda: ["configs/tasks/sort.yaml"])  # task config files
    models: dict = dataclasses.field(default_factory=lambda: {"small": {}})  # name -> model section overrides
    seeds: list = dataclasses.field(default_factory=lambda: [0])
    set: list = dataclasses.field(default_factory=list)  # --set overrides applied to every run
    out: str = "runs/bench"


COLUMNS = ["task", "model", "seed", "params", "iters", "train_seconds", "tokens_per_second",
           "train_accuracy", "test_accuracy", "test_examples"]


def load_bench(path: str) -> BenchConfig:
    raw = read_yaml_mapping(path, "bench config")
    bench = build_section(BenchConfig, raw, "bench")
    for name, section in bench.models.items():
        if not isinstance(section, dict):
            raise UserError(f"bench.models.{name} must be a mapping of model keys, e.g. {{n_layer: 2}}")
    return bench


def run_grid(bench: BenchConfig, extra_overrides: list[str] = ()) -> list[dict]:
    """Train every (task, model, seed) cell; returns one row per run."""
    # build and validate every config first, so a typo fails before hours of training
    cells = []
    for task_path in bench.tasks:
        for model_name, model_keys in bench.models.items():
            for seed in bench.seeds:
                overrides = [f"model.{k}={v}" for k, v in model_keys.items()]
                overrides += [f"train.seed={seed}", "output.plots=false", *bench.set, *extra_overrides]
                config = load_config(task_path, overrides)
                run_dir = str(Path(bench.out) / f"{Path(task_path).stem}-{model_name}-s{seed}")
                config = dataclasses.replace(config, output=dataclasses.replace(config.output, dir=run_dir))
                cells.append((Path(task_path).stem, model_name, seed, config))
    rows = []
    for i, (task_name, model_name, seed, config) in enumerate(cells, 1):
        r = train_from_config(config, progress=False, verbose=False)
        row = {"task": task_name, "model": model_name, "seed": seed, **{k: r[k] for k in COLUMNS[3:]}}
        rows.append(row)
        print(f"[{i}/{len(cells)}] {task_name:10s} {model_name:8s} seed {seed}: "
              f"{r['test_accuracy']:.2%} in {r['iters']} iters, {r['train_seconds']:.1f} s", flush=True)
    return rows


def write_results(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    lines = ["# Benchmark", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |")
    lines += ["", "## Mean over seeds", "", "| task | model | params | test_accuracy | train_seconds | iters |",
              "|---|---|---|---|---|---|"]
    for (task, model), group in _groups(rows).items():
        lines.append(
            f"| {task} | {model} | {group[0]['params']:,} | {statistics.mean(r['test_accuracy'] for r in group):.2%} "
            f"| {statistics.mean(r['train_seconds'] for r in group):.1f} | {statistics.mean(r['iters'] for r in group):.0f} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    from gptdecoder.commands.files import save_figure  # matplotlib: only when a figure is drawn
    from gptdecoder.lab.figures import bench_figure

    save_figure(bench_figure(rows), out / "results.png")


def _groups(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["model"]), []).append(row)
    return groups


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="configs/bench.yaml", help="bench grid (default: configs/bench.yaml)")
    parser.add_argument("--out", help="output directory (default: the grid's out)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override applied to every run, e.g. --set train.max_seconds=60")


def run(args: argparse.Namespace) -> int:
    bench = load_bench(args.config)
    if args.out:
        bench.out = args.out
    rows = run_grid(bench, args.set)
    write_results(rows, Path(bench.out))
    print(f"results: {bench.out}/results.md, results.csv, results.png")
    return 0
