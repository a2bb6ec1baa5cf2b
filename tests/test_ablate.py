"""Capture, head ablation, activation patching (gptdecoder.lab) and the ``ablate`` command."""
from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from lab_runs import write_untrained_run

from gptdecoder.lab.ablation import (
    ablate_heads, ablation_rows, encode_examples, exact_match, head_ablation_scores, markdown_table,
    mean_head_outputs, patch_activations,
)
from gptdecoder.lab.capture import capture_attention, patterns_from_cache, stack_patterns
from gptdecoder.model import GPT


@pytest.fixture(scope="module")
def model() -> GPT:
    return tiny_model(n_head=3, d_model=24)


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


def test_a_cache_missing_a_layer_is_an_error(model, idx):
    _, cache = model.run_with_cache(idx, names_filter="blocks.1.attn.hook_pattern")
    with pytest.raises(KeyError, match="blocks.0.attn.hook_pattern"):
        patterns_from_cache(cache, n_layer=2)


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
    with pytest.raises(ValueError, match="no head axis"):
        patch_activations(model, corrupted, cache, "blocks.0.hook_resid_post", heads=[0])


def test_exact_match_counts_whole_answers():
    model = tiny_model(vocab_size=3, block_size=8, n_layer=1, n_head=1, d_model=8)
    data = encode_examples([([0, 1], [1, 0]), ([2, 2, 1, 0], [1])])  # different lengths: padded
    assert data.x.shape == (2, 4) and data.y[0, -1] == -1 and data.mask[0, -1] == 0
    assert 0.0 <= exact_match(model, data) <= 1.0


class ScriptedModel:
    """Stands in for a GPT in exact_match: its logits pick the given tokens at every position."""

    def __init__(self, picks: torch.Tensor, vocab_size: int) -> None:
        self.picks, self.vocab_size = picks, vocab_size

    @contextlib.contextmanager
    def hooks(self, fwd_hooks):
        yield

    def __call__(self, x: torch.Tensor, position_ids=None):
        return torch.nn.functional.one_hot(self.picks[: x.size(0)], self.vocab_size).float(), None


def test_exact_match_scores_only_answer_tokens_and_whole_answers():
    data = encode_examples([([0, 1], [2, 2]), ([1, 0, 1], [0, 1])])
    right = data.y.clamp(min=0).clone()
    wrong_prompt = right.clone()
    wrong_prompt[data.mask == 0] = (wrong_prompt[data.mask == 0] + 1) % 3  # prompt targets are not scored
    assert exact_match(ScriptedModel(wrong_prompt, 3), data) == 1.0
    one_wrong = right.clone()
    last_answer = int(data.mask[1].nonzero()[-1])
    one_wrong[1, last_answer] = (one_wrong[1, last_answer] + 1) % 3  # one token of the second answer
    assert exact_match(ScriptedModel(one_wrong, 3), data) == 0.5
    assert exact_match(ScriptedModel(one_wrong, 3), data, batch_size=1) == 0.5


def test_ablation_rows_and_table():
    scores = torch.tensor([[0.9, 0.2], [1.0, 0.95]])
    rows = ablation_rows(1.0, scores)
    assert [(r["layer"], r["head"]) for r in rows] == [(0, 1), (0, 0), (1, 1), (1, 0)]  # biggest drop first
    assert rows[0]["drop"] == pytest.approx(0.8) and rows[-1]["drop"] == 0.0
    assert ablation_rows(1.0, scores.tolist()) == rows  # nested lists (the explain report's) rank alike
    table = markdown_table(rows, 1.0, "zero")
    assert "| 0 | 1 | 0.200 | +0.800 |" in table and "-0.000" not in table


def test_head_ablation_scores_have_one_cell_per_head(model):
    examples = [([1, 2, 3], [4, 5]), ([3, 2, 1], [6, 7]), ([5, 5, 5], [1, 0])]
    data = encode_examples(examples)
    for mode in ("zero", "mean"):
        baseline, scores = head_ablation_scores(model, data, mode)
        assert scores.shape == (2, 3) and 0.0 <= baseline <= 1.0
        assert ((scores >= 0) & (scores <= 1)).all()


# -- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory) -> Path:
    return write_untrained_run(tmp_path_factory.mktemp("run") / "sort")


def test_ablate_command_writes_table_csv_and_heatmap(untrained_run, tmp_path, capsys):
    from gptdecoder.cli import main

    assert main(["ablate", "--run", str(untrained_run), "--examples", "30", "--mode", "mean",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| layer | head | accuracy | drop |" in out and "mean-ablated" in out
    for suffix in ("md", "csv", "png"):
        assert (tmp_path / f"ablation_mean.{suffix}").stat().st_size > 0
    with open(tmp_path / "ablation_mean.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 and set(rows[0]) == {"layer", "head", "accuracy", "drop"}
    assert (tmp_path / "ablation_mean.png").read_bytes().startswith(b"\x89PNG")


def test_ablate_command_user_errors(untrained_run, tmp_path, capsys):
    from gptdecoder.cli import main

    assert main(["ablate", "--run", str(tmp_path / "nope")]) == 2
    assert main(["ablate", "--run", str(untrained_run), "--examples", "0"]) == 2
    assert capsys.readouterr().err.startswith("error:")


# -- against the trainer's greedy decoding -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A sort model trained for a few iterations through the ``train`` command."""
    from gptdecoder.cli import main

    run_dir = tmp_path_factory.mktemp("trained")
    config_path = run_dir / "tiny.yaml"
    config_path.write_text(
        "model: {n_layer: 1, n_head: 2, d_model: 16}\n"
        "task: {name: sort, params: {length: 4, num_digits: 3}}\n"
        "train: {max_iters: 30, batch_size: 32, eval_interval: 1000, device: cpu, precision: fp32}\n"
        "eval: {examples: 50, quick_examples: 20, train_examples: 20, longer_by: 0}\n"
        f"output: {{dir: {run_dir}, plots: false}}\n"
    )
    assert main(["train", "-c", str(config_path), "--no-progress"]) == 0
    return run_dir


def test_teacher_forced_exact_match_equals_greedy_decoding(tiny_run):
    from gptdecoder.data.tasks import evaluate_task
    from gptdecoder.runs import load_run

    run = load_run(tiny_run)
    examples = run.task.test_examples(50)
    decoded = evaluate_task(run.model, run.task, examples=examples).accuracy
    assert exact_match(run.model, encode_examples(examples)) == pytest.approx(decoded)
