"""The ingestor's subscriber: documents in, one chunked version (and its status) out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from ragstream_common.events import DocumentDeleted, DocumentEvent, DocumentUpserted
from ragstream_common.logging import get_logger
from ragstream_common.messaging import PoisonMessageError, consumer_options, publish_event
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import CHUNKS, DOCUMENT_STATUS, DOCUMENTS
from ragstream_ingestor.domain import (
    ChunkingPolicy,
    DocumentRejectedError,
    chunk_deletion,
    chunk_upsert,
    chunked_status,
    document_version,
    failed_status,
)
from ragstream_ingestor.settings import IngestorSettings

__all__ = ["CONSUMER_GROUP", "Dependencies", "build_router"]

CONSUMER_GROUP = "ingestor"

_log = get_logger(__name__)


@dataclass
class Dependencies:
    """What the handlers need, built once by ``create_app``."""

    settings: IngestorSettings
    metrics: ServiceMetrics
    broker: KafkaBroker


def build_router(deps: Dependencies) -> KafkaRouter:
    """Return the router holding the ``documents`` subscriber.

    Args:
        deps: The settings, metrics and broker the handler uses.
    """
    router = KafkaRouter()
    policy = ChunkingPolicy(deps.settings.chunk_max_words, deps.settings.chunk_overlap_words)
    chunks_produced = deps.metrics.counter(
        "chunks_produced_total", "Chunks the ingestor cut from documents."
    )
    documents_handled = deps.metrics.counter(
        "documents_handled_total",
        "Document events the ingestor handled, by outcome (chunked, deleted, rejected).",
        ["outcome"],
    )
    service = deps.metrics.service

    @router.subscriber(DOCUMENTS, **consumer_options(deps.settings, CONSUMER_GROUP))
    async def on_document(event: DocumentEvent, message: KafkaMessage) -> None:
        """Chunk an upserted document, or turn a delete into a version without chunks."""
        record = message.raw_message
        if isinstance(record, tuple):  # pragma: no cover - this subscriber is not a batch one
            raise TypeError("the documents subscriber expects one record at a time")
        version = document_version(record.offset)

        if isinstance(event, DocumentDeleted):
            deletion = chunk_deletion(event, version)
            await publish_event(
                deps.broker, deletion, topic=CHUNKS, key=event.doc_id, metrics=deps.metrics
            )
            documents_handled.labels(service, "deleted").inc()
            _log.info("document_deleted", doc_id=event.doc_id, version=version)
            return

        try:
            with deps.metrics.time_stage("chunk"):
                # Chunking a large document is CPU work; keep the event loop free meanwhile.
                chunked = await asyncio.to_thread(chunk_upsert, event, version, policy)
        except DocumentRejectedError as error:
            await _reject(deps, event, version, str(error))
            documents_handled.labels(service, "rejected").inc()
            raise PoisonMessageError(str(error)) from error

        try:
            await publish_event(
                deps.broker, chunked, topic=CHUNKS, key=event.doc_id, metrics=deps.metrics
            )
        except MessageSizeTooLargeError as error:
            # Retrying cannot shrink it, so it is poison like an unparseable document.
            reason = f"{len(chunked.chunks)} chunks exceed one Kafka message: {error}"
            await _reject(deps, event, version, reason)
            documents_handled.labels(service, "rejected").inc()
            raise PoisonMessageError(reason) from error
        await publish_event(
            deps.broker,
            chunked_status(chunked),
            topic=DOCUMENT_STATUS,
            key=event.doc_id,
            metrics=deps.metrics,
        )
        chunks_produced.labels(service).inc(len(chunked.chunks))
        documents_handled.labels(service, "chunked").inc()
        _log.info(
            "document_chunked",
            doc_id=event.doc_id,
            version=version,
            chunk_count=len(chunked.chunks),
        )

    return router


async def _reject(deps: Dependencies, event: DocumentUpserted, version: int, reason: str) -> None:
    await publish_event(
        deps.broker,
        failed_status(event, version, reason),
        topic=DOCUMENT_STATUS,
        key=event.doc_id,
        metrics=deps.metrics,
    )
    _log.warning("document_rejected", doc_id=event.doc_id, version=version, reason=reason)
