"""demo.py end to end, as a user runs it: the run directory, and bad input failing cleanly."""
from __future__ import annotations

import json

from conftest import ROOT, run_demo

RESULT_KEYS = {"task", "params", "iters", "train_seconds", "tokens_per_second", "train_accuracy",
               "test_accuracy", "test_examples", "per_position_accuracy"}


def test_demo_writes_a_complete_run_dir(tmp_path):
    out = tmp_path / "run"
    proc = run_demo("-c", str(ROOT / "config.yaml"), "--set", "train.max_iters=30", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for name in ("config.yaml", "metrics.jsonl", "ckpt.pt", "results.json",
                 "loss.png", "accuracy.png", "prediction.png", "attention.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert RESULT_KEYS <= set(results)
    assert results["task"] == "sort" and results["iters"] <= 30 and len(results["per_position_accuracy"]) == 6
    assert "held-out exact match" in proc.stdout and str(out) in proc.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records) and any("accuracy" in r for r in records)


def test_bad_input_exits_2_with_one_line_and_overwrites_nothing(tmp_path):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"precious")
    cases = [
        (["--set", "train.max_iter=5"], "did you mean 'max_iters'"),  # unknown key
        (["--set", "train.batch_size=big"], "train.batch_size='big': expected int"),  # wrong type
        (["--set", "model.block_size=4"], "too short"),  # impossible model
        (["--resume"], "cannot read checkpoint"),  # unreadable checkpoint
    ]
    for extra, message in cases:
        proc = run_demo("-c", str(ROOT / "config.yaml"), "--out", str(out), *extra)
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert (out / "ckpt.pt").read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt"]


def test_an_output_path_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    from gptdecoder.cli import main

    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", "-c", str(ROOT / "config.yaml"), "--out", str(blocker / "run"), "--no-progress"])
    assert code == 2 and err.getvalue().startswith("error: ") and err.getvalue().count("\n") == 1
