"""Exact parity of bpe's GPT-2 encoder with tiktoken, and exact round trips."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest
import regex

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for the bpe_* helper modules
from bpe_edge_cases import EDGE_CASES, SURROGATE_CASES  # noqa: E402
from bpe_reference import SHAKESPEARE, tiktoken_encoding  # noqa: E402

import bpe  # noqa: E402
from bpe.encoder import gpt2_vocabulary_dir  # noqa: E402
from bpe.pretokenize import ASCII_PATTERN, GPT2_PATTERN  # noqa: E402


@pytest.fixture(scope="module")
def ours() -> bpe.Encoder:
    return bpe.get_encoder()


@pytest.fixture(scope="module")
def reference():
    return tiktoken_encoding(gpt2_vocabulary_dir())


def test_edge_corpus_is_big_enough():
    assert len(EDGE_CASES) >= 50


@pytest.mark.parametrize("text", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_edge_case_parity_and_round_trip(ours, reference, text):
    ids = ours.encode_ordinary(text)
    assert ids == reference.encode_ordinary(text)
    assert ours.decode(ids) == text
    assert reference.decode(ids) == text
    assert ours.decode_bytes(ids) == text.encode("utf-8")


@pytest.mark.parametrize("text", SURROGATE_CASES)
def test_surrogates_match_tiktoken(ours, reference, text):
    ids = ours.encode_ordinary(text)
    assert ids == reference.encode_ordinary(text)
    assert ours.encode(text) == reference.encode(text)
    assert ours.decode(ids) == reference.decode(ids)


def test_fresh_encoder_gives_same_ids(reference):
    text = EDGE_CASES[3] + EDGE_CASES[20]
    assert bpe.load_encoder().encode(text) == reference.encode(text)


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason=f"{SHAKESPEARE} not present")
def test_tiny_shakespeare_parity(reference):
    text = SHAKESPEARE.read_text(encoding="utf-8")
    ours = bpe.load_encoder()  # cold cache
    ids = ours.encode(text)
    assert ids == reference.encode(text)
    assert ours.decode(ids) == text
    assert ours.encode(text) == ids  # warm cache, same answer


@pytest.mark.parametrize("word", ["a" * 100_000, "".join(random.Random(7).choices("abcdefghij", k=100_000))])
def test_long_word(word, reference):
    ours = bpe.load_encoder()
    ids = ours.encode(word)
    assert ours.decode(ids) == word
    assert ids == reference.encode(word)


def test_ascii_fast_path_matches_unicode_pattern():
    """The stdlib-re ASCII pattern must split ASCII text like GPT-2's regex."""
    rng = random.Random(0)
    alphabet = "aZ09 '\t\n\r\x0b\x0c\x1c\x1f!.-sdtmlrev" + "".join(map(chr, range(128)))
    fast = re.compile(ASCII_PATTERN).findall
    slow = regex.compile(GPT2_PATTERN).findall
    for _ in range(3000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 40)))
        assert fast(text) == slow(text), repr(text)


def test_scan_and_heap_merges_agree(ours):
    rng = random.Random(1)
    for _ in range(2000):
        word = "".join(rng.choices("aabcdeĠthinrs", k=rng.randint(1, 120)))
        assert ours._merge_by_scan(word, None) == ours._merge_by_heap(word, None), word
