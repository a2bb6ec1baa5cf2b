"""The matplotlib figures of a run: attention heatmaps, answer distributions, head scores,
the explain report's figures, training curves (a grid's figures: gptdecoder.lab.bench_figures).

Each function takes tensors, arrays or metric records and returns a
``matplotlib.figure.Figure`` (the commands save them). Figures are built with the
object API (``Figure()``, never pyplot), so no display or GUI backend is involved:
everything works on a headless machine, a notebook's own backend is left alone, and
there is no global figure list to close.

Attention views show the raw pattern values, the upper triangle included: for a
causal model it must be exactly 0 there, and hiding it (as some viewers do) would
also hide a leaking mask. Patterns come from ``gptdecoder.lab.capture.capture_attention``
or a ``run_with_cache`` cache: one [batch, heads, T, T] tensor per layer.

attention   plot_attention_grid, plot_head_average, plot_token_attention
answers     plot_answer_distributions
scores      plot_head_scores (head ablation, activation-patching sweeps)
explain     plot_role_scores, plot_logit_lens, plot_logit_attribution, plot_head_patterns
training    plot_training_loss, plot_accuracy, plot_text_losses, training_figures
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from gptdecoder.lab.capture import Patterns, as_layer_head_array, example_views
from gptdecoder.model import GPT
from gptdecoder.tasks import Example, Task

CMAP = "viridis"  # perceptually uniform, and 0 (dark) is clearly different from small values


def _tick_fontsize(n_labels: int, axis_inches: float) -> float:
    """A font size at which n_labels tick labels fit along an axis of that length."""
    return float(np.clip(axis_inches * 72 / max(n_labels, 1) * 0.8, 4, 10))


def _draw_boundary(ax, boundary: Optional[int], n: int) -> None:
    """Dashed lines between the last prompt token and the first answer token."""
    if boundary is None or not 0 < boundary < n:
        return
    ax.axvline(boundary - 0.5, color="white", linestyle="--", linewidth=1.0)
    ax.axhline(boundary - 0.5, color="white", linestyle="--", linewidth=1.0)


def _cell_text(value: float) -> str:
    """A weight as short text that never rounds to 0 or 1 unless it is exactly that: 0, <.01, .25, >.99, 1."""
    if value == 0.0 or value == 1.0:
        return f"{value:.0f}"
    if value < 0.005:
        return "<.01"
    return ">.99" if value >= 0.995 else f"{value:.2f}".lstrip("0")


def _label_axes(ax, tokens: Sequence[str], fontsize: float, x: bool = True, y: bool = True) -> None:
    n = len(tokens)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(tokens if x else [], rotation=90, fontsize=fontsize)
    ax.set_yticklabels(tokens if y else [], fontsize=fontsize)
    ax.tick_params(length=0)


def plot_attention_grid(
    patterns: Patterns,
    tokens: Sequence[str],
    boundary: Optional[int] = None,
    batch_index: int = 0,
    title: str = "Attention pattern of every layer and head",
) -> Figure:
    """One heatmap per (layer, head): rows = layers, columns = heads.

    Each cell [query, key] is the raw softmax weight (shared 0..1 colour scale, so
    heads compare at a glance). Row i is what token i looks at; dashed lines mark
    where the answer starts.
    """
    arr = as_layer_head_array(patterns, batch_index)
    n_layer, n_head, T, _ = arr.shape
    panel = float(np.clip(0.22 * T, 2.2, 4.0))  # inches per heatmap
    fig = Figure(figsize=(panel * n_head + 1.4, panel * n_layer + 1.0), layout="constrained")
    axes = fig.subplots(n_layer, n_head, squeeze=False)
    fontsize = _tick_fontsize(T, panel)
    image = None
    for layer in range(n_layer):
        for head in range(n_head):
            ax = axes[layer, head]
            image = ax.imshow(arr[layer, head], cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
            _draw_boundary(ax, boundary, T)
            _label_axes(ax, tokens, fontsize, x=layer == n_layer - 1, y=head == 0)
            ax.set_title(f"layer {layer}, head {head}", fontsize=10)
        axes[layer, 0].set_ylabel("query (attends from)", fontsize=9)
    for head in range(n_head):
        axes[-1, head].set_xlabel("key (attends to)", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    fig.suptitle(title + ("  (dashed: prompt | answer)" if boundary else ""), fontsize=12)
    return fig


def plot_head_average(
    patterns: Patterns,
    tokens: Sequence[str],
    layer: int = -1,
    boundary: Optional[int] = None,
    batch_index: int = 0,
    title: Optional[str] = None,
) -> Figure:
    """One layer's pattern averaged over its heads (default: the last block), values written in."""
    arr = as_layer_head_array(patterns, batch_index)
    layer = layer % arr.shape[0]
    mean = arr[layer].mean(axis=0)
    T = mean.shape[0]
    size = float(np.clip(0.42 * T, 4.0, 10.0))
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(mean, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    if T <= 24:  # numbers stay legible up to about this size
        for q in range(T):
            for k in range(T):
                value = mean[q, k]
                ax.text(k, q, _cell_text(value), ha="center", va="center",
                        fontsize=_tick_fontsize(T, size) * 0.8, color="white" if value < 0.5 else "black")
    _draw_boundary(ax, boundary, T)
    _label_axes(ax, tokens, _tick_fontsize(T, size))
    ax.set_xlabel("key (attends to)")
    ax.set_ylabel("query (attends from)")
    ax.set_title(title or f"Layer {layer}: attention averaged over {arr.shape[1]} heads")
    fig.colorbar(image, ax=ax, shrink=0.8, label="mean attention weight")
    return fig


def plot_token_attention(
    patterns: Patterns,
    tokens: Sequence[str],
    position: int,
    boundary: Optional[int] = None,
    batch_index: int = 0,
) -> Figure:
    """Where one token looks: row ``position`` of every head's pattern, one row per head.

    Keys after ``position`` are shown too (they must be 0 in a causal model).
    """
    arr = as_layer_head_array(patterns, batch_index)
    n_layer, n_head, T, _ = arr.shape
    position = position % T
    rows = arr[:, :, position, :].reshape(n_layer * n_head, T)
    names = [f"L{layer} H{head}" for layer in range(n_layer) for head in range(n_head)]
    width = float(np.clip(0.4 * T, 5.0, 12.0))
    fig = Figure(figsize=(width + 1.5, 0.45 * len(names) + 1.8), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(rows, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    for r in range(rows.shape[0]):
        for k in range(T):
            if rows[r, k] >= 0.15:  # write the big weights in; small ones are readable from colour
                ax.text(k, r, f"{rows[r, k]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if rows[r, k] < 0.5 else "black")
    ax.set_xticks(range(T))
    ax.set_xticklabels(tokens, rotation=90, fontsize=_tick_fontsize(T, width))
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=9)
    ax.axvline(position + 0.5, color="red", linewidth=1.0)  # everything right of this is the future
    if boundary is not None and 0 < boundary < T:
        ax.axvline(boundary - 0.5, color="white", linestyle="--", linewidth=1.0)
    ax.set_xlabel("key (attends to); red line: end of what this token may see")
    ax.set_title(f"Attention from position {position} ({tokens[position]!r}) to every token (weights >= 0.15 written)")
    fig.colorbar(image, ax=ax, label="attention weight")
    return fig


def plot_answer_distributions(
    probs: torch.Tensor,
    symbols: Sequence[str],
    targets: Sequence[int],
    positions: Sequence[int],
    title: Optional[str] = None,
) -> Figure:
    """The predicted distribution at each answer position: rows = positions, columns = vocabulary.

    ``probs`` is [n_answer, vocab] (softmax of the logits at the answer positions).
    A red box marks the correct token; each row's label says what the model would
    pick (argmax) and with which probability. For small vocabularies the
    probabilities are written in the cells.
    """
    p = probs.detach().float().cpu().numpy()
    # a model borrowed for a task may have far more ids than the task has symbols (GPT-2:
    # 50257): show the task's symbols and any other id the model would pick
    picks = p.argmax(axis=1)
    ids = sorted(set(range(min(len(symbols), p.shape[1]))) | {int(i) for i in picks} | {int(t) for t in targets})
    names = [symbols[i] if i < len(symbols) else f"<{i}>" for i in ids]
    column = {token: col for col, token in enumerate(ids)}
    p = p[:, ids]
    n, vocab = p.shape
    width = float(np.clip(0.35 * vocab, 5.0, 14.0))
    fig = Figure(figsize=(width + 2.5, 0.45 * n + 1.8), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(p, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    for row, target in enumerate(targets):
        ax.add_patch(Rectangle((column[target] - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    if vocab <= 16:
        for row in range(n):
            for col in range(vocab):
                ax.text(col, row, _cell_text(p[row, col]), ha="center", va="center", fontsize=8,
                        color="white" if p[row, col] < 0.5 else "black")
    row_labels = []
    for row, (pos, target) in enumerate(zip(positions, targets)):
        pick = int(p[row].argmax())  # a column
        mark = "ok" if pick == column[target] else "WRONG"
        picked = f"{names[pick]} ({_cell_text(p[row, pick])})"
        row_labels.append(f"pos {pos}: want {names[column[target]]}, picks {picked} {mark}")
    ax.set_yticks(range(n))
    ax.set_yticklabels(row_labels, fontsize=8)
    ax.set_xticks(range(vocab))
    ax.set_xticklabels(names, rotation=90, fontsize=_tick_fontsize(vocab, width))
    ax.set_xlabel("next token")
    ax.set_title(title or "Predicted probability at each answer position (red box: correct token)")
    fig.colorbar(image, ax=ax, label="probability")
    return fig


def plot_head_scores(
    scores: np.ndarray,
    title: str,
    label: str,
    baseline: Optional[float] = None,
    rows: Optional[Sequence[str]] = None,
    columns: Optional[Sequence[str]] = None,
) -> Figure:
    """A heatmap of one number per cell, written in: by default layer x head.

    For head ablation (accuracy with that head removed) dark cells are the heads that
    matter, and the title gives the un-ablated ``baseline``. ``rows`` / ``columns``
    relabel the axes, e.g. hook points x positions for an activation-patching sweep.
    The colour scale spans 0..1 and stretches to include any value outside it.
    """
    scores = np.asarray(scores, dtype=float)
    n_rows, n_cols = scores.shape
    rows = rows or [f"layer {layer}" for layer in range(n_rows)]
    columns = columns or [f"head {head}" for head in range(n_cols)]
    rotate = n_cols > 8  # many columns: vertical labels, narrower cells
    width = (0.6 if rotate else 1.1) * n_cols + 0.08 * max(len(r) for r in rows) + 2.2
    fig = Figure(figsize=(width, 0.8 * n_rows + 1.8), layout="constrained")
    ax = fig.subplots()
    vmin, vmax = min(0.0, float(np.nanmin(scores))), max(1.0, float(np.nanmax(scores)))
    image = ax.imshow(scores, cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto")
    for r in range(n_rows):
        for c in range(n_cols):
            value = scores[r, c]
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if value < vmin + 0.6 * (vmax - vmin) else "black")
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels(columns, rotation=90 if rotate else 0)
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(rows)
    ax.set_title(title + (f"\n(no ablation: {baseline:.2f})" if baseline is not None else ""), fontsize=11)
    fig.colorbar(image, ax=ax, label=label)
    return fig


# -- the explain report: what each head does, where the answer appears, who writes it ---------------


def plot_role_scores(
    scores: dict[str, np.ndarray],
    marked: Optional[dict[str, np.ndarray]] = None,
    chance: Optional[dict[str, float]] = None,
    title: str = "Head scores",
) -> Figure:
    """One layer x head heatmap per head score (e.g. previous_token, induction), on one 0..1 scale.

    The scores are attention shares, so the panels compare. ``marked`` (name -> bool
    [layer, head]) boxes the cells that earn a head its role, and ``chance`` (name ->
    what uniform attention scores) is written under each panel's title: a score means
    something only well above it. NaN cells (a score that does not apply) stay blank.
    """
    names = list(scores)
    arrays = [np.asarray(scores[name], dtype=float) for name in names]
    n_layer, n_head = arrays[0].shape
    panel_w, panel_h = 0.55 * n_head + 0.9, 0.5 * n_layer + 0.9
    n_cols = min(len(names), 4 if n_head <= 4 else 2)  # wide panels go two to a row, so the page stays readable
    n_rows = math.ceil(len(names) / n_cols)
    fig = Figure(figsize=(panel_w * n_cols + 1.2, (panel_h + 0.7) * n_rows + 0.4), layout="constrained")
    grid = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in grid.flat[len(names):]:
        ax.set_visible(False)
    axes = list(grid.flat[: len(names)])
    image = None
    for ax, name, values in zip(axes, names, arrays):
        image = ax.imshow(values, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
        boxes = np.asarray(marked[name], dtype=bool) if marked and name in marked else np.zeros_like(values, bool)
        for r in range(n_layer):
            for c in range(n_head):
                value = values[r, c]
                if np.isnan(value):
                    continue
                if n_head <= 12:  # beyond that the numbers no longer fit in their cells
                    ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if value < 0.5 else "black")
                if boxes[r, c]:
                    ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        label = name.replace("_task", " (on the task)").replace("_", " ")
        level = (chance or {}).get(name)
        if level is not None and not math.isnan(level):
            label += f"\nuniform attention: {level:.2f}"
        ax.set_title(label, fontsize=9)
        ax.set_xticks(range(n_head))
        ax.set_xticklabels([str(h) for h in range(n_head)], fontsize=8)
        ax.set_yticks(range(n_layer))
        ax.set_yticklabels([f"L{layer}" for layer in range(n_layer)], fontsize=8)
        ax.set_xlabel("head", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.9, label="score (share of attention)")
    fig.suptitle(title + ("  (red box: the score gives the head its role)" if marked else ""), fontsize=11)
    return fig


def plot_logit_lens(accuracy: Sequence[float], mean_rank: Sequence[float],
                    labels: Optional[Sequence[str]] = None, title: str = "Logit lens") -> Figure:
    """Accuracy and mean rank of the correct answer token, read off the residual stream at each stage.

    Stage 0 is the embeddings, stage i the residual stream after block i-1, each read
    through the final layer norm and the unembedding: where the curve jumps is the
    block that makes the answer readable. The rank axis turns logarithmic above 1 when
    ranks reach past 10 (in a big vocabulary they fall by orders of magnitude) and stays
    linear below, so a mean rank near 0 is drawn at 0.
    """
    accuracy, mean_rank = np.asarray(accuracy, dtype=float), np.asarray(mean_rank, dtype=float)
    labels = list(labels or ["embed"] + [f"block {i}" for i in range(len(accuracy) - 1)])
    xs = np.arange(len(accuracy))
    fig = Figure(figsize=(max(6.0, 0.7 * len(xs) + 3.0), 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(xs, accuracy, marker="o")
    left.set_ylim(-0.02, 1.02)
    left.set_ylabel("correct answer token is the top prediction")
    right.plot(xs, mean_rank, marker="o", color="tab:orange")
    right.set_ylabel("mean rank of the correct token (0 = top)")
    if len(mean_rank) and np.nanmax(mean_rank) > 10:
        right.set_yscale("symlog", linthresh=1.0)
    for ax in (left, right):
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=45 if len(xs) > 6 else 0, fontsize=8)
        ax.set_xlabel("residual stream after")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    return fig


def plot_logit_attribution(heads: np.ndarray, mlps: Sequence[float], attn_bias: Optional[Sequence[float]] = None,
                           embed: Optional[float] = None, title: str = "Direct logit attribution") -> Figure:
    """Each component's direct contribution to the correct answer's logit: layer x (heads, MLP).

    Rows are layers; the columns are the heads, then the attention output bias (when
    given) and the MLP of that layer. Red writes toward the correct answer, blue against
    it, on a scale symmetric around 0; the embeddings' share is in the title.
    """
    heads = np.asarray(heads, dtype=float)
    n_layer, n_head = heads.shape
    columns = [f"H{h}" for h in range(n_head)]
    blocks = [heads]
    if attn_bias is not None:
        columns.append("bias")
        blocks.append(np.asarray(attn_bias, dtype=float)[:, None])
    columns.append("MLP")
    blocks.append(np.asarray(mlps, dtype=float)[:, None])
    values = np.concatenate(blocks, axis=1)
    limit = max(float(np.nanmax(np.abs(values))) if values.size else 0.0, 1e-6)
    n_cols = values.shape[1]
    fig = Figure(figsize=(0.75 * n_cols + 3.0, 0.55 * n_layer + 1.8), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest", aspect="auto")
    if n_cols <= 16:
        for r in range(n_layer):
            for c in range(n_cols):
                ax.text(c, r, f"{values[r, c]:+.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(values[r, c]) > 0.6 * limit else "black")
    ax.axvline(n_head - 0.5, color="black", linewidth=1.0)  # heads | the rest of the layer
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels(columns, fontsize=8)
    ax.set_yticks(range(n_layer))
    ax.set_yticklabels([f"layer {layer}" for layer in range(n_layer)], fontsize=8)
    embedded = f"\n(embeddings: {embed:+.2f})" if embed is not None else ""
    ax.set_title(title + embedded, fontsize=11)
    fig.colorbar(image, ax=ax, label="correct logit - mean logit")
    return fig


def plot_head_patterns(
    patterns: Patterns,
    tokens: Sequence[str],
    heads: Sequence[tuple[int, int]],
    boundary: Optional[int] = None,
    titles: Optional[Sequence[str]] = None,
    batch_index: int = 0,
    title: str = "Attention of the chosen heads",
) -> Figure:
    """The patterns of a few chosen (layer, head) pairs side by side, raw values on a 0..1 scale.

    For a model with many heads the full grid (plot_attention_grid) is too big to read;
    this shows only the heads worth looking at, each titled by ``titles`` when given.
    """
    arr = as_layer_head_array(patterns, batch_index)
    T = arr.shape[-1]
    if not heads:
        raise ValueError("plot_head_patterns: no heads to draw")
    panel = float(np.clip(0.22 * T, 2.6, 4.0))
    fig = Figure(figsize=(panel * len(heads) + 1.4, panel + 1.8), layout="constrained")
    axes = fig.subplots(1, len(heads), squeeze=False)[0]
    fontsize = _tick_fontsize(T, panel)
    image = None
    for i, (ax, (layer, head)) in enumerate(zip(axes, heads)):
        image = ax.imshow(arr[layer, head], cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
        _draw_boundary(ax, boundary, T)
        _label_axes(ax, tokens, fontsize, y=i == 0)
        ax.set_title(titles[i] if titles else f"L{layer}H{head}", fontsize=9)
        ax.set_xlabel("key (attends to)", fontsize=8)
    axes[0].set_ylabel("query (attends from)", fontsize=8)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="attention weight")
    fig.suptitle(title + ("  (dashed: prompt | answer)" if boundary else ""), fontsize=11)
    return fig


# -- training curves ----------------------------------------------------------------------------


def _points(records: Sequence[dict], key: str) -> list[tuple[float, float]]:
    """(iteration, value) of every record that has ``key`` (finite values only: a NaN loss is not drawn)."""
    return [(r["iter"], r[key]) for r in records
            if key in r and "iter" in r and r[key] is not None and math.isfinite(r[key])]


def no_points(ax, what: str) -> None:
    """Say so on an empty plot, instead of leaving a blank frame that looks like a bug."""
    ax.text(0.5, 0.5, f"no {what} logged yet", ha="center", va="center", transform=ax.transAxes, color="gray")


def _curve_figure(ylabel: str) -> tuple[Figure, Any]:
    """An empty (figure, axes) for a curve over training iterations."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def plot_training_loss(records: Sequence[dict]) -> Figure:
    """Training loss per logged iteration of a task run (log scale when every value is > 0)."""
    points = _points(records, "loss")
    fig, ax = _curve_figure("training loss (answer tokens)")
    if points:
        ax.plot(*zip(*points))
        if min(v for _, v in points) > 0:
            ax.set_yscale("log")  # the loss falls by orders of magnitude; a linear axis hides the tail
    else:
        no_points(ax, "training loss")
    return fig


def plot_accuracy(records: Sequence[dict]) -> Figure:
    """Held-out exact match at each evaluation of a task run, on a fixed 0..1 axis."""
    points = _points(records, "accuracy")
    fig, ax = _curve_figure("held-out exact match")
    if points:
        ax.plot(*zip(*points), marker=".")
    else:
        no_points(ax, "evaluation")
    ax.set_ylim(-0.02, 1.02)
    return fig


TEXT_CURVES = (  # record key, legend label, line style
    ("loss", "train (batch)", "-"),
    ("val_loss", "validation (first windows)", "o-"),
    ("whole_val_loss", "validation (whole split)", "*"),
)


def plot_text_losses(records: Sequence[dict]) -> Figure:
    """A text run's losses: train loss per logged step, the quick validation estimates
    (``val_loss``) and the final whole-split validation loss (``whole_val_loss``)."""
    fig, ax = _curve_figure("cross-entropy (nats per token)")
    drawn = False
    for key, label, style in TEXT_CURVES:
        points = _points(records, key)
        if points:
            ax.plot(*zip(*points), style, label=label, markersize=10 if style == "*" else 4)
            drawn = True
    if drawn:
        ax.legend()
    else:
        no_points(ax, "loss")
    return fig


def is_text_records(records: Sequence[dict]) -> bool:
    """Whether metric records come from a text run: they carry validation losses, not accuracy."""
    has_val = any("val_loss" in r or "whole_val_loss" in r for r in records)
    return has_val and not any("accuracy" in r for r in records)


def training_figures(
    records: Sequence[dict],
    model: Optional[GPT] = None,
    task: Optional[Task] = None,
    example: Optional[Example] = None,
    *,
    text: Optional[bool] = None,
) -> dict[str, Figure]:
    """A run's training pictures, by file name.

    Task run: ``loss.png`` and ``accuracy.png``, plus ``prediction.png`` (the predicted
    distribution at each answer position) and ``attention.png`` (the last block's
    pattern averaged over heads) for one (prompt, answer) ``example`` when ``model``,
    ``task`` and ``example`` are all given. Text run: ``loss.png`` with the train and
    validation curves. ``text`` says which; by default it is read off the records.
    The example views are the lab's own, drawn with the model in eval mode (its mode
    is restored afterwards).
    """
    if text is None:
        text = task is None and is_text_records(records)
    if text:
        return {"loss.png": plot_text_losses(records)}
    figures = {"loss.png": plot_training_loss(records), "accuracy.png": plot_accuracy(records)}
    if model is None or task is None or example is None:
        return figures
    prompt, answer = example
    was_training = model.training
    model.eval()  # dropout off: the picture shows what the model predicts, not a random draw
    try:
        views = example_views(model, task, prompt, answer)
    finally:
        model.train(was_training)
    figures["prediction.png"] = plot_answer_distributions(
        views["probs"], task.symbols, views["targets"], views["answer_positions"],
        title=f"{task.name}: {task.format(prompt)} -> {task.format(answer)} (red box: correct token)")
    figures["attention.png"] = plot_head_average(views["patterns"], views["tokens"], layer=-1,
                                                 boundary=views["boundary"])
    return figures
