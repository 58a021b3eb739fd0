"""The embedder against the real Kafka: real batches in, vectors out, poison dead-lettered alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker

from ragstream_common.admin import ensure_topics
from ragstream_common.events import Chunk, DocumentChunked
from ragstream_common.topics import CHUNKS, EMBEDDINGS, dlq_name
from ragstream_embedder.app import create_app
from ragstream_embedder.settings import EmbedderSettings

pytestmark = pytest.mark.stack

BOOTSTRAP = "127.0.0.1:9092"
# A rebalance of a group that is already running can take a few heartbeats.
WAIT_SECONDS = 60.0


class FakeModel:
    """Embeds a text as [its length]."""

    version = "fake@stack"

    def submit(self, texts: Sequence[str]) -> Future[list[list[float]]]:
        future: Future[list[list[float]]] = Future()
        future.set_result([[float(len(text))] for text in texts])
        return future


async def _tail(producer: AIOKafkaProducer, *topics: str) -> AIOKafkaConsumer:
    """Start a group-less consumer at the current end of every partition of ``topics``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    await consumer.start()
    consumer.assign(
        [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in await producer.partitions_for(topic)
        ]
    )
    await consumer.seek_to_end()
    for partition in consumer.assignment():
        await consumer.position(partition)
    return consumer


async def _wait_for(
    consumer: AIOKafkaConsumer, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Return the first record of each (topic, key) in ``wanted`` seen in time, decoded."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_SECONDS):
            while wanted - found.keys():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        where = (record.topic, (record.key or b"").decode())
                        if where in wanted and where not in found:
                            found[where] = json.loads(record.value)
    return found


def _document(doc_id: str, text: str) -> DocumentChunked:
    return DocumentChunked(
        doc_id=doc_id,
        version=1,
        doc_hash="h",
        chunks=[
            Chunk(chunk_id=f"{doc_id}#0", doc_id=doc_id, position=0, text=text, content_hash="c")
        ],
        published_at=datetime.now(UTC),
    )


class TestEmbedderOnKafka:
    async def test_chunks_come_out_embedded_and_poison_is_dead_lettered(self) -> None:
        """Records on the real `chunks` topic are embedded; a malformed one lands in the DLQ."""
        await ensure_topics(BOOTSTRAP)
        app = create_app(EmbedderSettings(kafka_bootstrap=BOOTSTRAP), model=FakeModel())
        broker = app.broker
        assert isinstance(broker, KafkaBroker)
        doc_id = f"embedder-stack-{uuid.uuid4().hex}"
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        consumer = await _tail(producer, EMBEDDINGS, dlq_name(CHUNKS))
        await broker.start()
        try:
            # One key, so one partition: the two records usually arrive in the same batch.
            await producer.send_and_wait(CHUNKS, b"{not json", key=doc_id.encode())
            document = _document(doc_id, "Hello Kafka.")
            await producer.send_and_wait(
                CHUNKS, document.model_dump_json().encode(), key=doc_id.encode()
            )
            found = await _wait_for(consumer, {(EMBEDDINGS, doc_id), (dlq_name(CHUNKS), doc_id)})
        finally:
            await broker.stop()
            await producer.stop()
            await consumer.stop()

        embedded = found[(EMBEDDINGS, doc_id)]
        assert [chunk["chunk_id"] for chunk in embedded["chunks"]] == [f"{doc_id}#0"]
        assert all(chunk["vector"] for chunk in embedded["chunks"])
        letter = found[(dlq_name(CHUNKS), doc_id)]
        assert (letter["original_topic"], letter["error_type"]) == (CHUNKS, "ValidationError")
