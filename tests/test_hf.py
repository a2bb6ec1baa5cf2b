"""GPT-2 interop: our model and transformers' GPT2LMHeadModel load each other's weights."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

transformers = pytest.importorskip("transformers")

from conftest import tiny_hf_model, tiny_model
from gptdecoder import hf
from gptdecoder.errors import UserError


@pytest.mark.parametrize(
    "shape, weights",
    [
        (dict(n_head=3, n_embd=30), "safetensors"),
        (dict(n_head=5, n_embd=40, n_layer=3), "safetensors"),
        (dict(n_head=1, n_embd=16, n_inner=48), "safetensors"),
        (dict(n_head=3, n_embd=30), "bin"),
        (dict(n_head=3, n_embd=30, activation_function="gelu"), "safetensors"),  # exact-erf GELU
    ],
)
def test_from_pretrained_matches_transformers(tmp_path, shape, weights):
    hf_model = tiny_hf_model(noise=0.05, **shape)
    hf_model.save_pretrained(tmp_path)
    if weights == "bin":  # the older format (transformers 5 no longer writes it): same tensors, torch.save
        torch.save(hf_model.state_dict(), tmp_path / "pytorch_model.bin")
        (tmp_path / "model.safetensors").unlink()
    model = hf.from_pretrained(tmp_path).eval()
    assert model.config.n_head == shape["n_head"] and model.config.d_model == shape["n_embd"]
    idx = torch.randint(0, 61, (3, 24))
    with torch.no_grad():
        expected = hf_model(idx).logits
        logits, _ = model(idx)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "bias, tie, activation",
    [(True, True, "gelu_tanh"), (False, True, "gelu_tanh"), (True, False, "gelu_tanh"), (True, True, "gelu")],
)
def test_save_pretrained_loads_in_transformers(tmp_path, bias, tie, activation):
    model = tiny_model(1, vocab_size=53, block_size=20, n_head=5, d_model=40, bias=bias, tie_weights=tie,
                       activation=activation)
    config = model.config
    out = tmp_path / "export"
    hf.save_pretrained(model, out)
    hf_config = json.loads((out / "config.json").read_text())
    assert hf_config["architectures"] == ["GPT2LMHeadModel"] and hf_config["model_type"] == "gpt2"
    assert (out / "model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp dir renamed away

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf_model).__name__ == "GPT2LMHeadModel"
    if tie:
        assert hf_model.lm_head.weight.data_ptr() == hf_model.transformer.wte.weight.data_ptr()
    idx = torch.randint(0, 53, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf_model(idx).logits, atol=1e-4, rtol=0)
        prompt = idx[:, :4]
        ours = model.generate(prompt, 12, do_sample=False)
        theirs = hf_model.generate(prompt, max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs)

    # and back: our round trip restores the same config (bias=False included) and logits
    again = hf.from_pretrained(out).eval()
    assert again.config == config
    with torch.no_grad():
        torch.testing.assert_close(again(idx)[0], model(idx)[0], atol=0, rtol=0)


def test_save_pretrained_replaces_an_old_export_but_not_other_directories(tmp_path):
    model = tiny_model(block_size=8, n_layer=1, d_model=8, train=True)
    hf.save_pretrained(model, tmp_path / "out")
    hf.save_pretrained(model, tmp_path / "out")  # replacing a previous export is fine
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="refusing to overwrite"):
        hf.save_pretrained(model, tmp_path / "data")
    assert (tmp_path / "data" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(activation_function="relu"), "activation_function"),
        (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon"),
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
        (dict(n_inner="wide"), "n_inner"),  # any positive size is fine (model.mlp_hidden); not a word
        (dict(model_type="llama"), "model_type"),
    ],
)
def test_unsupported_configs_are_rejected_clearly(tmp_path, override, message):
    config = transformers.GPT2Config(n_embd=30, n_head=3).to_dict()  # the config is checked before any weights
    config.update(override)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=message):
        hf.from_pretrained(tmp_path)


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        hf.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="model.safetensors"):
        hf.from_pretrained(tmp_path)


@pytest.mark.parametrize("change", [{"n_embd": "16"}, {"n_layer": 1.5}, {"vocab_size": None}, {"resid_pdrop": "0.1"},
                                    {"activation_function": ["gelu"]}, {"tie_word_embeddings": "false"},
                                    {"layer_norm_epsilon": "x"}])
def test_a_config_json_of_the_wrong_types_is_one_clear_error(change):
    from gptdecoder.hf import config_from_hf

    raw = {"model_type": "gpt2", "n_embd": 16, "n_layer": 1, "n_head": 2, "vocab_size": 11, "n_positions": 8}
    with pytest.raises(UserError):
        config_from_hf({**raw, **change})
