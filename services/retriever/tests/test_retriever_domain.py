"""Tests for the retriever's pure decisions: ids, versions, index objects, ranking, events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ragstream_common.events import ChunksEmbedded, EmbeddedChunk, QueryRequested
from ragstream_retriever.domain import (
    InvalidEmbeddingsError,
    SearchHit,
    as_utc,
    build_context,
    candidate_limit,
    chunk_object_id,
    chunks_to_index,
    document_object_id,
    document_status,
    freshness_seconds,
    is_current_version,
    select_chunks,
)

PUBLISHED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _chunk(chunk_id: str, doc_id: str = "doc-1", dims: int = 4, position: int = 0) -> EmbeddedChunk:
    return EmbeddedChunk(
        chunk_id=chunk_id,
        doc_id=doc_id,
        position=position,
        text=f"text of {chunk_id}",
        heading_path=["Guide", "Setup"],
        content_hash=f"hash-{chunk_id}",
        vector=[0.5] * dims,
    )


def _event(*chunks: EmbeddedChunk, version: int = 2, published_at: datetime = PUBLISHED):
    return ChunksEmbedded(
        doc_id="doc-1",
        tenant="acme",
        version=version,
        title="Setup guide",
        source="s3://docs/setup.md",
        model="all-MiniLM-L6-v2",
        chunks=list(chunks),
        published_at=published_at,
    )


def _hit(doc_id: str, chunk_id: str, score: float) -> SearchHit:
    return SearchHit(
        chunk_id=chunk_id,
        doc_id=doc_id,
        title=f"title {doc_id}",
        text=f"text {chunk_id}",
        position=0,
        heading_path=("H",),
        score=score,
    )


class TestChunkObjectId:
    def test_same_inputs_give_the_same_id(self) -> None:
        """Re-indexing a chunk targets the same object, which makes upserts idempotent."""
        assert chunk_object_id("acme", "doc-1", "c1") == chunk_object_id("acme", "doc-1", "c1")

    def test_tenant_is_part_of_the_identity(self) -> None:
        """Two tenants with the same document and chunk ids never overwrite each other."""
        assert chunk_object_id("acme", "doc-1", "c1") != chunk_object_id("other", "doc-1", "c1")

    def test_separator_inside_ids_cannot_collide(self) -> None:
        """Ids that would concatenate to the same string still give different objects."""
        assert chunk_object_id("t", "a:b", "c") != chunk_object_id("t", "a", "b:c")

    def test_id_is_a_stable_uuid5(self) -> None:
        """The id is a version-5 UUID pinned here: a change would orphan every indexed chunk."""
        object_id = chunk_object_id("acme", "doc-1", "c1")
        assert object_id.version == 5
        assert object_id == uuid.UUID("8e980f9f-da60-51ff-a18f-acc4c27e5daa")


class TestDocumentObjectId:
    def test_document_record_id_differs_from_every_chunk_id(self) -> None:
        """A document's version record is keyed apart from its chunks."""
        assert document_object_id("acme", "doc-1") != chunk_object_id("acme", "doc-1", "")

    def test_document_record_id_depends_on_tenant(self) -> None:
        """Each tenant's copy of a document has its own version record."""
        assert document_object_id("a", "doc-1") != document_object_id("b", "doc-1")


class TestIsCurrentVersion:
    @pytest.mark.parametrize(
        ("incoming", "indexed", "expected"),
        [(1, None, True), (3, 2, True), (2, 2, True), (1, 2, False)],
    )
    def test_only_strictly_older_versions_are_stale(
        self, incoming: int, indexed: int | None, expected: bool
    ) -> None:
        """New documents, newer versions and redeliveries apply; older versions do not."""
        assert is_current_version(incoming, indexed) is expected


class TestChunksToIndex:
    def test_objects_carry_every_property_and_the_vector(self) -> None:
        """Each chunk becomes an object with document metadata, its own fields and its vector."""
        [chunk] = chunks_to_index(_event(_chunk("c1", position=7)), dimensions=4)
        assert chunk.object_id == chunk_object_id("acme", "doc-1", "c1")
        assert chunk.vector == (0.5, 0.5, 0.5, 0.5)
        assert chunk.properties() == {
            "tenant": "acme",
            "doc_id": "doc-1",
            "chunk_id": "c1",
            "title": "Setup guide",
            "source": "s3://docs/setup.md",
            "text": "text of c1",
            "heading_path": ["Guide", "Setup"],
            "position": 7,
            "version": 2,
            "content_hash": "hash-c1",
            "model": "all-MiniLM-L6-v2",
            "published_at": PUBLISHED,
        }

    def test_empty_version_gives_no_objects(self) -> None:
        """A version without chunks (a deletion) has nothing to upsert."""
        assert chunks_to_index(_event(), dimensions=4) == []

    def test_naive_publication_time_is_read_as_utc(self) -> None:
        """A naive timestamp is stored as UTC instead of the server guessing a zone."""
        naive = datetime(2026, 1, 2, 3, 4, 5)  # naive on purpose: that is the input under test
        [chunk] = chunks_to_index(_event(_chunk("c1"), published_at=naive), dimensions=4)
        assert chunk.published_at == PUBLISHED

    def test_wrong_vector_size_is_refused(self) -> None:
        """Vectors from a model of another size could never be searched, so the message is bad."""
        with pytest.raises(InvalidEmbeddingsError, match="size 4"):
            chunks_to_index(_event(_chunk("c1", dims=3)), dimensions=4)

    def test_chunk_of_another_document_is_refused(self) -> None:
        """A chunk claiming a different document would be indexed under the wrong one."""
        with pytest.raises(InvalidEmbeddingsError, match="other documents"):
            chunks_to_index(_event(_chunk("c1", doc_id="doc-2")), dimensions=4)

    def test_repeated_chunk_id_is_refused(self) -> None:
        """Two chunks with one id would silently overwrite each other in the index."""
        with pytest.raises(InvalidEmbeddingsError, match="repeats"):
            chunks_to_index(_event(_chunk("c1"), _chunk("c1", position=1)), dimensions=4)


class TestAsUtc:
    def test_aware_time_is_converted_to_utc(self) -> None:
        """A timestamp in another zone keeps its instant and is expressed in UTC."""
        plus_two = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
        converted = as_utc(plus_two)
        assert converted == PUBLISHED
        assert converted.tzinfo == UTC


class TestFreshnessSeconds:
    def test_age_is_now_minus_publication(self) -> None:
        """Freshness is the time between publication and indexing, in seconds."""
        assert freshness_seconds(PUBLISHED, PUBLISHED + timedelta(seconds=2.5)) == 2.5

    def test_clock_skew_never_gives_a_negative_age(self) -> None:
        """A producer clock ahead of ours yields zero, not a negative observation."""
        assert freshness_seconds(PUBLISHED, PUBLISHED - timedelta(seconds=3)) == 0.0


class TestDocumentStatus:
    def test_version_with_chunks_is_indexed(self) -> None:
        """Applying chunks reports stage indexed with the version and chunk count."""
        status = document_status(_event(_chunk("c1"), _chunk("c2", position=1)))
        assert (status.stage, status.version, status.chunk_count) == ("indexed", 2, 2)
        assert (status.doc_id, status.tenant, status.published_at) == ("doc-1", "acme", PUBLISHED)

    def test_version_without_chunks_is_deleted(self) -> None:
        """Applying an empty version reports stage deleted."""
        status = document_status(_event())
        assert (status.stage, status.chunk_count) == ("deleted", 0)


class TestCandidateLimit:
    @pytest.mark.parametrize(
        ("top_k", "overfetch", "cap", "expected"),
        [(5, 3, 150, 15), (50, 3, 100, 100), (50, 3, 10, 50), (1, 1, 150, 1)],
    )
    def test_overfetches_within_the_cap_but_never_below_top_k(
        self, top_k: int, overfetch: int, cap: int, expected: int
    ) -> None:
        """The index is asked for top_k times overfetch, capped, and at least top_k."""
        assert candidate_limit(top_k, overfetch, cap) == expected


class TestSelectChunks:
    def test_orders_by_score_and_keeps_top_k(self) -> None:
        """The best-scoring chunks come first and only top_k are kept."""
        hits = [_hit("a", "a1", 0.2), _hit("b", "b1", 0.9), _hit("c", "c1", 0.5)]
        chosen = select_chunks(hits, top_k=2, max_per_doc=3)
        assert [chunk.chunk_id for chunk in chosen] == ["b1", "c1"]
        assert [chunk.score for chunk in chosen] == [0.9, 0.5]

    def test_one_document_cannot_crowd_out_the_rest(self) -> None:
        """At most max_per_doc chunks of a document are kept, making room for others."""
        hits = [_hit("a", f"a{i}", 1.0 - i / 10) for i in range(5)] + [_hit("b", "b1", 0.1)]
        chosen = select_chunks(hits, top_k=4, max_per_doc=3)
        assert [chunk.chunk_id for chunk in chosen] == ["a0", "a1", "a2", "b1"]

    def test_duplicate_hits_count_once(self) -> None:
        """The same chunk returned twice appears once in the context."""
        chosen = select_chunks([_hit("a", "a1", 0.9), _hit("a", "a1", 0.9)], top_k=5, max_per_doc=3)
        assert [chunk.chunk_id for chunk in chosen] == ["a1"]

    def test_ties_keep_the_index_order(self) -> None:
        """Equal scores keep the order the index returned them in."""
        hits = [_hit("a", "a1", 0.5), _hit("b", "b1", 0.5), _hit("c", "c1", 0.5)]
        chosen = select_chunks(hits, top_k=3, max_per_doc=1)
        assert [chunk.doc_id for chunk in chosen] == ["a", "b", "c"]

    def test_no_hits_give_an_empty_context(self) -> None:
        """Nothing found means nothing selected, not an error."""
        assert select_chunks([], top_k=5, max_per_doc=3) == []

    def test_fields_are_carried_into_the_retrieved_chunk(self) -> None:
        """Title, text, position and heading path reach the generator unchanged."""
        [chunk] = select_chunks([_hit("a", "a1", 0.7)], top_k=1, max_per_doc=1)
        assert (chunk.title, chunk.text, chunk.heading_path) == ("title a", "text a1", ["H"])


class TestBuildContext:
    def test_context_carries_query_chunks_and_rounded_timings(self) -> None:
        """The context event holds the query, the chunks in order and timings in milliseconds."""
        query = QueryRequested(text="how to set up?", reply_to="gw-1", tenant="acme")
        chunks = select_chunks([_hit("a", "a1", 0.7), _hit("b", "b1", 0.6)], top_k=2, max_per_doc=1)
        context = build_context(query, chunks, {"search_ms": 1.23456})
        assert context.query == query
        assert [chunk.chunk_id for chunk in context.chunks] == ["a1", "b1"]
        assert context.timings == {"search_ms": 1.235}
