"""Tests for consumer lag: the arithmetic, the failure path, and the gauge against a real Kafka."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete

from ragstream_common.admin import ensure_topics
from ragstream_common.lag import ConsumerLagCollector, PartitionLag, consumer_lag
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.service import worker_app
from ragstream_common.topics import TopicSpec

BOOTSTRAP = "127.0.0.1:9092"


def _tp(partition: int, topic: str = "chunks") -> TopicPartition:
    return TopicPartition(topic, partition)


class TestConsumerLag:
    def test_lag_is_end_offset_minus_committed_offset(self) -> None:
        """A committed partition's lag is its end offset minus the group's committed offset."""
        lags = consumer_lag(
            "embedder", {_tp(0): 7, _tp(1): 10}, {_tp(0): 10, _tp(1): 10}, {_tp(0): 0, _tp(1): 0}
        )

        assert lags == [
            PartitionLag("embedder", "chunks", 0, 3),
            PartitionLag("embedder", "chunks", 1, 0),
        ]

    def test_partition_without_commit_counts_everything_stored_as_unread(self) -> None:
        """With no commit, lag is end minus beginning: retention already removed the rest."""
        lags = consumer_lag("embedder", {}, {_tp(2): 12}, {_tp(2): 5})

        assert lags == [PartitionLag("embedder", "chunks", 2, 7)]

    def test_negative_committed_offset_means_no_commit(self) -> None:
        """Kafka answers -1 for a partition asked by name that the group never committed."""
        lags = consumer_lag("g", {_tp(0): -1}, {_tp(0): 4}, {_tp(0): 1})

        assert lags == [PartitionLag("g", "chunks", 0, 3)]

    def test_lag_never_goes_negative(self) -> None:
        """A commit above the end (a topic recreated between the reads) reads as no lag."""
        assert consumer_lag("g", {_tp(0): 9}, {_tp(0): 4}, {_tp(0): 0})[0].lag == 0

    def test_only_partitions_with_an_end_offset_are_reported(self) -> None:
        """Commits on partitions not asked about (another topic) are not reported."""
        lags = consumer_lag("g", {_tp(0, "other"): 3, _tp(0): 1}, {_tp(0): 2}, {_tp(0): 0})

        assert [(lag.topic, lag.partition) for lag in lags] == [("chunks", 0)]


class TestCollectorFailures:
    async def test_unreachable_kafka_is_counted_not_raised(self) -> None:
        """A refresh that cannot reach Kafka logs, counts a failure and leaves the gauge alone."""
        metrics = ServiceMetrics("test-service")
        # Nothing listens on port 1: the connection is refused at once.
        collector = ConsumerLagCollector("127.0.0.1:1", ["g"], metrics)

        await collector.refresh_or_log()
        await collector.refresh_or_log()

        failures = metrics.registry.get_sample_value(
            "ragstream_consumer_lag_refresh_failures_total", {"service": "test-service"}
        )
        assert failures == 2


class TestWorkerApp:
    def test_lag_groups_without_settings_fail_at_build(self) -> None:
        """Exporting lag needs to know where Kafka is: asking without settings fails at once."""
        from ragstream_common.messaging import create_broker
        from ragstream_common.settings import ServiceSettings

        metrics = ServiceMetrics("test-service")
        broker = create_broker(ServiceSettings(service_name="test-service"), metrics)

        with pytest.raises(ValueError, match="lag_groups"):
            worker_app(broker, metrics, lag_groups=["g"])


@pytest.mark.stack
class TestCollectorOnKafka:
    async def test_gauge_equals_what_the_admin_api_reports(self) -> None:
        """After one refresh the gauge holds end minus committed per partition, as Kafka says.

        Partition 0 is committed part-way, partition 1 fully, partition 2 never (and has its
        first record deleted, so its unread records are end minus beginning, not the end).
        """
        topic = f"lag-test-{uuid.uuid4().hex}"
        group = f"lag-test-{uuid.uuid4().hex}"
        await ensure_topics(BOOTSTRAP, [TopicSpec(topic, partitions=3)])
        produced = {0: 5, 1: 4, 2: 3}
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
        await producer.start()
        try:
            for partition, count in produced.items():
                for n in range(count):
                    await producer.send_and_wait(topic, f"{n}".encode(), partition=partition)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([_tp(0, topic), _tp(1, topic)])
            await consumer.seek_to_beginning()
            read: dict[int, int] = {0: 0, 1: 0}
            while read[0] < 2 or read[1] < 4:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, records in batches.items():
                    read[tp.partition] += len(records)
            await consumer.commit({_tp(0, topic): 2, _tp(1, topic): 4})
        finally:
            await consumer.stop()

        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        reader = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
        await reader.start()
        try:
            await admin.delete_records({_tp(2, topic): RecordsToDelete(before_offset=1)})
            partitions = [_tp(p, topic) for p in produced]
            committed = {
                tp: meta.offset
                for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
            }
            end = await reader.end_offsets(partitions)
            beginning = await reader.beginning_offsets(partitions)
        finally:
            await reader.stop()
            await admin.close()
        expected = {
            tp.partition: end[tp] - committed[tp] if tp in committed else end[tp] - beginning[tp]
            for tp in partitions
        }
        # The set-up itself, so that a gauge agreeing with a wrong expectation cannot pass.
        assert expected == {0: 3, 1: 0, 2: 2}

        metrics = ServiceMetrics("test-service")
        collector = ConsumerLagCollector(BOOTSTRAP, [group], metrics)
        try:
            await collector.refresh()
        finally:
            await collector.close()

        gauge = {
            partition: metrics.registry.get_sample_value(
                "ragstream_consumer_lag",
                {
                    "service": "test-service",
                    "group": group,
                    "topic": topic,
                    "partition": str(partition),
                },
            )
            for partition in produced
        }
        assert gauge == expected
