"""The retriever's own instruments, beside the ones every service has."""

from __future__ import annotations

from ragstream_common.metrics import ServiceMetrics

__all__ = ["FRESHNESS_BUCKETS", "RetrieverMetrics"]

# Publication to searchability: under a second when idle, minutes behind a backlog of embeddings.
FRESHNESS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


class RetrieverMetrics:
    """The index and search instruments, registered on the service's registry.

    Step durations (embed_query, search, live_lookup, insert, switch, retire) go to the shared
    ``ragstream_stage_duration_seconds`` histogram through ``observe_stage``.

    Args:
        base: The service's metrics; the instruments join its registry and naming scheme.
    """

    def __init__(self, base: ServiceMetrics) -> None:
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

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Record the duration of one step of indexing or search."""
        self.base.stage_seconds.labels(self.service, stage).observe(seconds)
