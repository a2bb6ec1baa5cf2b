"use strict";
// The live lab's user interface, shared by the page (live.js: answers over HTTP) and the
// notebook widget (widget.js: answers through the widget's model). It asks the backend
// about the prompt in the box, draws the answers, and asks again at once whenever a head
// is switched on or off. The attention views are the offline viewer's drawing code
// (attention_views.js: drawAttentionViews).
//
//   startLab(root, backend)
//
// root: an element holding lab_ui.html's markup (every element is found by id inside it,
//   so a notebook can show several labs on one page).
// backend: { info(), analyse(body), generate(body) }, each returning a Promise of the
//   JSON that gptdecoder/live/session.py's LiveModel method of that name returns, or
//   rejecting with an Error whose message is one line for the user.
function startLab(root, backend) {
  const $ = (id) => root.querySelector(`#${id}`);
  const state = { info: null, off: new Set(), pending: 0, views: null };

  function showError(message) {
    $("error").textContent = message || "";
    $("error").hidden = !message;
  }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function table(header, rows) {
    const t = element("table");
    const head = t.insertRow();
    header.forEach((h) => head.appendChild(element("th", h)));
    rows.forEach((cells) => {
      const row = t.insertRow();
      cells.forEach((c) => {
        const td = row.insertCell();
        if (c instanceof Node) td.appendChild(c); else td.textContent = c;
      });
    });
    return t;
  }

  const heads = () => [...state.off].map((key) => key.split(",").map(Number));

  // One button per layer x head; a click switches that head off (or on) and asks again.
  function drawHeadButtons() {
    const { n_layer, n_head } = state.info;
    const grid = $("heads");
    grid.style.gridTemplateColumns = `repeat(${n_head}, max-content)`;
    grid.replaceChildren();
    for (let layer = 0; layer < n_layer; layer++) {
      for (let head = 0; head < n_head; head++) {
        const key = `${layer},${head}`;
        const button = element("button", `L${layer}H${head}`);
        button.type = "button";
        button.dataset.head = key;
        button.setAttribute("aria-pressed", "false");
        button.addEventListener("click", () => {
          if (state.off.has(key)) state.off.delete(key); else state.off.add(key);
          button.classList.toggle("off", state.off.has(key));
          button.setAttribute("aria-pressed", String(state.off.has(key)));
          analyse();
        });
        grid.appendChild(button);
      }
    }
  }

  function topTable(prediction) {
    return table(["next token", "p", ""], prediction.top.map((t) => {
      const bar = element("span", "", "bar");
      bar.style.width = `${Math.round(120 * t.p)}px`;
      return [t.token, t.p.toFixed(3), bar];
    }));
  }

  // The prediction with the switched-off heads off, beside the one with every head on.
  function drawPrediction(data) {
    const box = $("prediction");
    box.replaceChildren();
    const off = data.heads_off.length;
    const columns = element("div", undefined, "columns");
    const column = (title, prediction) => {
      const div = element("div");
      div.appendChild(element("h3", title));
      if (prediction.answer !== undefined) {
        const answer = element("p", `answer: ${prediction.answer}`);
        answer.dataset.role = "answer";
        if (prediction.correct !== null && prediction.answer !== prediction.correct) answer.classList.add("changed");
        div.appendChild(answer);
      }
      div.appendChild(topTable(prediction));
      return div;
    };
    if (off) {
      columns.appendChild(column(`with ${off} head${off > 1 ? "s" : ""} off (${data.mode})`, data.prediction));
      columns.appendChild(column("all heads on", data.prediction_all_heads));
    } else {
      columns.appendChild(column("all heads on", data.prediction));
    }
    box.appendChild(columns);
    const correct = data.prediction.correct;
    if (correct !== undefined && correct !== null) box.appendChild(element("p", `correct answer: ${correct}`));
    const h = data.held_out;
    $("heldout").textContent = !h ? "" :
      `held-out exact match on a sample of ${h.examples} prompts: ${(100 * h.exact_match_heads_off).toFixed(1)}%`
      + (off ? ` with those heads off (all heads on: ${(100 * h.exact_match).toFixed(1)}%)` : "");
  }

  function drawScores(data) {
    const { n_layer, n_head } = state.info;
    const kinds = Object.keys(data.scores);
    const rows = [];
    for (let layer = 0; layer < n_layer; layer++) {
      for (let head = 0; head < n_head; head++) {
        rows.push([`L${layer}H${head}`, ...kinds.map((k) => data.scores[k][layer][head].toFixed(2))]);
      }
    }
    $("scores").replaceChildren(table(["head", ...kinds.map((k) => k.replace("_", " "))], rows));
    $("lens").replaceChildren(table(["read after", "top token", "p"],
      data.lens.map((r) => [r.stage, r.token, r.p.toFixed(3)])));
  }

  function request() {
    return { prompt: $("prompt").value, heads: heads(), mode: $("mode").value };
  }

  // Ask about the prompt in the box; only the newest answer is drawn.
  async function analyse() {
    const ticket = ++state.pending;
    try {
      const data = await backend.analyse(request());
      if (ticket !== state.pending) return;
      showError("");
      drawPrediction(data);
      drawScores(data);
      // the layer, heads and view chosen in the attention views survive a redraw
      const previous = state.views ? { ...state.views.state } : null;
      state.views = drawAttentionViews($("attention-views"), data.attention);
      if (previous) { Object.assign(state.views.state, previous); state.views.render(); }
    } catch (error) {
      if (ticket === state.pending) showError(error.message);
    }
  }

  async function generate() {
    const topK = $("top-k").value ? Number($("top-k").value) : null;
    try {
      const data = await backend.generate({
        ...request(), greedy: $("greedy").checked, top_k: topK,
        max_new_tokens: Number($("max-new").value), temperature: Number($("temperature").value),
      });
      showError("");
      $("generated").textContent = `${$("prompt").value} | ${data.text}`;
    } catch (error) {
      showError(error.message);
    }
  }

  async function start() {
    try {
      state.info = await backend.info();
    } catch (error) {
      showError(error.message);
      return;
    }
    const info = state.info;
    $("model").textContent = `${info.description}: ${info.n_layer} layers x ${info.n_head} heads`
      + (info.task ? `, task ${info.task.name} (symbols: ${info.task.symbols.join(" ")})` : ", text");
    if (info.text_note) { $("note").textContent = info.text_note; $("note").hidden = false; }
    info.modes.forEach((m) => $("mode").appendChild(new Option(`${m}-ablated`, m)));
    $("prompt").value = info.task ? info.task.example : "ROMEO:";
    drawHeadButtons();
    let timer = null;
    $("prompt").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(analyse, 200); });
    $("mode").addEventListener("change", analyse);
    $("clear").addEventListener("click", () => {
      state.off.clear();
      root.querySelectorAll("#heads button").forEach((b) => {
        b.classList.remove("off");
        b.setAttribute("aria-pressed", "false");
      });
      analyse();
    });
    $("generate").addEventListener("click", generate);
    analyse();
  }

  start();
}
