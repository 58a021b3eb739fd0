"""Tests for the retriever's subscribers, on FastStream's in-memory broker with fake ports."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from ragstream_common import messaging
from ragstream_common.events import (
    ChunksEmbedded,
    ContextRetrieved,
    DeadLetter,
    DocumentStatus,
    EmbeddedChunk,
    QueryFilters,
    QueryRequested,
    utc_now,
)
from ragstream_common.messaging import KafkaMessage, create_broker, publish_event
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import CONTEXTS, DOCUMENT_STATUS, EMBEDDINGS, QUERIES, dlq_name
from ragstream_retriever.app import create_app
from ragstream_retriever.dependencies import Dependencies
from ragstream_retriever.domain import (
    DocumentRecord,
    IndexedChunk,
    LiveVersion,
    MetadataFilter,
    SearchHit,
)
from ragstream_retriever.handlers import build_router
from ragstream_retriever.settings import RetrieverSettings

DIMS = 4


@dataclass
class FakeIndex:
    """An in-memory ChunkIndex with Weaviate's semantics: write by id, delete by filter.

    It logs every write, can fail a named step once (a crash at that point), and serves search
    hits either from ``hits`` or, one list per call, from ``hit_rounds``.
    """

    objects: dict[Any, IndexedChunk] = field(default_factory=dict)
    records: dict[tuple[str, str], DocumentRecord] = field(default_factory=dict)
    hits: list[SearchHit] = field(default_factory=list)
    hit_rounds: list[list[SearchHit]] = field(default_factory=list)
    searches: list[dict[str, Any]] = field(default_factory=list)
    lookups: list[set[str]] = field(default_factory=list)
    record_lookups: list[set[str]] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    inserted: int = 0
    fail_once: str | None = None

    def _step(self, name: str) -> None:
        if self.fail_once == name:
            self.fail_once = None
            raise ConnectionError(f"weaviate went away during {name}")
        self.writes.append(name)

    async def document_records(
        self, tenant: str, doc_ids: Collection[str]
    ) -> dict[str, DocumentRecord]:
        self.record_lookups.append(set(doc_ids))
        found = (self.records.get((tenant, doc_id)) for doc_id in doc_ids)
        return {record.doc_id: record for record in found if record is not None}

    async def live_versions(self, tenant: str, doc_ids: Collection[str]) -> dict[str, LiveVersion]:
        self.lookups.append(set(doc_ids))
        found = (self.records.get((tenant, doc_id)) for doc_id in doc_ids)
        return {
            record.doc_id: LiveVersion(record.live_version, record.live_chunk_count)
            for record in found
            if record is not None
        }

    async def write_records(self, records: Sequence[DocumentRecord]) -> None:
        self._step("record")
        self.records.update({(record.tenant, record.doc_id): record for record in records})

    async def insert(self, chunks: Sequence[IndexedChunk]) -> None:
        self._step("insert")
        self.inserted += len(chunks)
        self.objects.update({chunk.object_id: chunk for chunk in chunks})

    async def delete_other_versions(self, tenant: str, keep: Mapping[str, int]) -> int:
        self._step("retire")
        doomed = [
            key
            for key, c in self.objects.items()
            if c.tenant == tenant and c.doc_id in keep and c.version != keep[c.doc_id]
        ]
        for key in doomed:
            del self.objects[key]
        return len(doomed)

    async def search(
        self,
        *,
        tenant: str,
        text: str,
        vector: Sequence[float],
        alpha: float,
        limit: int,
        filters: MetadataFilter | None = None,
    ) -> list[SearchHit]:
        self.searches.append(
            {
                "tenant": tenant,
                "text": text,
                "vector": list(vector),
                "alpha": alpha,
                "limit": limit,
                "filters": filters,
            }
        )
        hits = self.hit_rounds.pop(0) if self.hit_rounds else self.hits
        return hits[:limit]

    def serve(self, *hits: SearchHit) -> None:
        """Return ``hits`` from every search, each hit's version being its document's live one."""
        self.hits = list(hits)
        for hit in hits:
            self.make_live(hit.doc_id, hit.version)

    def make_live(self, doc_id: str, version: int, chunks: int = 1) -> None:
        self.records["acme", doc_id] = DocumentRecord(
            "acme", doc_id, version, version, "h", "f", chunks
        )

    def chunk_ids(self, doc_id: str = "doc-1") -> list[str]:
        return sorted(c.chunk_id for c in self.objects.values() if c.doc_id == doc_id)

    def versions(self, doc_id: str = "doc-1") -> set[int]:
        return {c.version for c in self.objects.values() if c.doc_id == doc_id}

    def record(self, doc_id: str = "doc-1") -> DocumentRecord:
        return self.records["acme", doc_id]


class FakeModel:
    """A query model returning a fixed vector for every text it is asked to embed."""

    dimensions = DIMS

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[0.5] * DIMS for _ in texts]


@dataclass
class Harness:
    """A broker with the retriever's router, fake ports, and collectors on its output topics."""

    broker: KafkaBroker
    deps: Dependencies
    index: FakeIndex
    model: FakeModel
    statuses: list[DocumentStatus] = field(default_factory=list)
    contexts: list[tuple[ContextRetrieved, bytes | None]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)

    def sample(self, name: str, **labels: str) -> float:
        value = self.deps.metrics.registry.get_sample_value(
            name, {"service": "retriever", **labels}
        )
        return value or 0.0


def _settings(**overrides: Any) -> RetrieverSettings:
    return RetrieverSettings(embedding_dimensions=DIMS, **overrides)


def _harness(**overrides: Any) -> Harness:
    settings = _settings(**overrides)
    metrics = ServiceMetrics(settings.service_name)
    broker = create_broker(settings, metrics)
    index, model = FakeIndex(), FakeModel()
    deps = Dependencies(settings, metrics, broker, index_port=index, model_port=model)
    broker.include_router(build_router(deps))
    harness = Harness(broker, deps, index, model)

    @broker.subscriber(DOCUMENT_STATUS)
    async def collect_status(status: DocumentStatus) -> None:
        harness.statuses.append(status)

    @broker.subscriber(CONTEXTS)
    async def collect_context(context: ContextRetrieved, message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple)  # a single record, not a batch
        harness.contexts.append((context, record.key))

    @broker.subscriber(dlq_name(EMBEDDINGS))
    async def collect_letter(letter: DeadLetter) -> None:
        harness.letters.append(letter)

    @broker.subscriber(dlq_name(QUERIES))
    async def collect_query_letter(letter: DeadLetter) -> None:
        harness.letters.append(letter)

    return harness


def _version(
    version: int,
    *chunk_ids: str,
    dims: int = DIMS,
    age_s: float = 2.0,
    doc_hash: str | None = None,
    doc_id: str = "doc-1",
) -> ChunksEmbedded:
    """A version of doc-1 (or ``doc_id``) whose doc_hash, unless given, follows from its chunks."""
    return ChunksEmbedded(
        doc_id=doc_id,
        tenant="acme",
        version=version,
        title="Guide",
        tags=["ops"],
        doc_hash=doc_hash if doc_hash is not None else "+".join(chunk_ids),
        model="all-MiniLM-L6-v2",
        chunks=[
            EmbeddedChunk(
                chunk_id=chunk_id,
                doc_id=doc_id,
                position=position,
                text=f"text {chunk_id}",
                content_hash=f"h-{chunk_id}",
                vector=[0.1] * dims,
            )
            for position, chunk_id in enumerate(chunk_ids)
        ],
        published_at=utc_now() - timedelta(seconds=age_s),
    )


def _hit(doc_id: str, chunk_id: str, score: float, version: int = 1) -> SearchHit:
    return SearchHit(chunk_id, doc_id, f"title {doc_id}", f"text {chunk_id}", 0, (), score, version)


async def _send(broker: KafkaBroker, *events: ChunksEmbedded) -> None:
    for event in events:
        await publish_event(broker, event, topic=EMBEDDINGS, key=event.doc_id)


class TestIndexRole:
    async def test_version_is_inserted_switched_to_and_reported_indexed(self) -> None:
        """A new document's chunks are stored, its record names it live, and the status says so."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", "c2"))

        assert h.index.chunk_ids() == ["c1", "c2"]
        record = h.index.record()
        assert (record.latest_version, record.live_version, record.live_chunk_count) == (1, 1, 2)
        assert record.live_doc_hash == "c1+c2"
        [status] = h.statuses
        assert (status.stage, status.version, status.chunk_count) == ("indexed", 1, 2)
        assert status.doc_hash == "c1+c2"
        assert h.sample("ragstream_chunks_written_total") == 2

    async def test_chunks_carry_tags_and_doc_hash(self) -> None:
        """Each stored chunk holds the document's tags and hash, for later filters and audits."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1"))

        [chunk] = h.index.objects.values()
        assert (chunk.properties()["tags"], chunk.properties()["doc_hash"]) == (["ops"], "c1")

    async def test_insert_comes_before_the_switch_and_retirement_after(self) -> None:
        """The new chunks exist before the record names them live; old ones go only afterwards."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1"), _version(2, "c2"))

        assert h.index.writes == ["insert", "record", "retire", "insert", "record", "retire"]

    async def test_freshness_is_observed_from_publication(self) -> None:
        """The freshness histogram records about now minus published_at for the version."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", age_s=3.0))

        count = h.sample("ragstream_document_freshness_seconds_count", stage="indexed")
        total = h.sample("ragstream_document_freshness_seconds_sum", stage="indexed")
        assert count == 1
        assert 3.0 <= total < 10.0

    async def test_identical_content_writes_no_chunk_and_moves_latest(self) -> None:
        """The same content as versions 1, 2, 3 is written once; the later two only bump latest."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, *(_version(v, "c1", "c2") for v in (1, 2, 3)))

        assert h.index.inserted == 2
        assert h.index.versions() == {1}
        record = h.index.record()
        assert (record.latest_version, record.live_version) == (3, 1)
        assert [(s.stage, s.version, s.chunk_count) for s in h.statuses] == [
            ("indexed", 1, 2),
            ("indexed", 2, 2),
            ("indexed", 3, 2),
        ]
        assert h.sample("ragstream_unchanged_versions_total") == 2
        assert h.index.writes.count("retire") == 1

    async def test_same_hash_with_new_tags_is_applied(self) -> None:
        """Unchanged text with different tags is a change: the stored tags must follow."""
        h = _harness()
        retagged = _version(2, "c1").model_copy(update={"tags": ["ops", "new"]})
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1"), retagged)

        assert h.index.versions() == {2}
        [chunk] = h.index.objects.values()
        assert chunk.tags == ("ops", "new")

    async def test_update_retires_vanished_chunks(self) -> None:
        """After an update only the new version's chunks remain, and the record names it live."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", "c2", "c3"), _version(2, "c1", "c4"))

        assert h.index.chunk_ids() == ["c1", "c4"]
        assert h.index.versions() == {2}
        assert h.index.record().live_version == 2
        assert h.sample("ragstream_chunks_retired_total") == 3

    async def test_older_version_after_newer_is_skipped(self) -> None:
        """A stale version is acknowledged without touching the index or the status topic."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(2, "c1", "c4"), _version(1, "c1", "c2", "c3"))

        assert h.index.chunk_ids() == ["c1", "c4"]
        assert h.index.writes == ["insert", "record", "retire"]
        assert [status.version for status in h.statuses] == [2]
        assert h.sample("ragstream_stale_versions_skipped_total") == 1

    async def test_versions_out_of_order_end_at_the_newest(self) -> None:
        """Versions 3, 1, 2 delivered in that order leave version 3 live and alone."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(3, "c3"), _version(1, "c1"), _version(2, "c2"))

        assert h.index.chunk_ids() == ["c3"]
        assert h.index.record().live_version == 3
        assert h.sample("ragstream_stale_versions_skipped_total") == 2

    async def test_empty_version_deletes_everything_and_reports_deleted(self) -> None:
        """A version without chunks switches the document to nothing and removes every chunk."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", "c2"), _version(2))

        assert h.index.chunk_ids() == []
        record = h.index.record()
        assert (record.live_version, record.live_chunk_count, record.live_doc_hash) == (2, 0, None)
        assert (h.statuses[-1].stage, h.statuses[-1].chunk_count) == ("deleted", 0)

    async def test_deleted_document_is_not_resurrected_by_an_older_version(self) -> None:
        """After a deletion, a late older version is still recognised as stale."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1"), _version(2), _version(1, "c1"))

        assert h.index.chunk_ids() == []
        assert h.sample("ragstream_stale_versions_skipped_total") == 1

    async def test_recreated_document_with_its_old_content_is_indexed(self) -> None:
        """Content equal to the version before a deletion is applied again, not called unchanged."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1"), _version(2), _version(3, "c1"))

        assert h.index.chunk_ids() == ["c1"]
        assert h.index.record().live_version == 3

    async def test_redelivery_of_the_live_version_writes_no_chunk(self) -> None:
        """The live version delivered again re-runs only the retirement and is reported again."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", "c2"), _version(1, "c1", "c2"))

        assert h.index.writes == ["insert", "record", "retire", "retire"]
        assert len(h.index.objects) == 2
        assert [status.version for status in h.statuses] == [1, 1]

    async def test_crash_before_the_switch_leaves_the_old_version_live(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failed record write leaves the old version live; the redelivery completes the switch."""
        monkeypatch.setattr(messaging, "REDELIVERY_BACKOFF_SECONDS", 0.0)
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", "c2"))
            h.index.fail_once = "record"
            with pytest.raises(ConnectionError):
                await _send(broker, _version(2, "c1", "c3"))

            assert h.index.record().live_version == 1
            assert h.index.versions() == {1, 2}
            await _send(broker, _version(2, "c1", "c3"))

        assert h.index.chunk_ids() == ["c1", "c3"]
        assert h.index.record().live_version == 2
        assert [status.version for status in h.statuses] == [1, 2]

    async def test_crash_after_the_switch_is_finished_by_the_redelivery(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failed retirement is re-run when the same version is redelivered, not skipped."""
        monkeypatch.setattr(messaging, "REDELIVERY_BACKOFF_SECONDS", 0.0)
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", "c2"))
            h.index.fail_once = "retire"
            with pytest.raises(ConnectionError):
                await _send(broker, _version(2, "c3"))

            assert h.index.versions() == {1, 2}
            await _send(broker, _version(2, "c3"))

        assert h.index.chunk_ids() == ["c3"]
        assert h.index.writes[-1] == "retire"
        assert h.index.inserted == 3
        assert h.sample("ragstream_stale_versions_skipped_total") == 0

    async def test_vectors_of_the_wrong_size_are_dead_lettered(self) -> None:
        """A message whose vectors do not fit the index goes to embeddings.dlq, not the index."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await _send(broker, _version(1, "c1", dims=DIMS + 1))

        assert h.index.objects == {}
        assert h.statuses == []
        [letter] = h.letters
        assert letter.error_type == "PoisonMessageError"
        assert letter.key == "doc-1"

    async def test_index_failure_is_not_acknowledged(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A transient index error propagates (for redelivery) and publishes no status."""
        monkeypatch.setattr(messaging, "REDELIVERY_BACKOFF_SECONDS", 0.0)
        h = _harness()
        h.index.fail_once = "insert"
        async with TestKafkaBroker(h.broker) as broker:
            with pytest.raises(ConnectionError):
                await _send(broker, _version(1, "c1"))

        assert h.statuses == []
        assert h.index.records == {}
        assert h.letters == []


class TestIndexBatches:
    async def test_a_batch_is_one_request_per_step_and_poison_goes_alone(self) -> None:
        """Versions consumed together share each write step; a document's second version in the
        batch gets a round of its own, after its first; a bad one is dead-lettered alone."""
        h = _harness()
        batch = [
            _version(1, "a1", doc_id="doc-a"),
            _version(1, "b1", "b2", doc_id="doc-b"),
            _version(1, "c1", doc_id="doc-c", dims=DIMS + 1),
            _version(2, "a2", doc_id="doc-a"),
        ]
        async with TestKafkaBroker(h.broker) as broker:
            await broker.publish_batch(
                *(event.model_dump_json().encode() for event in batch), topic=EMBEDDINGS
            )

        assert h.index.record_lookups == [{"doc-a", "doc-b"}, {"doc-a"}]
        assert h.index.writes == ["insert", "record", "retire", "insert", "record", "retire"]
        assert (h.index.chunk_ids("doc-a"), h.index.chunk_ids("doc-b")) == (["a2"], ["b1", "b2"])
        assert (h.index.record("doc-a").live_version, h.index.record("doc-b").live_version) == (
            2,
            1,
        )
        assert [(s.doc_id, s.version) for s in h.statuses] == [
            ("doc-a", 1),
            ("doc-b", 1),
            ("doc-a", 2),
        ]
        [letter] = h.letters
        assert letter.error_type == "PoisonMessageError"
        assert "'doc-c' has vectors not of size 4" in letter.error
        assert h.index.chunk_ids("doc-c") == []
        assert h.sample("ragstream_chunks_written_total") == 4
        assert h.sample("ragstream_chunks_retired_total") == 1

    async def test_an_older_version_later_in_the_same_batch_is_stale(self) -> None:
        """Version 2 then version 1 of a document in one batch: 1 is skipped, 2 stays live."""
        h = _harness()
        async with TestKafkaBroker(h.broker) as broker:
            await broker.publish_batch(
                *(event.model_dump_json().encode() for event in (_version(2, "c2"), _version(1))),
                topic=EMBEDDINGS,
            )

        assert h.index.record().live_version == 2
        assert h.index.chunk_ids() == ["c2"]
        assert [status.version for status in h.statuses] == [2]
        assert h.sample("ragstream_stale_versions_skipped_total") == 1

    async def test_a_failed_step_fails_the_whole_batch_and_redelivery_converges(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A crash between the inserts and the switch leaves every old version live; the batch
        redelivered completes every switch."""
        monkeypatch.setattr(messaging, "REDELIVERY_BACKOFF_SECONDS", 0.0)
        h = _harness()
        first = [_version(1, "x1", doc_id=doc) for doc in ("doc-a", "doc-b")]
        second = [_version(2, "x2", doc_id=doc) for doc in ("doc-a", "doc-b")]
        payloads = [
            [event.model_dump_json().encode() for event in group] for group in (first, second)
        ]
        async with TestKafkaBroker(h.broker) as broker:
            await broker.publish_batch(*payloads[0], topic=EMBEDDINGS)
            h.index.fail_once = "record"
            with pytest.raises(ConnectionError):
                await broker.publish_batch(*payloads[1], topic=EMBEDDINGS)

            assert [h.index.record(doc).live_version for doc in ("doc-a", "doc-b")] == [1, 1]
            assert len(h.statuses) == 2
            await broker.publish_batch(*payloads[1], topic=EMBEDDINGS)

        assert [h.index.record(doc).live_version for doc in ("doc-a", "doc-b")] == [2, 2]
        assert [h.index.chunk_ids(doc) for doc in ("doc-a", "doc-b")] == [["x2"], ["x2"]]
        assert [(s.doc_id, s.version) for s in h.statuses[2:]] == [("doc-a", 2), ("doc-b", 2)]


class _ScriptedConsumer:
    """Answers ``getmany`` from a script of polls, recording each poll's timeout."""

    def __init__(self, *polls: list[str]) -> None:
        self.polls = list(polls)
        self.timeouts: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        self.timeouts.append(timeout_ms)
        records = self.polls.pop(0) if self.polls else []
        return {"embeddings-0": records[:max_records]} if records else {}


class TestIndexBatchWait:
    def _index_subscriber(self, harness: Harness) -> Any:
        [subscriber] = [
            subscriber
            for subscriber in harness.broker.subscribers
            if EMBEDDINGS in subscriber.topic_names
        ]
        return subscriber

    async def test_a_burst_of_versions_is_taken_as_one_batch(self) -> None:
        """Versions that keep arriving join the batch: an embedder's model call published over
        several fetches is one set of index writes, not one per fetch."""
        consumer = _ScriptedConsumer(["a", "b"], ["c"], ["d", "e"], [])
        batch = await self._index_subscriber(_harness()).get_msg(consumer)
        assert batch == ("a", "b", "c", "d", "e")

    async def test_a_lone_version_waits_only_the_quiet_time(self) -> None:
        """A document updated on its own is indexed after a short pause, not the longest wait."""
        settings = _settings()
        assert 0 < settings.index_batch_quiet_ms < settings.index_batch_max_wait_ms
        consumer = _ScriptedConsumer(["a"], [], ["late"])
        assert await self._index_subscriber(_harness()).get_msg(consumer) == ("a",)
        assert 0 < consumer.timeouts[1] <= settings.index_batch_quiet_ms

    async def test_the_environment_can_turn_the_wait_off(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no wait, each fetch is a batch (the behaviour before the wait existed)."""
        monkeypatch.setenv("RAGSTREAM_INDEX_BATCH_MAX_WAIT_MS", "0")
        consumer = _ScriptedConsumer(["a", "b"], ["c"])
        assert await self._index_subscriber(_harness()).get_msg(consumer) == ("a", "b")
        assert len(consumer.timeouts) == 1


class TestSearchRole:
    async def test_a_batch_of_queries_is_embedded_in_one_call_and_poison_goes_alone(self) -> None:
        """Queries waiting together share one model call; a malformed one is dead-lettered alone."""
        h = _harness()
        h.index.serve(_hit("a", "a1", 0.9))
        first = QueryRequested(query_id="q-1", tenant="acme", text="setup?", reply_to="gw")
        second = QueryRequested(query_id="q-2", tenant="acme", text="scaling?", reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await broker.publish_batch(
                first.model_dump_json().encode(),
                b"{not json",
                second.model_dump_json().encode(),
                topic=QUERIES,
            )

        assert h.model.calls == [["setup?", "scaling?"]]
        assert sorted(context.query.query_id for context, _ in h.contexts) == ["q-1", "q-2"]
        [letter] = h.letters
        assert (letter.original_topic, letter.error_type) == (QUERIES, "ValidationError")
        assert base64.b64decode(letter.original_value_b64) == b"{not json"
        assert h.sample("ragstream_query_batch_size_count") == 1
        assert h.sample("ragstream_query_batch_size_sum") == 2

    async def test_a_failing_search_fails_its_batch_after_the_others_are_answered(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A transient error in one query's search is raised (the batch is redelivered) only after
        the other queries of the batch were searched and published."""
        monkeypatch.setattr(messaging, "REDELIVERY_BACKOFF_SECONDS", 0.0)
        h = _harness()
        h.index.serve(_hit("a", "a1", 0.9))
        failing_search = h.index.search

        async def search(**options: Any) -> list[SearchHit]:
            if options["text"] == "broken?":
                raise ConnectionError("weaviate went away")
            return await failing_search(**options)

        h.index.search = search  # type: ignore[method-assign]
        queries = [
            QueryRequested(query_id=f"q-{text}", tenant="acme", text=text, reply_to="gw")
            for text in ("broken?", "fine?")
        ]
        async with TestKafkaBroker(h.broker) as broker:
            with pytest.raises(ConnectionError):
                await broker.publish_batch(
                    *(query.model_dump_json().encode() for query in queries), topic=QUERIES
                )

        assert [context.query.text for context, _ in h.contexts] == ["fine?"]
        assert h.letters == []

    async def test_context_is_published_keyed_by_query_id(self) -> None:
        """A query yields a ContextRetrieved on contexts, keyed by its query id, timed, with its vector."""
        h = _harness()
        h.index.serve(_hit("a", "a1", 0.9), _hit("b", "b1", 0.8))
        query = QueryRequested(query_id="q-1", tenant="acme", text="setup?", top_k=2, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, key)] = h.contexts
        assert key == b"q-1"
        assert context.query == query
        assert [chunk.chunk_id for chunk in context.chunks] == ["a1", "b1"]
        assert set(context.timings) == {
            "embed_query_ms",
            "search_ms",
            "live_lookup_ms",
            "retrieve_ms",
        }
        assert context.timings["retrieve_ms"] >= context.timings["search_ms"]
        assert context.query_vector == [0.5] * DIMS

    async def test_search_is_filtered_by_tenant_with_the_configured_alpha(self) -> None:
        """The index is asked for the query's tenant, text, vector, alpha and an overfetch."""
        h = _harness(default_alpha=0.3, search_overfetch=4)
        query = QueryRequested(tenant="acme", text="setup?", top_k=5, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        assert h.index.searches == [
            {
                "tenant": "acme",
                "text": "setup?",
                "vector": [0.5] * DIMS,
                "alpha": 0.3,
                "limit": 20,
                "filters": MetadataFilter(),
            }
        ]

    async def test_the_querys_alpha_overrides_the_default(self) -> None:
        """A query that sets alpha is searched with it, not with default_alpha."""
        h = _harness(default_alpha=0.3)
        query = QueryRequested(tenant="acme", text="setup?", alpha=0.9, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        assert [search["alpha"] for search in h.index.searches] == [0.9]

    async def test_the_querys_filters_reach_the_index_normalised(self) -> None:
        """Sources and tags arrive deduplicated and sorted, dates in UTC, beside the tenant."""
        h = _harness()
        after = datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
        query = QueryRequested(
            tenant="acme",
            text="setup?",
            filters=QueryFilters(
                sources=["wiki", "blog", "wiki"], tags=["ops"], published_after=after
            ),
            reply_to="gw",
        )
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [search] = h.index.searches
        assert search["tenant"] == "acme"
        assert search["filters"] == MetadataFilter(
            sources=("blog", "wiki"),
            tags=("ops",),
            published_after=datetime(2024, 1, 1, tzinfo=UTC),
        )

    async def test_the_querys_min_score_cuts_weak_chunks(self) -> None:
        """Chunks scoring below the query's min_score stay out of the context."""
        h = _harness(min_score=0.0)
        h.index.serve(_hit("a", "a1", 0.9), _hit("b", "b1", 0.6), _hit("c", "c1", 0.3))
        query = QueryRequested(tenant="acme", text="setup?", min_score=0.5, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert [chunk.chunk_id for chunk in context.chunks] == ["a1", "b1"]

    async def test_without_a_min_score_the_setting_applies(self) -> None:
        """A query without min_score is cut at the retriever's min_score setting."""
        h = _harness(min_score=0.7)
        h.index.serve(_hit("a", "a1", 0.9), _hit("b", "b1", 0.6))
        query = QueryRequested(tenant="acme", text="setup?", reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert [chunk.chunk_id for chunk in context.chunks] == ["a1"]

    async def test_a_min_score_above_every_hit_publishes_an_empty_context(self) -> None:
        """When the cut excludes every chunk, the context is still published, empty."""
        h = _harness()
        h.index.serve(_hit("a", "a1", 0.9))
        query = QueryRequested(tenant="acme", text="setup?", min_score=0.95, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert context.chunks == []

    async def test_chunks_carry_their_source_and_tags(self) -> None:
        """The context's chunks name the source and tags the index returned for them."""
        h = _harness()
        hit = dataclasses.replace(_hit("a", "a1", 0.9), source="wiki", tags=("ops", "kafka"))
        h.index.serve(hit)
        query = QueryRequested(tenant="acme", text="setup?", reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert (context.chunks[0].source, context.chunks[0].tags) == ("wiki", ["ops", "kafka"])

    async def test_the_query_text_is_what_gets_embedded(self) -> None:
        """The model is asked for exactly one vector: the query's text."""
        h = _harness()
        query = QueryRequested(text="setup?", reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        assert h.model.calls == [["setup?"]]

    async def test_one_document_cannot_fill_the_context(self) -> None:
        """At most max_chunks_per_doc chunks of one document reach the context."""
        h = _harness(max_chunks_per_doc=2)
        crowd = [_hit("a", f"a{i}", 0.9 - i / 100) for i in range(4)]
        h.index.serve(*crowd, _hit("b", "b1", 0.1))
        query = QueryRequested(tenant="acme", text="setup?", top_k=3, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert [chunk.chunk_id for chunk in context.chunks] == ["a0", "a1", "b1"]

    async def test_only_live_versions_reach_the_context(self) -> None:
        """Hits of a document's other versions, or of a document not yet live, are dropped."""
        h = _harness()
        h.index.make_live("a", 2)
        h.index.hits = [
            _hit("a", "a1-old", 0.95, version=1),
            _hit("a", "a1", 0.9, version=2),
            _hit("new", "n1", 0.85, version=1),
            _hit("a", "a2-old", 0.8, version=1),
        ]
        query = QueryRequested(tenant="acme", text="setup?", top_k=5, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert [chunk.chunk_id for chunk in context.chunks] == ["a1"]
        assert h.index.lookups[0] == {"a", "new"}

    async def test_one_record_lookup_per_search_round(self) -> None:
        """The versions of all documents among the hits are read in a single lookup."""
        h = _harness()
        h.index.serve(_hit("a", "a1", 0.9), _hit("b", "b1", 0.8), _hit("c", "c1", 0.7))
        query = QueryRequested(tenant="acme", text="setup?", top_k=3, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        assert h.index.lookups == [{"a", "b", "c"}]
        assert len(h.index.searches) == 1

    async def test_document_switched_mid_search_gets_a_second_round(self) -> None:
        """Only old-version hits of a live document trigger one more search, which finds the new."""
        h = _harness()
        h.index.make_live("a", 2)
        h.index.hit_rounds = [[_hit("a", "a1-old", 0.9, version=1)]]
        h.index.hits = [_hit("a", "a1-new", 0.9, version=2)]
        query = QueryRequested(tenant="acme", text="setup?", top_k=3, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert [chunk.chunk_id for chunk in context.chunks] == ["a1-new"]
        assert [search["limit"] for search in h.index.searches] == [9, 9]
        assert h.sample("ragstream_search_extra_rounds_total") == 1

    async def test_hidden_hits_that_leave_the_context_short_widen_the_search(self) -> None:
        """When filtering leaves fewer than top_k and the index had more, twice as many are fetched."""
        h = _harness(search_overfetch=1, max_chunks_per_doc=5)
        h.index.make_live("a", 2)
        h.index.make_live("b", 1)
        old = [_hit("a", f"old{i}", 0.9, version=1) for i in range(2)]
        h.index.hits = [*old, _hit("a", "a1", 0.8, version=2), _hit("b", "b1", 0.7)]
        query = QueryRequested(tenant="acme", text="setup?", top_k=2, reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert [chunk.chunk_id for chunk in context.chunks] == ["a1", "b1"]
        assert [search["limit"] for search in h.index.searches] == [2, 4]

    async def test_rounds_are_bounded_by_the_setting(self) -> None:
        """With max_search_rounds=1, an unsettled document does not cause a second search."""
        h = _harness(max_search_rounds=1)
        h.index.make_live("a", 2)
        h.index.hits = [_hit("a", "a1-old", 0.9, version=1)]
        query = QueryRequested(tenant="acme", text="setup?", reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert context.chunks == []
        assert len(h.index.searches) == 1

    async def test_empty_result_is_still_published(self) -> None:
        """With nothing found, an empty context still goes out so the generator can answer."""
        h = _harness()
        query = QueryRequested(text="unknown topic", reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)

        [(context, _)] = h.contexts
        assert context.chunks == []
        assert h.sample("ragstream_retrieved_chunks_count") == 1


class TestRoles:
    async def test_index_only_deployment_does_not_consume_queries(self) -> None:
        """With the search role off, queries are left for other replicas and no model is used."""
        h = _harness(search_role=False)
        query = QueryRequested(text="setup?", reply_to="gw")
        async with TestKafkaBroker(h.broker) as broker:
            await publish_event(broker, query, topic=QUERIES, key=query.query_id)
            await _send(broker, _version(1, "c1"))

        assert h.contexts == []
        assert h.model.calls == []
        assert h.index.chunk_ids() == ["c1"]


class TestCreateApp:
    async def test_injected_ports_serve_a_query_end_to_end(self) -> None:
        """create_app wires the router to the injected index and model without any I/O."""
        index, model = FakeIndex(), FakeModel()
        index.serve(_hit("a", "a1", 0.9))
        app = create_app(_settings(), index=index, model=model)
        contexts: list[ContextRetrieved] = []
        [broker] = app.brokers
        assert isinstance(broker, KafkaBroker)

        @broker.subscriber(CONTEXTS)
        async def collect(context: ContextRetrieved) -> None:
            contexts.append(context)

        query = QueryRequested(tenant="acme", text="setup?", reply_to="gw")
        async with TestKafkaBroker(broker) as test_broker:
            await publish_event(test_broker, query, topic=QUERIES, key=query.query_id)

        assert [chunk.chunk_id for context in contexts for chunk in context.chunks] == ["a1"]
        assert len(model.calls) == 1
