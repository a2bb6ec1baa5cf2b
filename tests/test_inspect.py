"""``inspect-masks`` end to end: PASS and exit 0 on the real model, FAIL and exit 1 on planted bugs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gptdecoder.inspect import check_causality, check_patterns, no_causal_mask_hooks
from gptdecoder.model import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "model: {n_layer: 2, n_head: 2, d_model: 16}\ntask: {name: sort, params: {length: 4, num_digits: 3}}\n"


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    pytest.importorskip("gptdecoder.config")
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(CONFIG)
    return path


def inspect_masks(config_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gptdecoder", "inspect-masks", "-c", str(config_path), *extra],
        capture_output=True, text=True, cwd=ROOT,
    )


def test_causal_model_passes(config_path):
    result = inspect_masks(config_path, "--layer", "1", "--head", "1", "--example", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for heading in ("1. Alignment", "2. Attention mask", "Q.K^T (raw)", "scaled:", "masked:", "softmax:", "4. Checks"):
        assert heading in out
    assert "-inf" in out and "FAIL" not in out and out.count("PASS") == 5


def test_missing_causal_mask_is_caught(config_path):
    result = inspect_masks(config_path, "--mask", "none")
    assert result.returncode == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert any("above the diagonal" in line for line in fails)
    assert any("changing tokens after position t" in line for line in fails)


def test_loss_mask_over_the_prompt_is_caught(config_path):
    result = inspect_masks(config_path, "--loss-mask", "all")
    assert result.returncode == 1
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert any("loss mask" in line for line in fails) and any("gradient" in line for line in fails)


def test_bad_head_is_a_user_error(config_path):
    result = inspect_masks(config_path, "--head", "7")
    assert result.returncode == 2 and result.stderr.startswith("error:")


def test_checks_directly_on_the_model():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, d_model=8)).eval()
    idx = torch.tensor([[1, 2, 3, 4, 0, 1]])
    assert all(c.passed for c in check_patterns(model, idx))
    assert check_causality(model, idx, 5).passed
    broken = no_causal_mask_hooks(1)
    assert not check_patterns(model, idx, broken)[0].passed
    assert not check_causality(model, idx, 5, broken).passed
