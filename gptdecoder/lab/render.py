"""The explain report's formats: blocks to Markdown and to one HTML page, values to strict JSON.

The report is written once, as a list of format-neutral blocks (``gptdecoder.lab.report``
builds them); this module turns that list into each format, knowing nothing about heads
or roles, so a new section needs no change here -- only a new kind of block would. A
block is ``(kind, payload)``:

    ("h1" | "h2" | "p", text)     a heading or a paragraph
    ("bullets", [text, ...])      a bulleted list
    ("table", {"header", "rows", "note"})   see ``table``
    ("figure", {"file", "alt"})   a PNG beside report.md; embedded in the HTML

The HTML is one self-contained page: the stylesheet (``static/report.css``, package data)
inlined, figures as data: URLs, every text escaped, no script.
"""
from __future__ import annotations

import base64
import html
import math
from functools import lru_cache
from importlib import resources
from typing import Mapping, Sequence, Union

Block = tuple[str, Union[str, list, dict]]


def table(header: Sequence[str], rows: Sequence[Sequence[str]], note: str = "") -> Block:
    """A table block: a header row, rows of cell texts, and a note under it ('' for none)."""
    return ("table", {"header": list(header), "rows": [list(r) for r in rows], "note": note})


def figure(file: str, alt: str) -> Block:
    """A figure block: the PNG's file name and the text that stands for it."""
    return ("figure", {"file": file, "alt": alt})


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def to_markdown(blocks: Sequence[Block]) -> str:
    """The report as markdown; figures are links to the PNG files beside it."""
    out = []
    for kind, payload in blocks:
        if kind == "h1":
            out.append(f"# {payload}")
        elif kind == "h2":
            out.append(f"## {payload}")
        elif kind == "p":
            out.append(payload)
        elif kind == "bullets":
            out.append("\n".join(f"- {item}" for item in payload))
        elif kind == "table":
            lines = ["| " + " | ".join(_md_cell(h) for h in payload["header"]) + " |",
                     "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(payload["header"]))) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in payload["rows"]]
            if payload["note"]:
                lines += ["", payload["note"]]
            out.append("\n".join(lines))
        elif kind == "figure":
            out.append(f"![{payload['alt']}]({payload['file']})")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n\n".join(out) + "\n"


@lru_cache(maxsize=None)
def stylesheet() -> str:
    """The report page's CSS, read from the package (``gptdecoder/lab/static/report.css``)."""
    return resources.files("gptdecoder.lab").joinpath("static", "report.css").read_text(encoding="utf-8")


def to_html(blocks: Sequence[Block], images: Mapping[str, bytes], title: str = "explain report") -> str:
    """The report as one self-contained HTML page: inline CSS, each PNG embedded as a data: URL.

    ``images`` maps a figure's file name to its PNG bytes; a figure without bytes is
    left out rather than linked, so the page never refers to anything outside itself.
    """
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{esc(title)}</title>", f"<style>\n{stylesheet()}</style>", "</head>", "<body>"]
    for kind, payload in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{esc(payload)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{esc(payload)}</p>")
        elif kind == "bullets":
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in payload) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in payload["header"])
            body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in payload["rows"])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            if payload["note"]:
                out.append(f'<p class="note">{esc(payload["note"])}</p>')
        elif kind == "figure":
            data = images.get(payload["file"])
            if data is not None:
                encoded = base64.b64encode(data).decode("ascii")
                out.append(f'<img alt="{esc(payload["alt"])}" src="data:image/png;base64,{encoded}">')
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def json_ready(value):
    """``value`` with NaN and infinities as None and tuples as lists: strict JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
