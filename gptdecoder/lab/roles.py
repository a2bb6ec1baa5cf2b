"""What the explain report's numbers mean: which head has which role, which heads matter.

``gptdecoder.lab.explain.measure`` turns a model into one ``Findings``: plain numbers,
built once and never changed. Everything the report concludes from them is decided
here, by pure functions with the thresholds at the top of this module, so that a
decision can be tested on made-up numbers and the sentences (``gptdecoder.lab.prose``)
and tables (``gptdecoder.lab.report``) can only state what was decided:

* ``head_roles`` -- each head's role: its highest score that reaches a threshold and
  beats uniform attention clearly, else "unclear";
* ``described_heads`` / ``quiet_role_groups`` -- the heads ablation singles out, and the
  heads with a role it does not single out (grouped by role);
* ``heads_to_show`` -- the heads whose attention maps are drawn;
* ``attribution_components``, ``readable_stage``, ``main_writers`` ... -- the logit-lens
  and direct-attribution decisions.

No words and no formats here: names of heads and components only (``head_name``).
The numbers are plain Python floats and lists (no tensors).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from gptdecoder.lab.ablation import ablation_rows

# A head gets a role when one of its scores (a share of its attention) reaches this:
# 0.4 is well above what an untrained head gives any single position of a dozen, and
# leaves room for a head that spreads the rest of its attention.
ROLE_THRESHOLD = 0.4
# ... and is at least this much above what uniform attention would score. With a tiny
# vocabulary (sort's 3 digits) every token has earlier copies everywhere, so uniform
# attention alone scores about 0.4 as a duplicate-token or induction head: 0.4 there
# says nothing about the head.
CHANCE_MARGIN = 0.2
# Zero-ablating a head "matters" when it costs at least this much exact match (10 points).
MATTERS = 0.10
# A head "carries" the task when ablating it loses at least this share of the accuracy.
DOMINATES = 0.5
# A direct logit contribution counts as "little" below this share of the largest one.
SMALL_DIRECT = 0.10
# A component is named as a writer of the answer when it writes at least this share of the
# largest positive direct contribution (at most MAX_WRITERS of them).
WRITER_SHARE = 0.25
MAX_WRITERS = 3
# The stage where the answer "appears": the lens reaches this share of its final accuracy.
READABLE = 0.9
MAX_SENTENCE_HEADS = 4  # heads described one by one in plain words

# The head scores, in table order. The three head detectors run twice: on repeated random
# tokens (the standard probe) and, as NAME_task, on the task's own held-out sequences.
DETECTORS = ("previous_token", "duplicate_token", "induction")
ROLES = (*DETECTORS, *(f"{name}_task" for name in DETECTORS), "source")

Head = tuple[int, int]  # (layer, head)


@dataclass(frozen=True)
class Findings:
    """Every measurement the report is written from, as plain numbers.

    Frozen: ``measure`` builds it whole, and every part of the report reads the same
    numbers (nothing fills in a field later). Per-head values are nested lists
    [layer][head]. ``head_scores`` has one such grid per name in ROLES (a NaN is a score
    that could not be measured). Logit-lens lists have n_layer + 1 entries: the
    embeddings, then the residual stream after each block.

    A new section's numbers go here as a new field with a default (so made-up findings
    in the tests need not name it), measured in ``gptdecoder.lab.explain.measure``.
    """

    task: str  # "sort"
    task_params: dict
    model: str  # the model's description, e.g. "trained run /tmp/sortrun"
    n_layer: int
    n_head: int
    examples: int  # held-out prompts scored
    accuracy: float  # held-out exact match, no ablation
    ablation: list[list[float]]  # exact match with that one head zero-ablated
    head_scores: dict[str, list[list[float]]]
    probe: dict  # how the repeated random tokens were drawn: vocab_size, batch, half_len, seed
    lens_accuracy: list[float]
    lens_mean_rank: list[float]
    # heads [[...]], mlps [...], attn_bias [...], embed; optionally ln_final_bias and total (the mean margin)
    attribution: dict
    example: str = ""  # the held-out example the attention maps show, as text
    map_heads: list[Head] = field(default_factory=list)  # from heads_to_show
    threshold: float = ROLE_THRESHOLD
    # each score of a head that attends uniformly to every position it may see (same inputs)
    chance: dict[str, float] = field(default_factory=dict)
    # role -> exact match with all heads of that role zero-ablated at once (roles of 2+ heads)
    group_ablation: dict[str, float] = field(default_factory=dict)
    # the circuit (gptdecoder.lab.circuits.Circuit.to_dict()); None: not measured (--no-circuit);
    # {"skipped": why} when the task gave no clean/corrupted pairs
    circuit: Optional[dict] = None
    # what ``accuracy`` and ``ablation`` measure: a task's held-out exact match, or for a text
    # model the next-token accuracy on windows of text (``measure_text``)
    metric: str = "exact match"
    examples_are: str = ""  # what the examples are, e.g. "windows of validation text"; "": held-out task prompts
    # a compiled program's compiled.json (gptdecoder.tracr.compiled_info): what the compiler
    # placed in each block and its circuit; None for a trained model
    compiled: Optional[dict] = None

    def roles(self) -> list[dict]:
        """``head_roles`` of these findings."""
        return head_roles(self.head_scores, self.threshold, self.chance)

    def ablation_rows(self) -> list[dict]:
        """``gptdecoder.lab.ablation.ablation_rows`` of these findings: most harmful head first."""
        return ablation_rows(self.accuracy, self.ablation)


def head_name(layer: int, head: int) -> str:
    """'L0H2': layer 0, head 2."""
    return f"L{layer}H{head}"


# -- roles -----------------------------------------------------------------------------------


def head_roles(head_scores: Mapping[str, Sequence[Sequence[float]]], threshold: float = ROLE_THRESHOLD,
               chance: Optional[Mapping[str, float]] = None) -> list[dict]:
    """Each head's scores and role, in layer-then-head order.

    A score qualifies when it is at least ``threshold`` and at least CHANCE_MARGIN above
    ``chance[name]`` (what uniform attention scores; no such test for a name without a
    chance level). The role is the name of the highest qualifying score, else "unclear";
    ``score`` is the role's score, or for "unclear" the highest score (``best`` names
    it), and ``also`` lists the other qualifying roles, best first (an induction head
    on a recall task is also the head that reads the answer's source, for instance).
    NaN scores (not measurable for this task) never qualify.
    """
    chance = chance or {}
    names = [name for name in ROLES if name in head_scores] + [n for n in head_scores if n not in ROLES]
    grid = head_scores[names[0]]
    rows = []
    for layer in range(len(grid)):
        for head in range(len(grid[layer])):
            scores = {name: float(head_scores[name][layer][head]) for name in names}
            measured = sorted((n for n in names if not math.isnan(scores[n])), key=lambda n: -scores[n])
            qualified = [n for n in measured if qualifies(scores[n], threshold, chance.get(n))]
            role = qualified[0] if qualified else "unclear"
            best = qualified[0] if qualified else (measured[0] if measured else None)
            rows.append({"layer": layer, "head": head, **scores, "role": role, "best": best,
                         "score": scores[best] if best else float("nan"), "also": qualified[1:]})
    return rows


def qualifies(score: float, threshold: float, chance: Optional[float] = None) -> bool:
    """Whether a head score is high enough to name a role: the threshold, and CHANCE_MARGIN above chance."""
    return score >= threshold and (chance is None or math.isnan(chance) or score >= chance + CHANCE_MARGIN)


def role_cells(findings: Findings) -> dict[str, list[list[bool]]]:
    """For each score name, [layer][head] True where that score is the head's role (for the figure)."""
    grid = {name: [[False] * findings.n_head for _ in range(findings.n_layer)] for name in findings.head_scores}
    for row in findings.roles():
        if row["role"] in grid:
            grid[row["role"]][row["layer"]][row["head"]] = True
    return grid


def role_groups(roles: Sequence[dict]) -> dict[str, list[Head]]:
    """The heads of each role (not "unclear"), strongest role first; a role's heads in layer order."""
    groups: dict[str, list[dict]] = {}
    for row in roles:
        if row["role"] != "unclear":
            groups.setdefault(row["role"], []).append(row)
    order = sorted(groups, key=lambda name: -max(r["score"] for r in groups[name]))
    return {name: [(r["layer"], r["head"]) for r in groups[name]] for name in order}


# -- which heads matter --------------------------------------------------------------------------


def carries(accuracy: float, drop: float) -> bool:
    """Whether a head whose ablation costs ``drop`` carries the task: it loses at least DOMINATES of it."""
    return accuracy > 0 and drop >= DOMINATES * accuracy


def important_heads(ranking: Sequence[dict]) -> list[dict]:
    """The ablation rows (``ablation_rows``, most harmful first) of the heads that matter."""
    return [r for r in ranking if r["drop"] >= MATTERS]


def described_heads(ranking: Sequence[dict]) -> list[dict]:
    """The ablation rows of the heads plain words describes one by one: those that matter, worst first."""
    return important_heads(ranking)[:MAX_SENTENCE_HEADS]


def quiet_role_groups(ranking: Sequence[dict], roles: Sequence[dict]) -> dict[str, list[Head]]:
    """Per role, its heads that are not described one by one (the ones ablation did not single out).

    These are the groups plain words describes together; when one holds several heads,
    ``Findings.group_ablation`` says what zero-ablating all of them at once costs -- a
    role shared by many heads can survive the loss of any single one.
    """
    described = {(r["layer"], r["head"]) for r in described_heads(ranking)}
    groups = {role: [h for h in heads if h not in described] for role, heads in role_groups(roles).items()}
    return {role: heads for role, heads in groups.items() if heads}


def heads_to_show(ranking: Sequence[dict], roles: Sequence[dict], n: int = 4) -> list[Head]:
    """The heads whose attention maps the report draws: most harmful to ablate first,
    then (when ablation cannot tell them apart) the most clearly specialised."""
    strength = {(r["layer"], r["head"]): -1.0 if r["role"] == "unclear" else r["score"] for r in roles}
    ranked = sorted(ranking, key=lambda r: (-r["drop"], -strength[(r["layer"], r["head"])], r["layer"], r["head"]))
    return [(r["layer"], r["head"]) for r in ranked[:n]]


# -- where the answer appears, and who writes it ------------------------------------------------


def attribution_components(attribution: Mapping) -> list[dict]:
    """Every component's direct contribution, largest first: heads, attention biases, MLPs, embeddings."""
    components = [{"name": head_name(layer, head), "kind": "head", "layer": layer, "head": head, "value": float(v)}
                  for layer, row in enumerate(attribution["heads"]) for head, v in enumerate(row)]
    components += [{"name": f"MLP {layer}", "kind": "mlp", "layer": layer, "value": float(v)}
                   for layer, v in enumerate(attribution["mlps"])]
    components += [{"name": f"attention bias {layer}", "kind": "attn_bias", "layer": layer, "value": float(v)}
                   for layer, v in enumerate(attribution.get("attn_bias", []))]
    if attribution.get("embed") is not None:
        components.append({"name": "embeddings", "kind": "embed", "value": float(attribution["embed"])})
    if attribution.get("ln_final_bias") is not None:
        components.append({"name": "final layer norm bias", "kind": "ln_final_bias",
                           "value": float(attribution["ln_final_bias"])})
    return sorted(components, key=lambda c: -c["value"])


def attribution_total(attribution: Mapping) -> float:
    """The mean margin the contributions add up to: the measured one when given, else their sum."""
    if attribution.get("total") is not None:
        return float(attribution["total"])
    return sum(c["value"] for c in attribution_components(attribution))


def direct_contributions(attribution: Mapping) -> dict[str, float]:
    """Component name -> direct contribution, largest first."""
    return {c["name"]: c["value"] for c in attribution_components(attribution)}


def writes_little(direct: Mapping[str, float], name: str) -> bool:
    """Whether component ``name`` writes less than SMALL_DIRECT of the largest direct contribution
    (either sign): what it does reaches the answer through later layers, if at all."""
    top = max(abs(v) for v in direct.values())
    return name in direct and abs(direct[name]) < SMALL_DIRECT * top


def main_writers(direct: Mapping[str, float]) -> tuple[list[tuple[str, float]], int]:
    """(the components named as writing the answer, how many write toward it at all).

    The named ones are the largest positive contributions, at most MAX_WRITERS, each at
    least WRITER_SHARE of the largest: ([], 0) when nothing writes toward the answer.
    """
    positive = sorted(((n, v) for n, v in direct.items() if v > 0), key=lambda nv: -nv[1])
    if not positive:
        return [], 0
    top = positive[0][1]
    return [(n, v) for n, v in positive[:MAX_WRITERS] if v >= WRITER_SHARE * top], len(positive)


def layers_outwriting(attribution: Mapping, top: float) -> list[tuple[int, list[float]]]:
    """The layers whose heads together write more than ``top`` (the largest single contribution)
    though each of them writes less: many small heads can outweigh one big component."""
    return [(layer, heads) for layer, heads in enumerate(attribution["heads"])
            if len(heads) > 1 and sum(heads) > top and max(heads) < top]


def readable_stage(lens_accuracy: Sequence[float]) -> Optional[int]:
    """The first stage whose lens accuracy reaches READABLE of the last stage's; None when
    even the last stage is below 50% (the answer never clearly appears)."""
    if not lens_accuracy or lens_accuracy[-1] < 0.5:
        return None
    return next(i for i, a in enumerate(lens_accuracy) if a >= READABLE * lens_accuracy[-1])
