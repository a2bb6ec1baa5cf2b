"""The mask debugger: PASS and exit 0 on a real model, FAIL and exit 1 on planted bugs.

The checks are tested directly (gptdecoder.lab.masks) and through the ``inspect-masks``
command, both on a freshly initialised model from a config and on a run directory.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import HANG_TIMEOUT, tiny_model
from lab_runs import TINY_TASK, write_untrained_run

from gptdecoder.lab.masks import (
    alignment_table, check_causality, check_gradient, check_loss_mask, check_patterns, expected_loss_mask,
    format_matrix, head_steps, held_out_examples, mask_report, no_causal_mask_hooks,
)
from gptdecoder.model import GPT
from gptdecoder.tasks import build_example, get_task
from gptdecoder.tasks.base import Prompt

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY_TASK)
    return path


def inspect_masks(*argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``python -m gptdecoder inspect-masks ARGV``, in process."""
    import contextlib
    import io

    from gptdecoder.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["inspect-masks", *argv])
    return code, out.getvalue(), err.getvalue()


# -- the lab functions ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model() -> GPT:
    return tiny_model(vocab_size=5, block_size=8)


def test_checks_directly_on_the_model(small_model):
    idx = torch.tensor([[1, 2, 3, 4, 0, 1]])
    assert all(c.passed for c in check_patterns(small_model, idx))
    assert check_causality(small_model, idx, 5).passed
    broken = no_causal_mask_hooks(2)
    assert not check_patterns(small_model, idx, broken)[0].passed
    assert not check_causality(small_model, idx, 5, broken).passed


def test_loss_mask_checks():
    prompt, answer = [1, 2, 0], [0, 1, 2]
    x, y, mask = build_example(prompt, answer)
    assert expected_loss_mask(prompt, len(x)) == mask == [0, 0, 1, 1, 1]
    assert check_loss_mask(mask, prompt).passed
    assert not check_loss_mask([1] * len(mask), prompt).passed
    scored = Prompt([1, 2, 0], scored=[1])  # a task may score a predictable prompt token
    assert expected_loss_mask(scored, 5) == [1, 0, 1, 1, 1]


def test_gradient_check_catches_a_loss_over_the_prompt(small_model):
    prompt, answer = [1, 2, 3], [3, 2]
    x, y, mask = build_example(prompt, answer)
    idx, targets = torch.tensor([x]), torch.tensor([y])
    assert check_gradient(small_model, idx, targets, torch.tensor([mask]), prompt).passed
    assert not check_gradient(small_model, idx, targets, torch.ones(1, len(x), dtype=torch.long), prompt).passed
    assert all(p.grad is None for p in small_model.parameters())  # leaves no gradients behind


def test_head_steps_are_the_four_stages_in_order(small_model):
    idx = torch.tensor([[1, 2, 3, 4]])
    steps = list(head_steps(small_model, idx, layer=1, head=1).values())
    raw, scaled, masked, pattern = steps
    d_head = 16 // 2
    assert torch.allclose(raw / d_head ** 0.5, scaled, atol=1e-5)
    assert torch.isinf(masked[0, 1]) and masked[0, 1] < 0 and masked[1, 0] == scaled[1, 0]
    assert torch.allclose(pattern, masked.softmax(-1))


def test_text_views():
    assert format_matrix(torch.tensor([[0.5, float("-inf")], [0.25, 0.75]]), ["a", "b"]).splitlines()[1].split() == \
        ["0:a", "0.50", "-inf"]
    table = alignment_table(["0", "1", "2"], [1, 2], [2, 0], [0, 1])
    assert table.splitlines()[-1].endswith("<- scored") and "<- scored" not in table.splitlines()[-2]


def test_mask_report_passes_on_a_causal_model_and_fails_on_each_planted_bug(small_model):
    task = get_task("sort", length=3, num_digits=3)
    example = held_out_examples(task)[0]
    assert held_out_examples(task) == held_out_examples(task)  # numbered the same every time
    report = mask_report(small_model, task, example, layer=1, head=0, example_index=0)
    assert report.failed == 0 and len(report.checks) == 5
    assert "held-out example 0" in report.text and report.text.endswith("5 passed, 0 failed")
    no_mask = mask_report(small_model, task, example, mask="none")
    assert {c.name for c in no_mask.checks if not c.passed} >= {
        "attention is exactly 0 above the diagonal (every layer, head)",
        "changing tokens after position t leaves logits at <= t unchanged (all t)"}
    all_scored = mask_report(small_model, task, example, loss_mask="all")
    failed = [c.name for c in all_scored.checks if not c.passed]
    assert len(failed) == 2 and any("loss mask" in n for n in failed) and any("gradient" in n for n in failed)
    with pytest.raises(ValueError):
        mask_report(small_model, task, example, layer=2)


# -- the command ------------------------------------------------------------------------------


def test_causal_model_passes(config_path):
    code, out, err = inspect_masks("-c", str(config_path), "--layer", "1", "--head", "1", "--example", "2")
    assert code == 0, out + err
    for heading in ("model: freshly initialised", "1. Alignment", "2. Attention mask", "Q.K^T (raw)", "scaled:",
                    "masked:", "softmax:", "4. Checks"):
        assert heading in out
    assert "-inf" in out and "FAIL" not in out and out.count("PASS") == 5


def test_missing_causal_mask_is_caught(config_path):
    code, out, _ = inspect_masks("-c", str(config_path), "--mask", "none")
    assert code == 1
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert any("above the diagonal" in line for line in fails)
    assert any("changing tokens after position t" in line for line in fails)


def test_loss_mask_over_the_prompt_is_caught(config_path):
    code, out, _ = inspect_masks("-c", str(config_path), "--loss-mask", "all")
    assert code == 1
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert any("loss mask" in line for line in fails) and any("gradient" in line for line in fails)


def test_a_run_directory(tmp_path):
    run_dir = write_untrained_run(tmp_path / "run")
    code, out, err = inspect_masks("--run", str(run_dir))
    assert code == 0, out + err
    assert f"model: trained run {run_dir}" in out


@pytest.mark.parametrize("argv", [["--head", "7"], ["--layer", "-1"], ["--example", "100000"]])
def test_bad_arguments_are_user_errors(config_path, argv):
    code, _, err = inspect_masks("-c", str(config_path), *argv)
    assert code == 2 and err.startswith("error:")


def test_a_text_config_is_a_user_error(tmp_path):
    path = tmp_path / "text.yaml"
    path.write_text("task: {name: text}\n")
    code, _, err = inspect_masks("-c", str(path))
    assert code == 2 and err.startswith("error:")


def test_exit_code_of_the_real_process(config_path):
    """The exit code is what makes the command usable as a test: check it from outside."""
    result = subprocess.run([sys.executable, "-m", "gptdecoder", "inspect-masks", "-c", str(config_path),
                             "--mask", "none"], capture_output=True, text=True, cwd=ROOT, timeout=HANG_TIMEOUT)
    assert result.returncode == 1 and "FAIL" in result.stdout
