"""The retriever's Kafka subscribers: thin glue between events, the domain and the ports.

Index role: ``embeddings`` (ChunksEmbedded) -> Weaviate, then ``document-status``.
Search role: ``queries`` (QueryRequested), in batches -> one model call embeds them all -> a
hybrid search each, concurrently -> ``contexts``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from ragstream_common.events import ChunksEmbedded, QueryRequested, utc_now
from ragstream_common.logging import get_logger
from ragstream_common.messaging import (
    PoisonMessageError,
    Received,
    batch_subscriber,
    consumer_options,
    handle_each,
    publish_event,
    valid_events,
)
from ragstream_common.topics import CONTEXTS, DOCUMENT_STATUS, EMBEDDINGS, QUERIES
from ragstream_retriever.dependencies import Dependencies
from ragstream_retriever.domain import (
    IndexAction,
    InvalidEmbeddingsError,
    SearchHit,
    build_context,
    candidate_limit,
    chunks_to_index,
    document_status,
    freshness_seconds,
    keep_live_versions,
    metadata_filter,
    next_search_limit,
    plan_version,
    resolve_option,
    select_chunks,
)

__all__ = [
    "LiveSearch",
    "build_router",
    "index_document",
    "search_embedded",
    "search_live",
    "search_queries",
    "search_query",
]

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

        @batch_subscriber(
            router,
            QUERIES,
            max_messages=settings.search_batch_max_messages,
            max_wait_ms=settings.search_batch_max_wait_ms,
            **consumer_options(settings, settings.search_group_id),
        )
        async def on_queries_requested(message: KafkaMessage) -> None:
            batch = await valid_events(
                message, QueryRequested, broker=deps.broker, metrics=deps.metrics
            )
            await search_queries(deps, batch)

    return router


async def index_document(deps: Dependencies, event: ChunksEmbedded) -> None:
    """Apply one document version to the index, blue/green, and publish its status.

    The plan (``domain.plan_version``) is one of: stale (nothing), unchanged (move the record's
    latest version only), switch (insert the version's chunks under new ids, write the record
    naming it live, retire every other version's chunks), or reapply (the live version again:
    retire again). Every step is safe to repeat, so a redelivery after a crash at any point
    converges: before the switch, the old version is still live and the inserts are redone over
    the same ids; after it, the version is live and the retirement runs again.

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

    index, metrics = deps.index, deps.retriever_metrics
    record = await index.document_record(event.tenant, event.doc_id)
    plan = plan_version(event, record)
    if plan.action is IndexAction.STALE:
        # Acknowledged and dropped: a replay or a late duplicate must not bring old text back,
        # and no status either, since the compacted status topic keeps only the latest.
        metrics.stale_versions.labels(deps.metrics.service).inc()
        log.info("stale_version_skipped", latest_version=record and record.latest_version)
        return

    started = time.perf_counter()
    retired = 0
    if plan.action is IndexAction.SWITCH and chunks:
        await index.insert(chunks)
        metrics.chunks_written.labels(deps.metrics.service).inc(len(chunks))
        metrics.observe_stage("insert", time.perf_counter() - started)
    if plan.record is not None:
        # For a switch this one write is the moment readers move from the old version to this
        # one; for an unchanged version it only moves the stale check's high-water mark.
        step = time.perf_counter()
        await index.write_record(plan.record)
        metrics.observe_stage("switch", time.perf_counter() - step)
    if plan.action in (IndexAction.SWITCH, IndexAction.REAPPLY):
        step = time.perf_counter()
        retired = await index.delete_other_versions(event.tenant, event.doc_id, event.version)
        metrics.chunks_retired.labels(deps.metrics.service).inc(retired)
        metrics.observe_stage("retire", time.perf_counter() - step)
    if plan.action is IndexAction.UNCHANGED:
        metrics.unchanged_versions.labels(deps.metrics.service).inc()
    finished = time.perf_counter()

    status = document_status(event)
    freshness = freshness_seconds(event.published_at, utc_now())
    metrics.freshness.labels(deps.metrics.service, status.stage).observe(freshness)
    await publish_event(
        deps.broker, status, topic=DOCUMENT_STATUS, key=event.doc_id, metrics=deps.metrics
    )
    log.info(
        "document_version_applied",
        action=str(plan.action),
        stage=status.stage,
        chunks=len(chunks),
        retired=retired,
        live_version=record and record.live_version,
        freshness_s=round(freshness, 3),
        index_ms=round((finished - started) * 1000, 1),
    )


@dataclass(frozen=True, slots=True)
class LiveSearch:
    """What a search found once non-live versions were hidden.

    Args:
        hits: The candidates of live versions only, in the index's order, before ranking.
        rounds: How many hybrid searches it took.
        search_seconds: Time in the hybrid searches.
        lookup_seconds: Time in the version-record lookups.
    """

    hits: list[SearchHit]
    rounds: int
    search_seconds: float
    lookup_seconds: float


async def search_live(
    deps: Dependencies, event: QueryRequested, vector: Sequence[float]
) -> LiveSearch:
    """Run the hybrid search and keep only the hits of each document's live version.

    The records are read after the search, in one lookup for all the documents among the hits,
    and each document keeps only the hits of the version its record names live. Versions only
    move forward and a version's chunks are all written before it goes live, so a context never
    mixes two versions of a document, and never shows an older version than the last switch
    completed before the lookup. A second round is run when the filter left the context short,
    or a document's new version went live too late for its chunks to be among the candidates.

    Args:
        deps: The service's ports and settings.
        event: The query.
        vector: The query's embedding.
    """
    settings, index = deps.settings, deps.index
    alpha = resolve_option(event.alpha, settings.default_alpha)
    min_score = resolve_option(event.min_score, settings.min_score)
    filters = metadata_filter(event.filters)
    cap = settings.max_search_candidates
    limit = candidate_limit(event.top_k, settings.search_overfetch, cap)
    search_seconds = lookup_seconds = 0.0
    rounds = 0
    while True:
        rounds += 1
        started = time.perf_counter()
        hits = await index.search(
            tenant=event.tenant,
            text=event.text,
            vector=vector,
            alpha=alpha,
            limit=limit,
            filters=filters,
        )
        searched = time.perf_counter()
        live_versions = await index.live_versions(event.tenant, {hit.doc_id for hit in hits})
        looked_up = time.perf_counter()
        search_seconds += searched - started
        lookup_seconds += looked_up - searched
        live = keep_live_versions(hits, live_versions)
        if rounds >= settings.max_search_rounds:
            break
        selected = select_chunks(
            live.hits,
            top_k=event.top_k,
            max_per_doc=settings.max_chunks_per_doc,
            min_score=min_score,
        )
        next_limit = next_search_limit(
            live,
            fetched=len(hits),
            limit=limit,
            selected=len(selected),
            top_k=event.top_k,
            cap=cap,
        )
        if next_limit is None:
            break
        deps.retriever_metrics.search_rounds.labels(deps.metrics.service).inc()
        _log.info(
            "search_round_repeated",
            query_id=event.query_id,
            hidden=live.hidden,
            unsettled=sorted(live.unsettled)[:5],
            limit=next_limit,
        )
        limit = next_limit
    return LiveSearch(live.hits, rounds, search_seconds, lookup_seconds)


async def search_queries(deps: Dependencies, batch: Sequence[Received[QueryRequested]]) -> None:
    """Embed a batch of queries in one model call, then search and publish each concurrently.

    One forward pass over several queries costs far less per query than one pass each (the
    figures are in bench/README.md), so under load the queue drains faster the longer it is.

    Args:
        deps: The service's ports and metrics.
        batch: The queries, as ``valid_events`` returns them.
    """
    if not batch:
        return
    started = time.perf_counter()
    # The port runs the CPU-bound model on its own thread, so the loop keeps serving messages.
    vectors = await deps.model.embed([item.event.text for item in batch])
    embedded = time.perf_counter()
    deps.retriever_metrics.query_batch_size.labels(deps.metrics.service).observe(len(batch))
    vector_of = {item.event.query_id: vector for item, vector in zip(batch, vectors, strict=True)}

    async def search_one(event: QueryRequested) -> None:
        await search_embedded(deps, event, vector_of[event.query_id], started, embedded)

    await handle_each(batch, search_one, broker=deps.broker, metrics=deps.metrics)


async def search_query(deps: Dependencies, event: QueryRequested) -> None:
    """Embed one query, search the tenant's live chunks, trim them to a context and publish it.

    Args:
        deps: The service's ports and metrics.
        event: The query.
    """
    started = time.perf_counter()
    vectors = await deps.model.embed([event.text])
    await search_embedded(deps, event, vectors[0], started, time.perf_counter())


async def search_embedded(
    deps: Dependencies,
    event: QueryRequested,
    vector: Sequence[float],
    started: float,
    embedded: float,
) -> None:
    """Search the tenant's live chunks for an embedded query, trim them to a context, publish it.

    An empty result is published too: the generator then says it does not know.

    Args:
        deps: The service's ports and metrics.
        event: The query.
        vector: Its embedding.
        started: When its embedding started (``time.perf_counter``), for its timings.
        embedded: When its embedding was done.
    """
    settings = deps.settings
    found = await search_live(deps, event, vector)
    min_score = resolve_option(event.min_score, settings.min_score)
    chunks = select_chunks(
        found.hits,
        top_k=event.top_k,
        max_per_doc=settings.max_chunks_per_doc,
        min_score=min_score,
    )
    finished = time.perf_counter()

    deps.retriever_metrics.observe_stage("embed_query", embedded - started)
    deps.retriever_metrics.observe_stage("search", found.search_seconds)
    deps.retriever_metrics.observe_stage("live_lookup", found.lookup_seconds)
    deps.retriever_metrics.retrieved_chunks.labels(deps.metrics.service).observe(len(chunks))
    # Before min_score and dedup: a query whose best candidate got worse is the signal, whether
    # or not that candidate still made the cut.
    top_score = max((hit.score for hit in found.hits), default=0.0)
    deps.retriever_metrics.observe_query(vector, top_score)
    timings = {
        "embed_query_ms": (embedded - started) * 1000,
        "search_ms": found.search_seconds * 1000,
        "live_lookup_ms": found.lookup_seconds * 1000,
        "retrieve_ms": (finished - started) * 1000,
    }
    context = build_context(event, chunks, timings, list(vector))
    await publish_event(
        deps.broker, context, topic=CONTEXTS, key=event.query_id, metrics=deps.metrics
    )
    _log.info(
        "context_retrieved",
        query_id=event.query_id,
        tenant=event.tenant,
        candidates=len(found.hits),
        rounds=found.rounds,
        alpha=resolve_option(event.alpha, settings.default_alpha),
        min_score=min_score,
        filters=metadata_filter(event.filters).describe(),
        chunks=len(chunks),
        **{name: round(value, 1) for name, value in timings.items()},
    )
