"""Interactive attention views as HTML: bertviz adapters and an offline viewer.

The functions return strings (HTML) or bertviz's input format; the commands write
them to files. Like the figures, every view shows the raw
pattern values, upper triangle included.

* ``bertviz_attention`` -- our patterns in bertviz's format (a tuple with one
  [1, heads, T, T] tensor per layer), for ``head_view`` / ``model_view`` in Jupyter.
* ``bertviz_html`` / ``bertviz_page`` -- bertviz's view as an HTML snippet or page;
  bertviz loads its JavaScript from a CDN, so these need network access to render.
* ``attention_viewer_html`` -- our own one-file viewer: no network, no CDN. Three views
  (matrix, head lines, every layer x head as a thumbnail) share the layer and head
  selectors; hover shows the weight, the answer boundary is marked in each, and a
  causal check flags any nonzero weight on a later key.
"""
from __future__ import annotations

import html
import json
import math
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
#
# One HTML file: the weights as one JSON block, plain JavaScript (no library, no network)
# draws three views of them. The page is built from the three constants below; the
# placeholders __NAME__ are filled in by attention_viewer_html.

ROUNDING_DIGITS = 3  # significant digits kept in the page (see round_weight)

_VIEWER_CSS = """
 body { font-family: sans-serif; margin: 1em; color: #222; }
 p.about { max-width: 62em; font-size: 14px; margin: 0.4em 0; }
 #causal-check { font-size: 14px; margin: 0.4em 0; }
 #causal-check.pass { color: #060; }
 #causal-check.fail { color: #c00; font-weight: bold; }
 #controls { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: center; margin-top: 0.8em; }
 #tabs button { padding: 4px 10px; border: 1px solid #888; background: #f4f4f4; cursor: pointer; }
 #tabs button.active { background: #246; border-color: #246; color: white; }
 /* two lines high, so that a hover (which rewrites it) rarely moves the drawing below */
 #info { position: sticky; top: 0; z-index: 1; background: white; margin: 0.6em 0; padding: 2px 0;
         font-family: monospace; min-height: 2.6em; white-space: pre-wrap; }
 .caption { font-size: 13px; color: #444; margin: 0.3em 0 0.5em; }
 /* matrix view */
 table.attn { border-collapse: collapse; }
 table.attn td { width: 22px; height: 22px; padding: 0; border: 1px solid #eee; }
 table.attn th { font-weight: normal; font-size: 12px; padding: 0 3px; white-space: nowrap; }
 table.attn thead th { writing-mode: vertical-rl; transform: rotate(180deg); }
 td.boundary-col { border-left: 2px dashed #c00 !important; }
 td.boundary-row { border-top: 2px dashed #c00 !important; }
 td.leak { outline: 2px solid #f00; outline-offset: -3px; }
 table.attn td:hover { box-shadow: inset 0 0 0 2px #f90; }  /* the cell the info line describes */
 /* head view */
 #head-boxes label { margin-right: 0.8em; font-size: 14px; }
 #head-boxes button { margin-right: 0.4em; }
 .swatch { display: inline-block; width: 12px; height: 12px; margin: 0 3px; vertical-align: middle; }
 #head-svg { flex-shrink: 0; }
 #head-svg text { font: 12px monospace; }
 #head-svg text.tok { cursor: default; }
 #head-svg text.hl { font-weight: bold; }
 #head-svg text.boundary { fill: #c00; paint-order: stroke; stroke: white; stroke-width: 3px; }
 #head-svg line.attn { stroke-width: 2; }
 .head-row { display: flex; align-items: flex-start; gap: 1em; }
 #head-weights { font-size: 12px; margin: 30px 0 0; white-space: pre-wrap; max-width: 40em; }
 #head-svg.focus line.attn:not(.hl) { display: none; }
 /* model view */
 #model-grid { display: grid; gap: 6px; align-items: center; justify-items: center; justify-content: start; }
 #model-grid canvas { width: 96px; height: 96px; image-rendering: pixelated; border: 1px solid #ccc; cursor: pointer; }
 #model-grid canvas.selected { outline: 3px solid #246; }
 #model-grid div { font-size: 12px; }
"""

_VIEWER_BODY = """
<h3>__TITLE__</h3>
<p class="about">Raw attention weights, upper triangle included: a causal model must have exactly 0
wherever a query looks at a later key. The query is the token that attends (matrix rows, left column);
the keys are the tokens it attends to (matrix columns, right column).__BOUNDARY_NOTE__</p>
<p class="about" id="rounding">__ROUNDING_NOTE__</p>
<p id="causal-check"></p>
<div id="controls">
 <span id="tabs" role="tablist">
  <button type="button" role="tab" data-view="matrix" id="tab-matrix">Matrix view</button>
  <button type="button" role="tab" data-view="head" id="tab-head">Head view</button>
  <button type="button" role="tab" data-view="model" id="tab-model">Model view</button>
 </span>
 <label>Layer <select id="layer"></select></label>
 <label>Head <select id="head"></select></label>
</div>
<div id="info"></div>
<section id="view-matrix">
 <div class="caption" id="matrix-caption"></div>
 <table class="attn" id="grid"></table>
</section>
<section id="view-head" hidden>
 <div id="head-boxes"></div>
 <div class="caption" id="head-caption"></div>
 <div class="head-row"><svg id="head-svg"></svg><pre id="head-weights"></pre></div>
</section>
<section id="view-model" hidden>
 <div class="caption">Every layer (rows) and head (columns) as a small matrix, drawn like the matrix view.
 Click one to open it in the matrix view.</div>
 <div id="model-grid"></div>
</section>
"""

_VIEWER_JS = r"""
"use strict";
// The attention viewer: three views of one JSON block, plain DOM, SVG and canvas.
// data.patterns[layer][head][query][key] is a weight rounded as the page says (null
// stands for NaN); data.boundary is the first answer position, or null.
const data = JSON.parse(document.getElementById("attention-data").textContent);
const tokens = data.tokens, T = tokens.length, boundary = data.boundary;
const nLayer = data.patterns.length, nHead = data.patterns[0].length;
const allHeads = [...Array(nHead).keys()];

// What is selected, shared by the three views: the view shown, one layer, a set of heads.
const state = { view: "matrix", layer: 0, heads: [0] };

const $ = id => document.getElementById(id);
const layerSel = $("layer"), headSel = $("head"), info = $("info");
const tabs = [...document.querySelectorAll("#tabs button")];
const HINTS = {
  matrix: "hover a cell to see its weight",
  head: "hover a line or a token to see weights",
  model: "hover a thumbnail to see a weight; click it to open that layer and head in the matrix view",
};

// -- formatting and colours ------------------------------------------------------------------

// The stored weights already have data.digits significant digits, so this prints them
// unchanged; means over heads are rounded the same way. NaN is stored as null.
function fmt(w) {
  return w === null ? "NaN" : String(+w.toPrecision(data.digits));
}
// a task that couples positions gives each token its own position id: shown as "@id"
const at = i => (data.position_ids ? ` @${data.position_ids[i]}` : "");
const label = i => `${i} ${tokens[i]}${at(i)}`;        // a token in the table headers
const quoted = i => `${i} "${tokens[i]}"${at(i)}`;     // a token in the info line
const short = s => (s.length > 14 ? s.slice(0, 13) + "\u2026" : s);  // long (BPE) tokens in the head view

// White (0) to dark blue (1) on a square-root scale so small weights still show; any
// nonzero weight gets at least a faint tint, so it never looks like an exact 0.
// NaN is magenta: impossible to miss.
function colour(w) {
  if (w === null) return "rgb(255, 0, 255)";
  const t = Math.sqrt(Math.min(Math.max(w, 0), 1));
  let rg = Math.round(255 - 215 * t), b = Math.round(255 - 120 * t);
  if (w > 0) { rg = Math.min(rg, 240); b = Math.min(b, 252); }
  return `rgb(${rg}, ${rg}, ${b})`;
}
const LEAK = "rgb(255, 0, 0)";  // a nonzero weight on a later key (a leaking causal mask)

// One colour per head in the head view, spread round the colour wheel by the golden
// angle so that neighbouring heads differ.
const headColour = h => `hsl(${(210 + 137.5 * h) % 360}, 70%, 40%)`;

// One head's weight, or the mean over a set of heads (NaN if any of them is NaN).
function weight(layer, heads, q, k) {
  if (heads.length === 1) return data.patterns[layer][heads[0]][q][k];
  let sum = 0;
  for (const h of heads) {
    const w = data.patterns[layer][h][q][k];
    if (w === null) return null;
    sum += w;
  }
  return sum / heads.length;
}
function headsText(heads) {
  if (heads.length === 0) return "no head";
  return heads.length === 1 ? `head ${heads[0]}` : `mean of heads ${heads.join(", ")}`;
}

// -- the causal check over every layer and head ------------------------------------------------

const leaks = [];
data.patterns.forEach((layer, l) => layer.forEach((head, h) => head.forEach((row, q) => row.forEach((w, k) => {
  if (k > q && w !== 0) leaks.push({ l, h, q, k, w });
}))));
{
  const check = $("causal-check");
  if (leaks.length === 0) {
    check.className = "pass";
    check.textContent = "Causal check: every weight on a later key is exactly 0, in every layer and head.";
  } else {
    const first = leaks[0];
    check.className = "fail";
    check.textContent = `Causal check FAILED: ${leaks.length} nonzero weight(s) on a later key, first at ` +
      `layer ${first.l}, head ${first.h}, query ${first.q} -> key ${first.k}: ${fmt(first.w)}. ` +
      "They are outlined in red in the matrix view and drawn red in the model view.";
  }
}

// -- shared controls ----------------------------------------------------------------------------

for (let l = 0; l < nLayer; l++) layerSel.add(new Option(`${l}`, `${l}`));
for (const h of allHeads) headSel.add(new Option(`${h}`, `${h}`));
headSel.add(new Option("all heads", "all"));
// Shown only while the head view's checkboxes select some but not all heads.
const someHeads = new Option("", "some");
someHeads.disabled = true;
headSel.add(someHeads);

layerSel.onchange = () => { state.layer = +layerSel.value; render(); };
headSel.onchange = () => { state.heads = headSel.value === "all" ? allHeads : [+headSel.value]; render(); };
for (const tab of tabs) tab.onclick = () => { state.view = tab.dataset.view; render(); };

// Draw the selected view and make the controls show the state.
function render() {
  layerSel.value = `${state.layer}`;
  const heads = state.heads;
  if (heads.length === 1) headSel.value = `${heads[0]}`;
  else if (heads.length === nHead) headSel.value = "all";
  else {
    someHeads.text = heads.length ? `heads ${heads.join(", ")}` : "no head";
    headSel.value = "some";
  }
  someHeads.hidden = headSel.value !== "some";
  for (const tab of tabs) {
    const on = tab.dataset.view === state.view;
    tab.classList.toggle("active", on);
    tab.setAttribute("aria-selected", on);
  }
  for (const view of ["matrix", "head", "model"]) $(`view-${view}`).hidden = view !== state.view;
  info.textContent = HINTS[state.view];
  if (state.view === "matrix") drawMatrix();
  else if (state.view === "head") drawHeadView();
  else markModelSelection();
}

// -- matrix view: a table of cells coloured by weight ------------------------------------------

const grid = $("grid");
let shown = null;  // the weights the table shows, [query][key], for the hover handler

function drawMatrix() {
  const { layer, heads } = state;
  $("matrix-caption").textContent = `Layer ${layer}, ${headsText(heads)}` +
    (heads.length ? "" : ": tick a head in the head view or pick one above");
  grid.innerHTML = "";
  shown = null;
  if (!heads.length) return;
  shown = tokens.map((_, q) => tokens.map((_, k) => weight(layer, heads, q, k)));
  const top = grid.createTHead().insertRow();
  top.appendChild(document.createElement("th"));
  tokens.forEach((_, k) => {
    const th = document.createElement("th");
    th.textContent = label(k);
    top.appendChild(th);
  });
  const body = grid.createTBody();
  shown.forEach((row, q) => {
    const tr = body.insertRow(), th = document.createElement("th");
    th.textContent = label(q);
    tr.appendChild(th);
    row.forEach((w, k) => {
      const td = tr.insertCell();
      td.style.background = colour(w);
      td.dataset.q = q;
      td.dataset.k = k;
      if (k === boundary) td.classList.add("boundary-col");  // the answer's keys start here
      if (q === boundary) td.classList.add("boundary-row");  // the answer's queries start here
      if (k > q && w !== 0) td.classList.add("leak");
    });
  });
}

// One hover handler for the whole table rather than one per cell (long inputs have many).
grid.addEventListener("mouseover", event => {
  const td = event.target.closest("td");
  if (!td || !shown) return;
  const q = +td.dataset.q, k = +td.dataset.k;
  info.textContent = `layer ${state.layer}, ${headsText(state.heads)}: query ${quoted(q)} -> key ${quoted(k)}: ` +
    `weight ${fmt(shown[q][k])}` + (k > q ? "   [a later key: must be 0]" : "");
});

// -- head view: lines from each query (left) to each key (right), one colour per head ---------

const svg = $("head-svg"), SVG_NS = svg.namespaceURI;
const ROW = 20, LABEL_W = 120, SPAN = 260, TOP = 30;  // row height, label column, gap between columns
const leftX = LABEL_W, rightX = LABEL_W + SPAN;
const rowY = i => TOP + i * ROW + ROW / 2;

function svgElement(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

// The head checkboxes (built once): ticking them edits state.heads.
const boxes = [];
{
  const holder = $("head-boxes");
  for (const h of allHeads) {
    const box = document.createElement("input"), swatch = document.createElement("span");
    const lab = document.createElement("label");
    box.type = "checkbox";
    box.id = `head-box-${h}`;
    box.onchange = () => {
      state.heads = allHeads.filter(x => (x === h ? box.checked : state.heads.includes(x)));
      render();
    };
    swatch.className = "swatch";
    swatch.style.background = headColour(h);
    lab.append(box, swatch, `head ${h}`);
    holder.append(lab);
    boxes.push(box);
  }
  for (const [text, heads] of [["all", allHeads], ["none", []]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.onclick = () => { state.heads = heads; render(); };
    holder.append(button);
  }
}

function drawHeadView() {
  const { layer, heads } = state;
  boxes.forEach((box, h) => { box.checked = heads.includes(h); });
  $("head-caption").textContent = `Layer ${layer}, ` +
    (heads.length ? `head${heads.length > 1 ? "s" : ""} ${heads.join(", ")}` : "no head ticked") +
    ": line opacity = weight. Exact zeros are not drawn; lines to a later key (a leak) are dashed and always visible.";
  const width = rightX + LABEL_W + 20, height = TOP + T * ROW + 10;
  svg.innerHTML = "";
  svg.classList.remove("focus");
  headWeights.textContent = "";
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.append(svgElement("text", { x: leftX - 8, y: 14, "text-anchor": "end" }, "query (attends)"));
  svg.append(svgElement("text", { x: rightX + 8, y: 14 }, "key (attended to)"));
  for (const h of heads) {
    const P = data.patterns[layer][h];
    P.forEach((row, q) => row.forEach((w, k) => {
      if (w === 0) return;
      const later = k > q;
      const line = svgElement("line", {
        x1: leftX, y1: rowY(q), x2: rightX, y2: rowY(k), class: later ? "attn leak" : "attn",
        stroke: w === null ? "rgb(255, 0, 255)" : headColour(h),
        "stroke-opacity": w === null ? 1 : later ? Math.max(w, 0.6) : w,
        "data-h": h, "data-q": q, "data-k": k,
      });
      if (later) line.setAttribute("stroke-dasharray", "5 3");
      svg.append(line);
    }));
  }
  if (boundary !== null) {  // the same position in both columns: one line across
    const y = TOP + boundary * ROW;
    svg.append(svgElement("line", { x1: 0, y1: y, x2: width, y2: y, class: "boundary",
      stroke: "#c00", "stroke-dasharray": "6 4" }));
    svg.append(svgElement("text", { x: leftX + SPAN / 2, y: y - 3, "text-anchor": "middle", class: "boundary" },
      "answer starts \u2193"));
  }
  tokens.forEach((tok, i) => {
    for (const [side, x, anchor] of [["q", leftX - 8, "end"], ["k", rightX + 8, "start"]]) {
      const text = svgElement("text", { x, y: rowY(i) + 4, "text-anchor": anchor, class: "tok",
        "data-side": side, "data-i": i }, short(label(i)));
      text.append(svgElement("title", {}, label(i)));
      svg.append(text);
    }
  });
}

// Hover a line: its weight. Hover a token: only its lines stay, and the panel beside the
// drawing lists each shown head's weights from that query (or to that key).
const headWeights = $("head-weights");
svg.addEventListener("mouseover", event => {
  const el = event.target.closest("line.attn, text.tok");
  if (!el) return;
  const layer = data.patterns[state.layer];
  if (el.matches("line")) {
    const h = +el.dataset.h, q = +el.dataset.q, k = +el.dataset.k;
    info.textContent = `layer ${state.layer}, head ${h}: query ${quoted(q)} -> key ${quoted(k)}: ` +
      `weight ${fmt(layer[h][q][k])}` + (k > q ? "   [a later key: must be 0]" : "");
    return;
  }
  const side = el.dataset.side, i = +el.dataset.i;
  svg.classList.add("focus");
  el.classList.add("hl");
  svg.querySelectorAll(`line.attn[data-${side}="${i}"]`).forEach(line => line.classList.add("hl"));
  const lines = state.heads.map(h => {
    const listed = tokens.map((_, j) => {
      const w = side === "q" ? layer[h][i][j] : layer[h][j][i];
      return w === 0 ? null : `${quoted(j)} ${fmt(w)}`;
    }).filter(Boolean);
    return `head ${h}: ${listed.join(", ") || "all 0"}`;
  });
  const what = side === "q" ? `query ${quoted(i)} attends to` : `key ${quoted(i)} is attended by`;
  info.textContent = `layer ${state.layer}: ${what}, per head, beside the drawing (exact zeros left out)`;
  headWeights.textContent = `${what}:\n` + lines.join("\n");
});
svg.addEventListener("mouseout", event => {
  if (!event.target.closest("text.tok")) return;
  svg.classList.remove("focus");
  svg.querySelectorAll(".hl").forEach(el => el.classList.remove("hl"));
  headWeights.textContent = "";
});

// -- model view: every layer x head as a thumbnail; a click opens it in the matrix view ---------

const THUMB = 96;  // CSS size of a thumbnail; long inputs get one canvas pixel per weight
const thumbnails = [];

function drawThumbnail(canvas, l, h) {
  const P = data.patterns[l][h], size = Math.max(THUMB, T), cell = size / T;
  canvas.width = canvas.height = size;
  const ctx = canvas.getContext("2d");
  P.forEach((row, q) => row.forEach((w, k) => {
    const x0 = Math.round(k * cell), y0 = Math.round(q * cell);
    ctx.fillStyle = k > q && w !== 0 ? LEAK : colour(w);
    ctx.fillRect(x0, y0, Math.round((k + 1) * cell) - x0, Math.round((q + 1) * cell) - y0);
  }));
  if (boundary !== null) {  // dashed red lines where the answer's keys and queries start
    const b = Math.round(boundary * cell);
    ctx.strokeStyle = "#c00";
    ctx.lineWidth = 2;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(b, 0); ctx.lineTo(b, size);
    ctx.moveTo(0, b); ctx.lineTo(size, b);
    ctx.stroke();
  }
}

{
  const holder = $("model-grid");
  holder.style.gridTemplateColumns = `auto repeat(${nHead}, ${THUMB + 10}px)`;
  holder.append(document.createElement("div"));
  for (const h of allHeads) holder.append(Object.assign(document.createElement("div"), { textContent: `head ${h}` }));
  for (let l = 0; l < nLayer; l++) {
    holder.append(Object.assign(document.createElement("div"), { textContent: `layer ${l}` }));
    for (const h of allHeads) {
      const canvas = document.createElement("canvas");
      canvas.dataset.layer = l;
      canvas.dataset.head = h;
      canvas.title = `layer ${l}, head ${h}: click to open in the matrix view`;
      drawThumbnail(canvas, l, h);
      canvas.onclick = () => { state.layer = l; state.heads = [h]; state.view = "matrix"; render(); };
      canvas.onmousemove = event => {  // which weight is under the pointer
        const k = Math.min(T - 1, Math.max(0, Math.floor(event.offsetX / canvas.clientWidth * T)));
        const q = Math.min(T - 1, Math.max(0, Math.floor(event.offsetY / canvas.clientHeight * T)));
        info.textContent = `layer ${l}, head ${h}: query ${quoted(q)} -> key ${quoted(k)}: ` +
          `weight ${fmt(data.patterns[l][h][q][k])}   (click to open in the matrix view)`;
      };
      holder.append(canvas);
      thumbnails.push(canvas);
    }
  }
}

function markModelSelection() {
  for (const canvas of thumbnails) {
    const on = +canvas.dataset.layer === state.layer && state.heads.includes(+canvas.dataset.head);
    canvas.classList.toggle("selected", on);
  }
}

render();
"""


def round_weight(w: float) -> Union[int, float, None]:
    """One weight as the viewer stores it: ``ROUNDING_DIGITS`` significant digits.

    Significant digits, not decimal places: a leak of 3e-9 above the diagonal must stay
    3e-9, not become 0, or the page would hide a broken causal mask; an exact 0 stays
    exactly 0. Whole numbers (0 and 1) are stored as ints and NaN or inf as None (JSON
    has neither), which keeps the page small for long inputs.
    """
    w = float(w)
    if not math.isfinite(w):
        return None
    rounded = float(f"{w:.{ROUNDING_DIGITS}g}")
    return int(rounded) if rounded.is_integer() else rounded


def _rounding_note() -> str:
    """What the page says about its numbers, with examples computed by round_weight itself."""
    def shown(w: float) -> str:  # as JavaScript prints it: 3e-9, not Python's 3e-09
        return f"{w:g}".replace("e-0", "e-")

    examples = ", ".join(f"{shown(w)} \u2192 {shown(round_weight(w))}" for w in (0.123456, 0.000123456, 3e-9))
    return (f"Weights are stored rounded to {ROUNDING_DIGITS} significant digits ({examples}), "
            "which keeps the page small for long inputs. An exact 0 stays exactly 0 and a nonzero weight "
            "stays nonzero however small, so a leaking causal mask stays visible. The mean of heads is "
            f"computed from the rounded weights and shown to {ROUNDING_DIGITS} significant digits; "
            "NaN is shown as NaN (magenta).")


def attention_viewer_html(
    patterns: Patterns,
    tokens: Sequence[str],
    title: str = "Attention viewer",
    boundary: Optional[int] = None,
    batch_index: int = 0,
    position_ids: Optional[Sequence[int]] = None,
) -> str:
    """A self-contained HTML page (no network, no CDN) to browse every layer and head.

    Three views of the same weights share the layer and head selectors: the matrix view
    (a table of cells coloured by weight), the head view (lines from each query token
    to each key token, one colour per head) and the model view (every layer x head as a
    thumbnail; a click opens it in the matrix view). ``boundary`` is the first answer
    position, marked in every view. ``position_ids`` (a task's coupled ids, one per
    token) label the tokens as "@id". The weights are embedded once, as JSON, rounded by
    ``round_weight`` so that exact zeros and tiny leaks both survive.
    """
    arr = as_layer_head_array(patterns, batch_index)
    if arr.shape[-1] != len(tokens):
        raise ValueError(f"{len(tokens)} tokens for patterns over {arr.shape[-1]} positions")
    if boundary is not None:
        boundary = int(boundary)  # a numpy or torch integer would not serialise
        if not 0 <= boundary <= len(tokens):
            raise ValueError(f"boundary {boundary}: expected a position in 0..{len(tokens)}")
    if position_ids is not None and len(position_ids) != len(tokens):
        raise ValueError(f"{len(position_ids)} position ids for {len(tokens)} tokens")
    rounded = [[[[round_weight(w) for w in row] for row in head] for head in layer] for layer in arr.tolist()]
    payload = json.dumps({"tokens": list(tokens), "patterns": rounded, "boundary": boundary,
                          "digits": ROUNDING_DIGITS,
                          "position_ids": None if position_ids is None else [int(p) for p in position_ids]},
                         separators=(",", ":"))
    # Inside <script> the HTML parser looks for "</script" (and "<!--"): with every "<"
    # written as the JSON escape \u003c, no token such as "</script>" can end the data block.
    payload = payload.replace("<", "\\u003c")
    note = "" if boundary is None else (
        f" The dashed red lines mark where the answer starts (position {boundary}): in the matrix "
        "and model views the answer's queries are below them and its keys to their right; in the "
        "head view the answer's tokens are below the line in both columns.")
    body = (_VIEWER_BODY.replace("__BOUNDARY_NOTE__", note)
            .replace("__ROUNDING_NOTE__", html.escape(_rounding_note()))
            .replace("__TITLE__", html.escape(title)))  # last: a title may contain anything
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f"<style>{_VIEWER_CSS}</style></head>\n<body>{body}"
            f'<script id="attention-data" type="application/json">{payload}</script>\n'
            f"<script>{_VIEWER_JS}</script>\n</body></html>\n")
