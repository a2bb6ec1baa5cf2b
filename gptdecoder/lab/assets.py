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

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def asset(name: str) -> str:
    """The text of ``gptdecoder/lab/static/<name>``, e.g. ``asset("attention_views.js")``.

    Read once per process. A name that is not there raises FileNotFoundError naming it.
    """
    return resources.files("gptdecoder.lab").joinpath("static", name).read_text(encoding="utf-8")
