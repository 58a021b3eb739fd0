"""Bytes into text, and text into the one normal form every parser and hash works on.

Plain functions, no I/O. Text arriving as bytes is decoded by its byte-order mark, else as strict
UTF-8, else as UTF-8 with each invalid byte sequence replaced by U+FFFD: a document with a stray
Latin-1 byte is still indexed (and the replacements are counted), never failed for it.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass

__all__ = ["DecodedText", "decode_text_bytes", "normalise_text"]

# Longest marks first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BYTE_ORDER_MARKS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_REPLACEMENT = "\ufffd"

# Characters that break a line without being "\n": they become one, so a form feed between two
# pages or a Unicode line separator does not glue two words together.
_LINE_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x85\u2028]")
# C0 and C1 control characters other than tab and newline (handled above), and the byte-order
# mark (U+FEFF, a deprecated zero-width space anywhere else). Format characters such as the
# zero-width joiner or the right-to-left mark are not in this set: emoji sequences and
# bidirectional text need them.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufeff]")
# A lone surrogate cannot be encoded as UTF-8 (JSON "\ud800" escapes can produce one).
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)


@dataclass(frozen=True)
class DecodedText:
    """Text decoded from bytes.

    Args:
        text: The text, not yet normalised.
        encoding: The codec that decoded it.
        replaced: How many invalid byte sequences became U+FFFD.
    """

    text: str
    encoding: str
    replaced: int = 0


def decode_text_bytes(data: bytes) -> DecodedText:
    """Decode ``data``: by its byte-order mark, else strict UTF-8, else UTF-8 with replacements.

    Never fails: an invalid byte sequence becomes U+FFFD and is counted in ``replaced``.

    Args:
        data: The document's bytes.
    """
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return _decode_replacing(data[len(mark) :], encoding)
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        return _decode_replacing(data, "utf-8")


def _decode_replacing(data: bytes, encoding: str) -> DecodedText:
    text = data.decode(encoding, errors="replace")
    # U+FFFD already present in the input is text, not a replacement.
    already = data.decode(encoding, errors="ignore").count(_REPLACEMENT)
    return DecodedText(text, encoding, replaced=text.count(_REPLACEMENT) - already)


def normalise_text(text: str) -> str:
    """Return ``text`` in the form every parser, chunk and hash sees.

    Line breaks become ``\\n``; control characters other than tab and newline, and byte-order
    marks, are dropped; lone surrogates become U+FFFD; trailing spaces go; the rest is composed
    to Unicode NFC. Right-to-left text, emoji and their joiners pass through unchanged.

    Args:
        text: Decoded text, from any source.
    """
    text = _LINE_BREAKS.sub("\n", text).replace("\u2029", "\n\n")
    text = _CONTROL_CHARACTERS.sub("", text)
    text = _SURROGATES.sub(_REPLACEMENT, text)
    text = _TRAILING_SPACE.sub("", text)
    return unicodedata.normalize("NFC", text)
