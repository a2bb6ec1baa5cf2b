"""The live lab in a notebook: the same front end as the page, as an anywidget.

``gptdecoder.live.widget(...)`` returns a ``LabWidget``, which shows the lab's UI in a
cell. (It lives beside the server, not in gptdecoder.lab: the lab is the layer of pure
functions below both, and the widget holds a model and answers requests.) Its ES module is assembled from the package's files (attention_views.js,
lab_ui.js, widget.js and the markup), so nothing is fetched from a CDN and no requirejs
is needed: it works offline in JupyterLab, Notebook 7 and VS Code, wherever anywidget
does. The browser asks by writing the ``request`` traitlet; this side answers in
``response`` with what ``LiveModel`` returns (or its one-line error).
"""
from __future__ import annotations

import json
from typing import Optional, Union

import anywidget
import traitlets

from gptdecoder.lab.assets import asset, lab_markup
from gptdecoder.live.session import LiveError, LiveModel


def widget_module() -> str:
    """The widget's ES module: the shared drawing and UI code, the markup, then widget.js."""
    return "\n".join([asset("attention_views.js"), asset("lab_ui.js"),
                      f"const LAB_MARKUP = {json.dumps(lab_markup())};", asset("widget.js")])


class LabWidget(anywidget.AnyWidget):
    """The live lab for one model, in a notebook cell."""

    _esm = widget_module()
    _css = "\n".join([asset("lab_ui.css"), asset("attention_views.css")])
    request = traitlets.Dict().tag(sync=True)
    response = traitlets.Dict().tag(sync=True)

    def __init__(self, live: LiveModel, **kwargs) -> None:
        super().__init__(**kwargs)
        self.live = live
        self.observe(self._answer, names="request")

    def _answer(self, change: dict) -> None:
        ask = change["new"] or {}
        try:
            self.response = {"id": ask.get("id"), "result": self.live.answer(ask.get("kind"), ask.get("body", {}))}
        except LiveError as e:  # bad input: its one line for the page
            self.response = {"id": ask.get("id"), "error": str(e).splitlines()[0]}
        except Exception as e:  # a bug: still an answer, or the page would wait for ever
            self.response = {"id": ask.get("id"), "error": f"internal error ({type(e).__name__}: {str(e)[:120]})"}


def widget(source: Union[str, "LoadedModel", "GPT"], task=None, tokenizer=None,  # noqa: F821
           description: Optional[str] = None) -> LabWidget:
    """The lab for ``source``: a path load_model opens (a run, a HF or nanoGPT checkpoint), a
    LoadedModel, or a GPT in memory with its ``task`` (or ``tokenizer`` for text)."""
    from gptdecoder.model import GPT
    from gptdecoder.runs import LoadedModel, load_model

    if isinstance(source, GPT):
        return LabWidget(LiveModel(source, task, tokenizer, description or "a model in memory"))
    loaded = source if isinstance(source, LoadedModel) else load_model(source)
    return LabWidget(LiveModel.from_loaded(loaded))
