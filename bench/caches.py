"""Cache benchmark: the embedder's shared embedding cache (Redis), hit against miss.

Response caches (answers to repeated or paraphrased questions) do not exist yet, so neither does
their hit rate on paraphrases; this measures the one cache the platform has. A fresh corpus is
ingested twice: the first time every chunk misses the cache and is embedded, the second time
(identical content, so identical embedding texts) every chunk should hit. The hit rate comes from
the embedder's own counters, read before and after each pass; the hit's worth is the ratio of the
two passes' chunks/s and freshness, measured in the same run.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from rich.console import Console

from bench.metrics import percentile, ratio
from bench.pipeline import (
    IngestMeasurement,
    delete_documents,
    ingest_documents,
    run_token,
    synthetic_documents,
)

__all__ = ["cache_counters", "run"]

_SEED = 20261201
_COUNTER = re.compile(r"^ragstream_embedding_cache_(hits|misses)_total\{[^}]*\}\s+([0-9.e+]+)$")


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


def run(
    *, kafka: str, gateway_url: str, embedder_url: str, documents: int, console: Console
) -> dict[str, Any]:
    """Ingest a fresh corpus twice and compare the passes.

    Other traffic on the embedder during the run would be counted too: run on a quiet stack.

    Args:
        kafka: Kafka's bootstrap servers.
        gateway_url: The gateway.
        embedder_url: The embedder, for its cache counters.
        documents: Documents per pass.
        console: Progress output.
    """
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
        "paraphrase_hit_rate": None,
        "notes": (
            "The embedding cache is keyed by model version and exact text: it serves re-ingested "
            "unchanged chunks, never paraphrases. Response caches, and so hit latency and hit "
            "rate on paraphrased questions, do not exist yet and are not measured."
        ),
    }
