"""Tests for one ingest run's publishing and waiting, on FastStream's in-memory Kafka broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from faststream.kafka import KafkaBroker, TestKafkaBroker

from ragstream_cli.ingest.display import Counters, ProgressDisplay
from ragstream_cli.ingest.publisher import IngestError, IngestReport, IngestRun
from ragstream_cli.ingest.sources import Plan, discover
from ragstream_common.events import DocumentStatus
from ragstream_common.messaging import KafkaMessage, create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.settings import ServiceSettings
from ragstream_common.topics import DOCUMENT_STATUS, DOCUMENTS


@dataclass
class Harness:
    """A broker on the in-memory test Kafka, and the records it received on documents."""

    broker: KafkaBroker
    records: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[DocumentStatus] = field(default_factory=list)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """The CLI's own broker, connected to FastStream's test broker, recording documents."""
    broker = create_broker(ServiceSettings(service_name="ragstream-cli"), ServiceMetrics("t"))
    recorded = Harness(broker)

    @broker.subscriber(DOCUMENTS, group_id="recorder")
    async def keep(message: KafkaMessage) -> None:
        recorded.records.append(
            {
                "key": getattr(message.raw_message, "key", None),
                "headers": message.headers,
                "body": json.loads(message.body),
            }
        )

    @broker.subscriber(DOCUMENT_STATUS, group_id="status-recorder")
    async def keep_status(status: DocumentStatus) -> None:
        recorded.statuses.append(status)

    async with TestKafkaBroker(broker):
        yield recorded


def _run(plan: Plan) -> IngestRun:
    counters = Counters(total=plan.document_count())
    report = IngestReport(counters=counters, wait=True)
    return IngestRun(report, ProgressDisplay(counters, mode="off", wait=True))


def _tree(tmp_path: Path, lines: list[str] | None = None) -> Plan:
    (tmp_path / "a.md").write_text("# A\n\nAlpha.\n")
    (tmp_path / "b.txt").write_text("Bravo.\n")
    if lines is not None:
        (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    return discover([str(tmp_path)])


class TestPublishAll:
    async def test_documents_go_to_the_topic_keyed_by_doc_id(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """Every document is one upsert on documents, keyed by its id, in the wire format."""
        plan = _tree(tmp_path)
        run = _run(plan)
        await run.publish_all(harness.broker, plan, "acme")
        keys = sorted(record["key"] for record in harness.records)
        assert keys == [b"a.md", b"b.txt"]
        assert {record["headers"]["event-type"] for record in harness.records} == {
            "DocumentUpserted"
        }
        assert {record["body"]["tenant"] for record in harness.records} == {"acme"}
        assert (run.counters.published, run.counters.published_bytes) == (
            2,
            len("# A\n\nAlpha.\n") + len("Bravo.\n"),
        )

    async def test_each_document_is_announced_as_received(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """After each upsert a "received" status goes out, stamped with the upsert's time."""
        plan = _tree(tmp_path)
        await _run(plan).publish_all(harness.broker, plan, "default")
        upserted_at = {r["body"]["doc_id"]: r["body"]["occurred_at"] for r in harness.records}
        assert sorted((s.doc_id, s.stage) for s in harness.statuses) == [
            ("a.md", "received"),
            ("b.txt", "received"),
        ]
        for status in harness.statuses:
            assert status.occurred_at == datetime.fromisoformat(upserted_at[status.doc_id])

    async def test_small_documents_are_read_many_to_a_trip_off_the_loop(
        self, harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Reading leaves the event loop once for many small documents, not once for each."""
        lines = [json.dumps({"doc_id": f"d{number}", "content": "x"}) for number in range(100)]
        plan = _tree(tmp_path, lines)
        trips = 0
        to_thread = asyncio.to_thread

        async def counted(func: Any, /, *args: Any, **kwargs: Any) -> Any:
            nonlocal trips
            trips += 1
            return await to_thread(func, *args, **kwargs)

        monkeypatch.setattr(asyncio, "to_thread", counted)
        await _run(plan).publish_all(harness.broker, plan, "default")
        assert len(harness.records) == 102
        assert trips <= 6

    async def test_bad_lines_are_reported_and_the_rest_published(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """An invalid JSON line is listed as not published and leaves the total."""
        plan = _tree(tmp_path, ['{"content": "ok"}', "{broken"])
        run = _run(plan)
        await run.publish_all(harness.broker, plan, "default")
        assert len(harness.records) == 3
        assert [p.origin for p in run.report.invalid] == [f"{tmp_path / 'c.jsonl'}:2"]
        assert run.counters.total == 3

    async def test_repeated_doc_id_is_published_in_input_order(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """The later line of a repeated doc id reaches Kafka later, so it wins."""
        lines = [json.dumps({"doc_id": "x", "content": f"v{n}"}) for n in range(3)]
        plan = _tree(tmp_path, lines)
        run = _run(plan)
        await run.publish_all(harness.broker, plan, "default")
        contents = [r["body"]["content"] for r in harness.records if r["key"] == b"x"]
        assert contents == ["v0", "v1", "v2"]
        assert (run.counters.repeats, run.counters.documents) == (2, 3)

    async def test_settles_once_published_and_every_document_is_indexed(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """all_settled is set only after publishing, when the last document is indexed."""
        plan = _tree(tmp_path)
        run = _run(plan)
        await run.publish_all(harness.broker, plan, "default")
        assert not run.all_settled.is_set()
        for doc_id in ("a.md", "b.txt"):
            status = DocumentStatus(doc_id=doc_id, stage="indexed", version=1, chunk_count=2)
            outcome = run.watch.observe(status)
            assert outcome is not None
            run.on_outcome(("default", doc_id), outcome)
        assert run.all_settled.is_set()
        assert (run.counters.indexed, run.counters.chunks) == (2, 4)

    async def test_kafka_failure_stops_the_run(self, harness: Harness, tmp_path: Path) -> None:
        """A publish that fails for want of Kafka ends the run with an error."""
        harness.broker.publish = AsyncMock(side_effect=KafkaConnectionError())  # type: ignore[method-assign]
        plan = _tree(tmp_path)
        with pytest.raises(IngestError, match="publishing failed"):
            await _run(plan).publish_all(harness.broker, plan, "default")

    async def test_oversized_record_is_reported_and_the_run_goes_on(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """A record Kafka refuses as too large is one problem, not the end of the run."""
        harness.broker.publish = AsyncMock(side_effect=MessageSizeTooLargeError())  # type: ignore[method-assign]
        plan = _tree(tmp_path)
        run = _run(plan)
        await run.publish_all(harness.broker, plan, "default")
        assert len(run.report.invalid) == 2
        assert (run.watch.has_pending, run.counters.total) == (False, 0)


class TestWaitSettled:
    async def test_timeout_lists_the_pending_documents(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """Documents not settled within the timeout are reported by origin."""
        plan = _tree(tmp_path)
        run = _run(plan)
        await run.publish_all(harness.broker, plan, "default")
        follower = asyncio.create_task(asyncio.sleep(60))
        try:
            await run.wait_settled(follower, timeout_s=0.05)
        finally:
            follower.cancel()
        assert sorted(run.report.timed_out) == [str(tmp_path / "a.md"), str(tmp_path / "b.txt")]

    async def test_a_failed_status_reader_is_an_error(self) -> None:
        """If the status consumer dies, waiting stops with its error instead of timing out."""
        run = _run(Plan())

        async def broken() -> None:
            raise KafkaConnectionError()

        follower = asyncio.create_task(broken())
        with pytest.raises(IngestError, match="reading document-status failed"):
            await run.wait_settled(follower, timeout_s=5)
