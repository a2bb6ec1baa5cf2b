"""The circuit as a picture: nodes in rows by layer, the circuit's edges as arrows.

Rows from the bottom: the inputs (token and position embeddings), then each layer's heads
and its MLP, then the logits. Every node of the model is drawn (faint when the circuit
does not use it), so the picture also shows what was left out. An edge into a head ends
at its query, key or value side (left, middle, right) in that input's colour; its width
grows with |score|. Built with the object API and returned as a Figure (no pyplot): the
command saves it as PNG and SVG.
"""
from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch

from gptdecoder.lab.circuit_graph import Graph, sender_stage
from gptdecoder.lab.circuits import circuit_nodes

INPUT_COLOURS = {"q": "#1f77b4", "k": "#ff7f0e", "v": "#2ca02c", "": "#555555"}  # "": an MLP or the logits
INPUT_NAMES = {"q": "query input", "k": "key input", "v": "value input", "": "MLP / logits input"}
SIDE = {"q": -0.22, "k": 0.0, "v": 0.22, "": 0.0}  # where on a head the edge lands


def node_rows(graph: Graph) -> list[list[str]]:
    """The nodes row by row from the bottom: inputs, then per layer its heads and its MLP, then logits."""
    rows: list[list[str]] = [[s for s in graph.senders if sender_stage(s) == 0]]
    for layer in range(graph.n_layer):
        rows.append([f"L{layer}H{h}" for h in range(graph.n_head)])
        rows.append([f"MLP{layer}"])
    rows.append(["logits"])
    return rows


def node_places(graph: Graph) -> dict[str, tuple[float, float]]:
    """(x, y) of every node: rows one unit apart, each row centred on x = 0."""
    places = {}
    for y, row in enumerate(node_rows(graph)):
        for i, name in enumerate(row):
            places[name] = (i - (len(row) - 1) / 2, float(y))
    return places


def circuit_figure(graph: Graph, edges: Sequence[tuple[str, str, float]], title: str = "") -> Figure:
    """The layered graph of a circuit: ``edges`` (sender, receiver, score) of ``graph`` (see
    the module docstring). ``Circuit.edges`` and report.json's edges both fit."""
    places = node_places(graph)
    width = max(len(row) for row in node_rows(graph))
    fig = Figure(figsize=(max(5.0, 1.25 * width + 1.5), 1.0 + 0.85 * len(node_rows(graph))), layout="constrained")
    ax = fig.subplots()
    used = set(circuit_nodes(edges))
    biggest = max((abs(score) for _, _, score in edges), default=1.0) or 1.0
    for sender, receiver, score in sorted(edges, key=lambda e: abs(e[2])):  # the strongest on top
        node, _, kind = receiver.partition(".")
        (x0, y0), (x1, y1) = places[sender], places[node]
        x1 += SIDE[kind]
        # straight up only to the next row; a longer straight edge would run through the nodes between
        bend = 0.12 if x0 != x1 else (0.0 if y1 - y0 <= 1 else 0.4)
        arrow = FancyArrowPatch(
            (x0, y0 + 0.12), (x1, y1 - 0.14), arrowstyle="-|>", mutation_scale=9,
            connectionstyle=f"arc3,rad={bend}",
            linewidth=0.6 + 4.4 * abs(score) / biggest, color=INPUT_COLOURS[kind], alpha=0.85, zorder=2,
        )
        ax.add_patch(arrow)
    for name, (x, y) in places.items():
        on = name in used
        ax.text(x, y, name, ha="center", va="center", zorder=3, fontsize=9,
                color="black" if on else "#aaaaaa", fontweight="bold" if on else "normal",
                bbox={"boxstyle": "round,pad=0.3", "facecolor": "#fff4d6" if on else "white",
                      "edgecolor": "#333333" if on else "#dddddd"})
    ax.set_xlim(-width / 2 - 0.1, width / 2 + 0.1)
    ax.set_ylim(-0.5, len(node_rows(graph)) - 0.5)
    ax.axis("off")
    kinds = sorted({receiver.partition(".")[2] for _, receiver, _ in edges}, key=list(SIDE).index)
    ax.legend(handles=[Line2D([], [], color=INPUT_COLOURS[k], linewidth=2.5, label=INPUT_NAMES[k]) for k in kinds],
              loc="upper left", fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    return fig
