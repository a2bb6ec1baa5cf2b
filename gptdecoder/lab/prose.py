"""The explain report's words: numbers as text, and the sentences of "In plain words".

Every sentence here states a decision made in ``gptdecoder.lab.roles`` (which head has
which role, which heads matter, where the answer appears) and quotes the number it
rests on; nothing here decides anything by a threshold of its own, so no sentence can
claim more than the numbers show. Pure functions of plain numbers: each sentence is
tested on made-up ``Findings``.

* numbers as text: ``pct``, ``points``, ``span``, ``signed``, ``score_text``, and heads
  in few words: ``head_list``;
* what the scores are called: ``ROLE_NAMES``, ``SCORE_LABELS``, ``SCORE_PHRASES``,
  ``ROLE_MEANINGS``, ``lens_labels``;
* ``plain_words`` -- the report's conclusions, one part per topic (``PLAIN_WORDS``);
  a new section's sentences are one more function in that tuple.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence, Union

from gptdecoder.lab.roles import (
    CHANCE_MARGIN, DETECTORS, MATTERS, ROLE_THRESHOLD, Findings, attribution_total, carries, described_heads,
    direct_contributions, head_name, important_heads, layers_outwriting, main_writers, quiet_role_groups,
    qualifies, readable_stage, writes_little,
)

if TYPE_CHECKING:
    from gptdecoder.lab.circuits import Circuit

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


# -- numbers as text ------------------------------------------------------------------------


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


def signed(x: float) -> str:
    """A logit contribution with its sign: '+5.21', '-0.37'."""
    return f"{x:+.2f}"


def score_text(x: float) -> str:
    """A head score for a table cell: '0.71', or '-' when it could not be measured."""
    return "-" if x is None or math.isnan(x) else f"{x:.2f}"


def join_words(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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
    return join_words(names)


def lens_labels(n_stages: int) -> list[str]:
    """'embeddings', 'block 0', ..., one per logit-lens stage."""
    return ["embeddings"] + [f"block {i}" for i in range(n_stages - 1)]


def a_or_an(noun: str) -> str:
    """'an induction head', 'a source reader'."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def plural(role: str) -> str:
    """'source readers', 'induction heads on the task's own sequences'."""
    words = ROLE_NAMES.get(role, role)
    for noun in ("head", "reader"):
        if f"{noun} " in words + " ":
            return (words + " ").replace(f"{noun} ", f"{noun}s ", 1).strip()
    return words


# -- what a head does -------------------------------------------------------------------------


def role_cell(role: dict, unclear: str = "unclear") -> str:
    """A head's role with its score, 'source 0.96', or ``unclear`` (a table cell, a figure title)."""
    if role["role"] == "unclear":
        return unclear
    return f"{SCORE_LABELS.get(role['role'], role['role'])} {score_text(role['score'])}"


def head_caption(findings: Findings, layer: int, head: int) -> str:
    """A title for one head's attention map, one fact a line: 'L0H2', 'ablating it: -71 points', 'source 0.71'."""
    drop = findings.accuracy - findings.ablation[layer][head]
    role = next(r for r in findings.roles() if (r["layer"], r["head"]) == (layer, head))
    return f"{head_name(layer, head)}\nablating it: {points(-drop)}\n{role_cell(role, 'role unclear')}"


def _role_rule(threshold: float, chance: Mapping[str, float]) -> str:
    """What a score must reach to name a role: '40% and 20 points above uniform attention'."""
    return f"{pct(threshold)} and {points(CHANCE_MARGIN)} above uniform attention" if chance else pct(threshold)


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
        best = first["best"]
        return (f"none of its scores reaches {_role_rule(threshold, chance)}, so its role is unclear (highest: its "
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


def ablation_cost(drop: float, metric: str = "exact match") -> str:
    """'zero-ablating it costs 12 points', '... costs only 0.6 points', '... does not lower exact match'."""
    if drop >= MATTERS:
        return f"zero-ablating it costs {points(drop)}"
    if drop > 0:
        return f"zero-ablating it costs only {points(drop)}"
    return f"zero-ablating it does not lower {metric}"


# -- in plain words ---------------------------------------------------------------------------


def accuracy_sentences(findings: Findings) -> list[str]:
    """How often the model is right, and a warning when that is too rarely to call it a solution."""
    base = findings.accuracy
    if findings.examples_are:  # a text model: tokens, not prompts
        sentences = [f"The model predicts the next token right {pct(base)} of the time on {findings.examples} "
                     f"{findings.examples_are}."]
        return sentences
    sentences = [f"The model gets {pct(base)} of {findings.examples} held-out {findings.task} prompts exactly right."]
    if base < 0.5:
        sentences.append(f"At {pct(base)} it has not learned the task, so what follows describes an unfinished "
                         f"model rather than a solution.")
    return sentences


def ablation_sentences(findings: Findings) -> list[str]:
    """The heads the task depends on and what each does -- or that it depends on no single one --
    and which of them act through later layers."""
    base, threshold, chance = findings.accuracy, findings.threshold, findings.chance
    roles = {(r["layer"], r["head"]): r for r in findings.roles()}
    ranking = findings.ablation_rows()
    important = important_heads(ranking)
    described = described_heads(ranking)

    sentences = []
    for row in described:
        verb = f"carries the {findings.task} task" if carries(base, row["drop"]) else "matters"
        role = roles[(row["layer"], row["head"])]
        sentences.append(f"{head_name(row['layer'], row['head'])} {verb}: zero-ablating it drops {findings.metric} from "
                         f"{pct(base)} to {pct(row['accuracy'])}; {role_clause(role, threshold, chance)}.")
    if len(important) > len(described):
        rest = len(important) - len(described)
        sentences.append(f"{rest} more head{'s each cost' if rest > 1 else ' costs'} at least {points(MATTERS)} "
                         f"when zero-ablated (all in the ablation table).")

    worst = ranking[0] if ranking else None
    if worst is not None and not carries(base, worst["drop"]):
        name = head_name(worst["layer"], worst["head"])
        if not important:
            sentences.append(f"No single head matters on its own: zero-ablating any one head lowers {findings.metric} by "
                             f"at most {points(max(worst['drop'], 0.0))} ({name}: {pct(base)} to "
                             f"{pct(worst['accuracy'])}), so the task does not hinge on any one head.")
        else:
            sentences.append(f"No single head carries the task: the largest loss from zero-ablating one head is "
                             f"{points(worst['drop'])} ({name}: {pct(base)} to {pct(worst['accuracy'])}).")
    return sentences + _indirect_sentences(findings, described)


def _indirect_sentences(findings: Findings, important: Sequence[dict]) -> list[str]:
    """One sentence for the important heads whose direct contribution is small next to the largest one."""
    direct = direct_contributions(findings.attribution)
    if not direct:
        return []
    top = max(direct, key=lambda n: abs(direct[n]))
    small = [head_name(r["layer"], r["head"]) for r in important]
    small = [(n, direct[n]) for n in small if writes_little(direct, n)]
    if not small:
        return []
    names = join_words([f"{n} ({signed(v)})" for n, v in small])
    one = len(small) == 1
    return [f"{names} write{'s' if one else ''} little to the answer's logit directly, against {signed(direct[top])} "
            f"for {top}, so {'its' if one else 'their'} effect goes through later layers."]


def role_sentences(findings: Findings) -> list[str]:
    """The heads with a clear role that ablation did not single out, one sentence per role, with
    what removing all of them at once costs (when that was measured) -- or that no head has a role."""
    base, threshold, chance = findings.accuracy, findings.threshold, findings.chance
    role_rows = findings.roles()
    roles = {(r["layer"], r["head"]): r for r in role_rows}
    ranking = findings.ablation_rows()
    drops = {(r["layer"], r["head"]): r["drop"] for r in ranking}
    sentences = []
    for role, heads in quiet_role_groups(ranking, role_rows).items():
        if len(heads) == 1:
            sentences.append(f"{head_name(*heads[0])} is {a_or_an(ROLE_NAMES.get(role, role))}: "
                             f"{role_clause(roles[heads[0]], threshold, chance)}; {ablation_cost(drops[heads[0]], findings.metric)}.")
            continue
        worst_alone = max(drops[h] for h in heads)
        alone = (f"zero-ablating any one of them costs at most {points(worst_alone)}" if worst_alone > 0
                 else f"zero-ablating any one of them does not lower {findings.metric}")
        together = findings.group_ablation.get(role)
        if together is not None:
            every = "both" if len(heads) == 2 else f"all {len(heads)}"
            alone += f", {every} together {points(base - together)} ({pct(base)} to {pct(together)})"
        sentences.append(f"{head_list(heads)} are {plural(role)}: "
                         f"{role_clause([roles[h] for h in heads], threshold, chance)}; {alone}.")
    if not any(r["role"] != "unclear" for r in roles.values()):
        sentences.append(f"No head has a score that reaches {_role_rule(threshold, chance)}: none is clearly a "
                         f"previous-token, duplicate-token, induction or source head, on random tokens or on the task.")
    return sentences


def lens_sentences(findings: Findings) -> list[str]:
    """Where the answer becomes readable through the logit lens, against the stage before."""
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


def writer_sentences(findings: Findings) -> list[str]:
    """Which components write the answer's logit directly, and layers whose many small heads outwrite them."""
    named, writing = main_writers(direct_contributions(findings.attribution))
    if not named:
        return ["No component writes toward the correct answer directly (every direct contribution is <= 0)."]
    listed = join_words([f"{n} ({signed(v)})" for n, v in named])
    most = "mostly " if len(named) < writing else ""
    sentences = [f"The correct answer's logit (above the mean logit) is written directly {most}by {listed}; all "
                 f"direct contributions together add up to {signed(attribution_total(findings.attribution))}."]
    for layer, heads in layers_outwriting(findings.attribution, named[0][1]):
        sentences.append(f"Together the {len(heads)} heads of layer {layer} write {signed(sum(heads))} directly, "
                         f"more than any single component.")
    return sentences


# -- the circuit ----------------------------------------------------------------------------------

NODE_WORDS = {"embed": "the token embeddings", "pos": "the position embeddings", "logits": "the answer (the logits)"}
INPUT_WORDS = {"q": "query", "k": "key", "v": "value"}
MAX_CIRCUIT_NODES = 5  # nodes whose inputs are described one by one


METRIC_WORDS = {"logit_diff": "logit difference", "kl": "behaviour (minus the KL divergence)"}


def circuit_title(circuit: Union[Mapping, "Circuit"]) -> str:
    """'12 of 137 edges keep 96% of the logit difference', for a Circuit or its report.json entry."""
    data = circuit.to_dict() if hasattr(circuit, "to_dict") else circuit
    return (f"{data['n_edges']} of {data['n_total']} edges keep {pct(data['faithfulness'])} "
            f"of the {METRIC_WORDS[data['metric']]}")


def _reads(inputs: Sequence[tuple[str, Sequence[str], float]]) -> str:
    """What a node reads, senders grouped by the inputs they enter: 'L0H7 and MLP0 through
    its query input and the token embeddings through its value and key inputs'."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for sender, kinds, _ in inputs:  # strongest first; a group sits where its first sender does
        groups.setdefault(tuple(kinds), []).append(NODE_WORDS.get(sender, sender))
    parts = []
    for kinds, senders in groups.items():
        names = join_words(senders)
        if kinds:
            names += f" through its {join_words([INPUT_WORDS[k] for k in kinds])} input{'s' if len(kinds) > 1 else ''}"
        parts.append(names)
    return join_words(parts) if len(parts) <= 2 else "; ".join(parts)


def circuit_sentences(findings: Findings) -> list[str]:
    """What the circuit is, in words: its size and faithfulness, who writes the answer, what
    each node reads (from the answer down), and the heads it does without."""
    circuit = findings.circuit
    if not circuit:
        return []
    if "skipped" in circuit:
        return [f"No circuit was traced: {circuit['skipped']}."]
    from gptdecoder.lab.circuits import node_inputs  # no torch work: a function of the edge list

    edges = [(e["sender"], e["receiver"], e["score"]) for e in circuit["edges"]]
    sentences = [f"Circuit: {circuit_title(circuit)} between the clean and the corrupted answers "
                 f"({circuit['metric_clean']:.2f} vs {circuit['metric_corrupted']:.2f} on {circuit['n_pairs']} "
                 f"pairs; corrupted prompts: {circuit['corruption']})."]
    reads = node_inputs(edges, findings.n_layer)
    for node, inputs in reads[:MAX_CIRCUIT_NODES]:
        listed = _reads(inputs)
        if node == "logits":
            sentences.append(f"The answer is written by {listed}.")
        else:
            sentences.append(f"{node} reads {listed}.")
    if len(reads) > MAX_CIRCUIT_NODES:
        more = len(reads) - MAX_CIRCUIT_NODES
        sentences.append(f"... and the inputs of {more} more node{'s' if more > 1 else ''} (report.json lists every edge).")
    if edges:
        sender, receiver, score = max(edges, key=lambda e: abs(e[2]))
        how = "measured" if circuit["method"] == "exact" else f"estimated by {circuit['method'].upper()}"
        sentences.append(f"The strongest edge, {sender} -> {receiver}, moves the {METRIC_WORDS[circuit['metric']]} "
                         f"by about {score:+.2f} when it alone is patched ({how}).")
    used = {name for sender, receiver, _ in edges for name in (sender, receiver.split(".")[0])}
    unused = [(layer, head) for layer in range(findings.n_layer) for head in range(findings.n_head)
              if head_name(layer, head) not in used]
    if unused:
        sentences.append(f"The circuit does without {head_list(unused)}.")
    return sentences


def compiled_sentences(findings: Findings) -> list[str]:
    """For a compiled program: what the compiler placed in each block, and how much of the
    compiler's own circuit the measured circuit holds."""
    compiled = findings.compiled
    if not compiled:
        return []
    placed = join_words([f"{block} computes {job}" for block, job in compiled["blocks"].items()])
    sentences = [f"The compiled program is {compiled['program']}, {compiled['about']}. The compiler placed its "
                 f"steps so: {placed}."]
    circuit = findings.circuit
    if circuit and "edges" in circuit:
        truth = {tuple(edge) for edge in compiled["edges"]}
        found = {(e["sender"], e["receiver"]) for e in circuit["edges"]}
        unseen = sorted(truth - found)
        sentence = (f"The circuit found holds {len(truth & found)} of the compiler's {len(truth)} edges"
                    f" and {len(found - truth)} other{'s' if len(found - truth) != 1 else ''}.")
        if unseen and all(sender == "pos" for sender, _ in unseen):
            sentence += (" The ones it lacks carry positions, which a prompt and its corrupted twin share, so "
                         "patching them changes nothing.")
        elif unseen:
            sentence += f" It lacks {join_words([' -> '.join(e) for e in unseen])}."
        sentences.append(sentence)
    return sentences


# The parts of "In plain words", in the order they are said.
PLAIN_WORDS: tuple[Callable[[Findings], list[str]], ...] = (
    accuracy_sentences, ablation_sentences, role_sentences, lens_sentences, writer_sentences, circuit_sentences,
    compiled_sentences,
)


def plain_words(findings: Findings) -> list[str]:
    """The report's conclusions as sentences, each quoting the number it rests on.

    What is said follows fixed rules on the numbers (``gptdecoder.lab.roles``), so a
    sentence appears only when its numbers support it: a head "carries" the task only if
    ablating it loses at least half the accuracy, a role is named only when its score
    clears the threshold and uniform attention, and when no head matters on its own the
    report says so instead of promoting the least unimportant one.
    """
    return [sentence for part in PLAIN_WORDS for sentence in part(findings)]
