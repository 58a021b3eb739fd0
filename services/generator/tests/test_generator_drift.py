"""Tests for the generator's drift detectors: falling groundedness, rising does-not-know answers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pytest

from ragstream_common.drift import (
    GROUNDEDNESS_DROP_ALERT_THRESHOLD,
    UNKNOWN_RATE_RISE_ALERT_THRESHOLD,
)
from ragstream_common.events import ContextRetrieved, QueryRequested, RetrievedChunk
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_generator.dependencies import Dependencies
from ragstream_generator.domain import NO_CONTEXT_ANSWER
from ragstream_generator.handlers import answer_context, build_router
from ragstream_generator.ports import Cascade, Completion
from ragstream_generator.settings import GeneratorSettings

# LiteLLM builds pydantic schemas lazily; pydantic warns about their ReadOnly TypedDict items.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning")

CHUNK = RetrievedChunk(
    chunk_id="c-kafka",
    doc_id="kafka-notes",
    title="Kafka notes",
    text="The partition count is the ceiling of each consumer's replicas.",
    position=0,
    score=0.84,
)
GROUNDED = "The partition count is the ceiling of each consumer's replicas [1]."
UNGROUNDED = "Bananas ripen faster beside apples because of ethylene gas [1]."


class ScriptedModel:
    """An AnswerModel replying with the next of its scripted replies."""

    cascade = Cascade(tiers=("tier-0",), min_groundedness=0.0)

    def __init__(self) -> None:
        self.replies: list[str] = []

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        model_group: str | None = None,
        *,
        tenant: str | None = None,
    ) -> Completion:
        return Completion(text=self.replies.pop(0), model="fake/model", attempts=("fake/model",))


def _deps(model: ScriptedModel, **settings: int) -> Dependencies:
    config = GeneratorSettings(**settings)
    metrics = ServiceMetrics(config.service_name)
    broker = create_broker(config, metrics)
    deps = Dependencies(settings=config, metrics=metrics, broker=broker, llm_port=model)
    broker.include_router(build_router(deps))
    return deps


def _sample(deps: Dependencies, name: str, **labels: str) -> float:
    value = deps.metrics.registry.get_sample_value(name, {"service": "generator", **labels})
    assert value is not None
    return value


async def _answer(deps: Dependencies, model: ScriptedModel, replies: Sequence[str | None]) -> None:
    """Answer one question per reply; None is a question nothing relevant was retrieved for."""
    for reply in replies:
        chunks = [] if reply is None else [CHUNK]
        if reply is not None:
            model.replies.append(reply)
        query = QueryRequested(text="What limits replicas?", reply_to="gw", cache=False)
        await answer_context(ContextRetrieved(query=query, chunks=chunks), deps)


def _pattern(count: int, every: int, odd: str | None, usual: str | None) -> list[str | None]:
    """``count`` replies, every ``every``-th one ``odd`` and the rest ``usual``."""
    return [odd if step % every == 0 else usual for step in range(count)]


class TestGroundednessDrift:
    async def test_nothing_is_reported_before_the_baseline_is_full(self) -> None:
        """Until N model answers are in, groundedness is NaN and its detector not ready."""
        model = ScriptedModel()
        deps = _deps(model)
        await _answer(deps, model, [GROUNDED] * (deps.settings.drift_baseline_answers - 1))
        assert math.isnan(_sample(deps, "ragstream_groundedness_recent"))
        assert math.isnan(_sample(deps, "ragstream_groundedness_baseline"))
        assert _sample(deps, "ragstream_drift_baseline_ready", detector="groundedness") == 0

    async def test_steady_groundedness_stays_quiet(self) -> None:
        """One unsupported answer in ten, before and after the baseline froze: no fall."""
        model = ScriptedModel()
        deps = _deps(model)
        answers = deps.settings.drift_baseline_answers + deps.settings.drift_recent_answers
        await _answer(deps, model, _pattern(answers, 10, UNGROUNDED, GROUNDED))
        baseline = _sample(deps, "ragstream_groundedness_baseline")
        recent = _sample(deps, "ragstream_groundedness_recent")
        assert recent == pytest.approx(0.9)
        assert baseline - recent < GROUNDEDNESS_DROP_ALERT_THRESHOLD
        assert _sample(deps, "ragstream_drift_baseline_ready", detector="groundedness") == 1

    async def test_falling_groundedness_fires(self) -> None:
        """Unsupported answers rising from one in ten to one in two is a fall past the threshold."""
        model = ScriptedModel()
        deps = _deps(model)
        settings = deps.settings
        await _answer(
            deps, model, _pattern(settings.drift_baseline_answers, 10, UNGROUNDED, GROUNDED)
        )
        await _answer(deps, model, _pattern(settings.drift_recent_answers, 2, UNGROUNDED, GROUNDED))
        baseline = _sample(deps, "ragstream_groundedness_baseline")
        recent = _sample(deps, "ragstream_groundedness_recent")
        assert recent == pytest.approx(0.5)
        assert baseline - recent > GROUNDEDNESS_DROP_ALERT_THRESHOLD

    async def test_does_not_know_answers_leave_groundedness_alone(self) -> None:
        """The does-not-know answer claims nothing: it is no evidence of grounding either way."""
        model = ScriptedModel()
        deps = _deps(model, drift_baseline_answers=2, drift_recent_answers=2)
        await _answer(deps, model, [UNGROUNDED, UNGROUNDED, None, None, None])
        assert _sample(deps, "ragstream_groundedness_recent") == pytest.approx(0.0)


class TestUnknownAnswerDrift:
    async def test_nothing_is_reported_before_the_baseline_is_full(self) -> None:
        """Until N answers are in, the ratio is NaN and its detector not ready."""
        model = ScriptedModel()
        deps = _deps(model, drift_baseline_answers=5, drift_recent_answers=2)
        await _answer(deps, model, [None, None, None, None])
        assert math.isnan(_sample(deps, "ragstream_unknown_answer_ratio"))
        ready = _sample(deps, "ragstream_drift_baseline_ready", detector="unknown_answer_ratio")
        assert ready == 0

    async def test_a_steady_share_stays_quiet(self) -> None:
        """One does-not-know answer in ten, before and after the baseline froze: no rise."""
        model = ScriptedModel()
        deps = _deps(model)
        answers = deps.settings.drift_baseline_answers + deps.settings.drift_recent_answers
        await _answer(deps, model, _pattern(answers, 10, None, GROUNDED))
        baseline = _sample(deps, "ragstream_unknown_answer_ratio_baseline")
        recent = _sample(deps, "ragstream_unknown_answer_ratio")
        assert recent == pytest.approx(0.1)
        assert recent - baseline < UNKNOWN_RATE_RISE_ALERT_THRESHOLD

    async def test_a_rising_share_fires(self) -> None:
        """Does-not-know answers rising from one in ten to one in three cross the threshold."""
        model = ScriptedModel()
        deps = _deps(model)
        settings = deps.settings
        await _answer(deps, model, _pattern(settings.drift_baseline_answers, 10, None, GROUNDED))
        await _answer(deps, model, _pattern(settings.drift_recent_answers, 3, None, GROUNDED))
        baseline = _sample(deps, "ragstream_unknown_answer_ratio_baseline")
        recent = _sample(deps, "ragstream_unknown_answer_ratio")
        assert baseline == pytest.approx(0.1)
        assert recent - baseline > UNKNOWN_RATE_RISE_ALERT_THRESHOLD

    async def test_the_answer_itself_is_checked(self) -> None:
        """What counts is the published does-not-know sentence, with no model behind it."""
        model = ScriptedModel()
        deps = _deps(model, drift_baseline_answers=2, drift_recent_answers=2)
        await _answer(deps, model, [None, GROUNDED])
        assert _sample(deps, "ragstream_unknown_answer_ratio") == pytest.approx(0.5)
        assert NO_CONTEXT_ANSWER  # the sentence the detector looks for exists
