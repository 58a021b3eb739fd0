"""The cache benchmark's pure parts: counters, hit kinds, hit-rate arithmetic, the paraphrases."""

from __future__ import annotations

import re

import pytest

from bench.caches import (
    HIT_KINDS,
    ParaphraseOutcome,
    answer_cache_hits,
    cache_tenant,
    hit_kind,
    latency_figures,
    load_paraphrases,
    paraphrase_figures,
)
from bench.pipeline import run_token
from bench.retrieval_quality import load_questions
from ragstream_common.identifiers import is_valid_tenant

_METRICS = """\
# HELP ragstream_answer_cache_hits_total Answers served from a cache.
# TYPE ragstream_answer_cache_hits_total counter
ragstream_answer_cache_hits_total{kind="exact",service="generator",tenant="bench-cache-a"} 3.0
ragstream_answer_cache_hits_total{kind="semantic",service="generator",tenant="bench-cache-a"} 2.0
ragstream_answer_cache_hits_total{kind="exact",service="generator",tenant="default"} 40.0
ragstream_answer_cache_hits_created{kind="exact",service="generator",tenant="bench-cache-a"} 1.7e9
"""


def _outcome(cached: bool, *, same_documents: bool = True) -> ParaphraseOutcome:
    return ParaphraseOutcome(
        question_id="q01",
        cached=cached,
        kind="semantic" if cached else None,
        same_documents=same_documents,
        same_answer=same_documents,
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class TestAnswerCacheHits:
    def test_one_tenants_hits_by_kind(self) -> None:
        """Only the asked tenant's hit counters count, by kind; other tenants' and _created not."""
        assert answer_cache_hits(_METRICS, "bench-cache-a") == {
            "exact": 3.0,
            "semantic": 2.0,
            "llm": 0.0,
        }

    def test_tenant_never_seen(self) -> None:
        """A tenant without a counter yet has zero hits of every kind."""
        assert answer_cache_hits(_METRICS, "nobody") == dict.fromkeys(HIT_KINDS, 0.0)


class TestHitKind:
    def test_the_counter_that_moved(self) -> None:
        """The kind of a hit is the one counter that rose around the ask."""
        before = {"exact": 1.0, "semantic": 0.0, "llm": 0.0}
        assert hit_kind(before, {**before, "semantic": 1.0}) == "semantic"

    def test_none_on_a_miss(self) -> None:
        """No counter moving means no cache answered."""
        counters = {"exact": 1.0, "semantic": 2.0, "llm": 0.0}
        assert hit_kind(counters, dict(counters)) is None


class TestLatencyFigures:
    def test_percentiles(self) -> None:
        """The figures are the count, p50 and p95 of the round trips."""
        assert latency_figures([10.0, 20.0, 30.0]) == {
            "count": 3.0,
            "p50_ms": 20.0,
            "p95_ms": pytest.approx(29.0),
        }

    def test_no_samples(self) -> None:
        """Without a single hit the percentiles are None rather than an error."""
        assert latency_figures([]) == {"count": 0.0, "p50_ms": None, "p95_ms": None}


class TestParaphraseFigures:
    def test_hit_rate_and_right_hits(self) -> None:
        """Hit rate is hits over paraphrases asked; right hits are counted among hits only."""
        outcomes = [
            _outcome(True),
            _outcome(True, same_documents=False),
            _outcome(False),
            _outcome(False, same_documents=False),
        ]
        figures = paraphrase_figures(outcomes, {"semantic": 2.0})
        assert figures["asked"] == 4
        assert figures["hits"] == 2
        assert figures["paraphrase_hit_rate"] == 0.5
        assert figures["hits_same_documents"] == 1
        assert figures["hits_same_documents_rate"] == 0.5
        assert figures["hits_by_kind"] == {"exact": 0.0, "semantic": 2.0, "llm": 0.0}

    def test_nothing_asked(self) -> None:
        """With no paraphrase asked the rates are None, not zero."""
        figures = paraphrase_figures([], {})
        assert figures["paraphrase_hit_rate"] is None
        assert figures["hits_same_documents_rate"] is None


class TestCacheTenant:
    def test_a_valid_tenant_per_run(self) -> None:
        """Each run's tenant is a valid tenant name, prefixed, and differs between runs."""
        tenants = {cache_tenant(run_token()) for _ in range(10)}
        assert len(tenants) > 1
        assert all(t.startswith("bench-cache-") and is_valid_tenant(t) for t in tenants)


class TestParaphrases:
    def test_same_ids_as_the_questions(self) -> None:
        """Every evaluation question has paraphrases, and no paraphrase lacks its question."""
        assert set(load_paraphrases()) == {q["id"] for q in load_questions()}

    def test_two_real_rewordings_each(self) -> None:
        """Each question has at least two distinct paraphrases worded differently from it."""
        paraphrases = load_paraphrases()
        for question in load_questions():
            texts = paraphrases[question["id"]]
            assert len(texts) >= 2, question["id"]
            # Compared on words only: a change of case or punctuation is not a paraphrase.
            worded = [_words(text) for text in texts]
            assert _words(question["question"]) not in worded, question["id"]
            assert len({tuple(words) for words in worded}) == len(texts), question["id"]
