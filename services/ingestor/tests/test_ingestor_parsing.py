"""Tests for choosing a parser and for each parser: what is kept, stripped, and how it is titled."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ragstream_ingestor.errors import DocumentRejectedError
from ragstream_ingestor.parsing import (
    ParsedDocument,
    Section,
    normalise_content_type,
    parse_document,
    parse_html,
    parse_json,
    parse_markdown,
    parse_ndjson,
    parse_pdf,
    parse_plain,
    resolve_media_type,
)

Sample = Callable[[str], bytes]


def _text(parsed: ParsedDocument) -> str:
    return "\n".join(p for section in parsed.sections for p in section.paragraphs)


class TestNormaliseContentType:
    def test_parameters_and_case_are_dropped(self) -> None:
        """A Content-Type with a charset and capitals reduces to its media type."""
        assert normalise_content_type(" Text/Markdown; charset=UTF-8") == "text/markdown"

    def test_aliases_map_to_the_type_that_parses_them(self) -> None:
        """Common aliases (XHTML, JSON lines variants) map to a supported type."""
        assert [
            normalise_content_type(alias)
            for alias in ("application/xhtml+xml", "application/jsonl", "text/x-markdown")
        ] == ["text/html", "application/x-ndjson", "text/markdown"]


class TestResolveMediaType:
    def test_a_specific_type_decides_whatever_the_file_name(self) -> None:
        """An explicit, supported type is trusted over the extension."""
        assert resolve_media_type("text/html", "page.md") == "text/html"

    @pytest.mark.parametrize("content_type", ["", "application/octet-stream"])
    def test_a_missing_or_generic_type_defers_to_the_extension(self, content_type: str) -> None:
        """Without a useful type, the file name's extension decides."""
        assert resolve_media_type(content_type, "Report.PDF") == "application/pdf"

    @pytest.mark.parametrize(
        ("filename", "media_type"),
        [
            ("notes.md", "text/markdown"),
            ("dir/page.htm", "text/html"),
            ("C:\\data\\rows.jsonl", "application/x-ndjson"),
            ("records.json", "application/json"),
            ("readme.txt", "text/plain"),
            ("noextension", "text/plain"),
        ],
    )
    def test_text_plain_yields_to_a_known_other_extension(
        self, filename: str, media_type: str
    ) -> None:
        """text/plain (the default) on a file with another known extension takes the extension."""
        assert resolve_media_type("text/plain", filename) == media_type

    def test_unsupported_type_is_rejected_naming_it(self) -> None:
        """A type no parser reads is refused, and the reason names it and what is supported."""
        with pytest.raises(DocumentRejectedError, match=r"'image/png'.*application/pdf"):
            resolve_media_type("image/png", "photo.png")

    def test_generic_type_with_an_unknown_extension_is_rejected(self) -> None:
        """Bytes of no known type, in a file of no known extension, cannot be parsed."""
        with pytest.raises(DocumentRejectedError, match=r"'data\.bin' name no supported type"):
            resolve_media_type("application/octet-stream", "data.bin")


class TestParseDocument:
    def test_text_from_bytes_is_decoded_and_replacements_counted(self, sample: Sample) -> None:
        """Latin-1 bytes parse as text, with the invalid bytes replaced and counted."""
        parsed = parse_document(sample("latin1.txt"), "text/plain")
        assert (
            parsed.sections[0].paragraphs[0]
            == "Caf\ufffd cr\ufffdme br\ufffdl\ufffde \ufffd la carte."
        )
        assert parsed.replaced == 7

    def test_utf16_and_utf8_of_the_same_text_parse_the_same(self, sample: Sample) -> None:
        """Decoding is invisible after parsing: a UTF-16 file equals its UTF-8 twin."""
        raw = sample("utf16-bom.txt")
        assert parse_document(raw, "text/plain") == parse_document(
            raw.decode("utf-16"), "text/plain"
        )

    def test_rtl_text_and_emoji_pass_through(self, sample: Sample) -> None:
        """Arabic, Hebrew and emoji paragraphs come out exactly as written."""
        parsed = parse_document(sample("rtl-emoji.txt"), "text/plain")
        assert parsed.sections[0].paragraphs == (
            "مرحبا بالعالم! هذا نص عربي.",
            "שלום עולם, זה טקסט בעברית.",
            "Emoji: 👩\u200d💻 🚀 🇩🇪 👍🏽 ❤️",
        )

    @pytest.mark.parametrize(
        ("content", "media_type"),
        [
            ("", "text/plain"),
            (" \n\t\r\n", "text/plain"),
            ("\x00\ufeff", "text/plain"),
            ("# A\n## B", "text/markdown"),
            ("<html><head><title>T</title></head><body><nav>x</nav></body></html>", "text/html"),
            ("[]", "application/json"),
            ("\n\n", "application/x-ndjson"),
            ('{"id": 1, "body": "  "}', "application/json"),
        ],
    )
    def test_a_document_without_text_is_rejected(self, content: str, media_type: str) -> None:
        """Empty, whitespace-only, headings-only or noise-only documents have no text to index."""
        with pytest.raises(DocumentRejectedError, match="document has no text"):
            parse_document(content, media_type)

    def test_pdf_as_text_is_rejected(self) -> None:
        """A PDF can only be read from bytes; as a string it has already been damaged."""
        with pytest.raises(DocumentRejectedError, match="content_base64"):
            parse_document("%PDF-1.7", "application/pdf")

    def test_control_characters_are_cleaned_from_parsed_json(self) -> None:
        """Strings decoded from JSON escapes are normalised too: NUL goes, NFD is composed."""
        parsed = parse_document('{"text": "a\\u0000b cafe\\u0301"}', "application/json")
        assert parsed.sections[0].paragraphs == ("ab caf\u00e9",)

    def test_deep_nesting_is_rejected_not_crashed(self) -> None:
        """A pathologically nested JSON document is refused with a reason."""
        with pytest.raises(DocumentRejectedError):
            parse_document("[" * 100_000 + "]" * 100_000, "application/json")


class TestParsePlain:
    def test_paragraphs_are_separated_by_blank_lines(self) -> None:
        """Blank lines, even ones holding spaces, separate paragraphs; single newlines do not."""
        assert parse_plain("a\nb\n\nc\n \t\nd") == ParsedDocument(
            (Section((), ("a\nb", "c", "d")),)
        )

    def test_markdown_syntax_is_text(self) -> None:
        """In plain text a line starting with '#' is text, not a heading."""
        assert parse_plain("# not a heading\n\nbody").sections == (
            Section((), ("# not a heading", "body")),
        )


class TestParseMarkdown:
    def test_guide_fixture_sections_and_title(self, sample: Sample) -> None:
        """The sample guide splits at ATX and setext headings; its only H1 is its title."""
        parsed = parse_document(sample("guide.md"), "text/markdown")
        assert parsed.title == "Ragstream Operator Guide"
        assert [section.heading_path for section in parsed.sections] == [
            ("Ragstream Operator Guide",),
            ("Ragstream Operator Guide", "Installation"),
            ("Ragstream Operator Guide", "Installation", "Linux"),
            ("Ragstream Operator Guide", "Installation", "macOS"),
            ("Ragstream Operator Guide", "Operation"),
            ("Ragstream Operator Guide", "Scaling"),
        ]

    def test_guide_fixture_keeps_code_fences_whole(self, sample: Sample) -> None:
        """The fenced block, with its '#' comment line, is one paragraph of the Linux section."""
        parsed = parse_document(sample("guide.md"), "text/markdown")
        linux = parsed.sections[2]
        assert linux.paragraphs[1].startswith("```console\n$ make up\n# this line")

    def test_heading_path_nests_and_unwinds(self) -> None:
        """A heading pops every heading of its level or deeper before joining the path."""
        text = "# A\n\na\n\n## B\n\nb\n\n### C\n\nc\n\n## D\n\nd\n\n# E\n\ne"
        paths = [section.heading_path for section in parse_markdown(text).sections]
        assert paths == [("A",), ("A", "B"), ("A", "B", "C"), ("A", "D"), ("E",)]

    def test_title_needs_exactly_one_h1(self) -> None:
        """With two H1 (chapters), neither is the document's title."""
        assert parse_markdown("# One\n\na\n\n# Two\n\nb").title == ""

    def test_text_before_the_first_heading_has_an_empty_path(self) -> None:
        """A preamble forms a section with no headings."""
        assert parse_markdown("intro\n\n# A\n\nbody").sections[0] == Section((), ("intro",))

    def test_closing_hashes_and_indent_are_not_part_of_the_title(self) -> None:
        """'  ## Title ##' is the heading 'Title'."""
        assert parse_markdown("  ## Title ##\n\nbody").sections[0].heading_path == ("Title",)

    def test_hash_without_space_is_text(self) -> None:
        """'#hashtag' is not a heading, and seven hashes are not one either."""
        assert parse_markdown("#hashtag\n\n####### seven").sections == (
            Section((), ("#hashtag", "####### seven")),
        )

    def test_setext_underlines_make_headings(self) -> None:
        """A paragraph underlined with '=' is an H1, with '-' an H2, and nests like ATX ones."""
        parsed = parse_markdown("Guide\n=====\n\nintro\n\nPart\n----\n\nbody")
        assert parsed.sections == (
            Section(("Guide",), ("intro",)),
            Section(("Guide", "Part"), ("body",)),
        )

    def test_a_rule_after_a_blank_line_is_not_a_heading(self) -> None:
        """'---' with no paragraph right above it does not turn anything into a heading."""
        assert parse_markdown("para\n\n---\n\nmore").sections == (
            Section((), ("para", "---", "more")),
        )

    def test_heading_interrupts_a_paragraph(self) -> None:
        """A heading line ends the paragraph above it without a blank line."""
        assert parse_markdown("before\n# H\nafter").sections == (
            Section((), ("before",)),
            Section(("H",), ("after",)),
        )

    def test_fenced_code_is_one_paragraph_and_hides_headings(self) -> None:
        """Blank lines and '#' lines inside a code fence neither split it nor start sections."""
        code = "```python\n# comment\n\nx = 1\n```"
        assert parse_markdown(f"# A\n\nintro\n{code}\nafter").sections == (
            Section(("A",), ("intro", code, "after")),
        )

    def test_a_shorter_fence_does_not_close_a_longer_one(self) -> None:
        """A code fence closes only on a fence of the same character at least as long."""
        code = "````\n```\n# still code\n````"
        assert parse_markdown(code).sections == (Section((), (code,)),)

    def test_headings_without_body_are_left_out_but_stay_on_the_path(self) -> None:
        """An empty section yields no paragraphs, yet its title leads the nested section."""
        assert parse_markdown("# A\n## B\n\nbody").sections == (Section(("A", "B"), ("body",)),)


class TestParseHtml:
    def test_page_fixture_keeps_content_under_its_headings(self, sample: Sample) -> None:
        """Headings build the path; paragraphs, list items, rows, pre and quotes are blocks."""
        parsed = parse_document(sample("page.html"), "text/html")
        assert parsed.sections == (
            Section(
                ("Retention in Kafka",),
                ("Kafka keeps records for a configurable time, then deletes whole segments.",),
            ),
            Section(
                ("Retention in Kafka", "Compaction"),
                (
                    "A compacted topic keeps the latest record per key.",
                    "Tombstones delete a key.",
                    "Compaction runs in the background.",
                    "It never reorders records.",
                ),
            ),
            Section(
                ("Retention in Kafka", "Compaction", "Settings"),
                (
                    "Setting | Default",
                    "cleanup.policy | delete",
                    "kafka-configs.sh --alter \\\n    --add-config cleanup.policy=compact",
                    "Compaction is not a backup.",
                ),
            ),
            Section(
                ("Retention in Kafka", "Time-based retention"), ("Set retention.ms per topic.",)
            ),
        )

    def test_page_fixture_noise_is_dropped(self, sample: Sample) -> None:
        """Scripts, styles, nav, header, footer, aside, form, noscript, template, SVG and
        comments leave no trace in the text."""
        parsed = parse_document(sample("page.html"), "text/html")
        text = _text(parsed) + " ".join(h for s in parsed.sections for h in s.heading_path)
        assert "NOISE" not in text
        assert "tracking" not in text
        assert "font-family" not in text

    def test_title_element_is_the_title_with_whitespace_collapsed(self, sample: Sample) -> None:
        """<title> gives the document's title, on one line."""
        assert parse_document(sample("page.html"), "text/html").title == "Kafka Retention Explained"

    def test_first_h1_is_the_title_without_a_title_element(self) -> None:
        """Without <title>, the first <h1> titles the page."""
        parsed = parse_html("<h1>Main <b>topic</b></h1><p>x</p><h1>Other</h1><p>y</p>")
        assert parsed.title == "Main topic"

    def test_text_outside_paragraphs_is_kept_as_blocks(self) -> None:
        """Loose text in a div, and text around a nested block, is not lost."""
        parsed = parse_html("<div>loose <span>text</span><p>para</p>tail</div>")
        assert parsed.sections == (Section((), ("loose text", "para", "tail")),)

    def test_whitespace_is_collapsed_except_in_pre(self) -> None:
        """Runs of spaces and newlines in a block become one space; <pre> keeps its lines."""
        parsed = parse_html("<p>a \n\n  b</p><pre>x  = 1\n  y = 2</pre>")
        assert parsed.sections[0].paragraphs == ("a b", "x  = 1\n  y = 2")

    def test_entities_are_decoded(self) -> None:
        """Character references become the characters they name."""
        assert parse_html("<p>caf&eacute; &amp; &#x1F680;</p>").sections[0].paragraphs == (
            "café & 🚀",
        )

    def test_unclosed_blocks_still_separate_their_text(self) -> None:
        """Unclosed paragraphs and list items each still become a block, in order."""
        parsed = parse_html("<h2>Open</h2><p>first<p>second<ul><li>item<li>other")
        assert parsed.sections == (Section(("Open",), ("first", "second", "item", "other")),)

    def test_deep_nesting_is_read_without_recursion(self) -> None:
        """Text nested thousands of elements deep is found (the walk does not recurse)."""
        page = "<div><p>" * 2000 + "deep text" + "</p></div>" * 2000
        assert parse_html(page).sections == (Section((), ("deep text",)),)

    def test_inline_markup_does_not_split_words(self) -> None:
        """Markup inside a word, in a heading or a cell, leaves the word whole."""
        parsed = parse_html(
            "<h2>Kafka<sup>TM</sup> setup</h2><table><tr><td>re<b>try</b></td></tr>"
        )
        assert parsed.sections == (Section(("KafkaTM setup",), ("retry",)),)


class TestParsePdf:
    def test_two_pages_become_two_sections_with_page_numbers(self, sample: Sample) -> None:
        """Each page's text is a section headed 'Page N', in page order."""
        parsed = parse_pdf(sample("two-pages.pdf"))
        assert [section.heading_path for section in parsed.sections] == [("Page 1",), ("Page 2",)]
        assert "compacted Kafka topic" in parsed.sections[0].paragraphs[0]
        assert "tombstone" in parsed.sections[1].paragraphs[0]

    def test_metadata_title_is_the_title(self, sample: Sample) -> None:
        """The PDF's Title metadata titles the document."""
        assert parse_pdf(sample("two-pages.pdf")).title == "Ragstream Ingestion Notes"

    def test_encrypted_pdf_is_rejected(self, sample: Sample) -> None:
        """A PDF that needs a password to open is refused, saying so."""
        with pytest.raises(DocumentRejectedError, match="encrypted with a password"):
            parse_pdf(sample("encrypted.pdf"))

    def test_pdf_without_text_is_rejected(self, sample: Sample) -> None:
        """A PDF with no text layer (a scan) is refused, saying so."""
        with pytest.raises(DocumentRejectedError, match="no extractable text"):
            parse_pdf(sample("no-text.pdf"))

    @pytest.mark.parametrize("data", [b"", b"%PDF-1.7\n garbage", b"not a pdf at all"])
    def test_unreadable_pdf_is_rejected(self, data: bytes) -> None:
        """Bytes that are not a readable PDF are refused, not crashed on."""
        with pytest.raises(DocumentRejectedError, match="unreadable PDF"):
            parse_pdf(data)

    def test_truncated_pdf_is_rejected(self, sample: Sample) -> None:
        """A PDF cut off after a third of its bytes is refused as unreadable."""
        data = sample("two-pages.pdf")
        with pytest.raises(DocumentRejectedError, match="unreadable PDF"):
            parse_pdf(data[: len(data) // 3])


class TestParseJson:
    def test_records_fixture_one_section_per_record(self, sample: Sample) -> None:
        """Each object is a section: title/name heads it, body or key-value lines fill it."""
        parsed = parse_document(sample("records.json"), "application/json")
        assert parsed.sections == (
            Section(
                ("Reset a password",),
                ("Open Settings, then Security.", "Choose Reset and follow the e-mail link."),
            ),
            Section(
                ("Kafka broker",),
                ("config.port: 9092\nconfig.tls: false\nreplicas: 3\nzones: a, b",),
            ),
            Section((), ("sku: X-42\nprice: 9.5\nin_stock: true",)),
        )

    def test_a_single_object_is_one_section(self) -> None:
        """A lone object is a document of one record."""
        parsed = parse_json(json.dumps({"name": "n", "text": "hello"}))
        assert parsed.sections == (Section(("n",), ("hello",)),)

    def test_heading_field_precedence_and_id_numbers(self) -> None:
        """title beats name beats id; a numeric id is a heading too."""
        records = [{"id": 7, "name": "N", "title": "T", "text": "a"}, {"id": 7, "text": "b"}]
        parsed = parse_json(json.dumps(records))
        assert [section.heading_path for section in parsed.sections] == [("T",), ("7",)]

    def test_nested_arrays_of_objects_are_numbered(self) -> None:
        """Objects inside arrays are flattened with their index in the dotted key."""
        parsed = parse_json(json.dumps({"authors": [{"name": "Ada"}, {"name": "Alan"}]}))
        assert parsed.sections[0].paragraphs == ("authors.0.name: Ada\nauthors.1.name: Alan",)

    @pytest.mark.parametrize("content", ["[1, 2]", '"text"', "42", '[{"a": 1}, "x"]'])
    def test_anything_but_objects_is_rejected(self, content: str) -> None:
        """Scalars and arrays of non-objects are not records."""
        with pytest.raises(DocumentRejectedError, match="object or an array of objects"):
            parse_json(content)

    def test_invalid_json_is_rejected_with_the_parser_message(self) -> None:
        """Malformed JSON is refused, with where it broke."""
        with pytest.raises(DocumentRejectedError, match=r"invalid JSON: .*line 1 column"):
            parse_json('{"a": ')


class TestParseNdjson:
    def test_records_fixture_one_section_per_line(self, sample: Sample) -> None:
        """Each line is a record; blank lines are skipped; text fields win over other fields."""
        parsed = parse_document(sample("records.jsonl"), "application/x-ndjson")
        assert parsed.sections == (
            Section(("faq-1",), ("The museum opens at 9 am.",)),
            Section(("Parking",), ("Parking is free after 6 pm.",)),
            Section(
                ("faq-3",),
                ("details.floor: 2\ndetails.rooms.0.name: Atrium\ndetails.rooms.1.name: Library",),
            ),
        )

    def test_a_bad_line_rejects_the_whole_document_naming_the_line(self) -> None:
        """One malformed line refuses the document (nothing half-indexed), naming the line."""
        with pytest.raises(DocumentRejectedError, match="line 2"):
            parse_ndjson('{"text": "ok"}\n{"text": \n')

    def test_a_line_that_is_not_an_object_is_rejected(self) -> None:
        """Every line must be an object."""
        with pytest.raises(DocumentRejectedError, match="line 1 is not a JSON object"):
            parse_ndjson("[1]\n")
