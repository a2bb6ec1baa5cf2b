"""Text corpora as a data source: a UTF-8 file -> tokens -> batches and validation scores.

The pipeline, in the order a run meets it:

1. ``ensure_text`` finds the corpus, downloading Tiny Shakespeare when the standard
   file is missing (checked against its sha256, written atomically);
2. the tokenizer (gptdecoder/data/tokenizers.py) turns it into ids;
3. ``prepare_corpus`` encodes the text once into ``train.bin`` / ``val.bin`` (uint16,
   first 90% / last 10%, as nanoGPT) in our cache directory -- never beside the text,
   which may sit on a read-only disk -- and reuses them while text and tokenizer are
   unchanged;
4. ``TextData`` (the Trainer's DataSource) draws random windows for training and
   ``evaluate_split`` scores the *whole* validation split, in bits per byte too, so
   runs with different tokenizers can be compared.

Every mistake a user can make (missing or empty file, bad UTF-8, a corpus shorter
than the context, a character the vocabulary lacks) raises one UserError.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from gptdecoder import runtime
from gptdecoder.storage import write_atomic
from gptdecoder.config import Config, DataConfig, default_cache_dir
from gptdecoder.data.source import Batch, step_seed
from gptdecoder.data.tokenizers import TOKENIZER_DIR, TRAIN_FRACTION, CharTokenizer, Tokenizer, build_tokenizer
from gptdecoder.errors import UserError

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_BYTES = 1_115_394

urlopen = urllib.request.urlopen  # module-level so tests can swap in a fake opener


# -- the corpus file -------------------------------------------------------------------


def is_standard_location(path: Path) -> bool:
    """True for ``.../tinyshakespeare/input.txt``: the one file we know how to download."""
    return path.parts[-2:] == ("tinyshakespeare", "input.txt")


def ensure_text(path: str | os.PathLike[str]) -> Path:
    """The corpus path, downloading Tiny Shakespeare first if it is the missing standard file."""
    path = Path(path)
    if path.is_file():
        return path
    if not is_standard_location(path):
        raise UserError(f"data.path={str(path)!r}: no such file (any UTF-8 text file will do)")
    download(SHAKESPEARE_URL, path, SHAKESPEARE_SHA256, SHAKESPEARE_BYTES)
    return path


def download(url: str, dest: Path, sha256: str, size: int) -> None:
    """Fetch ``url`` with a progress bar, check size and sha256, then move it into place.

    The file appears at ``dest`` only once it is complete and verified (temporary file
    + os.replace), so an interrupted download never leaves a truncated corpus behind.
    """
    from tqdm import tqdm

    where = (
        f"download {url} (or copy an existing input.txt) to {dest}, "
        "or set data.path to another UTF-8 text file"
    )
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    try:
        with urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or size)
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}") as bar:
                while chunk := response.read(1 << 16):
                    digest.update(chunk)
                    chunks.append(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"{dest} is missing and downloading it failed ({reason}): {where}") from None
    data = b"".join(chunks)
    if len(data) != size or digest.hexdigest() != sha256:
        raise UserError(
            f"downloaded {len(data)} bytes with sha256 {digest.hexdigest()[:12]}..., expected {size} "
            f"bytes with sha256 {sha256[:12]}...: {where}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dest, data)


def read_text(path: Path) -> tuple[str, str]:
    """(text, sha256 of the file's bytes); empty or non-UTF-8 files are user errors."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start} is {raw[e.start:e.start + 1]!r})") from None
    if not text:
        raise UserError(f"{path} is empty: text mode needs some text to learn from")
    return text, hashlib.sha256(raw).hexdigest()


# -- the encoded corpus ----------------------------------------------------------------


@dataclass
class TextCorpus:
    """Train and validation token streams plus what is needed to score them in bits/byte."""

    tokenizer: Tokenizer
    train: np.ndarray  # uint16 token ids (a read-only memmap of train.bin)
    val: np.ndarray
    val_bytes: int  # UTF-8 bytes of the val tokens that get predicted (all but the first)
    cache_dir: Path

    def check_block_size(self, block_size: int) -> None:
        """A user error unless both splits hold more than one context window (+1 target)."""
        for split, tokens in (("train", self.train), ("val", self.val)):
            if len(tokens) < block_size + 1:
                raise UserError(
                    f"the corpus is too short: its {split} split has {len(tokens)} tokens, fewer than one "
                    f"context window (model.block_size={block_size}) plus one; use a longer text "
                    f"(the val split is the last {1 - TRAIN_FRACTION:.0%}) or a smaller block_size"
                )

    def get_batch(
        self, split: str, batch_size: int, block_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows: x (B, T) and the next tokens y (B, T), int64 on CPU."""
        data = self.train if split == "train" else self.val
        starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator).numpy()
        rows = data[starts[:, None] + np.arange(block_size + 1)]  # (B, T + 1) gathered at once
        chunk = torch.from_numpy(rows.astype(np.int64))
        return chunk[:, :-1], chunk[:, 1:]


def prepare_corpus(cfg: DataConfig, log: Callable[[str], None] = print) -> TextCorpus:
    """Read, tokenize and split the corpus, reusing the cached ``.bin`` files when valid.

    The cache is ours, never beside the text: ``<cache_dir>/corpora/<stem>-<sha256
    prefix>.<tokenizer>/`` (``data.cache_dir``, default ``default_cache_dir()``). Its
    meta.json records the text's sha256 and the tokenizer's identity: change either
    and the corpus is encoded again.
    """
    path = ensure_text(cfg.path)
    text, text_sha = read_text(path)
    tokenizer = build_tokenizer(cfg, text, path, log)
    tag = cfg.tokenizer if cfg.tokenizer != "bpe" else f"bpe-{cfg.vocab_size}"
    root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    cache = root / "corpora" / f"{path.stem}-{text_sha[:16]}.{tag}"
    key = {"text_sha256": text_sha, "tokenizer": tokenizer.identity}
    meta_path = cache / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    if any(meta.get(k) != v for k, v in key.items()) or not (cache / "val.bin").is_file():
        if tokenizer.n_vocab > 1 << 16:
            raise UserError(f"a vocabulary of {tokenizer.n_vocab} tokens does not fit the uint16 train.bin")
        log(f"encoding {path} ({len(text):,} characters) with the {tokenizer.kind} tokenizer into {cache}/")
        split = int(len(text) * TRAIN_FRACTION)
        train_ids = np.array(tokenizer.encode(text[:split]), dtype=np.uint16)
        val_ids = np.array(tokenizer.encode(text[split:]), dtype=np.uint16)
        meta = dict(key, kind=tokenizer.kind, n_vocab=tokenizer.n_vocab, train_tokens=len(train_ids),
                    val_tokens=len(val_ids), val_bytes=len(tokenizer.decode_bytes(val_ids[1:].tolist())))
        if isinstance(tokenizer, CharTokenizer):
            meta["chars"] = tokenizer.chars  # the vocabulary, saved beside the data
        try:
            write_atomic(cache / "train.bin", train_ids.tobytes())
            write_atomic(cache / "val.bin", val_ids.tobytes())
            write_atomic(meta_path, json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
        except OSError as e:
            raise UserError(f"cannot write the encoded corpus to {cache}: {e.strerror or e}; set data.cache_dir "
                            "(or $GPTDECODER_CACHE) to a writable directory") from None

    def load(name: str) -> np.ndarray:
        if (cache / name).stat().st_size == 0:
            return np.zeros(0, dtype=np.uint16)
        return np.memmap(cache / name, dtype=np.uint16, mode="r")

    return TextCorpus(tokenizer, load("train.bin"), load("val.bin"), meta["val_bytes"], cache)


# -- scoring ---------------------------------------------------------------------------


@dataclass
class SplitScore:
    loss: float  # mean nats per predicted token
    bits_per_byte: float  # total nats / (ln 2 * bytes), comparable across tokenizers
    tokens: int  # predictions scored


@torch.no_grad()
def validation_text(path: Union[str, Path], n_chars: int = 2000) -> str:
    """The first ``n_chars`` characters of a corpus's validation split (its last
    ``1 - TRAIN_FRACTION``): text a model trained on the corpus has not been trained on."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"the corpus {str(path)!r} is not there: pass the text to look at")
    text = path.read_text(encoding="utf-8", errors="replace")
    return text[int(len(text) * TRAIN_FRACTION):][:n_chars]


def evaluate_split(
    model: torch.nn.Module,
    tokens: np.ndarray,
    n_bytes: int,
    block_size: int,
    device: str = "cpu",
    autocast: Optional[Callable[[], ContextManager]] = None,
    max_logits: int = 1 << 24,
    max_tokens: int = 1 << 14,
) -> SplitScore:
    """Score every token of a split (after the first) with non-overlapping windows.

    Window i reads tokens[i*T : (i+1)*T] and predicts the next token at each position,
    so each token is predicted exactly once (positions early in a window see less
    context, as in any windowed evaluation). Windows are batched, up to ``max_tokens``
    positions and ``max_logits`` logits at once: batches that small keep a small
    model's activations in the CPU's caches, which makes the whole pass faster than one
    big batch. The last, shorter window is scored on its own.
    """
    n_pred = len(tokens) - 1
    if n_pred < 1:
        raise UserError("the validation split has fewer than two tokens: use a longer text")
    vocab = model.config.vocab_size
    was_training = model.training
    model.eval()
    try:
        ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
        n_full = n_pred // block_size
        per_batch = max(1, min(max_logits // (block_size * vocab), max_tokens // block_size))
        total = 0.0
        batches = [(s, min(n_full, s + per_batch)) for s in range(0, n_full, per_batch)]
        for first, last in batches:
            span = ids[first * block_size : last * block_size + 1]
            x = span[:-1].view(last - first, block_size)
            y = span[1:].view(last - first, block_size)
            total += _sum_nats(model, x, y, device, autocast)
        if n_full * block_size < n_pred:  # the remainder window
            span = ids[n_full * block_size :]
            total += _sum_nats(model, span[None, :-1], span[None, 1:], device, autocast)
    finally:  # also when interrupted (Ctrl-C during a long evaluation): training continues as it was
        model.train(was_training)
    return SplitScore(total / n_pred, total / (math.log(2) * max(n_bytes, 1)), n_pred)


def _sum_nats(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: str, autocast) -> float:
    x, y = x.to(device), y.to(device)
    with autocast() if autocast is not None else contextlib.nullcontext():
        logits, _ = model(x)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()


# -- the data source -------------------------------------------------------------------------


class TextData:
    """A text corpus as the Trainer's DataSource: random windows of ``model.block_size``
    tokens for training, validation loss (and bits per byte) for evaluation."""

    def __init__(self, config: Config, batch_size: int, rank: int = 0, device: str = "cpu",
                 precision: str = "fp32", log: Callable[[str], None] = print) -> None:
        self.config, self.batch_size, self.rank = config, batch_size, rank
        self.device, self.precision = device, precision
        self.corpus = prepare_corpus(config.data, log=log)
        self.tokenizer = self.corpus.tokenizer
        self.vocab_size = self.tokenizer.n_vocab
        self.min_block_size = self.block_size = config.model.block_size  # text mode requires it
        self.corpus.check_block_size(self.block_size)
        quick = config.eval.quick_examples  # val windows scored during training
        self.quick_tokens = self.corpus.val[: quick * self.block_size + 1]
        self.quick_bytes = len(self.tokenizer.decode_bytes(self.quick_tokens[1:].tolist()))

    def get_batch(self, step: int) -> Batch:
        generator = torch.Generator().manual_seed(step_seed(self.config.train.seed, self.rank, step))
        x, y = self.corpus.get_batch("train", self.batch_size, self.block_size, generator)
        mask = torch.ones(x.shape, device=self.device)  # every next token counts
        return Batch(x.to(self.device), y.to(self.device), mask)

    def evaluate(self, model: torch.nn.Module, final: bool = False) -> dict:
        """Quick: the first eval.quick_examples validation windows. Final: the whole split."""
        tokens, n_bytes = (self.corpus.val, self.corpus.val_bytes) if final else (self.quick_tokens, self.quick_bytes)
        s = evaluate_split(model, tokens, n_bytes, self.block_size, self.device,
                           lambda: runtime.autocast(self.device, self.precision))
        if not final:
            return {"val_loss": s.loss, "val_bits_per_byte": s.bits_per_byte}
        return {
            "task": "text",
            "data": dataclasses.asdict(self.config.data),
            "tokenizer": self.tokenizer.kind,
            "vocab_size": self.tokenizer.n_vocab,
            "val_loss": round(s.loss, 4),
            "val_bits_per_byte": round(s.bits_per_byte, 4),
            "val_tokens": s.tokens,
            "val_bytes": self.corpus.val_bytes,
        }

    def save(self, run_dir: Path) -> None:
        """The tokenizer, so that generate and export can decode without the corpus."""
        self.tokenizer.save(run_dir / TOKENIZER_DIR)

    def describe(self) -> str:
        return (f"{self.config.data.path} ({self.tokenizer.kind} tokenizer, {self.tokenizer.n_vocab} tokens, "
                f"{len(self.corpus.train):,} train / {len(self.corpus.val):,} val tokens)")

    def summary(self, results: dict) -> list[str]:
        return [f"val loss {results['val_loss']:.4f} ({results['val_bits_per_byte']:.3f} bits/byte) over the whole "
                f"validation split",
                f"sample from it: python -m gptdecoder generate --run {self.config.output.dir} --prompt \"...\""]
