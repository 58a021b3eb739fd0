"""The ingestor's subscriber: documents in, one chunked version (and its status) out.

Documents are consumed in batches and handled one after another, in order (a document's versions
must keep it); what they publish is queued and acknowledged once per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker, KafkaRouter

from ragstream_common.events import DocumentDeleted, DocumentUpserted
from ragstream_common.logging import get_logger
from ragstream_common.messaging import (
    KafkaMessage,
    PoisonMessageError,
    batch_subscriber,
    consumer_options,
    handle_in_order,
    publish_event,
    publish_event_unconfirmed,
)
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import CHUNKS, DOCUMENT_STATUS, DOCUMENTS
from ragstream_ingestor.chunking import ChunkingPolicy, TokenCounter
from ragstream_ingestor.domain import (
    DocumentRejectedError,
    IngestLimits,
    chunk_deletion,
    chunk_upsert,
    chunked_status,
    document_event,
    document_version,
    failed_status,
)
from ragstream_ingestor.settings import IngestorSettings

__all__ = ["Dependencies", "build_router"]

_log = get_logger(__name__)


@dataclass
class Dependencies:
    """What the handlers need, built once by ``create_app``."""

    settings: IngestorSettings
    metrics: ServiceMetrics
    broker: KafkaBroker
    token_counter: TokenCounter


def build_router(deps: Dependencies) -> KafkaRouter:
    """Return the router holding the ``documents`` subscriber.

    Args:
        deps: The settings, metrics, broker and token counter the handler uses.
    """
    router = KafkaRouter()
    settings = deps.settings
    policy = ChunkingPolicy(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    limits = IngestLimits(settings.max_document_bytes, settings.max_chunks_per_document)
    chunks_produced = deps.metrics.counter(
        "chunks_produced_total", "Chunks the ingestor cut from documents."
    )
    documents_handled = deps.metrics.counter(
        "documents_handled_total",
        "Document events the ingestor handled, by outcome (chunked, deleted, rejected).",
        ["outcome"],
    )
    replacements = deps.metrics.counter(
        "decoding_replacements_total",
        "Invalid byte sequences replaced with U+FFFD while decoding documents.",
    )
    service = deps.metrics.service

    @batch_subscriber(
        router,
        DOCUMENTS,
        max_messages=settings.batch_max_messages,
        **consumer_options(settings, settings.consumer_group),
    )
    async def on_documents(message: KafkaMessage) -> None:
        await handle_in_order(message, on_document, broker=deps.broker, metrics=deps.metrics)

    # The body is decoded here rather than by FastStream: a tombstone (a record whose value is
    # null) is a delete, and must not be dead-lettered as an invalid event.
    async def on_document(record: ConsumerRecord[Any, Any]) -> Sequence[asyncio.Future[Any]]:
        """Chunk an upserted document, or turn a delete (or tombstone) into an empty version.

        Returns the acknowledgements of what it published, for the batch to wait for.
        """
        version = document_version(record.offset)
        try:
            event = document_event(record.key, record.value, record.timestamp)
        except DocumentRejectedError as error:
            raise PoisonMessageError(str(error)) from error

        if isinstance(event, DocumentDeleted):
            acknowledgements = await _delete(deps, event, version, tombstone=record.value is None)
            documents_handled.labels(service, "deleted").inc()
            return acknowledgements

        try:
            with deps.metrics.time_stage("chunk"):
                # Parsing and chunking a long document is CPU work that would hold the event
                # loop; a short text costs less than the trip to a worker thread.
                if _is_small_text(event, settings.inline_chunking_max_chars):
                    ingested = chunk_upsert(event, version, deps.token_counter, policy, limits)
                else:
                    ingested = await asyncio.to_thread(
                        chunk_upsert, event, version, deps.token_counter, policy, limits
                    )
        except DocumentRejectedError as error:
            await _reject(deps, event, version, str(error))
            documents_handled.labels(service, "rejected").inc()
            raise PoisonMessageError(str(error)) from error

        chunked = ingested.chunked
        if ingested.replaced:
            replacements.labels(service).inc(ingested.replaced)
            _log.warning(
                "invalid_bytes_replaced",
                doc_id=event.doc_id,
                version=version,
                replaced=ingested.replaced,
            )
        queued: list[asyncio.Future[Any] | None]
        try:
            queued = [
                await publish_event_unconfirmed(
                    deps.broker, chunked, topic=CHUNKS, key=event.doc_id, metrics=deps.metrics
                )
            ]
        except MessageSizeTooLargeError as error:
            # Retrying cannot shrink it, so it is poison like an unparseable document.
            reason = f"{len(chunked.chunks)} chunks exceed one Kafka message: {error}"
            await _reject(deps, event, version, reason)
            documents_handled.labels(service, "rejected").inc()
            raise PoisonMessageError(reason) from error
        queued.append(
            await publish_event_unconfirmed(
                deps.broker,
                chunked_status(chunked),
                topic=DOCUMENT_STATUS,
                key=event.doc_id,
                metrics=deps.metrics,
            )
        )
        chunks_produced.labels(service).inc(len(chunked.chunks))
        documents_handled.labels(service, "chunked").inc()
        _log.info(
            "document_chunked",
            doc_id=event.doc_id,
            version=version,
            media_type=ingested.media_type,
            chunk_count=len(chunked.chunks),
            doc_hash=chunked.doc_hash,
        )
        return [future for future in queued if future is not None]

    return router


def _is_small_text(event: DocumentUpserted, max_chars: int) -> bool:
    # Bytes (a PDF, text of unknown encoding) always go to the thread: parsing them costs far
    # more per byte than text does. Characters, not bytes, bound the text's work well enough.
    return event.content_base64 is None and len(event.content) <= max_chars


async def _delete(
    deps: Dependencies, event: DocumentDeleted, version: int, *, tombstone: bool
) -> list[asyncio.Future[Any]]:
    # No status here: the retriever reports `deleted` once the chunks have left the index.
    queued = await publish_event_unconfirmed(
        deps.broker,
        chunk_deletion(event, version),
        topic=CHUNKS,
        key=event.doc_id,
        metrics=deps.metrics,
    )
    _log.info(
        "document_deleted",
        doc_id=event.doc_id,
        tenant=event.tenant,
        version=version,
        tombstone=tombstone,
    )
    return [queued] if queued is not None else []


async def _reject(deps: Dependencies, event: DocumentUpserted, version: int, reason: str) -> None:
    await publish_event(
        deps.broker,
        failed_status(event, version, reason),
        topic=DOCUMENT_STATUS,
        key=event.doc_id,
        metrics=deps.metrics,
    )
    _log.warning("document_rejected", doc_id=event.doc_id, version=version, reason=reason)
