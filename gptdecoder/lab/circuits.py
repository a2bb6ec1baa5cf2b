"""Circuits: which edges of the model's computational graph carry a task.

The graph and one pass over it are in gptdecoder/lab/circuit_graph.py; the clean and
corrupted pairs and the metric in gptdecoder/lab/pairs.py. What an edge *carries* is asked
with those pairs. Patching an edge means: its receiver reads the sender's output from the corrupted run
instead of the current one. Then:

- ``edge_scores(method="eap")``: edge attribution patching (Syed et al. 2023), a linear
  estimate of every edge's patching effect from two forward passes and one backward pass:
  (corrupted output - clean output) . d metric / d receiver input.
- ``method="eap-ig"`` (Hanna et al. 2024): the same with the gradient averaged over
  inputs interpolated between the clean and the corrupted embeddings (integrated
  gradients): better where the metric is far from linear.
- ``method="exact"``: each edge patched alone, one forward pass per edge: the truth the
  estimates are checked against.
- ``find_circuit``: the smallest set of edges, found ACDC-style (Conmy et al. 2023), that
  keeps ``share`` of the clean-vs-corrupted metric when every other edge is patched;
  reported with its faithfulness (the share it really keeps) and its size.

A sender's total attribution (node attribution) is the sum of its edges' scores.
Everything here is a pure function of a model and pairs; nothing is printed or written.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import torch

from gptdecoder.lab.circuit_graph import Graph, GraphRun, graph_of, receiver_stage, run_graph
from gptdecoder.lab.pairs import Pairs, metric_fn
from gptdecoder.model import GPT

METHODS = ("eap", "eap-ig", "exact")
DEFAULT_SHARE = 0.9  # the share of the metric a circuit must keep
IG_STEPS = 5  # interpolation points for EAP-IG, at the midpoints (k + 1/2) / steps of the path


# -- scores ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeScores:
    """Every edge's estimated (or, for "exact", measured) change of the metric when that
    edge alone is patched: negative = the edge carries the clean behaviour."""

    graph: Graph
    scores: torch.Tensor  # (S, R), 0 where there is no edge
    method: str
    metric: str
    clean: float  # the metric on the clean prompts
    corrupted: float  # on the corrupted ones

    def ranked(self) -> list[tuple[str, str, float]]:
        """(sender, receiver, score) of every edge, largest |score| first."""
        s_idx, r_idx = self.graph.allowed.nonzero(as_tuple=True)
        values = self.scores[s_idx, r_idx]
        order = values.abs().argsort(descending=True, stable=True).tolist()
        return [(self.graph.senders[s_idx[i]], self.graph.receivers[r_idx[i]], float(values[i])) for i in order]

    def node_scores(self) -> dict[str, float]:
        """Each sender's attribution: the sum of its edges' scores."""
        return {name: float(self.scores[i].sum()) for i, name in enumerate(self.graph.senders)}


@dataclass(frozen=True)
class Baseline:
    """What every score and circuit is measured against, computed once per (model, pairs):
    the graph, the pairs on the model's device, every sender's clean and corrupted output
    (S, N, T, C), the metric function and its clean and corrupted values."""

    graph: Graph
    pairs: Pairs
    clean_outputs: torch.Tensor
    corrupted_outputs: torch.Tensor
    measure: Callable[[torch.Tensor], torch.Tensor]
    metric: str
    clean: float
    corrupted: float

    def faithfulness(self, value: float) -> float:
        """The share of the clean-vs-corrupted difference that ``value`` keeps."""
        return (value - self.corrupted) / (self.clean - self.corrupted)


@torch.no_grad()
def baseline(model: GPT, pairs: Pairs, metric: str = "logit_diff") -> Baseline:
    """The clean and the corrupted runs; ValueError when the metric does not tell them apart
    (identical pairs, an untrained model): there is then nothing to trace."""
    graph = graph_of(model)
    pairs = pairs.to(next(model.parameters()).device)
    clean_run, corrupted_run = GraphRun(graph), GraphRun(graph)
    clean_logits = run_graph(model, pairs.clean, clean_run)
    corrupted_logits = run_graph(model, pairs.corrupted, corrupted_run)
    measure = metric_fn(metric, pairs, clean_logits)
    clean, corrupted = float(measure(clean_logits)), float(measure(corrupted_logits))
    if not math.isfinite(clean - corrupted) or abs(clean - corrupted) <= 1e-6 * max(1.0, abs(clean)):
        raise ValueError(f"the metric ({metric}) is {clean:.4g} on the clean prompts and {corrupted:.4g} on the "
                         f"corrupted ones: no difference to trace")
    return Baseline(graph, pairs, torch.stack(clean_run.outputs), torch.stack(corrupted_run.outputs), measure, metric,
                    clean, corrupted)


@contextlib.contextmanager
def evaluating(model: GPT) -> Iterator[None]:
    """The model in eval mode (no dropout) for the with-block, then back in its own mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _gradient_scores(model: GPT, base: Baseline, alphas: Sequence[float]) -> torch.Tensor:
    """(corrupted - clean outputs) . the metric's gradient at each receiver, the gradient
    averaged over the inputs clean + alpha * (corrupted - clean), one pass per alpha."""
    graph, pairs = base.graph, base.pairs
    n_inputs = 2 if "pos" in graph.senders else 1
    delta = base.corrupted_outputs - base.clean_outputs  # (S, N, T, C)
    scores = torch.zeros(graph.allowed.shape)
    for alpha in alphas:
        def interpolate(i: int, x: torch.Tensor, alpha=alpha) -> torch.Tensor:
            return x + alpha * delta[i] if i < n_inputs else x
        run = GraphRun(graph, tap=True, inputs=interpolate if alpha else None)
        with torch.enable_grad():
            value = base.measure(run_graph(model, pairs.clean, run))
            # a receiver the metric does not depend on at all (e.g. the answer is read before it) gets no gradient
            grads = torch.autograd.grad(value, [t for _, t in run.taps], allow_unused=True)
        for (indices, tap), grad in zip(run.taps, grads):
            grad = torch.zeros_like(tap) if grad is None else grad
            if grad.dim() == 4:  # (B, T, nh, C): one receiver per head
                scores[:, indices] += torch.einsum("sbtc,btnc->sn", delta, grad).float().cpu() / len(alphas)
            else:
                scores[:, indices[0]] += torch.einsum("sbtc,btc->s", delta, grad).float().cpu() / len(alphas)
    return scores * graph.allowed


@torch.no_grad()
def patched_metric(model: GPT, base: Baseline, patched: torch.Tensor) -> float:
    """The metric with the edges where ``patched`` (S, R) is True read from the corrupted run."""
    run = GraphRun(base.graph, base.corrupted_outputs, patched.to(base.corrupted_outputs.device))
    return float(base.measure(run_graph(model, base.pairs.clean, run)))


def edge_scores(model: GPT, pairs: Pairs, method: str = "eap", metric: str = "logit_diff",
                steps: int = IG_STEPS, base: Optional[Baseline] = None) -> EdgeScores:
    """Every edge's effect on the metric when patched: estimated ("eap", "eap-ig") or measured ("exact")."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    if method == "eap" and metric == "kl":
        raise ValueError("method='eap' with metric='kl': the KL divergence's gradient is 0 at the clean run, so every "
                         "EAP score would be 0; use method='eap-ig' or 'exact'")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: expected a positive integer")
    with evaluating(model):
        base = base if base is not None else baseline(model, pairs, metric)
        if method == "exact":
            scores = torch.zeros(base.graph.allowed.shape)
            for s, r in base.graph.allowed.nonzero().tolist():
                one = torch.zeros_like(base.graph.allowed)
                one[s, r] = True
                scores[s, r] = patched_metric(model, base, one) - base.clean
        else:
            alphas = [0.0] if method == "eap" else [(k + 0.5) / steps for k in range(steps)]
            scores = _gradient_scores(model, base, alphas)
    return EdgeScores(base.graph, scores, method, base.metric, base.clean, base.corrupted)


# -- circuits --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Circuit:
    """A set of edges and how much of the behaviour it keeps.

    ``faithfulness`` = (metric with every other edge patched - corrupted metric) /
    (clean metric - corrupted metric): 1 is the whole model's behaviour, 0 none of it."""

    graph: Graph
    edges: tuple[tuple[str, str, float], ...]  # (sender, receiver, score), largest |score| first
    faithfulness: float
    share: float  # the share it was asked to keep
    clean: float
    corrupted: float
    method: str  # the scores that ordered the search
    metric: str
    n_pairs: int
    description: str = ""
    scores: Optional[EdgeScores] = field(default=None, compare=False, repr=False)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def n_total(self) -> int:
        return self.graph.n_edges

    def to_dict(self) -> dict:
        return {
            "edges": [{"sender": s, "receiver": r, "score": round(v, 6)} for s, r, v in self.edges],
            "n_edges": self.n_edges, "n_total": self.n_total, "faithfulness": round(self.faithfulness, 6),
            "share": self.share, "metric": self.metric, "method": self.method,
            "metric_clean": round(self.clean, 6), "metric_corrupted": round(self.corrupted, 6),
            "n_pairs": self.n_pairs, "corruption": self.description,
        }


def circuit_nodes(edges: Sequence[tuple[str, str, float]]) -> list[str]:
    """The senders and receiving nodes (a head without its .q/.k/.v) of ``edges``, in order of appearance."""
    seen: list[str] = []
    for sender, receiver, _ in edges:
        for node in (sender, receiver.split(".")[0]):
            if node not in seen:
                seen.append(node)
    return seen


def node_inputs(edges: Sequence[tuple[str, str, float]], n_layer: int) -> list[tuple[str, list[tuple[str, list[str], float]]]]:
    """What each receiving node of a circuit reads, from the logits down:
    [(node, [(sender, its inputs there e.g. ["v", "k"], the largest |score|), ...]), ...],
    senders by their strongest edge first."""
    reads: dict[str, dict[str, tuple[list[str], float]]] = {}
    for sender, receiver, score in edges:
        node, _, kind = receiver.partition(".")
        kinds, best = reads.setdefault(node, {}).get(sender, ([], 0.0))
        kinds = sorted(kinds + ([kind] if kind else []), key="qkv".index)
        reads[node][sender] = (kinds, max(best, abs(score)))
    order = sorted(reads, key=lambda node: -receiver_stage(node, n_layer))
    return [(node, sorted(((s, k, v) for s, (k, v) in reads[node].items()), key=lambda item: -item[2]))
            for node in order]


def _dangling(graph: Graph, keep: torch.Tensor) -> torch.Tensor:
    """``keep`` without edges that cannot matter: from a head or MLP no kept edge feeds
    (it then computes its corrupted output anyway), or into one whose output no kept edge
    reads (other than the logits). Repeated until nothing changes."""
    keep = keep.clone()
    node_of_receiver = [r.split(".")[0] for r in graph.receivers]
    while True:
        fed = {node_of_receiver[r] for r in keep.any(0).nonzero()[:, 0].tolist()}
        read = {graph.senders[s] for s in keep.any(1).nonzero()[:, 0].tolist()}
        before = int(keep.sum())
        for s, r in keep.nonzero().tolist():
            sender, node = graph.senders[s], node_of_receiver[r]
            if (sender not in ("embed", "pos") and sender not in fed) or (node != "logits" and node not in read):
                keep[s, r] = False
        if int(keep.sum()) == before:
            return keep


def find_circuit(model: GPT, pairs: Pairs, share: float = DEFAULT_SHARE, method: str = "eap-ig",
                 metric: str = "logit_diff", scores: Optional[EdgeScores] = None) -> Circuit:
    """A small set of edges that keeps ``share`` of the metric, found ACDC-style (greedy).

    1. Order the edges by |score| (``method``'s scores on these pairs, or ``scores``,
       which must be of this model and ``metric``).
    2. The shortest prefix of that order whose circuit keeps ``share`` (a doubling then a
       bisection, one patched forward pass per try).
    3. ACDC's pass (Conmy et al. 2023): from the logits backwards, try removing each kept
       edge; it stays out if the circuit still keeps ``share``.
    4. Drop dangling edges (they change nothing). Faithfulness is measured on the result;
       it may exceed 1 when the edges left out worked against the answer.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share={share}: expected a number in (0, 1]")
    with evaluating(model):
        base = baseline(model, pairs, metric)
        graph = base.graph
        if scores is None:
            scores = edge_scores(model, pairs, method, metric, base=base)
        elif scores.graph != graph or scores.metric != metric:
            raise ValueError(f"scores of {scores.metric} on another graph or metric: expected {metric} on this model")

        def kept(keep: torch.Tensor) -> float:
            return base.faithfulness(patched_metric(model, base, graph.allowed & ~keep))

        s_idx, r_idx = graph.allowed.nonzero(as_tuple=True)
        order = scores.scores[s_idx, r_idx].abs().argsort(descending=True, stable=True)

        def prefix(k: int) -> torch.Tensor:
            keep = torch.zeros_like(graph.allowed)
            keep[s_idx[order[:k]], r_idx[order[:k]]] = True
            return keep

        # 2. the shortest prefix: double until it keeps the share, then bisect (every edge keeps all of it)
        hi = 1
        while hi < len(order) and kept(prefix(hi)) < share:
            hi *= 2
        hi = min(hi, len(order))
        lo = hi // 2
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            if kept(prefix(mid)) >= share:
                hi = mid
            else:
                lo = mid
        keep = prefix(hi)
        # 3. ACDC's pass: receivers from the logits backwards, each one's weakest edges first
        r_stage = [receiver_stage(r, graph.n_layer) for r in graph.receivers]
        candidates = sorted(keep.nonzero().tolist(),
                            key=lambda e: (-r_stage[e[1]], abs(float(scores.scores[e[0], e[1]]))))
        for s, r in candidates:
            keep[s, r] = False
            if not kept(keep) >= share:  # NaN keeps the edge too
                keep[s, r] = True
        keep = _dangling(graph, keep)
        faithfulness = kept(keep)
    edges = sorted(((graph.senders[s], graph.receivers[r], float(scores.scores[s, r])) for s, r in keep.nonzero().tolist()),
                   key=lambda e: -abs(e[2]))
    return Circuit(graph, tuple(edges), faithfulness, share, base.clean, base.corrupted, scores.method, metric,
                   len(pairs), pairs.description, scores)


def exercised_edges(edges: Sequence[tuple[str, str]], base: Baseline, atol: float = 1e-6) -> list[tuple[str, str]]:
    """The edges of a known circuit (e.g. a compiler's) that these pairs can run through:
    both the sender's and the receiving node's outputs differ between some clean prompt and
    its twin. A circuit found by patching can only contain these: a clean prompt and its
    twin share their positions (and so anything computed from positions alone), and an
    edge into a node whose output never changes carries nothing."""
    moved = (base.corrupted_outputs - base.clean_outputs).abs().flatten(1).amax(1) > atol  # (S,)

    def changes(node: str) -> bool:
        return node == "logits" or bool(moved[base.graph.senders.index(node)])

    return [(s, r) for s, r in edges if changes(s) and changes(r.split(".")[0])]


def edge_roc_auc(scores: EdgeScores, true_edges: Sequence[tuple[str, str]]) -> float:
    """ROC AUC of ranking the edges by |score| against the true edge set (ACDC's measure):
    the chance that a true edge outranks a false one, ties counted half."""
    truth = scores.graph.mask(true_edges)[scores.graph.allowed]
    values = scores.scores[scores.graph.allowed].abs()
    pos, neg = values[truth], values[~truth]
    if not len(pos) or not len(neg):
        raise ValueError("edge ROC AUC needs at least one true and one false edge")
    greater = (pos[:, None] > neg[None, :]).float().sum()
    ties = (pos[:, None] == neg[None, :]).float().sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
