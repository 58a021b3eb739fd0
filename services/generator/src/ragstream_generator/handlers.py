"""The generator's Kafka subscriber: thin glue between events, the domain and the model port.

``contexts`` (ContextRetrieved) -> prompt -> the tenant's budget (which tiers it may use) ->
answer caches (exact, then semantic) -> on a miss, cascade of LiteLLM Router groups (each call
through LiteLLM's own per-tenant call cache) -> groundedness and citations -> ``answers``
(AnswerCompleted, keyed to the gateway replica waiting for it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from faststream.kafka import KafkaRouter

from ragstream_common.events import AnswerCompleted, ContextRetrieved, RetrievedChunk, Usage
from ragstream_common.logging import get_logger
from ragstream_common.messaging import (
    KafkaMessage,
    batch_subscriber,
    consumer_options,
    handle_each,
    publish_event,
    valid_events,
)
from ragstream_common.topics import ANSWERS, CONTEXTS
from ragstream_generator.budget import record_spend, tiers_within_budget
from ragstream_generator.cache import (
    CachedAnswer,
    CacheKind,
    best_semantic_match,
    exact_key,
    is_servable,
    normalise_question,
)
from ragstream_generator.cascade import CascadeResult, run_cascade
from ragstream_generator.dependencies import Dependencies, NotReadyError
from ragstream_generator.domain import (
    APOLOGY_ANSWER,
    NO_CONTEXT_ANSWER,
    NO_MODEL,
    build_messages,
    completed_answer,
    extract_citations,
    fit_to_budget,
    mark_support,
    relevant_chunks,
)
from ragstream_generator.prompts import load_prompt
from ragstream_generator.streaming import stream_answer

__all__ = ["GROUP", "answer_context", "build_router"]

GROUP = "generator"

_log = get_logger(__name__)


def build_router(deps: Dependencies) -> KafkaRouter:
    """Return a router whose one subscriber answers retrieved contexts, a batch at a time.

    Args:
        deps: Settings, metrics, the broker to publish with, and the model port.
    """
    router = KafkaRouter()
    settings = deps.settings

    async def answer_and_publish(event: ContextRetrieved) -> None:
        answer = await answer_context(event, deps)
        await publish_event(
            deps.broker,
            answer,
            topic=ANSWERS,
            key=event.query.reply_to,
            metrics=deps.metrics,
            headers=answer_headers(answer),
        )

    # In batches, answered concurrently: a model call mostly waits on a provider, and one
    # question at a time per consumer would leave every other question queued behind it.
    @batch_subscriber(
        router,
        CONTEXTS,
        max_messages=settings.batch_max_messages,
        max_wait_ms=settings.batch_max_wait_ms,
        **consumer_options(settings, GROUP),
    )
    async def on_contexts(message: KafkaMessage) -> None:
        batch = await valid_events(
            message, ContextRetrieved, broker=deps.broker, metrics=deps.metrics
        )
        await handle_each(batch, answer_and_publish, broker=deps.broker, metrics=deps.metrics)

    return router


def answer_headers(answer: AnswerCompleted) -> dict[str, str]:
    """Who answered, in headers: every gateway replica notes it without parsing the answer, to
    accept feedback on any answer, whichever replica held the request."""
    return {
        "query-id": answer.query_id,
        "tenant": answer.tenant,
        "model": answer.model,
        "prompt-version": answer.prompt_version or "",
    }


async def answer_context(event: ContextRetrieved, deps: Dependencies) -> AnswerCompleted:
    """Return the answer to ``event`` (see ``_compose_answer``), noted by the drift detectors.

    Args:
        event: The query and its retrieved chunks.
        deps: The service's dependencies.
    """
    answer = await _compose_answer(event, deps)
    does_not_know = answer.model == NO_MODEL and answer.answer == NO_CONTEXT_ANSWER
    # Only an answer a model wrote just now says how well the model grounds its answers: a cached
    # one was counted when it was written, and the others claim nothing or failed.
    fresh_from_model = answer.model != NO_MODEL and not answer.cached
    deps.generator_metrics.observe_answer_quality(
        does_not_know=does_not_know,
        groundedness=answer.groundedness if fresh_from_model else None,
    )
    return answer


async def _compose_answer(event: ContextRetrieved, deps: Dependencies) -> AnswerCompleted:
    """Return the answer to ``event``: from the cascade, or without a model when nothing relevant.

    No chunk scoring at least ``min_relevance`` means nothing to ground an answer in: the
    does-not-know answer, no model call, groundedness 1.0 (it claims nothing). Otherwise the
    cascade climbs its tiers (see ``cascade.py``). When every tier fails (after the router's own
    retries and fallbacks, or past the request budget) the answer carries ``error`` and an
    apology rather than raising: redelivering the message would only keep the gateway waiting
    for a reply that fails the same way.

    Args:
        event: The query and its retrieved chunks.
        deps: The service's dependencies.
    """
    started = time.perf_counter()
    query = event.query
    settings = deps.settings
    counters = deps.generator_metrics
    with deps.metrics.time_stage("generate"):
        relevant = relevant_chunks(event.chunks, settings.min_relevance)
        if not relevant:
            # Asking a model without evidence would only invite it to make an answer up.
            counters.answered(NO_MODEL, 1.0)
            _log.info(
                "answered_without_context", query_id=query.query_id, retrieved=len(event.chunks)
            )
            return completed_answer(
                event,
                answer=NO_CONTEXT_ANSWER,
                citations=[],
                model=NO_MODEL,
                generate_ms=_ms_since(started),
                groundedness=1.0,
                usage=Usage(),
            )
        template = load_prompt(settings.prompt_version)
        chunks = fit_to_budget(relevant, settings.max_context_words)
        messages = build_messages(query.text, chunks, template)
        if query.stream:  # deltas on `answers` as the model writes; see streaming.py
            return await stream_answer(
                event,
                deps,
                chunks=chunks,
                messages=messages,
                prompt_version=template.version,
                started=started,
            )
        # A tenant past its daily budget keeps to the free tier (budget.py). The tiers are part
        # of the key: a new cascade, or a degraded one, does not serve another's answers.
        tiers = await tiers_within_budget(deps, query.tenant)
        # The same question retyped (case, spacing, closing punctuation) over the same passages
        # keys the same; a changed word or passage does not.
        keyed = build_messages(normalise_question(query.text), chunks, template)
        cache_key = exact_key(query.tenant, ",".join(tiers), template.version, keyed)
        # An asker who turned caching off gets a fresh answer, and leaves no entry behind.
        hit = await _cached_answer(deps, event, cache_key, chunks) if query.cache else None
        if hit is not None:
            entry, kind = hit
            counters.cache_hit(query.tenant, kind)
            counters.answered(entry.model, entry.groundedness)
            _log.info("answered_from_cache", query_id=query.query_id, kind=kind)
            return completed_answer(
                event,
                answer=entry.answer,
                citations=entry.citations,
                model=entry.model,
                generate_ms=_ms_since(started),
                groundedness=entry.groundedness,
                usage=Usage(),
                prompt_version=entry.prompt_version,
            ).model_copy(update={"cached": True})
        result = CascadeResult()
        timed_out = False
        try:
            with deps.metrics.time_stage("llm"):
                async with asyncio.timeout(settings.request_timeout_s):
                    await run_cascade(
                        deps.llm,
                        messages,
                        [chunk.text for chunk in chunks],
                        support_threshold=settings.support_threshold,
                        result=result,
                        tenant=query.tenant if query.cache else None,
                        tiers=tiers,
                    )
        except NotReadyError:
            raise
        except TimeoutError:
            timed_out = True
        _count(deps, query.tenant, result)
        usage = Usage(
            prompt_tokens=sum(c.prompt_tokens for c in result.completions),
            completion_tokens=sum(c.completion_tokens for c in result.completions),
            cost_usd=sum(c.cost_usd for c in result.completions),
        )
        await record_spend(deps, query.tenant, usage.cost_usd)
        completion, check = result.completion, result.check
        if completion is None or check is None:
            error_type = "TimeoutError" if timed_out else _last_error_type(result)
            counters.failed(error_type)
            counters.answered(NO_MODEL)
            _log.error(
                "generation_failed",
                query_id=query.query_id,
                error_type=error_type,
                attempts=result.attempts,
            )
            return completed_answer(
                event,
                answer=APOLOGY_ANSWER,
                citations=[],
                model=NO_MODEL,
                generate_ms=_ms_since(started),
                error=f"generation failed: {error_type}",
                usage=usage,
                prompt_version=template.version,
                attempts=result.attempts,
            )
        citations = mark_support(
            extract_citations(completion.text, chunks), check.supported_citations
        )
        counters.answered(completion.model, check.score)
        if completion.cached:
            counters.cache_hit(query.tenant, "llm")
        answer = completed_answer(
            event,
            answer=completion.text,
            citations=citations,
            model=completion.model,
            generate_ms=_ms_since(started),
            groundedness=check.score,
            usage=usage,
            prompt_version=template.version,
            attempts=result.attempts,
        ).model_copy(update={"cached": completion.cached})
        if query.cache:
            await _store_answer(
                deps,
                query.tenant,
                cache_key,
                CachedAnswer(
                    answer=answer.answer,
                    citations=answer.citations,
                    model=answer.model,
                    groundedness=answer.groundedness,
                    prompt_version=answer.prompt_version,
                    # Without it the entry is exact only: nothing kept for a lookup that is off.
                    query_vector=event.query_vector if deps.settings.semantic_cache else None,
                    top_chunk_id=chunks[0].chunk_id,
                ),
            )
    _log.info(
        "answered",
        query_id=query.query_id,
        model=completion.model,
        attempts=result.attempts,
        escalations=result.escalations,
        cached=completion.cached,
        groundedness=round(check.score, 3),
        passages=len(chunks),
        cited=[citation.n for citation in citations],
        cost_usd=usage.cost_usd,
        generate_ms=answer.timings["generate_ms"],
    )
    return answer


async def _cached_answer(
    deps: Dependencies, event: ContextRetrieved, key: str, chunks: Sequence[RetrievedChunk]
) -> tuple[CachedAnswer, CacheKind] | None:
    """Return a cached answer to ``event`` that still holds, and which cache had it, or None.

    The exact entry's key covers the prompt, passages included, so it holds by construction;
    the semantic one is checked against the chunks in the prompt (``cache.is_servable``). Both
    are checked anyway. A failing cache is a miss: the answer never fails because of it.
    """
    cache = deps.answer_cache
    if cache is None:
        return None
    tenant = event.query.tenant
    try:
        async with asyncio.timeout(deps.settings.answer_cache_timeout_s * 4):
            exact = await cache.get_exact(tenant, key)
            if exact is not None and is_servable(exact, chunks):
                return exact, "exact"
            if event.query_vector is None or not deps.settings.semantic_cache:
                return None
            similar = best_semantic_match(
                await cache.recent(tenant),
                event.query_vector,
                chunks,
                deps.settings.semantic_cache_threshold,
            )
    except Exception as error:  # any cache failure: answer without it
        deps.generator_metrics.cache_failed("lookup")
        _log.warning("answer_cache_lookup_failed", error_type=type(error).__name__)
        return None
    return None if similar is None else (similar, "semantic")


async def _store_answer(deps: Dependencies, tenant: str, key: str, entry: CachedAnswer) -> None:
    """Store a model's answer in the caches; an answer citing nothing is not worth keeping."""
    cache = deps.answer_cache
    if cache is None or not entry.citations:
        return
    try:
        async with asyncio.timeout(deps.settings.answer_cache_timeout_s * 4):
            await cache.put(tenant, key, entry)
    except Exception as error:  # the answer is already made; only the cache misses out
        deps.generator_metrics.cache_failed("store")
        _log.warning("answer_cache_store_failed", error_type=type(error).__name__)


def _count(deps: Dependencies, tenant: str, result: CascadeResult) -> None:
    counters = deps.generator_metrics
    for completion in result.completions:
        counters.attempted(completion.attempts)
        counters.spent(
            tenant,
            completion.model,
            completion.prompt_tokens,
            completion.completion_tokens,
            completion.cost_usd,
        )
    for failure in result.failures:
        counters.attempted(failure.error.attempts)
    counters.escalated(result.escalations)


def _last_error_type(result: CascadeResult) -> str:
    return result.failures[-1].error.error_type if result.failures else "NoTier"


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
