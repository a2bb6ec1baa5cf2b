"""One run, one task: within one training run the task is built once (by the config's
checks, or by the data when no one built it before) and handed along, and the device is
resolved once (by train_from_config) and handed down."""
from __future__ import annotations

import argparse
import sys

import pytest
import yaml

from gptdecoder import bench, runtime
from gptdecoder import tasks as task_registry
from gptdecoder.bench import executors
from gptdecoder.commands import train as train_command
from gptdecoder.config import load_config, load_config_and_task
from gptdecoder.runs import load_run
from gptdecoder.train import train_from_config

SHORT = ["train.max_iters=2", "train.eval_interval=2", "train.stop_at_accuracy=null"]


def count_calls(monkeypatch, module, name: str) -> list[str]:
    """Count the calls of ``module.name`` through every gptdecoder module that holds it
    (``from ... import name`` makes a module its own binding). Returns the list of calls,
    one entry each."""
    real, calls = getattr(module, name), []

    def counted(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    for loaded in list(sys.modules.values()):
        if getattr(loaded, "__name__", "").startswith("gptdecoder") and getattr(loaded, name, None) is real:
            monkeypatch.setattr(loaded, name, counted)
    return calls


@pytest.fixture
def counts(monkeypatch):
    """(task builds, device resolutions) from here on: lists that grow with each call."""
    return count_calls(monkeypatch, task_registry, "get_task"), count_calls(monkeypatch, runtime, "resolve_device")


def test_train_from_config_builds_the_task_and_resolves_the_device_once(tiny_config, tmp_path, counts):
    built, resolved = counts
    config = load_config(tiny_config, SHORT + [f"output.dir={tmp_path / 'run'}"])
    built.clear()  # the checks' task is not handed over here
    results = train_from_config(config, progress=False, verbose=False)  # no task given: it builds it itself
    assert results["iters"] == 2
    assert (len(built), len(resolved)) == (1, 1)


def test_a_task_given_to_train_from_config_is_not_built_again(tiny_config, tmp_path, counts):
    built, resolved = counts
    config, task = load_config_and_task(tiny_config, SHORT + [f"output.dir={tmp_path / 'run'}"])
    assert (len(built), len(resolved)) == (1, 0)  # the config's checks build the task; nothing looks for a device
    train_from_config(config, progress=False, verbose=False, task=task)
    assert (len(built), len(resolved)) == (1, 1)


def test_the_train_command_builds_the_task_once_from_config_to_pictures(tiny_config, tmp_path, counts, capsys):
    """load_config, training, and reading the run back for its pictures: one task, one device."""
    built, resolved = counts
    args = argparse.Namespace(config=str(tiny_config), set=SHORT + ["output.plots=true"], out=str(tmp_path / "run"),
                              resume=False, no_progress=True)
    assert train_command.run(args) == 0
    assert "pictures: " in capsys.readouterr().out and (tmp_path / "run" / "attention.png").is_file()
    assert (len(built), len(resolved)) == (1, 1)


def test_load_run_builds_the_task_once_or_takes_the_one_it_is_given(tiny_config, tmp_path, counts):
    built, resolved = counts
    config, task = load_config_and_task(tiny_config, SHORT + [f"output.dir={tmp_path / 'run'}"])
    train_from_config(config, progress=False, verbose=False, task=task)
    built.clear()
    run = load_run(tmp_path / "run")
    assert len(built) == 1 and run.task == task
    given = load_run(tmp_path / "run", task=task)
    assert len(built) == 1 and given.task is task


def test_a_bench_cell_builds_its_task_once_and_resolves_the_device_once(tiny_config, tmp_path, counts):
    """Its config's checks and its cache key share one task (expand), which the cell's run takes."""
    built, resolved = counts
    bench_file = tmp_path / "bench.yaml"
    bench_file.write_text(yaml.safe_dump({"base": str(tiny_config), "axes": {"model.d_model": [16]}, "seeds": [0],
                                          "set": SHORT, "out": str(tmp_path / "grid")}))
    [cell] = bench.expand(bench.load_bench(bench_file))
    assert (len(built), len(resolved)) == (1, 0) and cell.task is not None
    record = executors.run_cell(cell)
    assert record["status"] == "ok", record["error"]
    assert (len(built), len(resolved)) == (1, 1)
