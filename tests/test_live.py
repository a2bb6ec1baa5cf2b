"""The live lab (gptdecoder/live): the server's door, its answers, concurrency, and the page in Chromium.

The server runs in this process on 127.0.0.1 and a port the OS picks (port 0, no race
between choosing and binding), on a thread that is shut down after each module.
"""
from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from browser_helpers import TIMEOUT_MS, chromium
from lab_runs import train_tiny_sort
from gptdecoder import cli
from gptdecoder.lab.ablation import head_ablation_scores
from gptdecoder.live.server import MAX_BODY, LabServer
from gptdecoder.live.session import LiveError, LiveModel
from gptdecoder.runs import load_model

@pytest.fixture(scope="module")
def sort_run(tmp_path_factory) -> Path:
    return train_tiny_sort(tmp_path_factory.mktemp("live"), length=5)


@pytest.fixture(scope="module")
def server(sort_run):
    lab = LabServer(LiveModel.from_loaded(load_model(sort_run)), "127.0.0.1", 0)
    thread = threading.Thread(target=lab.serve_forever, daemon=True)
    thread.start()
    yield lab
    lab.shutdown()
    lab.server_close()
    thread.join(timeout=30)


def request(lab: LabServer, method: str, path: str, body=None, token: "str | None" = "default",
            headers: "dict | None" = None) -> tuple[int, dict | str]:
    """(status, parsed JSON or text) of one request to the lab."""
    connection = http.client.HTTPConnection(*lab.server_address[:2], timeout=60)
    sent = dict(headers or {})
    if token is not None:
        sent["X-Lab-Token"] = lab.token if token == "default" else token
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    connection.request(method, path, body=data, headers=sent)
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


# -- the door ------------------------------------------------------------------------------------


def test_every_request_needs_the_token(server):
    assert request(server, "GET", "/", token=None)[0] == 403
    assert request(server, "GET", "/api/info", token="guess")[0] == 403
    assert request(server, "POST", "/api/analyse", {"prompt": "01210"}, token=None)[0] == 403
    status, page = request(server, "GET", f"/?token={server.token}", token=None)
    assert status == 200 and "<title>gptdecoder live lab</title>" in page and "drawAttentionViews" in page
    assert "<!--" not in page.split("</head>")[0]  # every asset was inlined
    assert request(server, "GET", "/api/info")[1]["kind"] == "task"


def test_no_path_reaches_the_file_system(server):
    for path in ["/../../etc/passwd", "/static/../../pyproject.toml", "/%2e%2e/%2e%2e/etc/passwd", "/live.js",
                 "/gptdecoder/lab/static/live.js", "//etc/passwd"]:
        status, body = request(server, "GET", path)
        assert status == 404, path
        assert "root:" not in json.dumps(body)


def test_bad_requests_get_one_line_and_the_server_keeps_serving(server):
    cases = [
        (b"{not json", "not JSON"),
        ({"prompt": 5}, "prompt: expected a string"),
        ({"prompt": "01x"}, "unknown symbol 'x' at 3"),
        ({"prompt": "0" * 40}, "the lab takes at most 9"),
        ({"prompt": "012", "heads": [[9, 9]]}, "is not a [layer, head]"),
        ({"prompt": "012", "mode": "random"}, "mode 'random'"),
        ({"prompt": "012", "extra": 1}, "unknown field 'extra'"),
        ({"heads": []}, "'prompt' is required"),
        ([1, 2], "must be a JSON object"),
    ]
    for body, message in cases:
        status, answer = request(server, "POST", "/api/analyse", body)
        assert status == 400 and message in answer["error"] and "\n" not in answer["error"], (body, answer)
    status, answer = request(server, "POST", "/api/generate", {"prompt": "012", "max_new_tokens": 10_000})
    assert status == 400 and "max_new_tokens" in answer["error"]
    status, answer = request(server, "POST", "/api/analyse", b" " * (MAX_BODY + 1))
    assert status == 413
    assert request(server, "POST", "/api/nowhere", {"prompt": "0"})[0] == 404
    assert request(server, "POST", "/api/analyse", {"prompt": "01210"})[0] == 200  # still serving


def test_an_ablation_in_one_request_never_shows_in_another(server):
    """20 clients at once, half with a head switched off: each answer is the one it would
    get alone (the hooks of one request are gone before the next call starts)."""
    alone_on = request(server, "POST", "/api/analyse", {"prompt": "21021"})[1]
    alone_off = request(server, "POST", "/api/analyse", {"prompt": "21021", "heads": [[0, 0], [0, 1], [1, 0]]})[1]
    assert alone_on["prediction"] != alone_off["prediction"]

    def one(i: int) -> bool:
        off = i % 2 == 1
        body = {"prompt": "21021", "heads": [[0, 0], [0, 1], [1, 0]] if off else []}
        status, answer = request(server, "POST", "/api/analyse", body)
        expected = alone_off if off else alone_on
        return status == 200 and answer["prediction"] == expected["prediction"] and answer["attention"] == expected["attention"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        assert all(pool.map(one, range(60)))


# -- the answers ---------------------------------------------------------------------------------


def test_analyse_answers_with_every_layer_and_the_held_out_sample(server):
    status, answer = request(server, "POST", "/api/analyse", {"prompt": "2 1 0 2 1"})
    assert status == 200
    assert answer["tokens"] == ["2", "1", "0", "2", "1"] and answer["prediction"]["correct"] == "01122"
    attention = answer["attention"]
    assert len(attention["patterns"]) == 2 and len(attention["patterns"][0]) == 2
    assert all(abs(sum(row) - 1) < 0.01 for row in attention["patterns"][1][0])
    assert abs(sum(t["p"] for t in answer["prediction"]["top"]) - 1) < 0.01
    assert set(answer["scores"]) == {"previous_token", "duplicate_token", "induction", "source"}
    assert [r["stage"] for r in answer["lens"]] == ["embeddings", "block 0", "block 1"]
    held = answer["held_out"]
    assert held["examples"] > 0 and held["exact_match"] == held["exact_match_heads_off"]


def test_a_text_run_has_no_task_parts(tmp_path):
    from lab_runs import train_text_run

    live = LiveModel.from_loaded(load_model(train_text_run(tmp_path)))
    info = live.info()
    assert info["kind"] == "text" and "no held-out exact match" in info["text_note"]
    answer = live.analyse("ROMEO: speak")
    assert "held_out" not in answer and "source" not in answer["scores"]
    assert "".join(answer["tokens"]) == "ROMEO: speak" and len(answer["prediction"]["top"]) == 10
    assert "answer" not in answer["prediction"]
    text = live.generate("JULIET:", max_new_tokens=8, seed=1)["text"]
    assert len(text) == 8 and text == live.generate("JULIET:", max_new_tokens=8, seed=1)["text"]
    with pytest.raises(LiveError, match="at most"):
        live.analyse("x" * 3000)


def test_the_command_refuses_other_hosts_without_the_flag(sort_run, capsys):
    assert cli.main(["lab", "--run", str(sort_run), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--allow-remote" in err and err.count("\n") == 1
    assert cli.main(["lab", "--run", str(sort_run), "--port", "70000"]) == 2


# -- the page in a real browser --------------------------------------------------------------------


def test_the_page_types_toggles_and_reports_errors_offline(server, sort_run):
    baseline, grid = head_ablation_scores(load_model(sort_run).model, LiveModel.from_loaded(load_model(sort_run)).held_out)
    layer, head = divmod(int(grid.argmin()), grid.size(1))  # the head whose loss costs most
    assert float(grid.min()) < baseline  # switching it off must change the sample's exact match

    with chromium() as browser:
        from playwright.sync_api import expect

        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        requests, errors = [], []
        local = f"http://127.0.0.1:{server.server_address[1]}/"
        context.route(lambda url: not url.startswith(local), lambda route: route.abort())  # nothing leaves
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.wait_for_selector("#prediction table")
        page.fill("#prompt", "2 1 0 2 1")
        expect(page.locator("text=correct answer: 01122")).to_be_visible(timeout=TIMEOUT_MS)
        before = page.text_content("#heldout")
        assert "held-out exact match on a sample of" in before

        page.click(f"#heads button[data-head='{layer},{head}']")
        expect(page.locator("#heldout")).to_contain_text("with those heads off", timeout=TIMEOUT_MS)
        after = page.text_content("#heldout")
        assert after != before and "all heads on" in page.text_content("#prediction")
        assert page.locator("#attention-views #grid td").count() > 0  # the offline viewer's matrix view

        page.fill("#prompt", "21x")
        page.wait_for_selector("#error:not([hidden])")
        assert "unknown symbol 'x' at 3" in page.text_content("#error")
        page.fill("#prompt", "0121")
        expect(page.locator("#error")).to_be_hidden(timeout=TIMEOUT_MS)
        # the one console line allowed: the browser's note of the 400 the invalid symbol was answered with
        assert [e for e in errors if "status of 400" not in e] == [] and len(errors) <= 1
        assert all(url.startswith(local) for url in requests)
        context.close()


# -- the notebook widget ---------------------------------------------------------------------------


def test_the_widget_answers_through_its_traitlets(sort_run):
    """The widget's module is the page's front end, self-contained (no URL to fetch); a
    request written by the browser is answered in ``response``, an error in one line."""
    from gptdecoder import live
    from gptdecoder.lab.assets import asset

    w = live.widget(str(sort_run))
    module = w._esm
    assert "function drawAttentionViews" in module and "function startLab" in module and "export default" in module
    assert "http://" not in module and "https://" not in module and "require(" not in module
    w.request = {"id": 1, "kind": "info", "body": {}}
    assert w.response["id"] == 1 and w.response["result"]["kind"] == "task"
    w.request = {"id": 2, "kind": "analyse", "body": {"prompt": "2 1 0 2 1", "heads": [[0, 0]]}}
    assert w.response["id"] == 2 and w.response["result"]["prediction"]["correct"] == "01122"
    w.request = {"id": 3, "kind": "analyse", "body": {"prompt": "21x"}}
    assert w.response == {"id": 3, "error": "unknown symbol 'x' at 3; the task's symbols are 0 1 2"}
    w.request = {"id": 4, "kind": "shutdown", "body": {}}
    assert "unknown request" in w.response["error"]
    assert asset("lab_ui.css") in w._css



def test_mean_ablation_and_the_remaining_bad_inputs(server, tmp_path):
    """Mean ablation works for prompts shorter than the held-out ones (each position's own
    mean) and generation under it; a text model offers zero ablation only; deep JSON, a
    tiny temperature, a huge seed and a character outside the vocabulary are one-line 400s."""
    status, answer = request(server, "POST", "/api/analyse", {"prompt": "210", "heads": [[0, 0]], "mode": "mean"})
    assert status == 200 and answer["mode"] == "mean" and answer["held_out"]["examples"] > 0
    status, answer = request(server, "POST", "/api/generate",
                             {"prompt": "210", "heads": [[0, 1]], "mode": "mean", "greedy": True, "max_new_tokens": 3})
    assert status == 200 and len(answer["tokens"]) == 3
    for body, message in [({"prompt": "01", "temperature": 1e-300}, "temperature"),
                          ({"prompt": "01", "seed": 10**30}, "seed"),
                          ({"prompt": "01", "max_new_tokens": 30, "heads": [[0, 0]], "mode": "mean"}, "mean ablation")]:
        status, answer = request(server, "POST", "/api/generate", body)
        assert status == 400 and message in answer["error"], (body, answer)
    status, answer = request(server, "POST", "/api/analyse", b"[" * 60000)
    assert status == 400 and "nested too deep" in answer["error"]
    assert request(server, "POST", "/api/analyse", {"prompt": "01210"})[0] == 200

    from lab_runs import train_text_run

    text = LiveModel.from_loaded(load_model(train_text_run(tmp_path)))
    assert text.info()["modes"] == ["zero"]
    with pytest.raises(LiveError, match="mean ablation needs a task"):
        text.analyse("ROMEO", heads=[[0, 0]], mode="mean")
    with pytest.raises(LiveError) as refused:
        text.analyse("ROMEO {")
    assert "\n" not in str(refused.value)


def test_the_widget_always_answers(sort_run, monkeypatch):
    from gptdecoder import live

    w = live.widget(str(sort_run))
    monkeypatch.setattr(w.live, "analyse", lambda **body: 1 / 0)  # a bug in the model call
    w.request = {"id": 7, "kind": "analyse", "body": {"prompt": "01"}}
    assert w.response["id"] == 7 and w.response["error"].startswith("internal error (ZeroDivisionError")


def test_the_command_prints_its_url_and_ctrl_c_stops_it_cleanly(sort_run):
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "gptdecoder", "lab", "--run", str(sort_run)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        process.stdout.readline()  # "<model>: the live lab is at"
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        host_port, token = url[len("http://"):].split("/?token=")
        connection = http.client.HTTPConnection(host_port, timeout=60)
        connection.request("GET", "/api/info", headers={"X-Lab-Token": token})
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert "stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
