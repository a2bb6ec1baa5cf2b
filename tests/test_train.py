"""Trainer: convergence on sort, exact resume, greedy evaluation, checkpoint loading."""
from __future__ import annotations

import math
import re

import pytest
import torch

from gptdecoder.config import load_config
from gptdecoder.errors import UserError
from gptdecoder.tasks import get_task
from gptdecoder.data.tasks import evaluate_task
from gptdecoder.runs import load_run
from gptdecoder.train import lr_factor, make_optimizer, train_from_config
from conftest import ROOT, tiny_model


def test_tiny_sort_model_converges(tmp_path):
    config = load_config(ROOT / "config.yaml", ["output.plots=false", "train.max_iters=400", "eval.train_examples=100"])
    config.output.dir = str(tmp_path / "run")
    results = train_from_config(config, progress=False, verbose=False)
    assert results["test_accuracy"] >= 0.99
    assert results["stopped_early"] and results["iters"] < 400


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_continues_exactly(tiny_config, tmp_path, optimizer):
    """N iters in one go == N/2 iters, then --resume for the other N/2: same weights, same
    loss, the same state in every optimizer (with muon: AdamW's and Muon's)."""
    common = ["train.stop_at_accuracy=null", "train.lr_decay_iters=12", "task.name=reverse",
              "task.params={length: 3, num_digits: 4}", "train.max_iters=12", f"train.optimizer={optimizer}"]
    whole = load_config(tiny_config, common)
    whole.output.dir = str(tmp_path / "whole")
    r_whole = train_from_config(whole, progress=False, verbose=False)

    half = load_config(tiny_config, common + ["train.max_iters=6"])
    half.output.dir = str(tmp_path / "split")
    train_from_config(half, progress=False, verbose=False)
    rest = load_config(tiny_config, common)
    rest.output.dir = str(tmp_path / "split")
    r_split = train_from_config(rest, resume=True, progress=False, verbose=False)

    assert r_split["iters"] == r_whole["iters"] == 12
    assert r_split["final_loss"] == r_whole["final_loss"]
    a = torch.load(tmp_path / "whole" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "ckpt.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    optimizers = ["optimizer"] + (["muon_optimizer"] if optimizer == "muon" else [])
    for key in optimizers:
        assert a[key]["state"]
        for p, state in a[key]["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b[key]["state"][p][name])), (key, p, name)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 12
    if optimizer == "muon":
        assert a["muon_scheduler"]["last_epoch"] == b["muon_scheduler"]["last_epoch"] == 12


def test_a_diverging_run_stops_at_once_and_keeps_its_last_good_checkpoint(tiny_config, tmp_path):
    """At lr 1e30 the first step throws the weights far out and the loss soon stops being
    a number. Training stops at that step with one UserError naming the step and the lr;
    the checkpoint (written every step here) is the step before, with finite weights."""
    config = load_config(tiny_config, ["train.lr=1e30", "train.warmup_iters=0", "train.ckpt_interval=1",
                                       "train.stop_at_accuracy=null", "train.max_iters=50"])
    config.output.dir = str(tmp_path / "run")
    with pytest.raises(UserError, match=r"training diverged at iter \d+: .* train.lr \(now 1e\+30\)") as caught:
        train_from_config(config, progress=False, verbose=False)
    step = int(re.search(r"at iter (\d+)", str(caught.value)).group(1))
    assert 1 <= step < 50
    saved = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert saved["iter"] == step - 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "results.json").exists()


def test_max_seconds_stops_after_the_step_that_crosses_it(tiny_config, tmp_path):
    config = load_config(tiny_config, ["train.max_seconds=1e-9", "train.stop_at_accuracy=null", "train.max_iters=50"])
    config.output.dir = str(tmp_path / "run")
    results = train_from_config(config, progress=False, verbose=False)
    assert results["iters"] == 1 and results["stopped_early"]
    assert torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)["iter"] == 1


def test_checkpoint_contract_and_load_run(tiny_config, tmp_path):
    config = load_config(tiny_config)
    config.output.dir = str(tmp_path / "run")
    train_from_config(config, progress=False, verbose=False)
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert {"model", "model_config", "config", "iter", "optimizer", "scheduler", "rng"} <= set(state)
    assert not (tmp_path / "run" / "ckpt.pt.tmp").exists()
    run = load_run(tmp_path / "run")
    assert not run.model.training and run.task.name == "sort" and run.config.train.max_iters == 8
    with pytest.raises(UserError, match="does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    with pytest.raises(UserError, match="no checkpoint"):
        load_run(tmp_path / "bad")
    (tmp_path / "bad" / "ckpt.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_run(tmp_path / "bad")


class Payload:
    """Unpickling this runs code: what a malicious checkpoint would carry."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PWNED']).write_text('ran')",))


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tiny_config, tmp_path, monkeypatch):
    config = load_config(tiny_config)
    config.output.dir = str(tmp_path / "run")
    train_from_config(config, progress=False, verbose=False)
    state = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    state["extra"] = Payload()
    torch.save(state, tmp_path / "run" / "ckpt.pt")
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(marker))
    with pytest.raises(UserError, match="cannot read checkpoint .* safely"):
        load_run(tmp_path / "run")
    assert not marker.exists()


def test_evaluate_task_decodes_greedily():
    task = get_task("copy", length=3, num_digits=4)
    model = tiny_model(vocab_size=task.vocab_size, block_size=task.seq_len - 1, n_layer=1, n_head=1, d_model=8,
                       train=True)
    examples = task.test_examples(50)
    result = evaluate_task(model, task, examples=examples, batch_size=16, n_mistakes=3)
    assert result.n_examples == len(examples) and len(result.per_position_accuracy) == 3
    assert 0.0 <= result.accuracy <= min(result.per_position_accuracy)
    assert len(result.mistakes) == (3 if result.accuracy < 1 else 0)
    # the answer is decoded token by token from the model's own outputs
    m = result.mistakes[0]
    idx = torch.tensor([m.prompt])
    assert model.generate(idx, 3, do_sample=False)[0, 4:].tolist() == m.predicted


def test_schedule_and_weight_decay_groups():
    factors = [lr_factor(s, warmup=10, decay_iters=110, min_ratio=0.1) for s in range(120)]
    assert factors[0] < factors[9] < 1.0 + 1e-9
    assert math.isclose(factors[10], 1.0) and math.isclose(factors[110], 0.1) and factors[60] < factors[20]
    model = tiny_model(vocab_size=5, block_size=8, n_layer=1, n_head=1, d_model=8, train=True)
    decay, no_decay = make_optimizer(model.parameters(), 1e-3, 0.1, (0.9, 0.99)).param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
