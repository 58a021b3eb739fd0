"""Tests for the ingestor's subscriber, on FastStream's in-memory Kafka broker."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import httpx
import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.testing import build_message
from prometheus_client.parser import text_string_to_metric_families

import ragstream_ingestor.handlers
from ragstream_common.events import (
    DeadLetter,
    DocumentChunked,
    DocumentDeleted,
    DocumentStatus,
    DocumentUpserted,
)
from ragstream_common.messaging import publish_event
from ragstream_common.topics import CHUNKS, DOCUMENT_STATUS, DOCUMENTS, dlq_name
from ragstream_ingestor.app import create_app
from ragstream_ingestor.settings import IngestorSettings


@dataclasses.dataclass
class Received:
    """What the ingestor published, as the next services would see it."""

    chunked: list[DocumentChunked] = dataclasses.field(default_factory=list)
    chunk_keys: list[bytes] = dataclasses.field(default_factory=list)
    chunk_correlation_ids: list[str] = dataclasses.field(default_factory=list)
    statuses: list[DocumentStatus] = dataclasses.field(default_factory=list)
    status_keys: list[bytes] = dataclasses.field(default_factory=list)
    letters: list[DeadLetter] = dataclasses.field(default_factory=list)


def _ingestor() -> tuple[KafkaBroker, Received, Any]:
    app = create_app(IngestorSettings(chunk_max_words=20, chunk_overlap_words=5))
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    received = Received()

    @broker.subscriber(CHUNKS, group_id="test-chunks")
    async def on_chunked(event: DocumentChunked, message: KafkaMessage) -> None:
        received.chunked.append(event)
        received.chunk_keys.append(message.raw_message.key)  # type: ignore[union-attr]
        received.chunk_correlation_ids.append(message.correlation_id)

    @broker.subscriber(DOCUMENT_STATUS, group_id="test-status")
    async def on_status(event: DocumentStatus, message: KafkaMessage) -> None:
        received.statuses.append(event)
        received.status_keys.append(message.raw_message.key)  # type: ignore[union-attr]

    @broker.subscriber(dlq_name(DOCUMENTS), group_id="test-dlq")
    async def on_letter(letter: DeadLetter) -> None:
        received.letters.append(letter)

    return broker, received, app


def _upsert(**overrides: Any) -> DocumentUpserted:
    fields: dict[str, Any] = {
        "doc_id": "doc-1",
        "tenant": "acme",
        "title": "Handbook",
        "source": "wiki",
        "content": "# Intro\n\nHello there.\n\n## Details\n\n"
        + " ".join(f"w{i}" for i in range(30)),
        "content_type": "text/markdown",
    }
    return DocumentUpserted.model_validate(fields | overrides)


class TestUpsert:
    async def test_upsert_is_published_as_chunks_keyed_by_document(self) -> None:
        """A Markdown upsert comes out on `chunks`, keyed by doc_id, with its headings."""
        broker, received, _ = _ingestor()
        upsert = _upsert()
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, upsert, topic=DOCUMENTS, key=upsert.doc_id)

        [chunked] = received.chunked
        assert received.chunk_keys == [b"doc-1"]
        assert (chunked.doc_id, chunked.tenant, chunked.title, chunked.source) == (
            "doc-1",
            "acme",
            "Handbook",
            "wiki",
        )
        assert chunked.published_at == upsert.published_at
        assert [chunk.heading_path for chunk in chunked.chunks] == [
            ["Intro"],
            ["Intro", "Details"],
            ["Intro", "Details"],
        ]
        assert all(len(chunk.text.split()) <= 20 for chunk in chunked.chunks)

    async def test_upsert_reports_chunked_status(self) -> None:
        """After chunking, the document's status says `chunked` with the version and count."""
        broker, received, _ = _ingestor()
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, _upsert(), topic=DOCUMENTS, key="doc-1")

        [status] = received.statuses
        assert (status.doc_id, status.stage, status.chunk_count, status.version) == (
            "doc-1",
            "chunked",
            3,
            received.chunked[0].version,
        )
        assert received.status_keys == [b"doc-1"]

    async def test_version_is_the_record_offset_plus_one(self) -> None:
        """The version of a document is the offset of its `documents` record plus one."""
        broker, received, _ = _ingestor()
        async with TestKafkaBroker(broker):
            body = _upsert().model_dump_json().encode()
            record = await build_message(body, topic=DOCUMENTS, key=b"doc-1", serializer=None)
            subscriber = next(
                s for s in broker.subscribers if DOCUMENTS in getattr(s, "topic_names", ())
            )
            await subscriber.process_message(dataclasses.replace(record, offset=41))

        assert [event.version for event in received.chunked] == [42]
        assert [status.version for status in received.statuses] == [42]

    async def test_correlation_id_is_carried_to_the_chunks(self) -> None:
        """The chunks event travels under the correlation id of the document that caused it."""
        broker, received, _ = _ingestor()
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(
                test_broker, _upsert(), topic=DOCUMENTS, key="doc-1", correlation_id="corr-7"
            )

        assert received.chunk_correlation_ids == ["corr-7"]

    async def test_metrics_count_chunks_and_time_the_stage(self) -> None:
        """Chunks produced are counted and the chunk stage is timed."""
        broker, _, app = _ingestor()
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, _upsert(), topic=DOCUMENTS, key="doc-1")

        samples = await _scrape(app)
        service = ("service", "ingestor")
        assert samples[("ragstream_chunks_produced_total", frozenset({service}))] == 3
        stage_count = (
            "ragstream_stage_duration_seconds_count",
            frozenset({service, ("stage", "chunk")}),
        )
        assert samples[stage_count] == 1


class TestRejection:
    async def test_unsupported_type_fails_and_is_dead_lettered(self) -> None:
        """An unsupported type gets a `failed` status with the reason, and a dead letter."""
        broker, received, _ = _ingestor()
        upsert = _upsert(content_type="application/pdf")
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, upsert, topic=DOCUMENTS, key="doc-1")

        assert received.chunked == []
        [status] = received.statuses
        assert status.stage == "failed"
        assert "application/pdf" in (status.reason or "")
        [letter] = received.letters
        assert letter.error_type == "PoisonMessageError"
        assert json.loads(base64.b64decode(letter.original_value_b64))["doc_id"] == "doc-1"

    async def test_whitespace_only_content_fails_and_is_dead_lettered(self) -> None:
        """An upsert with only whitespace is refused the same way."""
        broker, received, _ = _ingestor()
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(
                test_broker, _upsert(content=" \n\t "), topic=DOCUMENTS, key="doc-1"
            )

        assert received.chunked == []
        assert [(s.stage, s.reason) for s in received.statuses] == [("failed", "document is empty")]
        assert len(received.letters) == 1

    async def test_unknown_event_kind_is_dead_lettered_without_status(self) -> None:
        """A documents record of an unknown kind is a validation failure: DLQ, nothing else."""
        broker, received, _ = _ingestor()
        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish(
                {"kind": "rename", "doc_id": "doc-1"}, topic=DOCUMENTS, key=b"doc-1"
            )

        assert (received.chunked, received.statuses) == ([], [])
        assert [letter.error_type for letter in received.letters] == ["ValidationError"]

    async def test_chunks_too_large_for_kafka_fail_and_are_dead_lettered(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A version whose chunks exceed Kafka's message size is failed, not retried forever."""

        async def refuse_chunks(broker: Any, event: Any, *, topic: str, **kwargs: Any) -> None:
            if topic == CHUNKS:
                raise MessageSizeTooLargeError("The message is 9000000 bytes")
            await publish_event(broker, event, topic=topic, **kwargs)

        monkeypatch.setattr(ragstream_ingestor.handlers, "publish_event", refuse_chunks)
        broker, received, _ = _ingestor()
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, _upsert(), topic=DOCUMENTS, key="doc-1")

        [status] = received.statuses
        assert status.stage == "failed"
        assert "exceed one Kafka message" in (status.reason or "")
        assert [letter.error_type for letter in received.letters] == ["PoisonMessageError"]


class TestDelete:
    async def test_delete_becomes_a_version_without_chunks(self) -> None:
        """A delete is published on `chunks` as a new version of the document with no chunks."""
        broker, received, _ = _ingestor()
        deleted = DocumentDeleted(doc_id="doc-1", tenant="acme")
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, deleted, topic=DOCUMENTS, key="doc-1")

        [chunked] = received.chunked
        assert (chunked.doc_id, chunked.tenant, chunked.chunks) == ("doc-1", "acme", [])
        assert chunked.version >= 1
        assert received.chunk_keys == [b"doc-1"]
        assert received.statuses == []


async def _scrape(app: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Read the app's /metrics endpoint, as Prometheus would."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingestor") as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
