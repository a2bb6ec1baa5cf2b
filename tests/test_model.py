"""The model itself: config validation, GPT-2 architecture and init, the two attention paths, errors."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import tiny_model
from gptdecoder.model import GPT, GPTConfig

SHAPE = dict(vocab_size=37, block_size=16, n_layer=2, n_head=3, d_model=24)


def test_model_is_plain_torch_nn():
    """Every module is a torch.nn class or a plain subclass that leaves __call__ to nn.Module."""
    model = tiny_model(**SHAPE)
    for module in model.modules():
        assert isinstance(module, nn.Module)
        assert type(module).__call__ is nn.Module.__call__, type(module)
    assert "wte" not in type(model).__dict__  # submodules live on the instance, as in any nn.Module


def test_unresolved_sizes_are_asserted():
    with pytest.raises(AssertionError, match="vocab_size and block_size"):
        GPT(GPTConfig(n_layer=1, n_head=1, d_model=8))


def test_gpt2_architecture():
    model = tiny_model(**SHAPE, mlp_ratio=4)
    block = model.blocks[0]
    assert model.lm_head.weight is model.wte.weight  # tied
    assert model.wpe.weight.shape == (16, 24)  # learned positions
    assert block.mlp.c_fc.out_features == 4 * 24
    h = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(block.mlp.activation(h), torch.nn.functional.gelu(h, approximate="tanh"))
    exact = tiny_model(**SHAPE, activation="gelu").blocks[0].mlp.activation
    torch.testing.assert_close(exact(h), torch.nn.functional.gelu(h))
    assert block.ln_1.eps == 1e-5 and model.ln_final.eps == 1e-5
    untied = tiny_model(**SHAPE, tie_weights=False)
    assert not untied.lm_head.weight is untied.wte.weight
    no_bias = tiny_model(**SHAPE, bias=False)
    assert no_bias.blocks[0].attn.c_attn.bias is None and no_bias.ln_final.bias is None


def test_pre_layernorm_block_order():
    """x + attn(ln_1(x)) then + mlp(ln_2(.)): rebuild a block's output by hand."""
    model = tiny_model(**SHAPE)
    block = model.blocks[0]
    x, pos = torch.randn(2, 5, 24), torch.arange(5)
    with torch.no_grad():
        mid = x + block.attn(block.ln_1(x), pos)
        expected = mid + block.mlp(block.ln_2(mid))
        torch.testing.assert_close(block(x, pos), expected)


def test_gpt2_init_statistics():
    n_layer = 8
    model = tiny_model(vocab_size=512, block_size=64, n_layer=n_layer, n_head=4, d_model=256)
    proj_std = 0.02 / math.sqrt(2 * n_layer)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert abs(p.std().item() - proj_std) < 0.1 * proj_std, name
        elif name.endswith("weight") and p.dim() == 2:
            assert abs(p.std().item() - 0.02) < 0.002, name
        elif name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
    assert torch.all(model.ln_final.weight == 1)


@pytest.mark.parametrize("bias", [True, False])
def test_fast_and_explicit_attention_agree(bias):
    model = tiny_model(**SHAPE, bias=bias)
    idx = torch.randint(0, 37, (3, 16))
    with torch.no_grad():
        fast, _ = model(idx)
        for block in model.blocks:
            block.attn.explicit = True
        explicit, _ = model(idx)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_fused_and_explicit_layer_norm_agree(bias):
    """A watched LayerNorm normalises explicitly (to show hook_scale / hook_normalized);
    the numbers, gradients included, are those of the fused F.layer_norm to 1e-5."""
    model = tiny_model(**SHAPE, bias=bias).train()
    with torch.no_grad():  # weights and biases away from their init of 1 and 0
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.normal_(1.0, 0.5)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.5)
    idx = torch.randint(0, 37, (3, 16))
    fused, fused_loss = model(idx, idx)
    fused_grads = torch.autograd.grad(fused_loss, list(model.parameters()))
    watch_all = [(lambda n: n.endswith(("hook_scale", "hook_normalized")), lambda t, h: None)]
    with model.hooks(watch_all):
        assert all(m.explicit_path() for m in model.modules() if hasattr(m, "hook_scale"))
        explicit, explicit_loss = model(idx, idx)
        explicit_grads = torch.autograd.grad(explicit_loss, list(model.parameters()))
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=0)
    for a, b in zip(explicit_grads, fused_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert not any(m.explicit_path() for m in model.modules() if hasattr(m, "hook_scale"))  # idle again


def test_state_dict_keeps_gpt2_layer_norm_names():
    """The LayerNorms' hook points are named ln1/ln2 (TransformerLens), the modules stay ln_1/ln_2."""
    keys = set(tiny_model(**SHAPE).state_dict())
    assert {"blocks.0.ln_1.weight", "blocks.0.ln_1.bias", "blocks.1.ln_2.weight", "ln_final.bias"} <= keys
    assert not any(".ln1." in k or ".ln2." in k for k in keys)


def test_loss_and_loss_mask():
    model = tiny_model(**SHAPE)
    idx = torch.randint(0, 37, (2, 8))
    targets = torch.randint(0, 37, (2, 8))
    logits, loss = model(idx, targets)
    expected = nn.functional.cross_entropy(logits.view(-1, 37), targets.view(-1))
    torch.testing.assert_close(loss, expected)
    mask = torch.zeros(2, 8)
    mask[:, 5:] = 1  # only the "answer" positions count
    _, masked = model(idx, targets, loss_mask=mask)
    expected = nn.functional.cross_entropy(logits[:, 5:].reshape(-1, 37), targets[:, 5:].reshape(-1))
    torch.testing.assert_close(masked, expected)
    targets[:, :5] = -1  # ignore_index gives the same
    torch.testing.assert_close(model(idx, targets)[1], expected)


@pytest.mark.parametrize("explicit", [False, True])
def test_causality_gradient_is_exactly_zero_for_future_positions(explicit):
    """d logits[t] / d embedding[s] == 0 exactly for every s > t, on both attention paths."""
    model = tiny_model(**SHAPE)
    for block in model.blocks:
        block.attn.explicit = explicit
    captured = {}

    def leaf(tensor, hook):  # make the token embeddings a leaf we can differentiate by
        captured["embed"] = tensor.detach().requires_grad_(True)
        return captured["embed"]

    idx = torch.randint(0, 37, (1, 10))
    with model.hooks(fwd_hooks=[("hook_embed", leaf)]):
        logits, _ = model(idx)
    for t in range(10):
        (grad,) = torch.autograd.grad(logits[0, t].sum(), captured["embed"], retain_graph=True)
        assert torch.all(grad[0, t + 1 :] == 0), f"position {t} depends on the future"
        assert grad[0, : t + 1].abs().sum() > 0


def test_kv_cache_forward_matches_full_forward():
    from gptdecoder.model import KVCache

    model = tiny_model(**SHAPE)
    idx = torch.randint(0, 37, (2, 12))
    with torch.no_grad():
        full, _ = model(idx)
        cache = KVCache(model.config, 2, 16)
        first, _ = model(idx[:, :5], kv_cache=cache)
        rest = [model(idx[:, 5:9], kv_cache=cache)[0]]  # several new tokens against the cache
        rest += [model(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(9, 12)]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-5, rtol=0)


def test_token_ids_out_of_range_are_rejected():
    model = tiny_model(**SHAPE)
    with pytest.raises(ValueError, match=r"\[0, 37\)"):
        model(torch.tensor([[1, 37]]))
    with pytest.raises(ValueError, match=r"\[0, 37\)"):
        model(torch.tensor([[-1, 3]]))


def test_sequence_longer_than_block_size_is_rejected():
    with pytest.raises(ValueError, match="block_size=16"):
        tiny_model(**SHAPE)(torch.zeros(1, 17, dtype=torch.long))


def test_bf16_autocast_forward_and_backward():
    from gptdecoder import runtime

    model = tiny_model(**SHAPE).train()
    idx = torch.randint(0, 37, (2, 16))
    with runtime.autocast("cpu", "bf16"):
        logits, loss = model(idx, idx)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert model.wte.weight.grad is not None
