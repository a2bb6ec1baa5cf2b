"""The explain report: its roles and sentences on fixed numbers (gptdecoder.lab.roles and .prose),
its sections and formats (.report, .render), its figures, and the ``explain`` command end to end
on a tiny trained sort run."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from lab_runs import write_untrained_run

from gptdecoder import cli
from gptdecoder.lab.prose import circuit_sentences, head_list, pct, plain_words, points, span
from gptdecoder.lab.render import stylesheet, to_html, to_markdown
from gptdecoder.lab.report import report_blocks, report_dict
from gptdecoder.lab.roles import Findings, head_roles, heads_to_show, readable_stage, role_cells

NAN = float("nan")


def findings(**changes) -> Findings:
    """A 2-layer, 2-head sort model whose numbers tell a clear story (change any field)."""
    base = Findings(
        task="sort", task_params={"length": 6, "num_digits": 3, "min_length": None},
        model="trained run runs/config", n_layer=2, n_head=2, examples=167, accuracy=1.0,
        ablation=[[0.29, 0.98], [1.0, 0.55]],
        head_scores={
            "previous_token": [[0.10, 0.93], [0.05, 0.20]],
            "duplicate_token": [[0.10, 0.05], [0.20, 0.10]],
            "induction": [[0.05, 0.02], [0.10, 0.30]],
            "induction_task": [[0.05, 0.02], [0.62, 0.30]],
            "source": [[0.71, 0.10], [0.80, 0.35]],
        },
        chance={"previous_token": 0.2, "duplicate_token": 0.1, "induction": 0.1, "induction_task": 0.15,
                "source": 0.25},
        probe={"vocab_size": 3, "batch": 32, "half_len": 5, "seed": 0},
        lens_accuracy=[0.10, 0.30, 1.0], lens_mean_rank=[1.2, 0.8, 0.0],
        attribution={"heads": [[0.04, 0.30], [5.21, 1.50]], "mlps": [0.50, 3.10], "attn_bias": [0.10, -0.20],
                     "embed": -0.30, "ln_final_bias": 0.05, "total": 10.30},
        example="012210 -> 001122", map_heads=[(0, 0), (1, 1)],
    )
    return dataclasses.replace(base, **changes)


CIRCUIT = {  # as gptdecoder.lab.circuits.Circuit.to_dict() writes it
    "edges": [{"sender": "L1H0", "receiver": "logits", "score": -6.5},
              {"sender": "L0H1", "receiver": "L1H0.k", "score": -4.25},
              {"sender": "embed", "receiver": "L0H1.v", "score": -3.0},
              {"sender": "embed", "receiver": "L1H0.q", "score": -0.5}],
    "n_edges": 4, "n_total": 61, "faithfulness": 0.94, "share": 0.9, "metric": "logit_diff", "method": "eap-ig",
    "metric_clean": 7.25, "metric_corrupted": -7.5, "n_pairs": 256, "corruption": "one token replaced",
}


def sentence_about(sentences: list[str], start: str) -> str:
    found = [s for s in sentences if s.startswith(start)]
    assert len(found) == 1, f"no single sentence starting {start!r} in {sentences}"
    return found[0]


# -- roles ---------------------------------------------------------------------------------------


def test_a_role_is_the_highest_score_at_or_above_the_threshold():
    scores = {"previous_token": [[0.39, 0.40, 0.90]], "induction": [[0.10, 0.20, 0.60]],
              "source": [[NAN, 0.10, 0.95]]}
    roles = head_roles(scores, threshold=0.4)
    assert [r["role"] for r in roles] == ["unclear", "previous_token", "source"]
    assert roles[0]["best"] == "previous_token" and roles[0]["score"] == pytest.approx(0.39)
    assert roles[1]["score"] == pytest.approx(0.40) and roles[1]["also"] == []
    # the runner-up that also reaches the threshold is kept, best first
    assert roles[2]["also"] == ["previous_token", "induction"]
    # a higher threshold leaves heads unclear; NaN (not measurable) never wins
    assert [r["role"] for r in head_roles(scores, threshold=0.92)] == ["unclear", "unclear", "source"]
    assert head_roles({"source": [[NAN]]})[0]["role"] == "unclear"


def test_a_role_must_also_clear_uniform_attention():
    # a tiny vocabulary: uniform attention already scores 0.41 as a duplicate-token head
    scores = {"duplicate_token": [[0.45, 0.62]], "source": [[0.50, 0.30]]}
    roles = head_roles(scores, threshold=0.4, chance={"duplicate_token": 0.41, "source": 0.33})
    assert [r["role"] for r in roles] == ["unclear", "duplicate_token"]
    assert roles[0]["best"] == "source"  # the highest score, though no role: 0.50 < 0.33 + 0.2
    assert [r["role"] for r in head_roles(scores, threshold=0.4)] == ["source", "duplicate_token"]


def test_percentages_say_0_or_100_only_when_exact():
    assert [pct(x) for x in (0.0, 1.0, 0.29, 0.996, 0.9999, 0.004, 0.0004)] == \
           ["0%", "100%", "29%", "99.6%", ">99.9%", "0.4%", "<0.1%"]
    assert pct(NAN) == "n/a"
    assert [points(x) for x in (0.71, 0.01, 0.006, 0.0)] == ["71 points", "1 point", "0.6 points", "0 points"]
    assert span([0.9, 0.96]) == "90-96%" and span([0.961, 0.958]) == "96%"
    assert head_list([(1, h) for h in range(8)] + [(0, 2)]) == "L0H2 and L1H0-7"
    assert head_list([(0, 1), (0, 2), (0, 4)]) == "L0H1, L0H2 and L0H4"


# -- plain words ---------------------------------------------------------------------------------


def test_the_sentences_quote_their_numbers():
    words = plain_words(findings())
    assert words[0] == "The model gets 100% of 167 held-out sort prompts exactly right."
    assert sentence_about(words, "L0H0 carries the sort task") == (
        "L0H0 carries the sort task: zero-ablating it drops exact match from 100% to 29%; 71% of its attention "
        "from answer positions lands on the prompt tokens that answer needs (uniform attention: 25%).")
    # important but not carrying (drop 45 points < half of 100%), and no score reaches 0.4
    assert sentence_about(words, "L1H1 matters") == (
        "L1H1 matters: zero-ablating it drops exact match from 100% to 55%; none of its scores reaches 40% and "
        "20 points above uniform attention, so its role is unclear (highest: its source score, 35%, where uniform "
        "attention gives 25%).")
    # ablation hurts but the direct contribution is small: the effect is indirect
    assert sentence_about(words, "L0H0 (+0.04) writes little") == (
        "L0H0 (+0.04) writes little to the answer's logit directly, against +5.21 for L1H0, so its effect goes "
        "through later layers.")
    # a clear role that ablation does not need
    assert sentence_about(words, "L0H1 is a previous-token head") == (
        "L0H1 is a previous-token head: 93% of its attention on repeated random tokens goes to the previous "
        "token (uniform attention: 20%); zero-ablating it costs only 2 points.")
    # a second role seen on the task's sequences only, and said to be so
    assert sentence_about(words, "L1H0 is a source reader") == (
        "L1H0 is a source reader: 80% of its attention from answer positions lands on the prompt tokens that "
        "answer needs (uniform attention: 25%); it is also an induction head on the task's own sequences "
        "(62%, uniform 15%), but not on repeated random tokens (10%, uniform 10%); "
        "zero-ablating it does not lower exact match.")
    lens = sentence_about(words, "The answer becomes readable after block 1")
    assert "100% of the time (mean rank 0.00), against 30% after block 0" in lens
    assert sentence_about(words, "The correct answer's logit") == (
        "The correct answer's logit (above the mean logit) is written directly mostly by L1H0 (+5.21), MLP 1 "
        "(+3.10) and L1H1 (+1.50); all direct contributions together add up to +10.30.")
    assert not any(s.startswith("No single head") for s in words)  # L0H0 dominates
    # layer 1's heads write +6.71 together, but mostly through L1H0, which is named already
    assert not any(s.startswith("Together the") for s in words)
    spread = findings(attribution={**findings().attribution, "heads": [[0.04, 0.30], [2.0, 1.5]]})
    assert sentence_about(plain_words(spread), "Together the 2 heads of layer 1") == (
        "Together the 2 heads of layer 1 write +3.50 directly, more than any single component.")


def test_heads_sharing_a_role_are_described_together():
    shared = findings(
        head_scores={"induction": [[0.1, 0.1], [0.9, 0.95]], "source": [[0.1, 0.1], [0.2, 0.2]]},
        ablation=[[0.5, 1.0], [0.99, 1.0]], group_ablation={"induction": 0.03})
    words = plain_words(shared)
    assert sentence_about(words, "L1H0 and L1H1 are induction heads") == (
        "L1H0 and L1H1 are induction heads: 90-95% of their attention on repeated random tokens goes to the token "
        "right after an earlier copy of the current token (uniform attention: 10%); zero-ablating any one of them "
        "costs at most 1 point, both together 97 points (100% to 3%).")
    data = report_dict(shared)
    assert data["ablation"]["roles_together"] == [{"role": "induction", "heads": [[1, 0], [1, 1]],
                                                   "accuracy": 0.03}]


def test_no_single_head_when_nothing_dominates():
    spread = plain_words(findings(ablation=[[0.97, 0.99], [1.0, 0.98]]))
    assert sentence_about(spread, "No single head matters on its own") == (
        "No single head matters on its own: zero-ablating any one head lowers exact match by at most 3 points "
        "(L0H0: 100% to 97%), so the task does not hinge on any one head.")
    assert not any("carries" in s or " matters:" in s for s in spread)
    shared = plain_words(findings(ablation=[[0.70, 0.99], [0.80, 0.98]]))
    assert sentence_about(shared, "No single head carries the task") == (
        "No single head carries the task: the largest loss from zero-ablating one head is 30 points "
        "(L0H0: 100% to 70%).")
    assert sentence_about(shared, "L0H0 matters") and sentence_about(shared, "L1H0 matters")


def test_weak_models_and_missing_roles_are_said_plainly():
    weak = findings(accuracy=0.2, ablation=[[0.2, 0.2], [0.2, 0.2]], lens_accuracy=[0.1, 0.2, 0.3],
                    head_scores={"previous_token": [[0.1, 0.2], [0.3, 0.39]], "source": [[NAN, NAN], [NAN, NAN]]})
    words = plain_words(weak)
    assert "At 20% it has not learned the task" in words[1]
    assert sentence_about(words, "No head has a score that reaches 40% and 20 points above uniform attention")
    assert sentence_about(words, "Even after the last block").startswith(
        "Even after the last block the logit lens finds the right answer token on top only 30% of the time")


def test_the_answer_is_readable_at_the_first_stage_near_the_last():
    assert readable_stage([0.1, 0.95, 1.0]) == 1
    assert readable_stage([0.1, 0.3, 0.89, 1.0]) == 3
    assert readable_stage([0.1, 0.4]) is None


def test_attention_maps_show_the_most_harmful_heads_then_the_most_specialised():
    f = findings()
    assert heads_to_show(f.ablation_rows(), f.roles(), 2) == [(0, 0), (1, 1)]
    flat = findings(ablation=[[1.0, 1.0], [1.0, 1.0]])
    # previous_token 0.93, then source 0.80
    assert heads_to_show(flat.ablation_rows(), flat.roles(), 2) == [(0, 1), (1, 0)]


def test_findings_are_built_once():
    with pytest.raises(dataclasses.FrozenInstanceError):
        findings().map_heads = [(1, 1)]


# -- report.json, markdown and HTML ---------------------------------------------------------------

SECTIONS = {"task", "model", "accuracy", "ablation", "roles", "logit_lens", "attribution", "attention_maps",
            "plain_words"}


def numbers_in(text: str) -> list[str]:
    return re.findall(r"[+-]?\d+(?:\.\d+)?", text)


def test_report_json_holds_every_section_and_is_strict_json():
    data = report_dict(findings(head_scores={**findings().head_scores, "source": [[NAN, 0.1], [0.8, 0.35]]}))
    assert set(data) == SECTIONS
    text = json.dumps(data, allow_nan=False)  # NaN became null
    assert json.loads(text)["roles"]["heads"][0]["source"] is None
    assert data["ablation"]["heads"][0] == {"layer": 0, "head": 0, "accuracy": 0.29, "drop": pytest.approx(0.71)}
    assert data["roles"]["threshold"] == 0.4 and data["logit_lens"]["readable_stage"] == 2
    assert data["attribution"]["ranked"][0]["name"] == "L1H0"
    assert data["attribution"]["total"] == 10.30  # the measured margin, not the sum of the parts
    without = dict(findings().attribution)
    del without["total"]
    assert report_dict(findings(attribution=without))["attribution"]["total"] == pytest.approx(10.30)
    assert data["roles"]["chance"]["source"] == 0.25


def test_markdown_has_every_section_with_tables_and_figures():
    text = to_markdown(report_blocks(findings()))
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == ["1. Accuracy", "2. Which heads matter", "3. What they do", "4. Where the answer appears",
                        "5. Who writes it", "6. Attention maps", "7. In plain words"]
    assert "| L0H0 | 29% | 71 points |" in text  # most harmful first
    assert "| head | previous token | duplicate token | induction | induction (task) | source | role |" in text
    assert "| L0H1 | 0.93 | 0.05 | 0.02 | 0.02 | 0.10 | previous token 0.93 |" in text
    assert "| L1H1 | 0.20 | 0.10 | 0.30 | 0.30 | 0.35 | unclear |" in text
    assert "| uniform attention | 0.20 | 0.10 | 0.10 | 0.15 | 0.25 |  |" in text
    assert "min_length" not in text  # parameters left at None are not listed
    for name in ("ablation", "head_scores", "logit_lens", "attribution", "attention_maps"):
        assert f"]({name}.png)" in text
    for sentence in plain_words(findings()):
        assert f"- {sentence}" in text


def test_a_new_section_is_one_more_function_in_SECTIONS(monkeypatch):
    from gptdecoder.lab import report

    def extra(f: Findings) -> report.Section:
        return report.Section("Extra", [("p", f"{f.n_head} heads")], {"extra": {"n_head": f.n_head}})

    monkeypatch.setattr(report, "SECTIONS", (*report.SECTIONS[:-1], extra, report.SECTIONS[-1]))
    assert "## 7. Extra\n\n2 heads\n\n## 8. In plain words" in to_markdown(report_blocks(findings()))
    assert list(report_dict(findings()))[-2:] == ["extra", "plain_words"]


def test_html_is_one_page_with_embedded_figures_and_escaped_text():
    hostile = findings(task="<script>alert(1)</script>", example="a<b -> &")
    page = to_html(report_blocks(hostile), {"ablation.png": b"\x89PNG\r\n\x1a\n"}, title="explain")
    assert "<script>" not in page and "&lt;script&gt;" in page and "a&lt;b -&gt; &amp;" in page
    assert page.count("<img ") == 1 and 'src="data:image/png;base64,iVBORw' in page  # the PNG signature, base64
    assert not re.search(r"https?:", page) and "<link" not in page and "src=\"http" not in page
    assert f"<style>\n{stylesheet()}</style>" in page and "font-family" in stylesheet()  # the package's CSS


# -- figures --------------------------------------------------------------------------------------


def test_the_report_figures_draw(tmp_path):
    import torch

    from gptdecoder.commands.files import save_figure
    from gptdecoder.lab import figures

    f = findings()
    generator = torch.Generator().manual_seed(0)
    patterns = [torch.softmax(torch.randn(1, 2, 5, 5, generator=generator), dim=-1).tril() for _ in range(2)]
    wide = np.random.default_rng(0).random((2, 8))
    drawn = {
        "scores": figures.plot_role_scores({k: np.array(v) for k, v in f.head_scores.items()},
                                           marked=role_cells(f), chance=f.chance),
        "wide": figures.plot_role_scores({"induction": wide, "source": np.full((2, 8), NAN)}),
        "lens": figures.plot_logit_lens(f.lens_accuracy, f.lens_mean_rank),
        "dla": figures.plot_logit_attribution(np.array(f.attribution["heads"]), f.attribution["mlps"],
                                              f.attribution["attn_bias"], f.attribution["embed"]),
        "maps": figures.plot_head_patterns(patterns, list("abcde"), [(0, 1), (1, 0)], boundary=3,
                                           titles=["one", "two"]),
    }
    boxed = [len(ax.patches) for ax in drawn["scores"].axes[:5]]
    assert boxed == [1, 0, 0, 0, 2]  # L0H1's previous_token; L0H0's and L1H0's source (their roles)
    assert drawn["scores"].axes[0].get_title() == "previous token\nuniform attention: 0.20"
    assert [ax.get_title() for ax in drawn["maps"].axes[:2]] == ["one", "two"]
    for name, fig in drawn.items():
        assert save_figure(fig, tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")


# -- the command ----------------------------------------------------------------------------------

TINY_SORT = """
model: {n_layer: 2, n_head: 2, d_model: 16}
task: {name: sort, params: {length: 4, num_digits: 3}}
train: {batch_size: 64, max_iters: 60, eval_interval: 30, log_interval: 30, warmup_iters: 5, lr: 1.0e-2,
        precision: fp32}
eval: {examples: 64, train_examples: 32}
output: {plots: false}
"""


@pytest.fixture(scope="module")
def trained_sort(tmp_path_factory) -> Path:
    """A tiny sort run trained for a few dozen steps (enough for heads to differ)."""
    root = tmp_path_factory.mktemp("explain")
    config = root / "tiny.yaml"
    config.write_text(TINY_SORT)
    run = root / "run"
    assert cli.main(["train", "-c", str(config), "--out", str(run), "--no-progress",
                     "--set", "output.plots=false"]) == 0
    return run


@pytest.fixture(scope="module")
def explained(trained_sort) -> Path:
    assert cli.main(["explain", "--run", str(trained_sort), "--examples", "60"]) == 0
    return trained_sort / "explain"


def test_explain_writes_the_report_files(explained):
    names = {p.name for p in explained.iterdir()}
    assert {"report.md", "report.html", "report.json", "ablation.png", "head_scores.png", "logit_lens.png",
            "attribution.png", "attention_maps.png"} <= names
    assert {"circuit.png", "circuit.svg"} <= names
    data = json.loads((explained / "report.json").read_text())
    assert set(data) == SECTIONS | {"circuit"}
    circuit = data["circuit"]
    assert circuit["faithfulness"] >= circuit["share"] == 0.9 and 0 < circuit["n_edges"] < circuit["n_total"] == 61
    assert circuit["edges"] and {"sender", "receiver", "score"} == set(circuit["edges"][0])
    assert data["task"]["name"] == "sort" and data["model"]["n_layer"] == 2
    assert 0 < data["accuracy"]["examples"] <= 60
    assert len(data["ablation"]["heads"]) == 4 and len(data["roles"]["heads"]) == 4
    assert data["roles"]["probe"]["half_len"] * 2 <= 7  # fits block_size (4 + 4 - 1)
    assert len(data["logit_lens"]["accuracy"]) == 3 and len(data["attribution"]["heads"]) == 2
    assert data["plain_words"] and data["plain_words"][0].startswith("The model gets ")


def test_the_report_states_the_numbers_in_its_json(explained):
    data = json.loads((explained / "report.json").read_text())
    markdown = (explained / "report.md").read_text()
    assert f"{data['accuracy']['examples']} held-out prompts" in markdown
    for sentence in data["plain_words"]:
        assert sentence in markdown
    assert pct(data["accuracy"]["exact_match"]) in data["plain_words"][0]
    for row in data["ablation"]["heads"]:
        assert f"| L{row['layer']}H{row['head']} | {pct(row['accuracy'])} |" in markdown


def test_the_html_report_is_self_contained(explained):
    page = (explained / "report.html").read_text()
    assert not re.search(r"https?://", page)
    assert page.count('src="data:image/png;base64,') == 6 and "<script" not in page
    assert all(f"<h2>{n}." in page for n in range(1, 9)) and "<h2>7. Circuit</h2>" in page


def test_no_circuit_keeps_the_report_without_its_section(trained_sort, explained, tmp_path):
    out = tmp_path / "plain"
    assert cli.main(["explain", "--run", str(trained_sort), "--examples", "60", "--out", str(out), "--no-circuit"]) == 0
    assert not (out / "circuit.png").exists() and not (out / "circuit.svg").exists()
    data = json.loads((out / "report.json").read_text())
    assert set(data) == SECTIONS
    full = json.loads((explained / "report.json").read_text())
    assert {k: v for k, v in full.items() if k not in ("circuit", "plain_words")} == \
        {k: v for k, v in data.items() if k != "plain_words"}
    n = len(data["plain_words"])  # the circuit's sentences come last
    assert full["plain_words"][:n] == data["plain_words"] and full["plain_words"][n].startswith("Circuit: ")
    markdown = (out / "report.md").read_text()
    assert "Circuit" not in markdown and "## 7. In plain words" in markdown


def test_explain_on_an_untrained_run_and_bad_input(tmp_path, capsys):
    run = write_untrained_run(tmp_path / "untrained")
    assert cli.main(["explain", "--run", str(run), "--examples", "20", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out and (tmp_path / "out" / "report.json").is_file()
    assert cli.main(["explain", "--run", str(run), "--examples", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --examples 0") and err.count("\n") == 1
    assert cli.main(["explain", "--run", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_no_nan_reaches_the_report(explained):
    data = json.loads((explained / "report.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    for head in data["ablation"]["heads"]:
        assert math.isfinite(head["accuracy"])


# -- the circuit -----------------------------------------------------------------------------------


def test_the_circuit_sentences_say_who_reads_what_with_numbers():
    sentences = circuit_sentences(findings(circuit=CIRCUIT))
    assert sentences[0] == ("Circuit: 4 of 61 edges keep 94% of the logit difference between the clean and the "
                            "corrupted answers (7.25 vs -7.50 on 256 pairs; corrupted prompts: one token replaced).")
    assert "The answer is written by L1H0." in sentences
    assert ("L1H0 reads L0H1 through its key input and the token embeddings through its query input."
            in sentences)
    assert "L0H1 reads the token embeddings through its value input." in sentences
    assert sentence_about(sentences, "The strongest edge").startswith("The strongest edge, L1H0 -> logits, moves "
                                                                        "the logit difference by about -6.50")
    assert sentences[-1] == "The circuit does without L0H0 and L1H1."
    assert sentences == plain_words(findings(circuit=CIRCUIT))[-len(sentences):]
    assert circuit_sentences(findings(circuit={"skipped": "no pairs"})) == ["No circuit was traced: no pairs."]
    assert circuit_sentences(findings()) == []


def test_the_circuit_section_is_numbered_only_when_measured():
    text = to_markdown(report_blocks(findings(circuit=CIRCUIT)))
    assert "## 7. Circuit" in text and "## 8. In plain words" in text
    assert "| L0H1 -> L1H0 | key | -4.25 |" in text and "](circuit.png)" in text
    assert "4 of 61 edges keep 94% of the logit difference." in text
    assert report_dict(findings(circuit=CIRCUIT))["circuit"]["n_edges"] == 4
    assert "Circuit" not in to_markdown(report_blocks(findings())) and "circuit" not in report_dict(findings())


def test_explain_on_a_text_model_needs_no_config(tmp_path, capsys):
    """A text run: next-token accuracy on windows of its validation text, each head's cost in
    it, the detectors, lens and attribution; the task-only parts left out (no source scores,
    the circuit skipped), and the words say tokens, not prompts."""
    from lab_runs import train_text_run

    run = train_text_run(tmp_path)
    assert cli.main(["explain", "--run", str(run)]) == 0
    data = json.loads((run / "explain" / "report.json").read_text())
    assert data["task"]["name"] == "text" and data["accuracy"]["examples_are"] == "windows of text"
    assert 0 <= data["accuracy"]["next_token_accuracy"] <= 1 and "skipped" in data["circuit"]
    words = " ".join(data["plain_words"])
    assert "predicts the next token right" in words and "exactly right" not in words
    markdown = (run / "explain" / "report.md").read_text()
    assert "| head | next-token accuracy | drop |" in markdown
    assert cli.main(["explain", "--run", str(run), "--text", "too short", "--out", str(tmp_path / "o")]) == 2
    assert "give at least" in capsys.readouterr().err
