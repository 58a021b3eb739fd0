"""Tests for tracing: the provider's set-up, trace ids in logs, and traces across Kafka hops."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from faststream.kafka import KafkaBroker, TestKafkaBroker
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, TraceFlags

from ragstream_common.admin import ensure_topics
from ragstream_common.events import DocumentUpserted
from ragstream_common.logging import (
    add_trace_ids,
    bind_correlation_id,
    configure_logging,
    current_correlation_id,
    get_logger,
)
from ragstream_common.messaging import (
    KafkaMessage,
    batch_subscriber,
    consumer_options,
    create_broker,
    handle_each,
    handle_in_order,
    publish_event,
    publish_event_unconfirmed,
    valid_events,
)
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.settings import ServiceSettings
from ragstream_common.topics import TopicSpec
from ragstream_common.tracing import (
    build_tracer_provider,
    configure_tracing,
    current_trace_id,
    new_trace,
    otlp_traces_url,
    span_processors,
    trace_id_of,
    tracer,
)

SETTINGS = ServiceSettings(service_name="tracing-test", otlp_endpoint=None, trace_sample_ratio=1.0)


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """Spans finished in this process, from the process's tracer provider (set once)."""
    exporter = InMemorySpanExporter()
    configure_tracing(SETTINGS).add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """The span exporter, emptied before the test."""
    exporter.clear()
    return exporter


def _broker(name: str = "tracing-test") -> KafkaBroker:
    settings = ServiceSettings(service_name=name)
    return create_broker(settings, ServiceMetrics(name))


def _document() -> DocumentUpserted:
    return DocumentUpserted(doc_id="d", content="x")


class TestOtlpTracesUrl:
    def test_base_url_gets_the_traces_path(self) -> None:
        """A collector's base URL is completed with /v1/traces, as OTEL_EXPORTER_OTLP_ENDPOINT is."""
        assert otlp_traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
        assert otlp_traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"

    def test_full_traces_url_is_kept(self) -> None:
        """A URL that already names the traces path is used as it is."""
        url = "https://otel.example/v1/traces"
        assert otlp_traces_url(url) == url


class TestSpanProcessors:
    def test_no_endpoint_installs_no_exporter(self) -> None:
        """Without otlp_endpoint nothing is exported, yet spans still get valid trace ids."""
        assert span_processors(SETTINGS) == []
        provider = build_tracer_provider(SETTINGS)
        span = provider.get_tracer("t").start_span("s")
        assert trace_id_of(span.get_span_context()) is not None
        span.end()

    def test_endpoint_installs_a_batched_otlp_exporter(self) -> None:
        """With otlp_endpoint, spans are batched to an OTLP/HTTP exporter of its traces URL."""
        settings = SETTINGS.model_copy(update={"otlp_endpoint": "http://collector:4318"})
        (processor,) = span_processors(settings)
        try:
            assert isinstance(processor, BatchSpanProcessor)
            assert isinstance(processor.span_exporter, OTLPSpanExporter)
            # No public getter: the URL the exporter will post to (nothing is sent here).
            assert processor.span_exporter._endpoint == "http://collector:4318/v1/traces"
        finally:
            processor.shutdown()

    def test_provider_names_the_service_and_samples_by_ratio(self) -> None:
        """Spans carry service.name; at ratio 0 a new trace is not recorded but still has an id."""
        provider = build_tracer_provider(SETTINGS.model_copy(update={"trace_sample_ratio": 0.0}))
        assert provider.resource.attributes["service.name"] == "tracing-test"
        span = provider.get_tracer("t").start_span("s")
        assert not span.is_recording()
        assert trace_id_of(span.get_span_context()) is not None


class TestSpansWithoutAProcessor:
    def test_unrecorded_yet_sampled_and_propagated(self) -> None:
        """With nothing to take them, spans are not recorded, but keep the SDK's ids and sampled
        flag, and a child continues the trace: downstream exporters make the same decision."""
        tracer = build_tracer_provider(SETTINGS).get_tracer("t")
        with tracer.start_as_current_span("root") as root:
            child = tracer.start_span("child")
            carrier: dict[str, str] = {}
            propagate.inject(carrier)

        assert not root.is_recording()
        assert not child.is_recording()
        assert root.get_span_context().trace_flags.sampled
        assert child.get_span_context().trace_id == root.get_span_context().trace_id
        assert child.get_span_context().span_id != root.get_span_context().span_id
        trace_id = trace_id_of(root.get_span_context())
        assert carrier["traceparent"].startswith(f"00-{trace_id}-")
        flags = int(carrier["traceparent"].rsplit("-", 1)[1], 16)
        assert flags & TraceFlags.SAMPLED

    def test_a_trace_not_sampled_stays_unsampled(self) -> None:
        """At ratio 0 the flag says not sampled, as the SDK's would."""
        provider = build_tracer_provider(SETTINGS.model_copy(update={"trace_sample_ratio": 0.0}))
        span = provider.get_tracer("t").start_span("s")
        assert not span.get_span_context().trace_flags.sampled
        assert trace_id_of(span.get_span_context()) is not None

    def test_recorded_once_a_processor_is_added(self) -> None:
        """A tracer taken before the processor was added records from then on."""
        provider = build_tracer_provider(SETTINGS)
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("before") as unrecorded:
            pass
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))

        with tracer.start_as_current_span("after") as span:
            assert span.is_recording()

        assert [finished.name for finished in exporter.get_finished_spans()] == ["after"]
        # The same flags either way, so what travels in traceparent does not change.
        assert unrecorded.get_span_context().trace_flags == span.get_span_context().trace_flags


class TestConfigureTracing:
    def test_configured_once_per_process(self, exporter: InMemorySpanExporter) -> None:
        """A second call keeps the first provider, which is the process's."""
        first = configure_tracing(SETTINGS)
        again = configure_tracing(SETTINGS.model_copy(update={"service_name": "other"}))
        assert again is first
        assert isinstance(first, TracerProvider)
        assert trace.get_tracer_provider() is first

    def test_one_tracer_serves_the_provider_configured_after_it(
        self, spans: InMemorySpanExporter
    ) -> None:
        """ragstream's tracer is taken once, at import; its spans reach the later provider."""
        assert tracer() is tracer()
        with tracer().start_as_current_span("late"):
            pass
        assert [finished.name for finished in spans.get_finished_spans()] == ["late"]


class TestTraceIdsInLogs:
    def test_processor_stamps_the_current_span(self, spans: InMemorySpanExporter) -> None:
        """Inside a span a line gets its trace_id and span_id; its other keys are kept."""
        with new_trace("work") as span:
            line = add_trace_ids(None, "info", {"event": "e", "correlation_id": "c"})
        context = span.get_span_context()
        assert line == {
            "event": "e",
            "correlation_id": "c",
            "trace_id": format(context.trace_id, "032x"),
            "span_id": format(context.span_id, "016x"),
        }

    def test_processor_leaves_lines_outside_spans_alone(self) -> None:
        """Outside any span a line gets no trace keys."""
        assert add_trace_ids(None, "info", {"event": "e"}) == {"event": "e"}

    def test_configured_logs_carry_trace_and_correlation_ids(
        self, spans: InMemorySpanExporter
    ) -> None:
        """A line logged inside a span, once logging is configured, has both ids as JSON keys."""
        out = io.StringIO()
        with _configured_logging(out):
            with new_trace("work"):
                bind_correlation_id("corr-1")
                get_logger("test").info("hello")
                trace_id = current_trace_id()
            bind_correlation_id(None)
        line = json.loads(out.getvalue().splitlines()[-1])
        assert (line["event"], line["correlation_id"]) == ("hello", "corr-1")
        assert line["trace_id"] == trace_id
        assert len(line["span_id"]) == 16


@contextlib.contextmanager
def _configured_logging(out: io.StringIO) -> Iterator[None]:
    """Configure logging to write JSON lines to ``out``; put things back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_config = structlog.get_config()
    try:
        with contextlib.redirect_stdout(out):
            configure_logging("tracing-test", json=True)
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.configure(**saved_config)


class TestKafkaHops:
    async def test_consumer_continues_the_producers_trace(
        self, spans: InMemorySpanExporter
    ) -> None:
        """The handler's span is in the producer's trace, whose id is the correlation id it sees."""
        broker = _broker()
        seen: list[tuple[str | None, str | None]] = []

        @broker.subscriber("documents", group_id="g")
        async def handle(event: DocumentUpserted) -> None:
            seen.append((current_trace_id(), current_correlation_id()))

        async with TestKafkaBroker(broker):
            # As an entry point does: a new trace, whose id correlates what it publishes.
            with new_trace("entry") as root:
                trace_id = trace_id_of(root.get_span_context())
                await publish_event(
                    broker, _document(), topic="documents", key="d", correlation_id=trace_id
                )

        assert trace_id is not None
        assert seen == [(trace_id, trace_id)]
        consumed = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CONSUMER]
        assert consumed
        assert {format(s.context.trace_id, "032x") for s in consumed} == {trace_id}

    async def test_a_republished_event_stays_in_the_trace(
        self, spans: InMemorySpanExporter
    ) -> None:
        """What a handler publishes carries the same trace and the same correlation id onward."""
        broker = _broker()
        seen: list[tuple[str | None, str | None]] = []

        @broker.subscriber("documents", group_id="g")
        async def first(event: DocumentUpserted) -> None:
            await publish_event(broker, event, topic="chunks", key=event.doc_id)

        @broker.subscriber("chunks", group_id="g2")
        async def second(message: KafkaMessage) -> None:
            seen.append((current_trace_id(), message.correlation_id))

        async with TestKafkaBroker(broker):
            with new_trace("entry") as root:
                trace_id = trace_id_of(root.get_span_context())
                await publish_event(
                    broker, _document(), topic="documents", key="d", correlation_id=trace_id
                )

        assert seen == [(trace_id, trace_id)]

    async def test_publishing_outside_a_trace_starts_one(self, spans: InMemorySpanExporter) -> None:
        """A message sent outside any trace starts one, and its correlation id is that trace's."""
        broker = _broker()
        seen: list[tuple[str | None, str | None]] = []

        @broker.subscriber("documents", group_id="g")
        async def handle(message: KafkaMessage) -> None:
            seen.append((current_trace_id(), message.correlation_id))

        event = _document()
        async with TestKafkaBroker(broker):
            assert current_trace_id() is None
            await publish_event(broker, event, topic="documents", key="d")

        ((trace_id, correlation_id),) = seen
        assert trace_id is not None
        assert correlation_id == trace_id != event.event_id


def _header(record: ConsumerRecord[Any, Any], name: str) -> str | None:
    return next((bytes(v).decode() for k, v in record.headers or () if k == name), None)


def _traceparent_trace_id(record: ConsumerRecord[Any, Any]) -> str | None:
    # W3C: version-traceid-parentid-flags.
    traceparent = _header(record, "traceparent")
    return traceparent.split("-")[1] if traceparent else None


@contextlib.asynccontextmanager
async def _started(broker: KafkaBroker) -> AsyncIterator[KafkaBroker]:
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.mark.stack
class TestBatchHopsOnKafka:
    async def test_batch_records_are_handled_and_republished_in_their_own_traces(
        self, spans: InMemorySpanExporter
    ) -> None:
        """Each record of a real batch keeps its producer's trace: in handle_each and
        handle_in_order, and on what a batch handler publishes for it, with or without them (the
        correlation id too)."""
        bootstrap = "127.0.0.1:9092"
        run = uuid.uuid4().hex[:8]
        topics = [f"tracing-{name}-{run}" for name in ("in", "each", "loop", "order")]
        source, via_each, via_loop, via_order = topics
        await ensure_topics(bootstrap, [TopicSpec(name, partitions=1) for name in topics])
        settings = ServiceSettings(service_name="tracing-test", kafka_bootstrap=bootstrap)
        metrics = ServiceMetrics("tracing-test")
        producer = create_broker(settings, metrics)
        consumer = create_broker(settings, metrics)
        handled: dict[str, tuple[str | None, str | None]] = {}
        handled_in_order: dict[str, tuple[str | None, str | None]] = {}
        expected = 2

        @batch_subscriber(
            consumer,
            source,
            max_messages=10,
            max_wait_ms=1000,
            **consumer_options(settings, f"tracing-test-{run}"),
        )
        async def on_batch(message: KafkaMessage) -> None:
            batch = await valid_events(message, DocumentUpserted, broker=consumer, metrics=metrics)

            async def handle(event: DocumentUpserted) -> None:
                handled[event.doc_id] = (current_trace_id(), current_correlation_id())
                await publish_event(consumer, event, topic=via_each, key=event.doc_id)

            await handle_each(batch, handle, broker=consumer, metrics=metrics)
            # As the embedder does: one loop over the batch, binding each record's id in turn.
            for item in batch:
                bind_correlation_id(item.correlation_id)
                queued = await publish_event_unconfirmed(
                    consumer, item.event, topic=via_loop, key=item.event.doc_id
                )
                assert queued is not None
                await queued
            bind_correlation_id(None)

            async def handle_record(record: Any) -> list[asyncio.Future[Any]]:
                event = DocumentUpserted.model_validate_json(record.value)
                handled_in_order[event.doc_id] = (current_trace_id(), current_correlation_id())
                queued = await publish_event_unconfirmed(
                    consumer, event, topic=via_order, key=event.doc_id
                )
                return [queued] if queued is not None else []

            await handle_in_order(message, handle_record, broker=consumer, metrics=metrics)

        tail = AIOKafkaConsumer(
            via_each, via_loop, via_order, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        traces: dict[str, str] = {}
        async with _started(producer), _started(consumer):
            await tail.start()
            try:
                for n in range(expected):
                    with new_trace("entry") as root:
                        trace_id = trace_id_of(root.get_span_context())
                        assert trace_id is not None
                        traces[f"doc-{n}"] = trace_id
                        await publish_event(
                            producer,
                            DocumentUpserted(doc_id=f"doc-{n}", content="x"),
                            topic=source,
                            key=f"doc-{n}",
                            correlation_id=trace_id,
                        )
                records = await _read(tail, 3 * expected)
            finally:
                await tail.stop()

        assert handled == {doc: (trace_id, trace_id) for doc, trace_id in traces.items()}
        assert handled_in_order == handled
        assert {record.topic for record in records} == {via_each, via_loop, via_order}
        for record in records:
            trace_id = traces[record.key.decode()]
            assert _header(record, "correlation_id") == trace_id, record.topic
            assert _traceparent_trace_id(record) == trace_id, record.topic


async def _read(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[Any, Any]]:
    records: list[ConsumerRecord[Any, Any]] = []
    async with asyncio.timeout(60):
        while len(records) < count:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    return records
