"""Tests for pinning the positions of the gateway's group-less consumers, with a fake consumer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from ragstream_gateway.adapters.kafka_positions import StatusCatchUp, fix_positions


@dataclass(frozen=True)
class TP:
    """A topic partition, as aiokafka names one."""

    topic: str
    partition: int


@dataclass
class FakeConsumer:
    """Just enough of AIOKafkaConsumer: metadata, assignment, positions and end offsets."""

    partitions: set[int] | None = None
    assigned: set[TP] = field(default_factory=set)
    positions: dict[TP, int] = field(default_factory=dict)
    ends: dict[TP, int] = field(default_factory=dict)
    position_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    async def position(self, tp: TP) -> int:
        await self.position_ready.wait()
        return self.positions[tp]

    async def end_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in partitions}


def _assign(consumer: FakeConsumer, topic: str, count: int, position: int = 0) -> None:
    consumer.partitions = set(range(count))
    consumer.assigned = {TP(topic, p) for p in range(count)}
    consumer.positions = {tp: position for tp in consumer.assigned}


class TestFixPositions:
    async def test_waits_for_full_assignment_and_resolved_positions(self) -> None:
        """Positions are returned only once every partition is assigned and positioned."""
        consumer = FakeConsumer()

        async def assign_later() -> None:
            await asyncio.sleep(0.1)
            _assign(consumer, "answers", 3, position=7)
            await asyncio.sleep(0.05)
            consumer.position_ready.set()

        task = asyncio.create_task(assign_later())
        positions = await fix_positions(consumer, "answers", max_wait_s=2.0)
        await task
        assert positions == {0: 7, 1: 7, 2: 7}

    async def test_partial_assignment_is_not_enough(self) -> None:
        """Two of three partitions assigned is still waiting, and times out with a reason."""
        consumer = FakeConsumer(partitions={0, 1, 2}, assigned={TP("answers", 0), TP("answers", 1)})
        consumer.position_ready.set()
        with pytest.raises(TimeoutError, match="does the topic exist"):
            await fix_positions(consumer, "answers", max_wait_s=0.2)

    async def test_missing_topic_times_out(self) -> None:
        """A topic absent from the metadata fails startup instead of hanging."""
        with pytest.raises(TimeoutError, match="'answers'"):
            await fix_positions(FakeConsumer(), "answers", max_wait_s=0.1)

    async def test_in_memory_broker_needs_nothing(self) -> None:
        """Without a real consumer (the test broker) there is nothing to wait for."""
        assert await fix_positions(None, "answers", max_wait_s=0.1) == {}


class TestStatusCatchUp:
    async def test_reached_once_positions_meet_startup_end_offsets(self) -> None:
        """Not caught up while behind the startup end offsets, caught up (for good) after."""
        consumer = FakeConsumer()
        _assign(consumer, "document-status", 2)
        consumer.ends = {TP("document-status", 0): 5, TP("document-status", 1): 0}
        consumer.position_ready.set()
        catch_up = StatusCatchUp()
        await catch_up.start(consumer, "document-status", max_wait_s=1.0)
        assert await catch_up.reached() is False
        consumer.positions[TP("document-status", 0)] = 5
        assert await catch_up.reached() is True
        consumer.positions[TP("document-status", 0)] = 0  # never flips back
        assert await catch_up.reached() is True

    async def test_unresolved_position_counts_as_behind(self) -> None:
        """A lookup never blocks on a position that is not resolved yet."""
        consumer = FakeConsumer()
        _assign(consumer, "document-status", 1)
        consumer.ends = {TP("document-status", 0): 0}
        catch_up = StatusCatchUp()
        await catch_up.start(consumer, "document-status", max_wait_s=1.0)
        assert await catch_up.reached() is False

    async def test_before_start_it_is_not_reached(self) -> None:
        """A view whose consumer has not started cannot vouch for a 404."""
        assert await StatusCatchUp().reached() is False

    async def test_in_memory_broker_is_always_caught_up(self) -> None:
        """Under the test broker there is no backlog to read."""
        catch_up = StatusCatchUp()
        await catch_up.start(None, "document-status", max_wait_s=0.1)
        assert await catch_up.reached() is True
