"""A from-scratch GPT-2 byte-level BPE tokenizer (pure Python, no torch).

>>> import bpe
>>> enc = bpe.get_encoder()            # OpenAI's GPT-2 vocabulary, offline
>>> enc.encode("Hello world")
[15496, 995]
>>> enc.decode([15496, 995])
'Hello world'

See :mod:`bpe.encoder` (encoding), :mod:`bpe.train` (learning merges),
:mod:`bpe.explain` (a merge-by-merge trace) and ``python -m bpe --help``.
"""

from bpe.encoder import Encoder, MergeStep, get_encoder, load_encoder
from bpe.errors import BPEError
from bpe.explain import PieceExplanation, explain, format_explanation
from bpe.pretokenize import pretokenize
from bpe.train import train

__all__ = [
    "BPEError",
    "Encoder",
    "MergeStep",
    "PieceExplanation",
    "explain",
    "format_explanation",
    "get_encoder",
    "load_encoder",
    "pretokenize",
    "train",
]
