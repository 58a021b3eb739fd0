"""Tests for the retriever's subscribers, on FastStream's in-memory broker with fake ports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from ragstream_common import messaging
from ragstream_common.events import (
    ChunksEmbedded,
    ContextRetrieved,
    DeadLetter,
    DocumentStatus,
    EmbeddedChunk,
    QueryRequested,
    utc_now,
)
from ragstream_common.messaging import create_broker, publish_event
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import CONTEXTS, DOCUMENT_STATUS, EMBEDDINGS, QUERIES, dlq_name
from ragstream_retriever.app import create_app
from ragstream_retriever.dependencies import Dependencies
from ragstream_retriever.domain import IndexedChunk, SearchHit
from ragstream_retriever.handlers import build_router
from ragstream_retriever.settings import RetrieverSettings

DIMS = 4


@dataclass
class FakeIndex:
    """An in-memory ChunkIndex with Weaviate's semantics: upsert by id, delete by version."""

    objects: dict[Any, IndexedChunk] = field(default_factory=dict)
    versions: dict[tuple[str, str], int] = field(default_factory=dict)
    hits: list[SearchHit] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    upserts: int = 0
    fail_upsert: bool = False

    async def indexed_version(self, tenant: str, doc_id: str) -> int | None:
        found = [
            c.version for c in self.objects.values() if (c.tenant, c.doc_id) == (tenant, doc_id)
        ]
        if (tenant, doc_id) in self.versions:
            found.append(self.versions[tenant, doc_id])
        return max(found, default=None)

    async def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        if self.fail_upsert:
            raise ConnectionError("weaviate is restarting")
        self.upserts += 1
        self.objects.update({chunk.object_id: chunk for chunk in chunks})

    async def delete_versions_below(self, tenant: str, doc_id: str, version: int) -> int:
        doomed = [
            key
            for key, c in self.objects.items()
            if (c.tenant, c.doc_id) == (tenant, doc_id) and c.version < version
        ]
        for key in doomed:
            del self.objects[key]
        return len(doomed)

    async def record_version(
        self, tenant: str, doc_id: str, version: int, chunk_count: int
    ) -> None:
        self.versions[tenant, doc_id] = version

    async def search(
        self, *, tenant: str, text: str, vector: Sequence[float], alpha: float, limit: int
    ) -> list[SearchHit]:
        self.searches.append(
            {"tenant": tenant, "text": text, "vector": list(vector), "alpha": alpha, "limit": limit}
        )
        return self.hits[:limit]

    def chunk_ids(self, doc_id: str = "doc-1") -> list[str]:
        return sorted(c.chunk_id for c in self.objects.values() if c.doc_id == doc_id)


class FakeModel:
    """A query model returning a fixed vector for every text it is asked to embed."""

    dimensions = DIMS

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[0.5] * DIMS for _ in texts]


@dataclass
class Harness:
    """A broker with the retriever's router, fake ports, and collectors on its output topics."""

    broker: KafkaBroker
    deps: Dependencies
    index: FakeIndex
    model: FakeModel
    statuses: list[DocumentStatus] = field(default_factory=list)
    contexts: list[tuple[ContextRetrieved, bytes | None]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)

    def sample(self, name: str, **labels: str) -> float:
        value = self.deps.metrics.registry.get_sample_value(
            name, {"service": "retriever", **labels}
        )
        return value or 0.0


def _settings(**overrides: Any) -> RetrieverSettings:
    return RetrieverSettings(embedding_dimensions=DIMS, **overrides)


def _harness(**overrides: Any) -> Harness:
    settings = _settings(**overrides)
    metrics = ServiceMetrics(settings.service_name)
    broker = create_broker(settings, metrics)
    index, model = FakeIndex(), FakeModel()
    deps = Dependencies(settings, metrics, broker, index_port=index, model_port=model)
    broker.include_router(build_router(deps))
    harness = Harness(broker, deps, index, model)

    @broker.subscriber(DOCUMENT_STATUS)
    async def collect_status(status: DocumentStatus) -> None:
        harness.statuses.append(status)

    @broker.subscriber(CONTEXTS)
    async def collect_context(context: ContextRetrieved, message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple)  # a single record, not a batch
        harness.contexts.append((context, record.key))

    @broker.subscriber(dlq_name(EMBEDDINGS))
    async def collect_letter(letter: DeadLetter) -> None:
        harness.letters.append(letter)

    return harness


def _version(version: int, *chunk_ids: str, dims: int = DIMS, age_s: float = 2.0) -> ChunksEmbedded:
    return ChunksEmbedded(
        doc_id="doc-1",
        tenant="acme",
        version=version,
        title="Guide",
        model="all-MiniLM-L6-v2",
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_id,
                doc_id="doc-1",
                position=position,
                text=f"text {chunk_id}",
                content_hash=f"h-{chunk_id}",
                vector=[0.1] * dims,
            )
            for position, chunk_id in enumerate(chunk_ids)
        ],
        published_at=utc_now() - timedelta(seconds=age_s),
    )


def _hit(doc_id: str, chunk_id: str, score: float) -> SearchHit:
    return SearchHit(chunk_id, doc_id, f"title {doc_id}", f"text {chunk_id}", 0, (), score)


async def _send(broker: KafkaBroker, *events: ChunksEmbedded) -> None:
    for event in events:
        await publish_event(broker, event, topic=EMBEDDINGS, key=event.doc_id)


class TestIndexRole:
    async def test_version_is_upserted_and_reported_indexed(self) -> None:
        """A new document's chunks are stored and a DocumentStatus(indexed) is published."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", "c2"))

        assert h.index.chunk_ids() == ["c1", "c2"]
        assert h.index.versions == {("acme", "doc-1"): 1}
        [status] = h.statuses
        assert (status.stage, status.version, status.chunk_count) == ("indexed", 1, 2)
        assert h.sample("ragstream_chunks_upserted_total") == 2

    async def test_freshness_is_observed_from_publication(self) -> None:
        """The freshness histogram records about now minus published_at for the version."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", age_s=3.0))

        count = h.sample("ragstream_document_freshness_seconds_count", stage="indexed")
        total = h.sample("ragstream_document_freshness_seconds_sum", stage="indexed")
        assert count == 1
        assert 3.0 <= total < 10.0

    async def test_redelivery_is_idempotent(self) -> None:
        """The same version delivered twice leaves the same objects and is reported again."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", "c2"), _version(1, "c1", "c2"))

        assert h.index.chunk_ids() == ["c1", "c2"]
        assert len(h.index.objects) == 2
        assert [status.version for status in h.statuses] == [1, 1]

    async def test_newer_version_retires_chunks_it_no_longer_has(self) -> None:
        """Chunks present only in the older version disappear once the newer one is applied."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", "c2", "c3"), _version(2, "c1", "c4"))

        assert h.index.chunk_ids() == ["c1", "c4"]
        assert {chunk.version for chunk in h.index.objects.values()} == {2}
        assert h.sample("ragstream_chunks_retired_total") == 2

    async def test_older_version_after_newer_is_skipped(self) -> None:
        """A stale version is acknowledged without touching the index or the status topic."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(2, "c1", "c4"), _version(1, "c1", "c2", "c3"))

        assert h.index.chunk_ids() == ["c1", "c4"]
        assert h.index.upserts == 1
        assert [status.version for status in h.statuses] == [2]
        assert h.sample("ragstream_stale_versions_skipped_total") == 1

    async def test_empty_version_deletes_everything_and_reports_deleted(self) -> None:
        """A version without chunks removes all of the document's chunks."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", "c2"), _version(2))

        assert h.index.chunk_ids() == []
        assert h.statuses[-1].stage == "deleted"
        assert h.statuses[-1].chunk_count == 0

    async def test_deleted_document_is_not_resurrected_by_an_older_version(self) -> None:
        """After a deletion, a late older version is still recognised as stale."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1"), _version(2), _version(1, "c1"))

        assert h.index.chunk_ids() == []
        assert h.sample("ragstream_stale_versions_skipped_total") == 1

    async def test_vectors_of_the_wrong_size_are_dead_lettered(self) -> None:
        """A message whose vectors do not fit the index goes to embeddings.dlq, not the index."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", dims=DIMS + 1))

        assert h.index.objects == {}
        assert h.statuses == []
        [letter] = h.letters
        assert letter.error_type == "PoisonMessageError"
        assert letter.key == "doc-1"

    async def test_index_failure_is_not_acknowledged(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A transient index error propagates (for redelivery) and publishes no status."""
        monkeypatch.setattr(messaging, "REDELIVERY_BACKOFF_SECONDS", 0.0)
        h = _harness()
        h.index.fail_upsert = True
        async with TestKafkaBroker(h.broker) as broker:
            with pytest.raises(ConnectionError):
                await _send(broker, _version(1, "c1"))

        assert h.statuses == []
        assert h.index.versions == {}
        assert h.letters == []


class TestSearchRole:
    async def test_context_is_published_keyed_by_query_id(self) -> None:
        """A query yields a ContextRetrieved on contexts, keyed by its query id, with timings."""
        h = _harness()
        h.index.hits = [_hit("a", "a1", 0.9), _hit("b", "b1", 0.8)]
        query = QueryRequested(query_id="q-1", tenant="acme", text="setup?", top_k=2, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, key)] = h.contexts
        assert key == b"q-1"
        assert context.query == query
        assert [chunk.chunk_id for chunk in context.chunks] == ["a1", "b1"]
        assert set(context.timings) == {"embed_query_ms", "search_ms", "retrieve_ms"}
        assert context.timings["retrieve_ms"] >= context.timings["search_ms"]

    async def test_search_is_filtered_by_tenant_with_the_configured_alpha(self) -> None:
        """The index is asked for the query's tenant, text, vector, alpha and an overfetch."""
        h = _harness(default_alpha=0.3, search_overfetch=4)
        query = QueryRequested(tenant="acme", text="setup?", top_k=5, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        assert h.index.searches == [
            {"tenant": "acme", "text": "setup?", "vector": [0.5] * DIMS, "alpha": 0.3, "limit": 20}
        ]

    async def test_the_query_text_is_what_gets_embedded(self) -> None:
        """The model is asked for exactly one vector: the query's text."""
        h = _harness()
        query = QueryRequested(text="setup?", reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        assert h.model.calls == [["setup?"]]

    async def test_one_document_cannot_fill_the_context(self) -> None:
        """At most max_chunks_per_doc chunks of one document reach the context."""
        h = _harness(max_chunks_per_doc=2)
        crowd = [_hit("a", f"a{i}", 0.9 - i / 100) for i in range(4)]
        h.index.hits = [*crowd, _hit("b", "b1", 0.1)]
        query = QueryRequested(text="setup?", top_k=3, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert [chunk.chunk_id for chunk in context.chunks] == ["a0", "a1", "b1"]

    async def test_empty_result_is_still_published(self) -> None:
        """With nothing found, an empty context still goes out so the generator can answer."""
        h = _harness()
        query = QueryRequested(text="unknown topic", reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert context.chunks == []
        assert h.sample("ragstream_retrieved_chunks_count") == 1


class TestRoles:
    async def test_index_only_deployment_does_not_consume_queries(self) -> None:
        """With the search role off, queries are left for other replicas and no model is used."""
        h = _harness(search_role=False)
        query = QueryRequested(text="setup?", reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)
            await _send(broker, _version(1, "c1"))

        assert h.contexts == []
        assert h.model.calls == []
        assert h.index.chunk_ids() == ["c1"]


class TestCreateApp:
    async def test_injected_ports_serve_a_query_end_to_end(self) -> None:
        """create_app wires the router to the injected index and model without any I/O."""
        index, model = FakeIndex(hits=[_hit("a", "a1", 0.9)]), FakeModel()
        app = create_app(_settings(), index=index, model=model)
        contexts: list[ContextRetrieved] = []
        [broker] = app.brokers
        assert isinstance(broker, KafkaBroker)

        @broker.subscriber(CONTEXTS)
        async def collect(context: ContextRetrieved) -> None:
            contexts.append(context)

        query = QueryRequested(text="setup?", reply_to="gw")
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, query, topic=QUERIES, key=query.query_id)

        assert [chunk.chunk_id for context in contexts for chunk in context.chunks] == ["a1"]
        assert len(model.calls) == 1
