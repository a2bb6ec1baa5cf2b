"""Training: file format, compatibility with tiktoken and HF, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for the bpe_* helper modules
from bpe_edge_cases import EDGE_CASES  # noqa: E402
from bpe_reference import hf_tokenizer, tiktoken_encoding  # noqa: E402

import bpe  # noqa: E402
from bpe.byte_unicode import BYTE_ORDER, BYTE_TO_UNICODE  # noqa: E402

TEXT = (
    "The quick brown fox jumps over the lazy dog. " * 20
    + "Peter Piper picked a peck of pickled peppers; the peck Peter picked was pickled.\n" * 10
    + "naïve café — 日本語 テキスト 🐍🐍 1234 5678\n" * 5
    + " ".join(EDGE_CASES[:40])
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "vocab"
    bpe.train(TEXT, 400, out_dir=out)
    return out


def test_file_format(trained):
    lines = (trained / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "#version: 0.2" and lines[-1] == ""
    assert len(lines) == 2 + 400 - 257
    table = json.loads((trained / "encoder.json").read_text())
    assert len(table) == 400
    assert table["<|endoftext|>"] == 399
    assert [BYTE_TO_UNICODE[b] for b in BYTE_ORDER] == list(table)[:256]
    assert list(table.values()) == list(range(400))


def test_loads_everywhere_with_identical_ids(trained):
    ours = bpe.get_encoder(trained)
    assert ours.n_vocab == 400 and ours.eot_token == 399
    tik = tiktoken_encoding(trained, name="trained")
    hf = hf_tokenizer(trained)
    for text in [TEXT, *EDGE_CASES]:
        ids = ours.encode_ordinary(text)
        assert ids == tik.encode_ordinary(text), text[:50]
        assert ids == hf.encode(text).ids, text[:50]
        assert ours.decode(ids) == text
    assert len(ours.encode(TEXT)) < len(TEXT.encode()) / 2  # it actually compresses


def test_returned_encoder_matches_files(trained):
    returned = bpe.train(TEXT, 400)
    assert returned.encode(TEXT) == bpe.get_encoder(trained).encode(TEXT)


def test_deterministic(tmp_path):
    bpe.train(TEXT, 300, out_dir=tmp_path / "a")
    bpe.train(TEXT, 300, out_dir=tmp_path / "b")
    for name in ("encoder.json", "vocab.bpe"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_overwrite_is_atomic_replacement(tmp_path):
    out = tmp_path / "vocab"
    bpe.train(TEXT, 300, out_dir=out)
    bpe.train(TEXT, 320, out_dir=out)  # replaces the previous vocabulary
    assert bpe.load_encoder(out).n_vocab == 320
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab"]  # no temp leftovers


def test_failed_training_writes_nothing(tmp_path):
    out = tmp_path / "vocab"
    with pytest.raises(bpe.BPEError):
        bpe.train("ab ab", 100_000, out_dir=out)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_clobber_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(bpe.BPEError, match="other files"):
        bpe.train(TEXT, 300, out_dir=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("size", [0, 256, -5, 2.5, "300"])
def test_bad_vocab_sizes(size):
    with pytest.raises(bpe.BPEError, match="vocab_size"):
        bpe.train(TEXT, size)


def test_vocab_size_too_large():
    with pytest.raises(bpe.BPEError, match="too large"):
        bpe.train("aaaa bbbb", 300)  # upper bound check
    with pytest.raises(bpe.BPEError, match="too large"):
        bpe.train("ab ab ab ab ab ab", 260)  # runs out of pairs


def test_minimum_vocab_size():
    enc = bpe.train("hello", 257)
    assert enc.n_vocab == 257 and enc.encode("hi") == [ord("h") - 33, ord("i") - 33]
