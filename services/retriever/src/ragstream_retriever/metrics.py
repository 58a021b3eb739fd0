"""The retriever's own instruments, beside the ones every service has."""

from __future__ import annotations

from collections.abc import Sequence

from ragstream_common.drift import (
    DEFAULT_BASELINE_SIZE,
    DEFAULT_RECENT_SIZE,
    QueryDriftDetector,
    ValueShiftDetector,
)
from ragstream_common.metrics import ServiceMetrics

__all__ = ["FRESHNESS_BUCKETS", "SCORE_BUCKETS", "RetrieverMetrics"]

# Publication to searchability: under a second when idle, minutes behind a backlog of embeddings.
FRESHNESS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
# Hybrid scores (relative score fusion) are in [0, 1]; the top one of a query often is 1 exactly.
SCORE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class RetrieverMetrics:
    """The index and search instruments, registered on the service's registry.

    Step durations (embed_query, search, live_lookup, insert, switch, retire) go to the shared
    ``ragstream_stage_duration_seconds`` histogram through ``observe_stage``.

    Two drift detectors (``ragstream_common.drift``) watch the queries this replica searches:
    ``ragstream_query_drift`` (its query embeddings against a baseline of its first queries) and
    ``ragstream_retrieval_score_shift`` (the KS statistic of each query's top hybrid score, same
    windows). Both are NaN, and ``ragstream_drift_baseline_ready{detector}`` 0, until the baseline
    is full; both are per replica and restart with it.

    Args:
        base: The service's metrics; the instruments join its registry and naming scheme.
        drift_baseline_size: Queries in each drift detector's baseline.
        drift_recent_size: Queries in each drift detector's recent window.
    """

    def __init__(
        self,
        base: ServiceMetrics,
        *,
        drift_baseline_size: int = DEFAULT_BASELINE_SIZE,
        drift_recent_size: int = DEFAULT_RECENT_SIZE,
    ) -> None:
        self.base = base
        self.service = base.service
        self.freshness = base.histogram(
            "document_freshness_seconds",
            "Time from a document's publication to its version being applied to the index.",
            ["stage"],
            buckets=FRESHNESS_BUCKETS,
        )
        self.stale_versions = base.counter(
            "stale_versions_skipped_total",
            "Document versions skipped because a newer version was already indexed.",
        )
        self.unchanged_versions = base.counter(
            "unchanged_versions_total",
            "Document versions whose indexed content equals the live version's: nothing written.",
        )
        self.chunks_written = base.counter(
            "chunks_written_total",
            "Chunk objects written to the index (a redelivered version rewrites the same ids).",
        )
        self.chunks_retired = base.counter(
            "chunks_retired_total", "Chunks of superseded or deleted versions removed."
        )
        self.search_rounds = base.counter(
            "search_extra_rounds_total",
            "Extra hybrid searches because version filtering left a context short or unsettled.",
        )
        self.retrieved_chunks = base.histogram(
            "retrieved_chunks",
            "Chunks placed in one query's context after dedup.",
            buckets=(0, 1, 2, 3, 5, 8, 10, 20, 50),
        )
        self.query_batch_size = base.histogram(
            "query_batch_size",
            "Queries embedded together in one model call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.top_score = base.histogram(
            "retrieval_top_score",
            "Each query's best hybrid score among its live candidates (0 when nothing was found).",
            buckets=SCORE_BUCKETS,
        )
        self.query_drift = base.gauge(
            "query_drift",
            "Cosine-kernel MMD (as a distance in [0, 1]) between this replica's recent query "
            "embeddings and its baseline of first queries; NaN until the baseline is full.",
        )
        self.score_shift = base.gauge(
            "retrieval_score_shift",
            "Kolmogorov-Smirnov statistic between this replica's recent top hybrid scores and "
            "its baseline's; NaN until the baseline is full.",
        )
        self._watch_drift(drift_baseline_size, drift_recent_size)

    def _watch_drift(self, baseline_size: int, recent_size: int) -> None:
        """Start the drift detectors afresh with these windows: a new baseline fills first.

        Args:
            baseline_size: Queries in the baseline (the first ones from now, then frozen).
            recent_size: Queries in the sliding recent window.
        """
        self._query_drift = QueryDriftDetector(baseline_size, recent_size)
        self._score_shift = ValueShiftDetector(baseline_size, recent_size)
        self._publish_drift()

    def observe_query(self, vector: Sequence[float], top_score: float) -> None:
        """Record one searched query: its top score, and both drift detectors' new values.

        Costs O(dimensions) plus a sort of the recent window's scores (about 100 floats), so it
        runs inline on the query path.

        Args:
            vector: The query's embedding.
            top_score: Its best hybrid score, 0 when the search found nothing.
        """
        self.top_score.labels(self.service).observe(top_score)
        self._query_drift.observe(vector)
        self._score_shift.observe(top_score)
        self._publish_drift()

    def _publish_drift(self) -> None:
        self.query_drift.labels(self.service).set(self._query_drift.score())
        self.score_shift.labels(self.service).set(self._score_shift.score())
        for detector, ready in (
            ("query_drift", self._query_drift.baseline_full),
            ("retrieval_score_shift", self._score_shift.baseline_full),
        ):
            self.base.drift_baseline(detector, ready)

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Record the duration of one step of indexing or search."""
        self.base.stage_seconds.labels(self.service, stage).observe(seconds)
