"""The retriever's Kafka subscribers: thin glue between events, the domain and the ports.

Index role: ``embeddings`` (ChunksEmbedded) -> Weaviate, then ``document-status``.
Search role: ``queries`` (QueryRequested) -> query embedding + hybrid search -> ``contexts``.
"""

from __future__ import annotations

import time

from faststream.kafka import KafkaRouter

from ragstream_common.events import ChunksEmbedded, QueryRequested, utc_now
from ragstream_common.logging import get_logger
from ragstream_common.messaging import PoisonMessageError, consumer_options, publish_event
from ragstream_common.topics import CONTEXTS, DOCUMENT_STATUS, EMBEDDINGS, QUERIES
from ragstream_retriever.dependencies import Dependencies
from ragstream_retriever.domain import (
    InvalidEmbeddingsError,
    build_context,
    candidate_limit,
    chunks_to_index,
    document_status,
    freshness_seconds,
    is_current_version,
    select_chunks,
)

__all__ = ["build_router", "index_document", "search_query"]

_log = get_logger(__name__)


def build_router(deps: Dependencies) -> KafkaRouter:
    """Return a router with a subscriber per enabled role.

    Args:
        deps: What the handlers use; its ports may be filled in later, by the lifespan.
    """
    router = KafkaRouter()
    settings = deps.settings

    if settings.index_role:

        @router.subscriber(EMBEDDINGS, **consumer_options(settings, settings.index_group_id))
        async def on_chunks_embedded(event: ChunksEmbedded) -> None:
            await index_document(deps, event)

    if settings.search_role:

        @router.subscriber(QUERIES, **consumer_options(settings, settings.search_group_id))
        async def on_query_requested(event: QueryRequested) -> None:
            await search_query(deps, event)

    return router


async def index_document(deps: Dependencies, event: ChunksEmbedded) -> None:
    """Apply one document version to the index, unless a newer one is already there.

    Upserts the version's chunks, retires the chunks of older versions (all of them for a version
    without chunks, which is a deletion), remembers the version, and publishes the status.

    Args:
        deps: The service's ports and metrics.
        event: The document version with its vectors.

    Raises:
        PoisonMessageError: The message breaks the contract (it goes to the DLQ).
    """
    log = _log.bind(doc_id=event.doc_id, tenant=event.tenant, version=event.version)
    try:
        chunks = chunks_to_index(event, deps.settings.embedding_dimensions)
    except InvalidEmbeddingsError as error:
        raise PoisonMessageError(str(error)) from error

    index = deps.index
    indexed = await index.indexed_version(event.tenant, event.doc_id)
    if not is_current_version(event.version, indexed):
        # Acknowledged and dropped: a replay or a late duplicate must not bring old text back.
        deps.retriever_metrics.stale_versions.labels(deps.metrics.service).inc()
        log.info("stale_version_skipped", indexed_version=indexed)
        return

    started = time.perf_counter()
    if chunks:
        await index.upsert(chunks)
        deps.retriever_metrics.chunks_upserted.labels(deps.metrics.service).inc(len(chunks))
    upserted = time.perf_counter()
    retired = await index.delete_versions_below(event.tenant, event.doc_id, event.version)
    deps.retriever_metrics.chunks_retired.labels(deps.metrics.service).inc(retired)
    # Last, so that a crash before it leaves the version to be applied again on redelivery.
    await index.record_version(event.tenant, event.doc_id, event.version, len(chunks))
    finished = time.perf_counter()
    deps.retriever_metrics.observe_stage("upsert", upserted - started)
    deps.retriever_metrics.observe_stage("retire", finished - upserted)

    status = document_status(event)
    freshness = freshness_seconds(event.published_at, utc_now())
    deps.retriever_metrics.freshness.labels(deps.metrics.service, status.stage).observe(freshness)
    await publish_event(
        deps.broker, status, topic=DOCUMENT_STATUS, key=event.doc_id, metrics=deps.metrics
    )
    log.info(
        "document_version_applied",
        stage=status.stage,
        chunks=len(chunks),
        retired=retired,
        previous_version=indexed,
        freshness_s=round(freshness, 3),
        index_ms=round((finished - started) * 1000, 1),
    )


async def search_query(deps: Dependencies, event: QueryRequested) -> None:
    """Embed the query, search the tenant's chunks, trim them to a context and publish it.

    An empty result is published too: the generator then says it does not know.

    Args:
        deps: The service's ports and metrics.
        event: The query.
    """
    settings = deps.settings
    started = time.perf_counter()
    # The port runs the CPU-bound model on its own thread, so the loop keeps serving messages.
    vectors = await deps.model.embed([event.text])
    embedded = time.perf_counter()
    hits = await deps.index.search(
        tenant=event.tenant,
        text=event.text,
        vector=vectors[0],
        alpha=settings.default_alpha,
        limit=candidate_limit(
            event.top_k, settings.search_overfetch, settings.max_search_candidates
        ),
    )
    searched = time.perf_counter()
    chunks = select_chunks(hits, top_k=event.top_k, max_per_doc=settings.max_chunks_per_doc)
    finished = time.perf_counter()

    deps.retriever_metrics.observe_stage("embed_query", embedded - started)
    deps.retriever_metrics.observe_stage("search", searched - embedded)
    deps.retriever_metrics.retrieved_chunks.labels(deps.metrics.service).observe(len(chunks))
    timings = {
        "embed_query_ms": (embedded - started) * 1000,
        "search_ms": (searched - embedded) * 1000,
        "retrieve_ms": (finished - started) * 1000,
    }
    context = build_context(event, chunks, timings)
    await publish_event(
        deps.broker, context, topic=CONTEXTS, key=event.query_id, metrics=deps.metrics
    )
    _log.info(
        "context_retrieved",
        query_id=event.query_id,
        tenant=event.tenant,
        candidates=len(hits),
        chunks=len(chunks),
        **{name: round(value, 1) for name, value in timings.items()},
    )
