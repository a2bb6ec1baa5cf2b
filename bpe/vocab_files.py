"""Reading and writing GPT-2's two vocabulary files, with validation.

A GPT-2 style vocabulary is a directory with

* ``encoder.json`` -- a JSON object ``{token: id}``. Tokens are written with
  the byte stand-in characters of :mod:`bpe.byte_unicode` (``"Ġthe"`` is
  the bytes ``b" the"``); special tokens such as ``<|endoftext|>`` are
  written literally.
* ``vocab.bpe`` -- a ``#version: 0.2`` header line, then one merge per line,
  ``left right``, in priority order (line 2 is the merge learned first).

Every problem is reported as one :class:`~bpe.errors.BPEError` that names the
file, so a bad download or a hand-edited file fails loudly at load time
instead of producing wrong token ids later.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bpe.byte_unicode import UNICODE_TO_BYTE
from bpe.errors import BPEError

ENCODER_FILE = "encoder.json"
MERGES_FILE = "vocab.bpe"
MERGES_HEADER = "#version: 0.2"


@dataclass(frozen=True)
class Vocabulary:
    """The validated content of a vocabulary directory.

    ``tokens`` holds the ordinary (byte-level) tokens, ``special`` the
    tokens like ``<|endoftext|>`` that no merge can produce, and ``merges``
    the merge pairs in priority order.
    """

    tokens: dict[str, int]
    special: dict[str, int]
    merges: list[tuple[str, str]]


def _read(path: Path, expected_sha256: str | None) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BPEError(f"vocabulary file not found: {path}") from None
    except OSError as exc:
        raise BPEError(f"cannot read vocabulary file {path}: {exc.strerror}") from None
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256:
            raise BPEError(
                f"{path}: sha256 {actual} does not match the expected {expected_sha256}"
                " (corrupt or modified file)"
            )
    return data


def _parse_encoder(path: Path, data: bytes) -> dict[str, int]:
    try:
        table = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BPEError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(table, dict):
        raise BPEError(f"{path}: expected a JSON object {{token: id}}")
    for token, token_id in table.items():
        if type(token_id) is not int:
            raise BPEError(f"{path}: id of token {token!r} is {token_id!r}, not an integer")
    if sorted(table.values()) != list(range(len(table))):
        raise BPEError(f"{path}: token ids must be exactly 0..{len(table) - 1}, each used once")
    return table


def _parse_merges(path: Path, data: bytes) -> list[tuple[str, str]]:
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise BPEError(f"{path}: not valid UTF-8 ({exc})") from None
    if not lines[0].startswith("#version"):
        raise BPEError(f"{path}: first line must be the header {MERGES_HEADER!r}")
    merges = []
    for line_number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split(" ")
        if len(fields) != 2 or not all(fields):
            raise BPEError(f"{path}, line {line_number}: expected 'left right', got {line!r}")
        merges.append((fields[0], fields[1]))
    return merges


def read_vocabulary(
    directory: str | os.PathLike[str], sha256: dict[str, str] | None = None
) -> Vocabulary:
    """Load and cross-check ``encoder.json`` and ``vocab.bpe`` in ``directory``.

    ``sha256`` optionally maps file names to expected digests. Checks: every
    byte has its token, both halves and the result of every merge are tokens,
    and anything else in ``encoder.json`` is a ``<|...|>`` special token.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BPEError(f"vocabulary directory not found: {directory}")
    sha256 = sha256 or {}
    encoder_path = directory / ENCODER_FILE
    merges_path = directory / MERGES_FILE
    table = _parse_encoder(encoder_path, _read(encoder_path, sha256.get(ENCODER_FILE)))
    merges = _parse_merges(merges_path, _read(merges_path, sha256.get(MERGES_FILE)))

    ordinary = set(UNICODE_TO_BYTE)
    missing = [c for c in UNICODE_TO_BYTE if c not in table]
    if missing:
        raise BPEError(f"{encoder_path}: no token for the byte stand-in {missing[0]!r}")
    for line_number, (left, right) in enumerate(merges, start=2):
        for token in (left, right, left + right):
            if token not in table:
                raise BPEError(
                    f"{merges_path}, line {line_number}: merge {left!r} + {right!r} needs token"
                    f" {token!r}, which is not in {encoder_path}"
                )
        ordinary.add(left + right)

    tokens = {t: i for t, i in table.items() if t in ordinary}
    special = {t: i for t, i in table.items() if t not in ordinary}
    for token in special:
        if not (token.startswith("<|") and token.endswith("|>")):
            raise BPEError(
                f"{encoder_path}: token {token!r} is neither a byte, a merge result from"
                f" {merges_path} nor a <|special|> token"
            )
    return Vocabulary(tokens=tokens, special=special, merges=merges)


def write_vocabulary(directory: str | os.PathLike[str], vocabulary: Vocabulary) -> Path:
    """Write ``vocabulary`` to ``directory`` in GPT-2's exact file format, atomically.

    Both files are written into a fresh sibling temporary directory, which is
    then renamed into place, so readers see either the old pair of files or
    the new pair, never one file of each or a half-written one. An existing
    ``directory`` is only replaced if it holds nothing but these two files,
    so a typo cannot delete unrelated data.
    """
    target = Path(directory).resolve()
    if target.exists():
        if not target.is_dir():
            raise BPEError(f"output path exists and is not a directory: {target}")
        extra = sorted(p.name for p in target.iterdir() if p.name not in (ENCODER_FILE, MERGES_FILE))
        if extra:
            raise BPEError(f"output directory {target} holds other files ({extra[0]}, ...)")
    target.parent.mkdir(parents=True, exist_ok=True)

    table = {**vocabulary.tokens, **vocabulary.special}
    ordered = dict(sorted(table.items(), key=lambda item: item[1]))
    merges_text = "".join(f"{left} {right}\n" for left, right in vocabulary.merges)

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private (0700); a vocabulary is not secret
        (staging / ENCODER_FILE).write_text(json.dumps(ordered), encoding="utf-8")
        (staging / MERGES_FILE).write_text(f"{MERGES_HEADER}\n{merges_text}", encoding="utf-8")
        if target.exists():
            # Move the old directory aside first: rename() cannot replace a
            # non-empty directory, and this keeps the swap to two renames.
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(target, retired / target.name)
            os.rename(staging, target)
            shutil.rmtree(retired)
        else:
            os.rename(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target
