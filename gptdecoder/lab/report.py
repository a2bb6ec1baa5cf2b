"""The text of the explain report: numbers in, sentences, markdown and HTML out.

``python -m gptdecoder explain`` measures a model (held-out accuracy, head ablation,
head scores, logit lens, direct logit attribution) and hands the numbers to this module
as one ``Findings``; everything said about them is decided here, by pure functions, so
every sentence can be tested on made-up numbers:

* ``head_roles`` -- each head's role: its highest score that reaches a threshold and
  beats uniform attention clearly, else "unclear";
* ``plain_words`` -- the "In plain words" sentences, each quoting the number it rests
  on, and none claiming more than those numbers show;
* ``report_dict`` -- every number the report states, for report.json;
* ``report_blocks`` -> ``to_markdown`` / ``to_html`` -- the report itself, built once as
  a list of blocks (headings, paragraphs, tables, figures) and written in both formats.
  The HTML is one self-contained page: inline CSS, figures as data: URLs, no script.

The numbers are plain Python floats and lists (no tensors), so this module needs
neither torch nor matplotlib.
"""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

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
# The stage where the answer "appears": the lens reaches this share of its final accuracy.
READABLE = 0.9
MAX_TABLE_ROWS = 24  # longer head tables are cut (report.json keeps every head)
MAX_SENTENCE_HEADS = 4  # heads described one by one in plain words

# The head scores, in table order. The three head detectors run twice: on repeated random
# tokens (the standard probe) and, as NAME_task, on the task's own held-out sequences.
DETECTORS = ("previous_token", "duplicate_token", "induction")
ROLES = (*DETECTORS, *(f"{name}_task" for name in DETECTORS), "source")
_HEAD_KINDS = {"previous_token": "previous-token head", "duplicate_token": "duplicate-token head",
               "induction": "induction head"}
_TARGETS = {"previous_token": "the previous token", "duplicate_token": "earlier copies of the current token",
            "induction": "the token right after an earlier copy of the current token"}
ROLE_NAMES = {
    **_HEAD_KINDS,
    **{f"{name}_task": f"{kind} on the task's own sequences" for name, kind in _HEAD_KINDS.items()},
    "source": "source reader",
}
# column labels of the head-score table, and what a sentence calls each score
SCORE_LABELS = {**{name: name.replace("_", " ") for name in DETECTORS},
                **{f"{name}_task": f"{name.replace('_', ' ')} (task)" for name in DETECTORS}, "source": "source"}
SCORE_PHRASES = {**{name: f"{kind[: -len(' head')]} score" for name, kind in _HEAD_KINDS.items()},
                 **{f"{name}_task": f"{kind[: -len(' head')]} score on the task"
                    for name, kind in _HEAD_KINDS.items()},
                 "source": "source score"}
# what a score of x means, completed by "x of its attention ..."
ROLE_MEANINGS = {
    **{name: f"on repeated random tokens goes to {target}" for name, target in _TARGETS.items()},
    **{f"{name}_task": f"on the task's own sequences goes to {target}" for name, target in _TARGETS.items()},
    "source": "from answer positions lands on the prompt tokens that answer needs",
}


@dataclass
class Findings:
    """Every measurement the report is written from, as plain numbers.

    Per-head values are nested lists [layer][head]. ``head_scores`` has one such grid
    per name in ROLES (a NaN is a score that could not be measured). Logit-lens lists
    have n_layer + 1 entries: the embeddings, then the residual stream after each block.
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
    map_heads: list[tuple[int, int]] = field(default_factory=list)
    threshold: float = ROLE_THRESHOLD
    # each score of a head that attends uniformly to every position it may see (same inputs)
    chance: dict[str, float] = field(default_factory=dict)
    # role -> exact match with all heads of that role zero-ablated at once (roles of 2+ heads)
    group_ablation: dict[str, float] = field(default_factory=dict)

    def roles(self) -> list[dict]:
        """``head_roles`` of these findings."""
        return head_roles(self.head_scores, self.threshold, self.chance)


# -- formatting -------------------------------------------------------------------------


def head_name(layer: int, head: int) -> str:
    """'L0H2': layer 0, head 2."""
    return f"L{layer}H{head}"


def pct(x: float) -> str:
    """A share as a percentage that reads 0% or 100% only when it is exactly that.

    0.996 is "99.6%", not "100%": a report that says a model is perfect must mean it.
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    value = 100 * x
    if value in (0.0, 100.0) or 1 <= value <= 99:
        return f"{value:.0f}%"
    text = f"{value:.1f}%"
    if text in ("0.0%", "-0.0%"):
        return "<0.1%" if value > 0 else ">-0.1%"
    return ">99.9%" if text == "100.0%" and value < 100 else text


def points(drop: float) -> str:
    """A difference of two shares, in percentage points: '71 points', '1 point', '0.6 points'."""
    value = 100 * drop
    text = f"{value:.0f}" if abs(value) >= 1 or value == 0 else f"{value:.1f}"
    return f"{text} point" + ("" if text in ("1", "-1") else "s")


def span(values: Sequence[float]) -> str:
    """Several shares as one range, '90-96%', or one value when they round alike: '96%'."""
    low, high = pct(min(values)), pct(max(values))
    return high if low == high else f"{low.rstrip('%')}-{high}"


def head_list(heads: Sequence[tuple[int, int]]) -> str:
    """Heads in few words: three or more consecutive heads of a layer are a range ('L0H2 and L1H0-7')."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in sorted(heads):
        by_layer.setdefault(layer, []).append(head)
    names = []
    for layer, layer_heads in by_layer.items():
        runs = [[layer_heads[0]]]
        for head in layer_heads[1:]:
            if head == runs[-1][-1] + 1:
                runs[-1].append(head)
            else:
                runs.append([head])
        for run in runs:
            names += [f"L{layer}H{run[0]}-{run[-1]}"] if len(run) >= 3 else [head_name(layer, h) for h in run]
    return _join(names)


def signed(x: float) -> str:
    """A logit contribution with its sign: '+5.21', '-0.37'."""
    return f"{x:+.2f}"


def score_text(x: float) -> str:
    """A head score for a table cell: '0.71', or '-' when it could not be measured."""
    return "-" if x is None or math.isnan(x) else f"{x:.2f}"


# -- ranking heads -------------------------------------------------------------------------


def ablation_ranking(accuracy: float, ablation: Sequence[Sequence[float]]) -> list[dict]:
    """One row per head, most harmful zero-ablation first: layer, head, accuracy, drop."""
    # rounded: a drop of -1e-8 (float noise in equal accuracies) must read "0 points", not "-0.0 points"
    rows = [{"layer": layer, "head": head, "accuracy": float(acc), "drop": round(float(accuracy - acc), 6) + 0.0}
            for layer, row in enumerate(ablation) for head, acc in enumerate(row)]
    return sorted(rows, key=lambda r: (-r["drop"], r["layer"], r["head"]))


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


def lens_labels(n_stages: int) -> list[str]:
    """'embeddings', 'block 0', ..., one per logit-lens stage."""
    return ["embeddings"] + [f"block {i}" for i in range(n_stages - 1)]


def readable_stage(lens_accuracy: Sequence[float]) -> Optional[int]:
    """The first stage whose lens accuracy reaches READABLE of the last stage's; None when
    even the last stage is below 50% (the answer never clearly appears)."""
    if not lens_accuracy or lens_accuracy[-1] < 0.5:
        return None
    return next(i for i, a in enumerate(lens_accuracy) if a >= READABLE * lens_accuracy[-1])


def heads_to_show(findings: Findings, n: int = 4) -> list[tuple[int, int]]:
    """The heads whose attention maps the report draws: most harmful to ablate first,
    then (when ablation cannot tell them apart) the most clearly specialised."""
    roles = {(r["layer"], r["head"]): -1.0 if r["role"] == "unclear" else r["score"] for r in findings.roles()}
    ranked = ablation_ranking(findings.accuracy, findings.ablation)
    ranked.sort(key=lambda r: (-r["drop"], -roles[(r["layer"], r["head"])], r["layer"], r["head"]))
    return [(r["layer"], r["head"]) for r in ranked[:n]]


def head_caption(findings: Findings, layer: int, head: int) -> str:
    """A title for one head's attention map, one fact a line: 'L0H2', 'ablating it: -71 points', 'source 0.71'."""
    drop = findings.accuracy - findings.ablation[layer][head]
    role = next(r for r in findings.roles() if (r["layer"], r["head"]) == (layer, head))
    named = "role unclear" if role["role"] == "unclear" else \
        f"{SCORE_LABELS.get(role['role'], role['role'])} {score_text(role['score'])}"
    return f"{head_name(layer, head)}\nablating it: {points(-drop)}\n{named}"


# -- in plain words ---------------------------------------------------------------------------


def a_or_an(noun: str) -> str:
    """'an induction head', 'a source reader'."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def role_clause(role: Union[dict, Sequence[dict]], threshold: float = ROLE_THRESHOLD,
                chance: Optional[Mapping[str, float]] = None) -> str:
    """What a head's role says, quoting its score and what uniform attention would score.

    ``role`` is one row of ``head_roles`` ('71% of its attention from answer positions
    lands on ... (uniform attention: 25%)'), or several rows sharing a role, whose scores
    are then given as a range ('90-96% of their attention ...'). A second role they all
    share is named with its score; a role seen only on the task's sequences says that the
    random-token probe does not show it; an unclear head's highest score is quoted so the
    reader sees how far it is from a role.
    """
    rows = [role] if isinstance(role, Mapping) else list(role)
    first, many = rows[0], len(rows) > 1
    chance = chance or {}

    def scores(name: str) -> str:
        return span([r[name] for r in rows])

    def uniform(name: str, words: str, end: str = "") -> str:
        level = chance.get(name)
        return "" if level is None or math.isnan(level) else f"{words}{pct(level)}{end}"

    def not_on_random_tokens(name: str) -> str:
        """', but not on repeated random tokens (induction 15%)' when only the task shows the role."""
        probe = name[: -len("_task")] if name.endswith("_task") else None
        if probe is None or any(probe not in r or math.isnan(r[probe]) for r in rows):
            return ""
        if any(qualifies(r[probe], threshold, chance.get(probe)) for r in rows):
            return ""
        return f", but not on repeated random tokens ({scores(probe)}{uniform(probe, ', uniform ')})"

    if first["role"] == "unclear":
        if first["best"] is None:
            return "none of its scores could be measured, so its role is unclear"
        rule = f"{pct(threshold)} and {points(CHANCE_MARGIN)} above uniform attention" if chance else pct(threshold)
        best = first["best"]
        return (f"none of its scores reaches {rule}, so its role is unclear (highest: its "
                f"{SCORE_PHRASES.get(best, best)}, {pct(first['score'])}"
                f"{uniform(best, ', where uniform attention gives ')})")
    name = first["role"]
    clause = (f"{scores(name)} of {'their' if many else 'its'} attention {ROLE_MEANINGS.get(name, 'fits ' + name)}"
              f"{uniform(name, ' (uniform attention: ', ')')}{not_on_random_tokens(name)}")
    shared = [n for n in first["also"] if all(n in r["also"] for r in rows)]
    if shared:
        extra = shared[0]
        clause += (f"; {'each' if many else 'it'} is also {a_or_an(ROLE_NAMES.get(extra, extra))} "
                   f"({scores(extra)}{uniform(extra, ', uniform ')}){not_on_random_tokens(extra)}")
    return clause


def role_cells(findings: Findings) -> dict[str, list[list[bool]]]:
    """For each score name, [layer][head] True where that score is the head's role (for the figure)."""
    grid = {name: [[False] * findings.n_head for _ in range(findings.n_layer)] for name in findings.head_scores}
    for row in findings.roles():
        if row["role"] in grid:
            grid[row["role"]][row["layer"]][row["head"]] = True
    return grid


def role_groups(findings: Findings) -> dict[str, list[tuple[int, int]]]:
    """The heads of each role (not "unclear"), strongest role first; a role's heads in layer order."""
    groups: dict[str, list[dict]] = {}
    for row in findings.roles():
        if row["role"] != "unclear":
            groups.setdefault(row["role"], []).append(row)
    order = sorted(groups, key=lambda name: -max(r["score"] for r in groups[name]))
    return {name: [(r["layer"], r["head"]) for r in groups[name]] for name in order}


def described_heads(findings: Findings) -> list[dict]:
    """The ablation rows of the heads plain words describes one by one: those that matter, worst first."""
    important = [r for r in ablation_ranking(findings.accuracy, findings.ablation) if r["drop"] >= MATTERS]
    return important[:MAX_SENTENCE_HEADS]


def quiet_role_groups(findings: Findings) -> dict[str, list[tuple[int, int]]]:
    """Per role, its heads that are not described one by one (the ones ablation did not single out).

    These are the groups plain words describes together; when one holds several heads,
    ``Findings.group_ablation`` says what zero-ablating all of them at once costs -- a
    role shared by many heads can survive the loss of any single one.
    """
    described = {(r["layer"], r["head"]) for r in described_heads(findings)}
    groups = {role: [h for h in heads if h not in described] for role, heads in role_groups(findings).items()}
    return {role: heads for role, heads in groups.items() if heads}


def plural(role: str) -> str:
    """'source readers', 'induction heads on the task's own sequences'."""
    words = ROLE_NAMES.get(role, role)
    for noun in ("head", "reader"):
        if f"{noun} " in words + " ":
            return (words + " ").replace(f"{noun} ", f"{noun}s ", 1).strip()
    return words


def ablation_cost(drop: float) -> str:
    """'zero-ablating it costs 12 points', '... costs only 0.6 points', '... does not lower exact match'."""
    if drop >= MATTERS:
        return f"zero-ablating it costs {points(drop)}"
    if drop > 0:
        return f"zero-ablating it costs only {points(drop)}"
    return "zero-ablating it does not lower exact match"


def plain_words(findings: Findings) -> list[str]:
    """The report's conclusions as sentences, each quoting the number it rests on.

    What is said follows fixed rules on the numbers (thresholds at the top of this
    module), so a sentence appears only when its numbers support it: a head "carries"
    the task only if ablating it loses at least half the accuracy, a role is named only
    when its score clears the threshold and uniform attention, and when no head matters
    on its own the report says so instead of promoting the least unimportant one.
    """
    base, task, threshold, chance = findings.accuracy, findings.task, findings.threshold, findings.chance
    sentences = [f"The model gets {pct(base)} of {findings.examples} held-out {task} prompts exactly right."]
    if base < 0.5:
        sentences.append(f"At {pct(base)} it has not learned the task, so what follows describes an unfinished "
                         f"model rather than a solution.")

    roles = {(r["layer"], r["head"]): r for r in findings.roles()}
    ranking = ablation_ranking(base, findings.ablation)
    important = [r for r in ranking if r["drop"] >= MATTERS]
    described = described_heads(findings)

    # 1. the heads the task depends on, and what each one does
    for row in described:
        name = head_name(row["layer"], row["head"])
        carries = base > 0 and row["drop"] >= DOMINATES * base
        verb = f"carries the {task} task" if carries else "matters"
        role = roles[(row["layer"], row["head"])]
        sentences.append(f"{name} {verb}: zero-ablating it drops exact match from {pct(base)} to "
                         f"{pct(row['accuracy'])}; {role_clause(role, threshold, chance)}.")
    if len(important) > len(described):
        rest = len(important) - len(described)
        sentences.append(f"{rest} more head{'s each cost' if rest > 1 else ' costs'} at least {points(MATTERS)} "
                         f"when zero-ablated (all in the ablation table).")

    # 2. ... or that it depends on no single one
    worst = ranking[0] if ranking else None
    if worst is not None and not (base > 0 and worst["drop"] >= DOMINATES * base):
        name = head_name(worst["layer"], worst["head"])
        if not important:
            sentences.append(f"No single head matters on its own: zero-ablating any one head lowers exact match by "
                             f"at most {points(max(worst['drop'], 0.0))} ({name}: {pct(base)} to "
                             f"{pct(worst['accuracy'])}), so the task does not hinge on any one head.")
        else:
            sentences.append(f"No single head carries the task: the largest loss from zero-ablating one head is "
                             f"{points(worst['drop'])} ({name}: {pct(base)} to {pct(worst['accuracy'])}).")

    # 3. important heads that write little directly: their effect is mediated by later layers
    sentences += _indirect_sentences(findings, described)

    # 4. the heads with a clear role that ablation did not single out, one sentence per role,
    #    with what removing all of them at once costs (when that was measured)
    drops = {(r["layer"], r["head"]): r["drop"] for r in ranking}
    for role, heads in quiet_role_groups(findings).items():
        if len(heads) == 1:
            sentences.append(f"{head_name(*heads[0])} is {a_or_an(ROLE_NAMES.get(role, role))}: "
                             f"{role_clause(roles[heads[0]], threshold, chance)}; {ablation_cost(drops[heads[0]])}.")
            continue
        worst_alone = max(drops[h] for h in heads)
        alone = (f"zero-ablating any one of them costs at most {points(worst_alone)}" if worst_alone > 0
                 else "zero-ablating any one of them does not lower exact match")
        together = findings.group_ablation.get(role)
        if together is not None:
            every = "both" if len(heads) == 2 else f"all {len(heads)}"
            alone += f", {every} together {points(base - together)} ({pct(base)} to {pct(together)})"
        sentences.append(f"{head_list(heads)} are {plural(role)}: "
                         f"{role_clause([roles[h] for h in heads], threshold, chance)}; {alone}.")
    if not any(r["role"] != "unclear" for r in roles.values()):
        rule = f"{pct(threshold)} and {points(CHANCE_MARGIN)} above uniform attention" if chance else pct(threshold)
        sentences.append(f"No head has a score that reaches {rule}: none is clearly a previous-token, "
                         f"duplicate-token, induction or source head, on random tokens or on the task.")

    # 5. where the answer appears, and who writes it
    sentences += _lens_sentences(findings)
    sentences += _writer_sentences(findings)
    return sentences


def _indirect_sentences(findings: Findings, important: Sequence[dict]) -> list[str]:
    """One sentence for the important heads whose direct contribution is small next to the largest one."""
    direct = {c["name"]: c["value"] for c in attribution_components(findings.attribution)}
    if not direct:
        return []
    top = max(direct, key=lambda n: abs(direct[n]))
    small = [(head_name(r["layer"], r["head"]), direct.get(head_name(r["layer"], r["head"]))) for r in important]
    small = [(n, v) for n, v in small if v is not None and abs(v) < SMALL_DIRECT * abs(direct[top])]
    if not small:
        return []
    names = _join([f"{n} ({signed(v)})" for n, v in small])
    one = len(small) == 1
    return [f"{names} write{'s' if one else ''} little to the answer's logit directly, against {signed(direct[top])} "
            f"for {top}, so {'its' if one else 'their'} effect goes through later layers."]


def _lens_sentences(findings: Findings) -> list[str]:
    accuracy, rank = findings.lens_accuracy, findings.lens_mean_rank
    if not accuracy:
        return []
    labels = lens_labels(len(accuracy))
    stage = readable_stage(accuracy)
    if stage is None:
        return [f"Even after the last block the logit lens finds the right answer token on top only "
                f"{pct(accuracy[-1])} of the time (mean rank {rank[-1]:.2f})."]
    where = "straight from the embeddings" if stage == 0 else f"after {labels[stage]}"
    sentence = (f"The answer becomes readable {where}: read through the final layer norm and unembedding, the "
                f"residual stream there puts the right answer token on top {pct(accuracy[stage])} of the time "
                f"(mean rank {rank[stage]:.2f})")
    if stage > 0:
        before = "from the embeddings" if stage == 1 else f"after {labels[stage - 1]}"
        sentence += f", against {pct(accuracy[stage - 1])} {before}"
    return [sentence + "."]


def _writer_sentences(findings: Findings) -> list[str]:
    direct = {c["name"]: c["value"] for c in attribution_components(findings.attribution)}
    positive = sorted(((n, v) for n, v in direct.items() if v > 0), key=lambda nv: -nv[1])
    if not positive:
        return ["No component writes toward the correct answer directly (every direct contribution is <= 0)."]
    top = positive[0][1]
    named = [(n, v) for n, v in positive[:3] if v >= 0.25 * top]
    listed = _join([f"{n} ({signed(v)})" for n, v in named])
    most = "mostly " if len(named) < len(positive) else ""
    sentences = [f"The correct answer's logit (above the mean logit) is written directly {most}by {listed}; all "
                 f"direct contributions together add up to {signed(attribution_total(findings.attribution))}."]
    # many small heads can outweigh the largest single component: say so when a layer's heads do
    for layer, heads in enumerate(findings.attribution["heads"]):
        together = sum(heads)
        if len(heads) > 1 and together > top and max(heads) < top:
            sentences.append(f"Together the {len(heads)} heads of layer {layer} write {signed(together)} directly, "
                             f"more than any single component.")
    return sentences


def _join(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# -- report.json --------------------------------------------------------------------------------


def json_ready(value):
    """``value`` with NaN and infinities as None and tuples as lists: strict JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def report_dict(findings: Findings) -> dict:
    """Everything the report states, by section, as JSON-ready values (NaN becomes null)."""
    roles = findings.roles()
    components = attribution_components(findings.attribution)
    return json_ready({
        "task": {"name": findings.task, "params": findings.task_params},
        "model": {"description": findings.model, "n_layer": findings.n_layer, "n_head": findings.n_head},
        "accuracy": {"examples": findings.examples, "exact_match": findings.accuracy},
        "ablation": {"mode": "zero", "baseline": findings.accuracy,
                     "heads": ablation_ranking(findings.accuracy, findings.ablation),
                     "matters_at": MATTERS, "dominates_at": DOMINATES,
                     "roles_together": [{"role": role, "heads": [list(h) for h in heads],
                                         "accuracy": findings.group_ablation[role]}
                                        for role, heads in quiet_role_groups(findings).items()
                                        if role in findings.group_ablation]},
        "roles": {"threshold": findings.threshold, "chance_margin": CHANCE_MARGIN, "chance": findings.chance,
                  "probe": findings.probe, "heads": roles},
        "logit_lens": {"stages": lens_labels(len(findings.lens_accuracy)), "accuracy": findings.lens_accuracy,
                       "mean_rank": findings.lens_mean_rank, "readable_stage": readable_stage(findings.lens_accuracy)},
        "attribution": {**findings.attribution, "ranked": components,
                        "total": attribution_total(findings.attribution)},
        "attention_maps": {"example": findings.example, "heads": [list(h) for h in findings.map_heads]},
        "plain_words": plain_words(findings),
    })


# -- the report as blocks, then markdown or HTML ------------------------------------------------

Block = tuple[str, Union[str, dict]]  # ("h1" | "h2" | "p" | "bullets" | "table" | "figure", payload)

FIGURES = {  # file name -> alt text
    "ablation.png": "held-out exact match with each head zero-ablated (layer x head)",
    "head_scores.png": "head scores: previous token, duplicate token, induction, source (layer x head)",
    "logit_lens.png": "logit lens: accuracy and mean rank of the correct token after each block",
    "attribution.png": "direct logit attribution per head, attention bias and MLP",
    "attention_maps.png": "attention patterns of the most important heads on one held-out example",
}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], note: str = "") -> Block:
    return ("table", {"header": list(header), "rows": [list(r) for r in rows], "note": note})


def _cut(rows: list, what: str) -> tuple[list, str]:
    if len(rows) <= MAX_TABLE_ROWS:
        return rows, ""
    return rows[:MAX_TABLE_ROWS], f"... and {len(rows) - MAX_TABLE_ROWS} more {what} (all in report.json)"


def _role_cell(role: dict) -> str:
    """'source 0.96', or 'unclear'."""
    if role["role"] == "unclear":
        return "unclear"
    return f"{SCORE_LABELS.get(role['role'], role['role'])} {score_text(role['score'])}"


def report_blocks(findings: Findings) -> list[Block]:
    """The whole report, section by section, as format-neutral blocks."""
    params = ", ".join(f"{k}={v}" for k, v in sorted(findings.task_params.items()) if v is not None)
    threshold = findings.threshold
    blocks: list[Block] = [
        ("h1", f"What the model does on {findings.task}"),
        ("p", f"Model: {findings.model} ({findings.n_layer} layers x {findings.n_head} heads). "
              f"Task: {findings.task}" + (f" ({params})." if params else ".")),
        ("h2", "1. Accuracy"),
        ("p", f"Exact match on {findings.examples} held-out prompts (never trained on): {pct(findings.accuracy)}. "
              f"An example counts only if the model's top prediction is right at every position the task scores "
              f"(the answer, and in multi-query recall the earlier queries' values too), with the correct tokens "
              f"before it fed in."),
        ("h2", "2. Which heads matter"),
        ("p", f"Each head in turn is zero-ablated (its output replaced by zeros) and the held-out exact match "
              f"measured again. Most harmful first; a head matters here when it costs at least {points(MATTERS)}."),
    ]
    ranking = ablation_ranking(findings.accuracy, findings.ablation)
    shown, note = _cut(ranking, "heads")
    blocks.append(_table(["head", "exact match", "drop"],
                         [[head_name(r["layer"], r["head"]), pct(r["accuracy"]), points(r["drop"])] for r in shown],
                         note))
    blocks.append(("figure", {"file": "ablation.png"}))

    probe = findings.probe
    blocks += [
        ("h2", "3. What they do"),
        ("p", f"Each score is a share of a head's attention; an ideal head of that kind scores 1. Previous "
              f"token, duplicate token and induction are measured on {probe.get('batch')} sequences of "
              f"{probe.get('half_len')} random tokens from the model's {probe.get('vocab_size')}-token "
              f"vocabulary, each repeated once: attention to the previous token, to earlier copies of the "
              f"current token, and to the token right after such a copy. The (task) columns measure the same on "
              f"the task's own held-out sequences, since a head may do induction in the task's format and not on "
              f"random tokens. Source is attention from each answer-predicting position to the prompt positions "
              f"holding what that answer token is computed from. The last row is what a head attending equally "
              f"to every position it may see would score. A head's role is its highest score that is at least "
              f"{score_text(threshold)} and at least {score_text(CHANCE_MARGIN)} above that row; else unclear."),
    ]
    roles = {(r["layer"], r["head"]): r for r in findings.roles()}
    names = [n for n in ROLES if n in findings.head_scores]
    role_rows = [roles[(r["layer"], r["head"])] for r in ranking]
    shown, note = _cut(role_rows, "heads")
    rows = [[head_name(r["layer"], r["head"]), *[score_text(r[n]) for n in names], _role_cell(r)] for r in shown]
    if findings.chance:
        rows.append(["uniform attention", *[score_text(findings.chance.get(n, float("nan"))) for n in names], ""])
    blocks.append(_table(["head", *[SCORE_LABELS.get(n, n) for n in names], "role"], rows, note))
    blocks.append(("figure", {"file": "head_scores.png"}))

    labels = lens_labels(len(findings.lens_accuracy))
    blocks += [
        ("h2", "4. Where the answer appears"),
        ("p", "The logit lens reads the residual stream after each block through the final layer norm and the "
              "unembedding, as if the model stopped there: how often is the correct answer token on top, and "
              "what is its mean rank (0 = on top)? Counted per scored token, so the last row can differ from the "
              "exact match of section 1."),
        _table(["residual stream after", "correct on top", "mean rank"],
               [[label, pct(a), f"{r:.2f}"] for label, a, r in
                zip(labels, findings.lens_accuracy, findings.lens_mean_rank)]),
        ("figure", {"file": "logit_lens.png"}),
        ("h2", "5. Who writes it"),
        ("p", f"Direct logit attribution: what each component adds, straight through the residual stream and the "
              f"final layer norm's scale, to the correct answer's logit minus the mean logit (averaged over the "
              f"answer tokens; together {signed(attribution_total(findings.attribution))}). Largest first; "
              f"components that act through later layers score low here even when they matter."),
    ]
    components = attribution_components(findings.attribution)
    shown, note = _cut(components, "components")
    blocks.append(_table(["component", "direct contribution"], [[c["name"], signed(c["value"])] for c in shown], note))
    blocks.append(("figure", {"file": "attribution.png"}))

    shown_heads = _join([head_name(*h) for h in findings.map_heads]) if findings.map_heads else "none"
    blocks += [
        ("h2", "6. Attention maps"),
        ("p", f"The first heads of section 2's ranking ({shown_heads}; ties broken by the strongest head score) on "
              f"one held-out example, {findings.example}. Row i is where position i looks; the dashed lines "
              f"separate prompt and answer."),
        ("figure", {"file": "attention_maps.png"}),
        ("h2", "7. In plain words"),
        ("bullets", plain_words(findings)),
    ]
    return blocks


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def to_markdown(blocks: Sequence[Block]) -> str:
    """The report as markdown; figures are links to the PNG files beside it."""
    out = []
    for kind, payload in blocks:
        if kind == "h1":
            out.append(f"# {payload}")
        elif kind == "h2":
            out.append(f"## {payload}")
        elif kind == "p":
            out.append(payload)
        elif kind == "bullets":
            out.append("\n".join(f"- {item}" for item in payload))
        elif kind == "table":
            lines = ["| " + " | ".join(_md_cell(h) for h in payload["header"]) + " |",
                     "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(payload["header"]))) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in payload["rows"]]
            if payload["note"]:
                lines += ["", payload["note"]]
            out.append("\n".join(lines))
        elif kind == "figure":
            out.append(f"![{FIGURES.get(payload['file'], payload['file'])}]({payload['file']})")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n\n".join(out) + "\n"


CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.6rem; }
td { text-align: right; font-variant-numeric: tabular-nums; } td:first-child, th:first-child { text-align: left; }
th { font-weight: 600; vertical-align: bottom; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
.note { color: #666; font-size: 0.85rem; }
"""


def to_html(blocks: Sequence[Block], images: Mapping[str, bytes], title: str = "explain report") -> str:
    """The report as one self-contained HTML page: inline CSS, each PNG embedded as a data: URL.

    ``images`` maps a figure's file name to its PNG bytes; a figure without bytes is
    left out rather than linked, so the page never refers to anything outside itself.
    """
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>"]
    for kind, payload in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{esc(payload)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{esc(payload)}</p>")
        elif kind == "bullets":
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in payload) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in payload["header"])
            body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in payload["rows"])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            if payload["note"]:
                out.append(f'<p class="note">{esc(payload["note"])}</p>')
        elif kind == "figure":
            data = images.get(payload["file"])
            if data is not None:
                encoded = base64.b64encode(data).decode("ascii")
                alt = esc(FIGURES.get(payload["file"], payload["file"]))
                out.append(f'<img alt="{alt}" src="data:image/png;base64,{encoded}">')
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
