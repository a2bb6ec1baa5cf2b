"""Pictures of attention: matplotlib heatmaps, bertviz views, and an offline HTML viewer.

Every view shows the raw pattern values, the upper triangle included: for a causal
model it must be exactly 0 there, and hiding it (as some viewers do) would also hide
a leaking mask. Patterns come from ``gptdecoder.ablate.capture_attention`` or from a
``run_with_cache`` cache: one [batch, heads, T, T] tensor per layer.

Figures are built with matplotlib's object API (``Figure()``, never pyplot), so no
display or GUI backend is involved: everything works on a headless machine, and a
notebook's own backend is left alone. ``save_figure`` renders with Agg.

``python -m gptdecoder.viz --run runs/config --out docs/img`` renders the README's
pictures from a trained run.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from gptdecoder.ablate import capture_attention, encode_examples, head_ablation_scores
from gptdecoder.errors import UserError
from gptdecoder.model import GPT
from gptdecoder.tasks import Task, build_example
from gptdecoder.train import load_run

Patterns = Union[torch.Tensor, Sequence[torch.Tensor]]  # [L, B, H, T, T] or L x [B, H, T, T]

CMAP = "viridis"  # perceptually uniform, and 0 (dark) is clearly different from small values


def as_layer_head_array(patterns: Patterns, batch_index: int = 0) -> np.ndarray:
    """Patterns of one example as a float array [layer, head, query, key].

    Accepts the list from capture_attention, a stacked [L, B, H, T, T] tensor, or an
    already unbatched [L, H, T, T] tensor.
    """
    if not isinstance(patterns, torch.Tensor):
        patterns = torch.stack([p.detach() for p in patterns])
    if patterns.dim() == 5:
        patterns = patterns[:, batch_index]
    if patterns.dim() != 4:
        raise ValueError(f"patterns of shape {tuple(patterns.shape)}: expected [L, B, H, T, T] or [L, H, T, T]")
    return patterns.detach().float().cpu().numpy()


def token_labels(ids: Sequence[int], symbols: Sequence[str]) -> list[str]:
    """Readable labels for token ids: the task's symbol for each id."""
    return [symbols[int(i)] for i in ids]


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
    ax.set_title(f"Layer {layer}: attention averaged over {arr.shape[1]} heads")
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
    row_labels = []
    for row, (pos, target) in enumerate(zip(positions, targets)):
        pick = int(p[row].argmax())
        mark = "ok" if pick == target else "WRONG"
        row_labels.append(f"pos {pos}: want {symbols[target]}, picks {symbols[pick]} ({_cell_text(p[row, pick])}) {mark}")
    ax.set_yticks(range(n))
    ax.set_yticklabels(row_labels, fontsize=8)
    ax.set_xticks(range(vocab))
    ax.set_xticklabels(symbols, rotation=90, fontsize=_tick_fontsize(vocab, width))
    ax.set_xlabel("next token")
    ax.set_title("Predicted probability at each answer position (red box: correct token)")
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


def save_figure(fig: Figure, path: Union[str, Path], dpi: int = 110) -> Path:
    """Write a figure; the format follows the suffix (.png, or .svg on request)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# -- bertviz ---------------------------------------------------------------------------------


def bertviz_attention(patterns: Patterns, batch_index: int = 0) -> tuple[torch.Tensor, ...]:
    """Our patterns in bertviz's format: a tuple with one [1, heads, T, T] tensor per layer."""
    arr = as_layer_head_array(patterns, batch_index)
    return tuple(torch.from_numpy(layer[None].copy()) for layer in arr)


def bertviz_html(patterns: Patterns, tokens: Sequence[str], view: str = "head", batch_index: int = 0) -> str:
    """The HTML snippet of bertviz's ``head_view`` or ``model_view`` for our patterns.

    bertviz loads require.js, d3 and jQuery from a CDN, so the result needs network
    access to render; ``attention_viewer_html`` is the offline alternative.
    """
    from bertviz import head_view, model_view  # imported here: IPython is only needed for bertviz

    views = {"head": head_view, "model": model_view}
    if view not in views:
        raise ValueError(f"view={view!r}: expected 'head' or 'model'")
    result = views[view](bertviz_attention(patterns, batch_index), list(tokens), html_action="return")
    return result.data


def write_bertviz_html(
    path: Union[str, Path], patterns: Patterns, tokens: Sequence[str], view: str = "head", batch_index: int = 0
) -> Path:
    """Write a bertviz view as a standalone HTML page (outside Jupyter); open it in a browser."""
    body = bertviz_html(patterns, tokens, view, batch_index)
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>bertviz {view} view</title></head>"
            f"<body>\n{body}\n</body></html>\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# -- our offline viewer ----------------------------------------------------------------------

_VIEWER_TEMPLATE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
 body { font-family: sans-serif; margin: 1em; }
 table.attn { border-collapse: collapse; }
 table.attn td { width: 22px; height: 22px; padding: 0; border: 1px solid #eee; }
 table.attn th { font-weight: normal; font-size: 12px; padding: 0 3px; }
 table.attn thead th { writing-mode: vertical-rl; transform: rotate(180deg); }
 td.boundary { border-left: 2px dashed #c00 !important; }
 #info { margin: 0.6em 0; font-family: monospace; min-height: 1.3em; }
</style></head>
<body>
<h3>__TITLE__</h3>
<p>Raw attention weights, upper triangle included (a causal model must show exact zeros there).
Rows: the token that attends (query); columns: the tokens it attends to (keys).__BOUNDARY_NOTE__</p>
<label>Layer <select id="layer"></select></label>
<label>Head <select id="head"></select></label>
<div id="info">hover a cell to see its weight</div>
<table class="attn" id="grid"></table>
<script id="attention-data" type="application/json">__DATA__</script>
<script>
const data = JSON.parse(document.getElementById("attention-data").textContent);
const layerSel = document.getElementById("layer"), headSel = document.getElementById("head");
const grid = document.getElementById("grid"), info = document.getElementById("info");
const T = data.tokens.length, nHead = data.patterns[0].length;
data.patterns.forEach((_, l) => layerSel.add(new Option(l, l)));
for (let h = 0; h < nHead; h++) headSel.add(new Option(h, h));
headSel.add(new Option("mean of heads", "mean"));

function matrix() {  // the selected layer's pattern, or its mean over heads
  const layer = data.patterns[+layerSel.value];
  if (headSel.value !== "mean") return layer[+headSel.value];
  return layer[0].map((row, q) => row.map((_, k) => layer.reduce((s, head) => s + head[q][k], 0) / nHead));
}
function colour(w) {  // white (0) to dark blue (1); any value above 0 is visibly tinted
  const t = Math.min(Math.max(w, 0), 1), light = Math.round(255 - 215 * Math.sqrt(t));
  return `rgb(${light}, ${light}, ${Math.round(255 - 120 * Math.sqrt(t))})`;
}
function draw() {
  const m = matrix();
  grid.innerHTML = "";
  const head = grid.createTHead().insertRow();
  head.appendChild(document.createElement("th"));
  data.tokens.forEach((tok, k) => { const th = document.createElement("th"); th.textContent = `${k} ${tok}`; head.appendChild(th); });
  const body = grid.createTBody();
  m.forEach((row, q) => {
    const tr = body.insertRow(), th = document.createElement("th");
    th.textContent = `${q} ${data.tokens[q]}`;
    tr.appendChild(th);
    row.forEach((w, k) => {
      const td = tr.insertCell();
      td.style.background = colour(w);
      if (k === data.boundary) td.classList.add("boundary");
      td.onmouseenter = () => {
        info.textContent = `query ${q} (${data.tokens[q]}) -> key ${k} (${data.tokens[k]}): ${+w.toPrecision(6)}` +
          (k > q ? "   [future position: should be 0]" : "");
      };
    });
  });
}
layerSel.onchange = draw;
headSel.onchange = draw;
draw();
</script>
</body></html>
"""


def attention_viewer_html(
    patterns: Patterns,
    tokens: Sequence[str],
    title: str = "Attention viewer",
    boundary: Optional[int] = None,
    batch_index: int = 0,
) -> str:
    """A self-contained HTML page (no network, no CDN) to browse every layer and head.

    The weights are embedded as JSON with 6 significant digits -- significant, not
    decimal places, so a tiny leak like 3e-9 above the diagonal stays visible.
    """
    arr = as_layer_head_array(patterns, batch_index)
    if arr.shape[-1] != len(tokens):
        raise ValueError(f"{len(tokens)} tokens for patterns over {arr.shape[-1]} positions")
    rounded = [[[[float(f"{w:.6g}") for w in row] for row in head] for head in layer] for layer in arr]
    payload = json.dumps({"tokens": list(tokens), "patterns": rounded, "boundary": boundary})
    payload = payload.replace("</", "<\\/")  # a token like "</script>" must not end the data block
    note = " The dashed red line marks where the answer starts." if boundary else ""
    return (_VIEWER_TEMPLATE.replace("__TITLE__", html.escape(title))
            .replace("__BOUNDARY_NOTE__", note)
            .replace("__DATA__", payload))


def write_attention_viewer(
    path: Union[str, Path],
    patterns: Patterns,
    tokens: Sequence[str],
    title: str = "Attention viewer",
    boundary: Optional[int] = None,
    batch_index: int = 0,
) -> Path:
    """Write ``attention_viewer_html`` to a file; it opens offline in any browser."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(attention_viewer_html(patterns, tokens, title, boundary, batch_index), encoding="utf-8")
    return path


# -- the README's pictures from a trained run --------------------------------------------------


def example_views(model: GPT, task: Task, prompt: list[int], answer: list[int]) -> dict:
    """Everything the pictures of one example need: patterns, labels, boundary, answer probabilities."""
    x, y, mask = build_example(prompt, answer)
    idx = torch.tensor([x])
    patterns = capture_attention(model, idx)
    with torch.no_grad():
        logits, _ = model(idx)
    answer_positions = [i for i, m in enumerate(mask) if m]
    return {
        "patterns": patterns,
        "tokens": token_labels(x, task.symbols),
        "boundary": len(prompt),  # x[len(prompt)] is the first answer token the model reads
        "answer_positions": answer_positions,
        "targets": [y[i] for i in answer_positions],
        "probs": logits[0, answer_positions].softmax(dim=-1),
    }


def most_varied(examples: Sequence[tuple[list[int], list[int]]]) -> int:
    """Index of the first example whose prompt has the most distinct tokens.

    A prompt like 0 0 0 0 0 2 makes dull pictures; one that uses every symbol shows
    how the model tells them apart.
    """
    return max(range(len(examples)), key=lambda i: (len(set(examples[i][0])), -i))


def render_run_images(run_dir: Union[str, Path], out: Union[str, Path], example: Optional[int] = None,
                      fmt: str = "png", ablation_examples: int = 500, html_views: bool = False) -> list[Path]:
    """Render the attention lab's pictures for one held-out example of a trained task run.

    ``example`` indexes ``task.test_examples(ablation_examples)``; by default the most
    varied prompt is drawn. The head-ablation heatmap uses all those examples.
    ``html_views`` also writes our offline viewer and bertviz's two views as HTML files.
    """
    run = load_run(run_dir, device="cpu")
    if run.task is None:
        raise UserError(f"run {str(run_dir)!r} was trained on text; these pictures need a task run")
    model, task = run.model.eval(), run.task
    examples = task.test_examples(ablation_examples, seed=0)
    if example is None:
        example = most_varied(examples)
    if not 0 <= example < len(examples):
        raise UserError(f"--example {example}: there are {len(examples)} held-out examples")
    prompt, answer = examples[example]
    views = example_views(model, task, prompt, answer)
    tokens, boundary, patterns = views["tokens"], views["boundary"], views["patterns"]
    middle = views["answer_positions"][len(views["answer_positions"]) // 2]
    out = Path(out)
    baseline, scores = head_ablation_scores(model, encode_examples(examples))
    figures = {
        "attention_all_heads": plot_attention_grid(
            patterns, tokens, boundary, title=f"{task.name}: attention of every layer and head"),
        "attention_last_block": plot_head_average(patterns, tokens, layer=-1, boundary=boundary),
        "attention_from_token": plot_token_attention(patterns, tokens, middle, boundary),
        "answer_distribution": plot_answer_distributions(
            views["probs"], task.symbols, views["targets"], views["answer_positions"]),
        "head_ablation": plot_head_scores(
            scores.numpy(), f"{task.name}: held-out accuracy with one head zero-ablated",
            "exact-match accuracy", baseline=baseline),
    }
    paths = [save_figure(fig, out / f"{name}.{fmt}") for name, fig in figures.items()]
    if html_views:
        title = f"{task.name}: {task.format(prompt)} -> {task.format(answer)}"
        paths.append(write_attention_viewer(out / "attention_viewer.html", patterns, tokens, title, boundary))
        for view in ("head", "model"):
            paths.append(write_bertviz_html(out / f"bertviz_{view}_view.html", patterns, tokens, view))
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m gptdecoder.viz --run DIR --out DIR``: write the pictures, print their paths."""
    parser = argparse.ArgumentParser(prog="python -m gptdecoder.viz", description=main.__doc__)
    parser.add_argument("--run", default="runs/config", help="trained task run (default runs/config)")
    parser.add_argument("--out", default="docs/img", help="output directory (default docs/img)")
    parser.add_argument("--example", type=int, help="which held-out example to draw (default: the most varied)")
    parser.add_argument("--format", choices=("png", "svg"), default="png")
    parser.add_argument("--html", action="store_true",
                        help="also write attention_viewer.html (offline) and bertviz's head and model views")
    args = parser.parse_args(argv)
    try:
        paths = render_run_images(args.run, args.out, args.example, args.format, html_views=args.html)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
