"""Headless Chromium for the viewer tests, and the README's viewer screenshots.

The tests drive the system Chromium (Debian's ``chromium`` package) through
Playwright's Python package; ``playwright install`` is never needed, so CI does not
download a browser. Without Chromium or Playwright the browser tests skip, unless
GPTDECODER_REQUIRE_BROWSER is set (``.ci/run`` sets it): then they fail, so CI cannot
pass without running them.

Run as a script to regenerate the screenshots in docs/img::

    python -m gptdecoder pictures --run runs/config --out /tmp/pics --html
    python tests/browser_helpers.py /tmp/pics/attention_viewer.html docs/img
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

REQUIRE_BROWSER = "GPTDECODER_REQUIRE_BROWSER"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
VIEWS = ("matrix", "head", "model")
# Playwright waits up to this long for the browser to start and for each page action (30 s by
# default): a guard against a hang, long enough that a busy machine cannot make a test fail.
TIMEOUT_MS = 300_000


def find_chromium() -> Optional[str]:
    """The system Chromium: $GPTDECODER_CHROMIUM if set, else the first one on PATH."""
    explicit = os.environ.get("GPTDECODER_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_missing(reason: str) -> None:
    """Skip the calling test, or fail it when the environment requires the browser.

    A skipped browser test in CI would look like a pass, so CI sets REQUIRE_BROWSER.
    """
    import pytest

    if os.environ.get(REQUIRE_BROWSER):
        pytest.fail(f"{reason} (and {REQUIRE_BROWSER} is set, so the browser tests must run)")
    pytest.skip(reason)


@contextmanager
def chromium(missing: Callable[[str], None] = browser_missing) -> Iterator[Any]:
    """A headless system Chromium driven by Playwright; ``missing(reason)`` when either is absent.

    ``missing`` must raise: by default it skips (or fails) the calling test.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the playwright Python package is not installed (pip install playwright)")
    path = find_chromium()
    if path is None:
        missing("no Chromium found (apt-get install chromium)")
    with sync_playwright() as p:
        # --no-sandbox: CI and containers run as root, where Chromium's sandbox refuses to start
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"], timeout=TIMEOUT_MS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class OfflinePage:
    """A page opened from a file, with what it logged and every request it made."""

    page: Any
    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def network_requests(self) -> list[str]:
        """Requests other than the page's own file and data: URLs: an offline page makes none."""
        return [url for url in self.requests if url != self.url and not url.startswith("data:")]


def open_offline(browser: Any, path: Path, viewport: Optional[dict] = None) -> OfflinePage:
    """Open an HTML file in a fresh context that records requests and refuses any network access."""
    context = browser.new_context(viewport=viewport or {"width": 1100, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    opened = OfflinePage(page, path.resolve().as_uri())
    page.on("console", lambda msg: msg.type == "error" and opened.console_errors.append(msg.text))
    page.on("pageerror", lambda error: opened.console_errors.append(str(error)))
    page.on("request", lambda request: opened.requests.append(request.url))
    # nothing may leave the machine; the request is still recorded above
    context.route(lambda url: not url.startswith(("file:", "data:")), lambda route: route.abort())
    page.goto(opened.url)
    page.wait_for_load_state("load")
    return opened


def _exit(reason: str) -> None:
    raise SystemExit(f"error: {reason}")


def screenshot_views(html: Path, out_dir: Path, prefix: str = "viewer") -> list[Path]:
    """PNG screenshots of the viewer's three views: out_dir/{prefix}_{matrix,head,model}.png.

    Each view shows layer 0. The matrix view shows head 0 with the pointer on a cell
    of the last query (its weight in the info line); the head view shows all heads with
    the pointer on an answer token (only its lines drawn, its weights listed beside).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with chromium(missing=_exit) as browser:
        opened = open_offline(browser, html, viewport={"width": 900, "height": 600})
        page = opened.page
        n_tokens, boundary = page.evaluate("() => [T, boundary]")  # the page's own variables
        answer = n_tokens - 1 if boundary is None else min(boundary + 1, n_tokens - 1)
        for view in VIEWS:
            page.click(f"#tab-{view}")
            if view == "matrix":
                page.hover(f'#grid td[data-q="{n_tokens - 1}"][data-k="{boundary or 0}"]')
            if view == "head":
                page.select_option("#head", "all")
                page.hover(f'#head-svg text.tok[data-side="q"][data-i="{answer}"]')
            path = out_dir / f"{prefix}_{view}.png"
            page.screenshot(path=str(path), full_page=True)
            written.append(path)
        if opened.console_errors or opened.network_requests():
            raise RuntimeError(f"the viewer misbehaved: {opened.console_errors} {opened.network_requests()}")
    return written


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot the offline attention viewer's three views.")
    parser.add_argument("html", type=Path, help="attention_viewer.html (from pictures --html)")
    parser.add_argument("out", type=Path, help="output directory, e.g. docs/img")
    args = parser.parse_args(argv)
    for path in screenshot_views(args.html, args.out):
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
