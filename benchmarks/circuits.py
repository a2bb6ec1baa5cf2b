"""Circuits on the default task models: size, faithfulness and cost, against exact patching.

Run from the repository root:

    python benchmarks/circuits.py                    # trains the four default models into runs/circuits (once)
    python benchmarks/circuits.py --runs DIR [DIR ...]

For each run (default: sort from config.yaml, and copy, recall and addition from
configs/tasks/): the circuit ``explain`` reports (EAP-IG scores, pruned to keep 90% of the
logit difference on 256 clean/corrupted pairs), its share of the edges and the share of
the metric it keeps, against the target (>= 90% with <= 25% of the edges). Then the cost:
EAP on 256 pairs against exact patching of every edge (the baseline it estimates, one
forward pass per edge), timed in the same process, alternating; and ``explain`` on the
sort run with and without the circuit section, as a user runs it.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = {"sort": ROOT / "config.yaml", "copy": ROOT / "configs/tasks/copy.yaml",
            "recall": ROOT / "configs/tasks/recall.yaml", "addition": ROOT / "configs/tasks/addition.yaml"}
PAIRS = 256
TARGET_SHARE, TARGET_EDGES = 0.90, 0.25
TARGET_EAP_SECONDS, TARGET_EXPLAIN_SECONDS = 2.0, 60.0


def train_defaults(out: Path) -> list[Path]:
    """The default models, trained once into ``out``/<task> (a finished run is reused)."""
    runs = []
    for task, config in DEFAULTS.items():
        run = out / task
        if not (run / "results.json").exists():
            print(f"training {task} ({config.relative_to(ROOT)}) into {run} ...", flush=True)
            subprocess.run([sys.executable, "-m", "gptdecoder", "train", "-c", str(config), "--out", str(run),
                            "--no-progress"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        runs.append(run)
    return runs


def timed_explain(run: Path, extra: list[str]) -> float:
    """Wall seconds of ``python -m gptdecoder explain --run RUN`` (a fresh process, as a user runs it)."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gptdecoder", "explain", "--run", str(run), "--out", out, *extra],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, help="run directories (default: train the four defaults)")
    parser.add_argument("--train-dir", type=Path, default=ROOT / "runs" / "circuits",
                        help="where the default models are trained (default runs/circuits)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the targets are for 2 cores)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds for EAP (default 5)")
    args = parser.parse_args(argv)

    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from timing import round_robin
    from gptdecoder.errors import UserError
    from gptdecoder.lab.circuits import edge_scores, find_circuit
    from gptdecoder.lab.pairs import make_pairs
    from gptdecoder.runs import load_model

    torch.set_num_threads(args.threads)
    try:
        runs = args.runs or train_defaults(args.train_dir)
        loaded = [(run, load_model(run)) for run in runs]
    except (UserError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    print(f"\nCircuits ({PAIRS} pairs, EAP-IG, kept share {TARGET_SHARE:.0%}; target >= {TARGET_SHARE:.0%} "
          f"of the metric with <= {TARGET_EDGES:.0%} of the edges)\n")
    print("| task | model | edges | of | share of edges | metric kept | seconds | target |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for run, model in loaded:
        if model.task is None:
            print(f"| {run} | not a task run: skipped |")
            continue
        pairs = make_pairs(model.task, PAIRS)
        start = time.perf_counter()
        circuit = find_circuit(model.model, pairs, method="eap-ig")
        seconds = time.perf_counter() - start
        share = circuit.n_edges / circuit.n_total
        met = circuit.faithfulness >= TARGET_SHARE and share <= TARGET_EDGES
        c = model.model.config
        print(f"| {model.task.name} | {c.n_layer}L {c.n_head}H d{c.d_model} | {circuit.n_edges} | {circuit.n_total} "
              f"| {share:.1%} | {circuit.faithfulness:.1%} | {seconds:.1f} | {'met' if met else 'MISSED'} |")

    two_layer = [(run, m) for run, m in loaded if m.task is not None and m.model.config.n_layer == 2]
    if two_layer:
        run, m = two_layer[0]
        pairs = make_pairs(m.task, PAIRS)
        times = round_robin({"eap": lambda: edge_scores(m.model, pairs, "eap"),
                             "exact": lambda: edge_scores(m.model, pairs, "exact")}, rounds=args.rounds, warmup=1)
        eap, exact = statistics.median(times["eap"]), statistics.median(times["exact"])
        print(f"\nEAP, {m.task.name} ({m.model.config.n_layer} layers, {PAIRS} pairs, {args.threads} threads): "
              f"{eap:.3f} s (target <= {TARGET_EAP_SECONDS:.0f} s: {'met' if eap <= TARGET_EAP_SECONDS else 'MISSED'}); "
              f"exact patching of every edge: {exact:.2f} s; EAP is {exact / eap:.0f}x faster")

    sort_runs = [run for run, m in loaded if m.task is not None and m.task.name == "sort"]
    if sort_runs:
        run = sort_runs[0]
        without = timed_explain(run, ["--no-circuit"])
        with_circuit = timed_explain(run, [])
        print(f"explain on {run}: {with_circuit:.1f} s with the circuit section (target <= "
              f"{TARGET_EXPLAIN_SECONDS:.0f} s: {'met' if with_circuit <= TARGET_EXPLAIN_SECONDS else 'MISSED'}); "
              f"{without:.1f} s with --no-circuit ({with_circuit / without:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
