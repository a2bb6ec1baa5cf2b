"""Learning byte-level BPE merges from text, GPT-2 style.

The algorithm, and the conventions of the files it writes:

* Text is split with GPT-2's pre-tokenizer and each *distinct* pre-token is
  counted once: merges never cross pre-token boundaries, so a word that
  occurs 5,000 times is processed once, with weight 5,000.
* Every word starts as its UTF-8 bytes. Each step merges the most frequent
  adjacent pair into a new token. Pair counts are updated incrementally:
  only the words containing the merged pair are rewritten, and only their
  pair counts change, instead of recounting the whole corpus each step.
* **Ties** between equally frequent pairs go to the pair with the smaller
  ``(left id, right id)``, i.e. the one whose parts were created earlier
  (bytes count as created first, in GPT-2's byte order), so training is
  deterministic.
* A pair whose merged bytes already are a token (the same bytes reached by a
  different split, like ``"a" + "bc"`` after ``"ab" + "c"``) is skipped:
  every token must have exactly one id, which tiktoken's loader requires.
* **Vocabulary layout**: ids 0-255 are the single bytes in GPT-2's order (see
  :mod:`bpe.byte_unicode`), then one id per merge in the order learned, and
  ``<|endoftext|>`` last. So ``vocab_size`` counts the 256 bytes, the
  merges and the special token: ``vocab_size = 256 + merges + 1``.
"""

from __future__ import annotations

import heapq
import os
import sys
from collections import Counter, defaultdict

from bpe.byte_unicode import BYTE_ORDER, bytes_to_unicode_str
from bpe.encoder import ENDOFTEXT, Encoder
from bpe.errors import BPEError
from bpe.pretokenize import pretokenize
from bpe.vocab_files import Vocabulary, write_vocabulary

Pair = tuple[int, int]

# byte value -> its token id (the position of the byte in GPT-2's order)
_BYTE_ID = {byte: token_id for token_id, byte in enumerate(BYTE_ORDER)}


def _pairs(word: list[int]) -> Counter[Pair]:
    return Counter(zip(word, word[1:]))


def _apply_merge(word: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``word``, left to right."""
    left, right = pair
    merged: list[int] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
            merged.append(new_id)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


def train(
    text: str,
    vocab_size: int,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    verbose: bool = False,
) -> Encoder:
    """Learn ``vocab_size - 257`` merges from ``text`` and return the encoder.

    With ``out_dir``, also write ``encoder.json`` and ``vocab.bpe`` there
    (atomically; see :func:`bpe.vocab_files.write_vocabulary`); the files
    load in :func:`bpe.get_encoder`, in tiktoken and in Hugging Face
    ``tokenizers``. Raises :class:`BPEError` if ``vocab_size`` is below 257
    or more than the text can provide.
    """
    if type(vocab_size) is not int or vocab_size < 257:
        raise BPEError(
            f"vocab_size must be an integer >= 257 (256 bytes + {ENDOFTEXT}), got {vocab_size!r}"
        )
    target_merges = vocab_size - 257

    counts = Counter(pretokenize(text))
    words = [[_BYTE_ID[b] for b in piece.encode("utf-8")] for piece in counts]
    freqs = list(counts.values())
    # Each merge removes at least one token from some word, so this is an
    # upper bound; catching hopeless sizes here avoids a long doomed run.
    possible = sum(len(word) - 1 for word in words)
    if target_merges > possible:
        raise BPEError(
            f"vocab_size {vocab_size} is too large for this text: it has room for at most"
            f" {possible} merges, i.e. vocab_size <= {257 + possible}"
        )

    token_bytes = [bytes([b]) for b in BYTE_ORDER]
    known = set(token_bytes)
    pair_count: Counter[Pair] = Counter()
    words_with: defaultdict[Pair, set[int]] = defaultdict(set)  # may hold stale entries
    for index, (word, freq) in enumerate(zip(words, freqs)):
        for pair, n in _pairs(word).items():
            pair_count[pair] += n * freq
            words_with[pair].add(index)
    # Max-heap by count (negated), then smallest (left, right). Entries go
    # stale when a count changes; a fresh entry is pushed then, and stale ones
    # are recognised on pop by comparing with pair_count.
    heap = [(-count, pair) for pair, count in pair_count.items()]
    heapq.heapify(heap)

    merges: list[Pair] = []
    while len(merges) < target_merges:
        if not heap:
            raise BPEError(
                f"vocab_size {vocab_size} is too large for this text: no pairs are left"
                f" after {len(merges)} merges, i.e. vocab_size <= {257 + len(merges)}"
            )
        negative_count, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negative_count or negative_count == 0:
            continue  # stale entry
        new_bytes = token_bytes[pair[0]] + token_bytes[pair[1]]
        if new_bytes in known:
            del pair_count[pair]  # see "A pair whose merged bytes..." above
            continue
        new_id = len(token_bytes)
        token_bytes.append(new_bytes)
        known.add(new_bytes)
        merges.append(pair)
        if verbose and (len(merges) % 100 == 0 or len(merges) == target_merges):
            print(
                f"merge {len(merges)}/{target_merges}: {bytes_to_unicode_str(new_bytes)!r}"
                f" (count {-negative_count})",
                file=sys.stderr,
            )

        changed: set[Pair] = set()
        for index in words_with.pop(pair):
            word = words[index]
            before = _pairs(word)
            if pair not in before:
                continue
            words[index] = _apply_merge(word, pair, new_id)
            after = _pairs(words[index])
            freq = freqs[index]
            for p, n in (after - before).items():
                pair_count[p] += n * freq
                words_with[p].add(index)
                changed.add(p)
            for p, n in (before - after).items():
                pair_count[p] -= n * freq
                changed.add(p)
        for p in changed:
            if p in pair_count and pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], p))
            elif p in pair_count:
                del pair_count[p]

    vocabulary = Vocabulary(
        tokens={bytes_to_unicode_str(b): i for i, b in enumerate(token_bytes)},
        special={ENDOFTEXT: len(token_bytes)},
        merges=[(bytes_to_unicode_str(token_bytes[a]), bytes_to_unicode_str(token_bytes[b])) for a, b in merges],
    )
    name = "trained"
    if out_dir is not None:
        name = write_vocabulary(out_dir, vocabulary).name
    return Encoder(vocabulary, name=name)
