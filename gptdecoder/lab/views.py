"""Interactive attention views as HTML: bertviz adapters and an offline viewer.

The functions return strings (HTML) or bertviz's input format; the commands write
them to files. Like the figures, every view shows the raw
pattern values, upper triangle included.

* ``bertviz_attention`` -- our patterns in bertviz's format (a tuple with one
  [1, heads, T, T] tensor per layer), for ``head_view`` / ``model_view`` in Jupyter.
* ``bertviz_html`` / ``bertviz_page`` -- bertviz's view as an HTML snippet or page;
  bertviz loads its JavaScript from a CDN, so these need network access to render.
* ``attention_viewer_html`` -- our own one-file viewer: no network, no CDN, layer and
  head selectors, the mean over heads, raw values on hover.
"""
from __future__ import annotations

import html
import json
from typing import Optional, Sequence, Union

import torch

from gptdecoder.lab.capture import Patterns, as_layer_head_array

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


def bertviz_page(patterns: Patterns, tokens: Sequence[str], view: str = "head", batch_index: int = 0) -> str:
    """A bertviz view as a standalone HTML page (for use outside Jupyter)."""
    body = bertviz_html(patterns, tokens, view, batch_index)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>bertviz {view} view</title></head>"
            f"<body>\n{body}\n</body></html>\n")


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
