"""Text mode: turn a UTF-8 text file into token batches and score a model on it.

The pipeline, in the order a run meets it:

1. ``ensure_text`` finds the corpus, downloading Tiny Shakespeare when the standard
   file is missing (checked against its sha256, written atomically);
2. ``build_tokenizer`` picks one of three tokenizers -- characters, GPT-2's BPE, or a
   BPE trained on this corpus -- behind one small interface (``Tokenizer``);
3. ``prepare_corpus`` encodes the text once into ``train.bin`` / ``val.bin`` (uint16,
   first 90% / last 10%, as nanoGPT) and reuses them while the text and the
   tokenizer are unchanged;
4. ``TextCorpus.get_batch`` draws random windows for training and
   ``evaluate_split`` scores the *whole* validation split, in bits per byte too, so
   runs with different tokenizers can be compared.

Every mistake a user can make (missing or empty file, bad UTF-8, a corpus shorter
than the context, a character the vocabulary lacks) raises one UserError.
"""
from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gptdecoder.errors import UserError

DEFAULT_PATH = "data/tinyshakespeare/input.txt"
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_BYTES = 1_115_394
TOKENIZERS = ("char", "gpt2", "bpe")
TRAIN_FRACTION = 0.9  # first 90% of the text trains, the last 10% validates (as nanoGPT)
TOKENIZER_DIR = "tokenizer"  # inside a run directory: what generate/export need to decode

urlopen = urllib.request.urlopen  # module-level so tests can swap in a fake opener


@dataclass
class DataConfig:
    """The ``data`` section of a text-mode config (``task.name: text``)."""

    path: str = DEFAULT_PATH
    tokenizer: str = "char"  # char | gpt2 | bpe
    vocab_size: int = 1024  # tokenizer: bpe only -- size of the vocabulary to learn
    vocab_dir: str = "vocab"  # tokenizer: bpe only -- learned vocabularies live in vocab_dir/<name>/

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise UserError(f"data.tokenizer={self.tokenizer!r}: expected one of {', '.join(TOKENIZERS)}")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 257:
            raise UserError(f"data.vocab_size={self.vocab_size!r}: expected an integer >= 257 (256 bytes + merges)")


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
    _write_atomic(dest, data)


def _write_atomic(dest: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


# -- tokenizers ------------------------------------------------------------------------


class Tokenizer:
    """What text mode needs from a tokenizer; subclasses are characters or byte-level BPE.

    ``kind`` is char, gpt2 or bpe; ``identity`` changes whenever the id assignment
    could (it keys the encoded-corpus cache).
    """

    kind: str
    identity: str
    n_vocab: int
    eot_token: Optional[int] = None  # <|endoftext|>, when the vocabulary has it

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def save(self, directory: Path) -> None:
        """Write what ``load_tokenizer(directory)`` needs to rebuild this tokenizer."""
        raise NotImplementedError


class CharTokenizer(Tokenizer):
    """One token per character: the sorted set of characters in the corpus."""

    kind = "char"

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.n_vocab = len(chars)
        self.identity = "char:" + hashlib.sha256(chars.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise UserError(
                f"the character vocabulary ({self.n_vocab} characters seen in training) has no {shown}"
            ) from None

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def decode(self, ids: Sequence[int]) -> str:
        try:
            if any(i < 0 for i in ids):
                raise IndexError
            return "".join(self.chars[i] for i in ids)
        except IndexError:
            bad = next(i for i in ids if not 0 <= i < self.n_vocab)
            raise UserError(f"token id {bad} is beyond the character vocabulary (ids 0..{self.n_vocab - 1})") from None

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "chars": self.chars}
        (directory / "meta.json").write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")


class BPETokenizer(Tokenizer):
    """Byte-level BPE through the project's ``bpe`` package (GPT-2's vocabulary or a learned one).

    ``files`` is the directory holding encoder.json and vocab.bpe; it is copied into
    the run so a run can be decoded (and exported) without the data directory.
    """

    def __init__(self, kind: str, files: Path) -> None:
        import bpe

        self.kind = kind
        self.files = files
        try:
            self.encoder = bpe.get_encoder(None if kind == "gpt2" else files)
        except bpe.BPEError as e:
            raise UserError(str(e)) from None
        self.n_vocab = self.encoder.n_vocab
        if "<|endoftext|>" in self.encoder.special_tokens_set:
            self.eot_token = self.encoder.eot_token
        digest = hashlib.sha256()
        for name in ("encoder.json", "vocab.bpe"):
            digest.update((files / name).read_bytes())
        self.identity = f"{kind}:{digest.hexdigest()[:16]}"

    @classmethod
    def gpt2(cls) -> "BPETokenizer":
        from bpe.encoder import gpt2_vocabulary_dir

        return cls("gpt2", gpt2_vocabulary_dir())

    def encode(self, text: str) -> list[int]:
        # special-token text such as "<|endoftext|>" in a corpus or prompt is just text
        return self.encoder.encode_ordinary(text)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        import bpe

        try:
            return self.encoder.decode_bytes(list(ids))
        except bpe.BPEError as e:
            raise UserError(f"{e} -- token id beyond the {self.kind} vocabulary") from None

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("encoder.json", "vocab.bpe"):
            shutil.copyfile(self.files / name, directory / name)
        (directory / "meta.json").write_text(json.dumps({"kind": self.kind}) + "\n", encoding="utf-8")


def load_tokenizer(directory: Path) -> Tokenizer:
    """Rebuild the tokenizer that ``Tokenizer.save(directory)`` wrote."""
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise UserError(f"{directory} has no tokenizer (meta.json): was this run trained in text mode?")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("kind") == "char":
        return CharTokenizer(meta["chars"])
    if meta.get("kind") in ("gpt2", "bpe"):
        return BPETokenizer(meta["kind"], directory)
    raise UserError(f"{meta_path}: unknown tokenizer kind {meta.get('kind')!r}")


def build_tokenizer(cfg: DataConfig, text: str, corpus: Path, log: Callable[[str], None] = print) -> Tokenizer:
    """The tokenizer ``cfg`` asks for; a ``bpe`` vocabulary is learned once and then reused
    (from ``vocab_dir/<corpus directory>-<vocab_size>/``)."""
    if cfg.tokenizer == "char":
        return CharTokenizer.from_text(text)
    if cfg.tokenizer == "gpt2":
        return BPETokenizer.gpt2()
    vocab = Path(cfg.vocab_dir) / f"{corpus.parent.name or corpus.stem}-{cfg.vocab_size}"
    if not (vocab / "encoder.json").is_file():
        import bpe

        log(f"learning a {cfg.vocab_size}-token BPE vocabulary from {corpus} into {vocab}/ ...")
        try:  # from the training split only, so the validation text stays unseen
            bpe.train(text[: int(len(text) * TRAIN_FRACTION)], cfg.vocab_size, out_dir=vocab)
        except bpe.BPEError as e:
            raise UserError(f"could not learn a BPE vocabulary: {e}") from None
    tokenizer = BPETokenizer("bpe", vocab)
    if tokenizer.n_vocab > cfg.vocab_size:
        raise UserError(
            f"{vocab}/ holds {tokenizer.n_vocab} tokens but data.vocab_size is {cfg.vocab_size}: "
            f"delete {vocab}/ to learn it again"
        )
    return tokenizer


class TextStreamer:
    """Decode tokens one at a time, releasing text only once its UTF-8 bytes are complete.

    A byte-level BPE token can end in the middle of a multi-byte character (an emoji
    is often two or three tokens); printing each token's bytes on their own would
    show replacement characters. The incremental UTF-8 decoder holds the partial bytes
    back until the rest arrive.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self.tokenizer.decode_bytes([token_id]))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


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

    The cache lives beside the text, in ``<stem>.<tokenizer>/`` (e.g.
    ``data/tinyshakespeare/input.char/``), and its meta.json records the text's sha256
    and the tokenizer's identity: change either and the corpus is encoded again.
    """
    path = ensure_text(cfg.path)
    text, text_sha = read_text(path)
    tokenizer = build_tokenizer(cfg, text, path, log)
    tag = cfg.tokenizer if cfg.tokenizer != "bpe" else f"bpe-{cfg.vocab_size}"
    cache = path.parent / f"{path.stem}.{tag}"
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
        cache.mkdir(parents=True, exist_ok=True)
        _write_atomic(cache / "train.bin", train_ids.tobytes())
        _write_atomic(cache / "val.bin", val_ids.tobytes())
        meta = dict(key, kind=tokenizer.kind, n_vocab=tokenizer.n_vocab, train_tokens=len(train_ids),
                    val_tokens=len(val_ids), val_bytes=len(tokenizer.decode_bytes(val_ids[1:].tolist())))
        if isinstance(tokenizer, CharTokenizer):
            meta["chars"] = tokenizer.chars  # the vocabulary, saved beside the data
        _write_atomic(meta_path, (json.dumps(meta, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))

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
def evaluate_split(
    model: torch.nn.Module,
    tokens: np.ndarray,
    n_bytes: int,
    block_size: int,
    device: str = "cpu",
    autocast: Optional[Callable[[], ContextManager]] = None,
    max_logits: int = 1 << 24,
) -> SplitScore:
    """Score every token of a split (after the first) with non-overlapping windows.

    Window i reads tokens[i*T : (i+1)*T] and predicts the next token at each position,
    so each token is predicted exactly once (positions early in a window see less
    context, as in any windowed evaluation). Windows are batched so the logits stay
    under ``max_logits`` floats; the last, shorter window is scored on its own.
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
        per_batch = max(1, max_logits // (block_size * vocab))
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


# -- training (``task.name: text``) ------------------------------------------------------


class TextBatches:
    """Random training windows; the batch of step i depends only on (seed, rank, i), so a
    resumed run continues with the batches it would have seen (as TaskBatches)."""

    def __init__(self, corpus: TextCorpus, batch_size: int, block_size: int, seed: int, rank: int = 0,
                 device: str = "cpu") -> None:
        self.corpus, self.batch_size, self.block_size = corpus, batch_size, block_size
        self.seed, self.rank, self.device = seed, rank, device

    def get_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}/{self.rank}/{step}".encode()))
        x, y = self.corpus.get_batch("train", self.batch_size, self.block_size, generator)
        mask = torch.ones(x.shape, device=self.device)  # every next character counts
        return x.to(self.device), y.to(self.device), mask


def val_scorer(corpus: TextCorpus, block_size: int, device: str, precision: str,
               windows: Optional[int] = None) -> Callable[[torch.nn.Module], dict]:
    """``model -> {"val_loss", "val_bits_per_byte"}`` over the whole val split, or over its
    first ``windows`` context windows (a cheap estimate for evaluations during training)."""
    from gptdecoder import runtime

    tokens = corpus.val if windows is None else corpus.val[: windows * block_size + 1]
    n_bytes = corpus.val_bytes if windows is None else len(corpus.tokenizer.decode_bytes(tokens[1:].tolist()))

    def score(model: torch.nn.Module) -> dict:
        s = evaluate_split(model, tokens, n_bytes, block_size, device, lambda: runtime.autocast(device, precision))
        return {"val_loss": s.loss, "val_bits_per_byte": s.bits_per_byte}

    return score


def plot_losses(path: Path, records: list[dict]) -> None:
    """Training loss per logged step, the quick validation estimates, and the final
    whole-split validation loss (``whole_val_loss``), in one PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    curves = (("loss", "train (batch)", "-"), ("val_loss", "validation (first windows)", "o-"),
              ("whole_val_loss", "validation (whole split)", "*"))
    for key, label, style in curves:
        points = [(r["iter"], r[key]) for r in records if key in r]
        if points:
            ax.plot(*zip(*points), style, label=label, markersize=10 if style == "*" else 4)
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


@dataclass
class TextTraining:
    """Everything a text run needs, built and checked, before the first step."""

    config: object  # gptdecoder.config.Config
    corpus: TextCorpus
    trainer: object  # gptdecoder.train.Trainer
    log: object  # gptdecoder.train.MetricsLog (None off the main process)
    device: str
    precision: str
    is_main: bool

    @property
    def run_dir(self) -> Path:
        return Path(self.config.output.dir)

    def checkpoint(self, trainer) -> None:
        from gptdecoder.train import save_checkpoint

        if self.is_main:
            save_checkpoint(self.run_dir / "ckpt.pt", trainer, self.config)


def setup_text_training(config, resume: bool = False, say: Callable[[str], None] = print) -> TextTraining:
    """Corpus, tokenizer, model and Trainer for ``task.name: text``; writes config.yaml and
    tokenizer/ into the run directory. Every user mistake is raised before a step is taken."""
    from gptdecoder import runtime
    from gptdecoder.config import gpt_config, save_config
    from gptdecoder.model import GPT
    from gptdecoder.train import MetricsLog, Trainer, check_run, init_distributed, process_device, seed_process

    run_dir = Path(config.output.dir)
    device = runtime.resolve_device(config.train.device)
    precision = runtime.resolve_precision(config.train.precision, device)
    dist_info = init_distributed(device)
    device = process_device(device, dist_info)
    corpus = prepare_corpus(config.data, log=say)
    block_size = config.model.block_size
    corpus.check_block_size(block_size)
    model_config = gpt_config(config, corpus.tokenizer.n_vocab)
    resume_state, per_rank = check_run(config, model_config, dist_info, device, resume, "tokenizer")
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        corpus.tokenizer.save(run_dir / TOKENIZER_DIR)

    seed_process(config.train)
    model = GPT(model_config).to(device)
    quick = val_scorer(corpus, block_size, device, precision, windows=config.eval.quick_examples)
    log = MetricsLog(run_dir, config, append=resume) if dist_info.is_main else None
    batches = TextBatches(corpus, per_rank, block_size, config.train.seed, dist_info.rank, device)
    trainer = Trainer(model, config.train, batches, quick, log, device, precision, dist_info)
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
        say(f"resuming {run_dir} at iter {trainer.step}")
    say(f"training on {config.data.path} ({corpus.tokenizer.kind} tokenizer, {corpus.tokenizer.n_vocab} tokens, "
        f"{len(corpus.train):,} train / {len(corpus.val):,} val tokens), {model.num_params():,} params, "
        f"{device}, {precision}")
    return TextTraining(config, corpus, trainer, log, device, precision, dist_info.is_main)


def train_text(config, resume: bool = False, progress: bool = True, verbose: bool = True) -> dict:
    """train_from_config for ``task.name: text``: the same Trainer, run directory and
    checkpoint, fed with text windows and scored by validation loss and bits per byte.

    Writes config.yaml, metrics.jsonl, ckpt.pt, tokenizer/ (what generate and export
    decode with), results.json and loss.png into ``config.output.dir``.
    """
    import time

    say = print if verbose else (lambda *a, **k: None)
    run = setup_text_training(config, resume, say)
    wall0 = time.perf_counter()
    run.trainer.fit(run.checkpoint, progress=progress)
    wall = time.perf_counter() - wall0
    if not run.is_main:
        return {}
    results = text_results(run, wall)
    run_dir = run.run_dir
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    run.log.records.append({"iter": results["iters"], "whole_val_loss": results["val_loss"]})
    run.log.close()
    if config.output.plots:
        plot_losses(run_dir / "loss.png", run.log.records)
    say(f"val loss {results['val_loss']:.4f} ({results['val_bits_per_byte']:.3f} bits/byte) over the whole "
        f"validation split after {results['iters']} iters; {results['train_seconds']:.1f} s of training "
        f"({results['tokens_per_second']:,} tokens/s), wall {wall:.1f} s\n"
        f"files in {run_dir}/: config.yaml metrics.jsonl ckpt.pt tokenizer/ results.json loss.png\n"
        f"sample from it: python -m gptdecoder generate --run {run_dir} --prompt \"...\"")
    return results


def text_results(run: TextTraining, wall_seconds: float) -> dict:
    """results.json for a text run; the validation score covers the whole split."""
    import dataclasses

    trainer, corpus, config = run.trainer, run.corpus, run.config
    model = trainer.model
    final = val_scorer(corpus, model.config.block_size, run.device, run.precision)(model)
    return {
        "task": "text",
        "data": dataclasses.asdict(config.data),
        "tokenizer": corpus.tokenizer.kind,
        "vocab_size": corpus.tokenizer.n_vocab,
        "params": model.num_params(),
        "model": dataclasses.asdict(model.config),
        "iters": trainer.step,
        "val_loss": round(final["val_loss"], 4),
        "val_bits_per_byte": round(final["val_bits_per_byte"], 4),
        "val_tokens": len(corpus.val) - 1,
        "val_bytes": corpus.val_bytes,
        "final_train_loss": trainer.last_loss,
        "train_seconds": round(trainer.train_seconds, 3),
        "train_wall_seconds": round(wall_seconds, 3),
        "tokens_per_second": round(trainer.tokens_seen / max(trainer.train_seconds, 1e-9)),
        "device": run.device,
        "precision": run.precision,
        "seed": config.train.seed,
    }
