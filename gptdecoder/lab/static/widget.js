// The notebook widget's front end (an anywidget ES module): the live lab's UI (lab_ui.js)
// inside a notebook cell, answering through the widget's model instead of HTTP.
// gptdecoder/live/widget.py prepends attention_views.js, lab_ui.js and LAB_MARKUP (the
// markup of lab_ui.html with the attention views' inside) to this file: the module is
// self-contained, with no CDN and no requirejs, so it works offline in JupyterLab,
// Notebook 7 and VS Code.
//
// A request is a traitlet write, {id, kind, body}; the Python side answers in the
// "response" traitlet, {id, result} or {id, error}, and the pending promise of that id
// settles.
function widgetBackend(model) {
  let next = 0;
  const pending = new Map();
  model.on("change:response", () => {
    const answer = model.get("response");
    const waiting = pending.get(answer.id);
    if (!waiting) return;
    pending.delete(answer.id);
    if (answer.error !== undefined) waiting.reject(new Error(answer.error));
    else waiting.resolve(answer.result);
  });
  const ask = (kind, body) => new Promise((resolve, reject) => {
    const id = ++next;
    pending.set(id, { resolve, reject });
    model.set("request", { id, kind, body: body || {} });
    model.save_changes();
  });
  return {
    info: () => ask("info"),
    analyse: (body) => ask("analyse", body),
    generate: (body) => ask("generate", body),
  };
}

export default {
  render({ model, el }) {
    el.innerHTML = LAB_MARKUP;
    startLab(el, widgetBackend(model));
  },
};
