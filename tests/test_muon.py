"""train.optimizer: muon -- torch.optim.Muon for the hidden matrices, AdamW for the rest."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import tiny_model
from gptdecoder.config import load_config
from gptdecoder.errors import UserError
from gptdecoder.model import GPT
from gptdecoder.train import build_trainer, hidden_matrices, lr_factor, make_optimizers, train_from_config

MUON = ["train.optimizer=muon", "train.muon_lr=0.02"]


def block_linear_names(model: GPT) -> set[str]:
    """The names the hidden matrices should have, spelled out independently of train.py."""
    return {f"blocks.{i}.{layer}.weight" for i in range(model.config.n_layer)
            for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}


def names_of(model: GPT, params) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in model.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("tie_weights", [True, False])
def test_muon_gets_exactly_the_hidden_matrices(tiny_config, tie_weights):
    config = load_config(tiny_config, MUON)
    model = tiny_model(vocab_size=7, block_size=8, tie_weights=tie_weights, train=True)
    adamw, muon = make_optimizers(model, config.train)
    assert isinstance(adamw, torch.optim.AdamW) and isinstance(muon, torch.optim.Muon)
    muon_params = [p for g in muon.param_groups for p in g["params"]]
    adamw_params = [p for g in adamw.param_groups for p in g["params"]]
    assert names_of(model, muon_params) == names_of(model, hidden_matrices(model)) == block_linear_names(model)
    assert len(muon_params) == 8
    # AdamW has everything else -- embeddings, LM head (when untied), norms, biases -- and nothing twice
    everything = {name for name, _ in model.named_parameters()}
    assert names_of(model, adamw_params) == everything - block_linear_names(model)
    assert len(adamw_params) + len(muon_params) == len(list(model.parameters()))
    assert ("lm_head.weight" in names_of(model, adamw_params)) == (not tie_weights)
    assert "wte.weight" in names_of(model, adamw_params)


def test_adamw_setting_is_one_adamw_over_everything(tiny_config):
    config = load_config(tiny_config)
    model = tiny_model(vocab_size=7, block_size=8, n_layer=1, train=True)
    (adamw,) = make_optimizers(model, config.train)
    assert isinstance(adamw, torch.optim.AdamW)
    assert sum(len(g["params"]) for g in adamw.param_groups) == len(list(model.parameters()))


def test_lr_schedule_and_weight_decay_apply_to_both(tiny_config):
    config = load_config(tiny_config, MUON + ["train.lr=1e-3", "train.weight_decay=0.1", "train.warmup_iters=2",
                                              "train.stop_at_accuracy=null"])
    _, trainer = build_trainer(config, say=lambda s: None)
    adamw, muon = trainer.optimizers
    # the same decay per step: lr * weight_decay, whichever optimizer moves the matrix
    decayed = next(g for g in adamw.param_groups if g["weight_decay"] > 0)
    assert math.isclose(muon.param_groups[0]["weight_decay"] * 0.02, decayed["weight_decay"] * 1e-3)
    for _ in range(5):  # through the warmup into the cosine: one factor for both
        trainer.train_step()
        assert math.isclose(adamw.param_groups[0]["lr"] / 1e-3, muon.param_groups[0]["lr"] / 0.02)
    assert adamw.param_groups[0]["lr"] < 1e-3


def test_one_step_moves_hidden_matrices_with_muon_and_the_rest_with_adamw(tiny_config):
    config = load_config(tiny_config, MUON)
    _, trainer = build_trainer(config, say=lambda s: None)
    adamw, muon = trainer.optimizers
    model = trainer.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.train_step()
    muon_state = names_of(model, [p for p in muon.state if "momentum_buffer" in muon.state[p]])
    adamw_state = names_of(model, [p for p in adamw.state if "exp_avg" in adamw.state[p]])
    assert muon_state == block_linear_names(model)
    assert adamw_state == {name for name, _ in model.named_parameters()} - block_linear_names(model)
    # Muon's step is orthogonalised: the largest singular value of the change is about the
    # step's lr (warmup factor x muon_lr, x sqrt(rows/cols) for tall matrices), whatever the gradient
    lr = lr_factor(0, config.train.warmup_iters, config.train.max_iters, 0.1) * config.train.muon_lr
    for name in block_linear_names(model):
        p = model.get_parameter(name)
        top = torch.linalg.matrix_norm(p.detach() - before[name], ord=2).item()
        expected = lr * math.sqrt(max(1.0, p.shape[0] / p.shape[1]))
        assert 0.7 < top / expected < 1.6, (name, top, expected)


def test_loss_decreases_on_a_tiny_task(tiny_config, tmp_path):
    config = load_config(tiny_config, MUON + ["train.max_iters=60", "train.stop_at_accuracy=null",
                                              "train.eval_interval=60", "train.log_interval=1"])
    _, trainer = build_trainer(config, say=lambda s: None)
    losses = [trainer.train_step() for _ in range(60)]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:5]) / 5


@pytest.mark.parametrize("first, then", [("adamw", "muon"), ("muon", "adamw")])
def test_resuming_with_the_other_optimizer_is_one_user_error(tiny_config, tmp_path, first, then):
    config = load_config(tiny_config, [f"train.optimizer={first}", "train.max_iters=2"])
    config.output.dir = str(tmp_path / "run")
    train_from_config(config, progress=False, verbose=False)
    other = load_config(tiny_config, [f"train.optimizer={then}", "train.max_iters=4"])
    other.output.dir = str(tmp_path / "run")
    with pytest.raises(UserError, match=f"trained with train.optimizer={first}, this config says {then}") as e:
        train_from_config(other, resume=True, progress=False, verbose=False)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("override, message", [
    ("train.optimizer=sgd", "expected one of adamw, muon"),
    ("train.muon_lr=0", "expected lr > 0"),
    ("train.muon_momentum=1.0", "momentum in"),
])
def test_bad_optimizer_settings_are_user_errors(tiny_config, override, message):
    with pytest.raises(UserError, match=message):
        load_config(tiny_config, [override])


def test_hidden_matrices_are_the_block_linears_only():
    model = tiny_model(vocab_size=7, block_size=8, n_layer=3, tie_weights=False, train=True)
    hidden = hidden_matrices(model)
    assert all(p.dim() == 2 for p in hidden)
    assert not any(p is model.lm_head.weight or p is model.wte.weight or p is model.wpe.weight for p in hidden)
    assert len(hidden) == 4 * 3 == sum(isinstance(m, nn.Linear) for m in model.blocks.modules())
