"""Tests for decoding document bytes and normalising text."""

from __future__ import annotations

import codecs
import unicodedata
from collections.abc import Callable

import pytest

from ragstream_ingestor.decoding import decode_text_bytes, normalise_text

# Hebrew letters look like Latin ones to ruff; here they are the point.
RTL_AND_EMOJI = "مرحبا بالعالم! שלום עולם. 👩\u200d💻 🇩🇪 👍🏽 ❤️ \u200fדו-כיווני"  # noqa: RUF001


class TestDecodeTextBytes:
    def test_strict_utf8_is_decoded_without_replacements(self) -> None:
        """Valid UTF-8 without a byte-order mark decodes as UTF-8, nothing replaced."""
        decoded = decode_text_bytes("naïve café ☕".encode())
        assert (decoded.text, decoded.encoding, decoded.replaced) == ("naïve café ☕", "utf-8", 0)

    @pytest.mark.parametrize(
        ("mark", "codec"),
        [
            (codecs.BOM_UTF8, "utf-8"),
            (codecs.BOM_UTF16_LE, "utf-16-le"),
            (codecs.BOM_UTF16_BE, "utf-16-be"),
            (codecs.BOM_UTF32_LE, "utf-32-le"),
            (codecs.BOM_UTF32_BE, "utf-32-be"),
        ],
    )
    def test_a_byte_order_mark_decides_the_encoding_and_is_dropped(
        self, mark: bytes, codec: str
    ) -> None:
        """The byte-order mark names the codec, and is not part of the text."""
        decoded = decode_text_bytes(mark + "Grüße 日本".encode(codec))
        assert (decoded.text, decoded.encoding, decoded.replaced) == ("Grüße 日本", codec, 0)

    def test_utf16_fixture_with_bom_is_read(self, sample: Callable[[str], bytes]) -> None:
        """The UTF-16 sample file (little-endian, with its mark) decodes to its German text."""
        decoded = decode_text_bytes(sample("utf16-bom.txt"))
        assert decoded.text.startswith("Grüße aus Köln")
        assert decoded.replaced == 0

    def test_latin1_bytes_become_replacement_characters_and_are_counted(
        self, sample: Callable[[str], bytes]
    ) -> None:
        """Invalid UTF-8 is decoded anyway: each bad byte becomes U+FFFD and is counted."""
        decoded = decode_text_bytes(sample("latin1.txt"))
        assert decoded.text.startswith("Caf\ufffd cr\ufffdme")
        assert decoded.replaced == 7
        assert decoded.text.count("\ufffd") == 7

    def test_replacement_characters_already_in_the_text_are_not_counted(self) -> None:
        """A U+FFFD the author wrote is text; only the invalid byte is counted."""
        decoded = decode_text_bytes("\ufffd ok ".encode() + b"\xff")
        assert decoded.replaced == 1


class TestNormaliseText:
    def test_line_endings_become_newlines(self) -> None:
        """CRLF, CR, form feed, vertical tab, NEL and U+2028 end lines; U+2029 ends a paragraph."""
        text = "a\r\nb\rc\x0cd\x0be\x85f\u2028g\u2029h"
        assert normalise_text(text) == "a\nb\nc\nd\ne\nf\ng\n\nh"

    def test_nul_and_control_characters_are_dropped(self) -> None:
        """NUL, other C0 and C1 controls, DEL and byte-order marks go; tab and newline stay."""
        assert normalise_text("\ufeffa\x00b\x1bc\x7fd\x9ae\tf\ng") == "abcde\tf\ng"

    def test_trailing_spaces_are_removed(self) -> None:
        """Spaces and tabs at the end of a line carry nothing."""
        assert normalise_text("a  \nb\t\n  c") == "a\nb\n  c"

    def test_text_is_composed_to_nfc(self) -> None:
        """A decomposed 'é' (e + combining acute) becomes the single code point."""
        assert normalise_text("cafe\u0301") == "caf\u00e9"

    def test_lone_surrogates_become_replacement_characters(self) -> None:
        """A lone surrogate (from a JSON escape) cannot be encoded, so it becomes U+FFFD."""
        assert normalise_text("a\ud800b") == "a\ufffdb"

    def test_right_to_left_text_and_emoji_survive_untouched(self) -> None:
        """Arabic, Hebrew, bidi marks, ZWJ emoji sequences, flags and skin tones are kept as is."""
        assert unicodedata.is_normalized("NFC", RTL_AND_EMOJI)
        assert normalise_text(RTL_AND_EMOJI) == RTL_AND_EMOJI

    def test_rtl_and_emoji_fixture_round_trips(self, sample: Callable[[str], bytes]) -> None:
        """The Arabic, Hebrew and emoji sample decodes and normalises to its own UTF-8 text."""
        raw = sample("rtl-emoji.txt")
        assert normalise_text(decode_text_bytes(raw).text) == raw.decode()
