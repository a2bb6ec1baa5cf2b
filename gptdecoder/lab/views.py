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
* ``viewer_data`` -- the weights and tokens as the views' JavaScript takes them.

The viewer's HTML, CSS and JavaScript are real files in ``gptdecoder/lab/static/``
(package data), read with ``importlib.resources`` through ``assets.asset(name)``:

  attention_views.html  the views' markup (controls, info line, the three views)
  attention_views.css   their styles
  attention_views.js    the drawing code: ``drawAttentionViews(root, data)`` draws the
                        views into the markup under ``root`` from ``data`` (what
                        ``viewer_data`` returns) and returns ``{state, render}``
  viewer.html           the offline page: a template with ``__NAME__`` placeholders
  viewer.css, viewer.js its own styles, and the boot script that parses the embedded
                        JSON and calls ``drawAttentionViews(document.body, data)``

``attention_viewer_html`` fills viewer.html's placeholders in one pass, inlining the
CSS inside ``<style>``, the markup, the weights as a JSON ``<script>`` block and both
scripts, so the result is still one file that opens from disk with no network. Another
page (a live page, a notebook widget) reuses the views the same way: it includes
attention_views.html, .css and .js and calls ``drawAttentionViews`` with
``viewer_data(...)`` as JSON. There is no build step: the files are used as written.
"""
from __future__ import annotations

import html
import json
import math
from typing import Optional, Sequence, Union

import torch

from gptdecoder.lab.assets import asset, fill, inline
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
# draws three views of them. The page's text lives in files under static/ (see the module
# docstring); attention_viewer_html fills in viewer.html's placeholders.

ROUNDING_DIGITS = 3  # significant digits kept in the page (see round_weight)


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


def viewer_data(
    patterns: Patterns,
    tokens: Sequence[str],
    boundary: Optional[int] = None,
    batch_index: int = 0,
    position_ids: Optional[Sequence[int]] = None,
) -> dict:
    """The attention views' input: the ``data`` that ``drawAttentionViews(root, data)`` draws.

    A JSON-ready dict: ``tokens``, ``patterns`` ([layer][head][query][key], rounded by
    ``round_weight``, None for NaN), ``digits`` (``ROUNDING_DIGITS``), ``boundary`` (the
    first answer position, or None) and ``position_ids`` (a task's coupled ids, one per
    token, or None). Raises ValueError when the tokens, boundary or ids do not fit the
    patterns.
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
    return {"tokens": list(tokens), "patterns": rounded, "boundary": boundary, "digits": ROUNDING_DIGITS,
            "position_ids": None if position_ids is None else [int(p) for p in position_ids]}


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

    The page is static/viewer.html with its stylesheets, the views' markup and both
    scripts inlined (see the module docstring).
    """
    data = viewer_data(patterns, tokens, boundary, batch_index, position_ids)
    payload = json.dumps(data, separators=(",", ":"))
    # Inside <script> the HTML parser looks for "</script" (and "<!--"): with every "<"
    # written as the JSON escape \u003c, no token such as "</script>" can end the data block.
    payload = payload.replace("<", "\\u003c")
    boundary = data["boundary"]
    note = "" if boundary is None else (
        f" The dashed red lines mark where the answer starts (position {boundary}): in the matrix "
        "and model views the answer's queries are below them and its keys to their right; in the "
        "head view the answer's tokens are below the line in both columns.")
    return fill(asset("viewer.html"), {
        "TITLE": html.escape(title),
        "BOUNDARY_NOTE": note,
        "ROUNDING_NOTE": html.escape(_rounding_note()),
        "VIEWER_CSS": inline("viewer.css"),
        "VIEWS_CSS": inline("attention_views.css"),
        "VIEWS_HTML": asset("attention_views.html"),
        "DATA": payload,
        "VIEWS_JS": inline("attention_views.js"),
        "VIEWER_JS": inline("viewer.js"),
    })
