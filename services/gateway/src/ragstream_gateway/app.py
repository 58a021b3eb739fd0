"""The gateway application: the REST API, its Kafka consumers, ``/metrics`` and ``/healthz``.

A plain FastAPI app whose lifespan starts a broker from ``ragstream_common.messaging``, rather than
FastStream's FastAPI ``KafkaRouter``: that router builds a broker of its own, which would lose the
correlation, Prometheus and dead-letter middlewares every ragstream service shares.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, StatusCode
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragstream_common.logging import bind_correlation_id, get_logger
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import metrics_asgi_app
from ragstream_common.topics import ANSWERS, DOCUMENT_STATUS
from ragstream_common.tracing import new_trace, trace_id_of
from ragstream_gateway.adapters.kafka_positions import fix_positions
from ragstream_gateway.adapters.status_feed import KafkaStatusFeed
from ragstream_gateway.api import Gateway, install_error_handlers, router
from ragstream_gateway.domain import accept_correlation_id
from ragstream_gateway.handlers import build_consumers, fold_status
from ragstream_gateway.instruments import GatewayMetrics
from ragstream_gateway.settings import GatewaySettings

__all__ = ["create_app"]

_log = get_logger(__name__)

# A health probe must answer well within a kubelet's probe timeout.
_PING_TIMEOUT_S = 3.0
# JSON can spell one byte of content as up to six ("\u0001"); above this, no document can fit.
_JSON_EXPANSION = 6
_ENVELOPE_BYTES = 64 * 1024

_DESCRIPTION = """\
The public API of ragstream: send documents in, follow their indexing, and ask questions that are
answered from them with citations. Every response carries `X-Request-ID`: the id of the request's
trace, which is also a query's `query_id`; send one (or `X-Correlation-ID`) to have yours used in
the platform's logs and messages instead, next to the trace id.
"""


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the gateway: routes, Kafka consumers and lifespan. No I/O happens until startup.

    Args:
        settings: The gateway's settings; read from the environment when None.
    """
    settings = settings if settings is not None else GatewaySettings()
    metrics = GatewayMetrics(settings.service_name)
    broker = create_broker(settings, metrics.service)
    gateway = Gateway(settings=settings, broker=broker, metrics=metrics)
    consumers = build_consumers(settings, broker, gateway.replies, metrics, gateway.answers)
    broker.include_router(consumers.router)
    gateway.status_feed = KafkaStatusFeed(
        settings, lambda value: fold_status(value, gateway.statuses, metrics)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await broker.start()
        try:
            # Not ready until every answers partition has a fixed position: a query accepted
            # earlier could have its answer land below a position still being looked up, and
            # be skipped. Uvicorn serves no request before this lifespan yields.
            await fix_positions(
                consumers.answers.consumer, ANSWERS, max_wait_s=settings.startup_timeout_s
            )
            await gateway.status_feed.start()
            await gateway.status_catch_up.start(
                gateway.status_feed.consumer,
                DOCUMENT_STATUS,
                max_wait_s=settings.startup_timeout_s,
            )
            gateway.ready = True
            _log.info("gateway_ready", instance_id=settings.instance_id)
            yield
        finally:
            gateway.ready = False
            gateway.replies.cancel_all()
            await gateway.status_feed.stop()
            await broker.stop()

    app = FastAPI(
        title="ragstream gateway",
        version="0.1.0",
        description=_DESCRIPTION,
        lifespan=lifespan,
        # The request's server span is _RequestContextMiddleware's: FastAPI's own would follow a
        # client's traceparent, and here the trace id is ours to hand out (a query's id).
        telemetry={"tracing": False},
    )
    app.state.gateway = gateway
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(
        _RequestContextMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_document_bytes * _JSON_EXPANSION + _ENVELOPE_BYTES,
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        """200 when this replica is ready and Kafka answers a ping, 503 otherwise."""
        if not gateway.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        if gateway.status_feed.stopped:
            return JSONResponse({"status": "status view stopped"}, status_code=503)
        if not await broker.ping(timeout=_PING_TIMEOUT_S):
            return JSONResponse({"status": "kafka unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "instance_id": settings.instance_id})

    app.router.routes.append(
        Route(
            "/metrics",
            _AsgiEndpoint(metrics_asgi_app(metrics.service.registry)),
            methods=["GET"],
            include_in_schema=False,
        )
    )
    return app


class _AsgiEndpoint:
    """Wraps a plain ASGI function so that Starlette routes to it as an app, not a view."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


# Requests under this prefix are traced; probes and scrapes, every few seconds, are not worth one.
_TRACED_PREFIX = "/v1/"


class _RequestContextMiddleware:
    """Per request: a trace, a correlation id (bound, echoed), latency by route, a body size cap.

    Every API request starts a trace of its own (a server span); its id is the request's
    correlation id, unless the client sent an id: that one is honoured, as it always was, and
    the logs carry both (``correlation_id`` and ``trace_id``). A client's ``traceparent`` is not
    followed: at the public edge the trace id is an id we hand out (a query's id), not theirs.

    Args:
        app: The application to wrap.
        metrics: Where request latencies go.
        max_body_bytes: Requests declaring a larger body are refused before it is read.
    """

    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with _request_span(scope) as span:
            await self._handle(scope, receive, send, span)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, span: Span) -> None:
        headers = Headers(scope=scope)
        client_id = accept_correlation_id(
            headers.get("x-request-id") or headers.get("x-correlation-id")
        )
        # scope["state"] is request.state: a route may replace the id (queries use theirs).
        state = scope.setdefault("state", {})
        state["client_correlation_id"] = client_id
        # None outside /v1, or with tracing not configured (tests that do not set it up).
        state["trace_id"] = trace_id_of(span.get_span_context())
        state["correlation_id"] = client_id or state["trace_id"] or uuid.uuid4().hex
        if client_id is not None:
            # The way from the client's id to the trace, in the tracing backend.
            span.set_attribute("ragstream.client_correlation_id", client_id)
        bind_correlation_id(state["correlation_id"])
        started = time.perf_counter()
        status_code = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_headers = MutableHeaders(scope=message)
                response_headers["X-Request-ID"] = state["correlation_id"]
                response_headers["X-Correlation-ID"] = state["correlation_id"]
            await send(message)

        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                too_large = JSONResponse(
                    {"detail": f"request body exceeds {self.max_body_bytes} bytes"},
                    status_code=413,
                )
                await too_large(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request_seconds.labels(
                self.metrics.name, scope["method"], route, str(status_code)
            ).observe(time.perf_counter() - started)
            _describe_request_span(span, scope["method"], route, status_code)
            bind_correlation_id(None)


@contextmanager
def _request_span(scope: Scope) -> Iterator[Span]:
    """Start the trace of an API request (a server span), or yield no span for other paths."""
    if not scope["path"].startswith(_TRACED_PREFIX):
        yield INVALID_SPAN
        return
    attributes = {"http.request.method": scope["method"], "url.path": scope["path"]}
    # Named by method alone until routing has found the route (semantic conventions).
    with new_trace(scope["method"], kind=SpanKind.SERVER, attributes=attributes) as span:
        yield span


def _describe_request_span(span: Span, method: str, route: str, status_code: int) -> None:
    """Name the request's span after its route and record the response's status."""
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 500:
        span.set_status(StatusCode.ERROR)
