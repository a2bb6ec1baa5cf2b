"""``python -m gptdecoder explain --run PATH``: one report on how a trained task model works.

It measures, on the task's held-out prompts: the exact match; what zero-ablating each
head costs; what each head does (previous-token, duplicate-token and induction scores on
repeated random tokens and on the task's own sequences, and the task's source score,
each beside what uniform attention would score); where the answer becomes readable
(logit lens); which components write it (direct logit attribution); and the attention of
the most important heads on one example. Then it writes, into DIR:

    report.md     the report, with the figures linked
    report.html   the same as one self-contained page (figures embedded, no script, no network)
    report.json   every number the report states
    *.png         the figures

The measurements come from gptdecoder.lab (ablation, scores, lens, capture), the words
from gptdecoder.lab.report (pure functions: what is said about which numbers is decided
and tested there); this module only runs them and writes the files.

``--run`` is a run directory, a Hugging Face GPT-2 directory or a nanoGPT checkpoint, as
for ``ablate``: a task run brings its task and receives the report in PATH/explain; any
other model takes the task from ``-c CONFIG`` and needs ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from gptdecoder.commands import add_model_arguments
from gptdecoder.errors import UserError
from gptdecoder.lab.ablation import ablation_hooks, encode_examples, exact_match, head_ablation_scores
from gptdecoder.lab.capture import example_views, most_varied
from gptdecoder.lab.report import (
    FIGURES, ROLE_THRESHOLD, Findings, head_caption, heads_to_show, lens_labels, plain_words, report_blocks,
    quiet_role_groups, report_dict, role_cells, to_html, to_markdown,
)
from gptdecoder.model import GPT
from gptdecoder.runs import LoadedModel, load_model, task_for
from gptdecoder.storage import write_atomic
from gptdecoder.tasks import Example, Task

PROBE_BATCH = 32  # repeated random sequences the head scores average over
PROBE_MAX_HALF_LEN = 50  # longer repeats add little; shorter ones fit a small block_size
PROBE_SEED = 0
MAP_HEADS = 4  # attention maps drawn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--examples", type=int, default=500, help="held-out examples to score (default 500)")
    parser.add_argument("--out", help="where to write the report (default: PATH/explain; required for "
                                      "other models)")


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
    from gptdecoder.lab.scores import HEAD_KINDS, detection_patterns, detection_score

    B, T = tokens.shape
    uniform = torch.tril(torch.ones(T, T))
    uniform = (uniform / uniform.sum(dim=-1, keepdim=True)).expand(1, B, 1, T, T)  # [L=1, B, H=1, T, T]
    detect = detection_patterns(tokens)
    return {kind: float(detection_score(uniform, detect[kind])[0, 0]) for kind in HEAD_KINDS}


def task_detector_scores(model: GPT, task: Task, examples: Sequence[Example]) -> tuple[dict[str, list], dict[str, float]]:
    """The head detectors on the task's own held-out sequences: ({kind_task: [layer][head]}, uniform levels).

    A head can do induction in the task's format without doing it on random tokens (a
    model that only ever saw key-value pairs may find a value by the pairs' layout, which
    random tokens lack), so the detectors run on both. Sequences are scored in groups of
    one length, so no padding is ever a query or a key, and the groups are weighted by size.
    """
    from gptdecoder.lab.scores import head_scores

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
    from gptdecoder.lab.scores import source_positions

    # answer token j is predicted at position len(prompt) - 1 + j, which sees len(prompt) + j positions
    shares = [len(set(sources)) / (len(prompt) + j) for prompt, answer in examples
              for j, sources in enumerate(source_positions(task, prompt, answer)) if sources]
    return sum(shares) / len(shares) if shares else float("nan")


def measure(loaded: LoadedModel, task: Task, examples: Sequence[Example]) -> Findings:
    """Every number of the report, for ``loaded``'s model on ``examples`` of ``task``."""
    from gptdecoder.lab.lens import direct_logit_attribution, logit_lens
    from gptdecoder.lab.scores import head_scores, repeated_random_tokens, source_scores

    model, config = loaded.model, loaded.model.config
    data = encode_examples(examples, task)
    baseline, ablation = head_ablation_scores(model, data, "zero")

    probe = {"vocab_size": config.vocab_size, "batch": PROBE_BATCH, "half_len": probe_half_len(config.block_size),
             "seed": PROBE_SEED}
    tokens = repeated_random_tokens(probe["vocab_size"], probe["batch"], probe["half_len"], probe["seed"])
    scores = {name: grid.tolist() for name, grid in head_scores(model, tokens).items()}
    chance = uniform_detector_scores(tokens)
    on_task, on_task_chance = task_detector_scores(model, task, examples)
    scores.update(on_task)
    chance.update(on_task_chance)
    scores["source"] = source_scores(model, task, examples).tolist()
    chance["source"] = uniform_source_score(task, examples)
    if math.isnan(chance["source"]):
        # the task names no sources: its source scores are zeros by convention, not measurements
        scores["source"] = [[float("nan")] * config.n_head for _ in range(config.n_layer)]

    lens = logit_lens(model, data)
    attribution = {name: value.tolist() if isinstance(value, torch.Tensor) else float(value)
                   for name, value in direct_logit_attribution(model, data).items()}
    prompt, answer = examples[most_varied(examples)]
    findings = Findings(
        task=task.name, task_params=task.params, model=loaded.description,
        n_layer=config.n_layer, n_head=config.n_head, examples=len(examples), accuracy=baseline,
        ablation=ablation.tolist(), head_scores=scores, probe=probe,
        lens_accuracy=lens["accuracy"].tolist(), lens_mean_rank=lens["mean_rank"].tolist(),
        attribution=attribution, example=f"{task.format(prompt)} -> {task.format(answer)}",
        threshold=ROLE_THRESHOLD, chance=chance,
    )
    findings.map_heads = heads_to_show(findings, MAP_HEADS)
    # a role shared by several heads may survive the loss of any one: remove them all at once
    findings.group_ablation = {role: exact_match(model, data, ablation_hooks(heads, "zero"))
                               for role, heads in quiet_role_groups(findings).items() if len(heads) > 1}
    return findings


def draw(findings: Findings, model: GPT, task: Task, example: Example) -> dict:
    """The report's figures, by file name; the attention maps show ``example``."""
    from gptdecoder.lab import figures

    views = example_views(model, task, *example)
    attribution = findings.attribution
    pictures = {
        "ablation.png": figures.plot_head_scores(
            np.array(findings.ablation), f"{task.name}: held-out exact match with one head zero-ablated",
            "exact-match accuracy", baseline=findings.accuracy),
        "head_scores.png": figures.plot_role_scores(
            {name: np.array(grid) for name, grid in findings.head_scores.items()}, marked=role_cells(findings),
            chance=findings.chance, title=f"{task.name}: head scores"),
        "logit_lens.png": figures.plot_logit_lens(
            findings.lens_accuracy, findings.lens_mean_rank, lens_labels(len(findings.lens_accuracy)),
            title=f"{task.name}: logit lens on {findings.examples} held-out prompts"),
        "attribution.png": figures.plot_logit_attribution(
            np.array(attribution["heads"]), attribution["mlps"], attribution["attn_bias"], attribution["embed"],
            title=f"{task.name}: direct logit attribution"),
        "attention_maps.png": figures.plot_head_patterns(
            views["patterns"], views["tokens"], findings.map_heads, views["boundary"],
            titles=[head_caption(findings, *head) for head in findings.map_heads],
            title=f"{task.name}: {findings.example}"),
    }
    assert set(pictures) == set(FIGURES), "every figure the report shows is drawn"
    return pictures


def run(args: argparse.Namespace) -> int:
    # matplotlib is imported only when the command runs (commands.files, lab.figures): cli.py
    # imports every command module to build its parser, and the other commands should not pay
    from gptdecoder.commands.files import save_figure

    if args.examples < 1:
        raise UserError(f"--examples {args.examples}: expected at least 1")
    loaded = load_model(args.run_dir, device="cpu")
    task = task_for(loaded, args.config)
    if args.out is None and loaded.kind != "run":
        raise UserError(f"{loaded.description}: pass --out DIR for the report (it goes into a run directory "
                        f"only when it is one of ours)")
    out = Path(args.out) if args.out else loaded.path / "explain"
    examples = task.test_examples(args.examples, seed=0)
    if not examples:
        raise UserError(f"task {task.name!r} has no held-out examples to examine")

    findings = measure(loaded, task, examples)
    pictures = draw(findings, loaded.model, task, examples[most_varied(examples)])
    images = {name: save_figure(fig, out / name).read_bytes() for name, fig in pictures.items()}
    blocks = report_blocks(findings)
    write_atomic(out / "report.md", to_markdown(blocks))
    write_atomic(out / "report.html", to_html(blocks, images, title=f"explain: {task.name}"))
    write_atomic(out / "report.json", json.dumps(report_dict(findings), indent=2, allow_nan=False) + "\n")

    print(f"{task.name}: {len(examples)} held-out examples, {loaded.description}")
    print("\n".join(f"- {sentence}" for sentence in plain_words(findings)))
    print(f"wrote {out / 'report.html'} (self-contained), report.md, report.json and {len(images)} figures in {out}")
    return 0
