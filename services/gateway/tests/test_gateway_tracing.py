"""Tests for the gateway's traces: one per API request, its id the request's correlation id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ragstream_common.events import AnswerCompleted, QueryRequested
from ragstream_common.messaging import KafkaMessage, publish_event
from ragstream_common.settings import ServiceSettings
from ragstream_common.topics import ANSWERS, DOCUMENT_STATUS, DOCUMENTS, QUERIES
from ragstream_common.tracing import configure_tracing
from ragstream_gateway.adapters.status_feed import StatusFeed
from ragstream_gateway.app import create_app
from ragstream_gateway.settings import GatewaySettings

INSTANCE = "gw-trace-test"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """Spans finished in this process, from the process's tracer provider (set once)."""
    exporter = InMemorySpanExporter()
    settings = ServiceSettings(service_name="gateway", otlp_endpoint=None, trace_sample_ratio=1.0)
    configure_tracing(settings).add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """The span exporter, emptied before the test."""
    exporter.clear()
    return exporter


@dataclass
class Traced:
    """A running gateway, and the correlation id of every record it published, by topic."""

    client: httpx.AsyncClient
    correlation_ids: dict[str, list[str | None]] = field(default_factory=dict)


@asynccontextmanager
async def running() -> AsyncIterator[Traced]:
    """Start the gateway on the test broker, with a fake pipeline answering every query."""
    app = create_app(GatewaySettings(instance_id=INSTANCE))
    broker: KafkaBroker = app.state.gateway.broker
    # No Kafka to read statuses from; these tests look at what the gateway publishes.
    app.state.gateway.status_feed = StatusFeed(app.state.gateway.status_feed.fold)
    correlation_ids: dict[str, list[str | None]] = {}

    for topic in (DOCUMENTS, DOCUMENT_STATUS, QUERIES):

        @broker.subscriber(topic, group_id=f"recorder-{topic}")
        async def keep(message: KafkaMessage) -> None:
            topic_of = message.raw_message.topic
            correlation_ids.setdefault(topic_of, []).append(message.correlation_id)

    @broker.subscriber(QUERIES, group_id="fake-pipeline")
    async def answer(query: QueryRequested) -> None:
        reply = AnswerCompleted(
            query_id=query.query_id,
            tenant=query.tenant,
            reply_to=query.reply_to,
            answer="echo",
            citations=[],
            model="fake",
        )
        await publish_event(broker, reply, topic=ANSWERS, key=query.reply_to)

    async with (
        TestKafkaBroker(broker, connect_only=True),
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as client,
    ):
        yield Traced(client=client, correlation_ids=correlation_ids)


def _server_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.kind == SpanKind.SERVER]


def _trace_ids(spans: InMemorySpanExporter) -> set[str]:
    return {format(span.context.trace_id, "032x") for span in spans.get_finished_spans()}


class TestQueryTrace:
    async def test_a_query_is_one_trace_named_by_its_request_id(
        self, spans: InMemorySpanExporter
    ) -> None:
        """X-Request-ID, the query id, the query's correlation id and every span share one id."""
        async with running() as gateway:
            spans.clear()
            response = await gateway.client.post("/v1/query", json={"query": "q"})
        assert response.status_code == 200, response.text
        (server,) = _server_spans(spans)
        trace_id = format(server.context.trace_id, "032x")
        assert server.name == "POST /v1/query"
        assert response.headers["X-Request-ID"] == trace_id
        assert response.json()["query_id"] == trace_id
        assert gateway.correlation_ids[QUERIES] == [trace_id]
        # The publish, the pipeline's handling, its answer and the gateway's reading of it.
        assert len(spans.get_finished_spans()) > 3
        assert _trace_ids(spans) == {trace_id}

    async def test_a_client_request_id_is_kept_and_the_trace_names_it(
        self, spans: InMemorySpanExporter
    ) -> None:
        """A client's X-Request-ID stays the correlation id; the trace (the query id) records it."""
        async with running() as gateway:
            spans.clear()
            response = await gateway.client.post(
                "/v1/query", json={"query": "q"}, headers={"X-Request-ID": "client-42"}
            )
        (server,) = _server_spans(spans)
        trace_id = format(server.context.trace_id, "032x")
        assert response.headers["X-Request-ID"] == "client-42"
        assert gateway.correlation_ids[QUERIES] == ["client-42"]
        assert response.json()["query_id"] == trace_id
        assert server.attributes is not None
        assert server.attributes["ragstream.client_correlation_id"] == "client-42"


class TestDocumentTrace:
    async def test_an_upload_is_one_trace_named_by_its_request_id(
        self, spans: InMemorySpanExporter
    ) -> None:
        """The document and its received status carry the upload's trace id as correlation id."""
        async with running() as gateway:
            spans.clear()
            response = await gateway.client.post(
                "/v1/documents", json={"doc_id": "d1", "content": "hello"}
            )
        assert response.status_code == 202, response.text
        (server,) = _server_spans(spans)
        trace_id = format(server.context.trace_id, "032x")
        assert response.headers["X-Request-ID"] == trace_id
        assert gateway.correlation_ids[DOCUMENTS] == [trace_id]
        assert gateway.correlation_ids[DOCUMENT_STATUS] == [trace_id]
        assert _trace_ids(spans) == {trace_id}

    async def test_a_delete_is_one_trace_named_by_its_request_id(
        self, spans: InMemorySpanExporter
    ) -> None:
        """A delete request's record carries its trace id as correlation id."""
        async with running() as gateway:
            spans.clear()
            response = await gateway.client.delete("/v1/documents/d1")
        (server,) = _server_spans(spans)
        trace_id = format(server.context.trace_id, "032x")
        assert response.headers["X-Request-ID"] == trace_id
        assert gateway.correlation_ids[DOCUMENTS] == [trace_id]


class TestUntraced:
    async def test_probes_start_no_trace(self, spans: InMemorySpanExporter) -> None:
        """/healthz, hit every few seconds, makes no span; it still answers with a request id."""
        async with running() as gateway:
            spans.clear()
            response = await gateway.client.get("/healthz")
        assert _server_spans(spans) == []
        assert response.headers["X-Request-ID"]
