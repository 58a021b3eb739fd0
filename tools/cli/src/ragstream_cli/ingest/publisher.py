"""One ingest run on Kafka: publish the documents with a bounded window, then wait for the index.

Publishing uses the platform's own broker and ``publish_event``, so the records are exactly what
the gateway would have sent. Each acknowledgement carries the record's offset, hence the version
the ingestor gives it. With ``wait``, a group-less consumer of ``document-status`` is positioned at
the end of every partition *before* the first publish, so no status of ours can slip past it.

Each document starts a trace of its own, as a gateway request does: its id is the correlation id
of the document's records, here and in every service downstream.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata
from faststream.kafka import KafkaBroker
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from ragstream_cli.ingest.display import Counters, DisplayMode, ProgressDisplay
from ragstream_cli.ingest.sources import (
    Plan,
    PreparedDocument,
    Problem,
    load_documents,
    next_documents,
)
from ragstream_cli.ingest.watch import DocKey, IndexWatch, Outcome, document_version
from ragstream_common.events import DocumentStatus, DocumentUpserted
from ragstream_common.messaging import create_broker, publish_event
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.settings import ServiceSettings
from ragstream_common.topics import DOCUMENT_STATUS, DOCUMENTS
from ragstream_common.tracing import configure_tracing, new_trace, trace_id_of

__all__ = ["PUBLISH_WINDOW", "IngestError", "IngestOptions", "IngestReport", "IngestRun", "ingest"]

# Publishes in flight at once: enough to keep the producer's batches full, few enough that a
# failure stops the run quickly.
PUBLISH_WINDOW = 64
_STATUS_POLL_MS = 200
# Documents read in one trip to a worker thread. A trip cost about 1 ms of CPU here (120 small
# documents took 0.43 CPU-s to publish and follow this way, 0.55 one to a trip), more than reading
# a 3 KB JSON line; the byte bound keeps a trip short and what it holds small whatever the size.
_READ_AHEAD_DOCUMENTS = 32
_READ_AHEAD_BYTES = 1024 * 1024
_ASSIGNMENT_TIMEOUT_S = 30.0


class IngestError(Exception):
    """The run could not go on: Kafka unreachable, topics missing, a publish failed."""


@dataclass(frozen=True)
class IngestOptions:
    """How to run.

    Args:
        kafka: Kafka's bootstrap servers; None for the settings' default.
        tenant: The tenant of documents that do not name one.
        wait: Whether to wait until every document is indexed or failed.
        timeout_s: How long to wait for the index after the last publish.
    """

    kafka: str | None = None
    tenant: str = "default"
    wait: bool = False
    timeout_s: float = 600.0


@dataclass
class IngestReport:
    """What a run did, for the summary and the exit code."""

    counters: Counters
    wait: bool
    skipped: list[Problem] = field(default_factory=list)
    invalid: list[Problem] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    # From the first publish to the last acknowledgement, and to the last document settled.
    publish_seconds: float = 0.0
    total_seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        """Whether every document got in: published, and with ``wait`` indexed."""
        return not (self.invalid or self.failed or self.timed_out)


class _StatusFeed:
    """A group-less consumer of ``document-status`` whose positions are fixed at the end."""

    def __init__(self, bootstrap: str, fetch_max_wait_ms: int) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="ragstream-cli",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=fetch_max_wait_ms,
        )

    async def start(self, *, follow: bool) -> None:
        """Connect, check the platform's topics exist, and to follow, pin every partition.

        Args:
            follow: Position the consumer to follow statuses from now on.

        Raises:
            IngestError: Kafka is unreachable or the topics are missing.
        """
        try:
            await self._consumer.start()
            topics = await self._consumer.topics()
        except KafkaError as error:
            raise IngestError(f"cannot reach Kafka ({type(error).__name__}: {error})") from error
        missing = sorted({DOCUMENTS, DOCUMENT_STATUS} - topics)
        if missing:
            raise IngestError(
                f"topic {', '.join(missing)} does not exist: is the platform up (ragstream up)?"
            )
        if not follow:
            return
        # Without a group, a subscription is assigned every partition; "latest" then resolves
        # to each partition's end, and position() waits until it has.
        self._consumer.subscribe([DOCUMENT_STATUS])
        try:
            async with asyncio.timeout(_ASSIGNMENT_TIMEOUT_S):
                partitions = await self._assigned()
                for partition in partitions:
                    await self._consumer.position(partition)
        except TimeoutError as error:
            raise IngestError(f"no position on every partition of {DOCUMENT_STATUS}") from error

    async def _assigned(self) -> list[TopicPartition]:
        while True:
            numbers = self._consumer.partitions_for_topic(DOCUMENT_STATUS)
            assigned = [tp for tp in self._consumer.assignment() if tp.topic == DOCUMENT_STATUS]
            if numbers and len(assigned) == len(numbers):
                return assigned
            await asyncio.sleep(0.05)

    async def follow(
        self, watch: IndexWatch, on_outcome: Callable[[DocKey, Outcome], None]
    ) -> None:
        """Fold every status read into ``watch``, reporting each settled document; never ends.

        Args:
            watch: The published documents.
            on_outcome: Called with each document the moment a status settles it.
        """
        while True:
            batches = await self._consumer.getmany(timeout_ms=_STATUS_POLL_MS)
            for records in batches.values():
                for record in records:
                    if not record.value:
                        continue  # a tombstone
                    try:
                        status = DocumentStatus.model_validate_json(record.value)
                    except ValidationError:
                        continue  # not ours to judge: the gateway counts unreadable statuses
                    outcome = watch.observe(status)
                    if outcome is not None:
                        on_outcome((status.tenant, status.doc_id), outcome)

    async def stop(self) -> None:
        """Close the consumer."""
        await self._consumer.stop()


class IngestRun:
    """The state of one run: counters, the watch, and when things happened.

    Args:
        report: Where counts and problems go.
        display: Redrawn as documents are published and settled.
    """

    def __init__(self, report: IngestReport, display: ProgressDisplay) -> None:
        self.report = report
        self.counters = report.counters
        self.display = display
        self.watch = IndexWatch()
        self.all_settled = asyncio.Event()
        self.publishing_done = False
        self.first_publish: float | None = None
        self.last_ack: float | None = None
        self.last_outcome: float | None = None

    def count(self, key: DocKey, outcome: Outcome, sign: int = 1) -> None:
        """Add (or, for a superseded publish, take back) one document's outcome."""
        if outcome.stage == "failed":
            self.counters.failed += sign
            origin = self.watch.origin(key)
            if sign > 0:
                reason = outcome.reason or "no reason given"
                self.report.failed.append(Problem(origin, reason))
            else:
                self.report.failed = [p for p in self.report.failed if p.origin != origin]
        else:
            self.counters.indexed += sign
            self.counters.chunks += sign * outcome.chunk_count

    def on_outcome(self, key: DocKey, outcome: Outcome) -> None:
        """Count a settled document, and notice when the last one settles."""
        self.last_outcome = time.monotonic()
        self.count(key, outcome)
        self.display.update()
        self.check_settled()

    def check_settled(self) -> None:
        """Set ``all_settled`` once publishing is over and no document is pending."""
        if self.publishing_done and not self.watch.has_pending:
            self.all_settled.set()

    async def publish_all(self, broker: KafkaBroker, plan: Plan, tenant: str) -> None:
        """Publish every document of ``plan``, up to ``PUBLISH_WINDOW`` at a time, each followed
        by its "received" status.

        A doc id seen again in the run is published only once its earlier publish is
        acknowledged, so that the later one reaches Kafka later and wins, as in the input.

        Raises:
            IngestError: A publish failed for another reason than the document's size.
        """
        window = asyncio.Semaphore(PUBLISH_WINDOW)
        in_flight: dict[DocKey, asyncio.Task[None]] = {}
        seen: set[DocKey] = set()
        fatal: list[KafkaError] = []
        documents = load_documents(plan, tenant)
        read: deque[PreparedDocument | Problem] = deque()

        async def publish(document: PreparedDocument, key: DocKey) -> None:
            event = document.event
            try:
                stored = await _publish_traced(broker, event)
            except MessageSizeTooLargeError as error:
                self.watch.withdraw(key)
                self.report.invalid.append(Problem(document.origin, f"too large: {error}"))
                self.counters.total -= 1
                return
            except KafkaError as error:
                self.watch.withdraw(key)
                fatal.append(error)
                return
            finally:
                window.release()
                if in_flight.get(key) is asyncio.current_task():
                    del in_flight[key]
            self.last_ack = time.monotonic()
            self.counters.published += 1
            self.counters.published_bytes += document.size
            outcome = self.watch.acknowledge(key, stored.offset if stored else None)
            if outcome is not None:
                self.on_outcome(key, outcome)
            self.display.update()

        while not fatal:
            if not read:
                # Reading and encoding files is blocking work: off the loop.
                read.extend(
                    await asyncio.to_thread(
                        next_documents, documents, _READ_AHEAD_DOCUMENTS, _READ_AHEAD_BYTES
                    )
                )
                if not read:
                    break
            item = read.popleft()
            if isinstance(item, Problem):
                (self.report.skipped if item.skipped else self.report.invalid).append(item)
                self.counters.total -= 1
                self.display.update()
                continue
            key = (item.event.tenant, item.event.doc_id)
            if key in seen:
                self.counters.repeats += 1
                previous = in_flight.get(key)
                if previous is not None:
                    await previous
            seen.add(key)
            await window.acquire()
            self.first_publish = self.first_publish or time.monotonic()
            superseded = self.watch.announce(key, item.origin)
            if superseded is not None:
                self.count(key, superseded, sign=-1)
            in_flight[key] = asyncio.create_task(publish(item, key))
        await asyncio.gather(*in_flight.values())
        if fatal:
            raise IngestError(f"publishing failed ({type(fatal[0]).__name__}: {fatal[0]})")
        self.publishing_done = True
        self.check_settled()

    async def wait_settled(self, follower: asyncio.Task[None], timeout_s: float) -> None:
        """Wait until every document is settled; on timeout, list the pending ones as timed out.

        Args:
            follower: The task reading statuses; its failure ends the wait.
            timeout_s: Seconds to wait.

        Raises:
            IngestError: The status consumer failed.
        """
        settled = asyncio.create_task(self.all_settled.wait())
        try:
            done, _ = await asyncio.wait(
                {settled, follower}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            settled.cancel()
        if follower in done:
            error = follower.exception()
            raise IngestError(f"reading document-status failed ({type(error).__name__}: {error})")
        if settled not in done:
            self.report.timed_out = [self.watch.origin(key) for key in self.watch.pending]


async def _publish_traced(broker: KafkaBroker, event: DocumentUpserted) -> RecordMetadata | None:
    """Publish a document and its "received" status in a new trace, the document's own.

    Returns where Kafka stored the document (None under the in-memory test broker).
    """
    attributes = {"ragstream.doc_id": event.doc_id, "ragstream.tenant": event.tenant}
    with new_trace("ingest document", kind=SpanKind.PRODUCER, attributes=attributes) as span:
        # None when tracing is not configured: publish_event then correlates by the event.
        correlation_id = trace_id_of(span.get_span_context())
        stored = await publish_event(
            broker, event, topic=DOCUMENTS, key=event.doc_id, correlation_id=correlation_id
        )
        # Announced like the gateway announces an upload, so that the status view shows when
        # the document was received whichever way it came in.
        received = DocumentStatus(
            doc_id=event.doc_id,
            tenant=event.tenant,
            stage="received",
            version=document_version(stored.offset) if stored else None,
            occurred_at=event.occurred_at,
            published_at=event.published_at,
        )
        await publish_event(
            broker,
            received,
            topic=DOCUMENT_STATUS,
            key=event.doc_id,
            correlation_id=correlation_id,
        )
    return stored


def _settings(kafka: str | None) -> ServiceSettings:
    # An explicit --kafka wins; otherwise RAGSTREAM_KAFKA_BOOTSTRAP or the default, as for
    # every service.
    overrides: dict[str, Any] = {"kafka_bootstrap": kafka} if kafka else {}
    return ServiceSettings(service_name="ragstream-cli", **overrides)


async def ingest(plan: Plan, options: IngestOptions, display_mode: DisplayMode) -> IngestReport:
    """Publish the plan's documents and, with ``options.wait``, wait until they are indexed.

    Args:
        plan: What ``discover`` found.
        options: Kafka, tenant, waiting.
        display_mode: How to show progress.

    Raises:
        IngestError: Kafka is unreachable, the topics are missing, or publishing failed.
    """
    counters = Counters(total=plan.document_count())
    report = IngestReport(counters=counters, wait=options.wait, skipped=list(plan.skipped))
    settings = _settings(options.kafka)
    # The ragstream process's one call (RAGSTREAM_OTLP_ENDPOINT exports the documents' traces).
    configure_tracing(settings)
    display = ProgressDisplay(counters, mode=display_mode, wait=options.wait)
    run = IngestRun(report, display)
    feed = _StatusFeed(settings.kafka_bootstrap, settings.kafka_fetch_max_wait_ms)
    broker = create_broker(settings, ServiceMetrics(settings.service_name))
    follower: asyncio.Task[None] | None = None
    try:
        await feed.start(follow=options.wait)
        try:
            await broker.connect()
        except KafkaError as error:
            raise IngestError(f"cannot reach Kafka ({type(error).__name__}: {error})") from error
        display.start()
        if options.wait:
            follower = asyncio.create_task(feed.follow(run.watch, run.on_outcome))
        await run.publish_all(broker, plan, options.tenant)
        if follower is not None:
            await run.wait_settled(follower, options.timeout_s)
    finally:
        display.stop()
        if follower is not None:
            follower.cancel()
        await feed.stop()
        await broker.stop()
    started = run.first_publish or time.monotonic()
    finished = time.monotonic()
    if options.wait and not report.timed_out and run.last_outcome is not None:
        finished = max(run.last_outcome, run.last_ack or started)
    report.publish_seconds = (run.last_ack or started) - started
    report.total_seconds = finished - started
    return report
