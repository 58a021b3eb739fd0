"""Tests for streamed answers: deltas on ``answers`` before the final answer, and the local model's stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from ragstream_common.events import (
    AnswerCompleted,
    AnswerDelta,
    ContextRetrieved,
    QueryRequested,
    RetrievedChunk,
)
from ragstream_common.messaging import KafkaMessage, create_broker, publish_event
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import ANSWERS, CONTEXTS
from ragstream_generator.adapters.llm import RouterAnswerModel, build_answer_model
from ragstream_generator.adapters.local_model import LOCAL_MODEL, word_pieces
from ragstream_generator.dependencies import Dependencies
from ragstream_generator.domain import APOLOGY_ANSWER, NO_MODEL, build_messages
from ragstream_generator.handlers import build_router
from ragstream_generator.ports import AnswerModel, Cascade, Completion, ModelCallError
from ragstream_generator.settings import GeneratorSettings

# LiteLLM builds pydantic schemas lazily; pydantic warns about their ReadOnly TypedDict items.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning")

CHUNKS = [
    RetrievedChunk(
        chunk_id="c-index",
        doc_id="architecture",
        title="Architecture",
        text="Weaviate is the shared index. The retriever is its only writer and reader.",
        position=0,
        score=0.91,
    ),
    RetrievedChunk(
        chunk_id="c-kafka",
        doc_id="kafka-notes",
        title="Kafka notes",
        text="The partition count is the ceiling of each consumer's replicas.",
        position=2,
        score=0.84,
    ),
]
QUESTION = "What limits the number of consumer replicas?"


def _context(*, stream: bool = True) -> ContextRetrieved:
    query = QueryRequested(text=QUESTION, reply_to="gateway-a", tenant="acme", stream=stream)
    return ContextRetrieved(query=query, chunks=list(CHUNKS), timings={"retrieve_ms": 12.5})


class StreamingModel:
    """A streaming AnswerModel: tier ``tier-i`` streams ``pieces[i]``, or raises ``errors[i]``.

    An error raised after ``fail_after`` pieces breaks a stream midway.
    """

    def __init__(
        self,
        pieces: Sequence[Sequence[str]],
        *,
        errors: Sequence[Exception | None] = (),
        fail_after: int = 0,
    ) -> None:
        self.pieces = [list(p) for p in pieces]
        self.errors = list(errors) or [None] * len(self.pieces)
        self.fail_after = fail_after
        self.cascade = Cascade(tiers=tuple(f"tier-{i}" for i in range(len(self.pieces))))
        self.streamed: list[str] = []
        self.completed: list[str | None] = []

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        model_group: str | None = None,
        *,
        tenant: str | None = None,
    ) -> Completion:
        self.completed.append(model_group)
        return Completion(text="Whole [1].", model="fake/whole", attempts=("fake/whole",))

    async def stream(
        self,
        messages: Sequence[Mapping[str, str]],
        model_group: str,
        on_delta: Callable[[str], Awaitable[None]],
    ) -> Completion:
        self.streamed.append(model_group)
        index = int(model_group.removeprefix("tier-"))
        error = self.errors[index]
        for sent, piece in enumerate(self.pieces[index]):
            if error is not None and sent == self.fail_after:
                break
            await on_delta(piece)
        if error is not None:
            raise ModelCallError(
                str(error), attempts=(f"fake/{model_group}",), error_type=type(error).__name__
            )
        return Completion(
            text="".join(self.pieces[index]),
            model=f"fake/{model_group}",
            prompt_tokens=40,
            completion_tokens=len(self.pieces[index]),
            attempts=(f"fake/{model_group}",),
        )


class Harness:
    """The generator's router on a test broker, collecting deltas and answers from ``answers``."""

    def __init__(self, llm: AnswerModel) -> None:
        self.settings = GeneratorSettings()
        self.metrics = ServiceMetrics("generator")
        self.broker: KafkaBroker = create_broker(self.settings, self.metrics)
        deps = Dependencies(
            settings=self.settings, metrics=self.metrics, broker=self.broker, llm_port=llm
        )
        self.broker.include_router(build_router(deps))
        self.events: list[tuple[bytes | None, AnswerDelta | AnswerCompleted]] = []

        @self.broker.subscriber(ANSWERS)
        async def collect(message: KafkaMessage) -> None:
            key = message.raw_message.key  # type: ignore[union-attr]  # one record, not a batch
            kind = message.headers.get("event-type")
            event_type = AnswerDelta if kind == AnswerDelta.__name__ else AnswerCompleted
            self.events.append((key, event_type.model_validate_json(message.body)))

    async def send(self, context: ContextRetrieved) -> tuple[list[AnswerDelta], AnswerCompleted]:
        # Named, not guessed: left None, FastStream reads the caller's source to decide, and
        # from this helper that parse fails now and then (a RuntimeWarning in CI runs).
        async with TestKafkaBroker(self.broker, connect_only=False) as test_broker:
            await publish_event(test_broker, context, topic=CONTEXTS, key=context.query.query_id)
        assert all(key == b"gateway-a" for key, _ in self.events), self.events
        *deltas, final = [event for _, event in self.events]
        assert isinstance(final, AnswerCompleted), self.events
        assert all(isinstance(delta, AnswerDelta) for delta in deltas), self.events
        return [d for d in deltas if isinstance(d, AnswerDelta)], final

    def sample(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, {"service": "generator"})


@pytest.fixture(scope="module")
def answer_model() -> RouterAnswerModel:
    """The generator's answering model, built from the packaged router.yaml (local model)."""
    return build_answer_model(GeneratorSettings())


class TestStreamAnswer:
    async def test_deltas_are_numbered_from_zero_and_make_up_the_answer(self) -> None:
        """A streamed query publishes seq 0..n-1 deltas whose concatenation is the final answer."""
        pieces = ["The partition count ", "is the ceiling ", "of each consumer's replicas [2]."]
        harness = Harness(StreamingModel([pieces]))

        deltas, answer = await harness.send(_context())

        assert [d.seq for d in deltas] == [0, 1, 2]
        assert "".join(d.delta for d in deltas) == answer.answer == "".join(pieces)
        assert {d.query_id for d in deltas} == {answer.query_id}
        assert [c.n for c in answer.citations] == [2]
        assert answer.model == "fake/tier-0"
        assert answer.groundedness is not None
        assert answer.timings["ttft_ms"] <= answer.timings["generate_ms"]

    async def test_first_delta_is_timed(self) -> None:
        """The time to the first delta is observed once per streamed answer."""
        harness = Harness(StreamingModel([["Some ", "answer [1]."]]))

        await harness.send(_context())

        assert harness.sample("ragstream_time_to_first_token_seconds_count") == 1

    async def test_tier_failing_before_any_delta_hands_over_to_the_next(self) -> None:
        """A tier that fails before its first piece is replaced by the next tier, which streams."""
        model = StreamingModel(
            [["never"], ["The partition count [2]."]], errors=[TimeoutError("slow"), None]
        )
        harness = Harness(model)

        deltas, answer = await harness.send(_context())

        assert model.streamed == ["tier-0", "tier-1"]
        assert model.completed == []
        assert [d.delta for d in deltas] == ["The partition count [2]."]
        assert answer.attempts == ["fake/tier-0", "fake/tier-1"]
        assert answer.error is None

    async def test_tier_failing_midway_ends_with_an_error(self) -> None:
        """Once pieces are out, a broken stream is an error, not an escalation."""
        model = StreamingModel(
            [["The ", "partition ", "count"], ["unused"]],
            errors=[ConnectionError("reset"), None],
            fail_after=2,
        )
        harness = Harness(model)

        deltas, answer = await harness.send(_context())

        assert model.streamed == ["tier-0"]
        assert [d.seq for d in deltas] == [0, 1]
        assert answer.answer == APOLOGY_ANSWER
        assert answer.model == NO_MODEL
        assert answer.error == "generation failed: ConnectionError"

    async def test_unstreamed_query_publishes_no_delta(self) -> None:
        """A query without ``stream`` is answered by the cascade, with no delta before it."""
        model = StreamingModel([["unused"]])
        harness = Harness(model)

        deltas, answer = await harness.send(_context(stream=False))

        assert deltas == []
        assert answer.answer == "Whole [1]."
        assert model.streamed == []

    async def test_local_model_streams_through_the_handler(
        self, answer_model: RouterAnswerModel
    ) -> None:
        """The packaged local model streams several word-sized deltas making up its answer."""
        harness = Harness(answer_model)

        deltas, answer = await harness.send(_context())

        assert len(deltas) >= 2
        assert [d.seq for d in deltas] == list(range(len(deltas)))
        assert "".join(d.delta for d in deltas) == answer.answer
        assert answer.model == LOCAL_MODEL
        assert answer.citations
        assert answer.usage is not None
        assert answer.usage.completion_tokens > 0


class TestRouterStream:
    async def test_local_model_streams_word_pieces_through_the_router(
        self, answer_model: RouterAnswerModel
    ) -> None:
        """``RouterAnswerModel.stream`` hands on the local answer piece by piece, then sums it up."""
        messages = build_messages(QUESTION, CHUNKS)
        pieces: list[str] = []

        async def collect(piece: str) -> None:
            pieces.append(piece)

        completion = await answer_model.stream(messages, answer_model.cascade.tiers[0], collect)

        assert len(pieces) >= 2
        assert "".join(pieces) == completion.text
        assert pieces == word_pieces(completion.text)
        assert completion.model == LOCAL_MODEL
        assert completion.attempts == (LOCAL_MODEL,)
        assert completion.completion_tokens == len(completion.text.split())


class TestWordPieces:
    def test_pieces_concatenate_to_the_text(self) -> None:
        """Word pieces keep every space and newline, so they join back to the exact text."""
        text = "  The count  is\nthe ceiling [2]. "

        pieces = word_pieces(text)

        assert "".join(pieces) == text
        assert pieces[:2] == ["  The ", "count  "]
        assert len(pieces) == 6

    def test_blank_text_is_one_piece(self) -> None:
        """Whitespace-only text streams as itself, not as nothing."""
        assert word_pieces("  ") == ["  "]
