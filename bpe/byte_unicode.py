"""GPT-2's reversible map between bytes and printable unicode characters.

Byte-level BPE works on raw UTF-8 bytes, but GPT-2's vocabulary files
(``encoder.json`` and ``vocab.bpe``) store tokens as text. Bytes such as
0x20 (space) or 0x0A (newline) would be invisible or would break the
whitespace-separated ``vocab.bpe`` format, so GPT-2 gives each of the 256 bytes
a visible stand-in character:

* the 188 bytes that are already printable Latin-1 characters (``!``..``~``,
  ``¡``..``¬``, ``®``..``ÿ``) stand for themselves;
* the other 68 bytes (controls, space, DEL, NBSP, soft hyphen) are mapped, in
  increasing byte order, to U+0100, U+0101, ... So a space becomes ``Ġ``
  (U+0120) and a newline ``Ċ`` (U+010A).

The *order* of this table also fixes the ids of the 256 single-byte tokens in
GPT-2's ``encoder.json`` (printable bytes first, then the rest), which is why
:data:`BYTE_ORDER` is exported: :mod:`bpe.train` numbers its byte tokens the
same way so that other loaders accept the files it writes.
"""

from __future__ import annotations


def _printable_bytes() -> list[int]:
    """The bytes that GPT-2 keeps as their own Latin-1 character."""
    return [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]


def _build() -> tuple[list[int], dict[int, str]]:
    printable = _printable_bytes()
    kept = set(printable)
    others = [b for b in range(256) if b not in kept]
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + n) for n, b in enumerate(others)})
    return printable + others, mapping


#: Bytes in GPT-2's token-id order: ``BYTE_ORDER[i]`` is the byte of token ``i``.
BYTE_ORDER, BYTE_TO_UNICODE = _build()

#: The inverse map, stand-in character -> byte value.
UNICODE_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_UNICODE.items()}

# ``str.translate`` table that turns a latin-1 decoded byte string into the
# stand-in characters in one C-level call (see :func:`bytes_to_unicode_str`).
_TRANSLATE = {b: c for b, c in BYTE_TO_UNICODE.items() if chr(b) != c}


def bytes_to_unicode_str(data: bytes) -> str:
    """Return the GPT-2 stand-in string for ``data`` (one character per byte).

    Decoding as latin-1 turns each byte into the character with the same code
    point; ``translate`` then swaps the 68 non-printable ones for their
    stand-ins.
    """
    return data.decode("latin-1").translate(_TRANSLATE)


def unicode_str_to_bytes(token: str) -> bytes:
    """Inverse of :func:`bytes_to_unicode_str`; raises ``KeyError`` on a
    character that is not one of the 256 stand-ins."""
    return bytes(UNICODE_TO_BYTE[c] for c in token)
