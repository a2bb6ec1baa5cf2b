"""The lab's front-end files: the HTML, CSS and JavaScript in ``gptdecoder/lab/static/``.

They are real files, declared as package data in pyproject.toml, and read with
importlib.resources, so an installed wheel finds them as a checkout does. A page that
must open with no network inlines their text (``views.attention_viewer_html``); there is
no build step.

viewer.html, viewer.css, viewer.js   the offline attention viewer's page and its boot script
attention_views.html/.css/.js        the attention views (matrix, head, model), reusable by
                                     any page: drawAttentionViews(root, data)
report.css                           the explain report's stylesheet (read by render.py)
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def asset(name: str) -> str:
    """The text of ``gptdecoder/lab/static/<name>``, e.g. ``asset("attention_views.js")``.

    Read once per process. A name that is not there raises FileNotFoundError naming it.
    """
    return resources.files("gptdecoder.lab").joinpath("static", name).read_text(encoding="utf-8")


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``__NAME__`` replaced by ``values[NAME]``, in one pass.

    One pass, so a value (a title, a token, an inlined file) that happens to contain
    ``__NAME__`` is never filled in itself. A placeholder without a value is an error.
    """
    return re.sub(r"__([A-Z][A-Z_]*[A-Z])__", lambda m: values[m.group(1)], template)


def inline(name: str) -> str:
    """A stylesheet's or a script's text for inlining inside ``<style>`` / ``<script>``.

    Refuses a file that contains the closing tag, which would end the element early.
    """
    end_tag = "</style" if name.endswith(".css") else "</script"
    text = asset(name)
    if end_tag in text.lower():
        raise ValueError(f"static/{name} contains {end_tag!r}: it cannot be inlined")
    return text


def lab_markup() -> str:
    """The live lab's markup (lab_ui.html) with the attention views' inside: what the live
    page and the notebook widget draw into."""
    return fill(asset("lab_ui.html"), {"VIEWS_HTML": asset("attention_views.html")})
