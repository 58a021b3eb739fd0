"""The cache benchmark's pure parts: counters, hit kinds, hit-rate arithmetic, the paraphrases
and near misses, the threshold sweep."""

from __future__ import annotations

import re

import pytest

from bench.caches import (
    HIT_KINDS,
    ParaphraseOutcome,
    ScoredProbe,
    answer_cache_hits,
    cache_tenant,
    hit_kind,
    latency_figures,
    load_near_misses,
    near_miss_figures,
    paraphrase_figures,
    retype,
    score_probes,
    threshold_sweep,
)
from bench.pipeline import run_token
from bench.retrieval_quality import load_paraphrases, load_questions
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


class TestNearMisses:
    def test_one_per_question_and_not_a_paraphrase(self) -> None:
        """Every question has a near miss, worded otherwise than it and than its paraphrases."""
        near_misses, paraphrases = load_near_misses(), load_paraphrases()
        assert set(near_misses) == {q["id"] for q in load_questions()}
        for question in load_questions():
            taken = {tuple(_words(question["question"]))}
            taken |= {tuple(_words(text)) for text in paraphrases[question["id"]]}
            for text in near_misses[question["id"]]:
                assert tuple(_words(text)) not in taken, question["id"]

    def test_served_near_misses_are_counted_as_wrong(self) -> None:
        served = [{"question_id": "q09", "near_miss": "within?", "kind": "semantic"}]
        figures = near_miss_figures(served, 22)
        assert (figures["asked"], figures["false_hits"]) == (22, 1)
        assert figures["near_miss_false_hit_rate"] == pytest.approx(1 / 22)
        assert near_miss_figures([], 0)["near_miss_false_hit_rate"] is None


def _probe(kind: str, own: str, closest: str, score: float) -> ScoredProbe:
    return ScoredProbe(own, kind, "text", closest, score, score if own == closest else 0.0)  # type: ignore[arg-type]


class TestThresholdSweep:
    def test_scores_against_every_question(self) -> None:
        """A probe's closest question is the one with the largest dot product; its own score is
        kept even when another question is closer."""
        questions = {"q1": (1.0, 0.0), "q2": (0.0, 1.0)}
        probes = [("q1", "paraphrase", "a"), ("q1", "near_miss", "b")]
        scored = score_probes(questions, probes, [(0.8, 0.6), (0.6, 0.8)])  # type: ignore[arg-type]
        assert (scored[0].closest_id, scored[0].score, scored[0].own_score) == ("q1", 0.8, 0.8)
        assert (scored[1].closest_id, scored[1].score, scored[1].own_score) == ("q2", 0.8, 0.6)

    def test_rates_per_threshold(self) -> None:
        """At each threshold: paraphrases served their own question's answer or another's, and
        near misses served anything."""
        scored = [
            _probe("paraphrase", "q1", "q1", 0.95),
            _probe("paraphrase", "q2", "q2", 0.80),
            _probe("paraphrase", "q3", "q1", 0.90),  # closest to another question
            _probe("paraphrase", "q4", "q4", 0.50),
            _probe("near_miss", "q1", "q1", 0.99),
            _probe("near_miss", "q2", "q2", 0.60),
        ]
        rows = {row["threshold"]: row for row in threshold_sweep(scored, (0.75, 0.92, 1.0))}
        assert rows[0.75]["paraphrase_hit_rate"] == 0.5
        assert rows[0.75]["paraphrase_wrong_rate"] == 0.25
        assert rows[0.75]["near_miss_false_hit_rate"] == 0.5
        assert rows[0.92]["paraphrase_hit_rate"] == 0.25
        assert rows[0.92]["paraphrase_wrong_rate"] == 0.0
        assert rows[0.92]["near_miss_false_hit_rate"] == 0.5
        assert rows[1.0]["paraphrase_hit_rate"] == 0.0
        assert rows[1.0]["near_miss_false_hit_rate"] == 0.0


class TestRetype:
    def test_lower_case_without_the_question_mark(self) -> None:
        """A retyped question keeps every word and drops only case and the question mark."""
        asked = "Does Kafka guarantee ordering across partitions?"
        assert retype(asked) == "does kafka guarantee ordering across partitions"
        assert _words(retype(asked)) == _words(asked)
