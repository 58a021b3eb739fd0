"""Tests for the embedder's pure logic: what is embedded, cached, batched, and put back."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from ragstream_common.chunk_text import embedding_text
from ragstream_common.events import Chunk, DocumentChunked
from ragstream_embedder.domain import (
    EmbeddingPlan,
    ModelClock,
    as_float32,
    cache_key,
    decode_vector,
    embedded_events,
    embedded_status,
    encode_vector,
    failed_status,
    fill_vectors,
    missing_slots,
    model_call_parts,
    plan_batch,
)

PUBLISHED = datetime(2025, 1, 2, tzinfo=UTC)


def _document(doc_id: str, texts: list[str], *, title: str = "Guide") -> DocumentChunked:
    return DocumentChunked(
        doc_id=doc_id,
        tenant="acme",
        version=3,
        title=title,
        source="wiki",
        tags=["ops", "howto"],
        doc_hash="h",
        chunks=[
            Chunk(
                chunk_id=f"{doc_id}#{position}",
                doc_id=doc_id,
                position=position,
                text=text,
                heading_path=["Setup"],
                content_hash=f"hash-{text}",
                token_count=len(text.split()) + 3,
            )
            for position, text in enumerate(texts)
        ],
        published_at=PUBLISHED,
    )


class TestEmbeddingText:
    def test_title_headings_and_text_are_joined_in_order(self) -> None:
        """The model reads the title, then the heading path, then the chunk text."""
        text = embedding_text("Guide", ["Setup", "Linux"], "Run make.")
        assert text == "Guide\nSetup > Linux\nRun make."

    def test_heading_repeating_the_title_is_left_out(self) -> None:
        """A top heading equal to the title (any case) is not embedded twice."""
        assert embedding_text("Guide", ["guide", "Setup"], "x") == "Guide\nSetup\nx"

    def test_missing_title_and_headings_leave_just_the_text(self) -> None:
        """Without title or headings, the text is embedded as it is, without blank lines."""
        assert embedding_text("", [], "  just text ") == "just text"

    def test_blank_headings_are_skipped(self) -> None:
        """Empty headings add no separators."""
        assert embedding_text("T", ["", " ", "A"], "x") == "T\nA\nx"


class TestCacheKey:
    def test_key_is_model_version_and_sha256_of_the_embedding_text(self) -> None:
        """The key names the model version and the SHA-256 of exactly what the model reads."""
        text = embedding_text("Guide", ["Setup"], "Run make.")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        assert cache_key("minilm@1", text) == f"ragstream:emb:minilm@1:{digest}"

    def test_same_text_same_key(self) -> None:
        """Identical texts share a key, whichever document or chunk they come from."""
        assert cache_key("m", "Guide\nx") == cache_key("m", "Guide\nx")

    def test_model_version_title_and_heading_each_change_the_key(self) -> None:
        """A new model, title or heading path misses the cache: the vector would differ."""
        base = cache_key("m@1", embedding_text("Guide", ["Setup"], "x"))
        assert cache_key("m@2", embedding_text("Guide", ["Setup"], "x")) != base
        assert cache_key("m@1", embedding_text("Manual", ["Setup"], "x")) != base
        assert cache_key("m@1", embedding_text("Guide", ["Install"], "x")) != base


class TestVectorEncoding:
    def test_float32_values_round_trip_exactly(self) -> None:
        """A vector of float32 values comes back out of its bytes unchanged."""
        vector = [0.5, -1.25, 3.0, 0.0, 1e-3]
        vector = as_float32(vector)
        assert decode_vector(encode_vector(vector)) == vector

    def test_bytes_are_little_endian_float32(self) -> None:
        """Each dimension is 4 bytes, little-endian IEEE 754, whatever the machine."""
        assert encode_vector([1.0, -2.0]) == b"\x00\x00\x80\x3f\x00\x00\x00\xc0"
        assert len(encode_vector([0.0] * 384)) == 1536

    def test_as_float32_rounds_to_single_precision(self) -> None:
        """A double is rounded to the nearest float32, as the cache would return it."""
        rounded = as_float32([0.1])
        assert rounded != [0.1]
        assert abs(rounded[0] - 0.1) < 1e-8
        assert as_float32(rounded) == rounded

    @pytest.mark.parametrize("data", [b"", b"\x00\x00\x80"])
    def test_bytes_that_are_no_vector_are_refused(self, data: bytes) -> None:
        """Empty or truncated bytes are an error, not a short vector."""
        with pytest.raises(ValueError, match="not a float32 vector"):
            decode_vector(data)


class TestFillVectors:
    def test_misses_are_the_empty_slots_in_order(self) -> None:
        """The texts to embed are the ones the cache had no vector for, in plan order."""
        assert missing_slots([[1.0], None, [2.0], None]) == [1, 3]

    def test_fresh_vectors_fill_the_gaps(self) -> None:
        """Cached vectors stay where they are; the model's fill the misses in order."""
        cached = [[1.0], None, [2.0], None]
        assert fill_vectors(cached, [1, 3], [[7.0], [8.0]]) == [[1.0], [7.0], [2.0], [8.0]]

    def test_all_hits_need_no_model(self) -> None:
        """With every text cached there is nothing to embed and nothing to fill."""
        assert fill_vectors([[1.0], [2.0]], [], []) == [[1.0], [2.0]]

    def test_a_wrong_number_of_fresh_vectors_is_an_error(self) -> None:
        """A model that returns the wrong number of vectors is an error, not a silent mix-up."""
        with pytest.raises(ValueError, match="expected 2 vectors, the model returned 1"):
            fill_vectors([None, None], [0, 1], [[1.0]])


class TestPlanBatch:
    def test_texts_of_all_documents_go_into_one_call(self) -> None:
        """Every chunk of every document of the batch is planned, in order."""
        plan = plan_batch([_document("a", ["one", "two"]), _document("b", ["three"])])
        assert plan.texts == ["Guide\nSetup\none", "Guide\nSetup\ntwo", "Guide\nSetup\nthree"]
        assert plan.slots == [[0, 1], [2]]
        assert plan.chunk_count == 3

    def test_identical_texts_are_embedded_once(self) -> None:
        """A text shared by chunks of the batch is sent to the model once and shared."""
        plan = plan_batch([_document("a", ["same", "other"]), _document("b", ["same"])])
        assert len(plan.texts) == 2
        assert plan.slots == [[0, 1], [0]]

    def test_a_deletion_adds_nothing_to_embed(self) -> None:
        """A document version without chunks contributes no text and an empty slot list."""
        plan = plan_batch([_document("gone", [])])
        assert (plan.texts, plan.slots) == ([], [[]])


class TestEmbeddedEvents:
    def test_each_chunk_gets_its_vector_and_metadata_is_kept(self) -> None:
        """Vectors are dealt back to their chunks; document fields and the model are recorded."""
        documents = [_document("a", ["one", "two"]), _document("b", ["one"], title="Guide")]
        plan = plan_batch(documents)
        vectors = [[1.0, 0.0], [0.0, 1.0]]

        first, second = embedded_events(documents, plan, vectors, "model@1")

        assert [chunk.vector for chunk in first.chunks] == [[1.0, 0.0], [0.0, 1.0]]
        assert [chunk.vector for chunk in second.chunks] == [[1.0, 0.0]]
        assert (first.doc_id, first.tenant, first.version, first.title, first.source) == (
            "a",
            "acme",
            3,
            "Guide",
            "wiki",
        )
        assert first.model == "model@1"
        assert first.published_at == PUBLISHED
        assert first.chunks[1].chunk_id == "a#1"
        assert first.chunks[1].content_hash == "hash-two"
        assert first.chunks[1].heading_path == ["Setup"]
        assert first.chunks[1].token_count == 4

    def test_tags_and_document_hash_pass_through(self) -> None:
        """The document's tags and content hash travel on to the retriever."""
        documents = [_document("a", ["one"])]
        [event] = embedded_events(documents, plan_batch(documents), [[1.0]], "m")
        assert (event.tags, event.doc_hash) == (["ops", "howto"], "h")

    def test_a_deletion_passes_through_without_chunks(self) -> None:
        """A version with no chunks comes out as an embedded version with no chunks."""
        documents = [_document("gone", [])]
        [event] = embedded_events(documents, plan_batch(documents), [], "model@1")
        assert (event.doc_id, event.chunks) == ("gone", [])

    def test_vector_count_must_match_the_plan(self) -> None:
        """Vectors that do not match the planned texts are an error, not a silent mix-up."""
        documents = [_document("a", ["one", "two"])]
        with pytest.raises(ValueError, match="expected 2 vectors"):
            embedded_events(documents, plan_batch(documents), [[1.0]], "m")

    def test_plan_must_match_the_documents(self) -> None:
        """A plan made for another batch is refused."""
        plan = EmbeddingPlan(texts=[], slots=[])
        with pytest.raises(ValueError, match="different batch"):
            embedded_events([_document("a", [])], plan, [], "m")


class TestEmbeddedStatus:
    def test_embedded_status_counts_chunks(self) -> None:
        """An embedded version reports `embedded` with its version and chunk count."""
        documents = [_document("a", ["one", "two"])]
        [event] = embedded_events(documents, plan_batch(documents), [[1.0], [2.0]], "m")
        status = embedded_status(event)
        assert status is not None
        assert (status.doc_id, status.stage, status.version, status.chunk_count) == (
            "a",
            "embedded",
            3,
            2,
        )

    def test_a_deletion_reports_no_status(self) -> None:
        """A deletion passing through does not claim to be embedded."""
        documents = [_document("gone", [])]
        [event] = embedded_events(documents, plan_batch(documents), [], "m")
        assert embedded_status(event) is None

    def test_failed_status_carries_version_and_reason(self) -> None:
        """A version that cannot be embedded reports `failed` with its version and the reason."""
        status = failed_status(_document("a", ["one"]), "too large")
        assert (status.doc_id, status.stage, status.version, status.reason) == (
            "a",
            "failed",
            3,
            "too large",
        )


class TestModelCallParts:
    def test_documents_are_grouped_in_order_up_to_the_limit(self) -> None:
        """Runs of whole documents, in record order, each at most max_texts chunks."""
        parts = model_call_parts([3, 3, 3, 2, 4], max_texts=6)
        assert [list(part) for part in parts] == [[0, 1], [2, 3], [4]]

    def test_a_document_larger_than_the_limit_is_a_part_of_its_own(self) -> None:
        """A document is never split, even when it alone exceeds the limit."""
        parts = model_call_parts([2, 9, 1], max_texts=4)
        assert [list(part) for part in parts] == [[0], [1], [2]]

    def test_every_document_lands_in_exactly_one_part(self) -> None:
        """Nothing lost, nothing repeated, for a spread of sizes and limits."""
        counts = [1, 5, 2, 0, 7, 3, 3, 1]
        for limit in (1, 3, 8, 100):
            covered = [i for part in model_call_parts(counts, limit) for i in part]
            assert covered == list(range(len(counts)))


class TestModelClock:
    def test_calls_queued_behind_each_other_count_their_overlap_once(self) -> None:
        """A call submitted while the one before it ran is busy only from when that one ended."""
        clock = ModelClock()
        assert clock.busy(submitted=10.0, done=12.0) == 2.0
        assert clock.busy(submitted=11.5, done=13.0) == 1.0
        assert clock.busy(submitted=12.0, done=13.5) == 0.5

    def test_idle_time_between_calls_is_not_busy(self) -> None:
        """A call submitted after the model went idle counts from its own submission."""
        clock = ModelClock()
        clock.busy(submitted=1.0, done=2.0)
        assert clock.busy(submitted=5.0, done=5.25) == 0.25
