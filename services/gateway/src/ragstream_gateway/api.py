"""The public REST API under ``/v1``: documents in, document status, queries and their answers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from faststream.exceptions import IncorrectState
from faststream.kafka import KafkaBroker
from starlette.types import Receive, Scope, Send

from ragstream_common.events import (
    AnswerCompleted,
    AnswerDelta,
    DocumentDeleted,
    DocumentStatus,
    DocumentUpserted,
    Event,
    QueryRequested,
)
from ragstream_common.logging import bind_correlation_id, get_logger
from ragstream_common.messaging import publish_event
from ragstream_common.topics import DOCUMENT_STATUS, DOCUMENTS, FEEDBACK, QUERIES
from ragstream_gateway.adapters.kafka_positions import StatusCatchUp
from ragstream_gateway.adapters.status_feed import StatusFeed
from ragstream_gateway.domain import (
    DEFAULT_TENANT,
    DOC_ID_PATTERN,
    TENANT_PATTERN,
    DeltaOrder,
    DocumentAccepted,
    DocumentIn,
    DocumentStatusView,
    ErrorBody,
    PendingReplies,
    QueryAnswer,
    QueryIn,
    StatusBook,
    StreamItem,
    answer_to_response,
    sse_comment,
    sse_event,
    status_url,
    upload_version,
)
from ragstream_gateway.feedback import AnswerLedger, FeedbackAccepted, FeedbackIn, feedback_event
from ragstream_gateway.instruments import GatewayMetrics
from ragstream_gateway.settings import GatewaySettings

__all__ = ["ApiError", "Gateway", "install_error_handlers", "router"]

_log = get_logger(__name__)


class ApiError(Exception):
    """An error with the HTTP status and message the client should get.

    Args:
        status_code: The HTTP status.
        detail: A message for the client.
        query_id: The query concerned, if any.
        headers: Extra response headers (Retry-After, say).
    """

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        query_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.query_id = query_id
        self.headers = headers


@dataclass
class Gateway:
    """What the routes need: settings, broker, metrics, the reply registry and the status view."""

    settings: GatewaySettings
    broker: KafkaBroker
    metrics: GatewayMetrics
    replies: PendingReplies = field(default_factory=PendingReplies)
    statuses: StatusBook = field(default_factory=StatusBook)
    status_catch_up: StatusCatchUp = field(default_factory=StatusCatchUp)
    # Reads document-status into ``statuses``: app.py puts Kafka's in (tests, another).
    status_feed: StatusFeed = field(default_factory=lambda: StatusFeed(lambda value: None))
    # Who wrote each recent answer (every replica's), for feedback.
    answers: AnswerLedger = field(default_factory=AnswerLedger)
    # Set once the reply consumer's positions are fixed (see app.py's lifespan).
    ready: bool = False

    async def publish(
        self, event: Event, *, topic: str, key: str, correlation_id: str | None, max_wait_s: float
    ) -> RecordMetadata | None:
        """Publish ``event``, turning Kafka trouble into the HTTP error it means for the client.

        Returns where Kafka stored it (None under the in-memory test broker).

        Args:
            event: The event.
            topic: Its topic.
            key: Its partitioning key.
            correlation_id: The request's correlation id.
            max_wait_s: Seconds before Kafka counts as unavailable.
        """
        try:
            async with asyncio.timeout(max_wait_s):
                return await publish_event(
                    self.broker,
                    event,
                    topic=topic,
                    key=key,
                    metrics=self.metrics.service,
                    correlation_id=correlation_id,
                )
        except MessageSizeTooLargeError as error:
            raise ApiError(
                status.HTTP_413_CONTENT_TOO_LARGE,
                "the document is too large for one Kafka message once encoded",
            ) from error
        except (KafkaError, IncorrectState, TimeoutError) as error:
            _log.warning("publish_failed", topic=topic, error_type=type(error).__name__)
            raise ApiError(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"Kafka is unavailable ({type(error).__name__}); retry later",
                headers={"Retry-After": "1"},
            ) from error


# A coroutine because FastAPI runs a plain function dependency on a worker thread: a hop for
# every request that costs more than the attribute it reads.
async def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _correlation_id(request: Request) -> str:
    # Chosen by the request middleware in app.py (the client's id, or a fresh one).
    correlation_id: str = request.state.correlation_id
    return correlation_id


GatewayDep = Annotated[Gateway, Depends(_gateway)]
DocIdPath = Annotated[
    str, Path(pattern=DOC_ID_PATTERN, description="The document id; it may contain '/'.")
]
TenantQuery = Annotated[str, Query(pattern=TENANT_PATTERN, description="The document's tenant.")]

# A streamed response with nothing to send says so this often, so proxies keep it open.
_HEARTBEAT_S = 10.0

_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "Kafka is unavailable."},
}

router = APIRouter(prefix="/v1")


@router.post(
    "/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DocumentAccepted,
    responses={413: {"model": ErrorBody, "description": "The content is too large."}, **_ERRORS},
    tags=["documents"],
    summary="Add or replace a document",
)
async def upsert_document(
    document: DocumentIn, request: Request, gateway: GatewayDep
) -> DocumentAccepted:
    """Accept a document for indexing; follow its progress at ``status_url``."""
    size = document.content_bytes()
    limit = gateway.settings.max_document_bytes
    if size > limit:
        raise ApiError(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"content is {size} bytes; the limit is {limit} bytes",
        )
    doc_id = document.doc_id or uuid.uuid4().hex
    correlation_id = _correlation_id(request)
    max_wait_s = gateway.settings.publish_timeout_s
    upserted = DocumentUpserted(
        doc_id=doc_id,
        tenant=document.tenant,
        title=document.title,
        content=document.content,
        content_base64=document.content_base64,
        content_type=document.resolved_content_type,
        filename=document.filename,
        source=document.source,
        tags=document.tags,
    )
    stored = await gateway.publish(
        upserted, topic=DOCUMENTS, key=doc_id, correlation_id=correlation_id, max_wait_s=max_wait_s
    )
    # Named with the version the ingestor will give this upload, so that the view can tell it
    # from events about the version it replaces; stamped with the upload's time, which precedes
    # every later stage of it.
    received = DocumentStatus(
        doc_id=doc_id,
        tenant=document.tenant,
        stage="received",
        version=upload_version(stored.offset) if stored is not None else None,
        occurred_at=upserted.occurred_at,
        published_at=upserted.published_at,
    )
    # Read-your-writes on this replica: the view need not wait for the topic round trip.
    gateway.statuses.apply(received)
    # Keyed like the documents topic, so the stages of one document share a partition and order.
    await gateway.publish(
        received,
        topic=DOCUMENT_STATUS,
        key=doc_id,
        correlation_id=correlation_id,
        max_wait_s=max_wait_s,
    )
    _log.info(
        "document_received",
        doc_id=doc_id,
        tenant=document.tenant,
        bytes=size,
        version=received.version,
    )
    return DocumentAccepted(
        doc_id=doc_id, status="received", status_url=status_url(doc_id, document.tenant)
    )


@router.get(
    "/documents/{doc_id:path}",
    response_model=DocumentStatusView,
    responses={
        404: {"model": ErrorBody, "description": "No such document."},
        503: {"model": ErrorBody, "description": "The status view is still loading."},
    },
    tags=["documents"],
    summary="Where a document stands in the pipeline",
)
async def document_status(
    doc_id: DocIdPath, gateway: GatewayDep, tenant: TenantQuery = DEFAULT_TENANT
) -> DocumentStatusView:
    """Return the latest status of a document; ``indexed`` is true once it is searchable."""
    view = gateway.statuses.get(tenant, doc_id)
    if view is not None:
        return view
    if not await gateway.status_catch_up.reached():
        raise ApiError(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the status view is still loading; retry shortly",
            headers={"Retry-After": "1"},
        )
    raise ApiError(status.HTTP_404_NOT_FOUND, f"unknown document {doc_id!r} in tenant {tenant!r}")


@router.delete(
    "/documents/{doc_id:path}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DocumentAccepted,
    responses=_ERRORS,
    tags=["documents"],
    summary="Withdraw a document from the index",
)
async def delete_document(
    doc_id: DocIdPath, request: Request, gateway: GatewayDep, tenant: TenantQuery = DEFAULT_TENANT
) -> DocumentAccepted:
    """Request the removal of every chunk of a document; its status turns ``deleted``."""
    await gateway.publish(
        DocumentDeleted(doc_id=doc_id, tenant=tenant),
        topic=DOCUMENTS,
        key=doc_id,
        correlation_id=_correlation_id(request),
        max_wait_s=gateway.settings.publish_timeout_s,
    )
    _log.info("document_delete_requested", doc_id=doc_id, tenant=tenant)
    return DocumentAccepted(
        doc_id=doc_id, status="delete_requested", status_url=status_url(doc_id, tenant)
    )


@router.post(
    "/query",
    response_model=QueryAnswer,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "The answer; with `stream: true`, Server-Sent Events: `delta` "
            "(`{seq, delta}`), then `done` (this body) or `error` (`{detail, query_id}`).",
        },
        502: {"model": ErrorBody, "description": "The pipeline failed to answer."},
        504: {"model": ErrorBody, "description": "No answer within the query timeout."},
        **_ERRORS,
    },
    tags=["queries"],
    summary="Ask a question of the indexed documents",
)
async def query(
    body: QueryIn, request: Request, gateway: GatewayDep
) -> QueryAnswer | StreamingResponse:
    """Answer a question with citations, waiting for the pipeline's answer (or streaming it)."""
    started = time.perf_counter()
    settings = gateway.settings
    if not gateway.ready:
        raise ApiError(status.HTTP_503_SERVICE_UNAVAILABLE, "the gateway is starting; retry")
    # The request's trace id (app.py's middleware) is the query's id: one id names the query,
    # its trace and, unless the client sent its own, its correlation id.
    query_id = request.state.trace_id or uuid.uuid4().hex
    correlation_id = request.state.client_correlation_id or query_id
    request.state.correlation_id = correlation_id
    bind_correlation_id(correlation_id)

    if body.stream:
        return await _stream_query(body, gateway, query_id, correlation_id, started)
    # Registered before publishing: an answer can arrive before publish() even returns.
    pending = gateway.replies.expect(query_id)
    gateway.metrics.queries_in_flight.labels(gateway.metrics.name).inc()
    try:
        await gateway.publish(
            QueryRequested(
                query_id=query_id,
                tenant=body.tenant,
                text=body.query,
                top_k=body.top_k,
                alpha=body.alpha,
                filters=body.filters.to_event() if body.filters else None,
                min_score=body.min_score,
                reply_to=settings.instance_id,
                stream=body.stream,
                cache=body.cache,
            ),
            topic=QUERIES,
            key=query_id,
            correlation_id=correlation_id,
            max_wait_s=min(settings.publish_timeout_s, settings.query_timeout_s),
        )
        remaining = settings.query_timeout_s - (time.perf_counter() - started)
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                answer = await pending
        except TimeoutError:
            gateway.metrics.query_timeouts.labels(gateway.metrics.name).inc()
            _log.warning("query_timed_out", query_id=query_id)
            raise ApiError(
                status.HTTP_504_GATEWAY_TIMEOUT,
                f"no answer within {settings.query_timeout_s:g} s",
                query_id=query_id,
            ) from None
    finally:
        # Completion already removed it; this covers timeouts, Kafka errors and disconnects.
        gateway.replies.forget(query_id)
        gateway.metrics.queries_in_flight.labels(gateway.metrics.name).dec()

    if answer.error:
        _log.warning("query_failed_downstream", query_id=query_id, error=answer.error[:300])
        raise ApiError(status.HTTP_502_BAD_GATEWAY, answer.error, query_id=query_id)
    total_ms = (time.perf_counter() - started) * 1000
    _log.info("query_answered", query_id=query_id, total_ms=round(total_ms, 1))
    return answer_to_response(answer, gateway_total_ms=total_ms)


@router.post(
    "/feedback",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FeedbackAccepted,
    responses={
        404: {"model": ErrorBody, "description": "No recent answer has this query id."},
        **_ERRORS,
    },
    tags=["queries"],
    summary="Rate an answer",
)
async def give_feedback(
    body: FeedbackIn, request: Request, gateway: GatewayDep
) -> FeedbackAccepted:
    """Record a user's rating (1..5, and an optional comment) of the answer to ``query_id``.

    It is counted against the model and prompt version that wrote the answer
    (``ragstream_feedback_rating``) and kept on the ``feedback`` topic for offline evaluation.
    Any gateway replica accepts feedback on any answer of the last 24 hours.
    """
    answered_by = gateway.answers.lookup(body.query_id)
    if answered_by is None:
        raise ApiError(
            status.HTTP_404_NOT_FOUND,
            f"no answer to query {body.query_id!r} in the last 24 hours",
            query_id=body.query_id,
        )
    event = feedback_event(body, answered_by)
    await gateway.publish(
        event,
        topic=FEEDBACK,
        key=body.query_id,
        correlation_id=_correlation_id(request),
        max_wait_s=gateway.settings.publish_timeout_s,
    )
    gateway.metrics.feedback(event.model, event.prompt_version, event.rating)
    # The comment is the user's own words: kept on the topic, not copied into the logs.
    _log.info(
        "feedback_given",
        query_id=body.query_id,
        rating=body.rating,
        model=event.model,
        prompt_version=event.prompt_version,
        with_comment=body.comment is not None,
    )
    return FeedbackAccepted(
        query_id=body.query_id, model=event.model, prompt_version=event.prompt_version
    )


async def _stream_query(
    body: QueryIn, gateway: Gateway, query_id: str, correlation_id: str, started: float
) -> StreamingResponse:
    """Publish a streamed query and return the response that relays its answer as it comes.

    Errors before the first byte (Kafka down, say) are ordinary JSON errors; after it, the
    stream ends with an ``error`` event instead. The query stays registered until the stream
    ends, whether by its answer, the query timeout, or the client going away.
    """
    settings = gateway.settings
    # Registered before publishing: a delta can arrive before publish() even returns.
    queue = gateway.replies.expect_stream(query_id)
    gateway.metrics.queries_in_flight.labels(gateway.metrics.name).inc()
    released = False

    def release() -> None:
        # Runs when the stream ends, and again when the response finishes whichever way (the
        # client may leave before the stream even started); only the first call counts.
        nonlocal released
        if not released:
            released = True
            gateway.replies.forget(query_id)
            gateway.metrics.queries_in_flight.labels(gateway.metrics.name).dec()

    try:
        await gateway.publish(
            QueryRequested(
                query_id=query_id,
                tenant=body.tenant,
                text=body.query,
                top_k=body.top_k,
                alpha=body.alpha,
                filters=body.filters.to_event() if body.filters else None,
                min_score=body.min_score,
                reply_to=settings.instance_id,
                stream=True,
                cache=body.cache,
            ),
            topic=QUERIES,
            key=query_id,
            correlation_id=correlation_id,
            max_wait_s=min(settings.publish_timeout_s, settings.query_timeout_s),
        )
    except BaseException:
        release()
        raise

    async def events() -> AsyncIterator[str]:
        try:
            async for event in _relay(gateway, query_id, queue, started):
                yield event
        finally:
            release()

    return _EventStream(events(), on_close=release)


class _EventStream(StreamingResponse):
    """A Server-Sent Events response that calls ``on_close`` however it ends.

    Starlette runs a response's background task only after a complete response; a client that
    disconnects (``ClientDisconnect``) skips it, and may leave before the body's generator has
    even started, so its ``finally`` never runs either.
    """

    def __init__(self, content: AsyncIterator[str], *, on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            # No caching, and no buffering by proxies that would hold the deltas back (nginx).
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


async def _relay(
    gateway: Gateway, query_id: str, queue: asyncio.Queue[StreamItem], started: float
) -> AsyncIterator[str]:
    """Yield the SSE events of one streamed query: deltas in order, then done or error."""
    settings = gateway.settings
    deadline = started + settings.query_timeout_s
    order = DeltaOrder()
    first_delta_ms: float | None = None
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            gateway.metrics.query_timeouts.labels(gateway.metrics.name).inc()
            _log.warning("query_timed_out", query_id=query_id, deltas=order.next_seq)
            yield sse_event(
                "error",
                {
                    "detail": f"no answer within {settings.query_timeout_s:g} s",
                    "query_id": query_id,
                },
            )
            return
        try:
            async with asyncio.timeout(min(remaining, _HEARTBEAT_S)):
                item = await queue.get()
        except TimeoutError:
            if deadline - time.perf_counter() > 0:
                yield sse_comment("keep-alive")
            continue
        if isinstance(item, AnswerDelta):
            for delta in order.push(item):
                if first_delta_ms is None:
                    first_delta_ms = (time.perf_counter() - started) * 1000
                    gateway.metrics.first_delta(first_delta_ms / 1000)
                yield sse_event("delta", {"seq": delta.seq, "delta": delta.delta})
            continue
        yield _final_event(item, query_id, order, started, first_delta_ms)
        return


def _final_event(
    answer: AnswerCompleted,
    query_id: str,
    order: DeltaOrder,
    started: float,
    first_delta_ms: float | None,
) -> str:
    if order.held():
        # A delta never arrived: the done event still carries the whole answer.
        _log.warning("stream_gap", query_id=query_id, held=order.held(), next_seq=order.next_seq)
    if answer.error:
        _log.warning("query_failed_downstream", query_id=query_id, error=answer.error[:300])
        return sse_event("error", {"detail": answer.error, "query_id": query_id})
    total_ms = (time.perf_counter() - started) * 1000
    _log.info("query_answered", query_id=query_id, total_ms=round(total_ms, 1), streamed=True)
    response = answer_to_response(answer, gateway_total_ms=total_ms)
    timings = dict(response.timings)
    # The generator's ttft_ms counts from the context's arrival there; the client's, from the
    # request's arrival here, is the one the response reports under that name.
    if (generator_ttft := timings.pop("ttft_ms", None)) is not None:
        timings["generate_ttft_ms"] = generator_ttft
    if first_delta_ms is not None:
        timings["ttft_ms"] = round(first_delta_ms, 3)
    return sse_event(
        "done", response.model_copy(update={"timings": timings}).model_dump(mode="json")
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every failure a JSON ``{"detail": ...}`` with a meaningful status code.

    Args:
        app: The application to equip.
    """

    async def api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        body = ErrorBody(detail=error.detail, query_id=error.query_id)
        return JSONResponse(
            body.model_dump(exclude_none=True), error.status_code, headers=error.headers
        )

    async def kafka_error(request: Request, error: Exception) -> JSONResponse:
        # A safety net: publishing goes through Gateway.publish, which maps these already.
        return JSONResponse(
            {"detail": f"Kafka is unavailable ({type(error).__name__}); retry later"},
            status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        # FastAPI's own shape (a list of located errors) plus one readable sentence.
        errors = error.errors()
        summary = "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', '')}"
            for item in errors
        )
        return JSONResponse(
            {"detail": f"invalid request: {summary}", "errors": _jsonable(errors)},
            status.HTTP_422_UNPROCESSABLE_CONTENT,
        )

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        _log.exception("unhandled_error", path=request.url.path)
        correlation_id = getattr(request.state, "correlation_id", None)
        return JSONResponse(
            {"detail": f"internal error ({type(error).__name__}); correlation id {correlation_id}"},
            status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(KafkaError, kafka_error)
    app.add_exception_handler(IncorrectState, kafka_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


def _jsonable(errors: Any) -> Any:
    # The offending input is left out: it can be a whole document, and the location and message
    # already say what is wrong. "ctx" may hold exception objects, hence the string encoder.
    return jsonable_encoder(
        [{k: v for k, v in item.items() if k in {"type", "loc", "msg", "ctx"}} for item in errors],
        custom_encoder={Exception: str},
    )
