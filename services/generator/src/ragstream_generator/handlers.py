"""The generator's Kafka subscriber: thin glue between events, the domain and the model port.

``contexts`` (ContextRetrieved) -> prompt -> cascade of LiteLLM Router groups -> groundedness
and citations -> ``answers``
(AnswerCompleted, keyed to the gateway replica waiting for it).
"""

from __future__ import annotations

import asyncio
import time

from faststream.kafka import KafkaRouter

from ragstream_common.events import AnswerCompleted, ContextRetrieved, Usage
from ragstream_common.logging import get_logger
from ragstream_common.messaging import consumer_options, publish_event
from ragstream_common.topics import ANSWERS, CONTEXTS
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

__all__ = ["GROUP", "answer_context", "build_router"]

GROUP = "generator"

_log = get_logger(__name__)


def build_router(deps: Dependencies) -> KafkaRouter:
    """Return a router whose one subscriber answers each retrieved context.

    Args:
        deps: Settings, metrics, the broker to publish with, and the model port.
    """
    router = KafkaRouter()

    @router.subscriber(CONTEXTS, **consumer_options(deps.settings, GROUP))
    async def on_context(event: ContextRetrieved) -> None:
        answer = await answer_context(event, deps)
        await publish_event(
            deps.broker, answer, topic=ANSWERS, key=event.query.reply_to, metrics=deps.metrics
        )

    return router


async def answer_context(event: ContextRetrieved, deps: Dependencies) -> AnswerCompleted:
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
        )
    _log.info(
        "answered",
        query_id=query.query_id,
        model=completion.model,
        attempts=result.attempts,
        escalations=result.escalations,
        groundedness=round(check.score, 3),
        passages=len(chunks),
        cited=[citation.n for citation in citations],
        cost_usd=usage.cost_usd,
        generate_ms=answer.timings["generate_ms"],
    )
    return answer


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
