"""The embedder's batch subscriber: chunks in, vectors and status out.

Per part of a batch: one cache lookup for every distinct text, one model call for the misses (on
the model's own threads), one cache write for the new vectors, then one ``ChunksEmbedded`` per
record. The next part is queued on the model while this one is written and published.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker, KafkaRouter

from ragstream_common.events import DocumentChunked, DocumentStatus
from ragstream_common.logging import bind_correlation_id, get_logger
from ragstream_common.messaging import (
    KafkaMessage,
    PoisonMessageError,
    Received,
    batch_subscriber,
    consumer_options,
    dead_letter,
    publish_event,
    publish_event_unconfirmed,
    record_message,
    valid_events,
)
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import CHUNKS, DOCUMENT_STATUS, EMBEDDINGS
from ragstream_embedder.cache import CacheGuard, EmbeddingCache, Vector
from ragstream_embedder.domain import (
    EmbeddingPlan,
    ModelClock,
    as_float32,
    cache_key,
    embedded_events,
    embedded_status,
    failed_status,
    fill_vectors,
    missing_slots,
    model_call_parts,
    plan_batch,
)
from ragstream_embedder.settings import EmbedderSettings

__all__ = ["CONSUMER_GROUP", "Dependencies", "EmbeddingCache", "EmbeddingModelPort", "build_router"]

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

    def submit(self, texts: Sequence[str]) -> Future[list[list[float]]]:
        """Queue the texts on the model and return the future of one vector per text, at once.

        Calls are served in the order they are submitted.
        """
        ...


@dataclass
class Dependencies:
    """What the handlers need, built once by ``create_app``.

    ``model`` is None until the lifespan has loaded it, which happens before the broker starts
    consuming. ``cache`` is None when no cache is configured (every text is embedded).
    """

    settings: EmbedderSettings
    metrics: ServiceMetrics
    broker: KafkaBroker
    model: EmbeddingModelPort | None = None
    cache: EmbeddingCache | None = None


@dataclass
class QueuedPart:
    """One part of a batch on its way through the model: its plan, cache answer and vectors."""

    part: Sequence[Received[DocumentChunked]]
    plan: EmbeddingPlan
    keys: list[str]
    cached: list[Vector | None]
    missing: list[int]
    # The model's future for the texts in ``missing``; None when the cache had them all.
    vectors: Future[list[list[float]]] | None = None
    submitted: float = 0.0
    done: float = 0.0

    def mark_done(self, _: Future[list[list[float]]]) -> None:
        """Note when the model finished (called on the model's thread, the moment it does)."""
        self.done = time.perf_counter()


def build_router(deps: Dependencies) -> KafkaRouter:
    """Return the router holding the ``chunks`` batch subscriber.

    Args:
        deps: The settings, metrics, broker and model the handler uses.
    """
    router = KafkaRouter()
    settings = deps.settings
    service = deps.metrics.service
    embedded_chunks = deps.metrics.counter(
        "embedded_chunks_total",
        "Chunk texts the model embedded (cache hits and repeats within a batch excluded).",
    )
    batch_sizes = deps.metrics.histogram(
        "embedding_batch_size",
        "Distinct texts sent to the model in one call.",
        buckets=BATCH_SIZE_BUCKETS,
    )
    cache_hits = deps.metrics.counter(
        "embedding_cache_hits_total", "Distinct texts whose vector the cache had."
    )
    cache_misses = deps.metrics.counter(
        "embedding_cache_misses_total", "Distinct texts looked up in the cache and not found."
    )
    cache = CacheGuard(
        deps.metrics.counter(
            "embedding_cache_errors_total",
            "Cache calls that failed (the batch went on without the cache).",
            ["operation"],
        ),
        service,
        cooldown_s=settings.embedding_cache_cooldown_s,
    )

    clock = ModelClock()

    async def queue_part(
        part: Sequence[Received[DocumentChunked]], model: EmbeddingModelPort
    ) -> QueuedPart:
        """Plan a part, look its texts up in the cache and queue the misses on the model."""
        plan = plan_batch([item.event for item in part])
        keys = [cache_key(model.version, text) for text in plan.texts]
        answer = await cache.lookup(deps.cache, keys)
        cached: list[Vector | None]
        if answer is not None:
            cached = answer
            missing = missing_slots(cached)
            cache_hits.labels(service).inc(len(keys) - len(missing))
            cache_misses.labels(service).inc(len(missing))
        else:  # no cache, or none working: embed everything
            cached = [None] * len(keys)
            missing = list(range(len(keys)))
        queued = QueuedPart(part, plan, keys, cached, missing)
        if missing:
            queued.submitted = time.perf_counter()
            queued.vectors = model.submit([plan.texts[slot] for slot in missing])
            queued.vectors.add_done_callback(queued.mark_done)
        return queued

    async def vectors_of(queued: QueuedPart) -> list[list[float]]:
        """Wait for a part's new vectors; return the vector of each of its texts."""
        fresh: list[list[float]] = []
        if queued.vectors is not None:
            embedded = await asyncio.wrap_future(queued.vectors)
            busy = clock.busy(queued.submitted, queued.done)
            deps.metrics.stage_seconds.labels(service, "embed").observe(busy)
            batch_sizes.labels(service).observe(len(queued.missing))
            embedded_chunks.labels(service).inc(len(queued.missing))
            fresh = [as_float32(vector) for vector in embedded]
        vectors = fill_vectors(queued.cached, queued.missing, fresh)
        if queued.missing:
            # Stored before publishing: a batch redelivered after a Kafka failure is not embedded
            # again.
            await cache.store(
                deps.cache, [(queued.keys[slot], vectors[slot]) for slot in queued.missing]
            )
        return vectors

    @batch_subscriber(
        router,
        CHUNKS,
        max_messages=settings.batch_max_messages,
        max_wait_ms=settings.batch_max_wait_ms,
        **consumer_options(settings, CONSUMER_GROUP),
    )
    async def on_chunks(message: KafkaMessage) -> None:
        """Attach a vector to every chunk of a batch: cached ones, the rest from the model."""
        received = await valid_events(
            message, DocumentChunked, broker=deps.broker, metrics=deps.metrics
        )
        if not received:
            return
        if deps.model is None:  # the lifespan loads it before consuming starts
            raise RuntimeError("the embedding model is not loaded")

        model = deps.model
        counts = [len(item.event.chunks) for item in received]
        parts = [
            [received[i] for i in part]
            for part in model_call_parts(counts, settings.model_call_max_texts)
        ]
        unconfirmed: list[asyncio.Future[Any]] = []
        # One model call per part, each part published as soon as it is embedded: the retriever
        # indexes the start of a large batch while the model works on the rest. The next part is
        # queued on the model before this one is published, so the model never waits for that.
        following = await queue_part(parts[0], model)
        for number in range(len(parts)):
            current = following
            if number + 1 < len(parts):
                following = await queue_part(parts[number + 1], model)
            unconfirmed += await publish_part(current, await vectors_of(current), model.version)
        # Before the batch is committed: a record Kafka refused fails the batch, to be redelivered.
        await asyncio.gather(*unconfirmed)

    async def publish_part(
        queued: QueuedPart, vectors: Sequence[Sequence[float]], model_version: str
    ) -> list[asyncio.Future[Any]]:
        """Queue one embedded part's events; return the acknowledgements to await."""
        part, plan = queued.part, queued.plan
        documents = [item.event for item in part]
        # Queued one by one, in record order, so two versions of a document keep their order;
        # acknowledged all together at the end of the batch, so the model waits one round trip,
        # not one per record.
        events = embedded_events(documents, plan, vectors, model_version)
        unconfirmed: list[asyncio.Future[Any]] = []
        for item, event in zip(part, events, strict=True):
            correlation_id = item.correlation_id
            bind_correlation_id(correlation_id)
            try:
                acknowledgement = await publish_event_unconfirmed(
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
                await _reject(deps, item.record, failed_status(item.event, reason), correlation_id)
                continue
            unconfirmed.extend([acknowledgement] if acknowledgement is not None else [])
            status = embedded_status(event)
            if status is not None:
                acknowledgement = await publish_event_unconfirmed(
                    deps.broker,
                    status,
                    topic=DOCUMENT_STATUS,
                    key=event.doc_id,
                    metrics=deps.metrics,
                    correlation_id=correlation_id,
                )
                unconfirmed.extend([acknowledgement] if acknowledgement is not None else [])
            _log.info(
                "document_embedded",
                doc_id=event.doc_id,
                version=event.version,
                chunk_count=len(event.chunks),
            )
        _log.debug(
            "part_embedded",
            records=len(part),
            chunks=plan.chunk_count,
            distinct_texts=len(plan.texts),
            embedded=len(queued.missing),
        )
        return unconfirmed

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
        record_message(record),
        PoisonMessageError(status.reason or "cannot be embedded"),
        service=deps.metrics.service,
        metrics=deps.metrics,
    )
