"""Capture, head ablation, activation patching, and the ``ablate`` command on a tiny run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gptdecoder.ablate import (
    ablate_heads, capture_attention, encode_examples, exact_match, mean_head_outputs,
    patch_activations, patterns_from_cache, stack_patterns,
)
from gptdecoder.model import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=3, d_model=24)).eval()


@pytest.fixture(scope="module")
def idx() -> torch.Tensor:
    return torch.randint(0, 11, (4, 9), generator=torch.Generator().manual_seed(1))


def test_capture_shapes_and_stacking(model, idx):
    patterns = capture_attention(model, idx)
    assert len(patterns) == 2 and all(p.shape == (4, 3, 9, 9) for p in patterns)
    assert stack_patterns(patterns).shape == (2, 4, 3, 9, 9)
    _, cache = model.run_with_cache(idx, names_filter=lambda n: n.endswith("hook_pattern"))
    assert torch.equal(stack_patterns(cache), stack_patterns(patterns))
    assert torch.equal(patterns_from_cache(cache)[1], patterns[1])


def test_zero_ablating_a_whole_layer_changes_the_output_and_matches_zero_attention(model, idx):
    clean, _ = model(idx)
    ablated = ablate_heads(model, idx, [(0, h) for h in range(3)], mode="zero")
    assert (ablated - clean).abs().max() > 1e-4
    # all heads of layer 0 at zero: its attention output is just c_proj's bias
    def check(out, hook):
        assert torch.allclose(out, model.blocks[0].attn.c_proj.bias.expand_as(out))
    with model.hooks(fwd_hooks=[("blocks.0.hook_attn_out", check)]):
        ablate_heads(model, idx, [(0, h) for h in range(3)], mode="zero")


def test_mean_ablation_uses_the_reference_mean(model, idx):
    reference = torch.randint(0, 11, (8, 9), generator=torch.Generator().manual_seed(2))
    means = mean_head_outputs(model, reference)
    assert means[1].shape == (9, 3, 8)
    logits = ablate_heads(model, idx, [(1, 2)], mode="mean", reference_idx=reference)
    assert (logits - model(idx)[0]).abs().max() > 0
    # ablating with the mean of a batch made only of idx itself, row by row, is a no-op for B=1
    one = idx[:1]
    same = ablate_heads(model, one, [(1, 2)], mode="mean", reference_idx=one)
    assert torch.allclose(same, model(one)[0], atol=1e-5)
    with pytest.raises(ValueError):
        ablate_heads(model, idx, [(1, 2)], mode="mean")


def test_patching_every_position_with_the_clean_activation_gives_clean_logits(model, idx):
    corrupted = (idx + 1) % 11
    clean_logits, cache = model.run_with_cache(idx, names_filter=["blocks.0.hook_resid_post", "blocks.1.attn.hook_z"])
    patched = patch_activations(model, corrupted, cache, "blocks.0.hook_resid_post")
    assert torch.allclose(patched, clean_logits, atol=1e-5)
    # only the last position, only one head: earlier positions keep the corrupted logits
    partial = patch_activations(model, corrupted, cache, "blocks.1.attn.hook_z", positions=[8], heads=[0])
    corrupted_logits, _ = model(corrupted)
    assert torch.allclose(partial[:, :8], corrupted_logits[:, :8], atol=1e-6)
    assert (partial[:, 8] - corrupted_logits[:, 8]).abs().max() > 0


def test_exact_match_counts_whole_answers():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=3, block_size=8, n_layer=1, n_head=1, d_model=8)).eval()
    data = encode_examples([([0, 1], [1, 0]), ([2, 2, 1, 0], [1])])  # different lengths: padded
    assert data.x.shape == (2, 4) and data.y[0, -1] == -1 and data.mask[0, -1] == 0
    assert 0.0 <= exact_match(model, data) <= 1.0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A sort model trained for a few iterations with the project's trainer."""
    train = pytest.importorskip("gptdecoder.train")
    from gptdecoder.config import load_config

    run_dir = tmp_path_factory.mktemp("run")
    config_path = run_dir / "tiny.yaml"
    config_path.write_text(
        "model: {n_layer: 1, n_head: 2, d_model: 16}\n"
        "task: {name: sort, params: {length: 4, num_digits: 3}}\n"
        "train: {max_iters: 5, batch_size: 32, eval_interval: 1000, device: cpu, precision: fp32}\n"
        "eval: {examples: 50, quick_examples: 20, train_examples: 20, longer_by: 0}\n"
        f"output: {{dir: {run_dir}, plots: false}}\n"
    )
    train.train_from_config(load_config(config_path), progress=False, verbose=False)
    return run_dir


def test_ablate_command_writes_table_and_heatmap(tiny_run):
    result = subprocess.run(
        [sys.executable, "-m", "gptdecoder", "ablate", "--run", str(tiny_run), "--examples", "30"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "| layer | head | accuracy | drop |" in result.stdout
    for suffix in ("md", "csv", "png"):
        assert (tiny_run / f"ablation_zero.{suffix}").stat().st_size > 0
    assert len((tiny_run / "ablation_zero.csv").read_text().splitlines()) == 1 + 2  # header + 2 heads


def test_teacher_forced_exact_match_equals_greedy_decoding(tiny_run):
    from gptdecoder.train import evaluate_task, load_run

    run = load_run(tiny_run)
    examples = run.task.test_examples(50)
    decoded = evaluate_task(run.model, run.task, examples=examples).accuracy
    assert exact_match(run.model, encode_examples(examples)) == pytest.approx(decoded)


def test_ablate_command_missing_run_is_a_user_error(tmp_path):
    pytest.importorskip("gptdecoder.train")
    from gptdecoder.cli import main

    assert main(["ablate", "--run", str(tmp_path / "nope")]) == 2


def test_readme_pictures_from_a_run(tiny_run, tmp_path):
    from gptdecoder.viz import render_run_images

    paths = render_run_images(tiny_run, tmp_path, ablation_examples=20, html_views=True)
    names = {p.name for p in paths}
    assert {"attention_all_heads.png", "head_ablation.png", "attention_viewer.html"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
