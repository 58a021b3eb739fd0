"""The batching sweep: the embedder's batch size and maximum wait against throughput and freshness.

For every point the embedder alone is restarted with ``RAGSTREAM_BATCH_MAX_MESSAGES`` and
``RAGSTREAM_BATCH_MAX_WAIT_MS`` set, a fresh corpus is ingested end to end, and its chunks/s and
per-document freshness are recorded. The rest of the stack keeps running. Afterwards the embedder
is restarted with its default settings, whatever happened.

This restarts a running service: run it on a stack of your own, not one that others are testing
against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from bench.metrics import percentile
from bench.pipeline import (
    delete_documents,
    ingest_documents,
    restart_service,
    run_token,
    synthetic_documents,
)

__all__ = ["FULL_POINTS", "QUICK_POINTS", "SweepPoint", "run"]

_SEED = 20261130


@dataclass(frozen=True)
class SweepPoint:
    """One embedder configuration: flush a batch at this many records or after this long."""

    max_messages: int
    max_wait_ms: int

    def env(self) -> dict[str, str]:
        """The embedder's settings for this point."""
        return {
            "RAGSTREAM_BATCH_MAX_MESSAGES": str(self.max_messages),
            "RAGSTREAM_BATCH_MAX_WAIT_MS": str(self.max_wait_ms),
        }

    @property
    def label(self) -> str:
        """How plots and tables name it."""
        return f"{self.max_messages} msgs / {self.max_wait_ms} ms"


# From one record at a time to large, patient batches; 64 / 20 ms is the default.
FULL_POINTS = tuple(
    SweepPoint(messages, wait)
    for messages, wait in (
        (1, 0),
        (4, 0),
        (16, 20),
        (64, 20),
        (64, 200),
    )
)
QUICK_POINTS = (SweepPoint(1, 0), SweepPoint(64, 20))


def run(
    *,
    kafka: str,
    gateway_url: str,
    points: Sequence[SweepPoint],
    documents: int,
    console: Console,
) -> dict[str, Any]:
    """Measure every point and return the figures, one row per point.

    Args:
        kafka: Kafka's bootstrap servers.
        gateway_url: The gateway.
        points: The embedder configurations.
        documents: Fresh documents ingested per point (about three chunks each).
        console: Progress output.
    """
    rows: list[dict[str, Any]] = []
    try:
        for number, point in enumerate(points, start=1):
            console.print(
                f"[bold]sweep[/] {number}/{len(points)}: embedder at {point.label}, "
                f"{documents} documents"
            )
            restart_service("embedder", kafka, point.env())
            docs = synthetic_documents(documents, seed=_SEED, token=run_token())
            measured = ingest_documents(docs, kafka=kafka, gateway_url=gateway_url, console=console)
            delete_documents(gateway_url, measured.doc_ids)
            freshness = measured.freshness_ms
            rows.append(
                {
                    "max_messages": point.max_messages,
                    "max_wait_ms": point.max_wait_ms,
                    "label": point.label,
                    "chunks": measured.chunks,
                    "chunks_per_s": measured.chunks_per_s,
                    "freshness_p50_ms": percentile(freshness, 50) if freshness else None,
                    "freshness_p99_ms": percentile(freshness, 99) if freshness else None,
                    "failed": measured.failed,
                }
            )
    finally:
        console.print("[bold]sweep[/]: restoring the embedder's default settings")
        restart_service("embedder", kafka)
    return {
        "documents_per_point": documents,
        "points": rows,
        "notes": (
            "A bulk load per point: freshness includes queueing behind the rest of the load, "
            "which is where batching pays. Single-document latency at each point is not measured."
        ),
    }
