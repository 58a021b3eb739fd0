"""Kafka plumbing every service shares: the broker, its middlewares, publishing, dead letters.

Delivery is at least once: offsets are committed after a handler succeeds, a handler that fails
with a transient error has its message redelivered, and a message that can never succeed (bad
JSON, an unknown schema, a document we cannot parse) goes to ``<topic>.dlq`` with the reason and
its original bytes, so nothing is lost and nothing blocks the partition behind it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata
from faststream import AckPolicy, BaseMiddleware

# The class behind ``faststream.params.Context`` (a function); FastStream exports it nowhere else.
from faststream._internal.context.context_type import Context
from faststream.kafka import KafkaBroker, KafkaRouter, Topic
from faststream.kafka.message import KafkaMessage as _KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind
from pydantic import ValidationError

from ragstream_common.events import DeadLetter, Event
from ragstream_common.logging import bind_correlation_id, current_correlation_id, get_logger
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.settings import ServiceSettings
from ragstream_common.topics import MAX_MESSAGE_BYTES, dlq_name
from ragstream_common.tracing import (
    child_span,
    current_trace_id,
    new_trace,
    remote_parent,
    trace_id_of,
)

__all__ = [
    "IDLE_POLL_MS",
    "KafkaMessage",
    "PoisonMessageError",
    "Received",
    "batch_records",
    "batch_subscriber",
    "consumer_options",
    "create_broker",
    "dead_letter",
    "handle_each",
    "handle_in_order",
    "publish_event",
    "publish_event_unconfirmed",
    "record_header",
    "record_message",
    "valid_events",
]

EventT = TypeVar("EventT", bound=Event)

_log = get_logger(__name__)

# How long a failing handler waits before its message is redelivered, so that an outage of a
# dependency (Weaviate restarting, say) does not turn into a hot loop.
REDELIVERY_BACKOFF_SECONDS = 1.0


class PoisonMessageError(Exception):
    """Raised by a handler for a message that can never be processed, whatever the retries."""


# A result too large for the topic will be too large on every retry as well.
_POISON = (
    PoisonMessageError,
    ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
    MessageSizeTooLargeError,
)


class _LoopContext(Context):
    """FastStream's ``Context`` parameter, resolved on the event loop.

    FastDepends runs a custom field's synchronous ``use`` through ``anyio.to_thread``: a thread
    hop for every message a handler takes, about 0.4 ms of CPU each (measured with FastStream's
    test broker, 0.7 ms a message against 0.3 ms this way). Reading a value from the context does
    not block, so the coroutine here returns it directly.
    """

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        resolved: dict[str, Any] = super().use(**kwargs)
        return resolved


# A handler's message (a batch subscriber's holds every record): FastStream's ``KafkaMessage``
# annotation without the thread hop. Handlers take this one (ruff bans the other).
KafkaMessage = Annotated[_KafkaMessage, _LoopContext("message")]


def consumer_options(settings: ServiceSettings, group_id: str | None) -> dict[str, Any]:
    """Return subscriber options for at-least-once consumption with short fetch waits.

    Args:
        settings: The service's settings (fetch wait).
        group_id: The consumer group; None for a consumer that reads every partition itself.
    """
    return {
        "group_id": group_id,
        "ack_policy": AckPolicy.NACK_ON_ERROR if group_id else AckPolicy.ACK_FIRST,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
    }


# How long an idle batch consumer's poll waits for a first record: a record that arrives ends the
# wait at once, so this only sets how often an idle consumer wakes up.
IDLE_POLL_MS = 500


def batch_subscriber(
    router: KafkaRouter,
    topic: str | Topic,
    *,
    max_messages: int,
    max_wait_ms: int = 0,
    quiet_ms: int | None = None,
    **options: Any,
) -> BatchSubscriber:
    """Return a batch subscriber of ``topic`` that hands its handler what is waiting, at once.

    A batch is whatever records are waiting, up to ``max_messages``; with ``max_wait_ms`` above
    zero, a batch that is not full waits up to that long after its first record for more to
    arrive (the latency a caller trades for fuller batches). With ``quiet_ms`` it stops waiting
    sooner, once that long passes with no new record: a burst's records keep the batch open,
    and a lone record waits ``quiet_ms`` only. Decorate the handler with the result.

    FastStream's own batch loop sleeps a whole ``batch_timeout_ms`` after every empty poll, a
    guard against a busy loop that aiokafka's ``getmany`` (which itself waits up to its timeout)
    does not need, and which delays the first record after a quiet spell by up to that sleep. So
    its poll is replaced by ``_collect_batch``, which has no sleep and adds the wait above.

    Args:
        router: The service's router.
        topic: What to consume.
        max_messages: The most records in one batch.
        max_wait_ms: The longest a batch that is not full waits after its first record.
        quiet_ms: Within that, how long a wait goes on with nothing arriving (None: to the end).
        options: The subscriber's other options, usually ``consumer_options(...)``.
    """
    subscriber = router.subscriber(
        topic, batch=True, max_records=max_messages, batch_timeout_ms=IDLE_POLL_MS, **options
    )

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[Any, Any], ...]:
        return await _collect_batch(
            consumer, max_messages=max_messages, max_wait_ms=max_wait_ms, quiet_ms=quiet_ms
        )

    subscriber.get_msg = get_msg
    return subscriber


async def _collect_batch(
    consumer: AIOKafkaConsumer, *, max_messages: int, max_wait_ms: int, quiet_ms: int | None
) -> tuple[ConsumerRecord[Any, Any], ...]:
    """Return the records waiting (none after ``IDLE_POLL_MS``), topped up for ``max_wait_ms``
    or until ``quiet_ms`` pass without a record."""
    polled = await consumer.getmany(timeout_ms=IDLE_POLL_MS, max_records=max_messages)
    records = [record for partition in polled.values() for record in partition]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_ms / 1000
    quiet_s = max_wait_ms / 1000 if quiet_ms is None else quiet_ms / 1000
    while records and len(records) < max_messages and (left := deadline - loop.time()) > 0:
        polled = await consumer.getmany(
            timeout_ms=int(min(left, quiet_s) * 1000) or 1,
            max_records=max_messages - len(records),
        )
        if not polled:
            break
        records.extend(record for partition in polled.values() for record in partition)
    return tuple(records)


def create_broker(settings: ServiceSettings, metrics: ServiceMetrics) -> KafkaBroker:
    """Build the service's broker with tracing, correlation, metrics and dead-letter middlewares.

    Tracing is FastStream's OpenTelemetry middleware: it writes the current trace into every
    message's ``traceparent`` header and continues that trace around each handler. It uses the
    process's tracer provider, which ``tracing.configure_tracing`` may install after this call.

    Args:
        settings: Where Kafka is and how to tune the producer.
        metrics: The service's metrics; FastStream's per-topic metrics join its registry.
    """
    dead_letters = _DeadLetterMiddlewareFactory(settings.service_name, metrics)
    broker = KafkaBroker(
        settings.kafka_bootstrap,
        client_id=settings.service_name,
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=settings.kafka_max_batch_bytes,
        max_request_size=min(settings.kafka_max_request_bytes, MAX_MESSAGE_BYTES),
        acks="all",
        enable_idempotence=True,
        # Topics come from the registry with their partitions and retention; a service that
        # starts first must not create them with the broker's defaults.
        allow_auto_create_topics=False,
        # FastStream logs every message received and processed; at our volumes (every gateway
        # replica reads every answer) that belongs at DEBUG, our handlers log what matters.
        log_level=logging.DEBUG,
        # The first is the outermost: the correlation id, the logs and the dead letters of a
        # message all sit inside its trace.
        middlewares=(
            # Metrics stay with Prometheus (next): no OpenTelemetry meter is configured.
            KafkaTelemetryMiddleware(include_messages_counters=False),
            _CorrelationMiddleware,
            KafkaPrometheusMiddleware(registry=metrics.registry, app_name=settings.service_name),
            dead_letters,
        ),
        logger=get_logger("faststream"),
    )
    dead_letters.broker = broker
    return broker


async def publish_event(
    broker: KafkaBroker,
    event: Event,
    *,
    topic: str,
    key: str,
    metrics: ServiceMetrics | None = None,
    correlation_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> RecordMetadata | None:
    """Publish ``event`` as JSON, keyed, carrying the current correlation id in its headers.

    Returns the record's partition and offset once Kafka has acknowledged it (an upsert's offset
    is its document version, less one); FastStream's in-memory test broker returns None.

    Args:
        broker: The connected broker.
        event: The event to send.
        topic: Where to send it.
        key: The partitioning key (a document id, a query id, a reply route).
        metrics: Counts the publication when given.
        correlation_id: Overrides the id of the message or request being handled.
        headers: More headers, for readers that route or count records without parsing them.
    """
    with _publication_trace(event, topic, correlation_id or current_correlation_id()) as chosen:
        metadata = await broker.publish(
            event, topic=topic, **_publish_options(event, key, chosen, headers)
        )
    if metrics is not None:
        metrics.events_published.labels(metrics.service, topic).inc()
    return metadata if isinstance(metadata, RecordMetadata) else None


async def publish_event_unconfirmed(
    broker: KafkaBroker,
    event: Event,
    *,
    topic: str,
    key: str,
    metrics: ServiceMetrics | None = None,
    correlation_id: str | None = None,
) -> asyncio.Future[RecordMetadata] | None:
    """Queue ``event`` as ``publish_event`` would, without waiting for Kafka's acknowledgement.

    Records queued one after another keep their order on a partition; the caller awaits the
    returned futures (all at once, say) before it commits what caused them. For a handler that
    publishes many records, this is one round trip to Kafka instead of one per record. The test
    broker returns None: there is nothing to wait for.

    Args: as ``publish_event``.

    Raises:
        MessageSizeTooLargeError: The record can never be sent (raised here, not by the future).
    """
    with _publication_trace(event, topic, correlation_id or current_correlation_id()) as chosen:
        queued = await broker.publish(
            event, topic=topic, no_confirm=True, **_publish_options(event, key, chosen)
        )
    if metrics is not None:
        metrics.events_published.labels(metrics.service, topic).inc()
    return queued if isinstance(queued, asyncio.Future) else None


# The span context each record of the batch being handled came with, by its correlation id; set
# by ``valid_events`` for ``_publication_trace``.
_batch_parents: ContextVar[Mapping[str, SpanContext]] = ContextVar("ragstream_batch_parents")


@contextmanager
def _publication_trace(event: Event, topic: str, correlation_id: str | None) -> Iterator[str]:
    """Yield the correlation id to publish ``event`` with, inside the trace that id names.

    FastStream writes the current trace into the message's ``traceparent``; this makes it the
    trace whose id is the message's correlation id, so the two stay one id on every hop:

    - a batch handler publishing for one of its records, under the batch's own trace, publishes
      in that record's trace instead (the record's correlation id names it);
    - a message published outside any trace starts one, and its correlation id is that trace's;
    - otherwise the current trace's id, unless the caller chose an id (a client's own).
    """
    parent = _batch_parents.get({}).get(correlation_id) if correlation_id else None
    if correlation_id is not None and parent is not None:
        if trace_id_of(parent) == current_trace_id():
            yield correlation_id
            return
        with trace.use_span(NonRecordingSpan(parent)):
            yield correlation_id
    elif current_trace_id() is None:
        with new_trace(f"{topic} send", kind=SpanKind.PRODUCER):
            # No trace id when tracing is not configured: the event's own id correlates.
            yield correlation_id or current_trace_id() or event.event_id
    else:
        yield correlation_id or current_trace_id() or event.event_id


def _publish_options(
    event: Event, key: str, correlation_id: str, headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "key": key.encode(),
        "correlation_id": correlation_id,
        "headers": {
            **(headers or {}),
            "schema-version": str(event.schema_version),
            "event-type": type(event).__name__,
        },
    }


async def dead_letter(
    broker: KafkaBroker,
    message: StreamMessage[Any],
    error: BaseException,
    *,
    service: str,
    metrics: ServiceMetrics | None = None,
) -> None:
    """Send each record of ``message`` to its topic's dead-letter topic with the error.

    Args:
        broker: The connected broker.
        message: The message (or batch) that failed.
        error: Why it failed.
        service: The service that gave up on it.
        metrics: Counts the dead letter when given.
    """
    raw = message.raw_message
    records: Sequence[Any] = raw if isinstance(raw, tuple | list) else (raw,)
    for record in records:
        headers = {name: value.decode(errors="replace") for name, value in (record.headers or ())}
        letter = DeadLetter(
            service=service,
            original_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode(errors="replace") if record.key else None,
            error_type=type(error).__name__,
            error=str(error)[:4000],
            original_value_b64=base64.b64encode(record.value or b"").decode(),
            original_headers=headers,
        )
        await publish_event(
            broker,
            letter,
            topic=dlq_name(record.topic),
            key=letter.key or "",
            correlation_id=message.correlation_id,
        )
        if metrics is not None:
            metrics.dead_letters.labels(service, record.topic, letter.error_type).inc()
        _log.warning(
            "dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_type=letter.error_type,
            error=letter.error[:300],
        )


class _CorrelationMiddleware(BaseMiddleware):
    """Binds the incoming message's correlation id to logs and to what the handler publishes."""

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        bind_correlation_id(msg.correlation_id)
        try:
            return await call_next(msg)
        finally:
            bind_correlation_id(None)


class _DeadLetterMiddleware(BaseMiddleware):
    """Dead-letters a message whose handler raised a poison error; delays the redelivery of a
    message whose handler failed otherwise."""

    def __init__(self, msg: Any, /, *, context: Any, factory: _DeadLetterMiddlewareFactory) -> None:
        super().__init__(msg, context=context)
        self.factory = factory

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        factory = self.factory
        try:
            return await call_next(msg)
        except _POISON as error:
            if factory.broker is None:
                raise
            await dead_letter(
                factory.broker, msg, error, service=factory.service, metrics=factory.metrics
            )
            return None
        except Exception:
            _log.exception("handler_failed_will_redeliver")
            await asyncio.sleep(REDELIVERY_BACKOFF_SECONDS)
            raise


class _DeadLetterMiddlewareFactory:
    """Builds, per message, the middleware that dead-letters poison and delays redelivery.

    FastStream instantiates middlewares per message with no reference to the broker, and the broker
    takes its middlewares at construction; this factory closes that loop by holding the broker.
    """

    def __init__(self, service: str, metrics: ServiceMetrics) -> None:
        self.service = service
        self.metrics = metrics
        self.broker: KafkaBroker | None = None

    def __call__(self, msg: Any, /, *, context: Any) -> BaseMiddleware:
        # Every message published or consumed passes here: the class is built once, not per call.
        return _DeadLetterMiddleware(msg, context=context, factory=self)


@dataclass(frozen=True)
class Received(Generic[EventT]):
    """One valid event of a batch, with its record, correlation id and the span it was sent in."""

    event: EventT
    record: ConsumerRecord[Any, Any]
    correlation_id: str | None
    # From the record's traceparent: the trace the work for this event belongs to.
    parent: SpanContext | None = None


def batch_records(message: StreamMessage[Any]) -> list[ConsumerRecord[Any, Any]]:
    """Return the records of a batch subscriber's message (a single message: its one record)."""
    raw = message.raw_message
    # A real consumer hands a batch over as a tuple; FastStream's test broker as a list.
    if isinstance(raw, tuple | list):
        return list(raw)
    return [raw]


def record_header(record: ConsumerRecord[Any, Any], name: str) -> str | None:
    """Return the value of the record's header ``name``, None when it has none."""
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


def record_message(record: ConsumerRecord[Any, Any]) -> StreamMessage[Any]:
    """Wrap one record of a batch as a message of its own, to dead-letter it alone."""
    return StreamMessage(
        raw_message=record,
        body=record.value or b"",
        correlation_id=record_header(record, "correlation_id"),
    )


async def valid_events(
    message: StreamMessage[Any],
    event_type: type[EventT],
    *,
    broker: KafkaBroker,
    metrics: ServiceMetrics,
) -> list[Received[EventT]]:
    """Parse every record of a batch as ``event_type``; dead-letter the ones that are not.

    One malformed record must not fail, or be redelivered with, the valid ones around it, which
    is what typing the handler's argument as a list of events would do.

    Args:
        message: The batch.
        event_type: What each record should hold.
        broker: Publishes the dead letters.
        metrics: Counts them.
    """
    records = batch_records(message)
    correlation_ids, parents = _trace_batch(records)
    received: list[Received[EventT]] = []
    for record, correlation_id, parent in zip(records, correlation_ids, parents, strict=True):
        try:
            event = event_type.model_validate_json(record.value or b"")
        except _POISON as error:
            await dead_letter(
                broker, record_message(record), error, service=metrics.service, metrics=metrics
            )
            continue
        received.append(Received(event, record, correlation_id, parent))
    return received


def _trace_batch(
    records: Sequence[ConsumerRecord[Any, Any]],
) -> tuple[list[str | None], list[SpanContext | None]]:
    """Return each record's correlation id and span context, and remember them for the batch.

    What the handler then publishes for a record joins that record's trace, whether it goes
    through ``handle_each`` or not (see ``_publication_trace``); dead letters too.
    """
    correlation_ids = [record_header(record, "correlation_id") for record in records]
    parents = [remote_parent(_decoded_headers(record)) for record in records]
    _batch_parents.set(
        {
            correlation_id: parent
            for correlation_id, parent in zip(correlation_ids, parents, strict=True)
            if correlation_id is not None and parent is not None
        }
    )
    return correlation_ids, parents


async def handle_in_order(
    message: StreamMessage[Any],
    handle: Callable[[ConsumerRecord[Any, Any]], Awaitable[Sequence[asyncio.Future[Any]]]],
    *,
    broker: KafkaBroker,
    metrics: ServiceMetrics,
) -> None:
    """Handle a batch's records one after another, then wait for everything they queued.

    For records that must be handled in order and whose body is not always an event (the
    ingestor's documents: a document's versions, tombstones). Each record is handled in its own
    trace under its own correlation id; one that turns out to be poison is dead-lettered alone;
    any other failure fails the batch at once, to be redelivered whole, so ``handle`` must be
    idempotent. ``handle`` returns the acknowledgements of what it queued
    (``publish_event_unconfirmed``): they are awaited together, before the batch is committed,
    so the batch costs one round trip to Kafka rather than one per publication. The loop runs
    between records, so what one queued is on its way while the next is handled.

    Args:
        message: The batch.
        handle: What to do with one record; returns the acknowledgements to wait for.
        broker: Publishes dead letters.
        metrics: Counts them.
    """
    records = batch_records(message)
    correlation_ids, parents = _trace_batch(records)
    unconfirmed: list[asyncio.Future[Any]] = []
    for record, correlation_id, parent in zip(records, correlation_ids, parents, strict=True):
        with child_span(f"{record.topic} handle", parent, kind=SpanKind.CONSUMER):
            bind_correlation_id(correlation_id)
            try:
                unconfirmed.extend(await handle(record))
            except _POISON as error:
                await dead_letter(
                    broker, record_message(record), error, service=metrics.service, metrics=metrics
                )
        # What a record queued leaves only when the loop runs the producer's sender, and a record
        # handled without waiting for anything (a short text chunked on the loop) would hold the
        # whole batch's output back until its end: the embedder would start 0.1-0.2 s later.
        await asyncio.sleep(0)
    await asyncio.gather(*unconfirmed)


def _decoded_headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    return {name: bytes(value).decode(errors="replace") for name, value in record.headers or ()}


async def handle_each(
    batch: Sequence[Received[EventT]],
    handle: Callable[[EventT], Awaitable[None]],
    *,
    broker: KafkaBroker,
    metrics: ServiceMetrics,
) -> None:
    """Handle the events of a batch concurrently, each under its own correlation id.

    For events that do not depend on each other (queries, answers): a slow one does not hold up
    the others' work, only the batch's commit. An event that turns out to be poison is
    dead-lettered alone; any other failure is raised once every event has finished, so the
    batch is redelivered whole and the handlers must be idempotent.

    Args:
        batch: The valid events (``valid_events``).
        handle: What to do with one event.
        broker: Publishes dead letters.
        metrics: Counts them.
    """

    async def handle_one(item: Received[EventT]) -> None:
        # Each runs in a task of its own, so the binding and the span stay with this event's
        # work: a span in the event's own trace, not the batch's.
        with child_span(f"{item.record.topic} handle", item.parent, kind=SpanKind.CONSUMER):
            bind_correlation_id(item.correlation_id)
            try:
                await handle(item.event)
            except _POISON as error:
                await dead_letter(
                    broker,
                    record_message(item.record),
                    error,
                    service=metrics.service,
                    metrics=metrics,
                )

    outcomes = await asyncio.gather(*(handle_one(item) for item in batch), return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if failures:
        for failure in failures[1:]:
            _log.error("batch_event_failed", error_type=type(failure).__name__, error=str(failure))
        raise failures[0]
