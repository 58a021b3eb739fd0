"""The retriever's Kafka subscribers: thin glue between events, the domain and the ports.

Index role: ``embeddings`` (ChunksEmbedded), in batches -> Weaviate, each write step once for the
whole batch -> ``document-status``.
Search role: ``queries`` (QueryRequested), in batches -> one model call embeds them all -> a
hybrid search each, concurrently -> ``contexts``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaRouter

from ragstream_common.events import ChunksEmbedded, QueryRequested, utc_now
from ragstream_common.logging import bind_correlation_id, get_logger
from ragstream_common.messaging import (
    KafkaMessage,
    PoisonMessageError,
    Received,
    batch_subscriber,
    consumer_options,
    dead_letter,
    handle_each,
    publish_event,
    publish_event_unconfirmed,
    record_message,
    valid_events,
)
from ragstream_common.topics import CONTEXTS, DOCUMENT_STATUS, EMBEDDINGS, QUERIES
from ragstream_retriever.dependencies import Dependencies
from ragstream_retriever.domain import (
    DocumentRecord,
    IndexAction,
    IndexPlan,
    InvalidEmbeddingsError,
    PendingVersion,
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
    version_rounds,
)

__all__ = [
    "LiveSearch",
    "build_router",
    "index_batch",
    "index_versions",
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

        @batch_subscriber(
            router,
            EMBEDDINGS,
            max_messages=settings.index_batch_max_messages,
            max_wait_ms=settings.index_batch_max_wait_ms,
            quiet_ms=settings.index_batch_quiet_ms,
            **consumer_options(settings, settings.index_group_id),
        )
        async def on_chunks_embedded(message: KafkaMessage) -> None:
            batch = await valid_events(
                message, ChunksEmbedded, broker=deps.broker, metrics=deps.metrics
            )
            await index_batch(deps, batch)

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


async def index_batch(deps: Dependencies, batch: Sequence[Received[ChunksEmbedded]]) -> None:
    """Apply a batch of document versions to the index; dead-letter those that break the contract.

    Args:
        deps: The service's ports and metrics.
        batch: The versions, as ``valid_events`` returns them.
    """
    pending: list[PendingVersion] = []
    for item in batch:
        try:
            chunks = chunks_to_index(item.event, deps.settings.embedding_dimensions)
        except InvalidEmbeddingsError as error:
            await dead_letter(
                deps.broker,
                record_message(item.record),
                PoisonMessageError(str(error)),
                service=deps.metrics.service,
                metrics=deps.metrics,
            )
            continue
        pending.append(PendingVersion(item.event, chunks, item.correlation_id))
    await index_versions(deps, pending)


async def index_versions(deps: Dependencies, versions: Sequence[PendingVersion]) -> None:
    """Apply document versions to the index, blue/green, and publish their statuses.

    Each version's plan (``domain.plan_version``) is one of: stale (nothing), unchanged (move the
    record's latest version only), switch (insert the version's chunks under new ids, write the
    record naming it live, retire every other version's chunks), or reapply (the live version
    again: retire again). The documents of a batch go through each step together: one lookup of
    their records, one insert of all the new chunks, one write of all the records, one deletion
    of the retired chunks (per tenant), then their statuses, acknowledged together. Per-document
    work cost a Weaviate round trip per step and document, and its CPU competed with the
    embedder's model (bench/README.md).

    The order of the steps is what keeps readers safe: every chunk of a version is written
    before any record names it live, and retired only after. Every step is safe to repeat, so a
    redelivery after a crash at any point converges: before a document's switch, the old
    version is still live and the inserts are redone over the same ids; after it, the version
    is live and the retirement runs again. A document with several versions in one batch gets
    one round per version (``version_rounds``).

    Args:
        deps: The service's ports and metrics.
        versions: The valid versions, in the order they were consumed.

    Raises:
        IndexWriteError, ConnectionError, ...: A step failed; the batch is to be redelivered.
    """
    for round_versions in version_rounds(versions):
        await _apply_round(deps, round_versions)


async def _apply_round(deps: Dependencies, versions: Sequence[PendingVersion]) -> None:
    """Apply versions of distinct documents (``version_rounds``), each step once for all."""
    index, metrics, service = deps.index, deps.retriever_metrics, deps.metrics.service
    records = await _records_of(deps, versions)
    applied: list[tuple[PendingVersion, IndexPlan]] = []
    for version in versions:
        record = records.get(version.document)
        plan = plan_version(version.event, record)
        if plan.action is IndexAction.STALE:
            # Acknowledged and dropped: a replay or a late duplicate must not bring old text
            # back, and no status either, since the compacted status topic keeps the latest.
            metrics.stale_versions.labels(service).inc()
            bind_correlation_id(version.correlation_id)
            _log.info(
                "stale_version_skipped",
                doc_id=version.event.doc_id,
                tenant=version.event.tenant,
                version=version.event.version,
                latest_version=record and record.latest_version,
            )
            continue
        applied.append((version, plan))
    if not applied:
        return

    started = time.perf_counter()
    inserts = [
        chunk
        for version, plan in applied
        if plan.action is IndexAction.SWITCH
        for chunk in version.chunks
    ]
    if inserts:
        await index.insert(inserts)
        metrics.chunks_written.labels(service).inc(len(inserts))
        metrics.observe_stage("insert", time.perf_counter() - started)
    # For a switch this write is the moment readers move from the old version to the new one;
    # for an unchanged version it only moves the stale check's high-water mark.
    new_records = [plan.record for _, plan in applied if plan.record is not None]
    if new_records:
        step = time.perf_counter()
        await index.write_records(new_records)
        metrics.observe_stage("switch", time.perf_counter() - step)
    retire: dict[str, dict[str, int]] = {}
    for version, plan in applied:
        if plan.action in (IndexAction.SWITCH, IndexAction.REAPPLY):
            retire.setdefault(version.event.tenant, {})[version.event.doc_id] = (
                version.event.version
            )
    retired = 0
    if retire:
        step = time.perf_counter()
        for tenant, keep in sorted(retire.items()):
            retired += await index.delete_other_versions(tenant, keep)
        metrics.chunks_retired.labels(service).inc(retired)
        metrics.observe_stage("retire", time.perf_counter() - step)
    unchanged = sum(plan.action is IndexAction.UNCHANGED for _, plan in applied)
    metrics.unchanged_versions.labels(service).inc(unchanged)
    finished = time.perf_counter()

    # Queued together, acknowledged together, before the batch is committed.
    unconfirmed: list[asyncio.Future[Any]] = []
    now = utc_now()
    for version, plan in applied:
        event = version.event
        bind_correlation_id(version.correlation_id)
        status = document_status(event)
        freshness = freshness_seconds(event.published_at, now)
        metrics.freshness.labels(service, status.stage).observe(freshness)
        queued = await publish_event_unconfirmed(
            deps.broker,
            status,
            topic=DOCUMENT_STATUS,
            key=event.doc_id,
            metrics=deps.metrics,
            correlation_id=version.correlation_id,
        )
        unconfirmed.extend([queued] if queued is not None else [])
        record = records.get(version.document)
        _log.info(
            "document_version_applied",
            doc_id=event.doc_id,
            tenant=event.tenant,
            version=event.version,
            action=str(plan.action),
            stage=status.stage,
            chunks=len(version.chunks),
            live_version=record and record.live_version,
            freshness_s=round(freshness, 3),
        )
    await asyncio.gather(*unconfirmed)
    bind_correlation_id(None)
    _log.info(
        "index_batch_applied",
        versions=len(applied),
        chunks_written=len(inserts),
        records_written=len(new_records),
        retired=retired,
        index_ms=round((finished - started) * 1000, 1),
    )


async def _records_of(
    deps: Dependencies, versions: Sequence[PendingVersion]
) -> dict[tuple[str, str], DocumentRecord]:
    """Return the records of the versions' documents: one lookup per tenant."""
    tenants = sorted({version.event.tenant for version in versions})
    records: dict[tuple[str, str], DocumentRecord] = {}
    for tenant in tenants:
        doc_ids = {version.event.doc_id for version in versions if version.event.tenant == tenant}
        found = await deps.index.document_records(tenant, doc_ids)
        records.update({(tenant, doc_id): record for doc_id, record in found.items()})
    return records


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
