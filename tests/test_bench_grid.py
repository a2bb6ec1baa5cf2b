"""The bench grid (gptdecoder.grid + the bench command): expansion, checks, cache, resume,
failures, the process pool, Ray, the files written, and the command line."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
import yaml

from gptdecoder import grid
from gptdecoder.cli import main
from gptdecoder.commands import bench
from gptdecoder.errors import UserError
from conftest import ROOT

# tiny runs: prompts of 2..4 digits, tested up to 6; a fixed number of steps (no early stop)
TINY = """
model: {n_layer: 1, n_head: 2, d_model: 16}
task: {name: sort, params: {length: 4, min_length: 2, num_digits: 3}}
train: {batch_size: 32, max_iters: 20, eval_interval: 10, log_interval: 10, warmup_iters: 2, precision: fp32,
        stop_at_accuracy: null}
eval: {examples: 64, train_examples: 32, quick_examples: 32, longer_by: 2, mistakes: 0}
"""
TINY_REVERSE = TINY.replace("name: sort", "name: reverse")


def write_bench(tmp_path, name="bench.yaml", **spec):
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "tiny_reverse.yaml").write_text(TINY_REVERSE)
    spec.setdefault("base", str(tmp_path / "tiny.yaml"))
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def cells_of(tmp_path, out="out", extra=(), **spec):
    return grid.expand(grid.load_bench(write_bench(tmp_path, **spec)), extra, tmp_path / out)


def numbers(records):
    return [(r["status"], r["results"]["test_accuracy"], r["results"]["final_loss"],
             r["results"]["accuracy_by_length"]) for r in records]


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """One small grid trained in this process: (cells, records)."""
    tmp = tmp_path_factory.mktemp("serial")
    cells = cells_of(tmp, axes={"model.d_model": [16, 32]}, seeds=[0, 1])
    return cells, grid.run_cells(cells, workers=1)


# -- expansion and checks (nothing trains) ------------------------------------------------------


def test_cells_are_bases_times_axes_times_seeds(tmp_path):
    write_bench(tmp_path)
    cells = cells_of(tmp_path, base=[str(tmp_path / "tiny.yaml"), str(tmp_path / "tiny_reverse.yaml")],
                     axes={"model.d_model": [16, 32], "model.bias": [True, False], "task.params.num_digits": [3, 4]},
                     seeds=[0, 1], set=["train.max_iters=7"])
    assert len(cells) == 2 * 2 * 2 * 2 * 2
    first = cells[0]
    assert (first.base.endswith("tiny.yaml"), first.values, first.seed) == (
        True, {"model.d_model": 16, "model.bias": True, "task.params.num_digits": 3}, 0)
    assert cells[-1].base.endswith("tiny_reverse.yaml") and cells[-1].seed == 1
    for cell in cells:
        c = cell.config
        assert (c.model.d_model, c.model.bias, c.task.params["num_digits"], c.train.seed) == (
            cell.values["model.d_model"], cell.values["model.bias"], cell.values["task.params.num_digits"], cell.seed)
        assert (c.train.max_iters, c.train.num_threads, c.output.plots) == (7, 1, False)
        assert c.output.dir == str(tmp_path / "out" / "cells" / cell.key)
    assert len({cell.key for cell in cells}) == len(cells)


def test_named_axis_values_label_cells_and_set_the_config(tmp_path):
    """An axis given as {name: value} sets the value and labels the cell by its name; the
    name does not enter the cache key (the same config under another name is the same cell)."""
    named = cells_of(tmp_path, axes={"model": {"narrow": {"n_layer": 1, "n_head": 2, "d_model": 16},
                                               "wide": {"n_layer": 1, "n_head": 2, "d_model": 32}}}, seeds=[0])
    assert [c.values for c in named] == [{"model": "narrow"}, {"model": "wide"}]
    assert [c.config.model.d_model for c in named] == [16, 32]
    plain = cells_of(tmp_path, axes={"model.d_model": [16, 32]}, seeds=[0])
    assert [c.key for c in named] == [c.key for c in plain]
    assert grid.variant_label(named[1].values) == "model=wide"


def test_the_cache_key_is_the_resolved_config(tmp_path):
    a = cells_of(tmp_path, out="a", seeds=[0])[0]
    b = cells_of(tmp_path, out="b", seeds=[0])[0]  # another output directory: the same cell
    c = cells_of(tmp_path, out="a", seeds=[0], extra=["train.max_iters=21"])[0]
    assert a.key == b.key != c.key
    assert a.dir != b.dir


def test_axis_values_are_any_yaml():
    raw = {}
    for key, value in [("a.s", "rope"), ("a.f", 1e-5), ("a.b", False), ("a.l", [1, "x"]), ("a.n", None),
                       ("a.y", "yes")]:
        grid.set_key(raw, key, value)
    assert raw == {"a": {"s": "rope", "f": 1e-5, "b": False, "l": [1, "x"], "n": None, "y": "yes"}}


@pytest.mark.parametrize("spec, message", [
    ({"seed": [0]}, "unknown config key bench.seed .*did you mean 'seeds'"),
    ({"axes": {"model.d_modle": [16, 32]}}, "model.d_modle=16 seed=0: unknown config key model.d_modle .*did you mean 'd_model'"),
    ({"axes": {"model.d_model": 16}}, "bench.axes.model.d_model=16: expected a non-empty list"),
    ({"axes": {"model.d_model": []}}, "expected a non-empty list"),
    ({"axes": {"model.n_head": [2, 3]}}, "model.n_head=3 .*not divisible"),
    ({"base": "nowhere.yaml"}, "no config file 'nowhere.yaml'"),
    ({"seeds": [0, "one"]}, "bench.seeds=.*expected a non-empty list of integers"),
    ({"axes": {"model.d_model": [16]}, "set": ["model.d_model=32"]}, "model.d_model is an axis"),
    ({"set": ["train.seed=3"]}, "train.seed is set by seeds"),
    ({"set": ["train.max_iter=3"]}, "did you mean 'max_iters'"),
])
def test_a_bad_bench_file_fails_in_one_line_before_anything_trains(tmp_path, spec, message):
    with pytest.raises(UserError, match=message) as error:
        cells_of(tmp_path, **spec)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


# -- running: cache, resume, failures -------------------------------------------------------------


def counting(monkeypatch, fail_when=lambda config: False):
    """Count the runs the grid trains (in this process); raise for configs where fail_when is true."""
    trained = []
    real = grid.train_from_config

    def train(config, **kwargs):
        trained.append(config.output.dir)
        if fail_when(config):
            raise RuntimeError("boom\nsecond line")
        return real(config, **kwargs)

    monkeypatch.setattr(grid, "train_from_config", train)
    return trained


def test_rerun_trains_only_missing_and_failed_cells(tmp_path, monkeypatch):
    # lr 1e30: the loss stops being a number within a few steps -- training stops there, the
    # cell fails with the trainer's one line, and the grid goes on
    cells = cells_of(tmp_path, axes={"train.lr": [0.01, 1.0e30]}, seeds=[0, 1])
    trained = counting(monkeypatch)
    seen = []
    records = grid.run_cells(cells, workers=1, on_record=lambda c, r, cached: seen.append((c.key, cached)))
    assert len(trained) == 4 and [cached for _, cached in seen] == [False] * 4
    assert [r["status"] for r in records] == ["ok", "ok", "failed", "failed"]
    assert records[2]["error"].startswith("training diverged at iter ")
    assert "train.lr (now 1e+30)" in records[2]["error"]
    ok_files = [c.dir / "result.json" for c in cells[:2]]
    stamps = [f.stat().st_mtime_ns for f in ok_files]

    trained.clear()  # re-run: the finished cells are cached, the failed ones retried
    again = grid.run_cells(cells, workers=1)
    assert sorted(trained) == sorted(c.config.output.dir for c in cells[2:])
    assert [f.stat().st_mtime_ns for f in ok_files] == stamps
    assert numbers(again[:2]) == numbers(records[:2])

    trained.clear()  # a grid killed half-way: one cell never finished
    (cells[1].dir / "result.json").unlink()
    resumed = grid.run_cells(cells[:2], workers=1)
    assert trained == [cells[1].config.output.dir]
    assert numbers(resumed) == numbers(records[:2])


def test_an_exception_fails_its_cell_only(tmp_path, monkeypatch):
    cells = cells_of(tmp_path, axes={"model.d_model": [16, 32]}, seeds=[0])
    counting(monkeypatch, fail_when=lambda config: config.model.d_model == 32)
    records = grid.run_cells(cells, workers=1)
    assert [r["status"] for r in records] == ["ok", "failed"]
    assert records[1]["error"] == "RuntimeError: boom second line"
    assert json.loads((cells[1].dir / "result.json").read_text())["status"] == "failed"
    assert grid.cached_record(cells[0]) is not None and grid.cached_record(cells[1]) is None


# -- executors: the same cells give the same numbers -----------------------------------------------


def test_serial_grid_records(serial):
    cells, records = serial
    assert [r["status"] for r in records] == ["ok"] * 4
    for record in records:
        results = record["results"]
        assert results["train_max_length"] == 4
        assert sorted(int(n) for n in results["accuracy_by_length"]) == [2, 3, 4, 5, 6]
        assert results["iters"] == 20 and results["params"] > 0


def test_the_process_pool_gives_the_same_numbers(serial, tmp_path):
    cells = cells_of(tmp_path, axes={"model.d_model": [16, 32]}, seeds=[0, 1])
    assert [c.key for c in cells] == [c.key for c in serial[0]]
    records = grid.run_cells(cells, workers=2, executor="pool")
    assert numbers(records) == numbers(serial[1])
    assert all((c.dir / "results.json").is_file() for c in cells)  # written by the workers


def test_ray_gives_the_same_numbers(serial, tmp_path, monkeypatch):
    import ray  # requirements.txt installs it: missing or failing to start is a failure, not a skip

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cells = cells_of(tmp_path, axes={"model.d_model": [16, 32]}, seeds=[0, 1])
        records = grid.run_cells(cells, workers=2, executor="ray")
    finally:
        ray.shutdown()
    assert numbers(records) == numbers(serial[1])
    assert all(grid.cached_record(c) for c in cells)


# -- what the command writes ---------------------------------------------------------------------------


def test_results_files(serial, tmp_path):
    cells, records = serial
    rows = [grid.row_of(c, r) for c, r in zip(cells, records)]
    rows[3] = {**rows[3], "status": "failed", "error": "loss is nan after 20 iters", "final_loss": float("nan")}
    bench.write_results(rows, ["model.d_model"], tmp_path)
    table = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert list(table[0]) == ["base", "model.d_model", "seed", "status", "error", "test_accuracy",
                              "accuracy_by_length", "train_max_length", "train_seconds", "params", "iters",
                              "final_loss", "cell"]
    assert [(r["model.d_model"], r["seed"], r["status"]) for r in table] == [
        ("16", "0", "ok"), ("16", "1", "ok"), ("32", "0", "ok"), ("32", "1", "failed")]
    assert json.loads(table[0]["accuracy_by_length"]) == rows[0]["accuracy_by_length"]
    written = json.loads((tmp_path / "results.json").read_text())
    assert written[:3] == json.loads(json.dumps(rows[:3]))
    assert written[3]["final_loss"] is None and written[3]["status"] == "failed"  # strict JSON: no NaN

    md = (tmp_path / "results.md").read_text()
    accs = [r["test_accuracy"] for r in rows[:2]]
    mean, low, high = sum(accs) / 2, min(accs), max(accs)
    assert f"| tiny | 16 | 2/2 | {mean:.1%} ± " in md and f"{low:.1%}–{high:.1%}" in md
    assert f"| tiny | 32 | 1/2 | {rows[2]['test_accuracy']:.1%} ± 0.0% |" in md
    # 1.5x of 4 is 6 (tested); 2x is 8, not tested: the longest tested below it, 6
    at6 = [r["accuracy_by_length"]["6"] for r in rows[:2]]
    assert f"| tiny | {sum(at6) / 2:.1%} ± " in md and md.count("@6") == 4
    assert "## Failed cells" in md and "loss is nan after 20 iters" in md
    for name in ("results.png", "length.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_length_points_and_figure():
    from gptdecoder.lab.figures import bench_length_figure

    rows = [{"base": "b.yaml", "v": v, "seed": s, "status": "ok", "train_max_length": 4,
             "accuracy_by_length": {"4": 1.0, "5": 0.5 + s / 10}} for v in (1, 2) for s in (0, 1)]
    rows.append({**rows[0], "seed": 2, "status": "failed", "accuracy_by_length": {"4": 0.0}})
    points = grid.length_points(rows, ["v"])
    assert points[0] == {"base": "b.yaml", "variant": "v=1", "train_max_length": 4,
                         "accuracy": {4: [1.0, 1.0], 5: [0.5, 0.6]}}
    fig = bench_length_figure(points, {"b.yaml": "b"})
    lines = [line for line in fig.axes[0].get_lines() if line.get_label() == "v=1"]
    assert list(lines[0].get_ydata()) == pytest.approx([1.0, 0.55])
    assert fig.axes[0].get_title() == "b"
    assert bench_length_figure([]) is not None


def test_length_results_reads_old_and_new_results():
    new = {"accuracy_by_length": {"6": 1.0, "7": 0.5}, "train_max_length": 6, "test_accuracy": 0.9}
    old = {"length_generalization": {"7": 0.5, "8": 0.1}, "task_params": {"length": 6}, "test_accuracy": 0.9}
    assert grid.length_results(new) == ({6: 1.0, 7: 0.5}, 6)
    assert grid.length_results(old) == ({6: 0.9, 7: 0.5, 8: 0.1}, 6)
    assert grid.length_results({"task_params": {"digits": 3}}) == ({}, None)


# -- the command line -----------------------------------------------------------------------------------


def test_command_line_end_to_end(tmp_path):
    path = write_bench(tmp_path, axes={"model.d_model": [16, 32]}, seeds=[0])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gptdecoder", "bench", "-c", str(path), "--out", str(out), "--workers", "1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[2/2] base=" in done.stdout and "2 ok, 0 failed (0 cached)" in done.stdout
    for name in ("results.csv", "results.json", "results.md", "results.png", "length.png", "bench.yaml"):
        assert (out / name).is_file()
    assert len(json.loads((out / "results.json").read_text())) == 2


def test_command_line_errors_and_help(tmp_path, capsys):
    path = write_bench(tmp_path, axes={"model.d_modle": [16]})
    assert main(["bench", "-c", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bench ") and "did you mean 'd_model'" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert main(["bench", "-c", str(write_bench(tmp_path)), "--workers", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "retried on the next run" in capsys.readouterr().out


def test_dry_run_lists_cells(tmp_path, capsys):
    path = write_bench(tmp_path, axes={"model.d_model": [16, 32]}, seeds=[0, 1])
    assert main(["bench", "-c", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all("to run" in line for line in lines)
    assert not (tmp_path / "out").exists()
