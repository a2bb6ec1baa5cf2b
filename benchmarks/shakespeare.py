"""Tiny Shakespeare benchmark: our char config against nanoGPT's CPU "baby GPT" recipe.

Run from the repository root, with a local nanoGPT checkout (it is copied to a
temporary directory and run there; nothing is written into it):

    python benchmarks/shakespeare.py --nanogpt /path/to/nanoGPT --set data.path=../shared/data/tinyshakespeare/input.txt
    python benchmarks/shakespeare.py --set data.path=../shared/data/tinyshakespeare/input.txt   # nanoGPT's recorded figures
    python benchmarks/shakespeare.py --nanogpt /path/to/nanoGPT --rounds 2 --skip-budget-run

The baseline is the recipe nanoGPT's README gives for CPUs (4 layers, 4 heads, d_model
128, context 64, batch 12, lr 1e-3, 2,000 iterations, fp32); ours is ``--config``
(configs/shakespeare_char.yaml). Measurements, in order:

0. With ``--nanogpt DIR``: both recipes as whole processes, one after the other --
   nanoGPT's prepare.py on our corpus (``data.path``; untimed), then its train.py, and
   ``python -m gptdecoder train -c CONFIG``. Wall time covers everything a user waits
   for (imports, training, evaluations, checkpoints); the figure is ours / nanoGPT.
   nanoGPT's printed val loss is an estimate from 20 random batches, so its final
   checkpoint is also scored on the whole validation split, as ours is. ``--rounds N``
   repeats the pair, alternating which goes first, and reports the median of the
   per-round ratios (a round's two runs see similar load from other processes).
1. Our config as written, trained step by step in this process, scoring the whole
   validation split every ``--eval-every`` iterations (not counted as training time):
   the first training time at which val loss <= the target, and the loss at the end.
   The target is the loss nanoGPT's model ended at in step 0 (whole split), else its
   recorded figure; the time is compared with nanoGPT's training time to that loss
   (the step times it logs, evaluations left out).
2. The same recipe stretched over ``--budget`` seconds: max_iters is planned from run
   1's speed so the lr schedule ends on time, and the run stops at the budget anyway;
   its final val loss is "the loss at 60 s".

Without a checkout, nanoGPT's figures are ones recorded earlier, printed as such, and
ratios against them say "vs recorded". Timings depend on what else runs on the machine,
so each measurement is followed by how many cores other processes kept busy meanwhile
(from /proc/stat); that is why only figures from one invocation are compared.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from gptdecoder.config import Config, load_config
from gptdecoder.data.text import ensure_text, prepare_corpus
from gptdecoder.errors import UserError
from gptdecoder.train import Trainer, build_trainer
from baselines import BaselineError, nanogpt_readme_note, prepare_nanogpt, run, run_nanogpt
from timing import paired_ratio

NANOGPT_RECORDED = {
    "val_loss": 1.886, "seconds": 59.5, "iters": 2000,
    "source": "recorded on the project's 2-core dev machine, not measured in this run",
}
# Cores kept busy by other processes (during a run, or of difference between the two
# runs of a round) beyond which the figures get a warning: both recipes use every core,
# so a step that has to share one with another job slows down far more than in proportion.
UNEVEN_LOAD = 0.25


def cpu_jiffies() -> Optional[tuple[int, int]]:
    """(busy, total) clock ticks of all CPUs since boot, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class LoadMeter:
    """How many cores other processes kept busy while this one ran: busy ticks minus ours
    and our finished subprocesses' (the baselines run as children)."""

    def __enter__(self) -> "LoadMeter":
        self.start, self.own, self.wall = cpu_jiffies(), self.cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        end, own, wall = cpu_jiffies(), self.cpu_seconds(), time.perf_counter() - self.wall
        self.cores_used_by_others = None
        if self.start is not None and end is not None:
            busy = (end[0] - self.start[0]) / os.sysconf("SC_CLK_TCK")
            self.cores_used_by_others = max(0.0, busy - (own - self.own)) / wall

    @staticmethod
    def cpu_seconds() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def line(self) -> str:
        cores = self.cores_used_by_others or 0
        return (f"    other processes kept {cores:.2f} cores busy on average"
                + (" -- the times above are slowed by it, more than in proportion" if cores > UNEVEN_LOAD else ""))


# -- step 0: whole processes ---------------------------------------------------------------


def run_ours(args: argparse.Namespace, out_dir: Path) -> dict:
    """``python -m gptdecoder train`` on the config as a subprocess: wall time and results.json."""
    overrides = [*args.set, "output.plots=false", f"output.dir={out_dir}"]
    cmd = [sys.executable, "-m", "gptdecoder", "train", "-c", args.config, "--no-progress",
           *(a for item in overrides for a in ("--set", item))]
    _, wall = run(cmd, Path.cwd(), "python -m gptdecoder train")
    results = json.loads((out_dir / "results.json").read_text())
    return {"wall_seconds": round(wall, 2), "iters": results["iters"], "train_seconds": results["train_seconds"],
            "val_loss": results["val_loss"], "val_tokens": results["val_tokens"], "precision": results["precision"],
            "command": "python -m gptdecoder train -c " + args.config}


def compare_processes(args: argparse.Namespace, corpus: Path, tmp: Path) -> dict:
    """Step 0: nanoGPT's train.py and ours as whole processes, ``args.rounds`` times (ABBA)."""
    print(f"step 0: whole processes, nanoGPT (checkout {args.nanogpt}, run from a temporary copy) and ours, "
          f"{args.rounds} round(s)")
    copy = prepare_nanogpt(Path(args.nanogpt), corpus, tmp / "nanoGPT")
    note = nanogpt_readme_note(copy)
    if note:
        print("  " + note)
    runs: dict[str, list[dict]] = {"nanogpt": [], "ours": []}
    for r in range(args.rounds):
        for name in ("nanogpt", "ours") if r % 2 == 0 else ("ours", "nanogpt"):
            with LoadMeter() as load:
                result = run_nanogpt(copy) if name == "nanogpt" else run_ours(args, tmp / f"ours-{r}")
            result["other_processes_cores"] = load.cores_used_by_others
            runs[name].append(result)
            print(f"  round {r + 1}, {describe_process(name, result)}")
            print(load.line())
    nano, ours = runs["nanogpt"], runs["ours"]
    ratio = paired_ratio({k: [x["wall_seconds"] for x in v] for k, v in runs.items()}, "ours", "nanogpt")
    how = "measured in this run" + (f", median over {args.rounds} rounds" if args.rounds > 1 else "")
    print(f"  wall time ours / nanoGPT: {ratio:.2f} ({how})")
    uneven = [r + 1 for r, (a, b) in enumerate(zip(nano, ours))
              if abs((a["other_processes_cores"] or 0) - (b["other_processes_cores"] or 0)) > UNEVEN_LOAD]
    if uneven:
        print(f"  warning: other processes loaded the machine unevenly between the two runs of round(s) "
              f"{', '.join(map(str, uneven))}, which skews the ratio; rerun on a quieter machine or with more --rounds")
    nano_loss = median_or_none([x["val_loss"] for x in nano])
    our_loss = statistics.median(x["val_loss"] for x in ours)
    if nano_loss is not None:
        print(f"  val loss over the whole validation split: ours {our_loss:.4f}, nanoGPT {nano_loss:.4f} "
              f"(ours - nanoGPT: {our_loss - nano_loss:+.4f}; {how})")
        if nano[0].get("val_tokens") != ours[0]["val_tokens"]:
            print(f"  note: the two validation splits differ ({nano[0].get('val_tokens')} vs "
                  f"{ours[0]['val_tokens']} tokens scored)")
    else:
        print(f"  nanoGPT's checkpoint could not be scored on the whole split: {nano[0].get('score_error')}")
    return {
        "nanogpt": nano, "ours": ours, "wall_ratio_ours_over_nanogpt": round(ratio, 3),
        "nanogpt_val_loss": nano_loss, "ours_val_loss": our_loss,
        "nanogpt_train_seconds": statistics.median(x["train_seconds"] for x in nano),
        "nanogpt_iters": nano[0]["iters"],
    }


def describe_process(name: str, r: dict) -> str:
    if name == "ours":
        return (f"ours (`{r['command']}`): {r['wall_seconds']:.1f} s wall; {r['iters']} iters, "
                f"{r['train_seconds']:.1f} s of it training; val loss {r['val_loss']:.4f} (whole val split), "
                f"{r['precision']}")
    whole = f"{r['val_loss']:.4f} (whole val split" if r["val_loss"] is not None else "not scored (whole val split"
    if r["val_loss"] is not None and r["checkpoint_iter"] != r["iters"]:
        whole += f", its checkpoint from iter {r['checkpoint_iter']}"
    return (f"nanoGPT (`{r['recipe']}`): {r['wall_seconds']:.1f} s wall; {r['iters']} iters, "
            f"{r['train_seconds']:.1f} s of it training (its logged step times, evals left out); "
            f"val loss {r['val_loss_printed']:.4f} (its estimate, 20 random batches) / {whole})")


def median_or_none(values: list) -> Optional[float]:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


# -- steps 1 and 2: training in this process -------------------------------------------------


def text_trainer(config: Config) -> Trainer:
    """The Trainer that train_from_config builds for a text config, without a run directory."""
    return build_trainer(config, say=lambda s: None)[1]


def train_timed(config: Config, target: float, eval_every: int, budget: Optional[float]) -> dict:
    """Train step by step, timing only the steps; score the whole val split every eval_every."""
    trainer = text_trainer(config)
    max_iters = trainer.cfg.max_iters

    def score() -> dict:
        return trainer.data.evaluate(trainer.model, final=True)

    curve, hit = [], None
    trainer.model.train()
    while trainer.step < max_iters and (budget is None or trainer.train_seconds < budget):
        t0 = time.perf_counter()
        trainer.train_step()
        trainer.train_seconds += time.perf_counter() - t0
        if trainer.step % eval_every == 0 or trainer.step == max_iters:
            val = score()["val_loss"]
            curve.append({"iter": trainer.step, "seconds": round(trainer.train_seconds, 2), "val_loss": val})
            if hit is None and val <= target:
                hit = curve[-1]
    final = score()
    return {
        "iters": trainer.step,
        "train_seconds": round(trainer.train_seconds, 2),
        "tokens_per_second": round(trainer.tokens_seen / trainer.train_seconds),
        "val_loss": final["val_loss"],
        "val_bits_per_byte": final["val_bits_per_byte"],
        "params": trainer.model.num_params(),
        "precision": trainer.precision,
        "first_at_target": hit,
        "curve": curve,
    }


# -- the benchmark ----------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/shakespeare_char.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. data.path=../shared/data/tinyshakespeare/input.txt (repeatable)")
    parser.add_argument("--nanogpt", metavar="DIR", help="a local nanoGPT checkout to run as the baseline")
    parser.add_argument("--rounds", type=int, default=1, help="whole-process pairs to run with --nanogpt")
    parser.add_argument("--target", type=float, default=None,
                        help="val loss to reach in run 1 (default: nanoGPT's, measured or recorded)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training for run 2")
    parser.add_argument("--eval-every", type=int, default=None, help="iters between val scores (default max_iters/20)")
    parser.add_argument("--skip-budget-run", action="store_true", help="leave out run 2")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        report = benchmark(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BaselineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def benchmark(args: argparse.Namespace) -> dict:
    config = load_config(args.config, args.set)
    if not config.is_text:
        raise UserError(f"{args.config} is not a text config (task.name: text)")
    corpus = ensure_text(config.data.path)
    prepare_corpus(config.data, log=print)  # encode (or find cached) before anything is timed
    report: dict = {"config": args.config, "overrides": args.set, "corpus": str(corpus)}
    recorded = (f"nanoGPT baby recipe: val loss {NANOGPT_RECORDED['val_loss']} after {NANOGPT_RECORDED['iters']} "
                f"iters in {NANOGPT_RECORDED['seconds']} s ({NANOGPT_RECORDED['source']})")

    with tempfile.TemporaryDirectory() as tmp:
        if args.nanogpt:
            baseline = compare_processes(args, corpus, Path(tmp))
            report["processes"] = baseline
            measured = baseline["nanogpt_val_loss"] is not None
        else:
            print(recorded)
            report["nanogpt_recorded"] = NANOGPT_RECORDED
            measured = False
    if measured:
        ref_loss, ref_seconds = baseline["nanogpt_val_loss"], baseline["nanogpt_train_seconds"]
        ref_label = "measured in this run"
        ref_what = f"nanoGPT's training time to its final val loss, {ref_seconds:.1f} s ({ref_label})"
    else:
        ref_loss, ref_seconds = NANOGPT_RECORDED["val_loss"], NANOGPT_RECORDED["seconds"]
        ref_label = "vs recorded: nanoGPT's figure from the project's 2-core dev machine, not measured in this run"
        ref_what = f"recorded nanoGPT {ref_seconds} s"
    target = args.target if args.target is not None else ref_loss
    report["target"] = target

    eval_every = args.eval_every or max(1, config.train.max_iters // 20)
    print(f"run 1: {args.config} as written ({config.train.max_iters} iters, batch {config.train.batch_size}), "
          f"whole val split scored every {eval_every} iters; target val loss {target}"
          + ("" if args.target is not None else f" (nanoGPT's, {ref_label})"))
    with LoadMeter() as load1:
        first = train_timed(config, target, eval_every, budget=None)
    report["as_written"] = dict(first, other_processes_cores=load1.cores_used_by_others)
    hit = first["first_at_target"]
    reached = (f"val loss {hit['val_loss']} <= {target} after {hit['seconds']} s of training (iter {hit['iter']})"
               if hit else f"never reached {target}")
    print(f"  {reached}; final val loss {first['val_loss']} ({first['val_bits_per_byte']} bits/byte) after "
          f"{first['iters']} iters in {first['train_seconds']} s, {first['tokens_per_second']:,} tokens/s, "
          f"{first['params']:,} params, {first['precision']}")
    if hit and args.target is None:
        ratio = hit["seconds"] / ref_seconds
        report["time_to_target_ratio"] = round(ratio, 3)
        print(f"  time to that loss, ours / nanoGPT: {hit['seconds']} s / {ref_seconds:.1f} s = {ratio:.2f} "
              f"({ref_label})")
    elif hit:
        print(f"  (an explicit --target: no ratio; for reference, {ref_what})")
    print(load1.line())

    if not args.skip_budget_run:
        iters = int(first["iters"] / first["train_seconds"] * args.budget)
        budget_config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_iters=iters))
        print(f"run 2: the same recipe over {args.budget:.0f} s of training (schedule planned for {iters} iters)")
        with LoadMeter() as load2:
            second = train_timed(budget_config, target, max(1, iters // 10), budget=args.budget)
        report["budget"] = dict(second, budget_seconds=args.budget, other_processes_cores=load2.cores_used_by_others)
        print(f"  val loss {second['val_loss']} ({second['val_bits_per_byte']} bits/byte) after {second['iters']} "
              f"iters in {second['train_seconds']} s, {second['tokens_per_second']:,} tokens/s")
        print(f"  ours - nanoGPT's final val loss ({ref_loss} after {ref_seconds:.1f} s of training, {ref_label}): "
              f"{second['val_loss'] - ref_loss:+.4f}")
        print(load2.line())
    if args.nanogpt and measured:
        print(f"for reference, {recorded}")
    return report


if __name__ == "__main__":
    sys.exit(main())
