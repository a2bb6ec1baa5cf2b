"""Screenshots of the live lab, and a check of the widget in real Jupyter front ends.

Not a test file (pytest does not collect it): starting JupyterLab and Notebook 7 takes
seconds and depends on their start-up, so this is run by hand, and its results are quoted
in the README:

    python tests/live_screenshots.py --run runs/config --out docs/img            # the page
    python tests/live_screenshots.py --run runs/config --out /tmp/w --jupyter    # + the widget

The page: the server started in this process, the prompt typed, one head switched off.
The widget: JupyterLab and Notebook 7 started on loopback with a notebook that shows
``gptdecoder.live.widget(RUN)``; every cell run; the check passes when the lab draws, a
head click changes the held-out exact match, and no request leaves the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from browser_helpers import TIMEOUT_MS, chromium  # noqa: E402


def _fail(reason: str) -> None:
    raise SystemExit(f"error: {reason}")


def page_screenshot(run: Path, out: Path, prompt: Optional[str], head: str) -> Path:
    from playwright.sync_api import expect

    from gptdecoder.live.server import LabServer
    from gptdecoder.live.session import LiveModel
    from gptdecoder.runs import load_model

    lab = LabServer(LiveModel.from_loaded(load_model(run)), "127.0.0.1", 0)
    threading.Thread(target=lab.serve_forever, daemon=True).start()
    try:
        with chromium(_fail) as browser:
            page = browser.new_page(viewport={"width": 1150, "height": 1300})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(lab.url)
            page.wait_for_selector("#prediction table")
            if prompt:
                page.fill("#prompt", prompt)
            page.click(f"#heads button[data-head='{head}']")
            expect(page.locator("#prediction")).to_contain_text("head off", timeout=TIMEOUT_MS)
            page.wait_for_timeout(300)
            path = out / "live_lab.png"
            page.screenshot(path=str(path), full_page=False)
            return path
    finally:
        lab.shutdown()
        lab.server_close()


def widget_check(run: Path, out: Path, app: str) -> Path:
    """Run the widget's notebook in JupyterLab ("lab") or Notebook 7 ("notebook"); a screenshot."""
    from playwright.sync_api import expect

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cell = {"cell_type": "code", "execution_count": None, "id": "lab", "metadata": {}, "outputs": [],
                "source": ["from gptdecoder import live\n", f"live.widget({str(run.resolve())!r})"]}
        nb = {"cells": [cell], "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                           "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
        (root / "lab.ipynb").write_text(json.dumps(nb))
        log = open(root / "jupyter.log", "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", app, "--no-browser", "--ip=127.0.0.1", "--port=18888",
             "--ServerApp.port_retries=500", "--IdentityProvider.token=check", f"--ServerApp.root_dir={root}",
             "--allow-root"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = None
            for _ in range(240):
                found = re.search(r"(http://127\.0\.0\.1:\d+)/", (root / "jupyter.log").read_text())
                if found:
                    url = found.group(1)
                    break
                time.sleep(0.5)
            if url is None:
                _fail(f"jupyter {app} did not start")
            with chromium(_fail) as browser:
                context = browser.new_context(viewport={"width": 1300, "height": 1100})
                context.set_default_timeout(TIMEOUT_MS)
                outside = []
                context.route(lambda u: not u.startswith((url, "blob:", "data:")),
                              lambda route: (outside.append(route.request.url), route.abort()))
                page = context.new_page()
                path = "lab/tree/lab.ipynb" if app == "lab" else "notebooks/lab.ipynb"
                page.goto(f"{url}/{path}?token=check")
                page.wait_for_selector(".jp-Notebook .jp-Cell")
                page.wait_for_timeout(4000)  # the kernel starts
                page.locator(".jp-Notebook .jp-Cell").first.click()
                page.keyboard.press("Shift+Enter")
                expect(page.locator(".lab #prediction table").first).to_be_visible(timeout=120_000)
                page.click(".lab #heads button[data-head='0,2']")
                expect(page.locator(".lab #heldout")).to_contain_text("with those heads off", timeout=60_000)
                shot = out / f"live_widget_{app}.png"
                page.screenshot(path=str(shot))
                if outside:
                    _fail(f"the widget fetched from outside the machine: {outside[:3]}")
                context.close()
                return shot
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
            log.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a task run, e.g. runs/config")
    parser.add_argument("--out", type=Path, required=True, help="where to write the PNGs, e.g. docs/img")
    parser.add_argument("--prompt", default=None, help="the prompt to type (default: the task's example)")
    parser.add_argument("--head", default="0,2", help="the head to switch off, 'layer,head' (default 0,2)")
    parser.add_argument("--jupyter", action="store_true", help="also check the widget in JupyterLab and Notebook 7")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"wrote {page_screenshot(args.run, args.out, args.prompt, args.head)}")
    if args.jupyter:
        for app in ("lab", "notebook"):
            print(f"widget in jupyter {app}: drawn, a head click changed the exact match, nothing fetched from "
                  f"outside; wrote {widget_check(args.run, args.out, app)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
