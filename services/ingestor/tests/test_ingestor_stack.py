"""The ingestor against the real Kafka: a document published to `documents` comes out chunked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker

from ragstream_common.admin import ensure_topics
from ragstream_common.events import DocumentUpserted
from ragstream_common.topics import CHUNKS, DOCUMENT_STATUS, DOCUMENTS
from ragstream_ingestor.app import create_app
from ragstream_ingestor.settings import IngestorSettings

pytestmark = pytest.mark.stack

BOOTSTRAP = "127.0.0.1:9092"
# A rebalance of a group that is already running can take a few heartbeats.
WAIT_SECONDS = 60.0


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
    consumer: AIOKafkaConsumer, wanted: set[str], key: str
) -> dict[str, dict[str, Any]]:
    """Return the first record keyed ``key`` on each topic of ``wanted`` seen in time, decoded."""
    found: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_SECONDS):
            while wanted - found.keys():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        if record.key == key.encode() and record.topic not in found:
                            found[record.topic] = json.loads(record.value)
    return found


async def _wait_for_versions(
    consumer: AIOKafkaConsumer, key: str, versions: set[int]
) -> dict[int, dict[str, Any]]:
    """Return the ``chunks`` records keyed ``key`` carrying each of ``versions``, decoded."""
    found: dict[int, dict[str, Any]] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT_SECONDS):
            while versions - found.keys():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        if record.key == key.encode() and record.topic == CHUNKS:
                            event = json.loads(record.value)
                            found.setdefault(event["version"], event)
    return found


class TestIngestorOnKafka:
    async def test_published_document_comes_out_chunked(self) -> None:
        """A Markdown document on the real `documents` topic is chunked onto `chunks`."""
        await ensure_topics(BOOTSTRAP)
        app = create_app(IngestorSettings(kafka_bootstrap=BOOTSTRAP))
        broker = app.broker
        assert isinstance(broker, KafkaBroker)
        doc_id = f"ingestor-stack-{uuid.uuid4().hex}"
        upsert = DocumentUpserted(
            doc_id=doc_id, title="T", content="# A\n\nHello Kafka.", content_type="text/markdown"
        )
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        consumer = await _tail(producer, CHUNKS, DOCUMENT_STATUS)
        await broker.start()
        try:
            metadata = await producer.send_and_wait(
                DOCUMENTS, upsert.model_dump_json().encode(), key=doc_id.encode()
            )
            found = await _wait_for(consumer, {CHUNKS, DOCUMENT_STATUS}, doc_id)
        finally:
            await broker.stop()
            await producer.stop()
            await consumer.stop()

        chunked = found[CHUNKS]
        assert chunked["version"] == metadata.offset + 1
        assert [(c["heading_path"], c["text"]) for c in chunked["chunks"]] == [
            (["A"], "Hello Kafka.")
        ]
        assert found[DOCUMENT_STATUS]["stage"] == "chunked"

    async def test_a_tombstone_retires_the_document(self) -> None:
        """A null record on the real `documents` topic becomes a newer version without chunks."""
        await ensure_topics(BOOTSTRAP)
        app = create_app(IngestorSettings(kafka_bootstrap=BOOTSTRAP))
        broker = app.broker
        assert isinstance(broker, KafkaBroker)
        doc_id = f"ingestor-stack-{uuid.uuid4().hex}"
        upsert = DocumentUpserted(
            doc_id=doc_id, content="# A\n\nSoon gone.", content_type="text/markdown"
        )
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        consumer = await _tail(producer, CHUNKS)
        await broker.start()
        try:
            upserted = await producer.send_and_wait(
                DOCUMENTS, upsert.model_dump_json().encode(), key=doc_id.encode()
            )
            deleted = await producer.send_and_wait(DOCUMENTS, None, key=doc_id.encode())
            wanted = {upserted.offset + 1, deleted.offset + 1}
            found = await _wait_for_versions(consumer, doc_id, wanted)
        finally:
            await broker.stop()
            await producer.stop()
            await consumer.stop()

        assert found.keys() == wanted
        assert len(found[upserted.offset + 1]["chunks"]) == 1
        assert found[deleted.offset + 1]["chunks"] == []
        assert found[deleted.offset + 1]["tenant"] == "default"
