"""Tests for the retriever's drift detectors: query drift with the real model, score shift wired in.

The query drift test embeds a few hundred generated questions with all-MiniLM-L6-v2 (seconds on a
CPU): it is what QUERY_DRIFT_ALERT_THRESHOLD was chosen from.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from faststream.kafka import TestKafkaBroker

from ragstream_common.drift import (
    QUERY_DRIFT_ALERT_THRESHOLD,
    SCORE_SHIFT_ALERT_THRESHOLD,
    QueryDriftDetector,
)
from ragstream_common.events import QueryRequested
from ragstream_common.messaging import create_broker
from ragstream_common.metrics import ServiceMetrics
from ragstream_embedding import EmbeddingModel, load_default_model
from ragstream_retriever.dependencies import Dependencies
from ragstream_retriever.domain import LiveVersion, SearchHit
from ragstream_retriever.handlers import build_router, search_query
from ragstream_retriever.ports import ChunkIndex
from ragstream_retriever.settings import RetrieverSettings

EVAL_QUESTIONS = Path(__file__).parents[3] / "bench" / "eval" / "questions.jsonl"

# Questions are a phrasing applied to a subject; the subjects of the corpus topics come from
# samples/corpus (and bench/eval/questions.jsonl), the shifted ones from unrelated fields.
PHRASINGS = (
    "What is {s}?",
    "How does {s} work?",
    "Why does {s} matter?",
    "Can you explain {s} to me?",
    "What should I know about {s}?",
    "How do I get {s} right?",
    "What are common mistakes with {s}?",
    "Tell me about {s}.",
    "Is there a short guide to {s}?",
    "Where can I read more on {s}?",
    "what's the deal with {s}",
    "Give me an overview of {s}, please.",
)
CORPUS_SUBJECTS = {
    "lighthouse": (
        "the Kessock Point lighthouse",
        "the first lighthouse keeper",
        "the lantern's flash pattern",
        "the range of the lighthouse beam",
        "the maritime museum by the lighthouse",
        "the history of the lighthouse",
        "visiting the lighthouse tower",
        "the automation of the light",
    ),
    "sourdough": (
        "a sourdough starter",
        "feeding the starter",
        "baking the sourdough loaf",
        "proofing the dough",
        "the wild yeast in a starter",
        "the oven temperature for the loaf",
        "shaping a sourdough loaf",
        "the crust of sourdough bread",
    ),
    "kafka": (
        "Kafka partition ordering",
        "message keys in Kafka",
        "a Kafka consumer group",
        "a compacted Kafka topic",
        "consumer parallelism in Kafka",
        "keying events by document id",
        "the partition count",
        "log compaction",
    ),
    "hybrid search": (
        "hybrid search",
        "the alpha parameter of hybrid search",
        "BM25 keyword search",
        "vector search",
        "fusing keyword and vector rankings",
        "relative score fusion",
        "keyword versus semantic relevance",
        "a hybrid search query",
    ),
    "embeddings": (
        "sentence embeddings",
        "the all-MiniLM-L6-v2 model",
        "the dimensions of an embedding",
        "the model's maximum input length",
        "batching embedding inference",
        "cosine similarity of embeddings",
        "chunking text for an embedding model",
        "word-piece tokens",
    ),
    "rag": (
        "retrieval-augmented generation",
        "grounding an answer in retrieved passages",
        "citations in generated answers",
        "the retrieval step of RAG",
        "verifying the claims of a generated answer",
        "updating knowledge without retraining",
        "hallucinations of language models",
        "the context passed to the generator",
    ),
}
SHIFTED_SUBJECTS = {
    "cooking": (
        "a mushroom risotto",
        "a chicken curry",
        "grilling a steak",
        "a tomato pasta sauce",
        "roasting vegetables",
        "a chocolate mousse",
        "seasoning a cast iron pan",
        "a vegetable stir fry",
    ),
    "football": (
        "the offside rule",
        "a penalty kick",
        "the Champions League final",
        "the football transfer window",
        "a 4-4-2 formation",
        "the World Cup qualifiers",
        "a red card in football",
        "goalkeeper training",
    ),
    "tax law": (
        "income tax deductions",
        "capital gains tax",
        "filing a tax return",
        "VAT on imported goods",
        "inheritance tax allowances",
        "a tax audit",
        "tax for the self-employed",
        "tax residency rules",
    ),
}
BASELINE_QUERIES = 100
RECENT_QUERIES = 60


def _questions(subjects: dict[str, tuple[str, ...]]) -> list[str]:
    return [
        phrasing.format(s=s) for topic in subjects.values() for s in topic for phrasing in PHRASINGS
    ]


@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    return load_default_model()


@pytest.fixture(scope="module")
def windows(model: EmbeddingModel) -> dict[str, list[list[float]]]:
    """Embedded windows: a baseline on the corpus topics, held-out ones, and a shifted one."""
    rng = random.Random(20240501)
    corpus = _questions(CORPUS_SUBJECTS)
    rng.shuffle(corpus)
    shifted = rng.sample(_questions(SHIFTED_SUBJECTS), RECENT_QUERIES)
    evaluation = [json.loads(line)["question"] for line in EVAL_QUESTIONS.read_text().splitlines()]
    held_out = corpus[BASELINE_QUERIES : BASELINE_QUERIES + RECENT_QUERIES]
    texts = {
        "baseline": corpus[:BASELINE_QUERIES],
        "held_out": held_out,
        # The evaluation set's hand-written questions, in wording the templates never use.
        "hand_written": evaluation + held_out[: RECENT_QUERIES - len(evaluation)],
        "shifted": shifted,
        "half_shifted": held_out[: RECENT_QUERIES // 2] + shifted[: RECENT_QUERIES // 2],
    }
    return {name: model.embed(batch) for name, batch in texts.items()}


def _drift_after(baseline: Sequence[Sequence[float]], recent: Sequence[Sequence[float]]) -> float:
    """The detector's score after it saw the baseline queries, then the recent ones."""
    detector = QueryDriftDetector(baseline_size=len(baseline), recent_size=len(recent))
    for vector in [*baseline, *recent]:
        detector.observe(vector)
    return detector.score()


class TestQueryDriftWithTheRealModel:
    def test_held_out_questions_on_the_same_topics_stay_quiet(
        self, windows: dict[str, list[list[float]]]
    ) -> None:
        """New questions on the corpus topics score well under the alert threshold."""
        score = _drift_after(windows["baseline"], windows["held_out"])
        assert score < QUERY_DRIFT_ALERT_THRESHOLD

    def test_hand_written_questions_on_the_same_topics_stay_quiet(
        self, windows: dict[str, list[list[float]]]
    ) -> None:
        """The evaluation set's own wording, unlike the baseline's templates, stays quiet too."""
        score = _drift_after(windows["baseline"], windows["hand_written"])
        assert score < QUERY_DRIFT_ALERT_THRESHOLD

    def test_questions_on_unrelated_topics_fire(
        self, windows: dict[str, list[list[float]]]
    ) -> None:
        """Cooking, football and tax law questions score well above the alert threshold."""
        score = _drift_after(windows["baseline"], windows["shifted"])
        assert score > QUERY_DRIFT_ALERT_THRESHOLD * 1.3

    def test_the_score_grows_with_the_share_of_off_topic_questions(
        self, windows: dict[str, list[list[float]]]
    ) -> None:
        """Half the recent questions off topic scores between none and all of them."""
        quiet = _drift_after(windows["baseline"], windows["held_out"])
        fired = _drift_after(windows["baseline"], windows["shifted"])
        half = _drift_after(windows["baseline"], windows["half_shifted"])
        assert quiet < half < fired


class ScoredIndex:
    """A chunk index whose every search returns one live hit with the next score it is given."""

    def __init__(self) -> None:
        self.scores: list[float] = []

    async def search(self, **options: object) -> list[SearchHit]:
        score = self.scores.pop(0)
        return [SearchHit("c1", "doc", "Doc", "text", 0, (), score, 1)]

    async def live_versions(self, tenant: str, doc_ids: Collection[str]) -> dict[str, LiveVersion]:
        return {doc_id: LiveVersion(1, 1) for doc_id in doc_ids}


class ConstantModel:
    """A query model giving every query the same vector: no query drift at all."""

    dimensions = 4

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[0.5] * 4 for _ in texts]


def _deps(index: ScoredIndex, **overrides: int) -> Dependencies:
    settings = RetrieverSettings(embedding_dimensions=4, **overrides)
    metrics = ServiceMetrics(settings.service_name)
    broker = create_broker(settings, metrics)
    # A partial fake index: the search role only calls search and live_versions.
    fake_index = cast(ChunkIndex, index)
    deps = Dependencies(
        settings, metrics, broker, index_port=fake_index, model_port=ConstantModel()
    )
    broker.include_router(build_router(deps))
    return deps


def _sample(deps: Dependencies, name: str, **labels: str) -> float | None:
    return deps.metrics.registry.get_sample_value(name, {"service": "retriever", **labels})


async def _search(deps: Dependencies, index: ScoredIndex, scores: Sequence[float]) -> None:
    index.scores.extend(scores)
    async with TestKafkaBroker(deps.broker):
        for _ in scores:
            await search_query(deps, QueryRequested(tenant="acme", text="q?", reply_to="gw"))


class TestScoreShiftInTheSearchPath:
    async def test_nothing_is_reported_before_the_baseline_is_full(self) -> None:
        """Until the baseline's queries are in, both drift gauges are NaN and not ready."""
        index = ScoredIndex()
        deps = _deps(index)
        await _search(deps, index, [0.9] * (deps.settings.drift_baseline_queries - 1))
        for gauge in ("ragstream_query_drift", "ragstream_retrieval_score_shift"):
            value = _sample(deps, gauge)
            assert value is not None
            assert math.isnan(value)
        for detector in ("query_drift", "retrieval_score_shift"):
            assert _sample(deps, "ragstream_drift_baseline_ready", detector=detector) == 0

    async def test_top_scores_are_observed_per_query(self) -> None:
        """Each query's best score lands in the top score histogram."""
        index = ScoredIndex()
        deps = _deps(index)
        await _search(deps, index, [0.95, 0.42])
        assert _sample(deps, "ragstream_retrieval_top_score_count") == 2
        assert _sample(deps, "ragstream_retrieval_top_score_sum") == pytest.approx(1.37)

    async def test_scores_from_the_same_distribution_stay_quiet(self) -> None:
        """Top scores drawn alike before and after the baseline froze stay under the threshold."""
        rng = np.random.default_rng(11)
        index = ScoredIndex()
        deps = _deps(index)
        settings = deps.settings
        await _search(deps, index, rng.beta(8, 2, settings.drift_baseline_queries).tolist())
        await _search(deps, index, rng.beta(8, 2, settings.drift_recent_queries).tolist())
        shift = _sample(deps, "ragstream_retrieval_score_shift")
        assert shift is not None
        assert shift < SCORE_SHIFT_ALERT_THRESHOLD
        assert _sample(deps, "ragstream_query_drift") == pytest.approx(0.0, abs=1e-6)
        for detector in ("query_drift", "retrieval_score_shift"):
            assert _sample(deps, "ragstream_drift_baseline_ready", detector=detector) == 1

    async def test_falling_top_scores_fire(self) -> None:
        """Top scores sliding from about 0.8 to about 0.5 cross the alert threshold."""
        rng = np.random.default_rng(11)
        index = ScoredIndex()
        deps = _deps(index)
        settings = deps.settings
        await _search(deps, index, rng.beta(8, 2, settings.drift_baseline_queries).tolist())
        await _search(deps, index, rng.beta(5, 5, settings.drift_recent_queries).tolist())
        shift = _sample(deps, "ragstream_retrieval_score_shift")
        assert shift is not None
        assert shift > SCORE_SHIFT_ALERT_THRESHOLD

    async def test_the_windows_follow_the_settings(self) -> None:
        """The baseline is as long as drift_baseline_queries says."""
        index = ScoredIndex()
        deps = _deps(index, drift_baseline_queries=3, drift_recent_queries=2)
        await _search(deps, index, [0.9, 0.9, 0.9])
        assert _sample(deps, "ragstream_drift_baseline_ready", detector="query_drift") == 1
        await _search(deps, index, [0.1, 0.1])
        assert _sample(deps, "ragstream_retrieval_score_shift") == pytest.approx(1.0)
