"""GPT-2's pre-tokenizer: split text into the pieces that BPE merges within.

BPE never merges across a piece boundary, so this split decides, for example,
that ``" world"`` (with its leading space) is one unit and that digits never
glue onto letters. The pattern is GPT-2's, character for character::

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

Things worth noticing when reading it:

* contractions come first and are case-sensitive: ``"DON'T"`` splits as
  ``DON`` ``'`` ``T`` because ``'T`` is not in the list;
* ``\\s+(?!\\S)`` takes a run of whitespace *except its last character* when a
  word follows, so the last space can join the next word (``"a   b"`` ->
  ``a``, ``"  "``, ``" b"``);
* ``\\s`` means Unicode White_Space (as in tiktoken's Rust regex), which does
  *not* include the ASCII separators 0x1C-0x1F, although Python's
  ``str.isspace`` says they are spaces.

``\\p{L}``/``\\p{N}`` need the third-party :mod:`regex` module. For pure-ASCII
text (the common case, e.g. Tiny Shakespeare) we use an equivalent pattern
for the standard-library :mod:`re` module, which splits such text faster
(``benchmarks/bpe_speed.py`` prints by how much); the tests check that both
patterns split random ASCII text identically.
"""

from __future__ import annotations

import re

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# The ASCII characters in each class: letters, digits and the six ASCII
# White_Space characters (tab, LF, VT, FF, CR, space).
_WS = r"\t\n\x0b\x0c\r "
# Letters are tried before the contractions because most pieces are words;
# this is safe since the two alternatives cannot start at the same character
# (a letter or space versus an apostrophe).
ASCII_PATTERN = (
    rf""" ?[A-Za-z]+|'s|'t|'re|'ve|'m|'ll|'d| ?[0-9]+| ?[^{_WS}A-Za-z0-9]+"""
    rf"""|[{_WS}]+(?![^{_WS}])|[{_WS}]+"""
)

_unicode_findall = regex.compile(GPT2_PATTERN).findall
_ascii_findall = re.compile(ASCII_PATTERN).findall


def fix_surrogates(text: str) -> str:
    """Make ``text`` encodable as UTF-8, exactly as tiktoken does.

    Python strings may contain surrogate code points (e.g. from
    ``json.loads('"\\ud83d"')``). Like tiktoken, we round-trip through UTF-16:
    a high+low surrogate pair becomes the real character, a lone surrogate
    becomes U+FFFD. This must happen *before* :func:`pretokenize`, because a
    repaired pair can be a letter and so changes how the text splits; it
    lives here so that encoding and :mod:`bpe.explain` share it.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def pretokenize(text: str) -> list[str]:
    """Split ``text`` into GPT-2 pre-tokens (their concatenation is ``text``)."""
    if text.isascii():
        return _ascii_findall(text)
    return _unicode_findall(text)
