"""The cascade: ask the cheapest tier first and climb while the answer is not grounded enough.

Each tier is a model group of the LiteLLM Router, which handles its own retries, timeouts and
fallbacks; the cascade adds one rule on top: an answer whose groundedness is below the
threshold, or a tier that fails outright, sends the question to the next tier. The last tier
(the local extractive model in the shipped configurations) answers whatever it scores.

A tenant over its daily budget climbs no cascade: ``affordable_tiers`` leaves it the last tier
alone, the free local model by the cascade's contract (cheapest first, the local model last).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ragstream_generator.groundedness import Groundedness, assess
from ragstream_generator.ports import AnswerModel, Cascade, Completion, ModelCallError

__all__ = ["CascadeResult", "TierFailure", "affordable_tiers", "run_cascade"]


@dataclass(frozen=True)
class TierFailure:
    """A tier that raised: its group and the error."""

    tier: str
    error: ModelCallError


@dataclass
class CascadeResult:
    """What climbing the cascade produced.

    Args:
        completion: The kept answer; None when every tier failed.
        check: Its groundedness check.
        completions: Every tier's answer, in order (each one's tokens and cost were spent).
        failures: The tiers that failed outright.
        attempts: Every deployment call, in order, across tiers.
        escalations: How many times the question moved to a next tier.
    """

    completion: Completion | None = None
    check: Groundedness | None = None
    completions: list[Completion] = field(default_factory=list)
    failures: list[TierFailure] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)
    escalations: int = 0


def affordable_tiers(cascade: Cascade, *, over_budget: bool) -> tuple[str, ...]:
    """Return the tiers a question may climb: all of them, or only the last when over budget.

    Args:
        cascade: The configured cascade.
        over_budget: Whether the asking tenant has spent its budget for the day.
    """
    return cascade.tiers[-1:] if over_budget else cascade.tiers


async def run_cascade(
    llm: AnswerModel,
    messages: Sequence[Mapping[str, str]],
    passages: Sequence[str],
    *,
    support_threshold: float,
    result: CascadeResult | None = None,
    tenant: str | None = None,
    tiers: Sequence[str] | None = None,
) -> CascadeResult:
    """Ask each tier in turn until one answers with enough groundedness.

    Args:
        llm: The model port, with its cascade.
        messages: The prompt.
        passages: The passages' texts, for the groundedness check.
        support_threshold: A sentence's share of terms a passage must hold to support it.
        result: Filled in as the tiers answer, so a caller that times the cascade out still
            sees what was spent; a new one when None.
        tenant: The asking tenant, which scopes the model's call cache (None: no caching).
        tiers: The tiers to climb (see ``affordable_tiers``); the cascade's own when None.
    """
    cascade = llm.cascade
    tiers = cascade.tiers if tiers is None else tuple(tiers)
    result = result if result is not None else CascadeResult()
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        if index:
            result.escalations += 1
        try:
            completion = await llm.complete(messages, tier, tenant=tenant)
        except Exception as raised:  # a port breaking its contract still only fails its tier
            error = (
                raised
                if isinstance(raised, ModelCallError)
                else ModelCallError(str(raised), error_type=type(raised).__name__)
            )
            result.attempts += error.attempts
            result.failures.append(TierFailure(tier=tier, error=error))
            continue
        result.attempts += completion.attempts
        result.completions.append(completion)
        check = assess(completion.text, passages, support_threshold)
        if last or check.score >= cascade.min_groundedness:
            result.completion, result.check = completion, check
            break
        result.completion, result.check = completion, check  # kept if every later tier fails
    return result
