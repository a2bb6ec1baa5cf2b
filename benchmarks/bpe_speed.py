"""Encoding throughput of bpe vs tiktoken vs Hugging Face tokenizers.

All three use OpenAI's GPT-2 files, loaded offline, and run single-threaded
in this one process, so the ratios are meaningful even on a busy machine.
Each bpe run uses a freshly built encoder, i.e. an empty piece cache (its
only content is the vocabulary itself). Reports the median of several runs.

It also prints the figures behind two design choices that bpe's docstrings
describe only in words: how much faster the standard-library ``re`` pattern
splits ASCII text than the full ``regex`` one (bpe/pretokenize.py), and how
few distinct pre-tokens the text has and how many of those are whole
vocabulary tokens, i.e. how little reaches the merge loop (bpe/encoder.py).

Needs the project installed (``pip install -e .``), like the other benchmarks.

    python benchmarks/bpe_speed.py [--repeats N] [--file TEXT]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # must be set before importing tokenizers
os.environ["RAYON_NUM_THREADS"] = "1"

import regex  # noqa: E402
import tiktoken  # noqa: E402
from tiktoken.load import data_gym_to_mergeable_bpe_ranks  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402

import bpe  # noqa: E402
from bpe.encoder import gpt2_vocabulary_dir  # noqa: E402
from bpe.pretokenize import ASCII_PATTERN, GPT2_PATTERN  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
TIKTOKEN_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def references(vocab: Path):
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the local files, no cache, no network
    ranks = data_gym_to_mergeable_bpe_ranks(str(vocab / "vocab.bpe"), str(vocab / "encoder.json"))
    tik = tiktoken.Encoding(
        name="gpt2", pat_str=TIKTOKEN_PATTERN, mergeable_ranks=ranks,
        explicit_n_vocab=50257, special_tokens={"<|endoftext|>": 50256},
    )
    hf = Tokenizer(models.BPE.from_file(str(vocab / "encoder.json"), str(vocab / "vocab.bpe")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    return tik, hf


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report_pretokenizer(text: str, repeats: int) -> None:
    """Print how text is split: the ASCII fast path's speed-up and the piece counts."""
    if text.isascii():
        ascii_findall = re.compile(ASCII_PATTERN).findall
        unicode_findall = regex.compile(GPT2_PATTERN).findall
        ascii_t, unicode_t = [], []
        for _ in range(repeats):  # interleaved, as above
            ascii_t.append(median_seconds(lambda: ascii_findall(text), 1))
            unicode_t.append(median_seconds(lambda: unicode_findall(text), 1))
        speedup = statistics.median(unicode_t) / statistics.median(ascii_t)
        print(f"pre-tokenize: re (ASCII path) is {speedup:.2f}x as fast as regex")
    else:
        print("pre-tokenize: text is not ASCII, so the re fast path is not used")
    pieces = bpe.pretokenize(text)
    distinct = set(pieces)
    encoder = bpe.get_encoder()
    whole = sum(1 for piece in distinct if len(encoder.encode_ordinary(piece)) == 1)
    print(
        f"pre-tokens: {len(pieces)}, distinct: {len(distinct)}, of which whole tokens: {whole}"
        f" (only the other {len(distinct) - whole} reach the merge loop)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--file", type=Path, default=SHAKESPEARE)
    args = parser.parse_args()
    text = args.file.read_text(encoding="utf-8")
    megabytes = len(text.encode("utf-8")) / 1e6
    vocab = gpt2_vocabulary_dir()
    tik, hf = references(vocab)

    # Build the fresh encoders up front: construction is not encoding.
    fresh = [bpe.load_encoder() for _ in range(args.repeats)]
    ours_ids = fresh[0].encode(text)
    assert ours_ids == tik.encode(text) == hf.encode(text).ids, "token ids differ!"
    fresh[0] = bpe.load_encoder()

    # Interleave the three so that load changes on the machine hit all alike.
    ours_t, tik_t, hf_t = [], [], []
    for encoder in fresh:
        ours_t.append(median_seconds(lambda: encoder.encode(text), 1))
        tik_t.append(median_seconds(lambda: tik.encode(text), 1))
        hf_t.append(median_seconds(lambda: hf.encode(text), 1))
    ours, theirs, hugging = map(statistics.median, (ours_t, tik_t, hf_t))
    warm = median_seconds(lambda: fresh[-1].encode(text), 3)
    build = median_seconds(bpe.load_encoder, 1)

    print(f"text: {args.file} ({megabytes:.2f} MB), median of {args.repeats} runs")
    print(f"bpe (fresh encoder) {megabytes / ours:7.2f} MB/s")
    print(f"bpe (warm cache)    {megabytes / warm:7.2f} MB/s")
    print(f"tiktoken            {megabytes / theirs:7.2f} MB/s")
    print(f"HF tokenizers       {megabytes / hugging:7.2f} MB/s")
    print(f"ratio bpe/tiktoken  {theirs / ours:7.2f}   (goal >= 0.40)")
    print(f"ratio bpe/HF        {hugging / ours:7.2f}   (goal > 1)")
    print(f"building an encoder {build:7.2f} s (not included above)")
    report_pretokenizer(text, args.repeats)

    for name, word in [
        ('"a" * 100000', "a" * 100_000),
        ("100000 random letters", "".join(random.Random(0).choices("abcdefghijklmnopqrstuvwxyz", k=100_000))),
    ]:
        encoder = bpe.load_encoder()
        seconds = median_seconds(lambda: encoder.encode(word), 1)
        print(f"long word {name:24s} {seconds:6.3f} s (goal < 1 s)")


if __name__ == "__main__":
    main()
