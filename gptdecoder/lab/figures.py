"""Every matplotlib figure of the project: attention heatmaps, training curves, the bench.

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
training    plot_training_loss, plot_accuracy, plot_text_losses, training_figures
bench       bench_figure
"""
from __future__ import annotations

import math
import statistics
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
    n, vocab = p.shape
    width = float(np.clip(0.35 * vocab, 5.0, 14.0))
    fig = Figure(figsize=(width + 2.5, 0.45 * n + 1.8), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(p, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    for row, target in enumerate(targets):
        ax.add_patch(Rectangle((target - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    if vocab <= 16:
        for row in range(n):
            for col in range(vocab):
                ax.text(col, row, _cell_text(p[row, col]), ha="center", va="center", fontsize=8,
                        color="white" if p[row, col] < 0.5 else "black")
    # a model borrowed for a task may have more ids than the task has symbols: name those by id
    names = [symbols[i] if i < len(symbols) else f"<{i}>" for i in range(vocab)]
    row_labels = []
    for row, (pos, target) in enumerate(zip(positions, targets)):
        pick = int(p[row].argmax())
        mark = "ok" if pick == target else "WRONG"
        picked = f"{names[pick]} ({_cell_text(p[row, pick])})"
        row_labels.append(f"pos {pos}: want {names[target]}, picks {picked} {mark}")
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


# -- training curves ----------------------------------------------------------------------------


def _points(records: Sequence[dict], key: str) -> list[tuple[float, float]]:
    """(iteration, value) of every record that has ``key`` (finite values only: a NaN loss is not drawn)."""
    return [(r["iter"], r[key]) for r in records
            if key in r and "iter" in r and r[key] is not None and math.isfinite(r[key])]


def _no_points(ax, what: str) -> None:
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
        _no_points(ax, "training loss")
    return fig


def plot_accuracy(records: Sequence[dict]) -> Figure:
    """Held-out exact match at each evaluation of a task run, on a fixed 0..1 axis."""
    points = _points(records, "accuracy")
    fig, ax = _curve_figure("held-out exact match")
    if points:
        ax.plot(*zip(*points), marker=".")
    else:
        _no_points(ax, "evaluation")
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
        _no_points(ax, "loss")
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


# -- the bench ------------------------------------------------------------------------------------


def bench_figure(rows: Sequence[dict]) -> Figure:
    """Grouped bars: one group per task, one bar per model size (mean over seeds).

    Top: held-out exact match; bottom: training seconds. ``rows`` have the keys
    task, model, test_accuracy and train_seconds (one row per run).
    """
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig = Figure(figsize=(max(6.0, 0.75 * len(tasks) * max(1, len(models))), 6), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / max(1, len(models))
    for j, model in enumerate(models):
        xs = [i + j * width for i in range(len(tasks))]
        for ax, key in zip(axes, ("test_accuracy", "train_seconds")):
            means = []
            for task in tasks:
                values = [r[key] for r in rows if r["task"] == task and r["model"] == model]
                means.append(statistics.mean(values) if values else float("nan"))  # NaN: no bar
            ax.bar(xs, means, width, label=model)
    if not rows:
        _no_points(axes[0], "bench results")
    axes[0].set_ylabel("held-out exact match")
    axes[0].set_ylim(0, 1.02)
    if models:
        axes[0].legend()
    axes[1].set_ylabel("training seconds")
    axes[1].set_xticks([i + (len(models) - 1) * width / 2 for i in range(len(tasks))], tasks)
    return fig
