"""Hook points: names, documented shapes, run_with_cache, hooks() edits and clean-up, patterns."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_model
from gptdecoder import hooks as hooks_module
from gptdecoder.model import GPT

B, T, V, D, NH, L = 2, 7, 29, 20, 5, 2  # odd head count on purpose


@pytest.fixture()
def model() -> GPT:
    return tiny_model(vocab_size=V, block_size=12, n_layer=L, n_head=NH, d_model=D, mlp_ratio=3)


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
    """Every point of GPT-2 and of the variants that add or remove points is in the table,
    with its shape; and every row of the table is a point of one of them."""
    table = documented_shapes()
    sizes = {"B": B, "T": T, "T_q": T, "T_k": T, "nh": NH, "hs": D // NH, "d": D, "d_mlp": 3 * D, "1": 1}
    rope = tiny_model(vocab_size=V, block_size=12, n_layer=L, n_head=NH, d_model=D, mlp_ratio=3,
                      pos_encoding="rope", qk_norm=True)
    split = tiny_model(vocab_size=V, block_size=12, n_layer=L, n_head=NH, d_model=D, mlp_ratio=3)
    split.set_use_split_qkv_input(True)
    split.set_use_attn_result(True)
    switched = {"blocks.{i}.hook_q_input", "blocks.{i}.hook_k_input", "blocks.{i}.hook_v_input",
                "blocks.{i}.attn.hook_result"}
    seen = set()
    for m in (model, rope, split):
        _, cache = m.run_with_cache(torch.randint(0, V, (B, T)))
        off = set() if m is split else {n for n in m.hook_dict if re.sub(r"blocks\.\d+\.", "blocks.{i}.", n) in switched}
        assert set(cache) == set(m.hook_dict) - off  # the switched-off points never fire
        for name, tensor in cache.items():
            generic = re.sub(r"blocks\.\d+\.", "blocks.{i}.", name)
            assert generic in table, f"{name} missing from the hooks.py table"
            expected = tuple(sizes[s.strip()] for s in table[generic].strip("[]").split(","))
            if m is split and generic.startswith("blocks.{i}.ln1."):  # each head's copy normalised apart
                expected = expected[:2] + (NH,) + expected[2:]
            assert tuple(tensor.shape) == expected, name
            seen.add(generic)
    assert seen == set(table)  # no stale rows


def test_split_inputs_and_head_results_change_nothing_but_the_hooks(model):
    """TransformerLens's switches give the same logits; each head's result sums to the
    attention output; and a patch of one head's query input changes that head alone."""
    idx = torch.randint(0, V, (B, T))
    reference, _ = model(idx)
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    logits, cache = model.run_with_cache(idx)
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
    for i in range(L):
        total = cache[f"blocks.{i}.attn.hook_result"].sum(2) + model.blocks[i].attn.c_proj.bias
        torch.testing.assert_close(total, cache[f"blocks.{i}.hook_attn_out"], atol=1e-5, rtol=1e-5)

    def nudge_head_1(x, hook):
        x = x.clone()
        x[:, :, 1] += torch.linspace(-1.0, 1.0, D)  # a constant would be centred away by ln_1
        return x

    with model.hooks([("blocks.0.hook_q_input", nudge_head_1)]):
        _, patched = model.run_with_cache(idx, names_filter="blocks.0.attn.hook_q|blocks.0.attn.hook_k")
    changed = (patched["blocks.0.attn.hook_q"] - cache["blocks.0.attn.hook_q"]).abs().amax(dim=(0, 1, 3))
    assert changed[1] > 1e-3 and changed[[0, 2, 3, 4]].max() < 1e-6  # head 1's queries only
    torch.testing.assert_close(patched["blocks.0.attn.hook_k"], cache["blocks.0.attn.hook_k"])
    model.set_use_split_qkv_input(False)
    model.set_use_attn_result(False)
    torch.testing.assert_close(model(idx)[0], reference)


def test_transformerlens_names(model):
    for name in ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.1.attn.hook_pattern",
                 "blocks.0.attn.hook_z", "blocks.0.mlp.hook_post", "blocks.1.hook_resid_post", "ln_final.hook_normalized",
                 "ln_final.hook_scale", "blocks.0.ln1.hook_normalized", "blocks.1.ln1.hook_scale",
                 "blocks.0.ln2.hook_normalized", "blocks.1.ln2.hook_scale", "blocks.0.attn.hook_attn_scores"]:
        assert name in model.hook_dict
        assert model.hook_dict[name].name == name  # the name hooks see (hook.name) and caches use


def test_every_alias_is_documented_and_reaches_its_point(model):
    doc = " ".join(hooks_module.__doc__.split())
    for alias, target in hooks_module.ALIASES.items():
        assert alias.removeprefix("blocks.{i}.") in doc, f"alias {alias} missing from the hooks.py docstring"
        for layer in range(L):
            a, t = alias.replace("{i}", str(layer)), target.replace("{i}", str(layer))
            assert a not in dict.keys(model.hook_dict) and t in dict.keys(model.hook_dict)  # one entry per point
            assert model.hook_dict[a] is model.hook_dict[t] and a in model.hook_dict
            assert hooks_module.canonical_name(a) == t and a in hooks_module.aliases(t)


def test_aliases_work_wherever_a_name_does(model):
    """hooks(), run_with_cache (list, regex, callable filters), hook_dict and the cache."""
    idx = torch.randint(0, V, (B, T))
    old, new = "blocks.1.attn.hook_masked_scores", "blocks.1.attn.hook_attn_scores"
    _, cache = model.run_with_cache(idx, names_filter=[old, "blocks.0.ln_1.hook_scale"])
    assert set(cache) == {new, "blocks.0.ln1.hook_scale"}  # stored under the table's names
    assert old in cache and torch.equal(cache[old], cache[new]) and cache.get(old) is cache[new]
    assert cache["blocks.0.ln_1.hook_scale"] is cache["blocks.0.ln1.hook_scale"]
    _, by_regex = model.run_with_cache(idx, names_filter=r"blocks\.\d+\.attn\.hook_masked_scores")
    assert set(by_regex) == {f"blocks.{i}.attn.hook_attn_scores" for i in range(L)}
    _, by_fn = model.run_with_cache(idx, names_filter=lambda n: ".ln_2." in n)
    assert set(by_fn) == {f"blocks.{i}.ln2.{p}" for i in range(L) for p in ("hook_scale", "hook_normalized")}
    _, tl_regex = model.run_with_cache(idx, names_filter=r"blocks\.\d+\.ln1\.hook_normalized")
    assert set(tl_regex) == {f"blocks.{i}.ln1.hook_normalized" for i in range(L)}
    seen = []
    with model.hooks([(old, lambda t, hook: seen.append(hook.name))]):
        model(idx)
    assert seen == [new]


def test_layer_norm_hook_points_follow_their_definitions(model):
    """hook_scale = sqrt(var + eps); hook_normalized = (x - mean) / scale, so that
    hook_normalized * weight + bias is the LayerNorm's output (TransformerLens's LayerNormPre)."""
    with torch.no_grad():  # make the affine part visible
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.5)
                module.bias.normal_(0.0, 0.5)
    idx = torch.randint(0, V, (B, T))
    logits, cache = model.run_with_cache(idx)
    lns = [(f"blocks.{i}.ln1", f"blocks.{i}.hook_resid_pre", model.blocks[i].ln_1) for i in range(L)]
    lns += [(f"blocks.{i}.ln2", f"blocks.{i}.hook_resid_mid", model.blocks[i].ln_2) for i in range(L)]
    lns += [("ln_final", f"blocks.{L - 1}.hook_resid_post", model.ln_final)]
    for prefix, resid, ln in lns:
        x, scale, normalized = cache[resid], cache[prefix + ".hook_scale"], cache[prefix + ".hook_normalized"]
        torch.testing.assert_close(scale, (x.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt())
        torch.testing.assert_close(normalized, (x - x.mean(-1, keepdim=True)) / scale)
        torch.testing.assert_close(normalized * ln.weight + ln.bias, F.layer_norm(x, (D,), ln.weight, ln.bias, ln.eps),
                                   atol=1e-5, rtol=0)
    final = cache["ln_final.hook_normalized"] * model.ln_final.weight + model.ln_final.bias
    torch.testing.assert_close(logits, model.lm_head(final))
    torch.testing.assert_close(logits, model(idx)[0], atol=1e-5, rtol=0)  # the fused path, unwatched


def test_only_layer_norm_hooks_switch_a_layer_norm_to_the_explicit_path(model):
    lns = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(lns) == 2 * L + 1 and not any(ln.explicit_path() for ln in lns)
    with model.hooks([("blocks.0.hook_resid_pre", lambda t, h: None), ("ln_final.hook_normalized", lambda t, h: None)]):
        assert [ln.explicit_path() for ln in lns] == [False] * (2 * L) + [True]
    with model.hooks([("blocks.1.ln_1.hook_scale", lambda t, h: None)]):  # an alias
        assert model.blocks[1].ln_1.explicit_path() and not model.blocks[1].ln_2.explicit_path()
    assert not any(ln.explicit_path() for ln in lns)


def test_attn_scores_are_the_masked_scores(model):
    """hook_attn_scores (TransformerLens): hook_scores with -inf above the diagonal, before the softmax."""
    _, cache = model.run_with_cache(torch.randint(0, V, (B, T)), names_filter=lambda n: "scores" in n or "pattern" in n)
    above = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    for i in range(L):
        scores, masked = cache[f"blocks.{i}.attn.hook_scores"], cache[f"blocks.{i}.attn.hook_attn_scores"]
        assert torch.all(masked[..., above] == float("-inf")) and torch.all(torch.isfinite(masked[..., ~above]))
        torch.testing.assert_close(masked, scores.masked_fill(above, float("-inf")))
        torch.testing.assert_close(cache[f"blocks.{i}.attn.hook_pattern"], masked.softmax(-1))


def test_pos_embed_has_transformerlens_shape(model):
    """[B, T, d] (TransformerLens's shape): the position rows expanded over the batch, a view."""
    idx = torch.randint(0, V, (B, T))
    _, cache = model.run_with_cache(idx, names_filter=["hook_pos_embed", "hook_embed", "blocks.0.hook_resid_pre"])
    assert cache["hook_pos_embed"].shape == (B, T, D)
    torch.testing.assert_close(cache["hook_pos_embed"], model.wpe.weight[:T].expand(B, T, D))
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"], cache["hook_embed"] + cache["hook_pos_embed"])
    shapes = []
    with model.hooks([("hook_pos_embed", lambda t, h: shapes.append(tuple(t.shape)))]):
        model.generate(idx[:1, :3], 2, do_sample=False)  # with a KV cache: the new positions only
    assert shapes == [(1, 3, D), (1, 1, D)]


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
    for name in ("hook_scores", "hook_attn_scores", "hook_masked_scores", "hook_pattern"):
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
    model = tiny_model(vocab_size=V, block_size=8, n_layer=1, n_head=NH, d_model=NH * 4)
    model.set_use_split_qkv_input(True)  # the switched points too
    model.set_use_attn_result(True)
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
    model = tiny_model(vocab_size=V, block_size=8, n_layer=1, n_head=NH, d_model=NH * 4)
    seen = []
    point = model.hook_dict["blocks.0.attn.hook_pattern"]
    handle = point.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].shape))
    model(torch.randint(0, V, (2, 5)))
    handle.remove()
    assert seen == [torch.Size([2, NH, 5, 5])]
