"""Compiled programs (gptdecoder/tracr.py): the converted model equals Tracr's, and the circuit
finder recovers the compiler's circuit.

Tracr is an optional extra. Without it these tests skip, unless GPTDECODER_REQUIRE_TRACR
is set (``.ci/run`` sets it, and installs the extra): then they fail, so CI cannot pass
by skipping them.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

REQUIRE_TRACR = "GPTDECODER_REQUIRE_TRACR"
try:
    import tracr  # noqa: F401
except ImportError:
    if os.environ.get(REQUIRE_TRACR):
        raise ImportError(f"tracr is not installed but {REQUIRE_TRACR} is set: pip install -e '.[tracr]'") from None
    pytest.skip('Tracr is not installed (pip install -e ".[tracr]")', allow_module_level=True)

from gptdecoder import cli  # noqa: E402
from gptdecoder import tracr as T  # noqa: E402
from gptdecoder.lab.circuit_graph import graph_of  # noqa: E402
from gptdecoder.lab.circuits import baseline, edge_roc_auc, edge_scores, exercised_edges, find_circuit  # noqa: E402
from gptdecoder.lab.pairs import make_pairs  # noqa: E402
from gptdecoder.tasks import get_task  # noqa: E402

PROGRAMS = ["frac_prevs", "pair_balance", "shuffle_dyck", "reverse", "sort", "hist"]
MAX_LEN = 5


@pytest.fixture(scope="module", params=PROGRAMS)
def converted(request):
    compiled = T.compile_program(request.param, max_len=MAX_LEN)
    model, vocab = T.to_gpt(compiled)
    return compiled, model, vocab


def test_the_converted_model_equals_tracr_on_every_input(converted):
    """Categorical programs: identical outputs; numerical: within 1e-4 (Tracr's own apply)."""
    compiled, model, vocab = converted
    inputs = T.all_inputs(compiled.vocab, MAX_LEN)
    assert len(inputs) == 3 + 9 + 27 + 81 + 243  # every input of the 3-token vocabulary up to 5 tokens
    assert T.check_equal(compiled, model, vocab, inputs) == []
    config = model.config
    assert config.norm == "none" and config.activation == "relu" and config.head_size == compiled.assembled.model_config.key_size


@pytest.mark.parametrize("method", ["eap", "exact"])
def test_the_circuit_finder_recovers_the_compilers_edges(converted, method):
    """Edge ROC AUC >= 0.95 against the compiler's edges that the corrupted twins exercise
    (exercised_edges: positions never differ between a prompt and its twin)."""
    compiled, model, vocab = converted
    task = get_task("compiled", program=compiled.name, max_len=MAX_LEN)
    pairs = make_pairs(task, 128)
    truth = exercised_edges(T.compiled_edges(compiled), baseline(model, pairs))
    assert truth and ("logits" in {r for _, r in truth})
    scores = edge_scores(model, pairs, method)
    assert edge_roc_auc(scores, truth) >= 0.95, (compiled.name, method, truth, scores.ranked()[:8])


def test_the_compiled_edges_name_real_edges_of_our_graph(converted):
    compiled, model, _ = converted
    graph = graph_of(model)
    for sender, receiver in T.compiled_edges(compiled):
        graph.edge_index(sender, receiver)  # raises for an edge our graph does not have


def test_compile_then_explain_names_the_compilers_heads(tmp_path, capsys):
    out = tmp_path / "frac_prevs"
    assert cli.main(["compile", "frac_prevs", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "same outputs as Tracr on all 363 inputs checked" in printed and "L1H0: frac_prevs" in printed
    info = json.loads((out / "compiled.json").read_text())
    assert info["blocks"]["L1H0"].startswith("frac_prevs") and ["L1H0", "logits"] in info["edges"]

    from gptdecoder.runs import load_model
    loaded = load_model(out)
    assert loaded.task.name == "compiled" and loaded.model.config.norm == "none"
    idx = torch.tensor([loaded.task.compiled_vocab.input_ids(["x", "a", "x", "x"])])
    numbers = T.numerical_output(loaded.model, loaded.task.compiled_vocab, idx)[0, 1:]
    torch.testing.assert_close(numbers, torch.tensor([1.0, 0.5, 2 / 3, 0.75]), atol=1e-4, rtol=0)

    for argv, message in [(["train", "-c", str(out / "config.yaml"), "--out", str(out / "again")], "cannot be trained"),
                          (["generate", "--run", str(out), "--prompt", "a x"], "generate writes an answer"),
                          (["inspect-masks", "--run", str(out)], "inspect-masks steps through")]:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert cli.main(["explain", "--run", str(out)]) == 0
    report = json.loads((out / "explain" / "report.json").read_text())
    words = " ".join(report["plain_words"])
    assert "The compiler placed its steps so: L1H0 computes frac_prevs" in words
    assert "The circuit found holds 3 of the compiler's 5 edges and 0 others" in words
    assert report["accuracy"]["exact_match"] == 1.0 and report["compiled"]["program"] == "frac_prevs"


def test_compile_refuses_bad_input_in_one_line(tmp_path, capsys):
    for argv, message in [(["compile", "quicksort", "--out", str(tmp_path / "a")], "unknown program 'quicksort'"),
                          (["compile", "reverse", "--vocab", "a", "--out", str(tmp_path / "b")], "--vocab 'a'"),
                          (["compile", "reverse", "--max-len", "2", "--out", str(tmp_path / "c")], "--max-len 2"),
                          (["compile", "reverse", "--vocab", "BOS,a", "--out", str(tmp_path / "d")], "compiler's own"),
                          (["compile", "sort", "--vocab", "a,b", "--out", str(tmp_path / "e")], "Tracr cannot compile sort"),
                          (["compile", "frac_prevs", "--max-len", "8", "--out", str(tmp_path / "f")],
                           "9,840 inputs are more than 2,000")]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert cli.main(["compile", "reverse", "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_find_circuit_on_a_compiled_program_keeps_exactly_the_exercised_edges():
    compiled = T.compile_program("frac_prevs", max_len=MAX_LEN)
    model, _ = T.to_gpt(compiled)
    pairs = make_pairs(get_task("compiled", program="frac_prevs", max_len=MAX_LEN), 128)
    circuit = find_circuit(model, pairs)
    truth = exercised_edges(T.compiled_edges(compiled), baseline(model, pairs))
    assert {(s, r) for s, r, _ in circuit.edges} == set(truth) == {("embed", "MLP0"), ("MLP0", "L1H0.v"), ("L1H0", "logits")}
