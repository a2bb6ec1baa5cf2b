"""A step-by-step view of BPE, for teaching and debugging.

:func:`explain` records, for every pre-token, each merge in the order it
happens. Printing that trace shows why ``" tokenization"`` ends up as
``" token" + "ization"``: lower-rank (earlier learned, more frequent) pairs
merge first, and each merge can create new pairs for later steps.

This module sits on top of :mod:`bpe.encoder` and is never imported by it:
the encoder produces the merge records (:class:`MergeStep`, via
:meth:`~bpe.Encoder.merge_steps`) and this module only arranges and prints
them, so the dependency runs one way.
"""

from __future__ import annotations

from typing import NamedTuple

from bpe.byte_unicode import bytes_to_unicode_str
from bpe.encoder import Encoder, MergeStep, get_encoder
from bpe.pretokenize import fix_surrogates, pretokenize

__all__ = ["MergeStep", "PieceExplanation", "explain", "format_explanation"]


class PieceExplanation(NamedTuple):
    """How one pre-token was encoded.

    ``whole_token`` is True when the pre-token is itself in the vocabulary;
    :meth:`~bpe.Encoder.encode` then emits that single token directly, as
    tiktoken does, while ``steps`` still shows the merges that build it.
    """

    piece: str
    steps: list[MergeStep]
    tokens: list[str]
    ids: list[int]
    whole_token: bool


def explain(text: str, encoder: Encoder | None = None) -> list[PieceExplanation]:
    """Explain how ``text`` is encoded (by GPT-2 unless ``encoder`` is given).

    Special-token text such as ``<|endoftext|>`` is treated as ordinary text,
    as in :meth:`~bpe.Encoder.encode_ordinary`.
    """
    if encoder is None:
        encoder = get_encoder()
    result = []
    # Surrogates are repaired before splitting, exactly as encoding does, so
    # the pieces shown are the pieces the encoder sees.
    for piece in pretokenize(fix_surrogates(text)):
        tokens, steps = encoder.merge_steps(piece)
        ids = encoder.encode_ordinary(piece)
        whole = len(ids) == 1
        if whole:
            # The whole-token shortcut, not the merges, decides the result.
            tokens = [bytes_to_unicode_str(encoder.decode_single_token_bytes(ids[0]))]
        result.append(PieceExplanation(piece, steps, tokens, ids, whole))
    return result


def format_explanation(pieces: list[PieceExplanation]) -> str:
    """Render an explanation as plain text, one block per pre-token."""
    lines = []
    for piece in pieces:
        lines.append(f"piece {piece.piece!r}")
        for number, (pair, rank, result) in enumerate(piece.steps, start=1):
            lines.append(f"  {number:>3}. {pair[0]} + {pair[1]} -> {result}  (rank {rank})")
        shortcut = "  [whole piece is one token]" if piece.whole_token else ""
        tokens = " ".join(f"{token}={token_id}" for token, token_id in zip(piece.tokens, piece.ids))
        lines.append(f"  tokens: {tokens}{shortcut}")
    return "\n".join(lines)
