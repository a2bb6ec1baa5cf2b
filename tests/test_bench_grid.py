"""The bench grid (gptdecoder.bench + the bench command): expansion, checks, cache keys and
labels, resume (also after SIGKILL), failures, the process pool, Ray, the summaries and
files written, and the command line."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from gptdecoder import bench
from gptdecoder.bench import executors, summaries
from gptdecoder.cli import main
from gptdecoder.commands import bench as bench_command
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
    path.write_text(yaml.safe_dump(spec, sort_keys=False))  # named values keep their order
    return path


def cells_of(tmp_path, out="out", extra=(), **spec):
    return bench.expand(bench.load_bench(write_bench(tmp_path, **spec)), extra, tmp_path / out)


def numbers(records):
    return [(r["status"], r["results"]["test_accuracy"], r["results"]["final_loss"],
             r["results"]["accuracy_by_length"]) for r in records]


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """One small grid trained in this process: (cells, records)."""
    tmp = tmp_path_factory.mktemp("serial")
    cells = cells_of(tmp, axes={"model.d_model": [16, 32]}, seeds=[0, 1])
    return cells, bench.run_cells(cells, workers=1)


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
    assert bench.variant_label(named[1].values) == "model=wide"


def test_the_cache_key_is_the_resolved_config(tmp_path):
    a = cells_of(tmp_path, out="a", seeds=[0])[0]
    b = cells_of(tmp_path, out="b", seeds=[0])[0]  # another output directory: the same cell
    c = cells_of(tmp_path, out="a", seeds=[0], extra=["train.max_iters=21"])[0]
    assert a.key == b.key != c.key
    assert a.dir != b.dir


def test_set_config_key_sets_any_value_as_it_is():
    raw = {"a": None}
    shared = {"n_layer": 1, "d": [1, 2]}
    for key, value in [("a.s", "rope"), ("a.f", 1e-5), ("a.b", False), ("a.l", [1, "x"]), ("a.n", None),
                       ("a.y", "yes"), ("a.e", "1e-3"), ("m", shared), ("x.y.z", 3)]:
        bench.set_config_key(raw, key, value)
    assert raw == {"a": {"s": "rope", "f": 1e-5, "b": False, "l": [1, "x"], "n": None, "y": "yes", "e": "1e-3"},
                   "m": {"n_layer": 1, "d": [1, 2]}, "x": {"y": {"z": 3}}}
    raw["m"]["d"].append(3)  # a copy: cells that share an axis value do not share its dict
    assert shared == {"n_layer": 1, "d": [1, 2]}


@pytest.mark.parametrize("key, message", [
    ("a.b.c", "config key 'a.b.c': a.b is 4, not a section"),
    ("a..c", "config key 'a..c': expected a dotted key such as model.d_model"),
    ("", "config key '': expected a dotted key"),
])
def test_set_config_key_names_a_bad_key(key, message):
    with pytest.raises(UserError, match=message):
        bench.set_config_key({"a": {"b": 4}}, key, 1)


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
    ({"set": ["train.max_iters"]}, "override 'train.max_iters': expected section.key=value"),
    ({"set": ["train.max_iters.x=3"]}, "config key 'train.max_iters.x': train.max_iters is 20, not a section"),
    ({"base": {"a": "tiny.yaml", "b": "tiny.yaml"}}, "bench.base lists a config twice"),
    ({"base": []}, r"bench.base=\[\]: expected a config file, a non-empty list of them, or a mapping"),
    ({"learned_threshold": 1.5}, "bench.learned_threshold=1.5: expected a held-out accuracy from 0 to 1, e.g. 0.99"),
    ({"learned_threshold": -0.1}, "bench.learned_threshold=-0.1: expected a held-out accuracy from 0 to 1"),
    ({"learned_threshold": "high"}, "bench.learned_threshold='high': expected float, got str"),
    ({"learned_threshold": True}, "bench.learned_threshold=True: expected float, got bool"),
])
def test_a_bad_bench_file_fails_in_one_line_before_anything_trains(tmp_path, spec, message):
    with pytest.raises(UserError, match=message) as error:
        cells_of(tmp_path, **spec)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


# -- labels are not part of a cell ----------------------------------------------------------------


@pytest.mark.parametrize("base_label, names", [("tiny", ["narrow", "wide"]), ("small", ["thin", "broad"])])
def test_renamed_labels_reuse_every_cached_cell(serial, tmp_path, monkeypatch, base_label, names):
    """The serial grid, with its base and its axis values named (twice, differently): the
    same cells -- the key depends on the resolved config only -- so nothing trains, and the
    rows carry the new labels."""
    cells, records = serial
    out = cells[0].dir.parent.parent
    named = bench.expand(bench.load_bench(write_bench(
        tmp_path, base={base_label: str(tmp_path / "tiny.yaml")},
        axes={"model.d_model": dict(zip(names, [16, 32]))}, seeds=[0, 1])), out=out)
    assert [c.key for c in named] == [c.key for c in cells]
    trained = counting(monkeypatch)
    again = bench.run_cells(named, workers=1)
    assert trained == [] and numbers(again) == numbers(records)
    rows = [bench.row_of(c, r, 0.99) for c, r in zip(named, again)]
    assert [(r["base"], r["model.d_model"]) for r in rows] == [
        (base_label, names[0]), (base_label, names[0]), (base_label, names[1]), (base_label, names[1])]
    assert bench.base_labels([base_label]) == {base_label: base_label}


def test_summarise_only_trains_nothing_and_lists_missing_cells(serial, tmp_path, monkeypatch, capsys):
    """--summarise-only over the serial grid's cells, renamed and with a seed never trained."""
    cells, records = serial
    out = cells[0].dir.parent.parent
    stamps = sorted(p.stat().st_mtime_ns for p in out.glob("cells/*/result.json"))
    path = write_bench(tmp_path, base={"renamed": str(tmp_path / "tiny.yaml")},
                       axes={"model.d_model": {"narrow": 16, "wide": 32}}, seeds=[0, 1, 7])
    trained = counting(monkeypatch)
    assert main(["bench", "-c", str(path), "--out", str(out), "--summarise-only"]) == 0
    assert trained == [] and "4 ok, 0 failed, 2 missing (not trained" in capsys.readouterr().out
    assert sorted(p.stat().st_mtime_ns for p in out.glob("cells/*/result.json")) == stamps
    rows = json.loads((out / "results.json").read_text())
    assert [(r["base"], r["model.d_model"], r["seed"], r["status"]) for r in rows] == [
        ("renamed", "narrow", 0, "ok"), ("renamed", "narrow", 1, "ok"), ("renamed", "narrow", 7, "missing"),
        ("renamed", "wide", 0, "ok"), ("renamed", "wide", 1, "ok"), ("renamed", "wide", 7, "missing")]
    assert [r["test_accuracy"] for r in rows if r["status"] == "ok"] == [
        r["results"]["test_accuracy"] for r in records]
    md = (out / "results.md").read_text()
    assert "6 cells, 4 ok, 0 failed, 2 not trained yet" in md and "## Not trained yet" in md
    assert "| renamed | narrow | 2/3 |" in md


# -- running: cache, resume, failures -------------------------------------------------------------


def counting(monkeypatch, fail_when=lambda config: None):
    """Count the runs the grid trains (in this process); raise what fail_when returns for a config."""
    trained = []
    real = executors.train_from_config

    def train(config, **kwargs):
        trained.append(config.output.dir)
        error = fail_when(config)
        if error is not None:
            raise error
        return real(config, **kwargs)

    monkeypatch.setattr(executors, "train_from_config", train)
    return trained


def test_rerun_trains_only_missing_and_failed_cells(tmp_path, monkeypatch):
    # lr 1e30: the loss stops being a number within a few steps -- training stops there, the
    # cell fails with the trainer's one line, and the grid goes on
    cells = cells_of(tmp_path, axes={"train.lr": [0.01, 1.0e30]}, seeds=[0, 1])
    trained = counting(monkeypatch)
    seen = []
    records = bench.run_cells(cells, workers=1, on_record=lambda c, r, cached: seen.append((c.key, cached)))
    assert len(trained) == 4 and [cached for _, cached in seen] == [False] * 4
    assert [r["status"] for r in records] == ["ok", "ok", "failed", "failed"]
    assert records[2]["error"].startswith("training diverged at iter ")
    assert "train.lr (now 1e+30)" in records[2]["error"]
    ok_files = [c.dir / "result.json" for c in cells[:2]]
    stamps = [f.stat().st_mtime_ns for f in ok_files]

    trained.clear()  # re-run: the finished cells are cached, the failed ones retried
    again = bench.run_cells(cells, workers=1)
    assert sorted(trained) == sorted(c.config.output.dir for c in cells[2:])
    assert [f.stat().st_mtime_ns for f in ok_files] == stamps
    assert numbers(again[:2]) == numbers(records[:2])

    trained.clear()  # a grid killed half-way: one cell never finished
    (cells[1].dir / "result.json").unlink()
    resumed = bench.run_cells(cells[:2], workers=1)
    assert trained == [cells[1].config.output.dir]
    assert numbers(resumed) == numbers(records[:2])


def test_a_half_trained_cell_is_retrained_from_a_clean_directory(tmp_path, monkeypatch):
    """What a kill leaves in a cell directory -- a checkpoint, metrics, a half-written
    temporary file, no result.json -- is cleared, and the cell trains again."""
    cell = cells_of(tmp_path, seeds=[0])[0]
    first = bench.run_cells([cell], workers=1)
    (cell.dir / "result.json").unlink()
    with open(cell.dir / "metrics.jsonl", "a") as f:
        f.write('{"iter": 999, "half": "written')
    (cell.dir / ".result.json.123-abcdef01.tmp").write_text('{"key": "')
    assert bench.read_record(cell) is None
    trained = counting(monkeypatch)
    again = bench.run_cells([cell], workers=1)
    assert trained == [str(cell.dir)] and numbers(again) == numbers(first)
    assert '"half"' not in (cell.dir / "metrics.jsonl").read_text()
    assert not list(cell.dir.glob(".*.tmp"))


def test_a_failing_cell_fails_alone_with_its_one_line_error(tmp_path, monkeypatch):
    cells = cells_of(tmp_path, axes={"model.d_model": [16, 32, 64]}, seeds=[0])
    counting(monkeypatch, fail_when=lambda config: {
        32: RuntimeError("boom\nsecond line"),
        64: UserError("task.params.length=4:   too long\n for this"),  # a user's mistake: its message only
    }.get(config.model.d_model))
    records = bench.run_cells(cells, workers=1)
    assert [r["status"] for r in records] == ["ok", "failed", "failed"]
    assert [r["error"] for r in records] == ["", "RuntimeError: boom second line",
                                             "task.params.length=4: too long for this"]
    assert json.loads((cells[1].dir / "result.json").read_text())["status"] == "failed"
    assert bench.cached_record(cells[0]) is not None and bench.cached_record(cells[1]) is None
    rows = [bench.row_of(c, r, 0.99) for c, r in zip(cells, records)]
    md = summaries.results_markdown(rows, ["model.d_model"], "", 0.99)
    assert "| tiny | 64 | 0 | task.params.length=4: too long for this |" in md
    assert "| tiny | 32 | 0 | RuntimeError: boom second line |" in md


def wait_for_result(out, process, log):
    """Poll until a cell of the grid running in ``process`` has written its result.json."""
    deadline = time.monotonic() + 600  # a guard against a hung grid, not a synchronisation
    while time.monotonic() < deadline:
        found = sorted(out.glob("cells/*/result.json"))
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"the grid ended (exit {process.returncode}) before a cell finished:\n{log.read_text()}")
        time.sleep(0.05)
    pytest.fail("no cell finished in 600 s")


def test_a_grid_killed_with_sigkill_resumes_with_every_cell_once(tmp_path):
    """The real command, SIGKILLed (its whole process group) once a first cell has finished:
    re-running it trains the rest and keeps the finished cells, and every cell is in the
    results once, ok. Whatever the moment of the kill, that holds: result.json is written
    atomically and last, and a cell without one is trained again from a clean directory."""
    path = write_bench(tmp_path, seeds=[0, 1, 2])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gptdecoder", "bench", "-c", str(path), "--out", str(out), "--workers", "1"]
    log = tmp_path / "first.log"
    with open(log, "w") as stream:
        first = subprocess.Popen(cmd, cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            done = wait_for_result(out, first, log)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    kept = {p: p.stat().st_mtime_ns for p in done}
    for record in out.glob("cells/*/result.json"):  # whatever the kill interrupted, no record is half written
        assert json.loads(record.read_text())["status"] == "ok"

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "3 ok, 0 failed" in again.stdout
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["seed"] for r in rows) == [0, 1, 2] and {r["status"] for r in rows} == {"ok"}
    assert len({r["cell"] for r in rows}) == 3
    assert sorted(p.parent.name for p in out.glob("cells/*/result.json")) == sorted(r["cell"] for r in rows)
    for p in out.glob("cells/*/result.json"):
        record = json.loads(p.read_text())
        assert record["key"] == p.parent.name and record["status"] == "ok"
    assert {p: p.stat().st_mtime_ns for p in done} == kept  # the cells finished before the kill were not retrained
    assert not list(out.rglob("*.tmp"))


# -- executors: the same cells give the same numbers -----------------------------------------------


def test_serial_grid_records(serial):
    cells, records = serial
    assert [r["status"] for r in records] == ["ok"] * 4
    for record in records:
        results = record["results"]
        assert set(results) == set(summaries.RESULT_FIELDS)
        assert results["train_max_length"] == 4
        assert sorted(int(n) for n in results["accuracy_by_length"]) == [2, 3, 4, 5, 6]
        assert results["iters"] == 20 and results["params"] > 0
        assert results["accuracy_by_length_dense"] is None  # no random positions


def test_the_process_pool_gives_the_same_numbers(serial, tmp_path):
    cells = cells_of(tmp_path, axes={"model.d_model": [16, 32]}, seeds=[0, 1])
    assert [c.key for c in cells] == [c.key for c in serial[0]]
    records = bench.run_cells(cells, workers=2, executor="pool")
    assert numbers(records) == numbers(serial[1])
    assert all((c.dir / "results.json").is_file() for c in cells)  # written by the workers


RAY_START_ATTEMPTS = 4


def start_local_ray(ray, num_cpus: int) -> None:
    """A real local Ray instance, started again when it misses its own startup deadline.

    Ray waits a fixed 30 s (hard-coded in ray/_private/node.py) for its raylet to register,
    and raises "The current node timed out during startup" when a loaded machine is slower.
    That says nothing about our executor, so the start (never the test's assertions) is
    tried again; only RAY_START_ATTEMPTS misses in a row fail the test.
    """
    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            return
        except Exception as e:  # noqa: BLE001 -- Ray raises a bare Exception for this
            ray.shutdown()
            if "timed out during startup" not in str(e) or attempt == RAY_START_ATTEMPTS:
                raise


def test_ray_gives_the_same_numbers(serial, tmp_path, monkeypatch):
    import ray  # requirements.txt installs it: missing or failing to start is a failure, not a skip

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    start_local_ray(ray, num_cpus=2)
    try:
        cells = cells_of(tmp_path, axes={"model.d_model": [16, 32]}, seeds=[0, 1])
        records = bench.run_cells(cells, workers=2, executor="ray")
    finally:
        ray.shutdown()
    assert numbers(records) == numbers(serial[1])
    assert all(bench.cached_record(c) for c in cells)


# -- the summaries and the files the command writes ------------------------------------------------------


def test_results_files(serial, tmp_path):
    cells, records = serial
    rows = [bench.row_of(c, r, 0.0) for c, r in zip(cells, records)]  # threshold 0: every ok seed learned
    rows[3] = {**rows[3], "status": "failed", "error": "loss is nan after 20 iters", "final_loss": float("nan"),
               "learned": None}
    bench_command.write_results(rows, ["model.d_model"], tmp_path, "", 0.0)
    table = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert list(table[0]) == list(rows[0]) == summaries.row_columns(["model.d_model"])
    assert list(table[0])[:6] == ["base", "model.d_model", "seed", "status", "error", "learned"]
    assert [(r["model.d_model"], r["seed"], r["status"], r["learned"]) for r in table] == [
        ("16", "0", "ok", "True"), ("16", "1", "ok", "True"), ("32", "0", "ok", "True"), ("32", "1", "failed", "")]
    assert json.loads(table[0]["accuracy_by_length"]) == rows[0]["accuracy_by_length"]
    written = json.loads((tmp_path / "results.json").read_text())
    assert written[:3] == json.loads(json.dumps(rows[:3]))
    assert written[3]["final_loss"] is None and written[3]["status"] == "failed"  # strict JSON: no NaN

    md = (tmp_path / "results.md").read_text()
    accs = [r["test_accuracy"] for r in rows[:2]]
    mean, low, high = sum(accs) / 2, min(accs), max(accs)
    assert f"| tiny | 16 | 2/2 | 2/2 | {mean:.1%} ± " in md and f"{low:.1%}–{high:.1%}" in md
    assert f"| tiny | 32 | 1/2 | 1/1 | {rows[2]['test_accuracy']:.1%} ± 0.0% |" in md
    # 1.5x of 4 is 6 (tested); 2x is 8, not tested: the longest tested below it, 6
    at6 = [r["accuracy_by_length"]["6"] for r in rows[:2]]
    assert f"| tiny | 16 | {sum(at6) / 2:.1%} ± " in md and md.count("@6 (2/2 learned)") == 2
    assert "## Failed cells" in md and "loss is nan after 20 iters" in md
    for name in ("results.png", "length.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_row_of_reads_the_labels_the_threshold_and_the_new_fields():
    cell = bench.Cell("b.yaml", {"model": "random"}, 3, None, "k", None)
    results = summaries.compact_results({
        "test_accuracy": 0.985, "accuracy_by_length": {"10": 0.5, "4": 1.0}, "train_max_length": 4,
        "token_accuracy_by_length": {"4": 1.0, "10": 0.9}, "accuracy_by_length_dense": {"4": 0.9, "10": 0.1},
        "token_accuracy_by_length_dense": {"4": 0.95, "10": 0.3}, "iters": 7, "unknown": 1})
    assert list(results["accuracy_by_length"]) == ["4", "10"]  # in length order
    assert results["token_accuracy_by_length_dense"] == {"4": 0.95, "10": 0.3} and "unknown" not in results
    record = {"key": "k", "base": "old label", "values": {"model": "old"}, "seed": 3, "status": "ok", "error": "",
              "results": results}
    row = bench.row_of(cell, record, 0.99)
    assert (row["base"], row["model"], row["learned"], row["token_accuracy_by_length"]["10"]) == (
        "b.yaml", "random", False, 0.9)
    assert bench.row_of(cell, record, 0.98)["learned"] is True
    old = bench.row_of(cell, {**record, "results": {"test_accuracy": 1.0, "accuracy_by_length": {}}}, 0.99)
    assert old["token_accuracy_by_length"] is None and old["learned"] is True  # a run from before the new fields
    assert bench.row_of(cell, {**record, "status": "missing", "results": {}}, 0.99)["learned"] is None


def length_rows(variants):
    """Rows of base b.yaml trained up to length 4: {variant: [(test accuracy, exact@6, token@6, dense)]}."""
    rows = []
    for variant, seeds in variants.items():
        for seed, (test, exact, token, dense) in enumerate(seeds):
            dense_fields = {"accuracy_by_length_dense": {"4": 1.0, "6": dense},
                            "token_accuracy_by_length_dense": {"4": 1.0, "6": dense + 0.1}} if dense is not None else {}
            results = summaries.compact_results({
                "test_accuracy": test, "train_max_length": 4, "accuracy_by_length": {"4": test, "6": exact},
                "token_accuracy_by_length": {"4": test, "6": token}, **dense_fields})
            rows.append(bench.row_of(bench.Cell("b.yaml", {"v": variant}, seed, None, f"{variant}{seed}", None),
                                     {"status": "ok", "results": results}, 0.99))
    return rows


def test_results_markdown_marks_variants_that_did_not_learn():
    rows = length_rows({
        "all": [(1.0, 0.9, 0.95, None), (0.995, 0.7, 0.85, None)],
        "some": [(1.0, 0.6, 0.8, None), (0.5, 0.0, 0.3, None), (0.2, 0.0, 0.1, None)],
        "none": [(0.5, 0.0, 0.2, None)],
        "random": [(1.0, 0.4, 0.6, 0.8)],
    })
    md = summaries.results_markdown(rows, ["v"], "b.yaml", 0.99)
    assert "| b | all | 2/2 | 2/2 |" in md and "| b | some | 3/3 | 1/3 |" in md and "| b | none | 1/1 | 0/1 |" in md
    assert "held-out exact match ≥ 99%" in md
    # at 1.5x (length 6) over the seeds that learned only, exact then per token; 2x: the longest tested, 6 too
    assert "| b | all |  | 80.0% ± 14.1% @6 (2/2 learned) | 90.0% ± 7.1% |" in md
    assert "| b | some |  | 60.0% ± 0.0% @6 (1/3 learned) | 80.0% ± 0.0% |" in md
    assert "| b | none |  | did not learn | — | did not learn | — |" in md
    assert "| b | random | as trained | 40.0% ± 0.0% @6 (1/1 learned) | 60.0% ± 0.0% |" in md
    assert "| b | random | dense | 80.0% ± 0.0% @6 (1/1 learned) | 90.0% ± 0.0% |" in md

    plain = summaries.results_markdown([r for r in rows if r["v"] != "random"], ["v"], "", 0.99)
    assert "| positions |" in md and "*dense*" in md
    assert "| positions |" not in plain and "*dense*" not in plain  # no random positions: no column, no note
    assert "| b | all | 80.0% ± 14.1% @6 (2/2 learned) |" in plain


def test_length_points_and_figure():
    from gptdecoder.lab.bench_figures import bench_length_figure

    rows = [{"base": "b.yaml", "v": v, "seed": s, "status": "ok", "learned": True, "train_max_length": 4,
             "accuracy_by_length": {"4": 1.0, "5": 0.5 + s / 10}} for v in (1, 2) for s in (0, 1)]
    rows.append({**rows[0], "seed": 2, "status": "failed", "learned": None, "accuracy_by_length": {"4": 0.0}})
    rows.append({**rows[0], "v": 3, "learned": False, "accuracy_by_length": {"4": 0.3, "5": 0.1}})
    rows.append({**rows[2], "seed": 5, "learned": False, "accuracy_by_length": {"4": 0.2}})
    points = bench.length_points(rows, ["v"])
    assert points[0] == {"base": "b.yaml", "variant": "v=1", "train_max_length": 4,
                         "accuracy": {4: [1.0, 1.0], 5: [0.5, 0.6]}, "learned": True}
    assert (points[1]["variant"], points[1]["accuracy"], points[1]["learned"]) == (
        "v=2 (2/3 learned)", {4: [1.0, 1.0], 5: [0.5, 0.6]}, True)  # the seed that did not learn is not drawn
    assert (points[2]["variant"], points[2]["learned"]) == ("v=3 (did not learn)", False)
    fig = bench_length_figure(points, {"b.yaml": "b"})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["v=1"].get_ydata()) == pytest.approx([1.0, 0.55])
    assert lines["v=1"].get_linestyle() == "-" and lines["v=3 (did not learn)"].get_linestyle() == "--"
    assert "did not learn" in fig.legends[0].get_title().get_text()
    assert fig.axes[0].get_title() == "b"
    assert bench_length_figure([]) is not None


def test_length_results_reads_old_and_new_results():
    new = {"accuracy_by_length": {"6": 1.0, "7": 0.5}, "train_max_length": 6, "test_accuracy": 0.9}
    old = {"length_generalization": {"7": 0.5, "8": 0.1}, "task_params": {"length": 6}, "test_accuracy": 0.9}
    assert summaries.length_results(new) == ({6: 1.0, 7: 0.5}, 6)
    assert summaries.length_results(old) == ({6: 0.9, 7: 0.5, 8: 0.1}, 6)
    assert summaries.length_results({"task_params": {"digits": 3}}) == ({}, None)


# -- the command line -----------------------------------------------------------------------------------


def test_command_line_end_to_end(tmp_path):
    path = write_bench(tmp_path, axes={"model.d_model": [16, 32]}, seeds=[0])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gptdecoder", "bench", "-c", str(path), "--out", str(out), "--workers", "1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[2/2] base=" in done.stdout and "2 ok, 0 failed, 0 cached" in done.stdout
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
    text = capsys.readouterr().out
    assert "retried on the next run" in text and "learned_threshold" in text
    for option in ("--config", "--out", "--workers", "--executor", "--set", "--dry-run", "--summarise-only"):
        assert option in text
    with pytest.raises(SystemExit):  # one or the other
        main(["bench", "-c", str(path), "--dry-run", "--summarise-only"])


def test_dry_run_lists_cells(tmp_path, capsys):
    path = write_bench(tmp_path, axes={"model.d_model": [16, 32]}, seeds=[0, 1])
    assert main(["bench", "-c", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all("to run" in line for line in lines)
    assert not (tmp_path / "out").exists()
