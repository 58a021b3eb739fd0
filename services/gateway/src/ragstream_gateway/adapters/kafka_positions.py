"""Where the gateway's group-less consumers stand in their topics.

The gateway reads ``answers`` and ``document-status`` without a consumer group, so that every
replica sees every partition. Such a consumer has no committed offsets: its position is whatever
``auto_offset_reset`` resolves to, lazily, on its first fetch. These helpers make that moment
explicit, so the app can wait for it before it calls itself ready.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ragstream_common.logging import get_logger

__all__ = ["StatusCatchUp", "fix_positions"]

_log = get_logger(__name__)

# How often to look again while the consumer waits for its metadata and assignment.
_POLL_SECONDS = 0.05


async def _assigned_partitions(consumer: Any, topic: str) -> list[Any]:
    """Wait until ``consumer`` is assigned every partition of ``topic``; return them."""
    while True:
        partition_ids = consumer.partitions_for_topic(topic)
        assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
        if partition_ids and len(assigned) == len(partition_ids):
            return sorted(assigned, key=lambda tp: tp.partition)
        await asyncio.sleep(_POLL_SECONDS)


async def fix_positions(consumer: Any | None, topic: str, *, max_wait_s: float) -> dict[int, int]:
    """Wait until ``consumer`` owns every partition of ``topic`` with a resolved position.

    ``position()`` blocks until the offset reset (to the end, for ``auto_offset_reset="latest"``)
    has happened; from then on every record appended to the topic is delivered. Before it, a
    record could land below the position still being looked up and be skipped.

    Args:
        consumer: The subscriber's aiokafka consumer; None under FastStream's in-memory test
            broker, which delivers synchronously and has no positions to fix.
        topic: The topic to wait for.
        max_wait_s: Seconds before giving up.

    Returns:
        The position of each partition, by partition number.

    Raises:
        TimeoutError: The topic is missing or its partitions were not assigned in time.
    """
    if consumer is None:
        return {}
    try:
        async with asyncio.timeout(max_wait_s):
            partitions = await _assigned_partitions(consumer, topic)
            positions = {tp.partition: await consumer.position(tp) for tp in partitions}
    except TimeoutError as error:
        raise TimeoutError(
            f"no position on every partition of {topic!r} within {max_wait_s}s: does the topic "
            "exist (ragstream_common.admin.ensure_topics) and is Kafka reachable?"
        ) from error
    _log.info("consumer_positions_fixed", topic=topic, positions=positions)
    return positions


class StatusCatchUp:
    """Whether the status consumer has read its topic up to where the topic ended at startup.

    Until it has, an unknown document may merely be one not read yet, so the API answers 503
    rather than a 404 that could be wrong.
    """

    def __init__(self) -> None:
        self._consumer: Any | None = None
        self._targets: dict[Any, int] = {}
        self._reached = False

    async def start(self, consumer: Any | None, topic: str, *, max_wait_s: float) -> None:
        """Record the end offset of each partition of ``topic`` as the target to reach.

        Args:
            consumer: The status feed's aiokafka consumer (None when no Kafka is read, in tests).
            topic: The status topic.
            max_wait_s: Seconds to wait for the assignment and the end offsets.
        """
        if consumer is None:
            self._reached = True
            return
        async with asyncio.timeout(max_wait_s):
            partitions = await _assigned_partitions(consumer, topic)
            self._targets = dict(await consumer.end_offsets(partitions))
        self._consumer = consumer
        _log.info(
            "status_catch_up_target",
            topic=topic,
            targets={tp.partition: offset for tp, offset in self._targets.items()},
        )

    async def reached(self) -> bool:
        """Return True once every partition's position has reached its startup end offset."""
        if self._reached:
            return True
        if self._consumer is None:
            return False
        for tp, target in self._targets.items():
            # A position that is not resolved yet makes position() wait; a status lookup must
            # not, so an unresolved partition simply counts as not caught up.
            try:
                position = await asyncio.wait_for(self._consumer.position(tp), timeout=0.05)
            except TimeoutError:
                return False
            if position < target:
                return False
        self._reached = True
        return True
