"""Hook points: names, documented shapes, run_with_cache, hooks() edits and clean-up, patterns."""
from __future__ import annotations

import re

import pytest
import torch

from gptdecoder import hooks as hooks_module
from gptdecoder.model import GPT, GPTConfig



B, T, V, D, NH, L = 2, 7, 29, 20, 5, 2  # odd head count on purpose


@pytest.fixture()
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=V, block_size=12, n_layer=L, n_head=NH, d_model=D, mlp_ratio=3)).eval()


def documented_shapes() -> dict[str, str]:
    """name -> shape string, parsed from the table in the hooks.py docstring (the one source)."""
    table = {}
    for line in hooks_module.__doc__.splitlines():
        m = re.match(r"^((?:blocks\.\{i\}\.|ln_final\.)?[\w./]*hook_[\w/]+)\s+(\[[^\]]+\])", line)
        if m:
            name, shape = m.groups()
            if "/" in name:  # hook_q/k/v
                prefix, last = name.rsplit(".", 1)
                first, *others = last.split("/")
                table[f"{prefix}.{first}"] = shape
                for other in others:
                    table[f"{prefix}.hook_{other}"] = shape
            else:
                table[name] = shape
    return table


def test_every_hook_point_is_documented_with_the_right_shape(model):
    table = documented_shapes()
    sizes = {"B": B, "T": T, "T_q": T, "T_k": T, "nh": NH, "hs": D // NH, "d": D, "mlp_ratio*d": 3 * D, "1": 1}
    _, cache = model.run_with_cache(torch.randint(0, V, (B, T)))
    assert set(cache) == set(model.hook_dict)
    for name, tensor in cache.items():
        generic = re.sub(r"blocks\.\d+\.", "blocks.{i}.", name)
        assert generic in table, f"{name} missing from the hooks.py table"
        expected = tuple(sizes[s.strip()] for s in table[generic].strip("[]").split(","))
        assert tuple(tensor.shape) == expected, name
    assert len(table) == len({re.sub(r"blocks\.\d+\.", "blocks.{i}.", n) for n in cache})  # no stale rows


def test_transformerlens_names(model):
    for name in ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.1.attn.hook_pattern",
                 "blocks.0.attn.hook_z", "blocks.0.mlp.hook_post", "blocks.1.hook_resid_post", "ln_final.hook_normalized"]:
        assert name in model.hook_dict


def test_run_with_cache_keeps_only_filtered_names_detached(model):
    idx = torch.randint(0, V, (B, T))
    model.train(False)
    logits, cache = model.run_with_cache(idx, names_filter=["blocks.0.attn.hook_pattern", "hook_embed"])
    assert set(cache) == {"blocks.0.attn.hook_pattern", "hook_embed"}
    assert all(not t.requires_grad for t in cache.values())
    torch.testing.assert_close(logits, model(idx)[0], atol=1e-5, rtol=0)
    _, by_regex = model.run_with_cache(idx, names_filter=r"blocks\.\d+\.attn\.hook_pattern")
    assert set(by_regex) == {f"blocks.{i}.attn.hook_pattern" for i in range(L)}
    _, by_fn = model.run_with_cache(idx, names_filter=lambda n: n.endswith("hook_resid_post"))
    assert len(by_fn) == L
    with pytest.raises(KeyError, match="unknown hook point"):
        model.run_with_cache(idx, names_filter=["blocks.0.hook_nope"])
    assert all(not point.fns for point in model.hook_dict.values())


def test_patterns_are_causal_distributions(model):
    _, cache = model.run_with_cache(torch.randint(0, V, (B, T)), names_filter=lambda n: n.endswith("hook_pattern"))
    for pattern in cache.values():  # (B, nh, T, T)
        torch.testing.assert_close(pattern.sum(-1), torch.ones(B, NH, T))
        above = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        assert torch.all(pattern[..., above] == 0)


def test_hook_can_replace_an_activation(model):
    idx = torch.randint(0, V, (B, T))
    clean, _ = model(idx)

    def zero_head_0(z, hook):  # (B, T, nh, hs)
        z = z.clone()
        z[:, :, 0] = 0
        return z

    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", zero_head_0)]):
        ablated, _ = model(idx)
    assert not torch.allclose(clean, ablated)
    torch.testing.assert_close(model(idx)[0], clean)  # removed on exit

    seen = []
    with model.hooks(fwd_hooks=[(lambda n: n.endswith("hook_mlp_out"), lambda t, hook: seen.append(hook.name))]):
        model(idx)
    assert seen == [f"blocks.{i}.hook_mlp_out" for i in range(L)]  # a None return leaves the tensor alone

    # TransformerLens's one-call form: same result, hooks gone afterwards
    targets = torch.randint(0, V, (B, T))
    logits, loss = model.run_with_hooks(idx, fwd_hooks=[("blocks.0.attn.hook_z", zero_head_0)], targets=targets)
    torch.testing.assert_close(logits, ablated)
    assert loss is not None and all(not point.fns for point in model.hook_dict.values())


def test_editing_the_pattern_changes_the_output(model):
    idx = torch.randint(0, V, (B, T))
    clean, _ = model(idx)

    def uniform(pattern, hook):  # attend equally to every visible position
        causal = torch.tril(torch.ones_like(pattern))
        return causal / causal.sum(-1, keepdim=True)

    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", uniform)]):
        edited, _ = model(idx)
    assert not torch.allclose(clean, edited)


def test_hooks_are_removed_when_the_body_raises(model):
    with pytest.raises(RuntimeError, match="boom"):
        with model.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", lambda t, h: None), ("hook_embed", lambda t, h: None)]):
            assert model.hook_dict["hook_embed"].fns
            raise RuntimeError("boom")
    assert all(not point.fns for point in model.hook_dict.values())
    assert not model.blocks[0].attn.explicit_path(torch.zeros(1))  # back on the fast path


def test_hooks_are_removed_when_a_hook_raises_or_a_name_is_unknown(model):
    def broken(t, h):
        raise ValueError("bad hook")

    with pytest.raises(ValueError, match="bad hook"):
        with model.hooks(fwd_hooks=[("blocks.1.hook_resid_mid", broken)]):
            model(torch.randint(0, V, (1, 3)))
    with pytest.raises(KeyError, match="unknown hook point"):
        with model.hooks(fwd_hooks=[("hook_embed", broken), ("no_such_hook", broken)]):
            pass
    assert all(not point.fns for point in model.hook_dict.values())


def test_only_pattern_hooks_switch_to_the_explicit_path(model):
    attn = model.blocks[0].attn
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", lambda t, h: None)]):
        assert not attn.explicit_path(torch.zeros(1))
    for name in ("hook_scores", "hook_masked_scores", "hook_pattern"):
        with model.hooks(fwd_hooks=[(f"blocks.0.attn.{name}", lambda t, h: None)]):
            assert attn.explicit_path(torch.zeros(1)) and not model.blocks[1].attn.explicit_path(torch.zeros(1))


def test_hooks_see_only_new_positions_with_a_kv_cache(model):
    prompt = torch.randint(0, V, (1, 3))
    shapes = []
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", lambda t, h: shapes.append(tuple(t.shape)))]):
        model.generate(prompt, 3, do_sample=False)
    assert shapes == [(1, NH, 3, 3), (1, NH, 1, 4), (1, NH, 1, 5)]


def test_torch_register_forward_hook_fires_on_every_hook_point():
    """Hook points are plain nn.Modules: PyTorch's own hooks see the same tensors as ours."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=8, n_layer=1, n_head=NH, d_model=NH * 4)).eval()
    idx = torch.randint(0, V, (2, 5))
    _, cache = model.run_with_cache(idx)
    seen = {}
    handles = [point.register_forward_hook(lambda m, inputs, out, name=name: seen.__setitem__(name, out))
               for name, point in model.hook_dict.items()]
    model(idx)
    assert set(seen) == set(model.hook_dict)  # the attention matrices too: watching switches the path
    for name, tensor in cache.items():
        torch.testing.assert_close(seen[name], tensor)
    replace = model.hook_dict["blocks.0.attn.hook_z"].register_forward_hook(lambda m, i, out: torch.zeros_like(out))
    logits, _ = model(idx)
    assert torch.equal(seen["blocks.0.hook_attn_out"], model.blocks[0].attn.c_proj.bias.expand(2, 5, -1))
    for handle in handles + [replace]:
        handle.remove()


def test_torch_pre_hooks_on_the_pattern_fire_too():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=8, n_layer=1, n_head=NH, d_model=NH * 4)).eval()
    seen = []
    point = model.hook_dict["blocks.0.attn.hook_pattern"]
    handle = point.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].shape))
    model(torch.randint(0, V, (2, 5)))
    handle.remove()
    assert seen == [torch.Size([2, NH, 5, 5])]
