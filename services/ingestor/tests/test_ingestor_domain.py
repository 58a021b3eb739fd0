"""Tests for the ingestor's pure logic: parsing, structural splitting, packing, versions, events."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime

import pytest

from ragstream_common.events import DocumentDeleted, DocumentUpserted
from ragstream_ingestor.domain import (
    ChunkingPolicy,
    DocumentRejectedError,
    Section,
    chunk_deletion,
    chunk_document,
    chunk_upsert,
    chunked_status,
    clean_text,
    count_words,
    document_version,
    failed_status,
    normalise_content_type,
    pack_paragraphs,
    parse_sections,
    split_markdown,
    split_plain,
    split_sentences,
)

POLICY = ChunkingPolicy(max_words=20, overlap_words=5)


def _words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


class TestChunkingPolicy:
    def test_overlap_must_be_smaller_than_the_budget(self) -> None:
        """An overlap that leaves no room for new words is refused."""
        with pytest.raises(ValueError, match="overlap_words"):
            ChunkingPolicy(max_words=10, overlap_words=10)

    def test_budget_must_be_positive(self) -> None:
        """A chunk budget of zero words is refused."""
        with pytest.raises(ValueError, match="max_words"):
            ChunkingPolicy(max_words=0, overlap_words=0)


class TestNormaliseContentType:
    def test_parameters_and_case_are_dropped(self) -> None:
        """A Content-Type with a charset and capitals reduces to its media type."""
        assert normalise_content_type(" Text/Markdown; charset=UTF-8") == "text/markdown"


class TestCleanText:
    def test_line_endings_bom_and_control_characters_are_normalised(self) -> None:
        """CRLF and CR become LF, and a BOM, control characters and trailing spaces go."""
        assert clean_text("\ufeffa\x00b  \r\nc\rd\t") == "ab\nc\nd"

    def test_tabs_and_newlines_survive(self) -> None:
        """Cleaning keeps the whitespace that carries structure."""
        assert clean_text("a\tb\n\nc") == "a\tb\n\nc"


class TestParseSections:
    def test_unsupported_type_is_rejected_with_the_type_in_the_reason(self) -> None:
        """A content type the ingestor cannot parse is refused, naming the type."""
        with pytest.raises(DocumentRejectedError, match="application/pdf"):
            parse_sections("%PDF-1.7", "application/pdf")

    @pytest.mark.parametrize("content", ["", "   ", "\n\t\r\n", "\x00\ufeff"])
    def test_empty_or_whitespace_content_is_rejected(self, content: str) -> None:
        """A document without visible text is refused."""
        with pytest.raises(DocumentRejectedError, match="empty"):
            parse_sections(content, "text/plain")

    def test_plain_text_ignores_markdown_headings(self) -> None:
        """In plain text a line starting with '#' is text, not a heading."""
        sections = parse_sections("# not a heading\n\nbody", "text/plain")
        assert sections == [Section((), ("# not a heading", "body"))]

    def test_markdown_with_parameters_is_split_at_headings(self) -> None:
        """text/markdown with a charset parameter is parsed as Markdown."""
        sections = parse_sections("# T\n\nbody", "text/markdown; charset=utf-8")
        assert sections == [Section(("T",), ("body",))]


class TestSplitPlain:
    def test_paragraphs_are_separated_by_blank_lines(self) -> None:
        """Blank lines, even ones holding spaces, separate paragraphs; single newlines do not."""
        assert split_plain("a\nb\n\nc\n \t\nd") == [Section((), ("a\nb", "c", "d"))]

    def test_blank_text_has_no_sections(self) -> None:
        """Text of blank lines only yields nothing."""
        assert split_plain("\n\n\n") == []


class TestSplitMarkdown:
    def test_heading_path_nests_and_unwinds(self) -> None:
        """A heading pops every heading of its level or deeper before joining the path."""
        text = "# A\n\na\n\n## B\n\nb\n\n### C\n\nc\n\n## D\n\nd\n\n# E\n\ne"
        paths = [section.heading_path for section in split_markdown(text)]
        assert paths == [("A",), ("A", "B"), ("A", "B", "C"), ("A", "D"), ("E",)]

    def test_text_before_the_first_heading_has_an_empty_path(self) -> None:
        """A preamble forms a section with no headings."""
        assert split_markdown("intro\n\n# A\n\nbody")[0] == Section((), ("intro",))

    def test_closing_hashes_and_indent_are_not_part_of_the_title(self) -> None:
        """'  ## Title ##' is the heading 'Title'."""
        assert split_markdown("  ## Title ##\n\nbody")[0].heading_path == ("Title",)

    def test_hash_without_space_is_text(self) -> None:
        """'#hashtag' is not a heading, and seven hashes are not one either."""
        sections = split_markdown("#hashtag\n\n####### seven")
        assert sections == [Section((), ("#hashtag", "####### seven"))]

    def test_heading_interrupts_a_paragraph(self) -> None:
        """A heading line ends the paragraph above it without a blank line."""
        sections = split_markdown("before\n# H\nafter")
        assert sections == [Section((), ("before",)), Section(("H",), ("after",))]

    def test_fenced_code_is_one_paragraph_and_hides_headings(self) -> None:
        """Blank lines and '#' lines inside a code fence neither split it nor start sections."""
        code = "```python\n# comment\n\nx = 1\n```"
        sections = split_markdown(f"# A\n\nintro\n{code}\nafter")
        assert sections == [Section(("A",), ("intro", code, "after"))]

    def test_a_shorter_fence_does_not_close_a_longer_one(self) -> None:
        """A code fence closes only on a fence of the same character at least as long."""
        code = "````\n```\n# still code\n````"
        assert split_markdown(code) == [Section((), (code,))]

    def test_headings_without_body_are_left_out_but_stay_on_the_path(self) -> None:
        """An empty section yields no paragraphs, yet its title leads the nested section."""
        assert split_markdown("# A\n## B\n\nbody") == [Section(("A", "B"), ("body",))]


class TestSplitSentences:
    def test_splits_after_terminal_punctuation(self) -> None:
        """Sentences end at '.', '!' or '?' (even before a closing quote) followed by space."""
        assert split_sentences('One. Two! "Three?" Four') == ["One.", "Two!", '"Three?"', "Four"]

    def test_decimal_points_do_not_split(self) -> None:
        """A full stop not followed by whitespace is not a sentence end."""
        assert split_sentences("Pi is 3.14 roughly.") == ["Pi is 3.14 roughly."]


class TestPackParagraphs:
    def test_small_paragraphs_share_a_chunk(self) -> None:
        """Paragraphs that fit together form one chunk, separated by a blank line."""
        assert pack_paragraphs(["one two", "three four"], POLICY) == ["one two\n\nthree four"]

    def test_a_paragraph_that_does_not_fit_starts_a_chunk_after_the_overlap(self) -> None:
        """The next chunk opens with the end of the previous one, then the whole new paragraph."""
        first = "Alpha beta gamma. Delta epsilon."
        second = _words("s", 16)
        chunks = pack_paragraphs([first, second], POLICY)
        assert chunks == [first, f"Delta epsilon.\n\n{second}"]

    def test_overlap_prefers_whole_sentences(self) -> None:
        """When a whole trailing sentence fits the overlap, no sentence is cut."""
        first = "One two three four. Five six."
        chunks = pack_paragraphs([first, _words("n", 17)], POLICY)
        assert chunks[1].startswith("Five six.\n\n")

    def test_overlap_cuts_words_when_no_sentence_fits(self) -> None:
        """Without a short enough trailing sentence, the last overlap_words words repeat."""
        chunks = pack_paragraphs([_words("a", 10), _words("b", 15)], POLICY)
        assert chunks[1] == "a5 a6 a7 a8 a9\n\n" + _words("b", 15)

    def test_long_paragraph_is_split_at_sentences(self) -> None:
        """A paragraph over the budget is cut between sentences, never inside one."""
        sentences = [f"Sentence {i} has exactly six words." for i in range(6)]
        chunks = pack_paragraphs([" ".join(sentences)], ChunkingPolicy(20, 0))
        assert chunks == [" ".join(sentences[i : i + 3]) for i in (0, 3)]

    def test_overlong_sentence_is_split_at_words(self) -> None:
        """A sentence longer than the budget is cut into word runs that leave room for overlap."""
        chunks = pack_paragraphs([_words("w", 45)], POLICY)
        assert [count_words(chunk) for chunk in chunks] == [15, 20, 20]
        assert chunks[1].split()[:5] == chunks[0].split()[-5:]

    def test_no_overlap_when_disabled(self) -> None:
        """With overlap 0, consecutive chunks share no words."""
        chunks = pack_paragraphs([_words("a", 15), _words("b", 15)], ChunkingPolicy(20, 0))
        assert chunks == [_words("a", 15), _words("b", 15)]

    @pytest.mark.parametrize("seed", range(20))
    def test_chunks_are_bounded_and_cover_every_word_in_order(self, seed: int) -> None:
        """Whatever the paragraphs, each chunk fits the budget, and together they miss no word."""
        rng = random.Random(seed)
        policy = ChunkingPolicy(max_words=rng.randint(8, 40), overlap_words=0)
        policy = ChunkingPolicy(policy.max_words, rng.randint(0, policy.max_words - 1))
        counter = iter(range(10**6))
        paragraphs = []
        for _ in range(rng.randint(1, 12)):
            sentences = [
                " ".join(f"w{next(counter)}" for _ in range(rng.randint(1, 60))) + "."
                for _ in range(rng.randint(1, 6))
            ]
            paragraphs.append(" ".join(sentences))
        words = " ".join(paragraphs).split()

        chunks = pack_paragraphs(paragraphs, policy)

        assert all(count_words(chunk) <= policy.max_words for chunk in chunks)
        covered_to = 0
        for chunk in chunks:
            chunk_words = chunk.split()
            start = words.index(chunk_words[0])
            assert chunk_words == words[start : start + len(chunk_words)]
            assert start <= covered_to  # no gap after the previous chunk
            covered_to = start + len(chunk_words)
        assert covered_to == len(words)


class TestChunkDocument:
    def test_chunks_carry_ids_positions_hashes_and_headings(self) -> None:
        """Positions run from 0 across sections; ids derive from them; hashes from the text."""
        chunks = chunk_document("doc", "# A\n\nfirst\n\n## B\n\nsecond", "text/markdown", POLICY)
        assert [(c.chunk_id, c.position, c.heading_path, c.text) for c in chunks] == [
            ("doc#0", 0, ["A"], "first"),
            ("doc#1", 1, ["A", "B"], "second"),
        ]
        assert chunks[1].content_hash == hashlib.sha256(b"second").hexdigest()

    def test_overlap_never_crosses_a_heading(self) -> None:
        """A new section's first chunk starts with its own text, not the previous section's."""
        text = f"# A\n\n{_words('a', 18)}\n\n# B\n\n{_words('b', 18)}"
        chunks = chunk_document("doc", text, "text/markdown", POLICY)
        assert chunks[1].text == _words("b", 18)

    def test_headings_only_is_rejected(self) -> None:
        """A document made only of headings has nothing to index and is refused."""
        with pytest.raises(DocumentRejectedError, match="no text"):
            chunk_document("doc", "# A\n## B", "text/markdown", POLICY)

    def test_same_input_gives_same_chunks(self) -> None:
        """Chunking is deterministic, so redelivery reproduces identical chunks and hashes."""
        text = "# A\n\n" + "Some sentence here. " * 40
        assert chunk_document("d", text, "text/markdown", POLICY) == chunk_document(
            "d", text, "text/markdown", POLICY
        )


class TestDocumentVersion:
    @pytest.mark.parametrize(("offset", "version"), [(0, 1), (41, 42)])
    def test_version_is_offset_plus_one(self, offset: int, version: int) -> None:
        """The first record of a partition is version 1; versions follow offsets."""
        assert document_version(offset) == version


PUBLISHED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _upsert(**overrides: object) -> DocumentUpserted:
    fields: dict[str, object] = {
        "doc_id": "doc-1",
        "tenant": "acme",
        "title": "Handbook",
        "source": "https://example.test/handbook",
        "content": "# Intro\n\nHello there.",
        "content_type": "text/markdown",
        "published_at": PUBLISHED,
    }
    return DocumentUpserted.model_validate(fields | overrides)


class TestChunkUpsert:
    def test_metadata_is_copied_and_version_and_hash_set(self) -> None:
        """The chunked event carries the upsert's metadata, the version and the content hash."""
        upsert = _upsert()
        chunked = chunk_upsert(upsert, 7, POLICY)
        assert (chunked.doc_id, chunked.tenant, chunked.title, chunked.source) == (
            "doc-1",
            "acme",
            "Handbook",
            "https://example.test/handbook",
        )
        assert chunked.version == 7
        assert chunked.published_at == PUBLISHED
        assert chunked.doc_hash == hashlib.sha256(upsert.content.encode()).hexdigest()
        assert [chunk.text for chunk in chunked.chunks] == ["Hello there."]

    def test_unsupported_type_is_rejected(self) -> None:
        """An upsert of an unsupported type raises the rejection, not a crash."""
        with pytest.raises(DocumentRejectedError):
            chunk_upsert(_upsert(content_type="application/json"), 1, POLICY)


class TestChunkDeletion:
    def test_a_delete_becomes_a_version_without_chunks(self) -> None:
        """A delete is a new version of the document with no chunks, in the same tenant."""
        deleted = DocumentDeleted(doc_id="doc-1", tenant="acme", published_at=PUBLISHED)
        chunked = chunk_deletion(deleted, 9)
        assert (chunked.doc_id, chunked.tenant, chunked.version, chunked.chunks) == (
            "doc-1",
            "acme",
            9,
            [],
        )
        assert chunked.published_at == PUBLISHED


class TestStatuses:
    def test_chunked_status_counts_chunks(self) -> None:
        """The chunked status names the version and how many chunks it has."""
        status = chunked_status(chunk_upsert(_upsert(), 3, POLICY))
        assert (status.stage, status.version, status.chunk_count, status.tenant) == (
            "chunked",
            3,
            1,
            "acme",
        )
        assert status.published_at == PUBLISHED

    def test_failed_status_carries_the_reason(self) -> None:
        """The failed status says why the version could not be chunked."""
        status = failed_status(_upsert(), 4, "document is empty")
        assert (status.stage, status.version, status.reason) == ("failed", 4, "document is empty")
