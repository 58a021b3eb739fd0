"""Tests for the generator's subscriber, on FastStream's in-memory Kafka broker."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from ragstream_common.events import (
    AnswerCompleted,
    ContextRetrieved,
    DeadLetter,
    QueryRequested,
    RetrievedChunk,
)
from ragstream_common.messaging import KafkaMessage, create_broker, publish_event
from ragstream_common.metrics import ServiceMetrics
from ragstream_common.topics import ANSWERS, CONTEXTS, dlq_name
from ragstream_generator.adapters.llm import RouterAnswerModel, build_answer_model
from ragstream_generator.adapters.local_model import LOCAL_MODEL
from ragstream_generator.cache import CachedAnswer
from ragstream_generator.dependencies import Dependencies
from ragstream_generator.domain import APOLOGY_ANSWER, NO_CONTEXT_ANSWER, NO_MODEL
from ragstream_generator.handlers import build_router
from ragstream_generator.ports import AnswerModel, Cascade, Completion
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


def _context(chunks: Sequence[RetrievedChunk] = CHUNKS) -> ContextRetrieved:
    query = QueryRequested(
        text="What limits the number of consumer replicas?", reply_to="gateway-a", tenant="acme"
    )
    return ContextRetrieved(query=query, chunks=list(chunks), timings={"retrieve_ms": 12.5})


class RecordingModel:
    """An AnswerModel that records its calls and answers, fails or stalls as told.

    With ``replies`` it is a cascade: tier ``tier-i`` answers ``replies[i]`` as ``fake/tier-i``.
    """

    def __init__(
        self,
        reply: str = "The partition count is the ceiling of each consumer's replicas [2].",
        *,
        error: Exception | None = None,
        delay: float = 0,
        replies: Sequence[str] = (),
        min_groundedness: float = 0.0,
    ) -> None:
        self.replies = list(replies) or [reply]
        self.error = error
        self.delay = delay
        self.calls: list[Sequence[Mapping[str, str]]] = []
        self.groups: list[str | None] = []
        self.tenants: list[str | None] = []
        self.cascade = Cascade(
            tiers=tuple(f"tier-{i}" for i in range(len(self.replies))),
            min_groundedness=min_groundedness,
        )

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        model_group: str | None = None,
        *,
        tenant: str | None = None,
    ) -> Completion:
        self.calls.append(messages)
        self.groups.append(model_group)
        self.tenants.append(tenant)
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        index = int((model_group or "tier-0").removeprefix("tier-"))
        model = "fake/model" if len(self.replies) == 1 else f"fake/{model_group}"
        return Completion(
            text=self.replies[index],
            model=model,
            prompt_tokens=40,
            completion_tokens=5,
            cost_usd=0.001,
            attempts=(model,),
        )


class Harness:
    """The generator's router on a broker, with a collector of what it publishes to answers."""

    def __init__(self, llm: AnswerModel, settings: GeneratorSettings | None = None) -> None:
        self.settings = settings or GeneratorSettings()
        self.metrics = ServiceMetrics("generator")
        self.broker: KafkaBroker = create_broker(self.settings, self.metrics)
        self.deps = Dependencies(
            settings=self.settings, metrics=self.metrics, broker=self.broker, llm_port=llm
        )
        self.broker.include_router(build_router(self.deps))
        self.answers: list[tuple[bytes | None, AnswerCompleted]] = []
        self.letters: list[DeadLetter] = []

        @self.broker.subscriber(ANSWERS)
        async def collect(event: AnswerCompleted, message: KafkaMessage) -> None:
            self.answers.append((message.raw_message.key, event))  # type: ignore[union-attr]

        @self.broker.subscriber(dlq_name(CONTEXTS))
        async def collect_letters(letter: DeadLetter) -> None:
            self.letters.append(letter)

    async def send(self, context: ContextRetrieved) -> AnswerCompleted:
        async with TestKafkaBroker(self.broker) as test_broker:
            await publish_event(test_broker, context, topic=CONTEXTS, key=context.query.query_id)
        assert len(self.answers) == 1, self.answers
        return self.answers[0][1]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, {"service": "generator", **labels})


@pytest.fixture(scope="module")
def router_model() -> RouterAnswerModel:
    """The real answering model: the packaged router.yaml's local extractive deployment."""
    return build_answer_model(GeneratorSettings())


class BarrierModel(RecordingModel):
    """Answers only once ``parties`` calls are in flight together: serial answering never gets
    there, and its calls fail with a timeout instead."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = asyncio.Barrier(parties)

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        model_group: str | None = None,
        *,
        tenant: str | None = None,
    ) -> Completion:
        async with asyncio.timeout(5):
            await self.barrier.wait()
        return await super().complete(messages, model_group, tenant=tenant)


class TestOnContext:
    async def test_contexts_of_one_batch_are_answered_concurrently(self) -> None:
        """Two contexts delivered together are both with the model at once, and both answered;
        a malformed record beside them is dead-lettered alone."""
        harness = Harness(BarrierModel(parties=2))
        contexts = [_context(), _context()]
        async with TestKafkaBroker(harness.broker) as test_broker:
            await test_broker.publish_batch(
                contexts[0].model_dump_json().encode(),
                b"[]",
                contexts[1].model_dump_json().encode(),
                topic=CONTEXTS,
            )
        answered = sorted(answer.query_id for _, answer in harness.answers)
        assert answered == sorted(context.query.query_id for context in contexts)
        assert [answer.error for _, answer in harness.answers] == [None, None]
        [letter] = harness.letters
        assert letter.original_topic == CONTEXTS

    async def test_answer_is_published_to_the_asking_replica_with_citations(
        self, router_model: RouterAnswerModel
    ) -> None:
        """A context becomes an AnswerCompleted on answers, keyed to reply_to, citing passage 2."""
        harness = Harness(router_model)
        context = _context()

        answer = await harness.send(context)

        assert harness.answers[0][0] == b"gateway-a"
        assert (answer.query_id, answer.reply_to, answer.tenant) == (
            context.query.query_id,
            "gateway-a",
            "acme",
        )
        assert (
            answer.answer == "The partition count is the ceiling of each consumer's replicas. [2]"
        )
        assert [(c.n, c.chunk_id, c.score) for c in answer.citations] == [(2, "c-kafka", 0.84)]
        assert answer.model == LOCAL_MODEL
        assert answer.error is None
        assert answer.timings["retrieve_ms"] == 12.5
        assert answer.timings["generate_ms"] > 0

    async def test_answers_and_tokens_are_counted_by_model(self) -> None:
        """Each answer counts once under its model, with its prompt and completion tokens."""
        harness = Harness(RecordingModel())

        await harness.send(_context())

        tokens = "ragstream_llm_tokens_total"
        assert harness.sample("ragstream_answers_total", model="fake/model") == 1
        assert harness.sample(tokens, tenant="acme", model="fake/model", kind="prompt") == 40
        assert harness.sample(tokens, tenant="acme", model="fake/model", kind="completion") == 5
        assert harness.sample(
            "ragstream_llm_cost_usd_total", tenant="acme", model="fake/model"
        ) == (0.001)
        assert harness.sample("ragstream_stage_duration_seconds_count", stage="llm") == 1

    async def test_empty_context_is_answered_without_calling_the_model(self) -> None:
        """With nothing retrieved, the does-not-know answer is published and the LLM is not asked."""
        model = RecordingModel()
        harness = Harness(model)

        answer = await harness.send(_context(chunks=[]))

        assert model.calls == []
        assert answer.answer == NO_CONTEXT_ANSWER
        assert answer.model == NO_MODEL
        assert answer.citations == []
        assert answer.error is None
        assert harness.sample("ragstream_answers_total", model=NO_MODEL) == 1

    async def test_model_failure_is_answered_with_an_error(self) -> None:
        """When every deployment fails, an apology with error set is published, and counted."""
        harness = Harness(RecordingModel(error=ConnectionError("provider down")))

        answer = await harness.send(_context())

        assert answer.answer == APOLOGY_ANSWER
        assert answer.error == "generation failed: ConnectionError"
        assert answer.model == NO_MODEL
        assert answer.citations == []
        assert harness.sample("ragstream_llm_failures_total", error_type="ConnectionError") == 1

    async def test_a_model_slower_than_the_budget_is_cut_off(self) -> None:
        """A call outlasting request_timeout_s ends in an error answer, not a hung query."""
        settings = GeneratorSettings(request_timeout_s=0.05)
        harness = Harness(RecordingModel(delay=5), settings)

        answer = await harness.send(_context())

        assert answer.error == "generation failed: TimeoutError"

    async def test_citations_only_name_passages_the_prompt_held(self) -> None:
        """A marker beyond the passages the budget kept cites nothing."""
        settings = GeneratorSettings(max_context_words=50)
        long_first = CHUNKS[0].model_copy(update={"text": "word " * 80})
        model = RecordingModel(reply="From the second passage [2] and the first [1].")
        harness = Harness(model, settings)

        answer = await harness.send(_context(chunks=[long_first, CHUNKS[1]]))

        assert '<passage n="2"' not in model.calls[0][1]["content"]
        assert [c.n for c in answer.citations] == [1]

    async def test_malformed_context_is_dead_lettered(self) -> None:
        """A message that is not a ContextRetrieved goes to contexts.dlq, and nothing is answered."""
        harness = Harness(RecordingModel())

        async with TestKafkaBroker(harness.broker) as test_broker:
            await test_broker.publish({"chunks": []}, topic=CONTEXTS, key=b"q")

        assert harness.answers == []
        assert [letter.original_topic for letter in harness.letters] == [CONTEXTS]

    async def test_answer_carries_groundedness_usage_prompt_version_and_attempts(self) -> None:
        """A grounded answer reports its support, usage, template version and deployment."""
        harness = Harness(RecordingModel())

        answer = await harness.send(_context())

        assert answer.groundedness == 1.0
        assert answer.usage is not None
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (40, 5)
        assert answer.usage.cost_usd == 0.001
        assert answer.prompt_version == "answer-v1"
        assert answer.attempts == ["fake/model"]
        assert [(c.n, c.supported) for c in answer.citations] == [(2, True)]
        assert harness.sample("ragstream_answer_groundedness_count") == 1

    async def test_chunks_below_min_relevance_get_the_does_not_know_answer(self) -> None:
        """When no chunk reaches min_relevance, no model is asked and the answer says so."""
        model = RecordingModel()
        harness = Harness(model, GeneratorSettings(min_relevance=0.95))

        answer = await harness.send(_context())

        assert model.calls == []
        assert answer.answer == NO_CONTEXT_ANSWER
        assert answer.groundedness == 1.0

    async def test_ungrounded_first_tier_escalates_to_the_next(self) -> None:
        """An answer below min_groundedness goes to the next tier, whose answer is kept."""
        model = RecordingModel(
            replies=[
                "Bananas grow on the moon [1].",
                "The partition count is the ceiling of each consumer's replicas [2].",
            ],
            min_groundedness=0.5,
        )
        harness = Harness(model)

        answer = await harness.send(_context())

        assert model.groups == ["tier-0", "tier-1"]
        assert answer.model == "fake/tier-1"
        assert answer.attempts == ["fake/tier-0", "fake/tier-1"]
        assert answer.groundedness == 1.0
        assert answer.usage is not None
        assert answer.usage.completion_tokens == 10
        assert harness.sample("ragstream_llm_fallbacks_total", kind="escalation") == 1

    async def test_every_tier_failing_gives_one_apology(self) -> None:
        """When each tier fails, every tier was tried and the question counts as one failure."""
        model = RecordingModel(replies=["a [1].", "b [1]."], error=ConnectionError())
        harness = Harness(model)

        answer = await harness.send(_context())

        assert model.groups == ["tier-0", "tier-1"]
        assert answer.answer == APOLOGY_ANSWER
        assert harness.sample("ragstream_llm_failures_total", error_type="ConnectionError") == 1
        assert harness.sample("ragstream_llm_fallbacks_total", kind="escalation") == 1


class FakeAnswerCache:
    """An in-memory AnswerCache scoped by tenant, or one that fails every call."""

    def __init__(self, *, broken: bool = False) -> None:
        self.broken = broken
        self.exact: dict[tuple[str, str], CachedAnswer] = {}
        self.semantic: dict[str, list[CachedAnswer]] = {}

    async def get_exact(self, tenant: str, key: str) -> CachedAnswer | None:
        if self.broken:
            raise ConnectionError("redis is down")
        return self.exact.get((tenant, key))

    async def recent(self, tenant: str) -> list[CachedAnswer]:
        if self.broken:
            raise ConnectionError("redis is down")
        return list(self.semantic.get(tenant, []))

    async def put(self, tenant: str, key: str, entry: CachedAnswer) -> None:
        if self.broken:
            raise ConnectionError("redis is down")
        self.exact[(tenant, key)] = entry
        if entry.query_vector is not None:
            self.semantic.setdefault(tenant, []).insert(0, entry)


def _asked(
    text: str = "What limits the number of consumer replicas?",
    *,
    tenant: str = "acme",
    vector: Sequence[float] = (1.0, 0.0, 0.0),
    chunks: Sequence[RetrievedChunk] = CHUNKS,
    cache: bool = True,
) -> ContextRetrieved:
    query = QueryRequested(text=text, reply_to="gateway-a", tenant=tenant, cache=cache)
    return ContextRetrieved(query=query, chunks=list(chunks), query_vector=list(vector))


class TestAnswerCaches:
    async def _ask(
        self,
        model: RecordingModel,
        cache: FakeAnswerCache,
        context: ContextRetrieved,
        settings: GeneratorSettings | None = None,
    ) -> tuple[AnswerCompleted, Harness]:
        harness = Harness(model, settings)
        harness.deps.answer_cache = cache
        return await harness.send(context), harness

    async def test_repeated_question_is_exact_hit(self) -> None:
        """The same question over the same passages is answered from the exact cache, counted."""
        model, cache = RecordingModel(), FakeAnswerCache()
        first, _ = await self._ask(model, cache, _asked())
        second, harness = await self._ask(model, cache, _asked())
        assert (first.cached, second.cached) == (False, True)
        assert second.answer == first.answer
        assert second.citations == first.citations
        assert len(model.calls) == 1
        labels = {"tenant": "acme", "kind": "exact"}
        assert harness.sample("ragstream_answer_cache_hits_total", **labels) == 1

    async def test_retyped_question_is_exact_hit(self) -> None:
        """The same question in other case, spacing and closing punctuation is an exact hit; one
        word changed is not."""
        model, cache = RecordingModel(), FakeAnswerCache()
        first, _ = await self._ask(model, cache, _asked())
        retyped = _asked("what limits the  number of consumer replicas", vector=(0.9, 0.1, 0.0))
        second, harness = await self._ask(model, cache, retyped)
        assert second.cached
        assert second.answer == first.answer
        labels = {"tenant": "acme", "kind": "exact"}
        assert harness.sample("ragstream_answer_cache_hits_total", **labels) == 1
        changed = _asked("What limits the number of producer replicas?", vector=(0.9, 0.1, 0.0))
        third, _ = await self._ask(model, cache, changed)
        assert not third.cached
        assert len(model.calls) == 2

    async def test_paraphrase_is_semantic_hit(self) -> None:
        """With the semantic cache on, a differently worded question with a similar vector is
        served the earlier answer."""
        model, cache = RecordingModel(), FakeAnswerCache()
        settings = GeneratorSettings(semantic_cache=True)
        first, _ = await self._ask(model, cache, _asked(), settings)
        paraphrase = _asked("How many consumer replicas can I run?", vector=(0.99, 0.05, 0.0))
        second, harness = await self._ask(model, cache, paraphrase, settings)
        assert second.cached
        assert second.answer == first.answer
        assert len(model.calls) == 1
        labels = {"tenant": "acme", "kind": "semantic"}
        assert harness.sample("ragstream_answer_cache_hits_total", **labels) == 1

    async def test_semantic_cache_is_off_by_default(self) -> None:
        """By default a differently worded question is answered afresh, however similar its
        vector: only the same prompt is served from the cache."""
        model, cache = RecordingModel(), FakeAnswerCache()
        await self._ask(model, cache, _asked())
        near = _asked("How many consumer replicas may I run?", vector=(0.999, 0.01, 0.0))
        second, harness = await self._ask(model, cache, near)
        assert not second.cached
        assert len(model.calls) == 2
        labels = {"tenant": "acme", "kind": "semantic"}
        assert not harness.sample("ragstream_answer_cache_hits_total", **labels)
        # Nor is any answer kept for a semantic lookup: only the exact entries.
        assert cache.semantic == {}
        assert len(cache.exact) == 2

    async def test_changed_cited_chunk_is_not_served(self) -> None:
        """After the cited passage changes (new chunk id and text), the model is asked again."""
        model, cache = RecordingModel(), FakeAnswerCache()
        await self._ask(model, cache, _asked())
        edited = CHUNKS[1].model_copy(
            update={"chunk_id": "c-kafka-v2", "text": "Partitions cap consumer replicas."}
        )
        second, _ = await self._ask(model, cache, _asked(chunks=[CHUNKS[0], edited]))
        assert not second.cached
        assert len(model.calls) == 2

    async def test_other_tenant_misses_both_caches(self) -> None:
        """The same question from another tenant is not served from the first tenant's answers."""
        model, cache = RecordingModel(), FakeAnswerCache()
        await self._ask(model, cache, _asked())
        second, _ = await self._ask(model, cache, _asked(tenant="globex"))
        assert not second.cached
        assert len(model.calls) == 2

    async def test_cache_off_asks_the_model_and_stores_nothing(self) -> None:
        """With caching off, a cached question is answered afresh, without the call cache either."""
        model, cache = RecordingModel(), FakeAnswerCache()
        await self._ask(model, cache, _asked())
        fresh, _ = await self._ask(model, cache, _asked(cache=False))
        assert not fresh.cached
        assert len(model.calls) == 2
        assert model.tenants == ["acme", None]  # None: LiteLLM's call cache is bypassed
        uncached = "Which service consumes the chunks topic?"
        await self._ask(model, cache, _asked(uncached, vector=(0.0, 1.0, 0.0), cache=False))
        assert len(cache.exact) == 1

    async def test_failing_cache_still_answers(self) -> None:
        """A cache that raises on every call costs the cache, never the answer."""
        model, cache = RecordingModel(), FakeAnswerCache(broken=True)
        answer, harness = await self._ask(model, cache, _asked())
        assert not answer.cached
        assert answer.error is None
        assert answer.answer == model.replies[0]
        for operation in ("lookup", "store"):
            errors = harness.sample("ragstream_answer_cache_errors_total", operation=operation)
            assert errors == 1
