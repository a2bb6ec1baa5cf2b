"""``python -m gptdecoder lab --run PATH``: the live lab, a local page to poke a model.

Type a prompt and see the prediction, every head's attention, per-head scores and the
logit lens; switch heads off (zero or mean ablation) and see the prediction and, for a
task run, the held-out exact match change. Any model ``load_model`` opens: our task and
text runs, Hugging Face GPT-2 directories, nanoGPT checkpoints. The server
(gptdecoder/live/server.py) listens on 127.0.0.1 and answers only requests that carry the
token in the printed URL; Ctrl-C stops it.
"""
from __future__ import annotations

import argparse
import sys

from gptdecoder.errors import UserError

LOOPBACK = ("127.0.0.1", "localhost")  # the server speaks IPv4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="run_dir", metavar="PATH", required=True,
                        help="run directory, Hugging Face GPT-2 directory or nanoGPT ckpt.pt")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--meta", default=None, help="a nanoGPT character model's meta.pkl (found beside the "
                                                    "checkpoint or under data/<dataset>/ when not given)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow --host to be an address other machines can reach (the token is still required)")


def run(args: argparse.Namespace) -> int:
    from gptdecoder.live.server import LabServer
    from gptdecoder.live.session import LiveModel
    from gptdecoder.runs import load_model

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: expected 0 (any free port) .. 65535")
    if args.host not in LOOPBACK and not args.allow_remote:
        raise UserError(f"--host {args.host} would let other machines reach the lab: add --allow-remote if you mean it")
    live = LiveModel.from_loaded(load_model(args.run_dir, meta=args.meta))
    try:
        server = LabServer(live, args.host, args.port)
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    if args.host not in LOOPBACK:
        print(f"warning: listening on {args.host}: anyone who can reach it and has the token can use the model",
              file=sys.stderr)
    print(f"{live.description}: the live lab is at\n    {server.url}\n(Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
