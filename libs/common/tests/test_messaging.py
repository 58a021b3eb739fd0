"""Tests for the shared Kafka plumbing, on FastStream's in-memory test broker."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import anyio
import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter, TestKafkaBroker
from faststream.message import StreamMessage

from ragstream_common.events import DeadLetter, DocumentUpserted
from ragstream_common.logging import current_correlation_id
from ragstream_common.messaging import (
    IDLE_POLL_MS,
    KafkaMessage,
    PoisonMessageError,
    batch_subscriber,
    consumer_options,
    create_broker,
    handle_in_order,
    publish_event,
)
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.settings import ServiceSettings


def _broker() -> tuple[object, ServiceMetrics]:
    metrics = ServiceMetrics("test-service")
    return create_broker(ServiceSettings(service_name="test-service"), metrics), metrics


class TestDeadLetters:
    async def test_malformed_json_goes_to_dlq_with_reason_and_bytes(self) -> None:
        """A message that is not valid JSON for the handler's event lands in <topic>.dlq intact."""
        broker, metrics = _broker()
        handled: list[DocumentUpserted] = []
        letters: list[DeadLetter] = []

        @broker.subscriber("documents", group_id="g")  # type: ignore[attr-defined]
        async def handle(event: DocumentUpserted) -> None:
            handled.append(event)

        @broker.subscriber("documents.dlq")  # type: ignore[attr-defined]
        async def collect(letter: DeadLetter) -> None:
            letters.append(letter)

        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish(b"{not json", topic="documents", key=b"doc-1")

        assert handled == []
        assert len(letters) == 1
        assert letters[0].original_topic == "documents"
        assert base64.b64decode(letters[0].original_value_b64) == b"{not json"
        assert letters[0].key == "doc-1"
        counted = metrics.registry.get_sample_value(
            "ragstream_dead_letters_total",
            {"service": "test-service", "topic": "documents", "error_type": letters[0].error_type},
        )
        assert counted == 1

    async def test_unknown_schema_version_is_dead_lettered(self) -> None:
        """An event of a schema version this code does not know is refused, not misread."""
        broker, _ = _broker()
        letters: list[DeadLetter] = []

        @broker.subscriber("documents", group_id="g")  # type: ignore[attr-defined]
        async def handle(event: DocumentUpserted) -> None:
            raise AssertionError("must not be called")

        @broker.subscriber("documents.dlq")  # type: ignore[attr-defined]
        async def collect(letter: DeadLetter) -> None:
            letters.append(letter)

        payload = json.loads(DocumentUpserted(doc_id="d", content="x").model_dump_json())
        payload["schema_version"] = 2
        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish(payload, topic="documents")

        assert [letter.error_type for letter in letters] == ["ValidationError"]

    async def test_poison_error_from_handler_is_dead_lettered(self) -> None:
        """A handler that raises PoisonMessageError sends the message to the DLQ with its reason."""
        broker, _ = _broker()
        letters: list[DeadLetter] = []

        @broker.subscriber("documents", group_id="g")  # type: ignore[attr-defined]
        async def handle(event: DocumentUpserted) -> None:
            raise PoisonMessageError("cannot parse application/x-unknown")

        @broker.subscriber("documents.dlq")  # type: ignore[attr-defined]
        async def collect(letter: DeadLetter) -> None:
            letters.append(letter)

        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(
                test_broker, DocumentUpserted(doc_id="d", content="x"), topic="documents", key="d"
            )

        assert len(letters) == 1
        assert "application/x-unknown" in letters[0].error


class TestKafkaMessage:
    async def test_the_message_reaches_the_handler_without_a_thread_hop(
        self, thread_hops: list[object]
    ) -> None:
        """A handler gets its raw message, and resolving it never runs a worker thread."""
        broker, _ = _broker()
        keys: list[bytes] = []

        @broker.subscriber("documents", group_id="g")  # type: ignore[attr-defined]
        async def handle(message: KafkaMessage) -> None:
            keys.append(message.raw_message.key)

        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish(b"{}", topic="documents", key=b"doc-1")

        assert keys == [b"doc-1"]
        assert thread_hops == []


class TestCorrelation:
    async def test_correlation_id_travels_through_a_hop(self) -> None:
        """A handler sees the publisher's correlation id and republishes with it."""
        broker, _ = _broker()
        seen: list[str | None] = []

        @broker.subscriber("documents", group_id="g")  # type: ignore[attr-defined]
        async def first(event: DocumentUpserted) -> None:
            seen.append(current_correlation_id())
            await publish_event(broker, event, topic="chunks", key=event.doc_id)  # type: ignore[arg-type]

        @broker.subscriber("chunks", group_id="g2")  # type: ignore[attr-defined]
        async def second(event: DocumentUpserted) -> None:
            seen.append(current_correlation_id())

        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(
                test_broker,
                DocumentUpserted(doc_id="d", content="x"),
                topic="documents",
                key="d",
                correlation_id="corr-123",
            )

        assert seen == ["corr-123", "corr-123"]
        assert current_correlation_id() is None


class _ScriptedConsumer:
    """Answers ``getmany`` from a script of polls, recording the timeout and size of each."""

    def __init__(self, *polls: list[str]) -> None:
        self.polls = list(polls)
        self.calls: list[tuple[int, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        self.calls.append((timeout_ms, max_records))
        records = self.polls.pop(0) if self.polls else []
        return {"topic-0": records[:max_records]} if records else {}


def _batch_subscriber(max_messages: int, max_wait_ms: int, quiet_ms: int | None = None) -> Any:
    settings = ServiceSettings(service_name="test-service")
    return batch_subscriber(
        KafkaRouter(),
        "queries",
        max_messages=max_messages,
        max_wait_ms=max_wait_ms,
        quiet_ms=quiet_ms,
        **consumer_options(settings, "g"),
    )


class TestBatchSubscriber:
    async def test_an_empty_poll_returns_without_sleeping(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """FastStream's own poll sleeps after an empty poll, delaying the next record; ours not."""
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        monkeypatch.setattr(anyio, "sleep", sleep)
        consumer = _ScriptedConsumer()
        batch = await _batch_subscriber(8, 0).get_msg(consumer)
        assert batch == ()
        assert slept == []
        assert consumer.calls == [(IDLE_POLL_MS, 8)]

    async def test_without_a_wait_the_waiting_records_go_at_once(self) -> None:
        """With no wait, one poll's records are the batch, even when it is not full."""
        consumer = _ScriptedConsumer(["a", "b"], ["c"])
        assert await _batch_subscriber(8, 0).get_msg(consumer) == ("a", "b")
        assert len(consumer.calls) == 1

    async def test_a_wait_tops_the_batch_up_to_its_size(self) -> None:
        """With a wait, later polls add records until the batch is full."""
        consumer = _ScriptedConsumer(["a", "b"], ["c", "d", "e"], ["f"])
        assert await _batch_subscriber(4, 1000).get_msg(consumer) == ("a", "b", "c", "d")
        assert [size for _, size in consumer.calls] == [4, 2]

    async def test_a_wait_ends_when_nothing_more_comes(self) -> None:
        """A poll that brings nothing ends the wait: the batch goes with what it has."""
        consumer = _ScriptedConsumer(["a"], [], ["late"])
        assert await _batch_subscriber(4, 1000).get_msg(consumer) == ("a",)
        (_, first), (timeout, _) = consumer.calls
        assert first == 4
        assert 0 < timeout <= 1000

    async def test_a_quiet_time_ends_the_wait_early_for_a_lone_record(self) -> None:
        """With a quiet time, a lone record waits that long for company, not the whole wait."""
        consumer = _ScriptedConsumer(["a"], [], ["late"])
        assert await _batch_subscriber(8, 1000, quiet_ms=50).get_msg(consumer) == ("a",)
        (_, _), (timeout, _) = consumer.calls
        assert 0 < timeout <= 50

    async def test_records_that_keep_coming_keep_a_quiet_batch_open(self) -> None:
        """Each record that arrives within the quiet time extends the batch, up to its size."""
        consumer = _ScriptedConsumer(["a"], ["b"], ["c", "d"], [], ["late"])
        assert await _batch_subscriber(8, 1000, quiet_ms=50).get_msg(consumer) == (
            "a",
            "b",
            "c",
            "d",
        )
        assert [timeout <= 50 for timeout, _ in consumer.calls[1:]] == [True, True, True]


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="documents",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"doc",
        value=b"{}",
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=2,
        headers=(),
    )


class TestHandleInOrder:
    async def test_the_loop_runs_between_records(self) -> None:
        """A record handled without awaiting anything still lets the loop run before the next
        one, so what it published is sent while the rest of the batch is handled."""
        broker, metrics = _broker()
        seen: list[str] = []

        async def handle(record: ConsumerRecord[Any, Any]) -> list[asyncio.Future[Any]]:
            seen.append(f"record {record.offset}")
            # As the producer's sender would: ready to run the moment the loop gets control.
            asyncio.get_running_loop().call_soon(seen.append, f"loop after {record.offset}")
            return []

        batch = StreamMessage(raw_message=[_record(0), _record(1), _record(2)], body=b"")
        await handle_in_order(batch, handle, broker=broker, metrics=metrics)  # type: ignore[arg-type]

        assert seen[:4] == ["record 0", "loop after 0", "record 1", "loop after 1"]
