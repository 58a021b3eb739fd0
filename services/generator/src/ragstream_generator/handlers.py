"""The generator's Kafka subscriber: thin glue between events, the domain and the model port.

``contexts`` (ContextRetrieved) -> prompt -> LiteLLM Router -> citations -> ``answers``
(AnswerCompleted, keyed to the gateway replica waiting for it).
"""

from __future__ import annotations

import asyncio
import time

from faststream.kafka import KafkaRouter

from ragstream_common.events import AnswerCompleted, ContextRetrieved
from ragstream_common.logging import get_logger
from ragstream_common.messaging import consumer_options, publish_event
from ragstream_common.topics import ANSWERS, CONTEXTS
from ragstream_generator.dependencies import Dependencies, NotReadyError
from ragstream_generator.domain import (
    APOLOGY_ANSWER,
    NO_CONTEXT_ANSWER,
    NO_MODEL,
    build_messages,
    completed_answer,
    extract_citations,
    fit_to_budget,
)

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
    """Return the answer to ``event``: from the model, or without it when nothing was retrieved.

    A model failure (after the router's own retries and fallbacks, or past the request budget)
    becomes an answer carrying ``error`` and an apology rather than an exception: redelivering
    the message would only keep the gateway waiting for a reply that fails the same way.

    Args:
        event: The query and its retrieved chunks.
        deps: The service's dependencies.
    """
    started = time.perf_counter()
    query_id = event.query.query_id
    counters = deps.generator_metrics
    with deps.metrics.time_stage("generate"):
        if not event.chunks:
            # Nothing to ground an answer in: asking a model would only invite it to make one up.
            counters.answered(NO_MODEL)
            _log.info("answered_without_context", query_id=query_id)
            return completed_answer(
                event,
                answer=NO_CONTEXT_ANSWER,
                citations=[],
                model=NO_MODEL,
                generate_ms=_ms_since(started),
            )
        chunks = fit_to_budget(event.chunks, deps.settings.max_context_words)
        messages = build_messages(event.query.text, chunks)
        try:
            with deps.metrics.time_stage("llm"):
                async with asyncio.timeout(deps.settings.request_timeout_s):
                    completion = await deps.llm.complete(messages)
        except NotReadyError:
            raise
        except Exception as error:  # every provider error, timeout or bug ends the same way
            error_type = type(error).__name__
            counters.failed(error_type)
            _log.exception("generation_failed", query_id=query_id, error_type=error_type)
            return completed_answer(
                event,
                answer=APOLOGY_ANSWER,
                citations=[],
                model=NO_MODEL,
                generate_ms=_ms_since(started),
                error=f"generation failed: {error_type}",
            )
        citations = extract_citations(completion.text, chunks)
        counters.answered(completion.model, completion.prompt_tokens, completion.completion_tokens)
        answer = completed_answer(
            event,
            answer=completion.text,
            citations=citations,
            model=completion.model,
            generate_ms=_ms_since(started),
        )
    _log.info(
        "answered",
        query_id=query_id,
        model=completion.model,
        passages=len(chunks),
        cited=[citation.n for citation in citations],
        generate_ms=answer.timings["generate_ms"],
    )
    return answer


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
