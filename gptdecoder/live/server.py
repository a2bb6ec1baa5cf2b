"""The live lab's HTTP server: a door on the user's machine, kept narrow.

Python's standard library (``http.server.ThreadingHTTPServer``) is enough for a page, one
JSON endpoint per question and a few users on loopback; it adds no dependency and every
line of the door is here to read. The rules:

* it binds to 127.0.0.1 unless told otherwise (``allow_remote``);
* every request carries the random token printed in the URL (``?token=`` for the page,
  the ``X-Lab-Token`` header for the API, as Jupyter does): without it, 403;
* the page and its scripts and styles come from the package (``gptdecoder/lab/static``),
  inlined into one response; no path from the client ever reaches the file system, so
  any other path is a 404;
* a body must be JSON of at most ``MAX_BODY`` bytes (else 413), with the fields each
  endpoint expects (else 400 with one line); the server keeps serving;
* the page may not load anything from elsewhere (its Content-Security-Policy says so).

Model calls go through ``LiveModel``, which serialises them (see gptdecoder/live/session.py).
"""
from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, Optional
from urllib.parse import parse_qs, urlsplit

from gptdecoder.lab.assets import asset, fill, inline, lab_markup
from gptdecoder.live.session import REQUESTS, LiveError, LiveModel

MAX_BODY = 64 * 1024  # bytes of JSON a request may send
API = "/api/"  # /api/<request>: POST with the request's JSON (GET for info); see session.REQUESTS
TOKEN_HEADER = "X-Lab-Token"
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def page_html() -> str:
    """The live page: live.html with its styles, markup and scripts inlined (one response,
    no other fetch)."""
    return fill(asset("live.html"), {
        "LIVE_CSS": inline("live.css"), "LAB_CSS": inline("lab_ui.css"), "VIEWS_CSS": inline("attention_views.css"),
        "LAB_HTML": lab_markup(),
        "VIEWS_JS": inline("attention_views.js"), "LAB_JS": inline("lab_ui.js"), "LIVE_JS": inline("live.js"),
    })


class LabServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its model, its token and its page."""

    daemon_threads = True  # an idle or hung client never keeps the process alive after Ctrl-C
    request_queue_size = 128  # connections the OS holds while every thread is busy (the default 5 resets a burst)
    CLOSE_WAIT = 60  # seconds server_close waits for requests being answered

    def __init__(self, live: LiveModel, host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None) -> None:
        self.live, self.token = live, token or secrets.token_urlsafe(24)
        self.page = page_html().encode("utf-8")
        self.answering, self.idle = 0, threading.Condition()  # requests being answered right now
        super().__init__((host, port), LabHandler)

    @contextlib.contextmanager
    def answering_one(self) -> Iterator[None]:
        """Count a request while it is answered, so that closing can wait for it."""
        with self.idle:
            self.answering += 1
        try:
            yield
        finally:
            with self.idle:
                self.answering -= 1
                self.idle.notify_all()

    def server_close(self) -> None:
        """Stop listening once the requests being answered are done: a handler thread killed at
        interpreter exit in the middle of a model call aborts the process (idle connections,
        which do no work, are left to die with it)."""
        with self.idle:
            self.idle.wait_for(lambda: self.answering == 0, timeout=self.CLOSE_WAIT)
        super().server_close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/?token={self.token}"


class LabHandler(BaseHTTPRequestHandler):
    server: LabServer
    server_version = "gptdecoder-lab"
    sys_version = ""
    timeout = 30  # seconds a connection may stay silent: a stalled client does not hold a thread forever

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # quiet: the terminal shows the URL, not every request

    # -- answers ---------------------------------------------------------------------------------

    def send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, data: dict) -> None:
        self.send(status, json.dumps(data, allow_nan=False).encode("utf-8"), "application/json")

    def fail(self, status: int, message: str) -> None:
        self.send_json(status, {"error": message})

    # -- the door ----------------------------------------------------------------------------------

    def authorised(self, query: dict) -> bool:
        given = self.headers.get(TOKEN_HEADER) or (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.server.token.encode())

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        with self.server.answering_one():
            self.answer_get()

    def do_POST(self) -> None:  # noqa: N802
        with self.server.answering_one():
            self.answer_post()

    def answer_get(self) -> None:
        url = urlsplit(self.path)
        if not self.authorised(parse_qs(url.query)):
            return self.fail(403, "missing or wrong token: open the URL printed by `python -m gptdecoder lab`")
        if url.path == "/":
            return self.send(200, self.server.page, "text/html; charset=utf-8")
        if url.path == API + "info":
            return self.reply("info", {})
        return self.fail(404, f"no such page: {url.path[:80]}")

    def answer_post(self) -> None:
        url = urlsplit(self.path)
        if not self.authorised(parse_qs(url.query)):
            return self.fail(403, "missing or wrong token")
        kind = url.path[len(API):] if url.path.startswith(API) else ""
        if kind not in REQUESTS or kind == "info":
            return self.fail(404, f"no such endpoint: {url.path[:80]}")
        given = self.headers.get("Content-Length", "")
        if not given.isdigit():
            return self.fail(411 if not given else 400, "a Content-Length header with a byte count is required")
        length = int(given)
        if length > MAX_BODY:
            self.close_connection = True  # the unread body is not drained
            return self.fail(413, f"request body of {length} bytes; at most {MAX_BODY}")
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
            return self.fail(400, "the request body is not JSON (or is nested too deep)")
        return self.reply(kind, body)

    def reply(self, kind: str, body: object) -> None:
        """LiveModel's answer as JSON; its LiveError as a 400, a bug as a 500 (the server goes on)."""
        try:
            return self.send_json(200, self.server.live.answer(kind, body))
        except LiveError as e:
            return self.fail(400, str(e))
        except Exception as e:  # a bug: one line for the page, and the server keeps serving
            print(f"lab: {type(e).__name__}: {e}", file=sys.stderr)
            return self.fail(500, f"internal error ({type(e).__name__})")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()
