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
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from pydantic import ValidationError

from ragstream_common.events import DeadLetter, Event
from ragstream_common.logging import bind_correlation_id, current_correlation_id, get_logger
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.settings import ServiceSettings
from ragstream_common.topics import MAX_MESSAGE_BYTES, dlq_name

__all__ = [
    "PoisonMessageError",
    "consumer_options",
    "create_broker",
    "dead_letter",
    "publish_event",
]

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


def create_broker(settings: ServiceSettings, metrics: ServiceMetrics) -> KafkaBroker:
    """Build the service's broker with correlation, metrics and dead-letter middlewares.

    Args:
        settings: Where Kafka is and how to tune the producer.
        metrics: The service's metrics; FastStream's per-topic metrics join its registry.
    """
    dead_letters = _DeadLetterMiddlewareFactory(settings.service_name, metrics)
    broker = KafkaBroker(
        settings.kafka_bootstrap,
        client_id=settings.service_name,
        linger_ms=settings.kafka_linger_ms,
        max_request_size=min(settings.kafka_max_request_bytes, MAX_MESSAGE_BYTES),
        acks="all",
        enable_idempotence=True,
        # Topics come from the registry with their partitions and retention; a service that
        # starts first must not create them with the broker's defaults.
        allow_auto_create_topics=False,
        # FastStream logs every message received and processed; at our volumes (every gateway
        # replica reads every answer) that belongs at DEBUG, our handlers log what matters.
        log_level=logging.DEBUG,
        middlewares=(
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
    """
    metadata = await broker.publish(
        event,
        topic=topic,
        key=key.encode(),
        correlation_id=correlation_id or current_correlation_id() or event.event_id,
        headers={"schema-version": str(event.schema_version), "event-type": type(event).__name__},
    )
    if metrics is not None:
        metrics.events_published.labels(metrics.service, topic).inc()
    return metadata if isinstance(metadata, RecordMetadata) else None


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


class _DeadLetterMiddlewareFactory:
    """Builds, per message, a middleware that dead-letters poison and delays redelivery.

    FastStream instantiates middlewares per message with no reference to the broker, and the broker
    takes its middlewares at construction; this factory closes that loop by holding the broker.
    """

    def __init__(self, service: str, metrics: ServiceMetrics) -> None:
        self.service = service
        self.metrics = metrics
        self.broker: KafkaBroker | None = None

    def __call__(self, msg: Any, /, *, context: Any) -> BaseMiddleware:
        factory = self

        class DeadLetterMiddleware(BaseMiddleware):
            async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
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

        return DeadLetterMiddleware(msg, context=context)
