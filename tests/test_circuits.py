"""The circuit finder on planted circuits (hand-built weights, tests/planted.py) and on a trained model.

Each planted model solves its task through a few known edges; the edges a corruption
changes are the planted circuit. EAP, EAP-IG and exact patching must rank those edges
first (edge ROC AUC >= 0.95), and the pruned circuit must be exactly them.
"""
from __future__ import annotations

import random
import re

import pytest
import torch

from conftest import tiny_model
from lab_runs import train_tiny_sort
from planted import Layout, copy_slots, plant_ov, plant_qk, plant_readout, planted_gpt, previous_token_qk
from gptdecoder.lab.ablation import exact_match
from gptdecoder.lab.circuit_graph import GraphRun, graph_of, run_graph
from gptdecoder.lab.circuits import baseline, edge_roc_auc, edge_scores, find_circuit
from gptdecoder.lab.pairs import logit_difference, make_pairs, pairs_from_examples
from gptdecoder.runs import load_model
from gptdecoder.tasks import TASKS, get_task


def induction_model():
    """Recall (k v k v k v ? k -> v) by the two-layer induction circuit, plus a distractor.

    L0H0, previous-token head: writes the previous token into "prev".
    L0H1, distractor: attends exactly like L0H0 but writes into "spare", which nothing reads.
    L1H0, induction head: its query (the current token) matches keys whose "prev" slot
    holds the same token, i.e. the value right after the queried key; it copies that
    value into "out", which the LM head reads.
    """
    task = get_task("recall", num_pairs=3, num_keys=4, num_values=4)
    V, T = task.vocab_size, task.seq_len - 1
    layout = Layout(tok=V, pos=T, prev=V, spare=V, out=V)
    model = planted_gpt(layout, V, T, n_layer=2, n_head=2)
    for head, dst in ((0, "prev"), (1, "spare")):
        plant_qk(model, 0, head, *previous_token_qk(layout, T))
        plant_ov(model, 0, head, *copy_slots(layout, "tok", dst, V))
    plant_qk(model, 1, 0, {layout.dim("tok", t): t for t in range(V)}, {layout.dim("prev", t): t for t in range(V)})
    # Position 0 has no previous token: L0H0 attends to itself there and writes its own
    # token as "prev", which would match a query for the first key. Its key is pushed
    # down on every token's head dim instead.
    with torch.no_grad():
        d = model.config.d_model
        model.blocks[1].attn.c_attn.weight[d : d + V, layout.dim("pos", 0)] = -2.0
    plant_ov(model, 1, 0, *copy_slots(layout, "tok", "out", V))
    plant_readout(model, layout)
    return model, task


def copy_model():
    """Copy 4 symbols (a b c d = -> a b c d) with one head, plus a distractor.

    L0H0 attends from the position that predicts answer token j to prompt position j
    (5 places back) and copies its token to "out"; L0H1 attends the same way and writes
    into "spare".
    """
    task = get_task("copy", length=4, num_digits=6)
    V, T = task.vocab_size, task.seq_len - 1
    layout = Layout(tok=V, pos=T, spare=V, out=V)
    model = planted_gpt(layout, V, T, n_layer=1, n_head=2)
    back = task.length  # the position predicting answer token j is length + j; its source is j
    query = {layout.dim("pos", i): i for i in range(T)}
    key = {layout.dim("pos", i): i + back for i in range(T - back)}
    for head, dst in ((0, "out"), (1, "spare")):
        plant_qk(model, 0, head, query, key)
        plant_ov(model, 0, head, *copy_slots(layout, "tok", dst, V))
    plant_readout(model, layout)
    return model, task


def value_composition_model():
    """Answer the token before position 3, by two heads composed through values.

    L0H0 writes the previous token into "prev"; L1H0 attends from everywhere to position
    3 and copies its "prev" slot (the token at 2) into "out". The examples are made here:
    5 random tokens, answer = the third.
    """
    V, T = 5, 6
    layout = Layout(tok=V, pos=T, prev=V, out=V)
    model = planted_gpt(layout, V, T, n_layer=2, n_head=2)
    plant_qk(model, 0, 0, *previous_token_qk(layout, T))
    plant_ov(model, 0, 0, *copy_slots(layout, "tok", "prev", V))
    plant_qk(model, 1, 0, {layout.dim("pos", i): 0 for i in range(T)}, {layout.dim("pos", 3): 0}, scale=6.0)
    plant_ov(model, 1, 0, *copy_slots(layout, "prev", "out", V))
    plant_readout(model, layout)
    rng = random.Random(0)
    clean, corrupted = [], []
    for _ in range(64):
        prompt = [rng.randrange(V) for _ in range(5)]
        twin = list(prompt)
        twin[2] = rng.choice([t for t in range(V) if t != prompt[2]])
        clean.append((prompt, [prompt[2]]))
        corrupted.append((twin, [twin[2]]))
    return model, pairs_from_examples(clean, corrupted, description="token 2 replaced")


PLANTED = {
    "induction": [("embed", "L0H0.v"), ("L0H0", "L1H0.k"), ("L1H0", "logits")],
    "copy": [("embed", "L0H0.v"), ("L0H0", "logits")],
    "values": [("embed", "L0H0.v"), ("L0H0", "L1H0.v"), ("L1H0", "logits")],
}


def planted(name: str):
    if name == "values":
        return value_composition_model()
    model, task = induction_model() if name == "induction" else copy_model()
    return model, make_pairs(task, 128)


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_the_planted_models_solve_their_task(name):
    model, pairs = planted(name)
    assert exact_match(model, pairs.clean) == 1.0
    assert exact_match(model, pairs.corrupted) == 1.0


@pytest.mark.parametrize("method", ["eap", "eap-ig", "exact"])
@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_edges_rank_first(name, method):
    model, pairs = planted(name)
    scores = edge_scores(model, pairs, method)
    assert edge_roc_auc(scores, PLANTED[name]) >= 0.95
    top = {(s, r) for s, r, _ in scores.ranked()[: len(PLANTED[name])]}
    assert top == set(PLANTED[name])


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_the_pruned_circuit_is_the_planted_one(name):
    model, pairs = planted(name)
    circuit = find_circuit(model, pairs)
    assert {(s, r) for s, r, _ in circuit.edges} == set(PLANTED[name])
    assert circuit.faithfulness >= 0.9
    assert circuit.n_total == graph_of(model).n_edges


def test_the_distractor_attends_like_the_real_head_but_carries_nothing():
    model, pairs = planted("induction")
    _, cache = model.run_with_cache(pairs.clean.x, names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(pattern[:, 0], pattern[:, 1])  # the same attention
    exact = edge_scores(model, pairs, "exact")
    real = abs(exact.node_scores()["L0H0"])
    assert real > 1.0 and abs(exact.node_scores()["L0H1"]) < 1e-3 * real


@pytest.mark.parametrize("pos_encoding", ["learned", "rope", "alibi", "nope"])
def test_patching_every_edge_is_the_corrupted_run_and_none_the_clean_run(pos_encoding):
    model = tiny_model(vocab_size=6, block_size=8, n_layer=2, n_head=2, d_model=16, pos_encoding=pos_encoding, noise=0.1)
    rng = random.Random(0)
    clean = [([rng.randrange(5) for _ in range(6)], [rng.randrange(5)]) for _ in range(8)]
    corrupted = [(p[:2] + [(p[2] + 1) % 5] + p[3:], [(a[0] + 1) % 5]) for p, a in clean]
    pairs = pairs_from_examples(clean, corrupted)
    base = baseline(model, pairs)
    logits = {}
    for name, patched in (("all", base.graph.allowed), ("none", torch.zeros_like(base.graph.allowed))):
        run = GraphRun(base.graph, base.corrupted_outputs, patched)
        logits[name] = run_graph(model, pairs.clean, run)
    torch.testing.assert_close(logits["all"], model(pairs.corrupted.x)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits["none"], model(pairs.clean.x)[0], atol=1e-5, rtol=1e-5)
    assert ("pos" in base.graph.senders) == (pos_encoding == "learned")

    # one edge patched = that head's own input moved by (corrupted - clean) output of the sender, by hand
    exact = edge_scores(model, pairs, "exact")
    s, r = base.graph.edge_index("L0H1", "L1H0.k")
    shift = (base.corrupted_outputs[s] - base.clean_outputs[s])  # (N, T, C)

    def move_head_0(x, hook):
        x = x.clone()
        x[:, :, 0] += shift
        return x

    model.set_use_split_qkv_input(True)
    with torch.no_grad(), model.hooks([("blocks.1.hook_k_input", move_head_0)]):
        by_hand = logit_difference(model(pairs.clean.x)[0], pairs)
    model.set_use_split_qkv_input(False)
    assert float(exact.scores[s, r]) == pytest.approx(float(by_hand) - exact.clean, abs=1e-5)


def test_bad_pairs_and_scores_are_refused():
    model, pairs = planted("induction")
    with pytest.raises(ValueError, match="prompt and answer lengths"):
        pairs_from_examples([([1, 2, 3], [4])], [([1, 2], [5, 6])])
    same = pairs_from_examples([([1, 2, 3], [4])], [([1, 2, 3], [5])])
    with pytest.raises(ValueError, match="no difference to trace"):  # the same input: every metric is equal
        edge_scores(model, same)
    with pytest.raises(ValueError, match="EAP score would be 0"):
        edge_scores(model, pairs, "eap", metric="kl")
    kl = edge_scores(model, pairs, "eap-ig", metric="kl")
    with pytest.raises(ValueError, match="another graph or metric"):
        find_circuit(model, pairs, scores=kl)  # the default metric is the logit difference
    model.train()
    scores = edge_scores(model, pairs)
    assert model.training  # the mode is put back
    model.requires_grad_(False)  # a frozen model still gets its gradients at the receivers
    torch.testing.assert_close(edge_scores(model, pairs).scores, scores.scores)


def test_the_graph_counts_edges_as_acdc_does():
    model = tiny_model(vocab_size=11, block_size=8, n_layer=2, n_head=4, d_model=32)
    graph = graph_of(model)
    # senders: embed, pos, 4 heads + MLP per layer; receivers: q/k/v per head + MLP per layer, logits
    assert len(graph.senders) == 2 + 2 * 5 and len(graph.receivers) == 2 * 13 + 1
    # layer 0: 12 head inputs x 2 inputs + MLP0 x 6; layer 1: 12 x 7 + MLP1 x 11; logits x 12
    assert graph.n_edges == 24 + 6 + 84 + 11 + 12
    with pytest.raises(ValueError, match="not written before"):
        graph.edge_index("L1H0", "L0H0.q")


@pytest.fixture(scope="module")
def trained_sort(tmp_path_factory):
    """A tiny sort model trained for 150 steps."""
    loaded = load_model(train_tiny_sort(tmp_path_factory.mktemp("circuits")))
    return loaded.model, loaded.task


def test_kl_metric_and_a_trained_model(trained_sort):
    """On a small trained model the scores are finite, EAP's estimate tracks exact
    patching, and the circuit keeps the share it was asked for."""
    model, task = trained_sort
    pairs = make_pairs(task, 64)
    eap, exact = edge_scores(model, pairs, "eap"), edge_scores(model, pairs, "exact")
    assert torch.isfinite(eap.scores).all()
    corr = torch.corrcoef(torch.stack([eap.scores[eap.graph.allowed], exact.scores[eap.graph.allowed]]))[0, 1]
    assert corr > 0.5
    circuit = find_circuit(model, pairs, share=0.8, scores=eap)
    assert circuit.faithfulness >= 0.8 and circuit.n_edges < circuit.n_total
    kl = edge_scores(model, pairs, "eap-ig", metric="kl")
    assert kl.clean == pytest.approx(0.0, abs=1e-6) and kl.corrupted < 0


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_makes_corrupted_twins_of_the_same_length_with_another_answer(name):
    task = get_task(name)
    rng = random.Random(0)
    made = 0
    for _ in range(50):
        prompt = task.sample_prompt(rng)
        twin = task.corrupt(prompt, rng)
        if twin is None:
            continue
        made += 1
        assert len(twin) == len(prompt) and sum(a != b for a, b in zip(prompt, twin)) >= 1
        answer, other = task.solve(prompt), task.solve(twin)
        assert len(answer) == len(other) and answer != other
    assert made >= 35  # dyck: a prompt with no open bracket has nothing to change


def test_the_circuit_figure_draws_every_node_and_the_circuits_edges(tmp_path):
    from gptdecoder.commands.files import save_figure
    from gptdecoder.lab.circuit_figures import circuit_figure, node_places
    from gptdecoder.lab.prose import circuit_title

    model, pairs = planted("induction")
    circuit = find_circuit(model, pairs)
    fig = circuit_figure(circuit.graph, circuit.edges, circuit_title(circuit))
    ax = fig.axes[0]
    assert {t.get_text() for t in ax.texts} == set(node_places(circuit.graph))
    assert len(ax.patches) == circuit.n_edges
    # 16 + 30 + 7 + 8 edges; the planted circuit keeps the whole metric (a hair over 100% in floats)
    assert re.fullmatch(r"3 of 61 edges keep (>99\.9|100|100\.0)% of the logit difference", ax.get_title())
    assert save_figure(fig, tmp_path / "circuit.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in save_figure(fig, tmp_path / "circuit.svg").read_bytes()[:500]
