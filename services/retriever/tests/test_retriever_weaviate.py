"""Tests of the index and search roles against a real Weaviate (127.0.0.1:8080, gRPC 50051).

Each test works in collections of its own name and deletes them afterwards. Vectors come from the
real all-MiniLM-L6-v2, so the search tests check the same path queries take in production.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from weaviate.classes.init import Auth

from ragstream_common.events import (
    ChunksEmbedded,
    ContextRetrieved,
    DocumentStatus,
    EmbeddedChunk,
    QueryFilters,
    QueryRequested,
    utc_now,
)
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import CONTEXTS, DOCUMENT_STATUS
from ragstream_retriever.adapters.embedding_model import AsyncEmbedder, load_query_model
from ragstream_retriever.adapters.weaviate_index import WeaviateIndex, weaviate_credentials
from ragstream_retriever.dependencies import Dependencies
from ragstream_retriever.domain import (
    DocumentRecord,
    IndexedChunk,
    LiveVersion,
    MetadataFilter,
    PendingVersion,
    SearchHit,
    chunks_to_index,
)
from ragstream_retriever.handlers import index_versions, search_live, search_query
from ragstream_retriever.ports import ChunkIndex
from ragstream_retriever.settings import RetrieverSettings

pytestmark = pytest.mark.stack

GLOBEX_ONLY = "Project Nightjar launches the orbital greenhouse on the ninth of October."

DOCS = {
    "kafka": [
        "Kafka keeps each partition's messages in order; the key picks the partition.",
        "Consumer groups share partitions, so replicas beyond the partition count sit idle.",
    ],
    "weaviate": [
        "Weaviate stores objects with vectors and answers hybrid queries mixing BM25 and vectors.",
    ],
    "baking": [
        "Sourdough bread needs a starter, flour, water and salt, and a long slow proof.",
    ],
}


@pytest.fixture(scope="module")
async def model() -> AsyncEmbedder:
    """The real query model, loaded once for the module."""
    return await load_query_model(dimensions=384)


@pytest.fixture
async def index() -> AsyncIterator[WeaviateIndex]:
    """A connected index over collections unique to this test, dropped afterwards."""
    settings = RetrieverSettings(collection=f"RetrieverTest{uuid.uuid4().hex[:10]}")
    weaviate_index = WeaviateIndex.from_settings(settings)
    try:
        await weaviate_index.connect(wait_seconds=15.0)
    except TimeoutError as error:
        await weaviate_index.close()
        pytest.fail(f"Weaviate is not running at 127.0.0.1:8080/50051: {error}")
    await weaviate_index.ensure_collections()
    try:
        yield weaviate_index
    finally:
        await weaviate_index.drop_collections()
        await weaviate_index.close()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _embedded(
    model: AsyncEmbedder, doc_id: str, version: int, texts: Sequence[str], tenant: str = "acme"
) -> ChunksEmbedded:
    """A version as the embedder sends it: content-addressed chunk ids, a hash of the content."""
    vectors = await model.embed(texts)
    return ChunksEmbedded(
        doc_id=doc_id,
        tenant=tenant,
        version=version,
        title=doc_id.title(),
        source=f"test://{doc_id}",
        tags=["test"],
        doc_hash=_sha("\n\n".join(texts)),
        model="all-MiniLM-L6-v2",
        chunks=[
            EmbeddedChunk(
                chunk_id=f"{doc_id}#{_sha(text)[:16]}",
                doc_id=doc_id,
                position=position,
                text=text,
                heading_path=[doc_id.title()],
                content_hash=_sha(text),
                vector=vector,
            )
            for position, (text, vector) in enumerate(zip(texts, vectors, strict=True))
        ],
        published_at=utc_now() - timedelta(seconds=1),
    )


def _deps(index: ChunkIndex, model: AsyncEmbedder) -> Dependencies:
    settings = RetrieverSettings(embedding_dimensions=384)
    metrics = ServiceMetrics("retriever")
    broker = create_broker(settings, metrics)
    return Dependencies(settings, metrics, broker, index_port=index, model_port=model)


async def _apply(
    index: WeaviateIndex, model: AsyncEmbedder, *events: ChunksEmbedded
) -> tuple[list[DocumentStatus], ServiceMetrics]:
    """Run events through the index handler with the real index and an in-memory broker."""
    deps = _deps(index, model)
    statuses: list[DocumentStatus] = []

    @deps.broker.subscriber(DOCUMENT_STATUS)
    async def collect(status: DocumentStatus) -> None:
        statuses.append(status)

    async with TestKafkaBroker(deps.broker):
        for event in events:
            await index_versions(deps, [_pending(event)])
    return statuses, deps.metrics


def _pending(event: ChunksEmbedded) -> PendingVersion:
    return PendingVersion(event, chunks_to_index(event, 384))


def _sample(metrics: ServiceMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name, {"service": "retriever"}) or 0.0


async def _live_search(
    index: ChunkIndex, model: AsyncEmbedder, text: str, top_k: int = 5
) -> list[SearchHit]:
    query = QueryRequested(tenant="acme", text=text, top_k=top_k, reply_to="gw")
    [vector] = await model.embed([text])
    return (await search_live(_deps(index, model), query, vector)).hits


async def _record(index: WeaviateIndex, doc_id: str) -> DocumentRecord:
    return (await index.document_records("acme", {doc_id}))[doc_id]


class TestWeaviateIndex:
    async def test_redelivered_version_keeps_one_object_per_chunk(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """Deterministic ids make a redelivered version overwrite, not duplicate."""
        event = await _embedded(model, "kafka", 1, DOCS["kafka"])
        statuses, _ = await _apply(index, model, event, event)

        assert await index.count() == 2
        assert (await _record(index, "kafka")).live_version == 1
        assert [(s.stage, s.version, s.chunk_count) for s in statuses] == [("indexed", 1, 2)] * 2

    async def test_identical_content_three_times_writes_once(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """The same doc_hash in versions 1-3 adds no object and no insert after the first."""
        versions = [await _embedded(model, "kafka", v, DOCS["kafka"]) for v in (1, 2, 3)]
        statuses, metrics = await _apply(index, model, versions[0])
        assert await index.count() == 2
        assert _sample(metrics, "ragstream_chunks_written_total") == 2

        more, metrics = await _apply(index, model, *versions[1:])

        assert await index.count() == 2
        assert await index.count(tenant="acme", doc_id="kafka", version=1) == 2
        assert _sample(metrics, "ragstream_chunks_written_total") == 0
        assert _sample(metrics, "ragstream_unchanged_versions_total") == 2
        record = await _record(index, "kafka")
        assert (record.latest_version, record.live_version) == (3, 1)
        assert [(s.stage, s.version, s.doc_hash) for s in statuses + more] == [
            ("indexed", v, versions[0].doc_hash) for v in (1, 2, 3)
        ]

    async def test_update_retires_the_vanished_chunk(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """After {A, B} becomes {A', B}, only version 2 is stored and A's text is not found."""
        old_a = "Brokers elect a partition leader through the KRaft controller quorum."
        new_a = "Tiered storage moves old log segments from brokers to object storage."
        b = DOCS["kafka"][1]
        await _apply(
            index,
            model,
            await _embedded(model, "kafka", 1, [old_a, b]),
            await _embedded(model, "kafka", 2, [new_a, b]),
        )

        assert await index.count(tenant="acme", doc_id="kafka") == 2
        assert await index.count(tenant="acme", doc_id="kafka", version=2) == 2
        hits = await _live_search(index, model, old_a)
        assert {hit.version for hit in hits} == {2}
        assert old_a not in {hit.text for hit in hits}
        [vector] = await model.embed([old_a])
        raw = await index.search(tenant="acme", text=old_a, vector=vector, alpha=0.5, limit=50)
        assert old_a not in {hit.text for hit in raw}

    async def test_versions_out_of_order_end_at_the_newest(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """Versions 3, 1, 2 applied in that order leave version 3 live and alone."""
        statuses, metrics = await _apply(
            index,
            model,
            await _embedded(model, "kafka", 3, DOCS["kafka"][1:]),
            await _embedded(model, "kafka", 1, DOCS["kafka"]),
            await _embedded(model, "kafka", 2, DOCS["kafka"][:1]),
        )

        assert await index.count(tenant="acme", doc_id="kafka") == 1
        assert await index.count(tenant="acme", doc_id="kafka", version=3) == 1
        assert (await _record(index, "kafka")).live_version == 3
        assert [s.version for s in statuses] == [3]
        assert _sample(metrics, "ragstream_stale_versions_skipped_total") == 2

    async def test_zero_chunk_version_deletes_everything_and_stays_deleted(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """A deletion removes every chunk, and an older version cannot bring them back."""
        statuses, _ = await _apply(
            index,
            model,
            await _embedded(model, "kafka", 1, DOCS["kafka"]),
            await _embedded(model, "weaviate", 1, DOCS["weaviate"]),
            await _embedded(model, "kafka", 2, []),
            await _embedded(model, "kafka", 1, DOCS["kafka"]),
        )

        assert await index.count(tenant="acme", doc_id="kafka") == 0
        assert await index.count(tenant="acme", doc_id="weaviate") == 1
        record = await _record(index, "kafka")
        assert (record.live_version, record.live_chunk_count) == (2, 0)
        assert [s.stage for s in statuses] == ["indexed", "indexed", "deleted"]
        hits = await _live_search(index, model, DOCS["kafka"][0])
        assert {hit.doc_id for hit in hits} == {"weaviate"}

    async def test_a_batch_across_documents_and_tenants_applies_each_version(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """One batch switches several documents of two tenants; the next batch updates one,
        deletes another and leaves the rest (and the other tenant's namesake) untouched."""
        first = [
            await _embedded(model, "kafka", 1, DOCS["kafka"]),
            await _embedded(model, "weaviate", 1, DOCS["weaviate"]),
            await _embedded(model, "baking", 1, DOCS["baking"]),
            await _embedded(model, "kafka", 1, DOCS["kafka"], tenant="globex"),
        ]
        second = [
            await _embedded(model, "kafka", 2, DOCS["kafka"][1:]),
            await _embedded(model, "weaviate", 2, []),
            await _embedded(model, "baking", 1, DOCS["baking"]),
        ]
        deps = _deps(index, model)
        async with TestKafkaBroker(deps.broker):
            await index_versions(deps, [_pending(event) for event in first])
            await index_versions(deps, [_pending(event) for event in second])

        counts = [await index.count("acme", doc) for doc in ("kafka", "weaviate", "baking")]
        assert counts == [1, 0, 1]
        assert await index.count("acme", "kafka", version=2) == 1
        assert await index.count("globex", "kafka", version=1) == 2
        records = await index.document_records("acme", {"kafka", "weaviate", "baking", "none"})
        assert {doc: r.live_version for doc, r in records.items()} == {
            "kafka": 2,
            "weaviate": 2,
            "baking": 1,
        }
        assert records["weaviate"].live_chunk_count == 0
        assert _sample(deps.metrics, "ragstream_chunks_retired_total") == 3

    async def test_live_versions_of_many_documents_in_one_lookup(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """live_versions answers for the documents that have a record, and only the tenant's."""
        await _apply(
            index,
            model,
            *[await _embedded(model, d, 1, texts) for d, texts in DOCS.items()],
            await _embedded(model, "kafka", 2, DOCS["kafka"][:1]),
        )

        live = await index.live_versions("acme", {"kafka", "baking", "unknown"})

        assert live == {"kafka": LiveVersion(2, 1), "baking": LiveVersion(1, 1)}
        assert await index.live_versions("rival", {"kafka"}) == {}

    async def test_hybrid_search_finds_the_right_chunk_within_the_tenant(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """The most relevant chunk of the asking tenant comes first; other tenants never appear."""
        await _apply(
            index,
            model,
            *[await _embedded(model, doc_id, 1, texts) for doc_id, texts in DOCS.items()],
            # The same text in another tenant: the best match overall, but not theirs to see.
            await _embedded(model, "kafka-copy", 1, DOCS["kafka"][1:], tenant="rival"),
        )
        query = QueryRequested(
            tenant="acme", text="why are some consumer replicas idle?", reply_to="gw"
        )
        [vector] = await model.embed([query.text])

        hits = await index.search(
            tenant="acme", text=query.text, vector=vector, alpha=0.5, limit=10
        )

        assert hits[0].text == DOCS["kafka"][1]
        assert hits[0].score >= hits[-1].score
        assert {hit.doc_id for hit in hits} <= {"kafka", "weaviate", "baking"}
        assert (hits[0].heading_path, hits[0].title, hits[0].version) == (("Kafka",), "Kafka", 1)

    async def test_search_handler_publishes_a_context_from_weaviate(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """A query through the search handler yields a context led by the right chunk."""
        await _apply(
            index, model, *[await _embedded(model, d, 1, texts) for d, texts in DOCS.items()]
        )
        deps = _deps(index, model)
        contexts: list[ContextRetrieved] = []

        @deps.broker.subscriber(CONTEXTS)
        async def collect(context: ContextRetrieved) -> None:
            contexts.append(context)

        query = QueryRequested(
            tenant="acme", text="what does bread dough need?", top_k=2, reply_to="gw"
        )
        async with TestKafkaBroker(deps.broker):
            await search_query(deps, query)

        [context] = contexts
        assert [chunk.doc_id for chunk in context.chunks][:1] == ["baking"]
        assert len(context.chunks) == 2
        assert context.timings["search_ms"] > 0
        assert context.timings["live_lookup_ms"] > 0


def _with(event: ChunksEmbedded, **fields: Any) -> ChunksEmbedded:
    """The same version with other document metadata (source, tags, published_at)."""
    return event.model_copy(update=fields)


async def _search(
    index: WeaviateIndex,
    model: AsyncEmbedder,
    text: str,
    *,
    tenant: str = "acme",
    filters: MetadataFilter | None = None,
    limit: int = 20,
) -> list[SearchHit]:
    [vector] = await model.embed([text])
    return await index.search(
        tenant=tenant, text=text, vector=vector, alpha=0.5, limit=limit, filters=filters
    )


JAN, FEB, MAR = (datetime(2025, month, 15, tzinfo=UTC) for month in (1, 2, 3))


class TestMetadataFilters:
    @pytest.fixture
    async def library(self, index: WeaviateIndex, model: AsyncEmbedder) -> WeaviateIndex:
        """Three documents with distinct sources, tags and publication months."""
        await _apply(
            index,
            model,
            _with(
                await _embedded(model, "kafka", 1, DOCS["kafka"]),
                source="wiki",
                tags=["streaming", "ops"],
                published_at=JAN,
            ),
            _with(
                await _embedded(model, "weaviate", 1, DOCS["weaviate"]),
                source="blog",
                tags=["search"],
                published_at=FEB,
            ),
            _with(
                await _embedded(model, "baking", 1, DOCS["baking"]),
                source="cookbook",
                tags=["food", "ops"],
                published_at=MAR,
            ),
        )
        return index

    async def test_sources_filter_keeps_any_of_the_sources(
        self, library: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """Only chunks whose source is one of the given sources are candidates."""
        hits = await _search(
            library, model, "kafka partitions", filters=MetadataFilter(sources=("blog", "cookbook"))
        )
        assert {hit.doc_id for hit in hits} == {"weaviate", "baking"}

    async def test_tags_filter_keeps_chunks_with_any_of_the_tags(
        self, library: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """A chunk carrying at least one requested tag is a candidate; the others are not."""
        hits = await _search(library, model, "hybrid search", filters=MetadataFilter(tags=("ops",)))
        assert {hit.doc_id for hit in hits} == {"kafka", "baking"}

    async def test_date_range_is_inclusive_on_both_ends(
        self, library: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """published_after and published_before bound the publication time, bounds included."""
        hits = await _search(
            library,
            model,
            "bread",
            filters=MetadataFilter(published_after=FEB, published_before=MAR),
        )
        only_after = await _search(
            library, model, "bread", filters=MetadataFilter(published_after=FEB + timedelta(1))
        )
        assert {hit.doc_id for hit in hits} == {"weaviate", "baking"}
        assert {hit.doc_id for hit in only_after} == {"baking"}

    async def test_conditions_combine_with_and(
        self, library: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """A tag that matches two documents and a source that matches one leave that one."""
        hits = await _search(
            library, model, "ops", filters=MetadataFilter(sources=("wiki",), tags=("ops",))
        )
        assert {hit.doc_id for hit in hits} == {"kafka"}

    async def test_hits_carry_source_and_tags(
        self, library: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """Every hit reports its document's source and tags as indexed."""
        hits = await _search(library, model, "sourdough bread starter")
        assert (hits[0].doc_id, hits[0].source, set(hits[0].tags)) == (
            "baking",
            "cookbook",
            {"food", "ops"},
        )

    async def test_handler_applies_filters_and_min_score(
        self, library: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """Through the search handler a tags filter narrows the context, and a cut empties it."""
        deps = _deps(library, model)
        contexts: list[ContextRetrieved] = []

        @deps.broker.subscriber(CONTEXTS)
        async def collect(context: ContextRetrieved) -> None:
            contexts.append(context)

        tagged = QueryRequested(
            tenant="acme", text="bread", filters=QueryFilters(tags=["search"]), reply_to="gw"
        )
        # No query word is in any chunk, so BM25 finds nothing and the best fused score is
        # alpha (0.5): a cut at 0.9 must leave nothing.
        cut = QueryRequested(
            tenant="acme", text="zyxwv qwpf", alpha=0.5, min_score=0.9, reply_to="gw"
        )
        async with TestKafkaBroker(deps.broker):
            await search_query(deps, tagged)
            await search_query(deps, cut)

        assert {chunk.doc_id for chunk in contexts[0].chunks} == {"weaviate"}
        assert contexts[0].chunks[0].source == "blog"
        assert contexts[1].chunks == []


class TestTenantIsolation:
    @pytest.fixture
    async def twins(self, index: WeaviateIndex, model: AsyncEmbedder) -> WeaviateIndex:
        """Tenants acme and globex each index doc_id "kafka" with the same text; acme more too."""
        await _apply(
            index,
            model,
            _with(await _embedded(model, "kafka", 1, DOCS["kafka"]), source="acme-wiki"),
            _with(await _embedded(model, "baking", 1, DOCS["baking"]), source="acme-wiki"),
            _with(
                await _embedded(model, "kafka", 4, DOCS["kafka"], tenant="globex"),
                source="globex-wiki",
                tags=["secret"],
            ),
            # Only globex has this text: the best possible match for a query equal to it.
            _with(
                await _embedded(model, "plans", 1, [GLOBEX_ONLY], tenant="globex"),
                source="globex-wiki",
                tags=["secret"],
            ),
        )
        return index

    async def test_each_tenant_has_its_own_shard(self, twins: WeaviateIndex) -> None:
        """Both tenants are Weaviate tenants of both collections, with their own objects."""
        chunk_tenants = await twins._chunks.tenants.get()
        version_tenants = await twins._versions.tenants.get()
        assert {"acme", "globex"} <= set(chunk_tenants) & set(version_tenants)
        assert (await twins.count("acme"), await twins.count("globex")) == (3, 3)

    async def test_same_doc_id_and_text_never_leak(
        self, twins: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """Searching acme for the shared text returns acme's chunks only, never globex's."""
        hits = await _search(twins, model, DOCS["kafka"][0])
        assert hits
        assert {hit.source for hit in hits} == {"acme-wiki"}
        assert {hit.version for hit in hits if hit.doc_id == "kafka"} == {1}

    async def test_exact_match_of_the_other_tenants_text_is_not_found(
        self, twins: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """A query equal to a text only globex holds finds nothing of globex as acme."""
        hits = await _search(twins, model, GLOBEX_ONLY)
        assert GLOBEX_ONLY not in {hit.text for hit in hits}
        assert {hit.source for hit in hits} <= {"acme-wiki"}

    async def test_filters_on_the_other_tenants_metadata_find_nothing(
        self, twins: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """Filtering acme's search on globex's source or tags cannot widen it to globex."""
        by_source = await _search(
            twins, model, GLOBEX_ONLY, filters=MetadataFilter(sources=("globex-wiki",))
        )
        by_tag = await _search(twins, model, GLOBEX_ONLY, filters=MetadataFilter(tags=("secret",)))
        assert (by_source, by_tag) == ([], [])

    async def test_version_records_are_per_tenant(
        self, twins: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """The same doc_id has an independent record, live version and lookup in each tenant."""
        assert await twins.live_versions("acme", {"kafka", "plans"}) == {"kafka": LiveVersion(1, 2)}
        assert await twins.live_versions("globex", {"kafka"}) == {"kafka": LiveVersion(4, 2)}
        hits = await _live_search(twins, model, DOCS["kafka"][1])
        assert {hit.version for hit in hits if hit.doc_id == "kafka"} == {1}

    async def test_deleting_in_one_tenant_leaves_the_other_intact(
        self, twins: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """acme deleting its "kafka" removes acme's chunks and none of globex's."""
        await _apply(twins, model, await _embedded(model, "kafka", 2, []))

        assert await twins.count("acme", "kafka") == 0
        assert await twins.count("globex", "kafka") == 2
        hits = await _search(twins, model, DOCS["kafka"][0], tenant="globex")
        assert "kafka" in {hit.doc_id for hit in hits}

    async def test_unknown_or_invalid_tenants_see_nothing(
        self, twins: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """A tenant that never wrote, or a name Weaviate cannot hold, gets empty answers."""
        for tenant in ("initech", "no such/tenant"):
            assert await _search(twins, model, DOCS["kafka"][0], tenant=tenant) == []
            assert await twins.live_versions(tenant, {"kafka"}) == {}
            assert await twins.document_records(tenant, {"kafka"}) == {}
            assert await twins.count(tenant) == 0


@dataclass
class SlowSwitchIndex:
    """The real index, pausing after the inserts and after the switch, and recording both.

    The pauses hold each transitional state (both versions stored, the old or the new one live)
    open long enough for a concurrent reader to be certain to search during it.
    """

    inner: WeaviateIndex
    pause_s: float
    switched_to: int = 0
    raw_searches: list[list[SearchHit]] = field(default_factory=list)

    async def document_records(
        self, tenant: str, doc_ids: Collection[str]
    ) -> dict[str, DocumentRecord]:
        return await self.inner.document_records(tenant, doc_ids)

    async def live_versions(self, tenant: str, doc_ids: Collection[str]) -> dict[str, LiveVersion]:
        return await self.inner.live_versions(tenant, doc_ids)

    async def write_records(self, records: Sequence[DocumentRecord]) -> None:
        await self.inner.write_records(records)
        self.switched_to = max(record.live_version for record in records)
        await asyncio.sleep(self.pause_s)

    async def insert(self, chunks: Sequence[IndexedChunk]) -> None:
        await self.inner.insert(chunks)
        await asyncio.sleep(self.pause_s)

    async def delete_other_versions(self, tenant: str, keep: Mapping[str, int]) -> int:
        return await self.inner.delete_other_versions(tenant, keep)

    async def search(
        self,
        *,
        tenant: str,
        text: str,
        vector: Sequence[float],
        alpha: float,
        limit: int,
        filters: MetadataFilter | None = None,
    ) -> list[SearchHit]:
        hits = await self.inner.search(
            tenant=tenant, text=text, vector=vector, alpha=alpha, limit=limit, filters=filters
        )
        self.raw_searches.append(hits)
        return hits


@dataclass
class Race:
    """What a reader saw of one document while a writer applied its versions."""

    versions: list[int] = field(default_factory=list)
    mixed: list[set[int]] = field(default_factory=list)
    backwards: list[tuple[int, int]] = field(default_factory=list)
    gaps: int = 0
    searches: int = 0
    raw_versions: list[set[int]] = field(default_factory=list)


async def _race(index: WeaviateIndex, model: AsyncEmbedder, pause_s: float, count: int) -> Race:
    """Apply {A1,B}, then {A2,B}..{An,B} while searching in a loop (at most 400 searches or 10 s).

    Each search records the versions of the document it returned; a version below the last one
    switched to before the search started, or below the previous search's, is a step backwards.
    """
    b = "The release checklist: tag the commit, build the images, publish the notes."
    a_texts = [
        f"Release step {n}: the changelog for version {n} lists what changed in it."
        for n in range(1, count + 1)
    ]
    others = [await _embedded(model, d, 1, texts) for d, texts in DOCS.items()]
    versions = [
        await _embedded(model, "release", n, [a, b]) for n, a in enumerate(a_texts, start=1)
    ]
    await _apply(index, model, *others, versions[0])
    slow = SlowSwitchIndex(index, pause_s=pause_s, switched_to=1)
    writer_deps, reader_deps = _deps(slow, model), _deps(slow, model)
    query = QueryRequested(tenant="acme", text="release checklist", top_k=5, reply_to="gw")
    [vector] = await model.embed([query.text])

    async def write() -> None:
        async with TestKafkaBroker(writer_deps.broker):
            for event in versions[1:]:
                await index_versions(writer_deps, [_pending(event)])

    race = Race()
    writer = asyncio.create_task(write())
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and race.searches < 400:
        done = writer.done()
        floor = slow.switched_to
        hits = (await search_live(reader_deps, query, vector)).hits
        race.searches += 1
        seen = {hit.version for hit in hits if hit.doc_id == "release"}
        if len(seen) > 1:
            race.mixed.append(seen)
        if not seen:
            race.gaps += 1
            continue
        version = max(seen)
        last = race.versions[-1] if race.versions else floor
        if version < max(floor, last):
            race.backwards.append((max(floor, last), version))
        race.versions.append(version)
        if done:
            break
    await writer
    race.raw_versions = [
        {hit.version for hit in hits if hit.doc_id == "release"} for hits in slow.raw_searches
    ]
    return race


class TestNoMixedVersions:
    async def test_readers_see_one_version_never_older_never_none(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """With each transitional state held open, every search sees exactly one version, in order."""
        race = await _race(index, model, pause_s=0.15, count=5)

        assert (race.mixed, race.backwards, race.gaps) == ([], [], 0)
        assert set(race.versions) == {1, 2, 3, 4, 5}
        assert race.versions[-1] == 5
        # Only meaningful if searches ran while two versions were stored, before and after
        # their switches: the pauses make sure of it.
        assert sum(len(versions) > 1 for versions in race.raw_versions) >= 8
        assert await index.count(tenant="acme", doc_id="release") == 2
        assert await index.count(tenant="acme", doc_id="release", version=5) == 2

    async def test_at_full_speed_no_search_mixes_versions_or_goes_back(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """Versions applied back to back under a search loop never mix and never go backwards."""
        race = await _race(index, model, pause_s=0.0, count=30)

        assert (race.mixed, race.backwards) == ([], [])
        assert race.versions[-1] == 30
        assert await index.count(tenant="acme", doc_id="release") == 2


class TestCredentials:
    def test_the_api_key_is_sent_when_set(self) -> None:
        """No key, no credentials (anonymous); a key becomes Weaviate's API-key credentials."""
        assert weaviate_credentials(RetrieverSettings(weaviate_api_key=None)) is None
        credentials = weaviate_credentials(RetrieverSettings(weaviate_api_key="s3cret"))
        assert isinstance(credentials, type(Auth.api_key("other")))
        assert credentials.api_key == "s3cret"

    def test_the_key_stays_out_of_the_settings_repr(self) -> None:
        assert "s3cret" not in repr(RetrieverSettings(weaviate_api_key="s3cret"))

    async def test_a_refused_key_fails_at_once_with_a_clear_error(self) -> None:
        """The local node asks for a key: without it, connect says so instead of waiting."""
        for key in (None, "not-the-key"):
            keyless = WeaviateIndex.from_settings(RetrieverSettings(weaviate_api_key=key))
            started = time.monotonic()
            try:
                with pytest.raises(PermissionError, match="RAGSTREAM_WEAVIATE_API_KEY"):
                    await keyless.connect(wait_seconds=20.0)
            finally:
                await keyless.close()
            assert time.monotonic() - started < 10.0
