"""Streamed answers: each piece of the model's reply goes out as an ``AnswerDelta`` as it comes.

Streaming and the cascade's escalation do not mix: an escalation judges a whole answer, and the
pieces of a streamed one are already with the client. So a streamed question is answered by the
first tier that *starts* answering: a tier that fails before its first piece (after the router's
own retries and fallbacks, which all happen while the stream opens) hands the question to the
next tier, exactly as a failed tier does in the cascade; a tier that fails after its first piece
ends the answer with an error, since what the client has seen cannot be taken back. The answer's
groundedness is still assessed and reported, it just cannot trigger an escalation.

The deltas (``seq`` 0, 1, 2, ...) and the final ``AnswerCompleted`` are all keyed by the query's
reply route, so they share a partition of ``answers`` and reach the gateway in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import cast

from ragstream_common.events import (
    AnswerCompleted,
    AnswerDelta,
    ContextRetrieved,
    RetrievedChunk,
    Usage,
)
from ragstream_common.logging import get_logger
from ragstream_common.messaging import publish_event
from ragstream_common.topics import ANSWERS
from ragstream_generator.budget import record_spend, tiers_within_budget
from ragstream_generator.dependencies import Dependencies, NotReadyError
from ragstream_generator.domain import (
    APOLOGY_ANSWER,
    NO_MODEL,
    completed_answer,
    extract_citations,
    mark_support,
)
from ragstream_generator.groundedness import assess
from ragstream_generator.ports import (
    AnswerModel,
    Completion,
    ModelCallError,
    StreamingAnswerModel,
)

__all__ = ["DeltaPublisher", "stream_answer"]

_log = get_logger(__name__)


class DeltaPublisher:
    """Publishes the pieces of one streamed answer as numbered ``AnswerDelta`` events.

    Args:
        event: The context being answered (its query names the reply route).
        deps: The broker and metrics to publish with.
        started: ``time.perf_counter()`` when the context arrived, for the time to first token.
    """

    def __init__(self, event: ContextRetrieved, deps: Dependencies, started: float) -> None:
        self.query = event.query
        self.deps = deps
        self.started = started
        self.seq = 0
        self.ttft_ms: float | None = None

    async def __call__(self, delta: str) -> None:
        """Publish ``delta`` as the next piece; empty pieces are skipped."""
        if not delta:
            return
        if self.ttft_ms is None:
            elapsed = time.perf_counter() - self.started
            self.ttft_ms = elapsed * 1000
            self.deps.generator_metrics.first_token(elapsed)
        query = self.query
        await publish_event(
            self.deps.broker,
            AnswerDelta(
                query_id=query.query_id,
                tenant=query.tenant,
                reply_to=query.reply_to,
                seq=self.seq,
                delta=delta,
            ),
            topic=ANSWERS,
            key=query.reply_to,
            metrics=self.deps.metrics,
        )
        self.seq += 1


async def stream_answer(
    event: ContextRetrieved,
    deps: Dependencies,
    *,
    chunks: Sequence[RetrievedChunk],
    messages: Sequence[Mapping[str, str]],
    prompt_version: str,
    started: float,
) -> AnswerCompleted:
    """Stream the answer to ``event`` as deltas on ``answers``; return the final answer event.

    Args:
        event: The query and its retrieved chunks.
        deps: The service's dependencies.
        chunks: The passages the prompt holds, in prompt order (for citations and groundedness).
        messages: The prompt.
        prompt_version: The prompt template's version.
        started: ``time.perf_counter()`` when the context arrived.
    """
    query = event.query
    settings = deps.settings
    counters = deps.generator_metrics
    publish = DeltaPublisher(event, deps, started)
    completion: Completion | None = None
    attempts: list[str] = []
    error_type = "NoTier"
    try:
        with deps.metrics.time_stage("llm"):
            async with asyncio.timeout(settings.request_timeout_s):
                for tier in await tiers_within_budget(deps, query.tenant):
                    try:
                        completion = await _stream_tier(deps.llm, messages, tier, publish)
                    except NotReadyError:
                        raise
                    except Exception as raised:  # a port breaking its contract fails its tier
                        error = (
                            raised
                            if isinstance(raised, ModelCallError)
                            else ModelCallError(str(raised), error_type=type(raised).__name__)
                        )
                        attempts += error.attempts
                        counters.attempted(error.attempts)
                        error_type = error.error_type
                        if publish.seq:  # pieces are out: another tier cannot take over
                            break
                        continue
                    attempts += completion.attempts
                    break
    except TimeoutError:
        error_type = "TimeoutError"
    if completion is None:
        counters.failed(error_type)
        counters.answered(NO_MODEL)
        _log.error(
            "generation_failed",
            query_id=query.query_id,
            error_type=error_type,
            attempts=attempts,
            deltas=publish.seq,
        )
        return _with_ttft(
            completed_answer(
                event,
                answer=APOLOGY_ANSWER,
                citations=[],
                model=NO_MODEL,
                generate_ms=_ms_since(started),
                error=f"generation failed: {error_type}",
                usage=Usage(),
                prompt_version=prompt_version,
                attempts=attempts,
            ),
            publish.ttft_ms,
        )
    counters.attempted(completion.attempts)
    await record_spend(deps, query.tenant, completion.cost_usd)
    counters.spent(
        query.tenant,
        completion.model,
        completion.prompt_tokens,
        completion.completion_tokens,
        completion.cost_usd,
    )
    check = assess(completion.text, [chunk.text for chunk in chunks], settings.support_threshold)
    citations = mark_support(extract_citations(completion.text, chunks), check.supported_citations)
    counters.answered(completion.model, check.score)
    answer = completed_answer(
        event,
        answer=completion.text,
        citations=citations,
        model=completion.model,
        generate_ms=_ms_since(started),
        groundedness=check.score,
        usage=Usage(
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cost_usd=completion.cost_usd,
        ),
        prompt_version=prompt_version,
        attempts=attempts,
    )
    _log.info(
        "answered_streaming",
        query_id=query.query_id,
        model=completion.model,
        attempts=attempts,
        deltas=publish.seq,
        groundedness=round(check.score, 3),
        ttft_ms=round(publish.ttft_ms or 0.0, 3),
        generate_ms=answer.timings["generate_ms"],
    )
    return _with_ttft(answer, publish.ttft_ms)


async def _stream_tier(
    llm: AnswerModel,
    messages: Sequence[Mapping[str, str]],
    tier: str,
    publish: DeltaPublisher,
) -> Completion:
    # A port that cannot stream (a test double, say) still answers a streamed question: its
    # whole reply becomes the one delta.
    stream = getattr(llm, "stream", None)
    if stream is None:
        completion = await llm.complete(messages, tier)
        await publish(completion.text)
        return completion
    return await cast("StreamingAnswerModel", llm).stream(messages, tier, publish)


def _with_ttft(answer: AnswerCompleted, ttft_ms: float | None) -> AnswerCompleted:
    if ttft_ms is None:
        return answer
    return answer.model_copy(update={"timings": {**answer.timings, "ttft_ms": round(ttft_ms, 3)}})


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
