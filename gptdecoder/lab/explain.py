"""The explain report's measurements: a model and a task's held-out examples in, ``Findings``
and the report's figures out.

``measure`` runs every measurement the report rests on -- held-out exact match, what
zero-ablating each head costs (alone, and for heads sharing a role, together), the head
detectors on repeated random tokens and on the task's own sequences, each next to what
uniform attention would score, the source score, the logit lens and direct logit
attribution -- and builds the one ``Findings`` the report is written from (frozen: nothing
fills it in later). ``draw`` makes the report's figures from it.

The measuring itself lives in the lab modules this calls (ablation, scores, lens,
capture); this module decides what is measured on which inputs. What the numbers mean is
decided in ``gptdecoder.lab.roles``; the command (``gptdecoder.commands.explain``) loads
the run, writes the files and prints.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from gptdecoder.errors import UserError
from gptdecoder.lab.ablation import (
    HeldOut, ablation_hooks, ablation_rows, encode_examples, exact_match, head_ablation_scores, token_accuracy,
)
from gptdecoder.lab.capture import capture_attention, most_varied
from gptdecoder.lab.lens import direct_logit_attribution, logit_lens
from gptdecoder.lab.prose import circuit_title, head_caption, lens_labels
from gptdecoder.lab.report import FIGURES
from gptdecoder.lab.roles import ROLE_THRESHOLD, Findings, head_roles, heads_to_show, quiet_role_groups, role_cells
from gptdecoder.lab.scores import (
    HEAD_KINDS, detection_patterns, detection_score, head_scores, repeated_random_tokens, source_positions,
    source_scores,
)
from gptdecoder.model import GPT
from gptdecoder.tasks import Example, Task

PROBE_BATCH = 32  # repeated random sequences the head scores average over
PROBE_MAX_HALF_LEN = 50  # longer repeats add little; shorter ones fit a small block_size
PROBE_SEED = 0
MAP_HEADS = 4  # attention maps drawn


def probe_half_len(block_size: int) -> int:
    """Length of each half of the repeated random tokens: the whole probe must fit the context."""
    half = min(PROBE_MAX_HALF_LEN, block_size // 2)
    if half < 2:
        raise UserError(f"block_size {block_size} is too short for the repeated-token probe (needs at least 4)")
    return half


def uniform_detector_scores(tokens: torch.Tensor) -> dict[str, float]:
    """The head detectors' scores of a head that attends equally to every position it may see.

    A score means something only well above this: on a 3-token vocabulary, for instance,
    about a third of the earlier positions hold a copy of the current token, so uniform
    attention already scores about 0.4 as a duplicate-token head.
    """
    B, T = tokens.shape
    uniform = torch.tril(torch.ones(T, T))
    uniform = (uniform / uniform.sum(dim=-1, keepdim=True)).expand(1, B, 1, T, T)  # [L=1, B, H=1, T, T]
    detect = detection_patterns(tokens)
    return {kind: float(detection_score(uniform, detect[kind])[0, 0]) for kind in HEAD_KINDS}


def task_detector_scores(model: GPT, task: Task,
                         examples: Sequence[Example]) -> tuple[dict[str, list], dict[str, float]]:
    """The head detectors on the task's own held-out sequences: ({kind_task: [layer][head]}, uniform levels).

    A head can do induction in the task's format without doing it on random tokens (a
    model that only ever saw key-value pairs may find a value by the pairs' layout, which
    random tokens lack), so the detectors run on both. Sequences are scored in groups of
    one length, so no padding is ever a query or a key, and the groups are weighted by size.
    """
    by_length: dict[int, list[Example]] = {}
    for prompt, answer in examples:
        by_length.setdefault(len(prompt) + len(answer), []).append((prompt, answer))
    totals: dict[str, torch.Tensor] = {}
    uniform: dict[str, float] = {}
    for group in by_length.values():
        data = encode_examples(group, task)
        x = data.x
        weight = len(group) / len(examples)
        for kind, grid in head_scores(model, x, data.pos).items():
            totals[f"{kind}_task"] = totals.get(f"{kind}_task", 0) + weight * grid
        for kind, level in uniform_detector_scores(x).items():
            uniform[f"{kind}_task"] = uniform.get(f"{kind}_task", 0.0) + weight * level
    return {kind: grid.tolist() for kind, grid in totals.items()}, uniform


def uniform_source_score(task: Task, examples: Sequence[Example]) -> float:
    """Uniform attention's source score: the mean share of the visible positions that are
    sources (NaN when the task names none, so its source scores are not measurements)."""
    # answer token j is predicted at position len(prompt) - 1 + j, which sees len(prompt) + j positions
    shares = [len(set(sources)) / (len(prompt) + j) for prompt, answer in examples
              for j, sources in enumerate(source_positions(task, prompt, answer)) if sources]
    return sum(shares) / len(shares) if shares else float("nan")


CIRCUIT_PAIRS = 256  # clean/corrupted pairs the circuit is traced on


def measure_circuit(model: GPT, task: Task) -> dict:
    """The circuit (``gptdecoder.lab.circuits.find_circuit``: EAP-IG scores, pruned to keep
    90% of the logit difference) as report.json states it; {"skipped": why} when the task
    makes no clean/corrupted pairs."""
    from gptdecoder.lab.circuits import find_circuit
    from gptdecoder.lab.pairs import make_pairs

    try:
        return find_circuit(model, make_pairs(task, CIRCUIT_PAIRS)).to_dict()
    except ValueError as e:  # no twin changes the answer, or the model does not tell them apart
        return {"skipped": str(e)}


def probe_scores(model: GPT) -> tuple[dict, dict[str, list], dict[str, float]]:
    """(how the probe was drawn, the head detectors' [layer][head] scores on repeated random
    tokens, what uniform attention scores on them): the task-free half of the head scores."""
    config = model.config
    probe = {"vocab_size": config.vocab_size, "batch": PROBE_BATCH, "half_len": probe_half_len(config.block_size),
             "seed": PROBE_SEED}
    tokens = repeated_random_tokens(probe["vocab_size"], probe["batch"], probe["half_len"], probe["seed"])
    scores = {name: grid.tolist() for name, grid in head_scores(model, tokens).items()}
    return probe, scores, uniform_detector_scores(tokens)


def attribution_numbers(model: GPT, data: HeldOut) -> dict:
    """direct_logit_attribution as plain numbers (lists and floats) for Findings."""
    return {name: value.tolist() if isinstance(value, torch.Tensor) else float(value)
            for name, value in direct_logit_attribution(model, data).items()}


def measure(model: GPT, task: Task, examples: Sequence[Example], description: str, circuit: bool = True,
            compiled: Optional[dict] = None) -> Findings:
    """Every number of the report, for ``model`` (``description`` names it) on ``examples`` of
    ``task``; the circuit too unless ``circuit`` is False. ``compiled``: a compiled program's
    compiled.json, which the report compares with what it measures."""
    config = model.config
    data = encode_examples(examples, task)
    baseline, ablation = head_ablation_scores(model, data, "zero")

    probe, scores, chance = probe_scores(model)
    on_task, on_task_chance = task_detector_scores(model, task, examples)
    scores.update(on_task)
    chance.update(on_task_chance)
    scores["source"] = source_scores(model, task, examples).tolist()
    chance["source"] = uniform_source_score(task, examples)
    if math.isnan(chance["source"]):
        # the task names no sources: its source scores are zeros by convention, not measurements
        scores["source"] = [[float("nan")] * config.n_head for _ in range(config.n_layer)]

    lens = logit_lens(model, data)
    attribution = attribution_numbers(model, data)
    prompt, answer = examples[most_varied(examples)]

    ablation = ablation.tolist()
    ranking, roles = ablation_rows(baseline, ablation), head_roles(scores, ROLE_THRESHOLD, chance)
    # a role shared by several heads may survive the loss of any one: remove them all at once
    group_ablation = {role: exact_match(model, data, ablation_hooks(heads, "zero"))
                      for role, heads in quiet_role_groups(ranking, roles).items() if len(heads) > 1}
    return Findings(
        task=task.name, task_params=task.params, model=description,
        n_layer=config.n_layer, n_head=config.n_head, examples=len(examples), accuracy=baseline,
        ablation=ablation, head_scores=scores, probe=probe,
        lens_accuracy=lens["accuracy"].tolist(), lens_mean_rank=lens["mean_rank"].tolist(),
        attribution=attribution, example=f"{task.format(prompt)} -> {task.format(answer)}",
        map_heads=heads_to_show(ranking, roles, MAP_HEADS), threshold=ROLE_THRESHOLD, chance=chance,
        group_ablation=group_ablation, circuit=measure_circuit(model, task) if circuit else None, compiled=compiled,
    )


def draw(findings: Findings, model: GPT, views: dict) -> dict:
    """The report's figures (matplotlib Figures), by file name; the attention maps show
    ``views`` (``example_views`` of a task example, or ``text_views`` of a text window)."""
    # matplotlib is imported only when figures are drawn: importing the lab's measurements does not load it
    from gptdecoder.lab import figures

    name = findings.task
    attribution = findings.attribution
    pictures = {
        "ablation.png": figures.plot_head_scores(
            np.array(findings.ablation), f"{name}: {findings.metric} with one head zero-ablated",
            findings.metric, baseline=findings.accuracy),
        "head_scores.png": figures.plot_role_scores(
            {name: np.array(grid) for name, grid in findings.head_scores.items()}, marked=role_cells(findings),
            chance=findings.chance, title=f"{name}: head scores"),
        "logit_lens.png": figures.plot_logit_lens(
            findings.lens_accuracy, findings.lens_mean_rank, lens_labels(len(findings.lens_accuracy)),
            title=f"{name}: logit lens on {findings.examples} {findings.examples_are or 'held-out prompts'}"),
        "attribution.png": figures.plot_logit_attribution(
            np.array(attribution["heads"]), attribution["mlps"], attribution["attn_bias"], attribution["embed"],
            title=f"{name}: direct logit attribution"),
        "attention_maps.png": figures.plot_head_patterns(
            views["patterns"], views["tokens"], findings.map_heads, views["boundary"],
            titles=[head_caption(findings, *head) for head in findings.map_heads],
            title=f"{name}: {findings.example}"),
    }
    if findings.circuit and "skipped" not in findings.circuit:
        from gptdecoder.lab.circuit_figures import circuit_figure
        from gptdecoder.lab.circuit_graph import graph_of

        edges = [(e["sender"], e["receiver"], e["score"]) for e in findings.circuit["edges"]]
        pictures["circuit.png"] = circuit_figure(graph_of(model), edges,
                                                 f"{name}: {circuit_title(findings.circuit)}")
    assert set(pictures) <= set(FIGURES), "every figure drawn is one the report names"
    return pictures


# -- a text model: no task, the measurements that need none ------------------------------------

TEXT_WINDOWS = 32  # windows of text the report measures on
TEXT_WINDOW = 64  # tokens per window at most (the model's block_size if shorter)
TEXT_EXAMPLES_ARE = "windows of text"


def text_windows(ids: Sequence[int], block_size: int) -> HeldOut:
    """Up to TEXT_WINDOWS non-overlapping windows of ``ids`` for next-token prediction: x a
    window, y the tokens after it, every position scored."""
    size = min(block_size, TEXT_WINDOW)
    rows = [list(ids[i : i + size + 1]) for i in range(0, len(ids) - size, size)][:TEXT_WINDOWS]
    if not rows:
        raise UserError(f"the text has {len(ids)} tokens: give at least {size + 1} (a window and its next token)")
    x = torch.tensor([r[:-1] for r in rows])
    return HeldOut(x, torch.tensor([r[1:] for r in rows]), torch.ones_like(x, dtype=torch.float))


def text_views(model: GPT, data: HeldOut, labels: Sequence[str]) -> dict:
    """The attention maps' input for the first window: its patterns and token labels."""
    idx = data.x[:1]
    return {"patterns": capture_attention(model, idx), "tokens": list(labels), "boundary": None}


def measure_text(model: GPT, data: HeldOut, example: str, description: str) -> Findings:
    """The report's numbers for a model without a task, on windows of text (``text_windows``):
    next-token accuracy, alone and with each head zero-ablated; the head detectors on
    repeated random tokens; the logit lens and direct logit attribution on the text. Left
    out, as they need a task: source scores, roles on the task's sequences and the circuit
    (no clean/corrupted pairs)."""
    config = model.config
    baseline, ablation = head_ablation_scores(model, data, "zero", measure=token_accuracy)
    probe, scores, chance = probe_scores(model)
    scores["source"] = [[float("nan")] * config.n_head for _ in range(config.n_layer)]
    chance["source"] = float("nan")
    lens = logit_lens(model, data)
    attribution = attribution_numbers(model, data)
    ablation = ablation.tolist()
    ranking, roles = ablation_rows(baseline, ablation), head_roles(scores, ROLE_THRESHOLD, chance)
    return Findings(
        task="text", task_params={"windows": int(data.x.size(0)), "tokens_per_window": int(data.x.size(1))},
        model=description, n_layer=config.n_layer, n_head=config.n_head, examples=int(data.x.size(0)),
        accuracy=baseline, ablation=ablation, head_scores=scores, probe=probe,
        lens_accuracy=lens["accuracy"].tolist(), lens_mean_rank=lens["mean_rank"].tolist(), attribution=attribution,
        example=example, map_heads=heads_to_show(ranking, roles, MAP_HEADS), threshold=ROLE_THRESHOLD, chance=chance,
        circuit={"skipped": "a text model has no clean/corrupted pairs (explain a task run for its circuit)"},
        metric="next-token accuracy", examples_are=TEXT_EXAMPLES_ARE,
    )
