"""The model's variants (position encodings, randomized positions, qk_norm, relu2,
zero-initialised projections, logit soft-cap): each changes the model as stated, and the
machinery around the model (fused vs explicit attention, the KV cache, hooks, the lab,
export) works for all of them."""
from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_model
from gptdecoder import hf
from gptdecoder.config import Config, config_from_dict, resolve_task
from gptdecoder.errors import UserError
from gptdecoder.model import POS_ENCODINGS, Rotary, alibi_slopes

V, BLOCK, D, NH, L = 11, 16, 32, 4, 2


SHAPE = dict(vocab_size=V, block_size=BLOCK, n_layer=L, n_head=NH, d_model=D)


VARIANTS = [dict(pos_encoding=p) for p in POS_ENCODINGS] + [
    dict(pos_encoding="rope", qk_norm=True, activation="relu2", logit_softcap=15.0, tie_weights=False),
    dict(pos_encoding="alibi", qk_norm=True),
    dict(random_positions=40),
    dict(pos_encoding="rope", random_positions=40),
]


def ids(v: dict) -> str:
    return ",".join(f"{k}={x}" for k, x in v.items())


@pytest.mark.parametrize("variant", VARIANTS, ids=ids)
def test_fused_and_explicit_attention_agree(variant):
    model = tiny_model(**SHAPE, **variant)
    idx = torch.randint(0, V, (3, BLOCK))
    with torch.no_grad():
        fused, _ = model(idx)
        for block in model.blocks:
            block.attn.explicit = True
        explicit, _ = model(idx)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS, ids=ids)
def test_kv_cache_decoding_equals_full_recompute(variant):
    """Greedy generation with the cache picks what the full forward at each length picks,
    and the cached step's logits equal the full forward's."""
    model = tiny_model(**SHAPE, **variant)
    prompt = torch.randint(0, V, (2, 5))
    out = model.generate(prompt, 8, do_sample=False)
    seq = prompt
    with torch.no_grad():
        for _ in range(8):
            logits, _ = model(seq)
            seq = torch.cat((seq, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
        full, _ = model(out[:, :-1])
        cached, cache = model.next_token_logits(out[:, :-2], None)
        step, _ = model.next_token_logits(out[:, :-1], cache)
    assert torch.equal(out, seq)
    torch.testing.assert_close(step, full[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS, ids=ids)
def test_trains(variant):
    """A few AdamW steps on a fixed batch lower the loss (every parameter gets a gradient)."""
    model = tiny_model(**SHAPE, **variant).train()
    idx = torch.randint(0, V, (8, BLOCK))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert math.isfinite(losses[-1]) and losses[-1] < losses[0] - 0.3
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused


def test_position_modules_exist_only_where_used():
    learned, rope, alibi, nope = (tiny_model(**SHAPE, pos_encoding=p) for p in ("learned", "rope", "alibi", "nope"))
    assert learned.wpe.weight.shape == (BLOCK, D) and "hook_pos_embed" in learned.hook_dict
    for model in (rope, alibi, nope):
        assert not hasattr(model, "wpe") and "hook_pos_embed" not in model.hook_dict
    assert "blocks.0.attn.hook_rot_q" in rope.hook_dict and "blocks.0.attn.hook_rot_q" not in learned.hook_dict
    assert learned.num_params() == learned.num_params(non_embedding=False) - BLOCK * D
    assert nope.num_params() == nope.num_params(non_embedding=False)


def test_nope_sees_order_only_through_the_mask():
    """Without position information the first position's output depends only on its token:
    a prompt of identical tokens gives identical logits at every position."""
    model = tiny_model(**SHAPE, pos_encoding="nope")
    with torch.no_grad():
        logits, _ = model(torch.full((1, 6), 3))
    torch.testing.assert_close(logits[0], logits[0, :1].expand(6, -1))
    learned = tiny_model(**SHAPE)
    with torch.no_grad():
        logits, _ = learned(torch.full((1, 6), 3))
    assert not torch.allclose(logits[0, 0], logits[0, 1])


def test_rope_scores_depend_on_relative_position_only():
    rotary = Rotary(8, 64, 10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> float:
        return float((rotary(q, torch.tensor([i])) * rotary(k, torch.tensor([j]))).sum())

    assert score(3, 1) == pytest.approx(score(40, 38), abs=1e-4)
    assert score(7, 7) == pytest.approx(float((q * k).sum()), abs=1e-4)  # same position: no rotation left
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    # a rotation keeps the norm
    torch.testing.assert_close(rotary(q, torch.tensor([5])).norm(), q.norm())


def test_alibi_slopes():
    assert alibi_slopes(8).tolist() == pytest.approx([2 ** -i for i in range(1, 9)])
    assert alibi_slopes(4).tolist() == pytest.approx([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8])
    # 6 heads: the 4-head slopes, then the 1st and 3rd of the 8-head ones
    assert alibi_slopes(6).tolist() == pytest.approx([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])


def test_alibi_pattern_is_the_distance_penalty_when_q_and_k_are_zero():
    """Ground truth: with the q and k weights at 0 the scores are the ALiBi bias alone, so
    head h's pattern row i is softmax(-slope_h * (i - j)) over keys j <= i."""
    model = tiny_model(**SHAPE, pos_encoding="alibi")
    with torch.no_grad():
        for block in model.blocks:
            block.attn.c_attn.weight[: 2 * D] = 0.0
            block.attn.c_attn.bias[: 2 * D] = 0.0
        _, cache = model.run_with_cache(torch.randint(0, V, (1, 6)), names_filter=["blocks.0.attn.hook_pattern"])
    pattern = cache["blocks.0.attn.hook_pattern"][0]  # (nh, T, T)
    i, j = torch.arange(6)[:, None], torch.arange(6)[None, :]
    for h, slope in enumerate(alibi_slopes(NH).tolist()):
        expected = F.softmax((-slope * (i - j)).float().masked_fill(j > i, float("-inf")), dim=-1)
        torch.testing.assert_close(pattern[h], expected)


def test_random_positions_in_training_only():
    model = tiny_model(**SHAPE, random_positions=40)
    assert model.wpe.weight.shape == (40, D)
    model.train()
    torch.manual_seed(1)
    pos = model.positions(64, BLOCK, 0, torch.device("cpu"))
    assert pos.shape == (64, BLOCK)
    assert bool((pos[:, 1:] > pos[:, :-1]).all()) and int(pos.min()) >= 0 and int(pos.max()) < 40
    assert int(pos.max()) >= BLOCK  # positions beyond the context are drawn
    model.eval()
    assert model.positions(64, BLOCK, 0, torch.device("cpu")).tolist() == list(range(BLOCK))
    # a rope model with random positions has a rotation table for the whole range
    rope = tiny_model(**SHAPE, pos_encoding="rope", random_positions=40)
    assert rope.blocks[0].attn.rotary.cos.shape == (40, D // NH // 2)


def test_learned_random_positions_use_the_drawn_rows():
    """In training, the position embedding of each token is the row its drawn id names."""
    model = tiny_model(**SHAPE, random_positions=40).train()
    idx = torch.randint(0, V, (2, 6))
    torch.manual_seed(5)
    drawn = model.positions(2, 6, 0, torch.device("cpu"))
    torch.manual_seed(5)
    _, cache = model.run_with_cache(idx, names_filter=["hook_pos_embed"])
    torch.testing.assert_close(cache["hook_pos_embed"], model.wpe.weight[drawn].detach())


def test_qk_norm_makes_attention_blind_to_the_scale_of_q_and_k():
    """RMS-normalising q and k: multiplying their weights by 100 changes nothing."""
    model = tiny_model(**SHAPE, qk_norm=True)
    idx = torch.randint(0, V, (2, 10))
    with torch.no_grad():
        before, _ = model(idx)
        for block in model.blocks:
            block.attn.c_attn.weight[: 2 * D] *= 100.0
            block.attn.c_attn.bias[: 2 * D] *= 100.0
        after, _ = model(idx)
    torch.testing.assert_close(before, after, atol=1e-4, rtol=1e-4)
    plain = tiny_model(**SHAPE)
    with torch.no_grad():
        before, _ = plain(idx)
        for block in plain.blocks:
            block.attn.c_attn.weight[: 2 * D] *= 100.0
        after, _ = plain(idx)
    assert not torch.allclose(before, after, atol=1e-3)


def test_relu2():
    model = tiny_model(**SHAPE, activation="relu2")
    h = torch.linspace(-3, 3, 61)
    torch.testing.assert_close(model.blocks[0].mlp.activation(h), torch.relu(h) ** 2)


def test_zero_init_projections_make_every_block_the_identity_at_first():
    model = tiny_model(**SHAPE, zero_init_proj=True)
    for block in model.blocks:
        assert not block.attn.c_proj.weight.any() and not block.mlp.c_proj.weight.any()
    idx = torch.randint(0, V, (2, 7))
    with torch.no_grad():
        logits, _ = model(idx)
        x = model.wte(idx) + model.wpe.weight[:7]
        torch.testing.assert_close(logits, model.lm_head(model.ln_final(x)))
    assert tiny_model(**SHAPE).blocks[0].mlp.c_proj.weight.any()


def test_logit_softcap():
    capped, plain = tiny_model(**SHAPE, logit_softcap=2.0), tiny_model(**SHAPE)
    plain.load_state_dict(capped.state_dict())
    with torch.no_grad():
        for m in (capped, plain):
            m.lm_head.weight.mul_(20.0)  # large logits, so the cap matters
        idx = torch.randint(0, V, (2, 7))
        a, _ = capped(idx)
        b, _ = plain(idx)
    assert float(a.abs().max()) <= 2.0 and float(b.abs().max()) > 4.0
    torch.testing.assert_close(a, 2.0 * torch.tanh(b / 2.0))


def test_direct_logit_attribution_adds_up_without_position_embeddings():
    """The lab's decomposition of the logit margin still sums to the model's margin
    when there is no hook_pos_embed (rope)."""
    from gptdecoder.lab.ablation import encode_examples
    from gptdecoder.lab.lens import direct_logit_attribution
    from gptdecoder.tasks import get_task

    task = get_task("sort", length=4, num_digits=3)
    model = tiny_model(vocab_size=task.vocab_size, block_size=8, pos_encoding="rope")
    dla = direct_logit_attribution(model, encode_examples(task.test_examples(40)))
    parts = float(dla["heads"].sum() + dla["mlps"].sum() + dla["attn_bias"].sum()) + dla["embed"] + dla["ln_final_bias"]
    assert parts == pytest.approx(dla["total"], abs=1e-4)


@pytest.mark.parametrize("variant,named", [
    (dict(pos_encoding="rope"), "model.pos_encoding=rope"),
    (dict(qk_norm=True), "model.qk_norm=True"),
    (dict(activation="relu2"), "model.activation=relu2"),
    (dict(logit_softcap=30.0), "model.logit_softcap=30.0"),
])
def test_non_gpt2_models_refuse_hf_export(tmp_path, variant, named):
    with pytest.raises(UserError, match="not GPT-2") as e:
        hf.save_pretrained(tiny_model(**SHAPE, **variant), tmp_path / "out")
    assert named in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_gpt2_training_tricks_still_export(tmp_path):
    """zero_init_proj and random_positions change training only: the model is still GPT-2."""
    model = tiny_model(**SHAPE, zero_init_proj=True, random_positions=40, tie_weights=False)
    assert model.config.differences_from_gpt2() == []
    hf.save_pretrained(model, tmp_path / "out")
    loaded = hf.from_pretrained(tmp_path / "out")
    idx = torch.randint(0, V, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx)[0], model(idx)[0], atol=1e-5, rtol=1e-5)


def config(**model) -> Config:
    return config_from_dict({"model": {"n_layer": 1, "n_head": 2, "d_model": 16, **model},
                             "task": {"name": "sort", "params": {"length": 4}}})


@pytest.mark.parametrize("model,message", [
    (dict(pos_encoding="rotary"), "model.pos_encoding='rotary': expected one of learned, sinusoidal, rope, alibi, nope"),
    (dict(pos_encoding="rope", d_model=18), "needs an even head size"),
    (dict(random_positions=-1), "model.random_positions=-1"),
    (dict(random_positions=4, block_size=8), "smaller than model.block_size=8"),
    (dict(logit_softcap=0.0), "model.logit_softcap=0.0"),
    (dict(activation="swish"), "expected one of gelu_tanh, gelu, relu2"),
    (dict(qk_norm="yes"), "model.qk_norm='yes': expected bool"),
])
def test_config_errors(model, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("=", "=")) as e:
        config(**model)
    assert "\n" not in str(e.value)


def test_random_positions_shorter_than_the_task_is_an_error():
    with pytest.raises(UserError, match="random_positions"):
        resolve_task(config(random_positions=3))


# -- the options compiled programs need (head size, no norm, ReLU, MLP hidden size) --------------


def test_head_size_mlp_hidden_relu_and_no_norm_are_what_they_say():
    """A head size apart from d_model / n_head, an MLP hidden size apart from mlp_ratio, ReLU
    and no normalisation: the shapes follow, the hooks keep their names, and with norm none
    the block is x + attn(x), then x + mlp(x), computed by hand here."""
    model = tiny_model(vocab_size=7, block_size=6, n_layer=1, n_head=2, d_model=10, head_size=3, mlp_hidden=5,
                       activation="relu", norm="none", noise=0.2)
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    assert attn.c_attn.weight.shape == (18, 10) and attn.c_proj.weight.shape == (10, 6)
    assert mlp.c_fc.weight.shape == (5, 10) and not any(".ln" in name or "ln_" in name for name in model.hook_dict)
    idx = torch.randint(0, 7, (2, 6))
    logits, cache = model.run_with_cache(idx, names_filter=["blocks.0.attn.hook_q", "blocks.0.mlp.hook_post"])
    assert cache["blocks.0.attn.hook_q"].shape == (2, 6, 2, 3) and cache["blocks.0.mlp.hook_post"].shape == (2, 6, 5)
    assert (cache["blocks.0.mlp.hook_post"] >= 0).all()  # ReLU

    x = model.wte(idx) + model.wpe(torch.arange(6))
    q, k, v = attn.c_attn(x).view(2, 6, 3, 2, 3).unbind(2)  # each (B, T, nh, hs)
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / 3 ** 0.5
    scores = scores.masked_fill(~torch.tril(torch.ones(6, 6, dtype=torch.bool)), float("-inf"))
    z = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), v).reshape(2, 6, 6)
    x = x + attn.c_proj(z)
    x = x + mlp.c_proj(torch.relu(mlp.c_fc(x)))
    torch.testing.assert_close(logits, model.lm_head(x), atol=1e-5, rtol=1e-5)
    assert "norm=none" in model.config.differences_from_gpt2() and "head_size=3" in model.config.differences_from_gpt2()


def test_the_new_options_are_checked_in_configs():
    from gptdecoder.config import validate_model
    from gptdecoder.errors import UserError
    from gptdecoder.model import GPTConfig

    validate_model(GPTConfig(vocab_size=5, block_size=4, n_head=3, d_model=10, head_size=4))  # 10 % 3 is fine with a head size
    for bad, message in [({"norm": "rms"}, "model.norm='rms': expected one of layernorm, none"),
                         ({"head_size": 0}, "model.head_size=0: expected a positive integer"),
                         ({"mlp_hidden": -1}, "model.mlp_hidden=-1: expected a positive integer"),
                         ({"activation": "tanh"}, "model.activation='tanh': expected one of")]:
        with pytest.raises(UserError, match=re.escape(message)):
            validate_model(GPTConfig(vocab_size=5, block_size=4, n_head=2, d_model=8, **bad))


def test_the_lab_reads_a_model_without_norm_and_with_its_own_head_size():
    """Direct logit attribution still adds up to the margin, and the circuit graph's patched
    runs still reproduce the clean and the corrupted logits."""
    from gptdecoder.lab.ablation import encode_examples
    from gptdecoder.lab.circuit_graph import GraphRun, run_graph
    from gptdecoder.lab.circuits import baseline
    from gptdecoder.lab.pairs import pairs_from_examples
    from gptdecoder.lab.lens import direct_logit_attribution

    model = tiny_model(vocab_size=7, block_size=6, n_layer=2, n_head=2, d_model=10, head_size=3, mlp_hidden=5,
                       activation="relu", norm="none", noise=0.2)
    clean = [([1, 2, 3, 4], [5, 6]), ([2, 2, 1, 0], [3, 1])]
    corrupted = [([1, 0, 3, 4], [6, 5]), ([2, 4, 1, 0], [1, 3])]
    parts = direct_logit_attribution(model, encode_examples(clean))
    added = parts["heads"].sum() + parts["mlps"].sum() + parts["attn_bias"].sum() + parts["embed"] + parts["ln_final_bias"]
    assert float(added) == pytest.approx(parts["total"], abs=1e-4)
    pairs = pairs_from_examples(clean, corrupted)
    base = baseline(model, pairs)
    patched = run_graph(model, pairs.clean, GraphRun(base.graph, base.corrupted_outputs, base.graph.allowed))
    torch.testing.assert_close(patched, model(pairs.corrupted.x)[0], atol=1e-5, rtol=1e-5)


def test_an_mlp_hidden_size_survives_the_hugging_face_round_trip(tmp_path):
    model = tiny_model(vocab_size=7, block_size=6, n_layer=1, n_head=2, d_model=8, mlp_hidden=5, noise=0.1)
    hf.save_pretrained(model, tmp_path)
    loaded = hf.from_pretrained(tmp_path)
    assert loaded.config.d_mlp == 5 and loaded.config.mlp_hidden == 5
    idx = torch.randint(0, 7, (2, 6))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])
