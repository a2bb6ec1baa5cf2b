"""Run the external baselines the benchmarks compare against, from a temporary copy.

The benchmarks never import another project's code and never write into its checkout:
the checkout the user passes (``--nanogpt DIR``, ``--mingpt DIR``) is copied into a
temporary directory and its own scripts run there as subprocesses, with this venv's
Python. What they print is parsed for the figures.

* nanoGPT: ``data/shakespeare_char/prepare.py`` on our corpus (placed where it looks for
  ``input.txt``, so it never downloads), then ``train.py`` with the CPU "baby GPT"
  recipe of its README, and its final checkpoint scored on the whole validation split
  the way we score ours (``NANOGPT_SCORE``), since the val loss it prints is an estimate
  from a few random batches.
* minGPT: its sort demo is a notebook; ``python baselines.py notebook demo.ipynb`` (run
  inside the copy) executes its code cells in order in one namespace and reports how
  long each took, so the training cell can be timed on its own.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

RESULT_MARK = "BASELINE-RESULT "  # the runner's last line: this prefix + JSON

# nanoGPT README, "I only have a macbook": the baby GPT on CPU
NANOGPT_RECIPE = [
    "config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
    "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
    "--lr_decay_iters=2000", "--dropout=0.0",
]
NANOGPT_TOKENS_PER_ITER = 12 * 64  # batch_size x block_size above
NANOGPT_OUT = "out-shakespeare-char"  # out_dir of config/train_shakespeare_char.py
NANOGPT_DATA = Path("data") / "shakespeare_char"

# Scores nanoGPT's checkpoint on every token of val.bin (after the first) with
# non-overlapping windows of its block size, as gptdecoder.data.text.evaluate_split does
# for ours. Runs with ``python -c`` inside the nanoGPT copy, using nanoGPT's own model.py.
NANOGPT_SCORE = r"""
import json, numpy as np, torch
from model import GPT, GPTConfig
ckpt = torch.load("{out}/ckpt.pt", map_location="cpu", weights_only=False)
model = GPT(GPTConfig(**ckpt["model_args"]))
model.load_state_dict({{k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}})
model.eval()
val = torch.from_numpy(np.fromfile("{data}/val.bin", dtype=np.uint16).astype(np.int64))
T = ckpt["model_args"]["block_size"]
n = len(val) - 1
full = n // T
total = 0.0
with torch.no_grad():
    for s in range(0, full, 256):
        e = min(full, s + 256)
        x, y = val[s * T : e * T].view(-1, T), val[s * T + 1 : e * T + 1].view(-1, T)
        total += model(x, y)[1].item() * y.numel()
    if full * T < n:
        x, y = val[full * T : n][None], val[full * T + 1 :][None]
        total += model(x, y)[1].item() * y.numel()
print(json.dumps({{"val_loss": total / n, "iter": ckpt["iter_num"], "tokens": n}}))
"""


class BaselineError(Exception):
    """A baseline could not be run; the message says what went wrong."""


def copy_checkout(src: Path, dest: Path, must_have: list[str], what: str) -> Path:
    """A copy of the checkout at ``src`` in ``dest`` (without .git), after checking it is one."""
    src = Path(src).expanduser()
    missing = [name for name in must_have if not (src / name).exists()]
    if missing:
        raise BaselineError(f"{src} does not look like a {what} checkout: {', '.join(missing)} missing")
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    return dest


def run(cmd: list[str], cwd: Path, what: str, env: Optional[dict] = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd`` to completion, output captured; (result, wall seconds). BaselineError on failure."""
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise BaselineError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result, seconds


# -- nanoGPT ---------------------------------------------------------------------------


def prepare_nanogpt(checkout: Path, corpus: Path, dest: Path) -> Path:
    """Copy the checkout to ``dest``, put ``corpus`` where prepare.py reads input.txt, run prepare.py."""
    copy = copy_checkout(checkout, dest, ["train.py", "model.py", "configurator.py", str(NANOGPT_DATA / "prepare.py"),
                                          NANOGPT_RECIPE[0]], "nanoGPT")
    shutil.copyfile(corpus, copy / NANOGPT_DATA / "input.txt")
    run([sys.executable, "prepare.py"], copy / NANOGPT_DATA, "nanoGPT's data/shakespeare_char/prepare.py")
    return copy


def nanogpt_readme_note(copy: Path) -> Optional[str]:
    """None when the checkout's README shows exactly the recipe we run, else a note saying so."""
    command = "python train.py " + " ".join(NANOGPT_RECIPE)
    readme = copy / "README.md"
    if readme.is_file() and command in readme.read_text(errors="replace"):
        return None
    return f"note: this checkout's README does not show `{command}`; that is what runs"


def run_nanogpt(copy: Path, threads: int = 0) -> dict:
    """train.py with the baby-GPT recipe in the prepared copy: whole-process wall time, the
    val loss it prints last (and each printed estimate, with the logged seconds before
    it), its training time from its per-iteration log, and its final checkpoint scored on
    the whole validation split. ``threads`` > 0 caps torch's threads (OMP_NUM_THREADS:
    train.py never sets them itself)."""
    shutil.rmtree(copy / NANOGPT_OUT, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads > 0 else None
    result, wall = run([sys.executable, "train.py", *NANOGPT_RECIPE], copy, "nanoGPT's train.py", env=env)
    evals = re.findall(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)", result.stdout, re.M)
    iters = [(int(i), float(ms) / 1000) for i, ms in re.findall(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms",
                                                                result.stdout, re.M)]
    if not evals or not iters:
        raise BaselineError("could not find nanoGPT's 'step N: ... val loss' / 'iter N: ... time' lines in its output")
    last_eval = int(evals[-1][0])
    eval_steps = {int(step) for step, _, _ in evals}
    # Each logged time covers one optimizer step plus, on steps that evaluate, that
    # evaluation; the model it evaluated last had taken the steps before last_eval.
    steps = [(i, dt) for i, dt in iters if i < last_eval]
    plain = [dt for i, dt in steps if i not in eval_steps]
    train_seconds = sum(plain) + statistics.median(plain) * (len(steps) - len(plain))
    # where each printed estimate falls in the run: the logged times (evaluations included) before it
    logged_before = {step: sum(dt for i, dt in iters if i < int(step)) for step, _, _ in evals}
    report = {
        "wall_seconds": round(wall, 2),
        "iters": last_eval,
        "val_loss_printed": float(evals[-1][2]),
        "train_seconds": round(train_seconds, 2),
        "tokens": last_eval * NANOGPT_TOKENS_PER_ITER,
        "logged_seconds": round(sum(dt for _, dt in iters), 2),  # every logged step, evaluations included
        "estimates": [(round(logged_before[step], 2), float(val)) for step, _, val in evals],
        "recipe": "python train.py " + " ".join(NANOGPT_RECIPE),
    }
    try:
        score, _ = run([sys.executable, "-c", NANOGPT_SCORE.format(out=NANOGPT_OUT, data=NANOGPT_DATA.as_posix())],
                       copy, "scoring nanoGPT's checkpoint")
        whole = json.loads(score.stdout.strip().splitlines()[-1])
        report.update(val_loss=round(whole["val_loss"], 4), checkpoint_iter=whole["iter"], val_tokens=whole["tokens"])
    except (BaselineError, ValueError, IndexError) as e:
        report["val_loss"] = None
        report["score_error"] = str(e)
    return report


# -- minGPT ------------------------------------------------------------------------------


def run_mingpt_sort_demo(checkout: Path, dest: Path) -> dict:
    """minGPT's demo.ipynb run as a script in a copy of the checkout: the seconds of the
    cell that calls ``trainer.run()``, the whole process's wall time, and its test score."""
    copy = copy_checkout(checkout, dest, ["demo.ipynb", "mingpt/model.py", "mingpt/trainer.py"], "minGPT")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")])))
    result, wall = run([sys.executable, str(Path(__file__).resolve()), "notebook", "demo.ipynb"], copy,
                       "minGPT's demo.ipynb", env=env)
    marks = [line for line in result.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if not marks:
        raise BaselineError("the notebook runner printed no result")
    cells = json.loads(marks[-1][len(RESULT_MARK):])["cells"]
    training = [c for c in cells if "trainer.run()" in c["source"]]
    if len(training) != 1:
        raise BaselineError("expected exactly one cell of minGPT's demo.ipynb to call trainer.run()")
    score = re.search(r"^test final score: (\d+)/(\d+)", result.stdout, re.M)
    iters = re.search(r"max_iters\s*=\s*(\d+)", "".join(c["source"] for c in cells))
    return {
        "train_seconds": round(training[0]["seconds"], 2),
        "wall_seconds": round(wall, 2),
        "iters": int(iters.group(1)) if iters else None,
        "test_accuracy": int(score.group(1)) / int(score.group(2)) if score else None,
    }


def run_notebook(path: str) -> int:
    """Execute a notebook's code cells in order in one namespace (this process's cwd is the
    notebook's checkout); print each cell's output as it comes, then one RESULT_MARK line
    with every cell's source and seconds."""
    cells = [c for c in json.loads(Path(path).read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {"__name__": "__main__"}
    timings = []
    for cell in cells:
        source = "".join(cell["source"])
        if any(line.lstrip().startswith(("%", "!")) for line in source.splitlines()):
            print(f"cannot run a cell with IPython magics or shell lines:\n{source}", file=sys.stderr)
            return 1
        start = time.perf_counter()
        exec(compile(source, f"{path} cell {len(timings)}", "exec"), namespace)
        timings.append({"source": source, "seconds": time.perf_counter() - start})
        sys.stdout.flush()
    print(RESULT_MARK + json.dumps({"cells": timings}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "notebook":
        sys.exit(run_notebook(sys.argv[2]))
    print("usage: python baselines.py notebook NOTEBOOK.ipynb   (run inside the notebook's checkout)", file=sys.stderr)
    sys.exit(2)
