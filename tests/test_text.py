"""Text mode data pipeline: download, tokenizers, cached bins, batches, whole-split scoring."""
from __future__ import annotations

import hashlib
import io
import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_model
from gptdecoder.config import DataConfig, config_from_dict
from gptdecoder.data import text
from gptdecoder.data.text import evaluate_split, prepare_corpus
from gptdecoder.data.tokenizers import BPETokenizer, CharTokenizer, TextStreamer, load_tokenizer
from gptdecoder.errors import UserError

CORPUS = "".join(f"Line {i}: to be, or not to be; that is the question {i % 7}.\n" for i in range(300))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus" / "input.txt"
    path.parent.mkdir()
    path.write_text(CORPUS, encoding="utf-8")
    return path


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def fake_opener(data: bytes, calls: list):
    def opener(url, timeout=None):
        calls.append(url)
        return FakeResponse(data)

    return opener


# -- the corpus file ---------------------------------------------------------------------


def test_download_verifies_and_writes_atomically(tmp_path, monkeypatch):
    data = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
    calls: list = []
    monkeypatch.setattr(text, "urlopen", fake_opener(data, calls))
    dest = tmp_path / "data" / "tinyshakespeare" / "input.txt"
    text.download("http://example.invalid/x", dest, hashlib.sha256(data).hexdigest(), len(data))
    assert dest.read_bytes() == data and calls == ["http://example.invalid/x"]
    assert [p.name for p in dest.parent.iterdir()] == ["input.txt"]  # no temporary file left


def test_download_with_wrong_hash_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "urlopen", fake_opener(b"not shakespeare", []))
    dest = tmp_path / "tinyshakespeare" / "input.txt"
    with pytest.raises(UserError, match="sha256"):
        text.download("http://example.invalid/x", dest, "0" * 64, 15)
    assert not dest.exists()


def test_missing_standard_file_is_downloaded(tmp_path, monkeypatch):
    data = b"tiny"
    calls: list = []
    monkeypatch.setattr(text, "urlopen", fake_opener(data, calls))
    monkeypatch.setattr(text, "SHAKESPEARE_SHA256", hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(text, "SHAKESPEARE_BYTES", len(data))
    path = tmp_path / "data" / "tinyshakespeare" / "input.txt"
    assert text.ensure_text(path) == path and path.read_bytes() == data
    assert calls == [text.SHAKESPEARE_URL]
    text.ensure_text(path)  # present now: no second download
    assert len(calls) == 1


def test_offline_says_where_to_put_the_file(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(text, "urlopen", offline)
    path = tmp_path / "data" / "tinyshakespeare" / "input.txt"
    with pytest.raises(UserError) as e:
        text.ensure_text(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message and text.SHAKESPEARE_URL in message


def test_custom_path_is_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "urlopen", None)  # would raise if called
    with pytest.raises(UserError, match="no such file"):
        text.ensure_text(tmp_path / "mine.txt")


@pytest.mark.parametrize("content, match", [(b"", "empty"), (b"caf\xe9 au lait", "not UTF-8")])
def test_bad_text_files(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        prepare_corpus(DataConfig(path=str(path)), log=lambda s: None)


def test_unknown_tokenizer_is_a_user_error():
    with pytest.raises(UserError, match="data.tokenizer='words'"):
        config_from_dict({"task": {"name": "text"}, "model": {"block_size": 8}, "data": {"tokenizer": "words"}})


# -- tokenizers --------------------------------------------------------------------------


def test_char_tokenizer_round_trip_and_errors(tmp_path):
    tok = CharTokenizer.from_text("hello, world\n")
    assert tok.decode(tok.encode("world, hello\n")) == "world, hello\n"
    with pytest.raises(UserError, match="'Z'"):
        tok.encode("Zebra")
    with pytest.raises(UserError, match="beyond the character vocabulary"):
        tok.decode([0, tok.n_vocab])
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.encode("hello") == tok.encode("hello") and again.identity == tok.identity


def test_gpt2_tokenizer_saves_its_files(tmp_path):
    tok = BPETokenizer.gpt2()
    assert tok.encode("Hello world") == [15496, 995] and tok.eot_token == 50256
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.decode(again.encode("ROMEO: ay")) == "ROMEO: ay" and again.identity == tok.identity
    with pytest.raises(UserError, match="token id"):
        tok.decode([tok.n_vocab + 5])


def test_streamer_holds_back_split_utf8():
    tok = BPETokenizer.gpt2()
    ids = tok.encode("a🦄b")  # the unicorn is several byte-level tokens
    streamer = TextStreamer(tok)
    pieces = [streamer.push(i) for i in ids] + [streamer.flush()]
    assert "".join(pieces) == "a🦄b"
    assert all("\ufffd" not in p for p in pieces) and "🦄" in pieces


# -- the encoded corpus ------------------------------------------------------------------


def test_prepare_splits_caches_and_reencodes_on_change(corpus):
    logs: list = []
    data = prepare_corpus(DataConfig(path=str(corpus)), log=logs.append)
    split = int(len(CORPUS) * 0.9)
    assert data.tokenizer.decode(data.train.tolist()) == CORPUS[:split]
    assert data.tokenizer.decode(data.val.tolist()) == CORPUS[split:]
    assert data.train.dtype == np.uint16 and (data.cache_dir / "train.bin").is_file()
    assert data.val_bytes == len(CORPUS[split + 1 :].encode())
    assert len(logs) == 1
    prepare_corpus(DataConfig(path=str(corpus)), log=logs.append)
    assert len(logs) == 1  # reused
    corpus.write_text(CORPUS + "More text!\n", encoding="utf-8")
    again = prepare_corpus(DataConfig(path=str(corpus)), log=logs.append)
    assert len(logs) == 2 and again.tokenizer.decode(again.val.tolist()).endswith("More text!\n")


def test_derived_data_never_goes_beside_the_text(corpus, tmp_path):
    """The text may sit on a read-only disk: the encoded bins go to our cache directory."""
    before = sorted(p.name for p in corpus.parent.iterdir())
    data = prepare_corpus(DataConfig(path=str(corpus), cache_dir=str(tmp_path / "cache")), log=lambda s: None)
    assert sorted(p.name for p in corpus.parent.iterdir()) == before
    assert data.cache_dir.is_relative_to(tmp_path / "cache") and (data.cache_dir / "val.bin").is_file()


def test_gpt2_corpus(corpus):
    data = prepare_corpus(DataConfig(path=str(corpus), tokenizer="gpt2"), log=lambda s: None)
    assert data.tokenizer.n_vocab == 50257 and data.cache_dir.name.endswith(".gpt2")
    assert data.tokenizer.decode(data.train.tolist() + data.val.tolist()) == CORPUS


def test_bpe_vocabulary_is_learned_once_and_reused(corpus, tmp_path):
    cfg = DataConfig(path=str(corpus), tokenizer="bpe", vocab_size=300, vocab_dir=str(tmp_path / "vocab"))
    logs: list = []
    data = prepare_corpus(cfg, log=logs.append)
    vocab = tmp_path / "vocab" / "corpus-300"
    assert (vocab / "encoder.json").is_file() and (vocab / "vocab.bpe").is_file()
    assert data.tokenizer.n_vocab <= 300 and len(data.train) < 0.9 * len(CORPUS)
    assert data.tokenizer.decode(data.train.tolist() + data.val.tolist()) == CORPUS
    learned = [line for line in logs if "learning" in line]
    prepare_corpus(cfg, log=logs.append)
    assert [line for line in logs if "learning" in line] == learned  # not learned again


def test_corpus_shorter_than_a_window(corpus):
    data = prepare_corpus(DataConfig(path=str(corpus)), log=lambda s: None)
    data.check_block_size(64)
    with pytest.raises(UserError, match="too short"):
        data.check_block_size(len(data.val))


def test_batches_are_shifted_windows(corpus):
    data = prepare_corpus(DataConfig(path=str(corpus)), log=lambda s: None)
    x, y = data.get_batch("train", 5, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    text_x = data.tokenizer.decode(x[0].tolist()) + data.tokenizer.decode(y[0, -1:].tolist())
    assert text_x in CORPUS


# -- scoring -----------------------------------------------------------------------------


def test_evaluate_scores_every_token_once():
    model = tiny_model(block_size=8, n_layer=1, train=True)
    tokens = np.random.default_rng(0).integers(0, 11, size=45).astype(np.uint16)
    score = evaluate_split(model, tokens, n_bytes=60, block_size=8, max_logits=8 * 11 * 2)
    ids = torch.tensor(tokens.astype(np.int64))
    total = 0.0
    with torch.no_grad():
        for start in range(0, 44, 8):  # non-overlapping windows, the last one short
            x, y = ids[start : min(start + 8, 44)], ids[start + 1 : min(start + 9, 45)]
            logits, _ = model(x[None])
            total += torch.nn.functional.cross_entropy(logits[0], y, reduction="sum").item()
    assert score.tokens == 44
    assert score.loss == pytest.approx(total / 44, rel=1e-5)
    assert score.bits_per_byte == pytest.approx(total / (math.log(2) * 60), rel=1e-5)
    assert model.training  # the mode is restored


def test_evaluate_restores_training_mode_when_interrupted():
    model = tiny_model(block_size=8, n_layer=1, train=True)

    def interrupt(tensor, hook):
        raise KeyboardInterrupt

    with model.hooks(fwd_hooks=[("hook_embed", interrupt)]), pytest.raises(KeyboardInterrupt):
        evaluate_split(model, np.arange(30, dtype=np.uint16) % 11, n_bytes=29, block_size=8)
    assert model.training


def test_uniform_model_scores_log_vocab():
    model = tiny_model(vocab_size=7, block_size=4, n_layer=1, n_head=1, d_model=8, train=True)
    torch.nn.init.zeros_(model.lm_head.weight)  # tied: every logit is 0
    score = evaluate_split(model, np.arange(20, dtype=np.uint16) % 7, n_bytes=19, block_size=4)
    assert score.loss == pytest.approx(math.log(7), rel=1e-5)
    assert score.bits_per_byte == pytest.approx(math.log2(7), rel=1e-5)


def test_an_unwritable_cache_is_one_clear_error(corpus, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory would go")
    with pytest.raises(UserError, match="data.cache_dir"):
        prepare_corpus(DataConfig(path=str(corpus), cache_dir=str(blocker)), log=lambda s: None)
