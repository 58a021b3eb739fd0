"""Tests for the ingestor's subscriber, on FastStream's in-memory Kafka broker."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker, TestKafkaBroker
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
from ragstream_common.messaging import KafkaMessage, publish_event
from ragstream_common.topics import CHUNKS, DOCUMENT_STATUS, DOCUMENTS, dlq_name
from ragstream_ingestor.app import create_app
from ragstream_ingestor.chunking import TokenCounter
from ragstream_ingestor.settings import IngestorSettings

Sample = Callable[[str], bytes]


@dataclasses.dataclass
class Received:
    """What the ingestor published, as the next services would see it."""

    chunked: list[DocumentChunked] = dataclasses.field(default_factory=list)
    chunk_keys: list[bytes] = dataclasses.field(default_factory=list)
    chunk_correlation_ids: list[str] = dataclasses.field(default_factory=list)
    statuses: list[DocumentStatus] = dataclasses.field(default_factory=list)
    status_keys: list[bytes] = dataclasses.field(default_factory=list)
    letters: list[DeadLetter] = dataclasses.field(default_factory=list)


def _ingestor(counter: TokenCounter, **settings: Any) -> tuple[KafkaBroker, Received, Any]:
    app = create_app(IngestorSettings(**settings), token_counter=counter)
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
        "tags": ["hr"],
    }
    return DocumentUpserted.model_validate(fields | overrides)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class TestUpsert:
    async def test_upsert_is_published_as_chunks_keyed_by_document(
        self, word_counter: TokenCounter
    ) -> None:
        """A Markdown upsert comes out on `chunks`, keyed by doc_id, with headings and tags,
        every chunk within the token budget."""
        broker, received, _ = _ingestor(word_counter, chunk_max_tokens=32, chunk_overlap_tokens=5)
        upsert = _upsert()
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, upsert, topic=DOCUMENTS, key=upsert.doc_id)

        [chunked] = received.chunked
        assert received.chunk_keys == [b"doc-1"]
        assert (chunked.doc_id, chunked.tenant, chunked.title, chunked.source, chunked.tags) == (
            "doc-1",
            "acme",
            "Handbook",
            "wiki",
            ["hr"],
        )
        assert chunked.published_at == upsert.published_at
        assert [chunk.heading_path for chunk in chunked.chunks] == [
            ["Intro"],
            ["Intro", "Details"],
            ["Intro", "Details"],
        ]
        assert all(0 < (chunk.token_count or 0) <= 32 for chunk in chunked.chunks)

    async def test_upsert_reports_chunked_status_with_the_hash(
        self, word_counter: TokenCounter
    ) -> None:
        """After chunking, the status says `chunked` with the version, count and doc hash."""
        broker, received, _ = _ingestor(word_counter, chunk_max_tokens=32, chunk_overlap_tokens=5)
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, _upsert(), topic=DOCUMENTS, key="doc-1")

        [status] = received.statuses
        [chunked] = received.chunked
        assert (status.doc_id, status.stage, status.chunk_count, status.version) == (
            "doc-1",
            "chunked",
            3,
            chunked.version,
        )
        assert status.doc_hash == chunked.doc_hash
        assert received.status_keys == [b"doc-1"]

    async def test_a_pdf_in_base64_is_chunked_by_page(
        self, word_pieces: TokenCounter, sample: Sample
    ) -> None:
        """PDF bytes sent as base64 come out as chunks headed by their page numbers."""
        broker, received, _ = _ingestor(word_pieces)
        upsert = _upsert(
            title="",
            content="",
            content_base64=_b64(sample("two-pages.pdf")),
            content_type="application/octet-stream",
            filename="notes.pdf",
        )
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, upsert, topic=DOCUMENTS, key="doc-1")

        [chunked] = received.chunked
        assert chunked.title == "Ragstream Ingestion Notes"
        assert [chunk.heading_path for chunk in chunked.chunks] == [["Page 1"], ["Page 2"]]
        assert received.letters == []

    async def test_the_same_document_twice_yields_the_same_ids(
        self, word_pieces: TokenCounter
    ) -> None:
        """Publishing identical content again gives a new version with identical chunk ids."""
        broker, received, _ = _ingestor(word_pieces)
        async with TestKafkaBroker(broker) as test_broker:
            for _ in range(2):
                await publish_event(test_broker, _upsert(), topic=DOCUMENTS, key="doc-1")

        first, second = received.chunked
        assert [c.chunk_id for c in first.chunks] == [c.chunk_id for c in second.chunks]
        assert first.doc_hash == second.doc_hash

    async def test_version_is_the_record_offset_plus_one(self, word_counter: TokenCounter) -> None:
        """The version of a document is the offset of its `documents` record plus one."""
        broker, received, _ = _ingestor(word_counter)
        async with TestKafkaBroker(broker):
            body = _upsert().model_dump_json().encode()
            record = await build_message(body, topic=DOCUMENTS, key=b"doc-1", serializer=None)
            # The subscriber takes batches: a batch of this one record.
            await _documents_subscriber(broker).process_message(
                (dataclasses.replace(record, offset=41),)
            )

        assert [event.version for event in received.chunked] == [42]
        assert [status.version for status in received.statuses] == [42]

    async def test_correlation_id_is_carried_to_the_chunks(
        self, word_counter: TokenCounter
    ) -> None:
        """The chunks event travels under the correlation id of the document that caused it."""
        broker, received, _ = _ingestor(word_counter)
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(
                test_broker, _upsert(), topic=DOCUMENTS, key="doc-1", correlation_id="corr-7"
            )

        assert received.chunk_correlation_ids == ["corr-7"]

    async def test_metrics_count_chunks_and_time_the_stage(
        self, word_counter: TokenCounter
    ) -> None:
        """Chunks produced are counted and the chunk stage is timed."""
        broker, _, app = _ingestor(word_counter, chunk_max_tokens=32, chunk_overlap_tokens=5)
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

    async def test_invalid_bytes_are_indexed_and_counted(
        self, word_counter: TokenCounter, sample: Sample
    ) -> None:
        """A Latin-1 file is chunked anyway, and its replaced bytes are counted in /metrics."""
        broker, received, app = _ingestor(word_counter)
        upsert = _upsert(content="", content_base64=_b64(sample("latin1.txt")), filename="a.txt")
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, upsert, topic=DOCUMENTS, key="doc-1")

        assert len(received.chunked) == 1
        samples = await _scrape(app)
        key = ("ragstream_decoding_replacements_total", frozenset({("service", "ingestor")}))
        assert samples[key] == 7


class TestRejection:
    async def test_unsupported_type_fails_and_is_dead_lettered(
        self, word_counter: TokenCounter
    ) -> None:
        """An unsupported type gets a `failed` status with the reason, and a dead letter."""
        broker, received, _ = _ingestor(word_counter)
        upsert = _upsert(content_type="image/png")
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, upsert, topic=DOCUMENTS, key="doc-1")

        assert received.chunked == []
        [status] = received.statuses
        assert status.stage == "failed"
        assert "image/png" in (status.reason or "")
        [letter] = received.letters
        assert letter.error_type == "PoisonMessageError"
        assert json.loads(base64.b64decode(letter.original_value_b64))["doc_id"] == "doc-1"

    async def test_whitespace_only_content_fails_and_is_dead_lettered(
        self, word_counter: TokenCounter
    ) -> None:
        """An upsert with only whitespace is refused the same way."""
        broker, received, _ = _ingestor(word_counter)
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(
                test_broker, _upsert(content=" \n\t "), topic=DOCUMENTS, key="doc-1"
            )

        assert received.chunked == []
        assert [(s.stage, s.reason) for s in received.statuses] == [
            ("failed", "document has no text")
        ]
        assert len(received.letters) == 1

    async def test_an_oversized_document_fails_and_publishes_no_chunks(
        self, word_counter: TokenCounter
    ) -> None:
        """A document over max_document_bytes is failed and dead-lettered, never chunked."""
        broker, received, _ = _ingestor(word_counter, max_document_bytes=100)
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(
                test_broker, _upsert(content="x " * 51), topic=DOCUMENTS, key="doc-1"
            )

        assert received.chunked == []
        [status] = received.statuses
        assert status.reason == "document is 102 bytes, over the limit of 100"
        assert [letter.error_type for letter in received.letters] == ["PoisonMessageError"]

    async def test_a_document_over_the_chunk_limit_fails_and_publishes_no_chunks(
        self, word_counter: TokenCounter
    ) -> None:
        """A document needing more than max_chunks_per_document chunks is failed, not cut short."""
        broker, received, _ = _ingestor(
            word_counter, chunk_max_tokens=32, chunk_overlap_tokens=0, max_chunks_per_document=2
        )
        upsert = _upsert(content=" ".join(f"w{i}" for i in range(200)), content_type="text/plain")
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, upsert, topic=DOCUMENTS, key="doc-1")

        assert received.chunked == []
        assert "more than 2 chunks" in (received.statuses[0].reason or "")
        assert len(received.letters) == 1

    async def test_unknown_event_kind_is_dead_lettered_without_status(
        self, word_counter: TokenCounter
    ) -> None:
        """A documents record of an unknown kind is a validation failure: DLQ, nothing else."""
        broker, received, _ = _ingestor(word_counter)
        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish(
                {"kind": "rename", "doc_id": "doc-1"}, topic=DOCUMENTS, key=b"doc-1"
            )

        assert (received.chunked, received.statuses) == ([], [])
        assert [letter.error_type for letter in received.letters] == ["ValidationError"]

    async def test_malformed_json_is_dead_lettered_with_its_bytes(
        self, word_counter: TokenCounter
    ) -> None:
        """Bytes that are not JSON are dead-lettered as they came, and nothing is published."""
        broker, received, _ = _ingestor(word_counter)
        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish(b"{not json", topic=DOCUMENTS, key=b"doc-1")

        assert (received.chunked, received.statuses) == ([], [])
        [letter] = received.letters
        assert letter.error_type == "ValidationError"
        assert base64.b64decode(letter.original_value_b64) == b"{not json"

    async def test_chunks_too_large_for_kafka_fail_and_are_dead_lettered(
        self, monkeypatch: pytest.MonkeyPatch, word_counter: TokenCounter
    ) -> None:
        """A version whose chunks exceed Kafka's message size is failed, not retried forever."""

        async def refuse_chunks(broker: Any, event: Any, *, topic: str, **kwargs: Any) -> None:
            if topic == CHUNKS:
                raise MessageSizeTooLargeError("The message is 9000000 bytes")
            await publish_event(broker, event, topic=topic, **kwargs)

        monkeypatch.setattr(ragstream_ingestor.handlers, "publish_event_unconfirmed", refuse_chunks)
        broker, received, _ = _ingestor(word_counter)
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, _upsert(), topic=DOCUMENTS, key="doc-1")

        [status] = received.statuses
        assert status.stage == "failed"
        assert "exceed one Kafka message" in (status.reason or "")
        assert [letter.error_type for letter in received.letters] == ["PoisonMessageError"]


class TestBatches:
    async def test_a_batch_is_handled_in_order_and_poison_goes_alone(
        self, word_counter: TokenCounter
    ) -> None:
        """Documents consumed together come out in their order, each under its own correlation
        id; a malformed one between them is dead-lettered without holding the others back."""
        broker, received, _ = _ingestor(word_counter)
        batch = [
            _upsert(doc_id="doc-a").model_dump_json().encode(),
            b"{not json",
            DocumentDeleted(doc_id="doc-b", tenant="acme").model_dump_json().encode(),
            _upsert(doc_id="doc-a", content="# New\n\nRewritten.").model_dump_json().encode(),
        ]
        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish_batch(*batch, topic=DOCUMENTS)

        assert [(e.doc_id, len(e.chunks) > 0) for e in received.chunked] == [
            ("doc-a", True),
            ("doc-b", False),
            ("doc-a", True),
        ]
        assert received.chunked[0].doc_hash != received.chunked[2].doc_hash
        assert [(s.doc_id, s.stage) for s in received.statuses] == [
            ("doc-a", "chunked"),
            ("doc-a", "chunked"),
        ]
        [letter] = received.letters
        assert base64.b64decode(letter.original_value_b64) == b"{not json"

    def test_the_producer_lingers_for_bulk_work(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A batch's chunks and statuses wait a few ms to share produce requests (fewer requests
        for Kafka and for every consumer downstream); the environment still decides."""
        assert 0 < IngestorSettings().kafka_linger_ms <= 10
        monkeypatch.setenv("RAGSTREAM_KAFKA_LINGER_MS", "0")
        assert IngestorSettings().kafka_linger_ms == 0


class TestWhereChunkingRuns:
    @pytest.mark.parametrize(
        ("words", "as_base64", "inline_max_chars", "on_the_loop"),
        [
            (30, False, 8192, True),
            (3000, False, 8192, False),
            (30, True, 8192, False),
            (30, False, 0, False),
        ],
        ids=["short-text", "long-text", "bytes", "inline-off"],
    )
    async def test_short_text_is_chunked_on_the_loop_the_rest_on_a_thread(
        self,
        word_counter: TokenCounter,
        monkeypatch: pytest.MonkeyPatch,
        words: int,
        as_base64: bool,
        inline_max_chars: int,
        on_the_loop: bool,
    ) -> None:
        """A thread trip costs as much CPU as chunking a short text, so only text beyond the
        bound, and bytes, which can be a PDF, leave the event loop; either way the whole
        document is chunked."""
        threads: list[int] = []
        chunk_upsert = ragstream_ingestor.handlers.chunk_upsert

        def recording_chunk_upsert(*args: Any) -> Any:
            threads.append(threading.get_ident())
            return chunk_upsert(*args)

        monkeypatch.setattr(ragstream_ingestor.handlers, "chunk_upsert", recording_chunk_upsert)
        broker, received, _ = _ingestor(word_counter, inline_chunking_max_chars=inline_max_chars)
        text = "# Intro\n\n" + " ".join(f"w{i}" for i in range(words))
        upsert = (
            _upsert(content="", content_base64=_b64(text.encode()), content_type="text/plain")
            if as_base64
            else _upsert(content=text)
        )
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, upsert, topic=DOCUMENTS, key=upsert.doc_id)

        [thread] = threads
        assert (thread == threading.get_ident()) is on_the_loop
        [chunked] = received.chunked
        assert chunked.chunks[-1].text.endswith(f"w{words - 1}")


class TestDelete:
    async def test_delete_becomes_a_version_without_chunks(
        self, word_counter: TokenCounter
    ) -> None:
        """A delete is published on `chunks` as a new version of the document with no chunks."""
        broker, received, _ = _ingestor(word_counter)
        deleted = DocumentDeleted(doc_id="doc-1", tenant="acme")
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, deleted, topic=DOCUMENTS, key="doc-1")

        [chunked] = received.chunked
        assert (chunked.doc_id, chunked.tenant, chunked.chunks) == ("doc-1", "acme", [])
        assert chunked.version >= 1
        assert received.chunk_keys == [b"doc-1"]
        assert received.statuses == []

    async def test_a_tombstone_deletes_the_document_of_the_default_tenant(
        self, word_counter: TokenCounter
    ) -> None:
        """A null-valued record keyed by doc_id is a delete, not a dead letter."""
        broker, received, app = _ingestor(word_counter)
        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish(None, topic=DOCUMENTS, key=b"doc-7")

        [chunked] = received.chunked
        assert (chunked.doc_id, chunked.tenant, chunked.chunks) == ("doc-7", "default", [])
        assert received.chunk_keys == [b"doc-7"]
        assert (received.letters, received.statuses) == ([], [])
        samples = await _scrape(app)
        deleted = (
            "ragstream_documents_handled_total",
            frozenset({("service", "ingestor"), ("outcome", "deleted")}),
        )
        assert samples[deleted] == 1

    async def test_a_tombstone_gets_the_version_of_its_offset(
        self, word_counter: TokenCounter
    ) -> None:
        """A tombstone's version follows its offset, so it retires every earlier version."""
        broker, received, _ = _ingestor(word_counter)
        async with TestKafkaBroker(broker):
            record = await build_message(None, topic=DOCUMENTS, key=b"doc-7", serializer=None)
            assert record.value is None
            await _documents_subscriber(broker).process_message(
                (dataclasses.replace(record, offset=99),)
            )

        assert [(event.doc_id, event.version) for event in received.chunked] == [("doc-7", 100)]


def _documents_subscriber(broker: KafkaBroker) -> Any:
    return next(s for s in broker.subscribers if DOCUMENTS in getattr(s, "topic_names", ()))


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
