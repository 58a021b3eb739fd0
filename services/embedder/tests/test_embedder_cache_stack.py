"""The embedding cache on the real Redis: the adapter, and two replicas sharing one cache."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.testing import build_message
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from ragstream_common.events import Chunk, ChunksEmbedded, DocumentChunked
from ragstream_common.topics import CHUNKS, EMBEDDINGS
from ragstream_embedder.adapters.cache import RedisEmbeddingCache
from ragstream_embedder.app import create_app
from ragstream_embedder.domain import as_float32, cache_key
from ragstream_embedder.settings import EmbedderSettings

pytestmark = pytest.mark.stack

# Where the stack's Redis listens (ragstream_cli.stack.redis_url(), started by conftest.py).
REDIS_URL = "redis://127.0.0.1:6379/0"


class CountingModel:
    """Embeds a text as [its length, its first character's code]; records every text it gets.

    Each instance has a version of its own, so that a test never reads another run's vectors.
    """

    def __init__(self, version: str) -> None:
        self.version = version
        self.texts: list[str] = []

    def submit(self, texts: Sequence[str]) -> Future[list[list[float]]]:
        self.texts += texts
        future: Future[list[list[float]]] = Future()
        future.set_result([[float(len(text)), float(ord(text[0]))] for text in texts])
        return future


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    """A raw client on the stack's Redis, to look at what the cache wrote."""
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def _document(doc_id: str, texts: Sequence[str], version: int = 1) -> DocumentChunked:
    return DocumentChunked(
        doc_id=doc_id,
        version=version,
        title="Guide",
        doc_hash=f"h{version}",
        chunks=[
            Chunk(
                chunk_id=f"{doc_id}#{position}",
                doc_id=doc_id,
                position=position,
                text=text,
                content_hash=f"c{position}",
            )
            for position, text in enumerate(texts)
        ],
        published_at=datetime.now(UTC),
    )


@dataclasses.dataclass
class Replica:
    """One embedder instance with the cache built from its settings, as in production."""

    app: Any
    broker: KafkaBroker
    embedded: list[ChunksEmbedded]

    async def embed(self, document: DocumentChunked) -> ChunksEmbedded:
        """Run one record through the batch handler, lifespan included, and return its event."""
        record = await build_message(
            document.model_dump_json().encode(),
            topic=CHUNKS,
            key=document.doc_id.encode(),
            serializer=None,
        )
        subscriber = next(
            s for s in self.broker.subscribers if CHUNKS in getattr(s, "topic_names", ())
        )
        async with TestKafkaBroker(self.broker), self.app.lifespan_context():
            await subscriber.process_message((record,))
        return self.embedded[-1]

    async def metric(self, name: str) -> float:
        """The value of ``ragstream_<name>`` on this replica's /metrics."""
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://embedder") as client:
            text = (await client.get("/metrics")).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == f"ragstream_{name}"
        )


def _replica(model: CountingModel) -> Replica:
    # A short TTL: these vectors of a throw-away model version need not outlive the test.
    app = create_app(EmbedderSettings(redis_url=REDIS_URL, embedding_cache_ttl_s=300), model=model)
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    embedded: list[ChunksEmbedded] = []

    @broker.subscriber(EMBEDDINGS, group_id="test-embeddings")
    async def on_embedded(event: ChunksEmbedded) -> None:
        embedded.append(event)

    return Replica(app, broker, embedded)


class TestRedisEmbeddingCache:
    async def test_vectors_round_trip_as_float32_with_a_ttl(self, redis_client: Redis) -> None:
        """Stored vectors come back equal, as 4 bytes a dimension, expiring after the TTL."""
        cache = RedisEmbeddingCache.from_url(REDIS_URL, ttl_s=600, timeout_s=1.0)
        version = f"test@{uuid.uuid4().hex}"
        stored, absent = cache_key(version, "stored"), cache_key(version, "absent")
        vector = as_float32([0.1, -0.2, 0.3])
        try:
            await cache.put_many([(stored, vector)])
            assert await cache.get_many([stored, absent, stored]) == [vector, None, vector]
        finally:
            await cache.aclose()

        assert len(await redis_client.get(stored) or b"") == 12
        assert 0 < await redis_client.ttl(stored) <= 600

    async def test_a_value_that_is_no_vector_is_a_miss(self, redis_client: Redis) -> None:
        """Bytes under a cache key that cannot be a vector are ignored, not returned."""
        key = cache_key(f"test@{uuid.uuid4().hex}", "garbage")
        await redis_client.set(key, b"abc", ex=60)
        cache = RedisEmbeddingCache.from_url(REDIS_URL, ttl_s=60, timeout_s=1.0)
        try:
            assert await cache.get_many([key]) == [None]
        finally:
            await cache.aclose()


class TestReplicasShareTheCache:
    async def test_a_second_replica_embeds_nothing_the_first_did(self) -> None:
        """What one embedder instance embedded, another finds in Redis instead of re-embedding."""
        version = f"fake@{uuid.uuid4().hex}"
        first_model, second_model = CountingModel(version), CountingModel(version)
        first, second = _replica(first_model), _replica(second_model)

        original = await first.embed(_document("doc", ["alpha", "beta"]))
        again = await second.embed(_document("doc", ["alpha", "beta"], version=2))
        updated = await second.embed(_document("doc", ["alpha", "gamma"], version=3))

        assert first_model.texts == ["Guide\nalpha", "Guide\nbeta"]
        assert second_model.texts == ["Guide\ngamma"]
        vectors = [chunk.vector for chunk in again.chunks]
        assert vectors == [chunk.vector for chunk in original.chunks]
        assert updated.chunks[0].vector == original.chunks[0].vector
        assert (again.doc_hash, again.version) == ("h2", 2)
        assert await first.metric("embedded_chunks_total") == 2
        assert await second.metric("embedded_chunks_total") == 1
        assert await second.metric("embedding_cache_hits_total") == 3
        assert await second.metric("embedding_cache_errors_total") == 0
