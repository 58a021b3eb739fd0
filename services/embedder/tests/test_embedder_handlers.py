"""Tests for the embedder's batch subscriber, on FastStream's in-memory Kafka broker."""

from __future__ import annotations

import base64
import dataclasses
import math
import socket
import time
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.testing import build_message
from prometheus_client.parser import text_string_to_metric_families

import ragstream_common.messaging
import ragstream_embedder.app
import ragstream_embedder.handlers
from ragstream_common.events import (
    Chunk,
    ChunksEmbedded,
    DeadLetter,
    DocumentChunked,
    DocumentStatus,
)
from ragstream_common.messaging import KafkaMessage, publish_event_unconfirmed
from ragstream_common.topics import CHUNKS, DOCUMENT_STATUS, EMBEDDINGS, dlq_name
from ragstream_embedder.app import create_app
from ragstream_embedder.domain import cache_key
from ragstream_embedder.settings import EmbedderSettings


class FakeModel:
    """Embeds a text as [its length, its number of words]; records every call."""

    def __init__(self, version: str = "fake@1") -> None:
        self.version = version
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float(len(text)), float(len(text.split()))] for text in texts]

    def submit(self, texts: Sequence[str]) -> Future[list[list[float]]]:
        future: Future[list[list[float]]] = Future()
        try:
            future.set_result(self.embed(texts))
        except Exception as error:  # as the real model's pool does
            future.set_exception(error)
        return future


@dataclasses.dataclass
class Received:
    """What the embedder published, as the retriever and the gateway would see it."""

    embedded: list[ChunksEmbedded] = dataclasses.field(default_factory=list)
    embedded_keys: list[bytes] = dataclasses.field(default_factory=list)
    embedded_correlation_ids: list[str] = dataclasses.field(default_factory=list)
    statuses: list[DocumentStatus] = dataclasses.field(default_factory=list)
    letters: list[DeadLetter] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Embedder:
    app: Any
    broker: KafkaBroker
    received: Received

    def chunks_subscriber(self) -> Any:
        return next(s for s in self.broker.subscribers if CHUNKS in getattr(s, "topic_names", ()))

    async def consume_batch(self, *records: ConsumerRecord[Any, Any]) -> None:
        """Hand ``records`` to the subscriber as one batch, as one poll of Kafka would."""
        await self.chunks_subscriber().process_message(tuple(records))


class FakeCache:
    """An in-memory embedding cache shared by the "replicas" given it; can be told to fail."""

    def __init__(self) -> None:
        self.vectors: dict[str, list[float]] = {}
        self.gets: list[list[str]] = []
        self.puts: list[list[str]] = []
        self.failure: Exception | None = None

    async def get_many(self, keys: Sequence[str]) -> list[list[float] | None]:
        self.gets.append(list(keys))
        if self.failure is not None:
            raise self.failure
        return [self.vectors.get(key) for key in keys]

    async def put_many(self, items: Sequence[tuple[str, Sequence[float]]]) -> None:
        self.puts.append([key for key, _ in items])
        if self.failure is not None:
            raise self.failure
        self.vectors.update((key, list(vector)) for key, vector in items)


def _embedder(
    model: Any = None, settings: EmbedderSettings | None = None, cache: Any = None
) -> Embedder:
    app = create_app(settings or EmbedderSettings(), model=model, cache=cache)
    broker = app.broker
    assert isinstance(broker, KafkaBroker)
    received = Received()

    @broker.subscriber(EMBEDDINGS, group_id="test-embeddings")
    async def on_embedded(event: ChunksEmbedded, message: KafkaMessage) -> None:
        received.embedded.append(event)
        received.embedded_keys.append(message.raw_message.key)  # type: ignore[union-attr]
        received.embedded_correlation_ids.append(message.correlation_id)

    @broker.subscriber(DOCUMENT_STATUS, group_id="test-status")
    async def on_status(event: DocumentStatus) -> None:
        received.statuses.append(event)

    @broker.subscriber(dlq_name(CHUNKS), group_id="test-dlq")
    async def on_letter(letter: DeadLetter) -> None:
        received.letters.append(letter)

    return Embedder(app, broker, received)


def _document(
    doc_id: str, texts: Sequence[str], *, version: int = 1, title: str = "Guide"
) -> DocumentChunked:
    return DocumentChunked(
        doc_id=doc_id,
        tenant="acme",
        version=version,
        title=title,
        doc_hash="h",
        chunks=[
            Chunk(
                chunk_id=f"{doc_id}#{position}",
                doc_id=doc_id,
                position=position,
                text=text,
                heading_path=["Setup"],
                content_hash=f"hash-{position}",
            )
            for position, text in enumerate(texts)
        ],
        published_at=datetime(2025, 1, 2, tzinfo=UTC),
    )


async def _record(
    body: DocumentChunked | bytes, *, offset: int = 0, correlation_id: str = "corr"
) -> ConsumerRecord[Any, Any]:
    value = body if isinstance(body, bytes) else body.model_dump_json().encode()
    key = body.doc_id.encode() if isinstance(body, DocumentChunked) else b"bad"
    record = await build_message(
        value, topic=CHUNKS, key=key, correlation_id=correlation_id, serializer=None
    )
    return dataclasses.replace(record, offset=offset)


async def _scrape(app: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Read the app's /metrics endpoint, as Prometheus would."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://embedder") as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


class TestBatching:
    async def test_a_batch_is_embedded_in_one_model_call(self) -> None:
        """All chunks of all records of a batch go to the model together, headings included."""
        model = FakeModel()
        embedder = _embedder(model)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(_document("a", ["one", "two"])),
                await _record(_document("b", ["three"]), offset=1),
            )

        assert model.calls == [["Guide\nSetup\none", "Guide\nSetup\ntwo", "Guide\nSetup\nthree"]]

    async def test_one_event_per_record_in_order_keyed_by_document(self) -> None:
        """Each record yields its own ChunksEmbedded, in batch order, keyed by doc_id."""
        embedder = _embedder(FakeModel())
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(_document("a", ["one", "two"], version=1)),
                await _record(_document("b", ["three"])),
                await _record(_document("a", ["one more"], version=2), offset=2),
            )

        received = embedder.received
        assert [(e.doc_id, e.version) for e in received.embedded] == [("a", 1), ("b", 1), ("a", 2)]
        assert received.embedded_keys == [b"a", b"b", b"a"]
        first = received.embedded[0]
        assert first.model == "fake@1"
        assert [chunk.vector for chunk in first.chunks] == [[15.0, 3.0], [15.0, 3.0]]
        assert [chunk.chunk_id for chunk in first.chunks] == ["a#0", "a#1"]

    async def test_each_record_keeps_its_own_correlation_id(self) -> None:
        """Events of a batch travel under the correlation ids of the records that caused them."""
        embedder = _embedder(FakeModel())
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(_document("a", ["x"]), correlation_id="corr-a"),
                await _record(_document("b", ["y"]), correlation_id="corr-b"),
            )

        assert embedder.received.embedded_correlation_ids == ["corr-a", "corr-b"]

    async def test_embedded_status_is_reported_per_document(self) -> None:
        """Each embedded version reports `embedded` with its chunk count."""
        embedder = _embedder(FakeModel())
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(_document("a", ["one", "two"])),
                await _record(_document("b", ["three"])),
            )

        statuses = [(s.doc_id, s.stage, s.chunk_count) for s in embedder.received.statuses]
        assert statuses == [("a", "embedded", 2), ("b", "embedded", 1)]

    async def test_a_large_batch_is_embedded_and_published_in_parts(self) -> None:
        """Whole documents, in record order, go to the model in calls of at most
        model_call_max_texts chunks, and every document is published, in order."""
        model = FakeModel()
        embedder = _embedder(model, EmbedderSettings(model_call_max_texts=2))
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(_document("a", ["one", "two"])),
                await _record(_document("b", ["three"]), offset=1),
                await _record(_document("c", ["four"]), offset=2),
            )
        assert [len(call) for call in model.calls] == [2, 2]
        assert [event.doc_id for event in embedder.received.embedded] == ["a", "b", "c"]

    async def test_the_next_part_is_on_the_model_before_a_part_is_published(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Part n+1 is queued on the model before part n's events go out, so the model never
        waits for the publishing; the events still go out in record order."""
        steps: list[str] = []

        class QueueingModel(FakeModel):
            def submit(self, texts: Sequence[str]) -> Future[list[list[float]]]:
                steps.append("submit")
                return super().submit(texts)

        async def recording_publish(broker: Any, event: Any, *, topic: str, **kwargs: Any) -> Any:
            if topic == EMBEDDINGS:
                steps.append(f"publish {event.doc_id}")
            return await publish_event_unconfirmed(broker, event, topic=topic, **kwargs)

        monkeypatch.setattr(
            ragstream_embedder.handlers, "publish_event_unconfirmed", recording_publish
        )
        embedder = _embedder(QueueingModel(), EmbedderSettings(model_call_max_texts=1))
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(_document("a", ["one"])),
                await _record(_document("b", ["two"]), offset=1),
                await _record(_document("c", ["three"]), offset=2),
            )

        assert steps == ["submit", "submit", "publish a", "submit", "publish b", "publish c"]
        assert [event.doc_id for event in embedder.received.embedded] == ["a", "b", "c"]

    async def test_batch_subscriber_uses_the_batch_settings(self) -> None:
        """The batch size and wait come from the settings: the latency/throughput knob."""
        settings = EmbedderSettings(batch_max_messages=7, batch_max_wait_ms=35)
        subscriber = _embedder(FakeModel(), settings).chunks_subscriber()
        polls: list[tuple[int, int]] = []

        class OneRecordThenNothing:
            async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
                polls.append((timeout_ms, max_records))
                return {"chunks-0": ["record"]} if len(polls) == 1 else {}

        assert await subscriber.get_msg(OneRecordThenNothing()) == ("record",)
        # The first poll waits for a first record; the second tops the batch up for 35 ms.
        [(_, first_size), (top_up_wait, top_up_size)] = polls
        assert (first_size, top_up_size) == (7, 6)
        assert 0 < top_up_wait <= 35

    def test_the_producer_lingers_for_bulk_work(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A part's embeddings and statuses wait a few ms to share produce requests; the
        environment still decides."""
        assert 0 < EmbedderSettings().kafka_linger_ms <= 10
        monkeypatch.setenv("RAGSTREAM_KAFKA_LINGER_MS", "0")
        assert EmbedderSettings().kafka_linger_ms == 0

    async def test_published_batch_flows_through_the_test_broker(self) -> None:
        """A publish_batch to `chunks` is consumed and embedded like a poll of Kafka."""
        model = FakeModel()
        embedder = _embedder(model)
        async with TestKafkaBroker(embedder.broker) as test_broker:
            await test_broker.publish_batch(
                _document("a", ["one"]), _document("b", ["two"]), topic=CHUNKS
            )

        assert len(model.calls) == 1
        assert [event.doc_id for event in embedder.received.embedded] == ["a", "b"]


class TestDeletions:
    async def test_a_version_without_chunks_passes_through_without_a_model_call(self) -> None:
        """A deletion is forwarded as ChunksEmbedded with no chunks, without status or model."""
        model = FakeModel()
        embedder = _embedder(model)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(_document("gone", [])))

        [event] = embedder.received.embedded
        assert (event.doc_id, event.chunks, event.model) == ("gone", [], "fake@1")
        assert model.calls == []
        assert embedder.received.statuses == []


class TestPoisonRecords:
    async def test_a_malformed_record_is_dead_lettered_alone(self) -> None:
        """One bad record in a batch goes to chunks.dlq; the others are embedded."""
        embedder = _embedder(FakeModel())
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(_document("a", ["one"])),
                await _record(b"{not json", offset=5),
                await _record(_document("b", ["two"]), offset=6),
            )

        assert [event.doc_id for event in embedder.received.embedded] == ["a", "b"]
        [letter] = embedder.received.letters
        assert base64.b64decode(letter.original_value_b64) == b"{not json"
        assert (letter.original_topic, letter.offset, letter.error_type) == (
            CHUNKS,
            5,
            "ValidationError",
        )

    async def test_an_unknown_schema_version_is_dead_lettered(self) -> None:
        """A record of a schema version this code does not know is refused, not misread."""
        embedder = _embedder(FakeModel())
        body = (
            _document("a", ["one"])
            .model_dump_json()
            .replace('"schema_version":1', '"schema_version":2')
        )
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(body.encode()))

        assert embedder.received.embedded == []
        assert [letter.error_type for letter in embedder.received.letters] == ["ValidationError"]

    async def test_a_model_failure_fails_the_whole_batch_for_redelivery(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A transient model error publishes nothing and is raised, so the batch is redelivered."""
        monkeypatch.setattr(ragstream_common.messaging, "REDELIVERY_BACKOFF_SECONDS", 0)

        class BrokenModel(FakeModel):
            def embed(self, texts: Sequence[str]) -> list[list[float]]:
                raise RuntimeError("out of memory")

        embedder = _embedder(BrokenModel())
        async with TestKafkaBroker(embedder.broker):
            with pytest.raises(RuntimeError, match="out of memory"):
                await embedder.consume_batch(await _record(_document("a", ["one"])))

        assert (embedder.received.embedded, embedder.received.letters) == ([], [])

    async def test_a_version_too_large_for_kafka_fails_alone(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A version whose vectors exceed Kafka's message size is failed and dead-lettered alone."""

        async def refuse_huge(broker: Any, event: Any, *, topic: str, **kwargs: Any) -> Any:
            if topic == EMBEDDINGS and event.doc_id == "huge":
                raise MessageSizeTooLargeError("The message is 9000000 bytes")
            return await publish_event_unconfirmed(broker, event, topic=topic, **kwargs)

        monkeypatch.setattr(ragstream_embedder.handlers, "publish_event_unconfirmed", refuse_huge)
        embedder = _embedder(FakeModel())
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(_document("huge", ["one", "two"]), offset=3),
                await _record(_document("fine", ["three"]), offset=4),
            )

        received = embedder.received
        assert [event.doc_id for event in received.embedded] == ["fine"]
        assert [(s.doc_id, s.stage) for s in received.statuses] == [
            ("huge", "failed"),
            ("fine", "embedded"),
        ]
        assert "exceed one Kafka message" in (received.statuses[0].reason or "")
        [letter] = received.letters
        assert (letter.offset, letter.error_type) == (3, "PoisonMessageError")


def _vectors(event: ChunksEmbedded) -> list[list[float]]:
    return [chunk.vector for chunk in event.chunks]


def _sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset({("service", "embedder"), *labels.items()})), 0.0)


class TestEmbeddingCache:
    async def test_first_batch_embeds_everything_and_fills_the_cache(self) -> None:
        """On an empty cache every distinct text is embedded once and stored under its key."""
        model, cache = FakeModel(), FakeCache()
        embedder = _embedder(model, cache=cache)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(_document("a", ["one", "two"])),
                await _record(_document("b", ["one"])),
            )

        texts = ["Guide\nSetup\none", "Guide\nSetup\ntwo"]
        assert model.calls == [texts]
        assert cache.gets == [[cache_key("fake@1", text) for text in texts]]
        assert set(cache.vectors) == {cache_key("fake@1", text) for text in texts}
        assert cache.vectors[cache_key("fake@1", texts[0])] == [15.0, 3.0]

    async def test_identical_content_again_embeds_nothing_and_publishes_the_same(self) -> None:
        """Re-publishing the same chunks hits the cache: no model call, the same vectors out."""
        model, cache = FakeModel(), FakeCache()
        embedder = _embedder(model, cache=cache)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(_document("a", ["one", "two"])))
            await embedder.consume_batch(await _record(_document("a", ["one", "two"], version=2)))

        assert len(model.calls) == 1
        first, second = embedder.received.embedded
        assert second.version == 2
        assert _vectors(second) == _vectors(first)
        assert [c.chunk_id for c in second.chunks] == [c.chunk_id for c in first.chunks]
        assert [s.stage for s in embedder.received.statuses] == ["embedded", "embedded"]
        samples = await _scrape(embedder.app)
        assert _sample(samples, "ragstream_embedded_chunks_total") == 2
        assert _sample(samples, "ragstream_embedding_cache_misses_total") == 2
        assert _sample(samples, "ragstream_embedding_cache_hits_total") == 2

    async def test_an_update_embeds_only_the_changed_chunk(self) -> None:
        """A new version with one changed chunk sends that chunk alone to the model."""
        model, cache = FakeModel(), FakeCache()
        embedder = _embedder(model, cache=cache)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(_document("a", ["one", "two", "three"])))
            await embedder.consume_batch(
                await _record(_document("a", ["one", "2", "three"], version=2))
            )

        assert model.calls[1] == ["Guide\nSetup\n2"]
        first, second = embedder.received.embedded
        assert _vectors(second)[0] == _vectors(first)[0]
        assert _vectors(second)[2] == _vectors(first)[2]
        assert _vectors(second)[1] == [13.0, 3.0]

    async def test_a_new_title_misses_because_the_model_reads_it(self) -> None:
        """Chunks whose text is unchanged but whose title changed are embedded again."""
        model, cache = FakeModel(), FakeCache()
        embedder = _embedder(model, cache=cache)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(_document("a", ["one"])))
            await embedder.consume_batch(await _record(_document("a", ["one"], title="Manual")))

        assert model.calls == [["Guide\nSetup\none"], ["Manual\nSetup\none"]]

    async def test_another_model_version_never_reads_this_ones_vectors(self) -> None:
        """Vectors are cached per model version: a new model embeds everything again."""
        cache = FakeCache()
        old, new = FakeModel("fake@1"), FakeModel("fake@2")
        for model in (old, new):
            embedder = _embedder(model, cache=cache)
            async with TestKafkaBroker(embedder.broker):
                await embedder.consume_batch(await _record(_document("a", ["one"])))

        assert (len(old.calls), len(new.calls)) == (1, 1)
        assert len(cache.vectors) == 2

    async def test_a_second_replica_reuses_what_the_first_embedded(self) -> None:
        """Two embedder instances sharing a cache embed each text once between them."""
        cache = FakeCache()
        first_model, second_model = FakeModel(), FakeModel()
        first, second = _embedder(first_model, cache=cache), _embedder(second_model, cache=cache)
        async with TestKafkaBroker(first.broker):
            await first.consume_batch(await _record(_document("a", ["one", "two"])))
        async with TestKafkaBroker(second.broker):
            await second.consume_batch(await _record(_document("b", ["two", "one"])))

        assert second_model.calls == []
        assert _vectors(second.received.embedded[0]) == _vectors(first.received.embedded[0])[::-1]

    async def test_fresh_vectors_are_published_as_the_cache_returns_them(self) -> None:
        """Fresh vectors are rounded to float32 like cached ones, so both paths publish the same."""

        class PreciseModel(FakeModel):
            def embed(self, texts: Sequence[str]) -> list[list[float]]:
                return [[0.1, 1 / 3] for _ in texts]

        cache = FakeCache()
        embedder = _embedder(PreciseModel(), cache=cache)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(_document("a", ["one"])))
            await embedder.consume_batch(await _record(_document("a", ["one"], version=2)))

        fresh, cached = (_vectors(event)[0] for event in embedder.received.embedded)
        assert fresh == cached
        assert fresh[0] != 0.1
        assert math.isclose(fresh[0], 0.1, rel_tol=1e-7)

    async def test_a_failing_cache_costs_embedding_never_the_batch(self) -> None:
        """With the cache failing, chunks are embedded and published; the errors are counted."""
        model, cache = FakeModel(), FakeCache()
        cache.failure = ConnectionError("Redis is down")
        embedder = _embedder(model, cache=cache)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(_document("a", ["one", "two"])))

        assert len(model.calls) == 1
        [event] = embedder.received.embedded
        assert _vectors(event) == [[15.0, 3.0], [15.0, 3.0]]
        assert [s.stage for s in embedder.received.statuses] == ["embedded"]
        assert embedder.received.letters == []
        samples = await _scrape(embedder.app)
        assert _sample(samples, "ragstream_embedding_cache_errors_total", operation="get") == 1
        assert _sample(samples, "ragstream_embedding_cache_misses_total") == 0

    async def test_a_failing_store_still_publishes(self) -> None:
        """A cache that answers lookups but fails to store leaves the vectors published."""

        class ReadOnlyCache(FakeCache):
            async def put_many(self, items: Sequence[tuple[str, Sequence[float]]]) -> None:
                raise TimeoutError("Timeout writing to socket")

        embedder = _embedder(FakeModel(), cache=ReadOnlyCache())
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(_document("a", ["one"])))

        assert [event.doc_id for event in embedder.received.embedded] == ["a"]
        samples = await _scrape(embedder.app)
        assert _sample(samples, "ragstream_embedding_cache_errors_total", operation="put") == 1

    async def test_after_a_failure_the_cache_is_left_alone_for_a_while(self) -> None:
        """Batches right after a cache failure do not wait on the cache again."""
        cache = FakeCache()
        cache.failure = ConnectionError("Redis is down")
        embedder = _embedder(FakeModel(), cache=cache)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(_document("a", ["one"])))
            cache.failure = None
            await embedder.consume_batch(await _record(_document("b", ["two"])))

        assert len(cache.gets) == 1
        assert len(embedder.received.embedded) == 2

    async def test_the_cache_is_tried_again_after_the_cool_down(self) -> None:
        """Once the cool-down has passed, the next batch uses the recovered cache."""
        cache = FakeCache()
        cache.failure = ConnectionError("Redis is down")
        settings = EmbedderSettings(embedding_cache_cooldown_s=0)
        embedder = _embedder(FakeModel(), settings, cache=cache)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(_document("a", ["one"])))
            cache.failure = None
            await embedder.consume_batch(await _record(_document("b", ["two"])))

        assert len(cache.gets) == 2
        assert len(cache.vectors) == 1

    async def test_without_a_cache_nothing_is_counted_as_missed(self) -> None:
        """With no cache configured every text is embedded and no cache metric moves."""
        model = FakeModel()
        embedder = _embedder(model)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(await _record(_document("a", ["one"])))
            await embedder.consume_batch(await _record(_document("a", ["one"], version=2)))

        assert len(model.calls) == 2
        samples = await _scrape(embedder.app)
        assert _sample(samples, "ragstream_embedding_cache_misses_total") == 0
        assert _sample(samples, "ragstream_embedding_cache_hits_total") == 0


class TestMetrics:
    async def test_chunks_batch_sizes_and_embed_time_are_recorded(self) -> None:
        """Texts the model embedded are counted, the call's size observed and its time measured."""
        embedder = _embedder(FakeModel())
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(_document("a", ["one", "two"])),
                await _record(_document("b", ["one"])),
            )

        samples = await _scrape(embedder.app)
        service = ("service", "embedder")
        # "one" appears twice in the batch and is embedded once.
        assert samples[("ragstream_embedded_chunks_total", frozenset({service}))] == 2
        assert samples[("ragstream_embedding_batch_size_sum", frozenset({service}))] == 2
        stage = frozenset({service, ("stage", "embed")})
        assert samples[("ragstream_stage_duration_seconds_count", stage)] == 1


class TestLifespan:
    async def test_lifespan_loads_the_model_when_none_is_injected(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without an injected model, the lifespan loads one before consuming starts."""
        loaded = FakeModel(version="loaded@2")
        monkeypatch.setattr(ragstream_embedder.app, "load_model", lambda settings: loaded)
        embedder = _embedder(model=None)

        async with TestKafkaBroker(embedder.broker), embedder.app.lifespan_context():
            await embedder.consume_batch(await _record(_document("a", ["one"])))

        assert [event.model for event in embedder.received.embedded] == ["loaded@2"]
        assert len(loaded.calls) == 1

    async def test_an_unreachable_redis_does_not_stop_the_embedder(self) -> None:
        """With RAGSTREAM_REDIS_URL pointing nowhere, the embedder starts and embeds without it."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        settings = EmbedderSettings(redis_url=f"redis://127.0.0.1:{closed_port}/0")
        model = FakeModel()
        embedder = _embedder(model, settings)

        async with TestKafkaBroker(embedder.broker), embedder.app.lifespan_context():
            await embedder.consume_batch(await _record(_document("a", ["one"])))

        assert [event.doc_id for event in embedder.received.embedded] == ["a"]
        assert len(model.calls) == 1
        samples = await _scrape(embedder.app)
        assert _sample(samples, "ragstream_embedding_cache_errors_total", operation="get") == 1

    async def test_a_hung_redis_delays_a_batch_by_its_timeout_only(self) -> None:
        """A Redis that accepts connections but never answers costs one batch about 2 timeouts."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen()  # the kernel completes handshakes; nobody ever reads or answers
            settings = EmbedderSettings(
                redis_url=f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
                embedding_cache_timeout_s=0.2,
            )
            embedder = _embedder(FakeModel(), settings)
            async with TestKafkaBroker(embedder.broker), embedder.app.lifespan_context():
                started = time.monotonic()
                await embedder.consume_batch(await _record(_document("a", ["one"])))
                first = time.monotonic() - started
                started = time.monotonic()
                await embedder.consume_batch(await _record(_document("b", ["two"])))
                second = time.monotonic() - started

        assert [event.doc_id for event in embedder.received.embedded] == ["a", "b"]
        assert first < 2.0
        assert second < 0.15  # the cool-down: no waiting on the cache again


@pytest.fixture(scope="module")
def real_model() -> Any:
    """all-MiniLM-L6-v2 loaded once for the module (several seconds)."""
    from ragstream_embedder.adapters.model import load_model

    return load_model(EmbedderSettings(model_threads=2))


class TestRealModel:
    async def test_real_model_embeds_a_batch_through_the_handler(self, real_model: Any) -> None:
        """The real model gives unit vectors of 384 dimensions, closer for related chunks."""
        embedder = _embedder(real_model)
        async with TestKafkaBroker(embedder.broker):
            await embedder.consume_batch(
                await _record(
                    _document("a", ["Install the package with pip.", "Bananas are yellow."])
                ),
                await _record(_document("b", ["Use pip to install the package."])),
            )

        first, second = embedder.received.embedded
        vectors = [chunk.vector for chunk in first.chunks] + [second.chunks[0].vector]
        assert all(len(vector) == 384 for vector in vectors)
        assert all(math.isclose(math.hypot(*vector), 1.0, abs_tol=1e-4) for vector in vectors)

        def similarity(u: list[float], v: list[float]) -> float:
            return sum(a * b for a, b in zip(u, v, strict=True))

        assert similarity(vectors[0], vectors[2]) > similarity(vectors[1], vectors[2]) + 0.2
        assert first.model == real_model.version
