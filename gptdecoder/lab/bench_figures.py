"""The figures of a bench grid (gptdecoder.bench): accuracy and training time per task and
variant, and exact match against test length. Built like every figure of the lab: the
object API, no pyplot, a ``Figure`` returned for the command to save."""
from __future__ import annotations

import math
import statistics
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gptdecoder.lab.figures import no_points

# a variant that did not learn its training lengths is drawn dashed and faded
LEARNED_STYLE = {"linestyle": "-", "alpha": 1.0}
NOT_LEARNED_STYLE = {"linestyle": "--", "alpha": 0.45}


def bench_figure(rows: Sequence[dict]) -> Figure:
    """Grouped bars: one group per task, one bar per model variant (mean over seeds).

    Top: held-out exact match; bottom: training seconds. ``rows`` have the keys
    task, model (the variant's label), test_accuracy and train_seconds (one row per run).
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
        no_points(axes[0], "bench results")
    axes[0].set_ylabel("held-out exact match")
    axes[0].set_ylim(0, 1.02)
    if models:
        axes[0].legend()
    axes[1].set_ylabel("training seconds")
    axes[1].set_xticks([i + (len(models) - 1) * width / 2 for i in range(len(tasks))], tasks)
    return fig


def bench_length_figure(points: Sequence[dict], titles: Optional[dict] = None) -> Figure:
    """Held-out exact match against test length: one panel per base config (task), one
    line per variant -- the mean over seeds, with a band from the lowest to the highest
    seed -- and a dotted line at the longest training length.

    ``points`` (``gptdecoder.bench.length_points``): one entry per variant with keys base,
    variant (a label), train_max_length and accuracy {test length: [exact match per seed]}.
    ``titles`` maps a base to its panel title (default: the base itself).
    """
    bases = list(dict.fromkeys(p["base"] for p in points))
    variants = list(dict.fromkeys(p["variant"] for p in points))
    colours = {v: f"C{i % 10}" for i, v in enumerate(variants)}
    cols = min(3, max(1, len(bases)))
    rows = max(1, math.ceil(len(bases) / cols))
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows + 0.4 + 0.25 * len(variants)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[len(bases):]:
        ax.set_visible(False)
    if not bases:
        axes[0].set_visible(True)
        no_points(axes[0], "length results")
    for ax, base in zip(axes, bases):
        drawn = False
        train_lengths = set()
        for point in (p for p in points if p["base"] == base):
            lengths = sorted(point["accuracy"])
            if not lengths:
                continue
            seeds = [point["accuracy"][n] for n in lengths]
            means = [statistics.mean(s) for s in seeds]
            colour = colours[point["variant"]]
            style = LEARNED_STYLE if point.get("learned", True) else NOT_LEARNED_STYLE
            ax.plot(lengths, means, marker="o", markersize=3, color=colour, label=point["variant"], **style)
            if any(len(s) > 1 for s in seeds):
                ax.fill_between(lengths, [min(s) for s in seeds], [max(s) for s in seeds], color=colour,
                                alpha=0.2, linewidth=0)
            if point["train_max_length"] is not None:
                train_lengths.add(point["train_max_length"])
            drawn = True
        for n in sorted(train_lengths):
            ax.axvline(n, color="grey", linestyle=":", linewidth=1.0)
        if not drawn:
            no_points(ax, "length results")
        ax.set_title((titles or {}).get(base, base), fontsize=10)
        ax.set_xlabel("test length (dotted: longest trained)")
        ax.set_ylabel("exact match")
        ax.set_ylim(-0.02, 1.02)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if variants:
        not_learned = {p["variant"] for p in points if not p.get("learned", True)}
        handles = [Line2D([], [], color=colours[v], marker="o", markersize=3, label=v,
                          **(NOT_LEARNED_STYLE if v in not_learned else LEARNED_STYLE)) for v in variants]
        title = "variant (line: mean over seeds, band: min-max)"
        if not_learned:  # their numbers at longer lengths mean nothing, but hiding them would hide that they failed
            title += "\ndashed: did not learn its training lengths (held-out below learned_threshold)"
        fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(variants)), fontsize=8,
                   title=title, title_fontsize=8)
    return fig
