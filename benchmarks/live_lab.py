"""The live lab's speed: one request's latency, a loopback load test, and the page's first paint.

Run from the repository root:

    python benchmarks/live_lab.py [--run runs/config] [--clients 20] [--requests 50]

* One request: a 64-token prompt, answered with the prediction and every layer's
  attention (``/api/analyse``), timed over HTTP on loopback, median of 30; next to the
  same model's bare forward pass on those 64 tokens in this process (the baseline: what
  the server adds is the difference). The demo run's context is 11 tokens, so the model
  timed is the demo config's shape (2 layers, 4 heads, d_model 32) with a 64-token
  context, freshly initialised: the time does not depend on the weights.
* Load: ``--clients`` threads each sending ``--requests`` requests at once (half of
  them with a head switched off); errors counted, latency p50/p95.
* First paint: the page opened in the system Chromium (if present), Chrome's
  first-contentful-paint on loopback.
Targets: one request <= 100 ms, first paint <= 1 s, 0 errors under load.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the browser helpers (system Chromium via Playwright)


def post(address: tuple, token: str, path: str, body: dict) -> tuple[int, float]:
    """(status, seconds) of one JSON request."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection(*address, timeout=120)
    connection.request("POST", path, body=json.dumps(body), headers={"X-Lab-Token": token})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, time.perf_counter() - start


def text_run(directory: Path) -> Path:
    """A run directory with the demo's model shape, a 64-token context and a character vocabulary."""
    import dataclasses

    import torch

    from gptdecoder.config import config_from_dict
    from gptdecoder.data.tokenizers import CharTokenizer
    from gptdecoder.model import GPT, GPTConfig
    from gptdecoder.storage import save_checkpoint

    tokenizer = CharTokenizer("".join(chr(c) for c in range(32, 127)) + "\n")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.n_vocab, block_size=64, n_layer=2, n_head=4, d_model=32))
    raw = {"model": dataclasses.asdict(model.config), "task": {"name": "text"}, "data": {"tokenizer": "char"},
           "output": {"dir": str(directory)}}
    save_checkpoint(directory / "ckpt.pt", {"model": model.state_dict(), "model_config": dataclasses.asdict(model.config),
                                            "config": config_from_dict(raw).to_dict(), "iter": 0})
    tokenizer.save(directory / "tokenizer")
    return directory


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="a run to serve for the load test (default: the 64-token model)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from gptdecoder.live.server import LabServer
    from gptdecoder.live.session import LiveModel
    from gptdecoder.runs import load_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_model(args.run or text_run(Path(tmp)))
        live = LiveModel.from_loaded(loaded)
        lab = LabServer(live, "127.0.0.1", 0)
        threading.Thread(target=lab.serve_forever, daemon=True).start()
        address = lab.server_address[:2]
        info = live.info()
        if info["kind"] == "text":
            prompt = ("ROMEO: speak, fair Juliet; the night is young and the stars are out!"[:64])
            ids = live.parse(prompt).ids
        else:
            prompt = info["task"]["example"]
            ids = live.parse(prompt).ids
        x = torch.tensor([ids])

        # one request, against the bare forward pass
        for _ in range(3):
            post(address, lab.token, "/api/analyse", {"prompt": prompt})
        times = [post(address, lab.token, "/api/analyse", {"prompt": prompt})[1] for _ in range(30)]
        with torch.no_grad():
            forward = []
            for _ in range(30):
                start = time.perf_counter()
                loaded.model(x)
                forward.append(time.perf_counter() - start)
        one = statistics.median(times)
        print(f"model: {loaded.description} ({loaded.model.config.n_layer} layers x {loaded.model.config.n_head} heads, "
              f"d_model {loaded.model.config.d_model}); prompt of {len(ids)} tokens; {args.threads} threads")
        print(f"one /api/analyse request (prediction + every layer's attention + scores + lens), median of 30: "
              f"{1000 * one:.1f} ms (target <= 100 ms: {'met' if one <= 0.1 else 'MISSED'}); the bare forward pass: "
              f"{1000 * statistics.median(forward):.2f} ms ({one / statistics.median(forward):.0f}x)")

        # the load test
        n_heads = loaded.model.config.n_head

        def client(i: int) -> list[tuple[int, float]]:
            return [post(address, lab.token, "/api/analyse",
                         {"prompt": prompt, "heads": [[0, (i + j) % n_heads]] if (i + j) % 2 else []})
                    for j in range(args.requests)]

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            results = [r for rs in pool.map(client, range(args.clients)) for r in rs]
        wall = time.perf_counter() - start
        latencies = sorted(t for _, t in results)
        errors = sum(status != 200 for status, _ in results)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(f"load: {args.clients} clients x {args.requests} requests = {len(results)} in {wall:.1f} s "
              f"({len(results) / wall:.0f}/s): {errors} errors (target 0: {'met' if not errors else 'MISSED'}); "
              f"latency p50 {1000 * statistics.median(latencies):.0f} ms, p95 {1000 * p95:.0f} ms")

        # first paint in a real browser
        try:
            from browser_helpers import chromium

            def unavailable(reason: str) -> None:
                raise RuntimeError(reason)

            with chromium(unavailable) as browser:
                paints = []
                for _ in range(5):
                    page = browser.new_page()
                    page.goto(lab.url)
                    page.wait_for_selector("#prediction table")
                    paints.append(page.evaluate(
                        "() => performance.getEntriesByName('first-contentful-paint')[0].startTime"))
                    page.close()
                paint = statistics.median(paints) / 1000
                print(f"first contentful paint on loopback, median of 5: {1000 * paint:.0f} ms "
                      f"(target <= 1 s: {'met' if paint <= 1 else 'MISSED'})")
        except RuntimeError as e:
            print(f"first paint: not measured ({e})")
        lab.shutdown()
        lab.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
