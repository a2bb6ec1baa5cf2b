"""Offline reference tokenizers (tiktoken, Hugging Face) for the bpe tests.

Both are built from local vocabulary files only; nothing touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

# tiktoken's own gpt2 pattern (equivalent to GPT-2's, with possessive quantifiers).
TIKTOKEN_GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = PROJECT_ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"


def tiktoken_encoding(vocab_dir: Path, name: str = "gpt2"):
    """A tiktoken Encoding read from ``vocab_dir`` (its own cache disabled)."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # "" = read the local files directly, no cache
    try:
        ranks = data_gym_to_mergeable_bpe_ranks(
            str(vocab_dir / "vocab.bpe"), str(vocab_dir / "encoder.json")
        )
    finally:
        if saved is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved
    return tiktoken.Encoding(
        name=name,
        pat_str=TIKTOKEN_GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": len(ranks)},
    )


def hf_tokenizer(vocab_dir: Path):
    """A Hugging Face byte-level BPE tokenizer read from ``vocab_dir``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(
        models.BPE.from_file(str(vocab_dir / "encoder.json"), str(vocab_dir / "vocab.bpe"))
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer
