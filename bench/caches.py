"""Cache benchmark: the embedder's embedding cache, and the generator's answer caches.

**Embedding cache.** A fresh corpus is ingested twice: the first time every chunk misses the
cache and is embedded, the second time (identical content, so identical embedding texts) every
chunk should hit. The hit rate comes from the embedder's own counters, read before and after each
pass; the hit's worth is the ratio of the two passes' chunks/s and freshness, measured in the same
run.

**Answer caches** (the generator's exact and semantic caches, per tenant, in Redis). The
evaluation corpus is ingested into a tenant of this run's own (``bench-cache-<run token>``), so
that no answer cached by an earlier run (they live 24 h) can be served. Each evaluation question
is asked four times through the gateway: with caching on (a miss that fills the caches), with
``"cache": false`` (the miss latency: a fresh answer, nothing read or written), and with caching
on again (the exact hit), then once more retyped (``retype``: lower case, no question mark), with
caching on. Then each hand-written paraphrase (``eval/paraphrases.jsonl``) is asked with caching
on: a hit there is the semantic cache's. Then each near miss (``eval/near_misses.jsonl``: the
question changed to ask another fact of the same passage, in nearly the same words): any cached
answer to one is a wrong answer. Every cached ask is bracketed by reads of the generator's
``ragstream_answer_cache_hits_total{tenant,kind}``, so each hit is attributed to its cache. The
documents are deleted afterwards. The semantic cache is off by default, so for this phase the
generator is restarted with it on (``SEMANTIC_CACHE_ON``), and restarted with its defaults
afterwards: run it on a stack of your own.

**The semantic threshold, swept.** The same paraphrases and near misses are embedded with the
query model in this process and scored against the evaluation questions (cosine, as the
generator scores them); for each threshold, the share of paraphrases whose own question is the
closest at or above it, and the share of near misses that have any question at or above it. This
is before the generator's safety rule, which on this corpus (about one passage per document)
lets a near miss through: retrieval ranks the same passage first for both questions.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from rich.console import Console

from bench.metrics import percentile, ratio
from bench.pipeline import (
    IngestMeasurement,
    delete_documents,
    ingest_documents,
    restart_service,
    run_token,
    synthetic_documents,
)
from bench.retrieval_quality import eval_documents, load_paraphrases, load_questions
from ragstream_generator.cache import cosine

__all__ = [
    "HIT_KINDS",
    "NEAR_MISSES",
    "SEMANTIC_CACHE_ON",
    "SWEEP_THRESHOLDS",
    "ParaphraseOutcome",
    "ScoredProbe",
    "answer_cache_hits",
    "cache_counters",
    "cache_tenant",
    "hit_kind",
    "latency_figures",
    "load_near_misses",
    "near_miss_figures",
    "paraphrase_figures",
    "retype",
    "run",
    "score_probes",
    "threshold_sweep",
]

NEAR_MISSES = Path(__file__).resolve().parent / "eval" / "near_misses.jsonl"
# The generator's settings while the answer caches are measured: its semantic cache is off by
# default, and this phase measures what turning it on gives and costs (at its default threshold).
SEMANTIC_CACHE_ON = {"RAGSTREAM_SEMANTIC_CACHE": "true"}
SWEEP_THRESHOLDS = tuple(round(0.70 + 0.01 * step, 2) for step in range(31))
# The generator's answer-cache counter labels: its two answer caches, and LiteLLM's call cache.
HIT_KINDS = ("exact", "semantic", "llm")

_SEED = 20261201
_COUNTER = re.compile(r"^ragstream_embedding_cache_(hits|misses)_total\{[^}]*\}\s+([0-9.e+]+)$")
_ANSWER_HITS = re.compile(
    r"^ragstream_answer_cache_hits_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$"
)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# Generous: a fresh answer on a busy two-core machine can take seconds, and one slow answer must
# not fail the run.
_QUERY_TIMEOUT_S = 60.0


def cache_counters(embedder_url: str) -> dict[str, float]:
    """Return the embedder's cache hits and misses so far, from its ``/metrics``.

    Args:
        embedder_url: The embedder's HTTP address.
    """
    text = httpx.get(f"{embedder_url}/metrics", timeout=5.0).text
    counters = {"hits": 0.0, "misses": 0.0}
    for line in text.splitlines():
        match = _COUNTER.match(line)
        if match:
            counters[match.group(1)] += float(match.group(2))
    return counters


def _pass(
    name: str, measured: IngestMeasurement, before: dict[str, float], after: dict[str, float]
) -> dict[str, Any]:
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
    freshness = measured.freshness_ms
    return {
        "pass": name,
        "chunks": measured.chunks,
        "chunks_per_s": measured.chunks_per_s,
        "freshness_p50_ms": percentile(freshness, 50) if freshness else None,
        "freshness_p99_ms": percentile(freshness, 99) if freshness else None,
        "cache_hits": hits,
        "cache_misses": misses,
        "hit_rate": ratio(hits, hits + misses),
    }


def retype(question: str) -> str:
    """Return ``question`` as a user in a hurry types it again: lower case, no question mark."""
    return question.lower().rstrip("?")


def load_near_misses(path: Path = NEAR_MISSES) -> dict[str, list[str]]:
    """Return the hand-written near misses of each evaluation question, by question id."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return {entry["id"]: entry["near_misses"] for entry in map(json.loads, filter(None, lines))}


@dataclass(frozen=True)
class ScoredProbe:
    """A paraphrase or near miss, scored against the evaluation questions.

    ``closest_id`` is the question whose vector is most similar to the probe's, at cosine
    ``score``; ``own_score`` is the cosine with the question it was written from.
    """

    question_id: str
    kind: Literal["paraphrase", "near_miss"]
    text: str
    closest_id: str
    score: float
    own_score: float


def score_probes(
    questions: Mapping[str, Sequence[float]],
    probes: Sequence[tuple[str, Literal["paraphrase", "near_miss"], str]],
    vectors: Sequence[Sequence[float]],
) -> list[ScoredProbe]:
    """Score each probe against every question with the semantic cache's own ``cosine``.

    Args:
        questions: Each evaluation question's vector, by id.
        probes: (question id, kind, text) of each probe.
        vectors: Each probe's vector, in the order of ``probes``.
    """
    scored = []
    for (question_id, kind, text), vector in zip(probes, vectors, strict=True):
        scores = {other: cosine(vector, question) for other, question in questions.items()}
        closest_id = max(scores, key=scores.__getitem__)
        scored.append(
            ScoredProbe(
                question_id, kind, text, closest_id, scores[closest_id], scores[question_id]
            )
        )
    return scored


def threshold_sweep(
    scored: Sequence[ScoredProbe], thresholds: Sequence[float] = SWEEP_THRESHOLDS
) -> list[dict[str, Any]]:
    """Return, per threshold, what a semantic cache holding the questions would serve.

    A paraphrase is served right when its own question is the closest, at or above the
    threshold, and wrong when another question is; a near miss served anything is served wrong.
    Rates are over the paraphrases and the near misses scored.

    Args:
        scored: What ``score_probes`` returned.
        thresholds: The least cosines to try.
    """
    paraphrases = [probe for probe in scored if probe.kind == "paraphrase"]
    near_misses = [probe for probe in scored if probe.kind == "near_miss"]
    rows = []
    for threshold in thresholds:
        served = [probe for probe in paraphrases if probe.score >= threshold]
        right = sum(probe.closest_id == probe.question_id for probe in served)
        wrong = sum(probe.score >= threshold for probe in near_misses)
        rows.append(
            {
                "threshold": threshold,
                "paraphrase_hit_rate": ratio(right, len(paraphrases)),
                "paraphrase_wrong_rate": ratio(len(served) - right, len(paraphrases)),
                "near_miss_false_hit_rate": ratio(wrong, len(near_misses)),
            }
        )
    return rows


def _score_range(scores: Sequence[float]) -> dict[str, float | None]:
    if not scores:
        return {"min": None, "median": None, "max": None}
    return {"min": min(scores), "median": statistics.median(scores), "max": max(scores)}


def _semantic_threshold_sweep(
    questions: Sequence[dict[str, Any]],
    paraphrases: Mapping[str, list[str]],
    near_misses: Mapping[str, list[str]],
) -> dict[str, Any]:
    # The query model, loaded as the retriever loads it: the same vectors the generator compares.
    from ragstream_embedding import load_default_model

    model = load_default_model()
    ids = [question["id"] for question in questions]
    question_vectors = model.embed([question["question"] for question in questions])
    probes: list[tuple[str, Literal["paraphrase", "near_miss"], str]] = [
        *((qid, "paraphrase", text) for qid in ids for text in paraphrases.get(qid, [])),
        *((qid, "near_miss", text) for qid in ids for text in near_misses.get(qid, [])),
    ]
    scored = score_probes(
        dict(zip(ids, question_vectors, strict=True)),
        probes,
        model.embed([text for _, _, text in probes]),
    )
    by_kind = {
        kind: [probe.own_score for probe in scored if probe.kind == kind]
        for kind in ("paraphrase", "near_miss")
    }
    return {
        "paraphrases": len(by_kind["paraphrase"]),
        "near_misses": len(by_kind["near_miss"]),
        "paraphrase_own_score": _score_range(by_kind["paraphrase"]),
        "near_miss_own_score": _score_range(by_kind["near_miss"]),
        "rows": threshold_sweep(scored),
        "probes": [
            {
                "question_id": probe.question_id,
                "kind": probe.kind,
                "text": probe.text,
                "closest_id": probe.closest_id,
                "score": round(probe.score, 4),
                "own_score": round(probe.own_score, 4),
            }
            for probe in scored
        ],
    }


def cache_tenant(token: str) -> str:
    """Return this run's answer-cache tenant: ``bench-cache-`` and the run token, dashed.

    Args:
        token: What ``run_token()`` returned (words separated by spaces).
    """
    return "bench-cache-" + token.replace(" ", "-")


def answer_cache_hits(metrics_text: str, tenant: str) -> dict[str, float]:
    """Return ``tenant``'s answer-cache hits so far, by kind, from the generator's metrics text.

    Args:
        metrics_text: The generator's ``/metrics`` page (Prometheus text format).
        tenant: The tenant whose hits count; others' are ignored.
    """
    hits = dict.fromkeys(HIT_KINDS, 0.0)
    for line in metrics_text.splitlines():
        match = _ANSWER_HITS.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group("labels")))
        if labels.get("tenant") == tenant and labels.get("kind") in hits:
            hits[labels["kind"]] += float(match.group("value"))
    return hits


def hit_kind(before: Mapping[str, float], after: Mapping[str, float]) -> str | None:
    """Return the kind whose hit counter moved between two reads around one ask, or None.

    Args:
        before: Hits by kind before the ask.
        after: Hits by kind after it.
    """
    return next((kind for kind in HIT_KINDS if after[kind] > before[kind]), None)


def latency_figures(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """Return count, p50 and p95 of ``latencies_ms``; the percentiles are None without samples.

    Args:
        latencies_ms: One round trip per ask.
    """
    return {
        "count": float(len(latencies_ms)),
        "p50_ms": percentile(latencies_ms, 50) if latencies_ms else None,
        "p95_ms": percentile(latencies_ms, 95) if latencies_ms else None,
    }


@dataclass(frozen=True)
class ParaphraseOutcome:
    """One paraphrase asked with caching on, compared with its original question's answer.

    Args:
        question_id: The original question's id.
        cached: The response said ``cached: true``.
        kind: The cache whose counter moved (``exact``, ``semantic``, ``llm``), None on a miss.
        same_documents: It cited exactly the documents the original's answer cited.
        same_answer: Its text is the original's answer, word for word.
    """

    question_id: str
    cached: bool
    kind: str | None
    same_documents: bool
    same_answer: bool


def paraphrase_figures(
    outcomes: Sequence[ParaphraseOutcome], counted: Mapping[str, float]
) -> dict[str, Any]:
    """Return the paraphrase hit rate, hits by kind, and how many hits a user would call right.

    Args:
        outcomes: One per paraphrase asked.
        counted: The generator's hit counter deltas, by kind, over the whole paraphrase phase.
    """
    hits = [outcome for outcome in outcomes if outcome.cached]
    same_documents = sum(outcome.same_documents for outcome in hits)
    return {
        "asked": len(outcomes),
        "hits": len(hits),
        "paraphrase_hit_rate": ratio(len(hits), len(outcomes)),
        "hits_by_kind": {kind: counted.get(kind, 0.0) for kind in HIT_KINDS},
        "hits_same_documents": same_documents,
        "hits_same_documents_rate": ratio(same_documents, len(hits)),
        "hits_same_answer": sum(outcome.same_answer for outcome in hits),
    }


def near_miss_figures(served: Sequence[dict[str, Any]], asked: int) -> dict[str, Any]:
    """Return how many near misses were served a cached answer: each one a wrong answer.

    Args:
        served: One entry per near miss a cache answered (its question id, text and hit kind).
        asked: The near misses asked.
    """
    return {
        "asked": asked,
        "false_hits": len(served),
        "near_miss_false_hit_rate": ratio(len(served), asked),
        "served": list(served),
    }


@dataclass(frozen=True)
class _Answered:
    latency_ms: float
    cached: bool
    kind: str | None
    documents: frozenset[str]
    answer: str


class _AnswerCacheProbe:
    """Asks questions of one tenant through the gateway and tells which cache answered."""

    def __init__(self, client: httpx.Client, generator_url: str, tenant: str) -> None:
        self._client = client
        self._generator_url = generator_url
        self.tenant = tenant
        self.errors = 0

    def hits(self) -> dict[str, float]:
        """The tenant's answer-cache hits so far, by kind."""
        text = httpx.get(f"{self._generator_url}/metrics", timeout=10.0).text
        return answer_cache_hits(text, self.tenant)

    def ask(self, question: str, *, cache: bool) -> _Answered | None:
        """Ask once; None (counted in ``errors``) when the gateway did not answer."""
        # Sequential asks on a tenant nobody else uses: the counter delta is this ask's own.
        before = self.hits() if cache else None
        started = time.perf_counter()
        try:
            response = self._client.post(
                "/v1/query", json={"query": question, "tenant": self.tenant, "cache": cache}
            )
            response.raise_for_status()
        except httpx.HTTPError:
            self.errors += 1
            return None
        latency_ms = (time.perf_counter() - started) * 1000
        body = response.json()
        return _Answered(
            latency_ms=latency_ms,
            cached=bool(body.get("cached")),
            kind=hit_kind(before, self.hits()) if before is not None else None,
            documents=frozenset(citation["doc_id"] for citation in body.get("citations", [])),
            answer=body.get("answer", ""),
        )


def _measure_answer_caches(
    probe: _AnswerCacheProbe,
    questions: Iterable[dict[str, Any]],
    paraphrases: Mapping[str, list[str]],
    near_misses: Mapping[str, list[str]],
    deadline: float,
) -> dict[str, Any]:
    originals: dict[str, _Answered] = {}
    miss_ms: list[float] = []
    exact_ms: list[float] = []
    fill_kinds: list[str | None] = []
    repeat_kinds: list[str | None] = []
    retyped_kinds: list[str | None] = []
    for question in questions:
        if time.monotonic() > deadline:
            break
        text = question["question"]
        # The timed miss comes after the fill, not before: then the miss and the hit both find
        # the question's retrieval and connections as warm, and differ only by the cache.
        filled = probe.ask(text, cache=True)
        fresh = probe.ask(text, cache=False)
        repeated = probe.ask(text, cache=True)
        retyped = probe.ask(retype(text), cache=True)
        if filled is None or fresh is None or repeated is None or retyped is None:
            continue
        originals[question["id"]] = filled
        fill_kinds.append(filled.kind)
        miss_ms.append(fresh.latency_ms)
        repeat_kinds.append(repeated.kind)
        retyped_kinds.append(retyped.kind)
        if repeated.kind == "exact":
            exact_ms.append(repeated.latency_ms)

    outcomes: list[ParaphraseOutcome] = []
    semantic_ms: list[float] = []
    before = probe.hits()
    for question_id, original in originals.items():
        for text in paraphrases.get(question_id, []):
            if time.monotonic() > deadline:
                break
            answered = probe.ask(text, cache=True)
            if answered is None:
                continue
            outcomes.append(
                ParaphraseOutcome(
                    question_id=question_id,
                    cached=answered.cached,
                    kind=answered.kind,
                    same_documents=answered.documents == original.documents,
                    same_answer=answered.answer == original.answer,
                )
            )
            if answered.kind == "semantic":
                semantic_ms.append(answered.latency_ms)
    after = probe.hits()

    # After the paraphrases, so the cache also holds their answers, as it would in use.
    near_misses_served: list[dict[str, Any]] = []
    near_misses_asked = 0
    for question_id in originals:
        for text in near_misses.get(question_id, []):
            if time.monotonic() > deadline:
                break
            answered = probe.ask(text, cache=True)
            if answered is None:
                continue
            near_misses_asked += 1
            if answered.cached:
                near_misses_served.append(
                    {"question_id": question_id, "near_miss": text, "kind": answered.kind}
                )

    miss = latency_figures(miss_ms)
    exact = latency_figures(exact_ms)
    semantic = latency_figures(semantic_ms)
    return {
        "questions": len(originals),
        # A question whose first ask was already a hit was served another question's answer.
        "originals_served_from_cache": sum(kind is not None for kind in fill_kinds),
        # Each repeat should be an exact hit; "none" counts repeats no cache served.
        "repeats_by_kind": _by_kind(repeat_kinds),
        # A retyped question should be an exact hit: the same words over the same passages.
        "retyped_by_kind": _by_kind(retyped_kinds),
        "retyped_exact_hit_rate": ratio(
            sum(kind == "exact" for kind in retyped_kinds), len(retyped_kinds)
        ),
        "miss": miss,
        "exact_hit": exact,
        "semantic_hit": semantic,
        "exact_over_miss_p50": _ratio_of(exact["p50_ms"], miss["p50_ms"]),
        "exact_over_miss_p95": _ratio_of(exact["p95_ms"], miss["p95_ms"]),
        "semantic_over_miss_p50": _ratio_of(semantic["p50_ms"], miss["p50_ms"]),
        "semantic_over_miss_p95": _ratio_of(semantic["p95_ms"], miss["p95_ms"]),
        "paraphrases": paraphrase_figures(
            outcomes, {kind: after[kind] - before[kind] for kind in HIT_KINDS}
        ),
        "near_misses": near_miss_figures(near_misses_served, near_misses_asked),
        "errors": probe.errors,
    }


def _by_kind(kinds: Sequence[str | None]) -> dict[str, int]:
    """Count asks by the cache that answered them; "none" counts those no cache served."""
    return {kind or "none": sum(k == kind for k in kinds) for kind in (*HIT_KINDS, None)}


def _ratio_of(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    return ratio(numerator, denominator)


def _answer_caches(
    *,
    kafka: str,
    gateway_url: str,
    generator_url: str,
    seconds: float,
    console: Console,
) -> dict[str, Any]:
    tenant = cache_tenant(run_token())
    documents = eval_documents()
    questions = load_questions()
    paraphrases = load_paraphrases()
    near_misses = load_near_misses()
    console.print(
        f"[bold]caches[/]: answer caches in tenant {tenant}, {len(questions)} questions, "
        f"{sum(map(len, paraphrases.values()))} paraphrases, "
        f"{sum(map(len, near_misses.values()))} near misses, up to {seconds:.0f} s; "
        "the generator restarted with its semantic cache on"
    )
    ingest_documents(
        documents, kafka=kafka, gateway_url=gateway_url, tenant=tenant, console=console
    )
    try:
        restart_service("generator", kafka, SEMANTIC_CACHE_ON)
        with httpx.Client(base_url=gateway_url, timeout=_QUERY_TIMEOUT_S) as client:
            probe = _AnswerCacheProbe(client, generator_url, tenant)
            # Unmeasured: the tenant's first search loads its shard, and connections open.
            probe.ask(questions[0]["question"], cache=False)
            probe.errors = 0
            measured = _measure_answer_caches(
                probe, questions, paraphrases, near_misses, time.monotonic() + seconds
            )
    finally:
        console.print("[bold]caches[/]: restoring the generator's default settings")
        restart_service("generator", kafka)
        delete_documents(gateway_url, [doc["doc_id"] for doc in documents], tenant=tenant)
    console.print("[bold]caches[/]: the semantic threshold, swept with the query model")
    sweep = _semantic_threshold_sweep(questions, paraphrases, near_misses)
    return {
        "tenant": tenant,
        "documents": len(documents),
        "generator_settings": SEMANTIC_CACHE_ON,
        **measured,
        "semantic_threshold_sweep": sweep,
    }


def _embedding_cache(
    *, kafka: str, gateway_url: str, embedder_url: str, documents: int, console: Console
) -> dict[str, Any]:
    docs = synthetic_documents(documents, seed=_SEED, token=run_token())
    passes = []
    for name in ("cold", "warm"):
        console.print(f"[bold]caches[/]: {name} pass, {documents} documents")
        before = cache_counters(embedder_url)
        measured = ingest_documents(docs, kafka=kafka, gateway_url=gateway_url, console=console)
        passes.append(_pass(name, measured, before, cache_counters(embedder_url)))
    delete_documents(gateway_url, [doc["doc_id"] for doc in docs])
    cold, warm = passes
    return {
        "passes": passes,
        "warm_hit_rate": warm["hit_rate"],
        "warm_over_cold_chunks_per_s": ratio(warm["chunks_per_s"], cold["chunks_per_s"]),
        "cold_over_warm_freshness_p50": ratio(
            cold["freshness_p50_ms"] or 0.0, warm["freshness_p50_ms"] or 0.0
        ),
    }


def run(
    *,
    kafka: str,
    gateway_url: str,
    embedder_url: str,
    generator_url: str,
    documents: int,
    answer_seconds: float,
    console: Console,
) -> dict[str, Any]:
    """Measure the embedding cache (a corpus ingested twice), then the answer caches.

    Other traffic on the embedder during the run would be counted too: run on a quiet stack.
    The answer caches are measured on a tenant of this run's own, so other traffic does not
    reach their counters.

    Args:
        kafka: Kafka's bootstrap servers.
        gateway_url: The gateway.
        embedder_url: The embedder, for its cache counters.
        generator_url: The generator, for its answer-cache counters.
        documents: Documents per embedding-cache pass.
        answer_seconds: Time bound of the answer-cache questions and paraphrases.
        console: Progress output.
    """
    embedding = _embedding_cache(
        kafka=kafka,
        gateway_url=gateway_url,
        embedder_url=embedder_url,
        documents=documents,
        console=console,
    )
    answers = _answer_caches(
        kafka=kafka,
        gateway_url=gateway_url,
        generator_url=generator_url,
        seconds=answer_seconds,
        console=console,
    )
    return {
        **embedding,
        "answer_caches": answers,
        "paraphrase_hit_rate": answers["paraphrases"]["paraphrase_hit_rate"],
        "near_miss_false_hit_rate": answers["near_misses"]["near_miss_false_hit_rate"],
        "retyped_exact_hit_rate": answers["retyped_exact_hit_rate"],
        "answer_cache_miss_p50_ms": answers["miss"]["p50_ms"],
        "answer_cache_exact_hit_p50_ms": answers["exact_hit"]["p50_ms"],
        "answer_cache_semantic_hit_p50_ms": answers["semantic_hit"]["p50_ms"],
        "notes": (
            "The embedding cache is keyed by model version and exact text: it serves re-ingested "
            "unchanged chunks, never paraphrases. Answer caches: latencies are gateway round "
            'trips at concurrency 1; miss = the question asked with "cache": false, exact hit '
            "= the same question asked again after one ask that filled the cache, semantic hit "
            "= a paraphrase whose ask moved the semantic hit counter; retyped_exact_hit_rate = "
            "the share of questions the exact cache served when asked again retyped (lower case, "
            "no question mark). A paraphrase hit counts as "
            "right when it cites the same documents as its original's answer (hits_same_documents); "
            "hits_same_answer counts those served the original's very answer. The answer caches "
            "are measured with the generator's semantic cache turned on (off by default) at its "
            "default threshold; a near miss served from a cache is a wrong answer. The threshold "
            "sweep scores the same texts against the questions alone, before the safety rule."
        ),
    }
