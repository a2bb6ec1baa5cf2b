"""The explain report, section by section: Findings in, blocks and report.json out.

The report is an opening and the numbered ``SECTIONS``; each section is one function
from ``Findings`` to a ``Section``: its heading, its blocks (paragraphs, tables,
figures; see ``gptdecoder.lab.render``) and its part of report.json. ``report_blocks``
and ``report_dict`` only put the sections together, so report.md, report.html and
report.json state the same numbers in the same order.

A new section (a measured circuit, say) takes one step in each layer of the report:

    measure   its numbers: a new ``Findings`` field (gptdecoder.lab.roles), filled in by
              ``gptdecoder.lab.explain.measure``; its figure, if any, in ``explain.draw``
              and in ``FIGURES`` below
    decide    thresholds and rankings on those numbers: gptdecoder.lab.roles
    say       its sentences: gptdecoder.lab.prose, one more part of ``PLAIN_WORDS``
    show      a function here that returns its Section, listed in ``SECTIONS`` (before
              "In plain words", which stays last); headings are numbered in list order

The formats (gptdecoder.lab.render) need no change. No torch and no matplotlib here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from gptdecoder.lab.prose import (
    INPUT_WORDS, SCORE_LABELS, circuit_title, join_words, lens_labels, pct, plain_words, points, role_cell, score_text, signed,
)
from gptdecoder.lab.render import Block, figure, json_ready, table
from gptdecoder.lab.roles import (
    CHANCE_MARGIN, DOMINATES, MATTERS, ROLES, Findings, attribution_components, attribution_total, head_name,
    quiet_role_groups, readable_stage,
)

MAX_TABLE_ROWS = 24  # longer tables are cut (report.json keeps every row)

FIGURES = {  # file name -> alt text; gptdecoder.lab.explain.draw draws each of them
    "ablation.png": "held-out exact match with each head zero-ablated (layer x head)",
    "head_scores.png": "head scores: previous token, duplicate token, induction, source (layer x head)",
    "logit_lens.png": "logit lens: accuracy and mean rank of the correct token after each block",
    "attribution.png": "direct logit attribution per head, attention bias and MLP",
    "attention_maps.png": "attention patterns of the most important heads on one held-out example",
    "circuit.png": "the circuit: the edges that keep the answer, nodes in rows by layer",
}
ALSO_SVG = ("circuit.png",)  # figures also written as SVG (a graph scales; people put it in slides)


@dataclass(frozen=True)
class Section:
    """One section of the report: what it shows, and what of it goes into report.json."""

    title: str  # the heading, without its number
    blocks: list[Block]
    data: dict  # report.json key -> value (JSON-ready once the whole report is: NaN becomes null)


def _figure(file: str) -> Block:
    return figure(file, FIGURES[file])


def _cut(rows: list, what: str) -> tuple[list, str]:
    """At most MAX_TABLE_ROWS rows, and the note that says how many more report.json has."""
    if len(rows) <= MAX_TABLE_ROWS:
        return rows, ""
    return rows[:MAX_TABLE_ROWS], f"... and {len(rows) - MAX_TABLE_ROWS} more {what} (all in report.json)"


# -- the sections, in order -----------------------------------------------------------------------


def opening(findings: Findings) -> Section:
    """The title (its heading is the page's h1, not numbered) and which model does which task."""
    params = ", ".join(f"{k}={v}" for k, v in sorted(findings.task_params.items()) if v is not None)
    return Section(
        f"What the model does on {findings.task}",
        [("p", f"Model: {findings.model} ({findings.n_layer} layers x {findings.n_head} heads). "
               f"Task: {findings.task}" + (f" ({params})." if params else "."))],
        {"task": {"name": findings.task, "params": findings.task_params},
         "model": {"description": findings.model, "n_layer": findings.n_layer, "n_head": findings.n_head},
         **({"compiled": findings.compiled} if findings.compiled else {})},
    )


def accuracy_section(findings: Findings) -> Section:
    if findings.examples_are:  # a text model
        return Section(
            "Accuracy",
            [("p", f"Next-token accuracy on {findings.examples} {findings.examples_are}: {pct(findings.accuracy)}. "
                   f"Every position counts: the model's most likely next token against the token that follows.")],
            {"accuracy": {"examples": findings.examples, "next_token_accuracy": findings.accuracy,
                          "examples_are": findings.examples_are}},
        )
    return Section(
        "Accuracy",
        [("p", f"Exact match on {findings.examples} held-out prompts (never trained on): {pct(findings.accuracy)}. "
               f"An example counts only if the model's top prediction is right at every position the task scores "
               f"(the answer, and in multi-query recall the earlier queries' values too), with the correct tokens "
               f"before it fed in.")],
        {"accuracy": {"examples": findings.examples, "exact_match": findings.accuracy}},
    )


def ablation_section(findings: Findings) -> Section:
    ranking = findings.ablation_rows()
    shown, note = _cut(ranking, "heads")
    groups = quiet_role_groups(ranking, findings.roles())
    return Section(
        "Which heads matter",
        [("p", f"Each head in turn is zero-ablated (its output replaced by zeros) and the "
               f"{'' if findings.examples_are else 'held-out '}{findings.metric} "
               f"measured again. Most harmful first; a head matters here when it costs at least {points(MATTERS)}."),
         table(["head", findings.metric, "drop"],
               [[head_name(r["layer"], r["head"]), pct(r["accuracy"]), points(r["drop"])] for r in shown], note),
         _figure("ablation.png")],
        {"ablation": {"mode": "zero", "baseline": findings.accuracy, "heads": ranking,
                      "matters_at": MATTERS, "dominates_at": DOMINATES,
                      "roles_together": [{"role": role, "heads": [list(h) for h in heads],
                                          "accuracy": findings.group_ablation[role]}
                                         for role, heads in groups.items() if role in findings.group_ablation]}},
    )


def roles_section(findings: Findings) -> Section:
    probe, threshold = findings.probe, findings.threshold
    role_rows = findings.roles()
    roles = {(r["layer"], r["head"]): r for r in role_rows}
    names = [n for n in ROLES if n in findings.head_scores]
    shown, note = _cut([roles[(r["layer"], r["head"])] for r in findings.ablation_rows()], "heads")
    rows = [[head_name(r["layer"], r["head"]), *[score_text(r[n]) for n in names], role_cell(r)] for r in shown]
    if findings.chance:
        rows.append(["uniform attention", *[score_text(findings.chance.get(n, float("nan"))) for n in names], ""])
    return Section(
        "What they do",
        [("p", f"Each score is a share of a head's attention; an ideal head of that kind scores 1. Previous "
               f"token, duplicate token and induction are measured on {probe.get('batch')} sequences of "
               f"{probe.get('half_len')} random tokens from the model's {probe.get('vocab_size')}-token "
               f"vocabulary, each repeated once: attention to the previous token, to earlier copies of the "
               f"current token, and to the token right after such a copy. The (task) columns measure the same on "
               f"the task's own held-out sequences, since a head may do induction in the task's format and not on "
               f"random tokens. Source is attention from each answer-predicting position to the prompt positions "
               f"holding what that answer token is computed from. The last row is what a head attending equally "
               f"to every position it may see would score. A head's role is its highest score that is at least "
               f"{score_text(threshold)} and at least {score_text(CHANCE_MARGIN)} above that row; else unclear."),
         table(["head", *[SCORE_LABELS.get(n, n) for n in names], "role"], rows, note),
         _figure("head_scores.png")],
        {"roles": {"threshold": threshold, "chance_margin": CHANCE_MARGIN, "chance": findings.chance,
                   "probe": probe, "heads": role_rows}},
    )


def logit_lens_section(findings: Findings) -> Section:
    labels = lens_labels(len(findings.lens_accuracy))
    return Section(
        "Where the answer appears",
        [("p", "The logit lens reads the residual stream after each block through the final layer norm and the "
               "unembedding, as if the model stopped there: how often is the correct answer token on top, and "
               "what is its mean rank (0 = on top)? Counted per scored token, so the last row can differ from the "
               "exact match of section 1."),
         table(["residual stream after", "correct on top", "mean rank"],
               [[label, pct(a), f"{r:.2f}"] for label, a, r in
                zip(labels, findings.lens_accuracy, findings.lens_mean_rank)]),
         _figure("logit_lens.png")],
        {"logit_lens": {"stages": labels, "accuracy": findings.lens_accuracy, "mean_rank": findings.lens_mean_rank,
                        "readable_stage": readable_stage(findings.lens_accuracy)}},
    )


def attribution_section(findings: Findings) -> Section:
    components = attribution_components(findings.attribution)
    total = attribution_total(findings.attribution)
    shown, note = _cut(components, "components")
    return Section(
        "Who writes it",
        [("p", f"Direct logit attribution: what each component adds, straight through the residual stream and the "
               f"final layer norm's scale, to the correct answer's logit minus the mean logit (averaged over the "
               f"answer tokens; together {signed(total)}). Largest first; components that act through later "
               f"layers score low here even when they matter."),
         table(["component", "direct contribution"], [[c["name"], signed(c["value"])] for c in shown], note),
         _figure("attribution.png")],
        {"attribution": {**findings.attribution, "ranked": components, "total": total}},
    )


def attention_maps_section(findings: Findings) -> Section:
    shown_heads = join_words([head_name(*h) for h in findings.map_heads]) if findings.map_heads else "none"
    return Section(
        "Attention maps",
        [("p", f"The first heads of section 2's ranking ({shown_heads}; ties broken by the strongest head score) on "
               f"one held-out example, {findings.example}. Row i is where position i looks; the dashed lines "
               f"separate prompt and answer."),
         _figure("attention_maps.png")],
        {"attention_maps": {"example": findings.example, "heads": [list(h) for h in findings.map_heads]}},
    )


def circuit_section(findings: Findings) -> Optional[Section]:
    """The measured circuit (None, no section, when it was not measured: --no-circuit)."""
    circuit = findings.circuit
    if circuit is None:
        return None
    if "skipped" in circuit:
        return Section("Circuit", [("p", f"No circuit was traced: {circuit['skipped']}.")], {"circuit": circuit})
    shown, note = _cut(circuit["edges"], "edges")
    return Section(
        "Circuit",
        [("p", f"Which edges of the computational graph carry the task. Each held-out prompt is paired with a "
               f"corrupted twin of the same length ({circuit['corruption']}), and the metric is the logit of the "
               f"clean answer token minus that of the corrupted one, over the answer positions where they differ "
               f"({circuit['metric_clean']:.2f} on clean prompts, {circuit['metric_corrupted']:.2f} on corrupted "
               f"ones; {circuit['n_pairs']} pairs). An edge runs from a component that writes into the residual "
               f"stream (the embeddings, a head, an MLP) to one that reads it later (a head's query, key or value "
               f"input, an MLP, the logits). Every edge is scored by {METHOD_WORDS[circuit['method']]}; the circuit "
               f"is the fewest edges, in score order and then pruned one by one from the logits down (as ACDC "
               f"does), that keep {pct(circuit['share'])} of the metric when every other edge reads its corrupted "
               f"value. {circuit_title(circuit)}."),
         table(["edge", "input", "score"],
               [[f"{e['sender']} -> {e['receiver'].split('.')[0]}", INPUT_WORDS.get(e["receiver"].partition(".")[2], ""),
                 signed(e["score"])] for e in shown], note),
         _figure("circuit.png")],
        {"circuit": circuit},
    )


def plain_words_section(findings: Findings) -> Section:
    sentences = plain_words(findings)
    return Section("In plain words", [("bullets", sentences)], {"plain_words": sentences})


# The numbered sections, in report order ("In plain words" last: it sums up the others).
# A section that returns None is left out (and the later ones numbered on).
SECTIONS: tuple[Callable[[Findings], Optional[Section]], ...] = (
    accuracy_section, ablation_section, roles_section, logit_lens_section, attribution_section,
    attention_maps_section, circuit_section, plain_words_section,
)
METHOD_WORDS = {"eap-ig": "EAP-IG (edge attribution patching with integrated gradients, Hanna et al. 2024)",
                "eap": "EAP (edge attribution patching, Syed et al. 2023)", "exact": "patching it alone"}


def report_blocks(findings: Findings) -> list[Block]:
    """The whole report as format-neutral blocks: the opening, then each section under its numbered heading."""
    first = opening(findings)
    blocks: list[Block] = [("h1", first.title), *first.blocks]
    sections = [section for section in (make(findings) for make in SECTIONS) if section is not None]
    for number, section in enumerate(sections, 1):
        blocks += [("h2", f"{number}. {section.title}"), *section.blocks]
    return blocks


def report_dict(findings: Findings) -> dict:
    """Everything the report states, by section, as JSON-ready values (NaN becomes null)."""
    data: dict = {}
    for make in (opening, *SECTIONS):
        section = make(findings)
        if section is not None:
            data.update(section.data)
    return json_ready(data)
