"use strict";
// The attention views: the matrix view, the head view and the model view of one model's
// attention weights, with their shared layer and head selectors, the info line that hover
// fills in, and a causal check. Plain DOM, SVG and canvas: no library, no network.
//
// This file only defines drawAttentionViews; a page calls it. The offline viewer
// (viewer.html) calls it from viewer.js with the weights embedded in the page; another page
// (a live page, a notebook widget) inlines this file with attention_views.html and
// attention_views.css and calls it with weights it got any other way.
//
//   drawAttentionViews(root, data) -> { state, render }
//
// root: an element that holds the markup of attention_views.html (the elements are found
//   by id inside root, so the rest of the page is left alone).
// data: { tokens: [string], patterns: [layer][head][query][key] weights (null stands for
//   NaN), digits: significant digits of the stored weights, boundary: the first answer
//   position or null, position_ids: one id per token, or null }, as
//   gptdecoder.lab.views.viewer_data builds it.
// Returns the selection (state: view, layer, heads) and render(), which redraws after a
// change to it. Calling it again on the same root with new data redraws from scratch.
function drawAttentionViews(root, data) {
  const tokens = data.tokens, T = tokens.length, boundary = data.boundary;
  const nLayer = data.patterns.length, nHead = data.patterns[0].length;
  const allHeads = [...Array(nHead).keys()];

  // What is selected, shared by the three views: the view shown, one layer, a set of heads.
  const state = { view: "matrix", layer: 0, heads: [0] };

  // Every element is looked up inside root, never in the whole document: the page around
  // the views is the caller's.
  const $ = id => root.querySelector(`#${id}`);
  const layerSel = $("layer"), headSel = $("head"), info = $("info");
  const tabs = [...root.querySelectorAll("#tabs button")];
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

  // The options are built here from the data (emptied first: a page may call this again with
  // new weights on the same markup).
  layerSel.length = headSel.length = 0;
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
  grid.onmouseover = event => {
    const td = event.target.closest("td");
    if (!td || !shown) return;
    const q = +td.dataset.q, k = +td.dataset.k;
    info.textContent = `layer ${state.layer}, ${headsText(state.heads)}: query ${quoted(q)} -> key ${quoted(k)}: ` +
      `weight ${fmt(shown[q][k])}` + (k > q ? "   [a later key: must be 0]" : "");
  };

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

  // The head checkboxes (built once per call, for this model's heads): ticking them edits state.heads.
  const boxes = [];
  {
    const holder = $("head-boxes");
    holder.replaceChildren();
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
  svg.onmouseover = event => {
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
  };
  svg.onmouseout = event => {
    if (!event.target.closest("text.tok")) return;
    svg.classList.remove("focus");
    svg.querySelectorAll(".hl").forEach(el => el.classList.remove("hl"));
    headWeights.textContent = "";
  };

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
    holder.replaceChildren();
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
  return { state, render };
}
