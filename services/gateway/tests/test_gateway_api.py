"""Tests for the gateway's HTTP API, with its broker on FastStream's in-memory test broker."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import RecordMetadata, TopicPartition
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from starlette.requests import ClientDisconnect

from ragstream_common.events import (
    AnswerCompleted,
    AnswerDelta,
    Citation,
    DeadLetter,
    DocumentStage,
    DocumentStatus,
    Event,
    QueryRequested,
)
from ragstream_common.messaging import KafkaMessage, publish_event
from ragstream_common.topics import ANSWERS, DOCUMENT_STATUS, DOCUMENTS, QUERIES, dlq_name
from ragstream_gateway.adapters.status_feed import StatusFeed
from ragstream_gateway.api import Gateway
from ragstream_gateway.app import create_app
from ragstream_gateway.settings import GatewaySettings

INSTANCE = "gw-test-1"


@dataclass
class Recorded:
    """What went over the in-memory broker during one test, by topic."""

    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def of(self, topic: str) -> list[dict[str, Any]]:
        """Return the messages published to ``topic`` (key, correlation id, body)."""
        return self.messages.get(topic, [])


@dataclass
class Harness:
    """A running gateway app and what it published."""

    client: httpx.AsyncClient
    app: FastAPI
    broker: KafkaBroker
    recorded: Recorded

    @property
    def gateway(self) -> Gateway:
        """The app's runtime state."""
        gateway: Gateway = self.app.state.gateway
        return gateway


# A responder answers with one event, or several (a streamed answer's deltas, then its answer).
Responder = Callable[[QueryRequested], AnswerCompleted | list[Event] | None]


def _answer_for(query: QueryRequested, **fields: Any) -> AnswerCompleted:
    values: dict[str, Any] = {
        "query_id": query.query_id,
        "tenant": query.tenant,
        "reply_to": query.reply_to,
        "answer": f"echo: {query.text} [1]",
        "citations": [
            Citation(n=1, doc_id="doc-1", chunk_id="doc-1:0", title="T", snippet="s", score=0.7)
        ],
        "model": "fake",
        "timings": {"retrieve_ms": 1.5, "generate_ms": 2.5},
    }
    values.update(fields)
    return AnswerCompleted.model_validate(values)


@asynccontextmanager
async def running(
    *, responder: Responder | None = None, raise_app_exceptions: bool = True, **overrides: Any
) -> AsyncIterator[Harness]:
    """Start the app on the test broker, with a fake pipeline answering on ``answers``."""
    settings = GatewaySettings(instance_id=INSTANCE, **overrides)
    app = create_app(settings)
    broker: KafkaBroker = app.state.gateway.broker
    recorded = Recorded()
    # No Kafka here: the statuses published on the in-memory broker reach the view instead, each
    # record's value folded as the Kafka feed folds it.
    gateway: Gateway = app.state.gateway
    gateway.status_feed = StatusFeed(gateway.status_feed.fold)

    @broker.subscriber(DOCUMENT_STATUS, group_id="status-view")
    async def fold_status(message: KafkaMessage) -> None:
        gateway.status_feed.fold(message.body)

    def record(topic: str) -> None:
        @broker.subscriber(topic, group_id=f"recorder-{topic}")
        async def keep(message: KafkaMessage) -> None:
            recorded.messages.setdefault(topic, []).append(
                {
                    "key": getattr(message.raw_message, "key", None),
                    "correlation_id": message.correlation_id,
                    "body": json.loads(message.body) if message.body else None,
                }
            )

    for topic in (DOCUMENTS, QUERIES):
        record(topic)

    if responder is not None:

        @broker.subscriber(QUERIES, group_id="fake-pipeline")
        async def answer(query: QueryRequested) -> None:
            reply = responder(query)
            replies = reply if isinstance(reply, list) else [] if reply is None else [reply]
            for event in replies:
                await publish_event(broker, event, topic=ANSWERS, key=query.reply_to)

    async with (
        TestKafkaBroker(broker, connect_only=True),
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app, raise_app_exceptions=raise_app_exceptions),
            base_url="http://gateway",
        ) as client,
    ):
        yield Harness(client=client, app=app, broker=broker, recorded=recorded)


class TestQuery:
    async def test_answer_from_the_pipeline_is_returned(self) -> None:
        """A query is published to queries and the matching AnswerCompleted becomes the body."""
        async with running(responder=_answer_for) as h:
            response = await h.client.post("/v1/query", json={"query": "capital?", "top_k": 3})
            assert response.status_code == 200, response.text
            body = response.json()
            (published,) = h.recorded.of(QUERIES)
            assert published["body"]["query_id"] == body["query_id"]
            assert published["key"] == body["query_id"].encode()
            assert published["body"]["reply_to"] == INSTANCE
            assert published["body"]["top_k"] == 3
            assert body["answer"] == "echo: capital? [1]"
            assert body["citations"][0]["doc_id"] == "doc-1"
            assert body["model"] == "fake"
            assert body["cached"] is False
            assert set(body["timings"]) == {"retrieve_ms", "generate_ms", "gateway_total_ms"}
            assert len(h.gateway.replies) == 0

    async def test_retrieval_options_travel_on_the_query_event(self) -> None:
        """alpha, filters, min_score, top_k, tenant and cache reach QueryRequested as sent."""
        payload = {
            "query": "q",
            "top_k": 7,
            "tenant": "acme",
            "alpha": 0.25,
            "min_score": 0.4,
            "cache": False,
            "filters": {
                "sources": ["wiki"],
                "tags": ["ops"],
                "published_after": "2024-01-01T00:00:00Z",
                "published_before": "2024-06-30T12:00:00+02:00",
            },
        }
        async with running(responder=_answer_for) as h:
            response = await h.client.post("/v1/query", json=payload)
            assert response.status_code == 200, response.text
            (published,) = h.recorded.of(QUERIES)
            query = QueryRequested.model_validate(published["body"])
        assert (query.top_k, query.tenant, query.alpha, query.min_score) == (7, "acme", 0.25, 0.4)
        assert query.cache is False
        assert query.filters is not None
        assert (query.filters.sources, query.filters.tags) == (["wiki"], ["ops"])
        assert query.filters.published_after == datetime(2024, 1, 1, tzinfo=UTC)
        assert query.filters.published_before == datetime(2024, 6, 30, 10, tzinfo=UTC)

    async def test_unset_retrieval_options_are_left_to_the_retriever(self) -> None:
        """A plain query carries no alpha, filters or min_score, so the retriever's defaults hold."""
        async with running(responder=_answer_for) as h:
            await h.client.post("/v1/query", json={"query": "q"})
            body = h.recorded.of(QUERIES)[0]["body"]
        assert (body["alpha"], body["filters"], body["min_score"]) == (None, None, None)
        assert body["cache"] is True

    async def test_answer_audit_fields_are_in_the_response(self) -> None:
        """Groundedness, usage, prompt version, attempts and citation support reach the client."""

        def audited(query: QueryRequested) -> AnswerCompleted:
            return _answer_for(
                query,
                groundedness=0.5,
                usage={"prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.0},
                prompt_version="v2",
                attempts=["local"],
                citations=[
                    Citation(
                        n=1,
                        doc_id="d",
                        chunk_id="d:0",
                        title="T",
                        snippet="s",
                        score=0.7,
                        supported=False,
                    )
                ],
            )

        async with running(responder=audited) as h:
            body = (await h.client.post("/v1/query", json={"query": "q"})).json()
        assert body["groundedness"] == 0.5
        assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.0}
        assert (body["prompt_version"], body["attempts"]) == ("v2", ["local"])
        assert body["citations"][0]["supported"] is False

    async def test_query_id_is_the_correlation_id(self) -> None:
        """Without a client id, the query id correlates the request, the message and the reply."""
        async with running(responder=_answer_for) as h:
            response = await h.client.post("/v1/query", json={"query": "q"})
            query_id = response.json()["query_id"]
            assert response.headers["X-Request-ID"] == query_id
            assert h.recorded.of(QUERIES)[0]["correlation_id"] == query_id

    async def test_client_request_id_is_honoured_and_echoed(self) -> None:
        """An incoming X-Request-ID travels with the query and comes back in the response."""
        async with running(responder=_answer_for) as h:
            response = await h.client.post(
                "/v1/query", json={"query": "q"}, headers={"X-Request-ID": "client-42"}
            )
            assert response.headers["X-Request-ID"] == "client-42"
            assert h.recorded.of(QUERIES)[0]["correlation_id"] == "client-42"

    async def test_no_answer_is_a_504_with_the_query_id(self) -> None:
        """When no answer comes within the timeout the client gets 504 and nothing leaks."""
        async with running(query_timeout_s=0.05) as h:
            response = await h.client.post("/v1/query", json={"query": "anyone?"})
            assert response.status_code == 504
            body = response.json()
            assert body["detail"] == "no answer within 0.05 s"
            assert body["query_id"] == h.recorded.of(QUERIES)[0]["body"]["query_id"]
            assert len(h.gateway.replies) == 0
            metrics = h.gateway.metrics
            assert metrics.query_timeouts.labels("gateway")._value.get() == 1
            assert metrics.queries_in_flight.labels("gateway")._value.get() == 0

    async def test_another_replicas_answer_is_ignored(self) -> None:
        """An answer keyed to another reply route does not complete this replica's request."""

        def misrouted(query: QueryRequested) -> AnswerCompleted:
            return _answer_for(query, reply_to="gw-other")

        async with running(responder=None, query_timeout_s=0.1) as h:

            @h.broker.subscriber(QUERIES, group_id="misrouting-pipeline")
            async def answer(query: QueryRequested) -> None:
                await publish_event(h.broker, misrouted(query), topic=ANSWERS, key="gw-other")

            await h.broker.start()  # registers the late subscriber with the test broker
            response = await h.client.post("/v1/query", json={"query": "q"})
            assert response.status_code == 504
            assert h.gateway.metrics.answers_seen.labels("gateway", "foreign")._value.get() == 1

    async def test_unreadable_answer_is_dead_lettered_and_the_rest_of_its_batch_resolves(
        self,
    ) -> None:
        """A malformed record on this replica's route goes to answers.dlq; the answer delivered
        in the same batch still completes its request."""
        letters: list[DeadLetter] = []
        async with running(responder=None) as h:

            @h.broker.subscriber(QUERIES, group_id="sloppy-pipeline")
            async def answer(query: QueryRequested) -> None:
                await h.broker.publish_batch(
                    b"{not an answer",
                    _answer_for(query).model_dump_json().encode(),
                    topic=ANSWERS,
                )

            @h.broker.subscriber(dlq_name(ANSWERS))
            async def collect(letter: DeadLetter) -> None:
                letters.append(letter)

            await h.broker.start()
            response = await h.client.post("/v1/query", json={"query": "q"})
            assert response.status_code == 200, response.text
        [letter] = letters
        assert (letter.original_topic, letter.error_type) == (ANSWERS, "ValidationError")

    async def test_answer_with_error_is_a_502(self) -> None:
        """A pipeline failure reported in the answer reaches the client as 502 with its message."""

        def failing(query: QueryRequested) -> AnswerCompleted:
            return _answer_for(query, answer="", citations=[], error="all LLM deployments failed")

        async with running(responder=failing) as h:
            response = await h.client.post("/v1/query", json={"query": "q"})
            assert response.status_code == 502
            assert response.json()["detail"] == "all LLM deployments failed"
            assert response.json()["query_id"]

    @pytest.mark.parametrize(
        ("payload", "field_name"),
        [
            ({"query": ""}, "query"),
            ({"query": "x" * 2001}, "query"),
            ({"query": "q", "top_k": 0}, "top_k"),
            ({"query": "q", "top_k": 51}, "top_k"),
            ({"top_k": 5}, "query"),
            ({"query": "q", "tenant": "bad tenant"}, "tenant"),
            ({"query": "q", "alpha": 2}, "alpha"),
            ({"query": "q", "min_score": -1}, "min_score"),
            ({"query": "q", "filters": {"tags": "ops"}}, "filters.tags"),
            ({"query": "q", "filters": {"published_before": "yesterday"}}, "published_before"),
            (
                {
                    "query": "q",
                    "filters": {
                        "published_after": "2024-02-01T00:00:00Z",
                        "published_before": "2024-01-01T00:00:00Z",
                    },
                },
                "published_after must not be later than published_before",
            ),
        ],
    )
    async def test_invalid_queries_are_422_with_a_message(
        self, payload: dict[str, Any], field_name: str
    ) -> None:
        """Out-of-range input is refused with a message naming the field, and nothing is sent."""
        async with running(responder=_answer_for) as h:
            response = await h.client.post("/v1/query", json=payload)
            assert response.status_code == 422
            assert field_name in response.json()["detail"]
            assert h.recorded.of(QUERIES) == []

    async def test_kafka_down_is_a_503(self) -> None:
        """A publish that fails because Kafka is unreachable is a 503, not a 500."""
        async with running(responder=_answer_for) as h:
            h.broker.publish = AsyncMock(side_effect=KafkaConnectionError())  # type: ignore[method-assign]
            response = await h.client.post("/v1/query", json={"query": "q"})
            assert response.status_code == 503
            assert "Kafka is unavailable" in response.json()["detail"]
            assert len(h.gateway.replies) == 0


def _delta(query: QueryRequested, seq: int, delta: str) -> AnswerDelta:
    return AnswerDelta(
        query_id=query.query_id, tenant=query.tenant, reply_to=query.reply_to, seq=seq, delta=delta
    )


def _parse_sse(text: str) -> list[tuple[str, Any]]:
    """Return the (event, JSON data) pairs of a Server-Sent Events body, comments skipped."""
    events: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def _stream(h: Harness, **payload: Any) -> tuple[httpx.Response, list[tuple[str, Any]]]:
    async with h.client.stream(
        "POST", "/v1/query", json={"query": "capital?", "stream": True, **payload}
    ) as response:
        text = (await response.aread()).decode()
    return response, _parse_sse(text)


class TestStreamedQuery:
    async def test_every_delta_arrives_in_order_then_done(self) -> None:
        """Streaming delivers every delta in order and a final done event with the full answer."""
        pieces = ["echo: ", "capital? ", "[1]"]

        def streaming(query: QueryRequested) -> list[Event]:
            deltas: list[Event] = [_delta(query, n, p) for n, p in enumerate(pieces)]
            return [*deltas, _answer_for(query, timings={"generate_ms": 2.5, "ttft_ms": 1.0})]

        async with running(responder=streaming) as h:
            response, events = await _stream(h)

            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            *deltas, (kind, done) = events
            assert kind == "done"
            assert deltas == [("delta", {"seq": n, "delta": p}) for n, p in enumerate(pieces)]
            assert "".join(piece for _, piece in (d.values() for _, d in deltas)) == done["answer"]
            assert done["citations"][0]["doc_id"] == "doc-1"
            assert done["query_id"] == h.recorded.of(QUERIES)[0]["body"]["query_id"]
            assert h.recorded.of(QUERIES)[0]["body"]["stream"] is True
            assert done["timings"]["generate_ttft_ms"] == 1.0
            assert 0 < done["timings"]["ttft_ms"] <= done["timings"]["gateway_total_ms"]
            assert len(h.gateway.replies) == 0
            metrics = h.gateway.metrics
            assert metrics.queries_in_flight.labels("gateway")._value.get() == 0
            assert metrics.answers_seen.labels("gateway", "delta")._value.get() == 3
            registry = metrics.service.registry
            count = registry.get_sample_value(
                "ragstream_gateway_ttft_seconds_count", {"service": "gateway"}
            )
            assert count == 1

    async def test_out_of_order_deltas_are_put_back_in_order(self) -> None:
        """Deltas published out of order, or twice, reach the client once each, in seq order."""

        def shuffled(query: QueryRequested) -> list[Event]:
            a, b, c = _delta(query, 0, "a"), _delta(query, 1, "b"), _delta(query, 2, "c")
            return [b, a, a, c, _answer_for(query, answer="abc")]

        async with running(responder=shuffled) as h:
            _, events = await _stream(h)

            assert [data for kind, data in events if kind == "delta"] == [
                {"seq": 0, "delta": "a"},
                {"seq": 1, "delta": "b"},
                {"seq": 2, "delta": "c"},
            ]
            assert events[-1][0] == "done"

    async def test_downstream_failure_ends_with_an_error_event(self) -> None:
        """An answer carrying an error ends the stream with an error event, not done."""

        def failing(query: QueryRequested) -> list[Event]:
            return [_delta(query, 0, "Partial"), _answer_for(query, error="generation failed: X")]

        async with running(responder=failing) as h:
            _, events = await _stream(h)

            assert events[0] == ("delta", {"seq": 0, "delta": "Partial"})
            kind, data = events[-1]
            assert kind == "error"
            assert data["detail"] == "generation failed: X"
            assert data["query_id"] == h.recorded.of(QUERIES)[0]["body"]["query_id"]
            assert len(h.gateway.replies) == 0

    async def test_no_answer_ends_with_a_timeout_error_event(self) -> None:
        """A stream with no answer within the query timeout ends with an error and leaks nothing."""
        async with running(query_timeout_s=0.1) as h:
            response, events = await _stream(h)

            assert response.status_code == 200
            assert events == [
                (
                    "error",
                    {
                        "detail": "no answer within 0.1 s",
                        "query_id": h.recorded.of(QUERIES)[0]["body"]["query_id"],
                    },
                )
            ]
            assert len(h.gateway.replies) == 0
            metrics = h.gateway.metrics
            assert metrics.query_timeouts.labels("gateway")._value.get() == 1
            assert metrics.queries_in_flight.labels("gateway")._value.get() == 0

    async def test_client_leaving_before_the_first_byte_leaks_nothing(self) -> None:
        """A client that disconnects before the stream starts leaves no pending query behind."""
        async with running(query_timeout_s=5) as h:
            body = json.dumps({"query": "q", "stream": True}).encode()
            scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.4"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/v1/query",
                "raw_path": b"/v1/query",
                "query_string": b"",
                "root_path": "",
                "headers": [(b"content-type", b"application/json"), (b"host", b"gateway")],
                "client": ("127.0.0.1", 1),
                "server": ("gateway", 80),
            }
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive() -> dict[str, Any]:
                return messages.pop(0) if messages else {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                raise OSError("the client went away")  # uvicorn's send, once it has left

            with pytest.raises((ClientDisconnect, OSError)):
                await h.app(scope, receive, send)

            assert len(h.recorded.of(QUERIES)) == 1
            assert len(h.gateway.replies) == 0
            assert h.gateway.metrics.queries_in_flight.labels("gateway")._value.get() == 0


class TestDocuments:
    async def test_post_publishes_the_document_and_its_received_status(self) -> None:
        """A document goes to documents keyed by its id, and 'received' to document-status."""
        async with running() as h:
            status_events: list[DocumentStatus] = []

            @h.broker.subscriber(DOCUMENT_STATUS, group_id="status-recorder")
            async def keep(event: DocumentStatus) -> None:
                status_events.append(event)

            await h.broker.start()
            response = await h.client.post(
                "/v1/documents",
                json={"doc_id": "doc-7", "title": "T", "content": "hello", "tags": ["a"]},
            )
            assert response.status_code == 202
            assert response.json() == {
                "doc_id": "doc-7",
                "status": "received",
                "status_url": "/v1/documents/doc-7",
            }
            (published,) = h.recorded.of(DOCUMENTS)
            assert published["key"] == b"doc-7"
            assert published["body"]["kind"] == "upsert"
            assert published["body"]["content"] == "hello"
            assert published["body"]["tags"] == ["a"]
            assert [(e.doc_id, e.stage) for e in status_events] == [("doc-7", "received")]

    async def test_doc_id_is_generated_when_absent(self) -> None:
        """Without a doc id the gateway assigns a fresh hex id and returns it."""
        async with running() as h:
            response = await h.client.post("/v1/documents", json={"content": "hello"})
            doc_id = response.json()["doc_id"]
            assert len(doc_id) == 32
            assert h.recorded.of(DOCUMENTS)[0]["body"]["doc_id"] == doc_id

    async def test_posted_document_is_visible_as_received(self) -> None:
        """Right after the upload, the status endpoint reports 'received', not indexed."""
        async with running() as h:
            await h.client.post("/v1/documents", json={"doc_id": "d1", "content": "x"})
            body = (await h.client.get("/v1/documents/d1")).json()
            assert (body["stage"], body["indexed"], body["tenant"]) == (
                "received",
                False,
                "default",
            )

    async def test_requests_never_hop_to_a_worker_thread(self, thread_hops: list[object]) -> None:
        """An upload and a status read run on the event loop alone (a hop costs each request)."""
        async with running() as h:
            await h.client.post("/v1/documents", json={"doc_id": "d1", "content": "x"})
            assert (await h.client.get("/v1/documents/d1")).status_code == 200
        assert thread_hops == []

    async def test_oversized_content_is_a_413_with_a_message(self) -> None:
        """Content above max_document_bytes is refused before anything is published."""
        async with running(max_document_bytes=10) as h:
            response = await h.client.post("/v1/documents", json={"content": "x" * 11})
            assert response.status_code == 413
            assert response.json()["detail"] == "content is 11 bytes; the limit is 10 bytes"
            assert h.recorded.of(DOCUMENTS) == []

    async def test_oversized_body_is_refused_before_reading(self) -> None:
        """A body whose declared length no document could need is a 413 straight away."""
        async with running(max_document_bytes=10) as h:
            response = await h.client.post(
                "/v1/documents",
                content=b"{" + b" " * 70_000 + b"}",
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 413
            assert "exceeds" in response.json()["detail"]

    async def test_base64_document_is_published_as_bytes(self) -> None:
        """content_base64 and filename travel on the upsert, with a generic default type."""
        encoded = base64.b64encode(b"%PDF-1.7 fake").decode()
        async with running() as h:
            response = await h.client.post(
                "/v1/documents",
                json={"doc_id": "r.pdf", "content_base64": encoded, "filename": "r.pdf"},
            )
            assert response.status_code == 202, response.text
            (published,) = h.recorded.of(DOCUMENTS)
            body = published["body"]
            assert (body["content"], body["content_base64"], body["filename"]) == (
                "",
                encoded,
                "r.pdf",
            )
            assert body["content_type"] == "application/octet-stream"

    async def test_size_limit_applies_to_decoded_bytes(self) -> None:
        """Base64 is measured decoded: 10 bytes pass a 10-byte limit, 11 bytes are a 413."""
        async with running(max_document_bytes=10) as h:
            fits = base64.b64encode(b"x" * 10).decode()
            too_big = base64.b64encode(b"x" * 11).decode()
            ok = await h.client.post("/v1/documents", json={"content_base64": fits})
            refused = await h.client.post("/v1/documents", json={"content_base64": too_big})
            assert ok.status_code == 202, ok.text
            assert refused.status_code == 413
            assert refused.json()["detail"] == "content is 11 bytes; the limit is 10 bytes"
            assert len(h.recorded.of(DOCUMENTS)) == 1

    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            ({"content_base64": "not base64!"}, "content_base64 is not valid base64"),
            ({"content": "x", "content_base64": "eA=="}, "both were given"),
            ({"content": " ", "content_base64": ""}, "neither was given"),
        ],
    )
    async def test_content_rules_are_422_with_a_message(
        self, payload: dict[str, Any], message: str
    ) -> None:
        """Invalid base64, or not exactly one of content and content_base64, is a 422."""
        async with running() as h:
            response = await h.client.post("/v1/documents", json=payload)
            assert response.status_code == 422
            assert message in response.json()["detail"]
            assert h.recorded.of(DOCUMENTS) == []

    async def test_received_names_the_version_of_the_upload(self) -> None:
        """With Kafka's acknowledgement at offset 41, the upload shows as received version 42."""
        stored = RecordMetadata(
            topic=DOCUMENTS,
            partition=2,
            topic_partition=TopicPartition(DOCUMENTS, 2),
            offset=41,
            timestamp=0,
            timestamp_type=0,
            log_start_offset=0,
        )
        async with running() as h:
            h.broker.publish = AsyncMock(return_value=stored)  # type: ignore[method-assign]
            await h.client.post("/v1/documents", json={"doc_id": "v", "content": "x"})
            body = (await h.client.get("/v1/documents/v")).json()
            assert (body["stage"], body["version"]) == ("received", 42)
            upsert, received = (call.args[0] for call in h.broker.publish.await_args_list)
            assert (received.stage, received.version) == ("received", 42)
            assert received.occurred_at == upsert.occurred_at
            assert body["timestamps"] == {"received": body["updated_at"]}

    async def test_path_like_doc_ids_round_trip(self) -> None:
        """A doc id with slashes and spaces is accepted, and its status URL serves it."""
        async with running() as h:
            response = await h.client.post(
                "/v1/documents", json={"doc_id": "guides/set up.md", "content": "x"}
            )
            assert response.status_code == 202, response.text
            url = response.json()["status_url"]
            assert url == "/v1/documents/guides/set%20up.md"
            assert (await h.client.get(url)).json()["doc_id"] == "guides/set up.md"
            encoded = await h.client.get("/v1/documents/guides%2Fset%20up.md")
            assert encoded.json()["doc_id"] == "guides/set up.md"

    @pytest.mark.parametrize(
        ("payload", "field_name"),
        [
            ({"content": ""}, "content"),
            ({"content": "   "}, "content"),
            ({"title": "no content"}, "content"),
            ({"content": "x", "doc_id": " padded"}, "doc_id"),
            ({"content": "x", "filename": "f" * 1001}, "filename"),
        ],
    )
    async def test_invalid_documents_are_422_with_a_message(
        self, payload: dict[str, Any], field_name: str
    ) -> None:
        """Invalid documents are refused with a message naming the field."""
        async with running() as h:
            response = await h.client.post("/v1/documents", json=payload)
            assert response.status_code == 422
            assert field_name in response.json()["detail"]

    async def test_malformed_json_is_422(self) -> None:
        """A body that is not JSON is a client error with a message."""
        async with running() as h:
            response = await h.client.post(
                "/v1/documents", content=b"{nope", headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 422
            assert "invalid request" in response.json()["detail"]

    async def test_unknown_document_is_404(self) -> None:
        """A document no status event named is a 404 with a message."""
        async with running() as h:
            response = await h.client.get("/v1/documents/never-seen")
            assert response.status_code == 404
            assert "never-seen" in response.json()["detail"]

    async def test_status_event_from_the_pipeline_is_served(self) -> None:
        """Status events on document-status update what GET returns, per tenant."""
        async with running() as h:
            stages: tuple[DocumentStage, ...] = ("chunked", "indexed")
            for stage in stages:
                event = DocumentStatus(
                    doc_id="d2",
                    tenant="acme",
                    stage=stage,
                    version=3,
                    chunk_count=9,
                    doc_hash="abc",
                    occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                )
                await publish_event(h.broker, event, topic=DOCUMENT_STATUS, key="d2")
            response = await h.client.get("/v1/documents/d2", params={"tenant": "acme"})
            assert response.status_code == 200
            body = response.json()
            assert (body["stage"], body["indexed"], body["version"], body["chunk_count"]) == (
                "indexed",
                True,
                3,
                9,
            )
            assert body["doc_hash"] == "abc"
            assert body["timestamps"] == {
                "chunked": "2026-01-02T03:04:05Z",
                "indexed": "2026-01-02T03:04:05Z",
            }
            assert (await h.client.get("/v1/documents/d2")).status_code == 404

    async def test_unreadable_status_event_is_skipped(self) -> None:
        """A malformed status event is counted and skipped, and the view keeps working."""
        async with running() as h:
            await h.broker.publish(b"{not json", topic=DOCUMENT_STATUS, key=b"d3")
            await h.broker.publish(b"", topic=DOCUMENT_STATUS, key=b"d3")
            metrics = h.gateway.metrics
            assert metrics.status_events.labels("gateway", "rejected")._value.get() == 1
            assert metrics.status_events.labels("gateway", "tombstone")._value.get() == 1
            assert (await h.client.get("/v1/documents/d3")).status_code == 404

    async def test_delete_publishes_document_deleted(self) -> None:
        """DELETE sends a DocumentDeleted keyed by the doc id and answers 202."""
        async with running() as h:
            response = await h.client.delete("/v1/documents/d4", params={"tenant": "acme"})
            assert response.status_code == 202
            assert response.json()["status"] == "delete_requested"
            assert response.json()["status_url"] == "/v1/documents/d4?tenant=acme"
            (published,) = h.recorded.of(DOCUMENTS)
            assert published["key"] == b"d4"
            assert (published["body"]["kind"], published["body"]["tenant"]) == ("delete", "acme")

    async def test_kafka_down_is_a_503(self) -> None:
        """An upload that cannot reach Kafka is a 503 with a message."""
        async with running() as h:
            h.broker.publish = AsyncMock(side_effect=KafkaConnectionError())  # type: ignore[method-assign]
            response = await h.client.post("/v1/documents", json={"content": "x"})
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"


class TestOperations:
    async def test_healthz_is_200_when_ready(self) -> None:
        """A started replica whose broker answers ping is healthy."""
        async with running() as h:
            response = await h.client.get("/healthz")
            assert response.status_code == 200
            assert response.json()["instance_id"] == INSTANCE

    async def test_healthz_is_503_once_the_status_view_has_stopped(self) -> None:
        """A replica whose status view no longer follows Kafka asks to be restarted."""

        class Stopped(StatusFeed):
            @property
            def stopped(self) -> bool:
                return True

        async with running() as h:
            assert (await h.client.get("/healthz")).status_code == 200
            h.app.state.gateway.status_feed = Stopped(lambda value: None)
            response = await h.client.get("/healthz")
            assert response.status_code == 503
            assert response.json() == {"status": "status view stopped"}

    async def test_healthz_is_503_before_startup(self) -> None:
        """A replica whose lifespan has not run yet is not ready."""
        app = create_app(GatewaySettings(instance_id=INSTANCE))
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            assert (await client.get("/healthz")).status_code == 503

    async def test_metrics_expose_gateway_instruments(self) -> None:
        """/metrics serves request latency by route, in-flight queries and timeouts."""
        async with running(responder=_answer_for) as h:
            await h.client.post("/v1/query", json={"query": "q"})
            text = (await h.client.get("/metrics")).text
            assert 'route="/v1/query"' in text
            assert "ragstream_http_request_duration_seconds_bucket" in text
            assert "ragstream_queries_in_flight" in text
            assert "ragstream_query_timeouts_total" in text
            assert 'ragstream_events_published_total{service="gateway",topic="queries"} 1.0' in text

    async def test_openapi_documents_the_v1_routes_with_models(self) -> None:
        """The OpenAPI document lists every /v1 route and its request and response models."""
        async with running() as h:
            spec = (await h.client.get("/openapi.json")).json()
            assert {"/v1/documents", "/v1/documents/{doc_id}", "/v1/query"} <= set(spec["paths"])
            assert {
                "DocumentIn",
                "DocumentAccepted",
                "DocumentStatusView",
                "QueryIn",
                "QueryAnswer",
                "FiltersIn",
                "UsageOut",
                "ErrorBody",
            } <= set(spec["components"]["schemas"])
            query_in = spec["components"]["schemas"]["QueryIn"]["properties"]
            assert {"alpha", "filters", "min_score", "top_k", "tenant"} <= set(query_in)
            assert "/metrics" not in spec["paths"]

    async def test_unexpected_error_is_a_json_message(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bug surfaces as a logged JSON error with the correlation id, not an HTML page."""
        # Stands in for the logger, whose console traceback rendering takes seconds in tests.
        log = MagicMock()
        monkeypatch.setattr("ragstream_gateway.api._log", log)
        async with running(raise_app_exceptions=False) as h:
            h.gateway.statuses.get = None  # type: ignore[assignment, method-assign]
            response = await h.client.get("/v1/documents/d", headers={"X-Request-ID": "trace-1"})
            assert response.status_code == 500
            assert response.json()["detail"] == "internal error (TypeError); correlation id trace-1"
            log.exception.assert_called_once()
