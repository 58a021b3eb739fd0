"""Consumer lag, as Kafka's admin API reports it, exported as the ``ragstream_consumer_lag`` gauge.

Lag is the autoscaling signal (KEDA scales each service on its groups' lag), so each worker exports
the lag of the groups it owns, computed the way ``kafka-consumer-groups.sh --describe`` does: a
partition's end offset minus the group's committed offset. ``consumer_lag`` is that arithmetic;
``ConsumerLagCollector`` reads the offsets and refreshes the gauge; ``run_lag_refresh`` runs it
periodically beside the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ragstream_common.logging import get_logger
from ragstream_common.metrics import ServiceMetrics

__all__ = [
    "ConsumerLagCollector",
    "PartitionLag",
    "consumer_lag",
    "groups_lag",
    "run_lag_refresh",
]

_log = get_logger(__name__)

# A refresh that cannot reach Kafka gives up this soon, so it never piles up behind the next one.
_REQUEST_TIMEOUT_MS = 5000


@dataclass(frozen=True, order=True)
class PartitionLag:
    """How many records of one partition a consumer group has not committed yet."""

    group: str
    topic: str
    partition: int
    lag: int


def consumer_lag(
    group: str,
    committed: Mapping[TopicPartition, int],
    end_offsets: Mapping[TopicPartition, int],
    beginning_offsets: Mapping[TopicPartition, int],
) -> list[PartitionLag]:
    """Return the lag of ``group`` on every partition of ``end_offsets``, sorted.

    Args:
        group: The consumer group.
        committed: The group's committed offset per partition; partitions it never committed
            are missing (or negative, which is how Kafka answers for them when asked by name).
        end_offsets: The next offset to be written, per partition: the partitions to report.
        beginning_offsets: The first offset still stored, per partition.
    """
    lags = []
    for tp, end in end_offsets.items():
        offset = committed.get(tp, -1)
        if offset < 0:
            # Nothing committed: the group has read nothing of this partition (with our
            # auto_offset_reset="earliest" it will start at the beginning), so all that is
            # stored is unread.
            offset = beginning_offsets.get(tp, 0)
        # The end offsets are read after the commits, so end >= committed; the floor only
        # guards against a topic recreated (truncated) between the two reads.
        lags.append(PartitionLag(group, tp.topic, tp.partition, max(0, end - offset)))
    return sorted(lags)


def groups_lag(
    committed: Mapping[str, Mapping[TopicPartition, int]],
    end_offsets: Mapping[TopicPartition, int],
    beginning_offsets: Mapping[TopicPartition, int],
) -> list[PartitionLag]:
    """Return each group's lag on every partition of every topic it has committed on.

    A group reads every partition of the topics it subscribes to, but Kafka only knows the
    partitions it has committed on; a topic with at least one commit stands for the
    subscription, so its partitions without a commit are reported too (as wholly unread). A
    group that has committed nothing at all is not reported: nothing says what it reads.

    Args:
        committed: Committed offsets per partition, by group.
        end_offsets: End offsets of (at least) every partition of those topics.
        beginning_offsets: Beginning offsets of the same partitions.
    """
    lags = []
    for group, offsets in committed.items():
        topics = {tp.topic for tp in offsets}
        ends = {tp: end for tp, end in end_offsets.items() if tp.topic in topics}
        lags += consumer_lag(group, offsets, ends, beginning_offsets)
    return lags


class ConsumerLagCollector:
    """Reads the lag of some consumer groups from Kafka and sets the service's lag gauge.

    One admin client and one group-less consumer (for the end offsets) are kept between
    refreshes; after a failure they are dropped and the next refresh reconnects.

    Args:
        bootstrap: The Kafka bootstrap servers.
        groups: The consumer groups to report, those the service owns.
        metrics: The service's metrics; ``consumer_lag`` is set, ``lag_refresh_failures`` counted.
    """

    def __init__(self, bootstrap: str, groups: Sequence[str], metrics: ServiceMetrics) -> None:
        self.bootstrap = bootstrap
        self.groups = tuple(groups)
        self.metrics = metrics
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._exported: set[tuple[str, str, str]] = set()

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            await self.close()
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.metrics.service}-lag",
                request_timeout_ms=_REQUEST_TIMEOUT_MS,
            )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.metrics.service}-lag",
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=_REQUEST_TIMEOUT_MS,
            )
            try:
                await admin.start()
                await consumer.start()
            except BaseException:
                await admin.close()
                await consumer.stop()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def read(self) -> list[PartitionLag]:
        """Return the current lag of every partition of every topic the groups have committed to.

        A group's topics are those it has committed at least one offset on; every partition of
        such a topic is reported, the ones without a commit included.
        """
        admin, consumer = await self._clients()
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in self.groups:
            offsets = await admin.list_consumer_group_offsets(group)
            committed[group] = {tp: meta.offset for tp, meta in offsets.items()}
        topics = sorted({tp.topic for offsets in committed.values() for tp in offsets})
        if not topics:
            return []
        partitions = [
            TopicPartition(description["topic"], partition["partition"])
            for description in await admin.describe_topics(topics)
            for partition in description["partitions"]
        ]
        end = await consumer.end_offsets(partitions)
        beginning = await consumer.beginning_offsets(partitions)
        return groups_lag(committed, end, beginning)

    async def refresh(self) -> list[PartitionLag]:
        """Read the lag and set the gauge to it; labels of partitions no longer reported go."""
        lags = await self.read()
        gauge = self.metrics.consumer_lag
        exported = set()
        for lag in lags:
            labels = (lag.group, lag.topic, str(lag.partition))
            gauge.labels(self.metrics.service, *labels).set(lag.lag)
            exported.add(labels)
        for labels in self._exported - exported:
            gauge.remove(self.metrics.service, *labels)
        self._exported = exported
        return lags

    async def refresh_or_log(self) -> None:
        """Refresh; a failure (Kafka unreachable, say) is logged and counted, never raised."""
        try:
            await self.refresh()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.metrics.lag_refresh_failures.labels(self.metrics.service).inc()
            _log.warning(
                "consumer_lag_refresh_failed", error_type=type(error).__name__, error=str(error)
            )
            # The clients may be broken half-way; the next refresh starts from fresh ones.
            await self.close()

    async def close(self) -> None:
        """Close the Kafka clients; the next refresh opens new ones."""
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()


async def run_lag_refresh(collector: ConsumerLagCollector, interval_s: float) -> None:
    """Refresh ``collector`` every ``interval_s`` seconds until cancelled, then close it.

    Args:
        collector: What to refresh.
        interval_s: Seconds to wait after each refresh.
    """
    try:
        while True:
            await collector.refresh_or_log()
            await asyncio.sleep(interval_s)
    finally:
        await collector.close()
