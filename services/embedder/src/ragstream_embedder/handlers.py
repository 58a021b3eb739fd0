"""The embedder's batch subscriber: chunks in, vectors and status out, one model call a batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from pydantic import ValidationError

from ragstream_common.events import DocumentChunked, DocumentStatus
from ragstream_common.logging import bind_correlation_id, get_logger
from ragstream_common.messaging import (
    PoisonMessageError,
    consumer_options,
    dead_letter,
    publish_event,
)
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import CHUNKS, DOCUMENT_STATUS, EMBEDDINGS
from ragstream_embedder.domain import embedded_events, embedded_status, failed_status, plan_batch
from ragstream_embedder.settings import EmbedderSettings

__all__ = ["CONSUMER_GROUP", "Dependencies", "EmbeddingModelPort", "build_router"]

CONSUMER_GROUP = "embedder"

# Chunks per model call: from a one-chunk trickle to a full batch of long documents.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

_log = get_logger(__name__)


class EmbeddingModelPort(Protocol):
    """What the embedder needs from a model: vectors for texts, and an identity for them."""

    @property
    def version(self) -> str:
        """Changes whenever the model's vectors would change."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one vector per text; blocking, CPU-bound."""
        ...


@dataclass
class Dependencies:
    """What the handlers need, built once by ``create_app``.

    ``model`` is None until the lifespan has loaded it, which happens before the broker starts
    consuming.
    """

    settings: EmbedderSettings
    metrics: ServiceMetrics
    broker: KafkaBroker
    model: EmbeddingModelPort | None = None


def build_router(deps: Dependencies) -> KafkaRouter:
    """Return the router holding the ``chunks`` batch subscriber.

    Args:
        deps: The settings, metrics, broker and model the handler uses.
    """
    router = KafkaRouter()
    settings = deps.settings
    service = deps.metrics.service
    embedded_chunks = deps.metrics.counter(
        "embedded_chunks_total", "Chunks the embedder attached a vector to."
    )
    batch_sizes = deps.metrics.histogram(
        "embedding_batch_size",
        "Distinct texts sent to the model in one call.",
        buckets=BATCH_SIZE_BUCKETS,
    )

    @router.subscriber(
        CHUNKS,
        batch=True,
        max_records=settings.batch_max_messages,
        batch_timeout_ms=settings.batch_max_wait_ms,
        **consumer_options(settings, CONSUMER_GROUP),
    )
    async def on_chunks(message: KafkaMessage) -> None:
        """Embed every chunk of a batch of document versions in one model call."""
        documents: list[DocumentChunked] = []
        records: list[ConsumerRecord[Any, Any]] = []
        for record in _records_of(message):
            try:
                documents.append(DocumentChunked.model_validate_json(record.value or b""))
            except ValidationError as error:
                # Only this record is poison; the rest of the batch goes on.
                await dead_letter(
                    deps.broker, _single(record), error, service=service, metrics=deps.metrics
                )
                continue
            records.append(record)
        if not documents:
            return
        if deps.model is None:  # the lifespan loads it before consuming starts
            raise RuntimeError("the embedding model is not loaded")

        plan = plan_batch(documents)
        vectors: list[list[float]] = []
        if plan.texts:
            with deps.metrics.time_stage("embed"):
                vectors = await asyncio.to_thread(deps.model.embed, plan.texts)
            batch_sizes.labels(service).observe(len(plan.texts))

        # Published one by one, in record order, so two versions of a document keep their order.
        events = embedded_events(documents, plan, vectors, deps.model.version)
        for record, document, event in zip(records, documents, events, strict=True):
            correlation_id = _header(record, "correlation_id")
            bind_correlation_id(correlation_id)
            try:
                await publish_event(
                    deps.broker,
                    event,
                    topic=EMBEDDINGS,
                    key=event.doc_id,
                    metrics=deps.metrics,
                    correlation_id=correlation_id,
                )
            except MessageSizeTooLargeError as error:
                # Retrying cannot shrink it: fail this version alone instead of the whole batch.
                reason = f"{len(event.chunks)} embedded chunks exceed one Kafka message: {error}"
                await _reject(deps, record, failed_status(document, reason), correlation_id)
                continue
            status = embedded_status(event)
            if status is not None:
                await publish_event(
                    deps.broker,
                    status,
                    topic=DOCUMENT_STATUS,
                    key=event.doc_id,
                    metrics=deps.metrics,
                    correlation_id=correlation_id,
                )
            embedded_chunks.labels(service).inc(len(event.chunks))
            _log.info(
                "document_embedded",
                doc_id=event.doc_id,
                version=event.version,
                chunk_count=len(event.chunks),
            )
        _log.debug(
            "batch_embedded",
            records=len(records),
            chunks=plan.chunk_count,
            distinct_texts=len(plan.texts),
        )

    return router


async def _reject(
    deps: Dependencies,
    record: ConsumerRecord[Any, Any],
    status: DocumentStatus,
    correlation_id: str | None,
) -> None:
    """Report a version that can never be embedded as failed, and dead-letter its record."""
    await publish_event(
        deps.broker,
        status,
        topic=DOCUMENT_STATUS,
        key=status.doc_id,
        metrics=deps.metrics,
        correlation_id=correlation_id,
    )
    await dead_letter(
        deps.broker,
        _single(record),
        PoisonMessageError(status.reason or "cannot be embedded"),
        service=deps.metrics.service,
        metrics=deps.metrics,
    )


def _records_of(message: KafkaMessage) -> list[ConsumerRecord[Any, Any]]:
    raw = message.raw_message
    # A real consumer hands a batch over as a tuple; FastStream's test broker as a list.
    if isinstance(raw, tuple | list):
        return list(raw)
    return [raw]


def _header(record: ConsumerRecord[Any, Any], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


def _single(record: ConsumerRecord[Any, Any]) -> StreamMessage[Any]:
    """Wrap one record of a batch as a message of its own, to dead-letter it alone."""
    return StreamMessage(
        raw_message=record,
        body=record.value or b"",
        correlation_id=_header(record, "correlation_id"),
    )
