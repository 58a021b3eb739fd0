"""Tests of the index and search roles against a real Weaviate (127.0.0.1:8080, gRPC 50051).

Each run works in collections of its own name and deletes them afterwards. Vectors come from the
real all-MiniLM-L6-v2, so the search test checks the same path queries take in production.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest
from faststream.kafka import TestKafkaBroker

from ragstream_common.events import (
    ChunksEmbedded,
    ContextRetrieved,
    DocumentStatus,
    EmbeddedChunk,
    QueryRequested,
    utc_now,
)
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import CONTEXTS, DOCUMENT_STATUS
from ragstream_retriever.adapters.embedding_model import AsyncEmbedder, load_query_model
from ragstream_retriever.adapters.weaviate_index import WeaviateIndex
from ragstream_retriever.dependencies import Dependencies
from ragstream_retriever.handlers import index_document, search_query
from ragstream_retriever.settings import RetrieverSettings

pytestmark = pytest.mark.stack

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


async def _embedded(
    model: AsyncEmbedder, doc_id: str, version: int, texts: Sequence[str], tenant: str = "acme"
) -> ChunksEmbedded:
    vectors = await model.embed(texts)
    return ChunksEmbedded(
        doc_id=doc_id,
        tenant=tenant,
        version=version,
        title=doc_id.title(),
        source=f"test://{doc_id}",
        model="all-MiniLM-L6-v2",
        chunks=[
            EmbeddedChunk(
                chunk_id=f"{doc_id}-{position}",
                doc_id=doc_id,
                position=position,
                text=text,
                heading_path=[doc_id.title()],
                content_hash=hashlib.sha256(text.encode()).hexdigest(),
                vector=vector,
            )
            for position, (text, vector) in enumerate(zip(texts, vectors, strict=True))
        ],
        published_at=utc_now() - timedelta(seconds=1),
    )


async def _apply(
    index: WeaviateIndex, model: AsyncEmbedder, *events: ChunksEmbedded
) -> tuple[list[DocumentStatus], ServiceMetrics]:
    """Run events through the index handler with the real index and an in-memory broker."""
    settings = RetrieverSettings(embedding_dimensions=384)
    metrics = ServiceMetrics("retriever")
    broker = create_broker(settings, metrics)
    deps = Dependencies(settings, metrics, broker, index_port=index, model_port=model)
    statuses: list[DocumentStatus] = []

    @broker.subscriber(DOCUMENT_STATUS)
    async def collect(status: DocumentStatus) -> None:
        statuses.append(status)

    async with TestKafkaBroker(broker):
        for event in events:
            await index_document(deps, event)
    return statuses, metrics


class TestWeaviateIndex:
    async def test_upserting_a_version_twice_keeps_one_object_per_chunk(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """Deterministic ids make a redelivered version overwrite, not duplicate."""
        event = await _embedded(model, "kafka", 1, DOCS["kafka"])
        statuses, _ = await _apply(index, model, event, event)

        assert await index.count() == 2
        assert await index.indexed_version("acme", "kafka") == 1
        assert [(s.stage, s.version, s.chunk_count) for s in statuses] == [("indexed", 1, 2)] * 2

    async def test_newer_version_retires_chunks_of_the_older(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """After version 2 with one chunk, version 1's second chunk is gone."""
        await _apply(
            index,
            model,
            await _embedded(model, "kafka", 1, DOCS["kafka"]),
            await _embedded(model, "kafka", 2, DOCS["kafka"][:1]),
        )

        assert await index.count(tenant="acme", doc_id="kafka") == 1
        assert await index.indexed_version("acme", "kafka") == 2

    async def test_older_version_after_newer_is_skipped(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """A late version 1 neither restores its chunks nor publishes a status."""
        statuses, metrics = await _apply(
            index,
            model,
            await _embedded(model, "kafka", 2, DOCS["kafka"][:1]),
            await _embedded(model, "kafka", 1, DOCS["kafka"]),
        )

        assert await index.count(tenant="acme", doc_id="kafka") == 1
        assert [s.version for s in statuses] == [2]
        skipped = metrics.registry.get_sample_value(
            "ragstream_stale_versions_skipped_total", {"service": "retriever"}
        )
        assert skipped == 1

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
        assert await index.indexed_version("acme", "kafka") == 2
        assert [s.stage for s in statuses] == ["indexed", "indexed", "deleted"]

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

        assert hits[0].chunk_id == "kafka-1"
        assert hits[0].score >= hits[-1].score
        assert {hit.doc_id for hit in hits} <= {"kafka", "weaviate", "baking"}
        assert hits[0].heading_path == ("Kafka",)
        assert hits[0].title == "Kafka"

    async def test_search_handler_publishes_a_context_from_weaviate(
        self, index: WeaviateIndex, model: AsyncEmbedder
    ) -> None:
        """A query through the search handler yields a context led by the right chunk."""
        await _apply(
            index, model, *[await _embedded(model, d, 1, texts) for d, texts in DOCS.items()]
        )
        settings = RetrieverSettings(embedding_dimensions=384)
        metrics = ServiceMetrics("retriever")
        broker = create_broker(settings, metrics)
        deps = Dependencies(settings, metrics, broker, index_port=index, model_port=model)
        contexts: list[ContextRetrieved] = []

        @broker.subscriber(CONTEXTS)
        async def collect(context: ContextRetrieved) -> None:
            contexts.append(context)

        query = QueryRequested(
            tenant="acme", text="what does bread dough need?", top_k=2, reply_to="gw"
        )
        async with TestKafkaBroker(broker):
            await search_query(deps, query)

        [context] = contexts
        assert [chunk.chunk_id for chunk in context.chunks][:1] == ["baking-0"]
        assert len(context.chunks) == 2
        assert context.timings["search_ms"] > 0
