"""Tests for the ingestor's document logic: events in, limits, identity, versions, statuses."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from ragstream_common.chunk_text import embedding_text
from ragstream_common.events import DocumentDeleted, DocumentUpserted
from ragstream_ingestor.chunking import ChunkDraft, ChunkingPolicy, TokenCounter
from ragstream_ingestor.domain import (
    DocumentRejectedError,
    IngestLimits,
    chunk_deletion,
    chunk_upsert,
    chunked_status,
    document_event,
    document_payload,
    document_version,
    failed_status,
    identify_chunks,
)

Sample = Callable[[str], bytes]

POLICY = ChunkingPolicy(max_tokens=40, overlap_tokens=8)
REAL_POLICY = ChunkingPolicy(max_tokens=256, overlap_tokens=32)
LIMITS = IngestLimits(max_document_bytes=5_000_000, max_chunks=500)
PUBLISHED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

GUIDE = (
    "# Guide\n\nIntro paragraph of the guide.\n\n"
    "## Install\n\nRun the installer. Then restart.\n\n"
    "## Use\n\nOpen the app and sign in.\n\n"
    "## Remove\n\nDelete the app folder."
)


def _upsert(**overrides: Any) -> DocumentUpserted:
    fields: dict[str, Any] = {
        "doc_id": "doc-1",
        "tenant": "acme",
        "title": "Handbook",
        "source": "https://example.test/handbook",
        "content": GUIDE,
        "content_type": "text/markdown",
        "tags": ["hr", "onboarding"],
        "published_at": PUBLISHED,
    }
    return DocumentUpserted.model_validate(fields | overrides)


def _ids_by_section(chunks: list[Any]) -> dict[tuple[str, ...], list[str]]:
    ids: dict[tuple[str, ...], list[str]] = {}
    for chunk in chunks:
        ids.setdefault(tuple(chunk.heading_path), []).append(chunk.chunk_id)
    return ids


class TestDocumentVersion:
    @pytest.mark.parametrize(("offset", "version"), [(0, 1), (41, 42)])
    def test_version_is_offset_plus_one(self, offset: int, version: int) -> None:
        """The first record of a partition is version 1; versions follow offsets."""
        assert document_version(offset) == version


class TestDocumentEvent:
    def test_a_json_value_is_the_event_it_holds(self) -> None:
        """A record's JSON value is validated into the upsert it carries."""
        upsert = _upsert()
        event = document_event(b"doc-1", upsert.model_dump_json().encode(), 0)
        assert event == upsert

    def test_a_null_value_is_a_delete_in_the_default_tenant(self) -> None:
        """A tombstone deletes the keyed document of the default tenant, dated by the record."""
        event = document_event(b"doc-9", None, 1_735_787_045_000)
        assert isinstance(event, DocumentDeleted)
        assert (event.doc_id, event.tenant) == ("doc-9", "default")
        assert event.published_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    @pytest.mark.parametrize("key", [None, b""])
    def test_a_tombstone_without_a_key_is_rejected(self, key: bytes | None) -> None:
        """A tombstone names its document only by its key; without one it means nothing."""
        with pytest.raises(DocumentRejectedError, match="without a key"):
            document_event(key, None, 0)

    @pytest.mark.parametrize(
        "value", [b"", b"{not json", b'{"kind": "rename", "doc_id": "d"}', b'{"kind": "upsert"}']
    )
    def test_an_invalid_value_fails_validation(self, value: bytes) -> None:
        """Malformed JSON, an unknown kind or a missing field is a validation error (a poison
        message the middleware dead-letters), not a delete."""
        with pytest.raises(ValidationError):
            document_event(b"d", value, 0)


class TestDocumentPayload:
    def test_text_is_measured_in_utf8_bytes(self) -> None:
        """The size limit counts the UTF-8 bytes of text, not its characters."""
        limits = IngestLimits(max_document_bytes=7, max_chunks=10)
        assert document_payload(_upsert(content="🚀ab"), limits) == "🚀ab"
        with pytest.raises(DocumentRejectedError, match="8 bytes, over the limit of 7"):
            document_payload(_upsert(content="🚀abcd"), limits)

    def test_base64_is_decoded_and_measured_decoded(self) -> None:
        """Bytes arrive as base64; the limit applies to the bytes, not to the base64 text."""
        limits = IngestLimits(max_document_bytes=6, max_chunks=10)
        event = _upsert(content="", content_base64=base64.b64encode(b"\x00\x01PDF!").decode())
        assert document_payload(event, limits) == b"\x00\x01PDF!"

    def test_base64_may_be_wrapped_in_lines(self) -> None:
        """MIME-style line breaks inside the base64 are ignored."""
        encoded = base64.encodebytes(b"x" * 100).decode()
        assert "\n" in encoded.strip()
        assert document_payload(_upsert(content="", content_base64=encoded), LIMITS) == b"x" * 100

    def test_invalid_base64_is_rejected(self) -> None:
        """Base64 that does not decode is refused, saying so."""
        with pytest.raises(DocumentRejectedError, match="not valid base64"):
            document_payload(_upsert(content="", content_base64="@@@@"), LIMITS)

    def test_content_in_both_fields_is_rejected(self) -> None:
        """An upsert with both text and bytes is ambiguous, and refused."""
        event = _upsert(content="text", content_base64=base64.b64encode(b"bytes").decode())
        with pytest.raises(DocumentRejectedError, match="both content and content_base64"):
            document_payload(event, LIMITS)


class TestChunkUpsert:
    def test_metadata_is_copied_and_version_hash_and_counts_set(
        self, word_counter: TokenCounter
    ) -> None:
        """The chunked event carries the upsert's metadata and tags, the version, the hash, and
        each chunk's token count."""
        ingested = chunk_upsert(_upsert(), 7, word_counter, POLICY, LIMITS)
        chunked = ingested.chunked
        assert (chunked.doc_id, chunked.tenant, chunked.title, chunked.source) == (
            "doc-1",
            "acme",
            "Handbook",
            "https://example.test/handbook",
        )
        assert (chunked.version, chunked.published_at, chunked.tags) == (
            7,
            PUBLISHED,
            ["hr", "onboarding"],
        )
        assert len(chunked.doc_hash) == 64
        assert [chunk.heading_path for chunk in chunked.chunks] == [
            ["Guide"],
            ["Guide", "Install"],
            ["Guide", "Use"],
            ["Guide", "Remove"],
        ]
        for chunk in chunked.chunks:
            embedded = embedding_text("Handbook", chunk.heading_path, chunk.text)
            assert chunk.token_count == len(embedded.split()) + 2
        assert ingested.media_type == "text/markdown"

    def test_the_documents_own_title_stands_in_for_a_missing_one(
        self, word_counter: TokenCounter, sample: Sample
    ) -> None:
        """Without a title on the event, the HTML page's <title> becomes the title."""
        event = _upsert(title="", content=sample("page.html").decode(), content_type="text/html")
        chunked = chunk_upsert(event, 1, word_counter, POLICY, LIMITS).chunked
        assert chunked.title == "Kafka Retention Explained"

    def test_a_long_title_is_shortened_on_the_chunked_event(
        self, word_counter: TokenCounter
    ) -> None:
        """The title the chunks are embedded with, and published with, fits its budget share."""
        title = " ".join(f"t{i}" for i in range(30))
        chunked = chunk_upsert(_upsert(title=title), 1, word_counter, POLICY, LIMITS).chunked
        assert chunked.title == " ".join(f"t{i}" for i in range(10))

    def test_bytes_of_a_generic_type_are_parsed_by_the_file_extension(
        self, word_counter: TokenCounter
    ) -> None:
        """Base64 with application/octet-stream and a .md name is parsed as Markdown."""
        event = _upsert(
            content="",
            content_base64=base64.b64encode(GUIDE.encode()).decode(),
            content_type="application/octet-stream",
            filename="guide.md",
        )
        ingested = chunk_upsert(event, 1, word_counter, POLICY, LIMITS)
        assert ingested.media_type == "text/markdown"
        assert ingested.chunked.chunks[1].heading_path == ["Guide", "Install"]

    def test_a_pdf_is_chunked_with_page_numbers_and_real_token_counts(
        self, word_pieces: TokenCounter, sample: Sample
    ) -> None:
        """The two-page PDF yields chunks headed by page, counted in the model's word pieces."""
        event = _upsert(
            title="",
            content="",
            content_base64=base64.b64encode(sample("two-pages.pdf")).decode(),
            content_type="application/pdf",
        )
        chunked = chunk_upsert(event, 1, word_pieces, REAL_POLICY, LIMITS).chunked
        assert chunked.title == "Ragstream Ingestion Notes"
        assert [chunk.heading_path for chunk in chunked.chunks] == [["Page 1"], ["Page 2"]]
        for chunk in chunked.chunks:
            embedded = embedding_text(chunked.title, chunk.heading_path, chunk.text)
            assert chunk.token_count == word_pieces.count_tokens([embedded])[0]

    def test_invalid_bytes_are_reported(self, word_counter: TokenCounter, sample: Sample) -> None:
        """A Latin-1 file is indexed, and the replaced bytes are counted for the handler."""
        event = _upsert(
            content="",
            content_base64=base64.b64encode(sample("latin1.txt")).decode(),
            content_type="text/plain",
        )
        ingested = chunk_upsert(event, 1, word_counter, POLICY, LIMITS)
        assert ingested.replaced == 7
        assert ingested.chunked.chunks[0].text.startswith("Caf\ufffd")

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"content": "x", "content_type": "image/png"}, "unsupported content type 'image/png'"),
            ({"content": " \n\t "}, "document has no text"),
            ({"content": "x" * 301}, "301 bytes, over the limit of 300"),
            ({"content": "word " * 40, "content_type": "text/plain"}, "more than 1 chunks"),
            ({"content": "{", "content_type": "application/json"}, "invalid JSON"),
        ],
    )
    def test_documents_that_cannot_be_indexed_are_rejected_with_a_reason(
        self, word_counter: TokenCounter, overrides: dict[str, Any], reason: str
    ) -> None:
        """Unsupported, empty, oversized, over-chunked or malformed documents are refused."""
        limits = IngestLimits(max_document_bytes=300, max_chunks=1)
        small = ChunkingPolicy(max_tokens=32, overlap_tokens=0)
        with pytest.raises(DocumentRejectedError, match=reason):
            chunk_upsert(_upsert(title="", **overrides), 1, word_counter, small, limits)


class TestIdentifyChunks:
    def test_ids_and_hashes_derive_from_the_embedding_text(self) -> None:
        """content_hash is the SHA-256 of what the model embeds; the id is its first 16 digits."""
        [chunk] = identify_chunks("doc", "Title", [ChunkDraft(("H",), "text", 5)])
        expected = hashlib.sha256(b"Title\nH\ntext").hexdigest()
        assert (chunk.content_hash, chunk.chunk_id) == (expected, f"doc#{expected[:16]}")
        assert (chunk.position, chunk.token_count, chunk.heading_path) == (0, 5, ["H"])

    def test_repeats_of_an_identical_chunk_are_numbered(self) -> None:
        """The second and third identical chunk get -2 and -3; others keep their plain ids."""
        drafts = [ChunkDraft((), text, 3) for text in ("same", "other", "same", "same")]
        ids = [chunk.chunk_id for chunk in identify_chunks("d", "", drafts)]
        same = f"d#{hashlib.sha256(b'same').hexdigest()[:16]}"
        assert [ids[0], ids[2], ids[3]] == [same, f"{same}-2", f"{same}-3"]
        assert len(set(ids)) == 4

    def test_the_same_document_published_again_has_the_same_ids_and_hash(
        self, word_pieces: TokenCounter
    ) -> None:
        """Republishing identical content (new event, new version) changes no id and no hash."""
        first = chunk_upsert(_upsert(), 3, word_pieces, REAL_POLICY, LIMITS).chunked
        again = chunk_upsert(
            _upsert(published_at=datetime.now(UTC)), 9, word_pieces, REAL_POLICY, LIMITS
        ).chunked
        assert [c.chunk_id for c in again.chunks] == [c.chunk_id for c in first.chunks]
        assert again.doc_hash == first.doc_hash

    def test_changing_one_section_changes_only_its_chunk_ids(
        self, word_pieces: TokenCounter
    ) -> None:
        """An edit in one section renames that section's chunks and no other."""
        before = chunk_upsert(_upsert(), 1, word_pieces, REAL_POLICY, LIMITS).chunked
        edited = GUIDE.replace("Open the app and sign in.", "Open the app and log in.")
        after = chunk_upsert(_upsert(content=edited), 2, word_pieces, REAL_POLICY, LIMITS).chunked
        old, new = _ids_by_section(before.chunks), _ids_by_section(after.chunks)
        assert old.keys() == new.keys()
        changed = [path for path in old if old[path] != new[path]]
        assert changed == [("Guide", "Use")]
        assert after.doc_hash != before.doc_hash

    def test_inserting_a_section_renumbers_nothing(self, word_pieces: TokenCounter) -> None:
        """A new section in the middle leaves every other chunk's id as it was."""
        before = chunk_upsert(_upsert(), 1, word_pieces, REAL_POLICY, LIMITS).chunked
        inserted = GUIDE.replace("## Use", "## Configure\n\nEdit the settings file.\n\n## Use")
        after = chunk_upsert(_upsert(content=inserted), 2, word_pieces, REAL_POLICY, LIMITS).chunked
        assert {c.chunk_id for c in before.chunks} < {c.chunk_id for c in after.chunks}
        assert len(after.chunks) == len(before.chunks) + 1

    def test_an_encoding_of_the_same_text_has_the_same_ids_and_hash(
        self, word_pieces: TokenCounter, sample: Sample
    ) -> None:
        """UTF-16 bytes and the same text as a string index identically."""
        raw = sample("utf16-bom.txt")
        as_bytes = _upsert(content="", content_base64=base64.b64encode(raw).decode())
        as_text = _upsert(content=raw.decode("utf-16"))
        one = chunk_upsert(as_bytes, 1, word_pieces, REAL_POLICY, LIMITS).chunked
        two = chunk_upsert(as_text, 2, word_pieces, REAL_POLICY, LIMITS).chunked
        assert [c.chunk_id for c in one.chunks] == [c.chunk_id for c in two.chunks]
        assert one.doc_hash == two.doc_hash


class TestDocumentHash:
    @pytest.mark.parametrize(
        "overrides",
        [
            {"title": "Another title"},
            {"source": "elsewhere"},
            {"tags": ["hr"]},
            {"content": GUIDE + "\n\nOne more line."},
        ],
    )
    def test_whatever_the_index_stores_changes_the_hash(
        self, word_counter: TokenCounter, overrides: dict[str, Any]
    ) -> None:
        """Title, source, tags and text all enter the hash: equal hashes index identically."""
        base = chunk_upsert(_upsert(), 1, word_counter, POLICY, LIMITS).chunked.doc_hash
        other = chunk_upsert(_upsert(**overrides), 1, word_counter, POLICY, LIMITS).chunked
        assert other.doc_hash != base

    def test_the_chunking_budget_changes_the_hash(self, word_counter: TokenCounter) -> None:
        """Chunks cut to another budget are another version of the index."""
        base = chunk_upsert(_upsert(), 1, word_counter, POLICY, LIMITS).chunked.doc_hash
        wider = ChunkingPolicy(max_tokens=64, overlap_tokens=8)
        assert chunk_upsert(_upsert(), 1, word_counter, wider, LIMITS).chunked.doc_hash != base

    def test_trailing_whitespace_and_line_endings_do_not(self, word_counter: TokenCounter) -> None:
        """Normalisation happens before hashing: CRLF and trailing spaces hash like LF."""
        base = chunk_upsert(_upsert(), 1, word_counter, POLICY, LIMITS).chunked.doc_hash
        crlf = GUIDE.replace("\n", "  \r\n")
        assert (
            chunk_upsert(_upsert(content=crlf), 1, word_counter, POLICY, LIMITS).chunked.doc_hash
            == base
        )


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
    def test_chunked_status_counts_chunks_and_carries_the_hash(
        self, word_counter: TokenCounter
    ) -> None:
        """The chunked status names the version, how many chunks it has and the doc hash."""
        chunked = chunk_upsert(_upsert(), 3, word_counter, POLICY, LIMITS).chunked
        status = chunked_status(chunked)
        assert (status.stage, status.version, status.chunk_count, status.tenant) == (
            "chunked",
            3,
            4,
            "acme",
        )
        assert status.doc_hash == chunked.doc_hash
        assert status.published_at == PUBLISHED

    def test_failed_status_carries_the_reason(self) -> None:
        """The failed status says why the version could not be chunked."""
        status = failed_status(_upsert(), 4, "document has no text")
        assert (status.stage, status.version, status.reason) == (
            "failed",
            4,
            "document has no text",
        )
