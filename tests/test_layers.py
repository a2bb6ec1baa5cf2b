"""layers.Module must behave exactly like nn.Module; only its Python overhead differs."""
import copy
import io
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gptdecoder import layers
from gptdecoder.model import GPT, GPTConfig


class Pair(layers.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = layers.Linear(4, 4)
        self.second = layers.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def test_lookups_read_the_registries_live():
    pair = Pair()
    assert pair.first is pair._modules["first"]
    assert pair.first.weight is pair.first._parameters["weight"]
    replacement = nn.Linear(4, 4)
    pair.first = replacement  # through __setattr__
    assert pair.first is replacement
    other = nn.Linear(4, 4)
    pair._modules["second"] = other  # written directly, as torch.ao quantization's convert does
    assert pair.second is other
    param = nn.Parameter(torch.zeros(4, 4))
    pair.second = layers.Linear(4, 4)
    pair.second._parameters["weight"] = param  # as torch.func.functional_call does
    assert pair.second.weight is param
    pair.second.bias = None
    assert pair.second.bias is None and pair.second._parameters["bias"] is None
    del pair.first
    assert "first" not in pair._modules
    with pytest.raises(AttributeError, match="first"):
        pair.first
    assert not hasattr(Pair(), "third")


def test_buffers_and_plain_attributes_still_work():
    pair = Pair()
    pair.register_buffer("scale", torch.ones(1))
    assert pair.scale is pair._buffers["scale"]
    pair.note = "plain"
    assert pair.note == "plain"
    pair.first = None  # a registered submodule may be set to None
    assert pair.first is None and "first" in pair._modules


def test_functional_call_uses_the_substituted_weights():
    model = GPT(GPTConfig(vocab_size=17, block_size=8, n_layer=1, n_head=2, d_model=8)).eval()
    idx = torch.randint(0, 17, (2, 8))
    params = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    logits, _ = torch.func.functional_call(model, params, (idx,))
    assert torch.count_nonzero(logits) == 0  # all-zero weights -> all-zero logits
    assert torch.count_nonzero(model(idx)[0]) > 0  # and the model's own weights are back


def test_pytorch_forward_hooks_still_fire():
    pair = Pair()
    x = torch.randn(2, 4)
    seen = []
    handle = pair.first.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    pair(x)
    handle.remove()
    pair(x)
    assert seen == [torch.Size([2, 4])]
    handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: seen.append(type(module)))
    try:
        pair(x)
    finally:
        handle.remove()
    assert seen[1:] == [layers.Linear, layers.Linear, Pair]


def test_backward_hook_and_pre_hook_fire():
    pair = Pair()
    calls = []
    pair.second.register_forward_pre_hook(lambda module, args: calls.append("pre"))
    pair.first.register_full_backward_hook(lambda module, grad_in, grad_out: calls.append("backward"))
    pair(torch.randn(3, 4, requires_grad=True)).sum().backward()
    assert calls == ["pre", "backward"]


def test_copy_pickle_and_state_dict_are_unchanged():
    pair = Pair()
    keys = ["first.weight", "first.bias", "second.weight", "second.bias"]
    assert list(pair.state_dict()) == keys
    clone = copy.deepcopy(pair)
    assert clone.first is not pair.first and torch.equal(clone.first.weight, pair.first.weight)
    restored = pickle.loads(pickle.dumps(pair))
    x = torch.randn(2, 4)
    assert torch.equal(restored(x), pair(x))
    buffer = io.BytesIO()
    torch.save(pair.state_dict(), buffer)
    buffer.seek(0)
    fresh = Pair()
    fresh.load_state_dict(torch.load(buffer))
    assert torch.equal(fresh(x), pair(x))


def test_layers_compute_what_nn_computes():
    x = torch.randn(3, 5, 8)
    linear, ln = layers.Linear(8, 6), layers.LayerNorm(8)
    assert torch.equal(linear(x), F.linear(x, linear.weight, linear.bias))
    assert torch.equal(ln(x), F.layer_norm(x, (8,), ln.weight, ln.bias))
    drop = layers.Dropout(0.5)
    assert (drop(x) == 0).any()  # training mode with p > 0 really drops
    drop.eval()
    assert drop(x) is x
