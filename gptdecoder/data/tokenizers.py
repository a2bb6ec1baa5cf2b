"""Tokenizers for text mode: characters, GPT-2's BPE, or a BPE learned on the corpus.

All three stand behind one small interface (``Tokenizer``); ``build_tokenizer`` picks
one from the data section, ``Tokenizer.save`` / ``load_tokenizer`` put it into a run
directory and back, and ``TextStreamer`` decodes tokens one at a time for printing.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

import bpe
from bpe.encoder import gpt2_vocabulary_dir
from gptdecoder.config import DataConfig
from gptdecoder.errors import UserError

TOKENIZER_DIR = "tokenizer"  # inside a text run directory: what generate and export decode with
TRAIN_FRACTION = 0.9  # first 90% of the text trains, the last 10% validates (as nanoGPT)


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
        return cls("gpt2", gpt2_vocabulary_dir())

    def encode(self, text: str) -> list[int]:
        # special-token text such as "<|endoftext|>" in a corpus or prompt is just text
        return self.encoder.encode_ordinary(text)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
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


