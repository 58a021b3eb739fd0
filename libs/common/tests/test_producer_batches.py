"""The producer's batch size: large records share a produce request, on a real Kafka."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ragstream_common.admin import ensure_topics
from ragstream_common.events import DocumentUpserted
from ragstream_common.messaging import create_broker, publish_event_unconfirmed
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.settings import ServiceSettings
from ragstream_common.topics import TopicSpec, all_topic_specs

BOOTSTRAP = "127.0.0.1:9092"
# Kafka's default message.max.bytes, the limit of every topic that does not set its own.
_BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
# About one document's embeddings as the embedder publishes them.
_RECORD_BYTES = 27_000
_RECORDS = 8


def test_a_full_batch_fits_every_topic() -> None:
    """Kafka takes a batch as one message: the default must fit the lowest topic limit."""
    limits = [
        int(spec.config.get("max.message.bytes", _BROKER_DEFAULT_MAX_MESSAGE_BYTES))
        for spec in all_topic_specs()
    ]

    assert ServiceSettings().kafka_max_batch_bytes <= min(limits) - 1024


async def _acknowledged_while_queueing(max_batch_bytes: int) -> tuple[int, list[int]]:
    """Queue large records for one partition; return how many were acknowledged by the time the
    last was queued, and the offsets they got."""
    topic = f"batch-test-{uuid.uuid4().hex}"
    await ensure_topics(BOOTSTRAP, [TopicSpec(topic, partitions=1)])
    # A long linger: nothing is sent for its own sake while the records are queued, so any
    # acknowledgement seen by then came from a batch that filled up.
    settings = ServiceSettings(
        service_name="batch-test",
        kafka_bootstrap=BOOTSTRAP,
        kafka_linger_ms=500,
        kafka_max_batch_bytes=max_batch_bytes,
    )
    broker = create_broker(settings, ServiceMetrics("batch-test"))
    await broker.connect()
    try:
        event = DocumentUpserted(doc_id="d", content="x" * _RECORD_BYTES)
        queued = []
        for _ in range(_RECORDS):
            future = await publish_event_unconfirmed(broker, event, topic=topic, key="d")
            assert future is not None
            queued.append(future)
        acknowledged = sum(future.done() for future in queued)
        stored = await asyncio.gather(*queued)
    finally:
        await broker.stop()
    return acknowledged, [metadata.offset for metadata in stored]


@pytest.mark.stack
class TestLargeRecords:
    async def test_large_records_wait_in_one_batch(self) -> None:
        """Eight 27 KB records for one partition are queued before any of them is sent."""
        acknowledged, offsets = await _acknowledged_while_queueing(
            ServiceSettings().kafka_max_batch_bytes
        )

        assert acknowledged == 0
        assert offsets == list(range(_RECORDS))

    async def test_with_aiokafkas_default_each_record_waits_for_the_one_before(self) -> None:
        """Why the setting exists: with 16 KiB batches a 27 KB record fills a batch alone, and
        queueing the next one waits until the partition's batch in flight is acknowledged."""
        acknowledged, offsets = await _acknowledged_while_queueing(16 * 1024)

        assert acknowledged >= _RECORDS - 2
        assert offsets == list(range(_RECORDS))
