"""bpe's public API: special tokens, decoding, explain, vocabulary errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import bpe
from bpe.encoder import GPT2_SHA256, gpt2_vocabulary_dir
from bpe.vocab_files import read_vocabulary


@pytest.fixture(scope="module")
def enc() -> bpe.Encoder:
    return bpe.get_encoder()


def test_basic_facts(enc):
    assert enc.name == "gpt2"
    assert enc.n_vocab == 50257
    assert enc.eot_token == 50256
    assert enc.special_tokens_set == {"<|endoftext|>"}
    assert enc.encode("Hello world") == [15496, 995]
    assert bpe.get_encoder() is enc  # cached per path
    assert bpe.load_encoder() is not enc


def test_special_tokens_disallowed_by_default(enc):
    with pytest.raises(ValueError, match="special token '<\\|endoftext\\|>'.*disallowed"):
        enc.encode("a<|endoftext|>b")
    with pytest.raises(bpe.BPEError):
        enc.encode("<|endoftext|>", disallowed_special={"<|endoftext|>"})


def test_special_tokens_allowed(enc):
    expected = [64, 50256, 65]
    assert enc.encode("a<|endoftext|>b", allowed_special="all") == expected
    assert enc.encode("a<|endoftext|>b", allowed_special={"<|endoftext|>"}) == expected
    assert enc.decode(expected) == "a<|endoftext|>b"


def test_special_token_as_ordinary_text(enc):
    ids = enc.encode("<|endoftext|>", disallowed_special=())
    assert ids == [27, 91, 437, 1659, 5239, 91, 29]
    assert ids == enc.encode_ordinary("<|endoftext|>")


def test_decode_unknown_ids(enc):
    for bad in ([50257], [-1], [1, 2, 10**9]):
        with pytest.raises(bpe.BPEError, match="unknown token id"):
            enc.decode(bad)


def test_decode_partial_utf8(enc):
    ids = enc.encode("🐍")
    assert len(ids) > 1
    assert enc.decode(ids[:1]) == "\ufffd"
    assert enc.decode_bytes(ids) == "🐍".encode()


def test_decode_tokens_labels(enc):
    ids = enc.encode("Hi there\n\tok")
    labels = enc.decode_tokens(ids)
    assert len(labels) == len(ids)
    assert "␣there" in labels and "↵" in labels
    assert enc.decode_tokens(enc.encode("🐍"))[0].startswith("<0x")


def test_explain(enc):
    pieces = bpe.explain(" tokenization Hello")
    assert [p.piece for p in pieces] == [" tokenization", " Hello"]
    first = pieces[0]
    assert first.ids == enc.encode(" tokenization") == [11241, 1634]
    assert first.tokens == ["Ġtoken", "ization"]
    assert first.steps[0] == (("Ġ", "t"), 0, "Ġt")
    ranks = [step.rank for step in first.steps]
    assert ranks == sorted(ranks)  # in a single word merges happen by rank here
    assert pieces[1].whole_token
    text = bpe.format_explanation(pieces)
    assert "Ġ + t -> Ġt" in text and "rank 0" in text


def _copy_gpt2(tmp_path: Path) -> Path:
    target = tmp_path / "vocab"
    shutil.copytree(gpt2_vocabulary_dir(), target, ignore=lambda d, names: [
        n for n in names if n not in ("encoder.json", "vocab.bpe")
    ])
    return target


def test_load_other_directory(tmp_path):
    copy = _copy_gpt2(tmp_path)
    assert bpe.get_encoder(copy).encode("Hello world") == [15496, 995]


def test_missing_directory_and_file(tmp_path):
    with pytest.raises(bpe.BPEError, match="not found"):
        bpe.get_encoder(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "vocab.bpe").write_text("#version: 0.2\n")
    with pytest.raises(bpe.BPEError, match="encoder.json"):
        bpe.get_encoder(tmp_path / "half")


def test_corrupt_json(tmp_path):
    copy = _copy_gpt2(tmp_path)
    (copy / "encoder.json").write_text('{"a": 1,')
    with pytest.raises(bpe.BPEError, match=r"encoder\.json: not valid JSON"):
        bpe.get_encoder(copy)


def test_wrong_sha256(tmp_path):
    copy = _copy_gpt2(tmp_path)
    with open(copy / "vocab.bpe", "a", encoding="utf-8") as f:
        f.write("\n")
    with pytest.raises(bpe.BPEError, match=r"vocab\.bpe: sha256"):
        read_vocabulary(copy, GPT2_SHA256)


def test_merge_not_in_encoder(tmp_path):
    copy = _copy_gpt2(tmp_path)
    with open(copy / "vocab.bpe", "a", encoding="utf-8") as f:
        f.write("zzzq qqqz\n")
    with pytest.raises(bpe.BPEError, match=r"vocab\.bpe, line 50002: .*zzzq.*not in"):
        bpe.get_encoder(copy)


def test_encoder_json_bad_ids(tmp_path):
    copy = _copy_gpt2(tmp_path)
    table = json.loads((copy / "encoder.json").read_text())
    table["<|extra|>"] = 99999
    (copy / "encoder.json").write_text(json.dumps(table))
    with pytest.raises(bpe.BPEError, match="ids must be exactly"):
        bpe.get_encoder(copy)
