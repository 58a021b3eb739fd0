"""Tests for the retriever's pure decisions: ids, version plans, index objects, live filtering,
ranking, events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ragstream_common.events import ChunksEmbedded, EmbeddedChunk, QueryFilters, QueryRequested
from ragstream_retriever.domain import (
    DocumentRecord,
    IndexAction,
    IndexPlan,
    InvalidEmbeddingsError,
    LiveHits,
    LiveVersion,
    MetadataFilter,
    PendingVersion,
    SearchHit,
    as_utc,
    build_context,
    candidate_limit,
    chunk_object_id,
    chunks_to_index,
    document_object_id,
    document_status,
    freshness_seconds,
    index_fingerprint,
    is_tenant_name,
    keep_live_versions,
    metadata_filter,
    next_search_limit,
    plan_version,
    resolve_option,
    select_chunks,
    version_rounds,
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


def _event(
    *chunks: EmbeddedChunk,
    version: int = 2,
    published_at: datetime = PUBLISHED,
    doc_hash: str | None = "dh-1",
    **fields: Any,
) -> ChunksEmbedded:
    values: dict[str, Any] = {
        "doc_id": "doc-1",
        "tenant": "acme",
        "version": version,
        "title": "Setup guide",
        "source": "s3://docs/setup.md",
        "tags": ["ops", "setup"],
        "doc_hash": doc_hash,
        "model": "all-MiniLM-L6-v2",
        "chunks": list(chunks),
        "published_at": published_at,
    }
    return ChunksEmbedded(**(values | fields))


def _record(
    latest: int, live: int | None = None, *, fingerprint: str | None = None, chunks: int = 1
) -> DocumentRecord:
    return DocumentRecord(
        tenant="acme",
        doc_id="doc-1",
        latest_version=latest,
        live_version=latest if live is None else live,
        live_doc_hash="dh-1" if chunks else None,
        live_fingerprint=fingerprint,
        live_chunk_count=chunks,
    )


def _hit(doc_id: str, chunk_id: str, score: float, version: int = 1) -> SearchHit:
    return SearchHit(
        chunk_id=chunk_id,
        doc_id=doc_id,
        title=f"title {doc_id}",
        text=f"text {chunk_id}",
        position=0,
        heading_path=("H",),
        score=score,
        version=version,
    )


def _live(version: int, chunks: int = 2) -> LiveVersion:
    return LiveVersion(version, chunks)


class TestChunkObjectId:
    def test_same_inputs_give_the_same_id(self) -> None:
        """A redelivered version targets the objects it wrote before, so inserts are idempotent."""
        assert chunk_object_id("acme", "doc-1", 1, "c1") == chunk_object_id(
            "acme", "doc-1", 1, "c1"
        )

    def test_version_is_part_of_the_identity(self) -> None:
        """The same chunk in two versions is two objects, so both can exist until the switch."""
        assert chunk_object_id("acme", "doc-1", 1, "c1") != chunk_object_id(
            "acme", "doc-1", 2, "c1"
        )

    def test_tenant_is_part_of_the_identity(self) -> None:
        """Two tenants with the same document and chunk ids never overwrite each other."""
        assert chunk_object_id("acme", "doc-1", 1, "c1") != chunk_object_id(
            "other", "doc-1", 1, "c1"
        )

    def test_separator_inside_ids_cannot_collide(self) -> None:
        """Ids that would concatenate to the same string still give different objects."""
        assert chunk_object_id("t", "a:b", 1, "c") != chunk_object_id("t", "a", 1, "b:c")

    def test_id_is_a_stable_uuid5(self) -> None:
        """The id is a version-5 UUID pinned here: a change would orphan every indexed chunk."""
        object_id = chunk_object_id("acme", "doc-1", 1, "c1")
        assert object_id.version == 5
        assert object_id == uuid.UUID("93479519-47e8-5179-8ab8-d84c2028cc38")


class TestDocumentObjectId:
    def test_document_record_id_differs_from_every_chunk_id(self) -> None:
        """A document's version record is keyed apart from its chunks."""
        assert document_object_id("acme", "doc-1") != chunk_object_id("acme", "doc-1", 1, "")

    def test_document_record_id_depends_on_tenant(self) -> None:
        """Each tenant's copy of a document has its own version record."""
        assert document_object_id("a", "doc-1") != document_object_id("b", "doc-1")


class TestIndexFingerprint:
    def test_same_content_gives_the_same_fingerprint_whatever_the_version(self) -> None:
        """Republishing identical content yields an identical fingerprint."""
        first = _event(_chunk("c1"), version=1, published_at=PUBLISHED)
        again = _event(_chunk("c1"), version=7, published_at=PUBLISHED + timedelta(hours=1))
        assert index_fingerprint(first) == index_fingerprint(again)

    @pytest.mark.parametrize(
        "change",
        [
            {"doc_hash": "dh-2"},
            {"title": "Another title"},
            {"source": "s3://docs/moved.md"},
            {"tags": ["ops"]},
            {"model": "another-model"},
        ],
    )
    def test_anything_the_index_stores_changes_it(self, change: dict[str, Any]) -> None:
        """A new hash, title, source, tag set or model is a change even if the text is not."""
        assert index_fingerprint(_event(_chunk("c1"))) != index_fingerprint(
            _event(_chunk("c1"), **change)
        )

    def test_a_new_chunk_layout_changes_it(self) -> None:
        """Re-chunked content (other chunk ids) is a change even with the same document hash."""
        assert index_fingerprint(_event(_chunk("c1"))) != index_fingerprint(_event(_chunk("c9")))

    def test_tag_order_does_not_matter(self) -> None:
        """Tags are a set: reordering them is not a change."""
        assert index_fingerprint(_event(_chunk("c1"), tags=["a", "b"])) == index_fingerprint(
            _event(_chunk("c1"), tags=["b", "a", "a"])
        )

    def test_no_document_hash_means_no_fingerprint(self) -> None:
        """Without a doc_hash nothing can be declared unchanged."""
        assert index_fingerprint(_event(_chunk("c1"), doc_hash=None)) is None


class TestPlanVersion:
    def test_first_version_switches_to_itself(self) -> None:
        """A document without a record has its version inserted and made live and latest."""
        event = _event(_chunk("c1"), _chunk("c2", position=1), version=3)
        plan = plan_version(event, None)
        assert plan.action is IndexAction.SWITCH
        assert plan.record == DocumentRecord(
            "acme", "doc-1", 3, 3, "dh-1", index_fingerprint(event), 2
        )

    def test_strictly_older_version_is_stale(self) -> None:
        """A version below the latest applied writes nothing."""
        plan = plan_version(_event(_chunk("c1"), version=2), _record(latest=3))
        assert (plan.action, plan.record) == (IndexAction.STALE, None)

    def test_older_than_an_unchanged_latest_is_stale_even_above_live(self) -> None:
        """latest_version, not live_version, is the stale check's mark."""
        plan = plan_version(_event(_chunk("c9"), version=4), _record(latest=5, live=3))
        assert plan.action is IndexAction.STALE

    def test_identical_content_only_moves_the_latest_version(self) -> None:
        """A newer version with the live fingerprint is unchanged: the record keeps its live part."""
        event = _event(_chunk("c1"), version=4)
        record = _record(latest=3, fingerprint=index_fingerprint(event))
        plan = plan_version(event, record)
        assert plan.action is IndexAction.UNCHANGED
        assert plan.record == DocumentRecord(
            "acme", "doc-1", 4, 3, "dh-1", index_fingerprint(event), 1
        )

    def test_unchanged_version_redelivered_writes_nothing(self) -> None:
        """An unchanged version already recorded as latest needs no write at all."""
        event = _event(_chunk("c1"), version=4)
        record = _record(latest=4, live=3, fingerprint=index_fingerprint(event))
        assert plan_version(event, record) == IndexPlan(IndexAction.UNCHANGED, None)

    def test_changed_content_switches(self) -> None:
        """A newer version with another fingerprint is inserted and switched to."""
        event = _event(_chunk("c2"), version=4)
        plan = plan_version(event, _record(latest=3, fingerprint="other"))
        assert plan.action is IndexAction.SWITCH
        assert plan.record is not None
        assert (plan.record.latest_version, plan.record.live_version) == (4, 4)

    def test_missing_doc_hash_always_switches(self) -> None:
        """Without a doc_hash the version is applied, never assumed unchanged."""
        event = _event(_chunk("c1"), version=4, doc_hash=None)
        plan = plan_version(event, _record(latest=3, fingerprint=None))
        assert plan.action is IndexAction.SWITCH

    def test_empty_version_is_a_switch_to_nothing(self) -> None:
        """A deletion goes live with no chunks, no hash and no fingerprint."""
        plan = plan_version(_event(version=4), _record(latest=3, fingerprint="f"))
        assert plan.action is IndexAction.SWITCH
        assert plan.record == DocumentRecord("acme", "doc-1", 4, 4, None, None, 0)

    def test_deletion_matching_a_deletion_still_switches(self) -> None:
        """Two deletions in a row are not 'unchanged': the later one is recorded as live."""
        plan = plan_version(_event(version=5), _record(latest=4, chunks=0))
        assert plan.action is IndexAction.SWITCH

    def test_live_version_again_is_reapplied_not_stale(self) -> None:
        """A redelivery of the live version re-runs the retirement and rewrites no record."""
        event = _event(_chunk("c1"), version=3)
        plan = plan_version(event, _record(latest=3, fingerprint=index_fingerprint(event)))
        assert (plan.action, plan.record) == (IndexAction.REAPPLY, None)

    def test_deletion_again_is_reapplied(self) -> None:
        """A redelivered deletion deletes again, in case the first pass was cut short."""
        plan = plan_version(_event(version=3), _record(latest=3, chunks=0))
        assert plan.action is IndexAction.REAPPLY


class TestVersionRounds:
    @staticmethod
    def _pending(doc_id: str, version: int, tenant: str = "acme") -> PendingVersion:
        return PendingVersion(_event(version=version, doc_id=doc_id, tenant=tenant), [])

    def _shape(self, rounds: list[list[PendingVersion]]) -> list[list[tuple[str, str, int]]]:
        return [[(v.event.tenant, v.event.doc_id, v.event.version) for v in r] for r in rounds]

    def test_distinct_documents_share_one_round_in_order(self) -> None:
        batch = [self._pending("b", 1), self._pending("a", 3), self._pending("c", 2)]

        assert self._shape(version_rounds(batch)) == [
            [("acme", "b", 1), ("acme", "a", 3), ("acme", "c", 2)]
        ]

    def test_each_repeat_of_a_document_goes_to_the_next_round(self) -> None:
        batch = [
            self._pending("a", 1),
            self._pending("b", 1),
            self._pending("a", 2),
            self._pending("a", 3),
            self._pending("b", 2),
        ]

        assert self._shape(version_rounds(batch)) == [
            [("acme", "a", 1), ("acme", "b", 1)],
            [("acme", "a", 2), ("acme", "b", 2)],
            [("acme", "a", 3)],
        ]

    def test_the_same_doc_id_in_two_tenants_is_two_documents(self) -> None:
        batch = [self._pending("a", 1), self._pending("a", 1, tenant="globex")]

        assert len(version_rounds(batch)) == 1

    def test_an_empty_batch_has_no_rounds(self) -> None:
        assert version_rounds([]) == []


class TestIsTenantName:
    @pytest.mark.parametrize("tenant", ["default", "acme", "Team_2", "a-b", "x" * 64])
    def test_weaviate_compatible_names_are_accepted(self, tenant: str) -> None:
        """Letters, digits, '_' and '-', 1 to 64 of them, make a tenant name."""
        assert is_tenant_name(tenant)

    @pytest.mark.parametrize("tenant", ["", "a b", "acme/x", "é", "x" * 65, "a\n"])
    def test_other_names_are_refused(self, tenant: str) -> None:
        """Anything Weaviate could not hold as a tenant is refused."""
        assert not is_tenant_name(tenant)


class TestChunksToIndex:
    def test_a_tenant_weaviate_cannot_hold_is_a_contract_violation(self) -> None:
        """A version of a tenant whose name cannot be a Weaviate tenant goes to the DLQ."""
        with pytest.raises(InvalidEmbeddingsError, match="tenant"):
            chunks_to_index(_event(_chunk("c1"), tenant="acme corp"), dimensions=4)

    def test_objects_carry_every_property_and_the_vector(self) -> None:
        """Each chunk becomes an object with document metadata, its own fields and its vector."""
        [chunk] = chunks_to_index(_event(_chunk("c1", position=7)), dimensions=4)
        assert chunk.object_id == chunk_object_id("acme", "doc-1", 2, "c1")
        assert chunk.vector == (0.5, 0.5, 0.5, 0.5)
        assert chunk.properties() == {
            "tenant": "acme",
            "doc_id": "doc-1",
            "chunk_id": "c1",
            "title": "Setup guide",
            "source": "s3://docs/setup.md",
            "tags": ["ops", "setup"],
            "text": "text of c1",
            "heading_path": ["Guide", "Setup"],
            "position": 7,
            "version": 2,
            "doc_hash": "dh-1",
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
        """Applying chunks reports stage indexed with the version, chunk count and doc hash."""
        status = document_status(_event(_chunk("c1"), _chunk("c2", position=1)))
        assert (status.stage, status.version, status.chunk_count) == ("indexed", 2, 2)
        assert status.doc_hash == "dh-1"
        assert (status.doc_id, status.tenant, status.published_at) == ("doc-1", "acme", PUBLISHED)

    def test_version_without_chunks_is_deleted(self) -> None:
        """Applying an empty version reports stage deleted."""
        status = document_status(_event())
        assert (status.stage, status.chunk_count) == ("deleted", 0)


class TestKeepLiveVersions:
    def test_only_hits_of_the_live_version_are_kept(self) -> None:
        """Hits of a document's other versions are hidden and counted."""
        hits = [_hit("a", "a1", 0.9, version=1), _hit("a", "a2", 0.8, version=2)]
        hits += [_hit("a", "a3", 0.7, version=3)]
        live = keep_live_versions(hits, {"a": _live(2)})
        assert [hit.chunk_id for hit in live.hits] == ["a2"]
        assert live.hidden == 2

    def test_never_two_versions_of_one_document(self) -> None:
        """Whatever the candidates, the kept hits of each document share one version."""
        hits = [_hit("a", f"a{v}", 1.0 - v / 10, version=v) for v in (1, 2, 3)]
        hits += [_hit("b", "b1", 0.5, version=7)]
        live = keep_live_versions(hits, {"a": _live(3), "b": _live(7)})
        assert {(hit.doc_id, hit.version) for hit in live.hits} == {("a", 3), ("b", 7)}

    def test_document_without_a_record_is_hidden(self) -> None:
        """A first version written but not yet switched to is invisible, and not unsettled."""
        live = keep_live_versions([_hit("a", "a1", 0.9)], {})
        assert (live.hits, live.hidden, live.unsettled) == ([], 1, frozenset())

    def test_document_with_older_hits_is_unsettled(self) -> None:
        """Candidates of a version older than the live one flag a switch during the search."""
        hits = [_hit("a", "a1", 0.9, version=1), _hit("a", "a2", 0.8, version=2)]
        live = keep_live_versions(hits, {"a": _live(2)})
        assert live.unsettled == frozenset({"a"})

    def test_newer_unswitched_version_is_hidden_but_not_unsettled(self) -> None:
        """Chunks written for a version not yet live are hidden; the live ones were all there."""
        hits = [_hit("a", "a1", 0.9, version=3), _hit("a", "a2", 0.8, version=2)]
        live = keep_live_versions(hits, {"a": _live(2)})
        assert ([hit.chunk_id for hit in live.hits], live.unsettled) == (["a2"], frozenset())

    def test_deleted_document_is_hidden_but_not_unsettled(self) -> None:
        """Leftover hits of a deleted document vanish without asking for another round."""
        live = keep_live_versions([_hit("a", "a1", 0.9)], {"a": _live(2, chunks=0)})
        assert (live.hits, live.unsettled) == ([], frozenset())


class TestNextSearchLimit:
    def test_settled_full_round_stands(self) -> None:
        """Nothing hidden and nothing unsettled: one round is enough."""
        live = LiveHits([_hit("a", "a1", 0.9)], hidden=0, unsettled=frozenset())
        assert next_search_limit(live, fetched=15, limit=15, selected=1, top_k=5, cap=150) is None

    def test_short_context_after_hiding_doubles_the_limit(self) -> None:
        """Hidden hits that leave the context short ask for twice the candidates."""
        live = LiveHits([_hit("a", "a1", 0.9)], hidden=14, unsettled=frozenset())
        assert next_search_limit(live, fetched=15, limit=15, selected=1, top_k=5, cap=150) == 30

    def test_doubling_stops_at_the_cap(self) -> None:
        """The larger round never asks for more than the cap."""
        live = LiveHits([], hidden=100, unsettled=frozenset())
        assert next_search_limit(live, fetched=100, limit=100, selected=0, top_k=5, cap=150) == 150

    def test_short_context_from_an_exhausted_index_stands(self) -> None:
        """When the index returned fewer than asked for, there is nothing more to fetch."""
        live = LiveHits([], hidden=3, unsettled=frozenset())
        assert next_search_limit(live, fetched=3, limit=15, selected=0, top_k=5, cap=150) is None

    def test_unsettled_document_repeats_the_same_limit(self) -> None:
        """A document switched mid-search gets one more round at the same size."""
        live = LiveHits([_hit("b", "b1", 0.9)] * 5, hidden=1, unsettled=frozenset({"a"}))
        assert next_search_limit(live, fetched=6, limit=15, selected=5, top_k=5, cap=150) == 15


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

    def test_chunks_below_min_score_are_dropped(self) -> None:
        """Chunks scoring under min_score are cut; one scoring exactly min_score stays."""
        hits = [_hit("a", "a1", 0.9), _hit("b", "b1", 0.4), _hit("c", "c1", 0.39)]
        chosen = select_chunks(hits, top_k=5, max_per_doc=3, min_score=0.4)
        assert [chunk.chunk_id for chunk in chosen] == ["a1", "b1"]

    def test_min_score_above_every_hit_leaves_nothing(self) -> None:
        """A cut above the best score gives an empty context."""
        chosen = select_chunks([_hit("a", "a1", 0.6)], top_k=5, max_per_doc=3, min_score=0.7)
        assert chosen == []

    def test_source_and_tags_are_carried(self) -> None:
        """A retrieved chunk names its document's source and tags."""
        hit = SearchHit("a1", "a", "T", "text", 0, (), 0.5, 1, source="wiki", tags=("x", "y"))
        [chunk] = select_chunks([hit], top_k=1, max_per_doc=1)
        assert (chunk.source, chunk.tags) == ("wiki", ["x", "y"])

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


class TestMetadataFilter:
    def test_no_filters_is_the_empty_filter(self) -> None:
        """A query without filters searches with a filter that lets everything through."""
        assert metadata_filter(None) == MetadataFilter()
        assert metadata_filter(None).is_empty
        assert metadata_filter(QueryFilters()).is_empty

    def test_values_are_deduplicated_and_sorted(self) -> None:
        """Sources and tags become sorted tuples without repeats, so equal filters compare equal."""
        built = metadata_filter(QueryFilters(sources=["b", "a", "b"], tags=["z", "y", "z"]))
        assert (built.sources, built.tags) == (("a", "b"), ("y", "z"))
        assert not built.is_empty

    def test_dates_are_converted_to_utc(self) -> None:
        """Published-at bounds with any zone become UTC; naive ones are read as UTC."""
        plus_two = timezone(timedelta(hours=2))
        built = metadata_filter(
            QueryFilters(
                published_after=datetime(2024, 3, 1, 12, tzinfo=plus_two),
                published_before=datetime(2024, 4, 1),
            )
        )
        assert built.published_after == datetime(2024, 3, 1, 10, tzinfo=UTC)
        assert built.published_before == datetime(2024, 4, 1, tzinfo=UTC)

    def test_describe_lists_only_the_set_conditions(self) -> None:
        """The log form names the conditions that are set and nothing else."""
        built = metadata_filter(QueryFilters(tags=["ops"]))
        assert built.describe() == {"tags": ["ops"]}


class TestResolveOption:
    def test_unset_takes_the_default(self) -> None:
        """A query that sets nothing gets the service's default."""
        assert resolve_option(None, 0.5) == 0.5

    def test_set_value_wins_even_when_zero(self) -> None:
        """A query's explicit 0.0 is a choice (pure BM25, no cut), not an absence."""
        assert resolve_option(0.0, 0.5) == 0.0


class TestBuildContext:
    def test_context_carries_query_chunks_and_rounded_timings(self) -> None:
        """The context event holds the query, the chunks in order and timings in milliseconds."""
        query = QueryRequested(text="how to set up?", reply_to="gw-1", tenant="acme")
        chunks = select_chunks([_hit("a", "a1", 0.7), _hit("b", "b1", 0.6)], top_k=2, max_per_doc=1)
        context = build_context(query, chunks, {"search_ms": 1.23456})
        assert context.query == query
        assert [chunk.chunk_id for chunk in context.chunks] == ["a1", "b1"]
        assert context.timings == {"search_ms": 1.235}

    def test_context_carries_the_query_vector(self) -> None:
        """The query's embedding rides along for the generator's semantic cache."""
        query = QueryRequested(text="how to set up?", reply_to="gw-1", tenant="acme")
        assert build_context(query, [], {}).query_vector is None
        assert build_context(query, [], {}, [0.25, 0.5]).query_vector == [0.25, 0.5]
