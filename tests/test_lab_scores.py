"""The lab's scores checked against ground truth: models whose circuits are set by hand.

Each planted model starts from all-zero weights (LayerNorm gains 1) and a one-hot
residual stream: a block of dims for the token, one for the position, a dim that is
always 1 (LayerNorm centres the stream, so the sum of a one-hot block is no constant),
and scratch blocks (the previous token, the output). A head is planted by choosing which dims its
query, key and value read and where its output writes; everything else stays zero, so
an unplanted head attends uniformly and writes nothing. Then we know exactly which
head is which, and every score must find it.
"""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from conftest import tiny_model
from gptdecoder.lab.ablation import encode_examples
from gptdecoder.lab.lens import answer_rank, direct_logit_attribution, logit_lens
from gptdecoder.lab.scores import (
    attention_rollout,
    detection_patterns,
    detection_score,
    head_scores,
    repeated_random_tokens,
    source_positions,
    source_scores,
)
from gptdecoder.model import GPT
from gptdecoder.tasks import get_task

GAIN = 10.0  # query gain: makes a planted head's softmax nearly one-hot


# -- building planted models ----------------------------------------------------------------------


class Layout:
    """Where things live in the residual stream: [token | position | one | scratch groups...]."""

    def __init__(self, vocab: int, positions: int, groups: tuple[str, ...] = ()) -> None:
        self.vocab, self.positions = vocab, positions
        self.start = {"tok": 0, "pos": vocab}
        self.one = vocab + positions  # always 1: a constant a query can read
        end = self.one + 1
        for group in groups:
            self.start[group] = end
            end += vocab
        self.size = end

    def __call__(self, group: str, i: int) -> int:
        """The residual dim of token (or position) i in ``group``."""
        return self.start[group] + i


def blank_model(layout: Layout, n_layer: int, n_head: int, d_model: int, block_size: int) -> GPT:
    """All weights zero but the LayerNorm gains; one-hot token and position embeddings;
    the unembedding reads the "out" group (when there is one)."""
    assert d_model >= layout.size
    model = tiny_model(vocab_size=layout.vocab, block_size=block_size, n_layer=n_layer, n_head=n_head,
                       d_model=d_model, tie_weights=False, mlp_ratio=1)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
        for t in range(layout.vocab):
            model.wte.weight[t, layout("tok", t)] = 1.0
            if "out" in layout.start:
                model.lm_head.weight[t, layout("out", t)] = GAIN
        for p in range(block_size):
            model.wpe.weight[p, layout("pos", p)] = 1.0
            model.wpe.weight[p, layout.one] = 1.0
    return model


@torch.no_grad()
def plant(model: GPT, layer: int, head: int, q=(), k=(), v=(), o=(), q_gain: float = GAIN) -> None:
    """Set one head's reads and writes: q, k, v are (head dim, residual dim[, weight]) pairs
    the query / key / value read; o are (residual dim, head dim, weight) the output writes."""
    attn = model.blocks[layer].attn
    C, hs = model.config.d_model, model.config.d_head
    for which, pairs, gain in ((0, q, q_gain), (1, k, 1.0), (2, v, 1.0)):
        for j, dim, *weight in pairs:
            attn.c_attn.weight[which * C + head * hs + j, dim] = gain * (weight[0] if weight else 1.0)
    for dim, j, weight in o:
        attn.c_proj.weight[dim, head * hs + j] = weight


def by_position(layout: Layout, key_slot, n: int) -> dict:
    """q and k pairs for a head that attends from query position p to the key whose slot is p:
    ``key_slot(k)`` is the query position that key k serves (None: no query)."""
    q = [(p, layout("pos", p)) for p in range(n)]
    k = [(key_slot(key), layout("pos", key)) for key in range(n) if key_slot(key) is not None and key_slot(key) < n]
    return {"q": q, "k": k}


# -- head_scores on planted heads --------------------------------------------------------------------

N_POS = 16  # positions in the previous-token model


def previous_token_model() -> GPT:
    """2 layers x 2 heads, nothing written anywhere; four position heads of four kinds:
    L0H0 current token, L0H1 first position, L1H0 two back, L1H1 previous token."""
    layout = Layout(vocab=8, positions=N_POS)
    model = blank_model(layout, n_layer=2, n_head=2, d_model=32, block_size=N_POS)
    plant(model, 0, 0, **by_position(layout, lambda k: k, N_POS))
    plant(model, 0, 1, q=[(0, layout.one)], k=[(0, layout("pos", 0))])
    plant(model, 1, 0, **by_position(layout, lambda k: k + 2, N_POS))
    plant(model, 1, 1, **by_position(layout, lambda k: k + 1, N_POS))
    return model


def test_planted_previous_token_head_ranks_first_by_a_clear_margin():
    model = previous_token_model()
    tokens = torch.randint(0, 8, (8, N_POS), generator=torch.Generator().manual_seed(0))
    scores = head_scores(model, tokens)
    assert set(scores) == {"previous_token", "duplicate_token", "induction"}
    assert all(s.shape == (2, 2) for s in scores.values())
    prev = scores["previous_token"]
    others = prev.flatten()[[0, 1, 2]]  # L0H0, L0H1, L1H0
    assert prev[1, 1] > 0.99
    # the runners-up: first position (1 query of 15 is its previous) and two back (half of one query)
    assert others.max() < 0.1 and prev[1, 1] - others.max() > 0.9
    assert prev[0, 0] < 1e-6  # the current-token head never looks back


# the induction circuit: tokens 0..V-1, a random half of HALF tokens repeated
V_IND, HALF = 12, 6


def induction_model() -> GPT:
    """2 layers x 2 heads; layout [tok | pos | one | prev | out], d_head = 26.

    L0H0 previous-token head: attends to position - 1, copies that token into "prev".
    L0H1 first-position head, writes nothing.
    L1H0 duplicate-token head (query token == key token, its own position pushed away), writes nothing.
    L1H1 induction head: query = current token, key = "prev" (the token before the key),
         position 0 pushed away (it has no previous token); copies the key's token into "out".
    """
    T = 2 * HALF
    layout = Layout(vocab=V_IND, positions=T, groups=("prev", "out"))
    model = blank_model(layout, n_layer=2, n_head=2, d_model=52, block_size=T)
    tokens = range(V_IND)
    plant(model, 0, 0, **by_position(layout, lambda k: k + 1, T),
          v=[(t, layout("tok", t)) for t in tokens], o=[(layout("prev", t), t, 0.25) for t in tokens])
    plant(model, 0, 1, q=[(0, layout.one)], k=[(0, layout("pos", 0))])
    plant(model, 1, 0, q=[(t, layout("tok", t)) for t in tokens] + [(V_IND + p, layout("pos", p)) for p in range(T)],
          k=[(t, layout("tok", t)) for t in tokens] + [(V_IND + p, layout("pos", p), -2.0) for p in range(T)])
    plant(model, 1, 1, q=[(t, layout("tok", t)) for t in tokens] + [(V_IND, layout.one)],
          k=[(t, layout("prev", t)) for t in tokens] + [(V_IND, layout("pos", 0), -2.0)],
          v=[(t, layout("tok", t)) for t in tokens], o=[(layout("out", t), t, 1.0) for t in tokens])
    return model


def test_planted_induction_circuit_is_found_and_continues_repeated_sequences():
    model = induction_model()
    tokens = repeated_random_tokens(V_IND, batch=64, half_len=HALF, seed=0)
    scores = head_scores(model, tokens)
    for kind, (layer, head) in {"previous_token": (0, 0), "duplicate_token": (1, 0), "induction": (1, 1)}.items():
        planted = scores[kind][layer, head]
        runner_up = scores[kind].flatten().topk(2).values[1]
        assert scores[kind].flatten().argmax() == 2 * layer + head, kind
        assert planted > 0.95 and planted - runner_up > 0.7, (kind, scores[kind])
    # the circuit works: the second half is predicted from the first (positions HALF+1 ..)
    logits, _ = model(tokens)
    predicted = logits[:, HALF:-1].argmax(-1)  # predictions for positions HALF+1 .. 2*HALF-1
    accuracy = (predicted == tokens[:, HALF + 1 :]).float().mean()
    assert accuracy >= 0.9
    # ... and only through the induction head: without it, no better than chance
    from gptdecoder.lab.ablation import ablate_heads

    ablated = ablate_heads(model, tokens, [(1, 1)])[:, HALF:-1].argmax(-1)
    assert (ablated == tokens[:, HALF + 1 :]).float().mean() < 0.3


def test_repeated_random_tokens():
    tokens = repeated_random_tokens(50, batch=4, half_len=10, seed=1)
    assert tokens.shape == (4, 20) and tokens.dtype == torch.long
    assert torch.equal(tokens[:, :10], tokens[:, 10:])
    assert all(len(set(row[:10].tolist())) == 10 for row in tokens)  # distinct within a half
    assert torch.equal(tokens, repeated_random_tokens(50, 4, 10, seed=1))
    assert not torch.equal(tokens, repeated_random_tokens(50, 4, 10, seed=2))
    small = repeated_random_tokens(3, batch=2, half_len=8, seed=0)  # fewer tokens than positions
    assert small.shape == (2, 16) and small.max() < 3 and torch.equal(small[:, :8], small[:, 8:])


def test_detection_patterns_follow_transformerlens():
    tokens = torch.tensor([[5, 7, 5, 7, 9]])
    detect = {k: v[0].nonzero().tolist() for k, v in detection_patterns(tokens).items()}
    assert detect["previous_token"] == [[1, 0], [2, 1], [3, 2], [4, 3]]
    assert detect["duplicate_token"] == [[2, 0], [3, 1]]  # earlier copies only, not itself
    assert detect["induction"] == [[2, 1], [3, 2]]  # the token after the earlier copy


def test_an_ideal_head_of_each_kind_scores_one():
    """The mean is over queries that have a detection key, so an ideal head scores 1
    (TransformerLens's denominator, every query, would give less: 1/2 for induction here)."""
    T = 2 * HALF
    tokens = repeated_random_tokens(V_IND, batch=3, half_len=HALF, seed=5)
    for kind, detect in detection_patterns(tokens).items():
        ideal = detect.float() + torch.eye(T) * (detect.sum(-1, keepdim=True) == 0)  # no key: look at itself
        ideal = ideal / ideal.sum(-1, keepdim=True)
        torch.testing.assert_close(detection_score(ideal[None, :, None], detect), torch.ones(1, 1))
    uniform = torch.ones(T, T).tril()
    uniform = (uniform / uniform.sum(-1, keepdim=True)).expand(1, 3, 1, T, T)
    expected = sum(1 / (q + 1) for q in range(1, T)) / (T - 1)  # previous token: 1/(q+1) of each query's row
    previous = detection_patterns(tokens)["previous_token"]
    assert float(detection_score(uniform, previous)) == pytest.approx(expected)


# -- source_positions and source_scores --------------------------------------------------------------


def test_source_positions_of_each_task():
    sort = get_task("sort", length=6, num_digits=3)
    assert source_positions(sort, [2, 0, 1, 0, 2, 2], [0, 0, 1, 2, 2, 2]) == [[1, 3], [1, 3], [2], [0, 4, 5]] + [[0, 4, 5]] * 2
    reverse = get_task("reverse", length=4)
    eq = reverse.token("=")
    assert source_positions(reverse, [3, 1, 4, 1, eq], [1, 4, 1, 3]) == [[3], [2], [1], [0]]
    copy = get_task("copy", length=4)
    assert source_positions(copy, [3, 1, 4, eq], [3, 1, 4]) == [[0], [1], [2]]
    recall = get_task("recall", num_pairs=3)
    a, c, b, q = recall.token("a"), recall.token("c"), recall.token("b"), recall.token("?")
    assert source_positions(recall, [a, 3, c, 1, b, 7, q, c], [1]) == [[3]]
    # 047 + 125 = 172: the units digit adds a[2] = 7 (position 2) and b[2] = 5 (position 6)
    plus, equals = 10, 11
    prompt = [0, 4, 7, plus, 1, 2, 5, equals]
    reversed_sum = get_task("addition", num_digits=3, reverse_output=True)
    assert reversed_sum.solve(prompt) == [2, 7, 1, 0]
    assert source_positions(reversed_sum, prompt, [2, 7, 1, 0]) == [[2, 6], [1, 5], [0, 4], [0, 4]]
    in_order = get_task("addition", num_digits=3, reverse_output=False)
    assert source_positions(in_order, prompt, [0, 1, 7, 2]) == [[0, 4], [0, 4], [1, 5], [2, 6]]
    histogram = get_task("histogram", length=4)
    assert source_positions(histogram, [0, 1, 0, 2, histogram.token("=")], [2, 1, 2, 1]) == [[0, 2], [1], [0, 2], [3]]
    dyck = get_task("dyck", length=4, kinds=2)
    open_round, open_square, close_round = dyck.token("("), dyck.token("["), dyck.token(")")
    prompt = [open_round, open_square, open_round, close_round, dyck.token("=")]
    assert source_positions(dyck, prompt, dyck.solve(prompt)) == [[1], [0], []]  # ']' then ')' then '.'
    assert source_positions(get_task("modular"), [3, 17, 5, 18], [8]) == [[0, 2]]
    parity = get_task("parity", length=3)
    assert source_positions(parity, [1, 0, 1, 2], [1, 1, 0]) == [[0], [1], [2]]


@pytest.mark.parametrize("name", ["sort", "reverse", "copy", "recall", "histogram"])
def test_source_positions_hold_the_answer_token_where_the_answer_is_copied(name):
    task = get_task(name)
    rng = random.Random(0)
    for _ in range(50):
        prompt, answer = task.sample(rng)
        sources = source_positions(task, prompt, answer)
        assert len(sources) == len(answer)
        for j, positions in enumerate(sources):
            assert positions and all(0 <= i < len(prompt) for i in positions)
            if name != "histogram":  # histogram answers a count, not a copied token
                assert all(prompt[i] == answer[j] for i in positions)


def copy_head_model(task_name: str, n: int = 4, digits: int = 6) -> tuple[GPT, object]:
    """Two layers x two heads for reverse / copy of n digits; layout [tok | pos | out].

    L0H0 attends from the query that predicts answer token j to its source (mirrored
    or same position) and copies the token there into "out": the whole solution.
    L0H1 attends to the current position and writes 0.3 x the current token into "out"
    (a distractor with a wrong answer). Layer 1 does nothing.
    """
    task = get_task(task_name, length=n, num_digits=digits)
    T = 2 * n  # x = (prompt + answer)[:-1]
    layout = Layout(vocab=task.vocab_size, positions=T, groups=("out",))
    model = blank_model(layout, n_layer=2, n_head=2, d_model=32, block_size=T)
    tokens = range(task.vocab_size)
    copy_out = {"v": [(t, layout("tok", t)) for t in tokens]}
    if task_name == "reverse":  # answer j is predicted at n + j from position n-1-j
        slot = lambda key: 2 * n - 1 - key if key < n else None  # noqa: E731
    else:  # copy: from position j
        slot = lambda key: n + key if key < n else None  # noqa: E731
    plant(model, 0, 0, **by_position(layout, slot, T), **copy_out, o=[(layout("out", t), t, 1.0) for t in tokens])
    plant(model, 0, 1, **by_position(layout, lambda k: k, T), **copy_out, o=[(layout("out", t), t, 0.3) for t in tokens])
    return model, task


@pytest.mark.parametrize("task_name", ["reverse", "copy"])
def test_source_scores_find_the_planted_copy_head(task_name):
    model, task = copy_head_model(task_name)
    examples = task.test_examples(200)
    scores = source_scores(model, task, examples)
    assert scores.shape == (2, 2)
    assert scores[0, 0] > 0.99
    assert scores[0, 1] < 1e-3  # the current-position head never looks at a source
    assert scores[1].max() < 0.25  # uniform heads: 1 / (query + 1) of their attention per source
    data = encode_examples(examples)
    assert float((model(data.x)[0].argmax(-1) == data.y)[data.mask == 1].float().mean()) == 1.0  # it solves the task


def test_logit_lens_and_direct_logit_attribution_on_a_planted_model():
    model, task = copy_head_model("reverse")
    data = encode_examples(task.test_examples(200))
    lens = logit_lens(model, data)
    assert lens["accuracy"].shape == lens["mean_rank"].shape == (3,)
    # the embeddings write nothing the unembedding reads; block 0 writes the answer; block 1 nothing
    assert lens["accuracy"][0] < 0.3 and lens["mean_rank"][0] > 1.0
    assert lens["accuracy"][1] == 1.0 and lens["accuracy"][2] == 1.0 and lens["mean_rank"][1] == 0.0
    dla = direct_logit_attribution(model, data)
    heads = dla["heads"]
    assert heads.shape == (2, 2) and dla["mlps"].shape == (2,) and dla["attn_bias"].shape == (2,)
    assert heads.flatten().argmax() == 0 and heads[0, 0] > 5.0
    assert heads[0, 0] > 10 * heads.flatten()[1:].abs().max()
    assert torch.all(heads[1] == 0) and torch.all(dla["mlps"] == 0) and dla["embed"] == pytest.approx(0, abs=1e-4)
    assert_parts_add_up(dla)


def assert_parts_add_up(dla: dict) -> None:
    parts = dla["embed"] + dla["heads"].sum() + dla["attn_bias"].sum() + dla["mlps"].sum() + dla["ln_final_bias"]
    assert float(parts) == pytest.approx(dla["total"], abs=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_direct_logit_attribution_adds_up_to_the_logit_margin(bias):
    """On a random model with every part active (biases, MLPs, tied unembedding)."""
    task = get_task("sort", length=5, num_digits=4, min_length=3)
    model = tiny_model(vocab_size=task.vocab_size, block_size=10, n_layer=3, n_head=3, d_model=24, bias=bias)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    data = encode_examples(task.test_examples(40))
    dla = direct_logit_attribution(model, data, batch_size=16)  # several batches
    assert dla["heads"].shape == (3, 3) and dla["mlps"].abs().sum() > 0 and dla["heads"].abs().sum() > 0
    assert (dla["ln_final_bias"] != 0) == bias and bool(dla["attn_bias"].abs().sum() > 0) == bias
    with torch.no_grad():
        logits, _ = model(data.x)
    answer = data.mask == 1
    answer_logits = logits[answer]
    margin = (answer_logits.gather(-1, data.y[answer][:, None])[:, 0] - answer_logits.mean(-1)).mean()
    assert dla["total"] == pytest.approx(float(margin), abs=1e-5)
    assert_parts_add_up(dla)


def test_logit_lens_last_entry_is_the_models_own_output():
    task = get_task("reverse", length=4, min_length=2)
    model = tiny_model(vocab_size=task.vocab_size, block_size=9)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    data = encode_examples(task.test_examples(60))
    lens = logit_lens(model, data, batch_size=7)
    with torch.no_grad():
        logits, _ = model(data.x)
    answer = data.mask == 1
    ranks = answer_rank(logits[answer], data.y[answer])
    assert lens["accuracy"][-1] == pytest.approx(float((logits[answer].argmax(-1) == data.y[answer]).float().mean()))
    assert lens["mean_rank"][-1] == pytest.approx(float(ranks.float().mean()))


def test_answer_rank_breaks_ties_like_argmax():
    logits = torch.tensor([[0.0, 2.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    assert answer_rank(logits, torch.tensor([2, 0, 2])).tolist() == [1, 0, 2]


# -- attention rollout -------------------------------------------------------------------------------


def test_attention_rollout():
    torch.manual_seed(0)
    patterns = torch.rand(3, 2, 4, 5, 5).tril()
    patterns = patterns / patterns.sum(-1, keepdim=True)  # [L, B, H, T, T], causal rows summing to 1
    rollout = attention_rollout(patterns)
    assert rollout.shape == (2, 5, 5)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5))
    assert torch.all(rollout.triu(1) == 0)  # still causal
    eye = torch.eye(5)
    step = [(p.mean(1) + eye) / 2 for p in patterns]  # rows of mean + I sum to 2
    torch.testing.assert_close(rollout, step[2] @ step[1] @ step[0])
    torch.testing.assert_close(attention_rollout(list(patterns)), rollout)
    self_only = eye.expand(2, 2, 4, 5, 5)  # heads that look only at themselves change nothing
    torch.testing.assert_close(attention_rollout(self_only), eye.expand(2, 5, 5))
