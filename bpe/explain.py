"""A step-by-step view of BPE, for teaching and debugging.

:meth:`bpe.Encoder.explain` records, for every pre-token, each merge in the
order it happens. Printing that trace shows why ``" tokenization"`` ends up as
``" token" + "ization"``: lower-rank (earlier learned, more frequent) pairs
merge first, and each merge can create new pairs for later steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # only for type hints; encoder.py imports this module
    from bpe.encoder import Encoder


class MergeStep(NamedTuple):
    """One merge: the two adjacent tokens, their merge rank, the new token.

    Tokens are shown in GPT-2's byte stand-in form (``Ġ`` is a space), which
    is exactly how they appear in ``vocab.bpe``; ``rank`` is the priority,
    lower merges first (line ``rank + 2`` of ``vocab.bpe``).
    """

    pair: tuple[str, str]
    rank: int
    result: str


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
    """Explain how ``text`` is encoded (by GPT-2 unless ``encoder`` is given)."""
    if encoder is None:
        from bpe.encoder import get_encoder  # deferred: bpe.encoder imports us

        encoder = get_encoder()
    return encoder.explain(text)


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
