"""The status view's reader, polled without a broker: every record folded the moment it is read."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from ragstream_gateway.adapters import status_feed
from ragstream_gateway.adapters.status_feed import KafkaStatusFeed, follow
from ragstream_gateway.settings import GatewaySettings


@dataclass(frozen=True)
class _Record:
    value: bytes | None


class _ScriptedConsumer:
    """Answers ``getmany`` from a script of polls; an exception in the script is raised. Once the
    script is spent, a poll waits until the test ends."""

    def __init__(self, *polls: list[bytes | None] | Exception) -> None:
        self.polls = list(polls)
        self.spent = asyncio.Event()

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[_Record]]:
        if not self.polls:
            self.spent.set()
            await asyncio.Event().wait()
        poll = self.polls.pop(0)
        if isinstance(poll, Exception):
            raise poll
        return {"document-status-0": [_Record(value) for value in poll]}


async def _follow_until_spent(consumer: _ScriptedConsumer, fold: Any) -> None:
    task = asyncio.create_task(follow(consumer, fold))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(consumer.spent.wait(), timeout=5.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Still following when the script ran out: nothing ended the loop but the cancel.
    assert task.cancelled()


class TestFollow:
    async def test_each_record_is_folded_as_soon_as_it_is_read(self) -> None:
        """A poll's records reach the view before the next poll, which may wait: the view never
        holds back what Kafka has already delivered (``ragstream ingest --wait`` then a GET)."""
        folded: list[bytes | None] = []
        consumer = _ScriptedConsumer([b"received a", b"chunked a"], [b"indexed a", b""])
        await _follow_until_spent(consumer, folded.append)
        assert folded == [b"received a", b"chunked a", b"indexed a", b""]

    async def test_a_failed_poll_is_tried_again(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Kafka going away does not end the view: the next poll carries on where it stood."""
        monkeypatch.setattr(status_feed, "_RETRY_AFTER_S", 0.0)
        folded: list[bytes | None] = []
        consumer = _ScriptedConsumer(
            [b"received a"], KafkaConnectionError("broker gone"), [b"indexed a"]
        )
        await _follow_until_spent(consumer, folded.append)
        assert folded == [b"received a", b"indexed a"]

    async def test_a_failing_fold_ends_the_feed(self) -> None:
        """A fold that raises is a bug: the loop ends with it (and the health check reports it)
        instead of skipping records and serving a view that is silently wrong."""

        def fold(value: bytes | None) -> None:
            raise RuntimeError("bug")

        consumer = _ScriptedConsumer([b"received a"])
        with pytest.raises(RuntimeError, match="bug"):
            await asyncio.wait_for(follow(consumer, fold), timeout=5.0)  # type: ignore[arg-type]


class TestKafkaStatusFeed:
    async def test_a_failed_start_leaves_nothing_open(self) -> None:
        """Kafka unreachable at startup: start() fails, and stop() still closes the consumer."""
        settings = GatewaySettings(kafka_bootstrap="127.0.0.1:1", startup_timeout_s=1.0)
        feed = KafkaStatusFeed(settings, lambda value: None)
        with pytest.raises(KafkaConnectionError):
            await feed.start()
        consumer = feed.consumer
        assert consumer is not None
        await feed.stop()
        assert feed.consumer is None
        assert consumer._closed
        assert not feed.stopped
