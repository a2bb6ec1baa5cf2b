"""Time to train a 2,048-token BPE vocabulary on Tiny Shakespeare (goal < 60 s).

Needs the project installed (``pip install -e .``), like the other benchmarks.

    python benchmarks/bpe_train_speed.py [--vocab-size N] [--file TEXT]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import bpe

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--file", type=Path, default=SHAKESPEARE)
    args = parser.parse_args()
    text = args.file.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        encoder = bpe.train(text, args.vocab_size, out_dir=Path(tmp) / "vocab")
        seconds = time.perf_counter() - start
        ids = encoder.encode(text)
    print(f"trained {encoder.n_vocab} tokens on {args.file} in {seconds:.2f} s (goal < 60 s)")
    print(f"{len(text.encode())} bytes -> {len(ids)} tokens ({len(text.encode()) / len(ids):.2f} bytes/token)")


if __name__ == "__main__":
    main()
