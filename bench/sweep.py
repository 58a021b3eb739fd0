"""The batching sweep: the embedder's batch size and maximum wait against throughput and freshness.

For every point the embedder alone is restarted with ``RAGSTREAM_BATCH_MAX_MESSAGES`` and
``RAGSTREAM_BATCH_MAX_WAIT_MS`` set, a few documents go through unmeasured (a restarted model's
first calls pay for its lazy initialisation), then a fresh corpus is ingested end to end, and its
chunks/s and per-document freshness are recorded. The points are measured in rounds, each in the
reverse order of the one before (``sweep_order``), so that a machine getting faster or slower
over the sweep does not favour the points measured first; each point's chunks/s is the median of
its rounds, its freshness pooled over them. The rest of the stack keeps running. Afterwards the
embedder is restarted with its default settings, whatever happened.

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
    IngestMeasurement,
    delete_documents,
    ingest_documents,
    restart_service,
    run_token,
    synthetic_documents,
)

__all__ = ["FULL_POINTS", "QUICK_POINTS", "SweepPoint", "point_row", "run", "sweep_order"]

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


def sweep_order(points: Sequence[SweepPoint], rounds: int) -> list[SweepPoint]:
    """Return the points in the order to measure them: ``rounds`` passes, each the reverse of the
    one before (A B C, C B A, A B C...), so that drift over the sweep meets every point alike."""
    order: list[SweepPoint] = []
    for number in range(rounds):
        order.extend(points if number % 2 == 0 else reversed(points))
    return order


def point_row(point: SweepPoint, measured: Sequence[IngestMeasurement]) -> dict[str, Any]:
    """Return one point's figures over its rounds: the median chunks/s (every round's kept
    beside it) and freshness percentiles over every document of every round.

    Args:
        point: The embedder configuration.
        measured: Its rounds' bulk ingests.
    """
    freshness = [value for one in measured for value in one.freshness_ms]
    rates = [one.chunks_per_s for one in measured]
    return {
        "max_messages": point.max_messages,
        "max_wait_ms": point.max_wait_ms,
        "label": point.label,
        "chunks": sum(one.chunks for one in measured),
        "chunks_per_s": percentile(rates, 50) if rates else 0.0,
        "chunks_per_s_rounds": rates,
        "freshness_p50_ms": percentile(freshness, 50) if freshness else None,
        "freshness_p99_ms": percentile(freshness, 99) if freshness else None,
        "failed": sum(one.failed for one in measured),
    }


def _burst(count: int, *, kafka: str, gateway_url: str, console: Console) -> IngestMeasurement:
    """Ingest ``count`` fresh documents end to end, delete them, and return the measurement."""
    docs = synthetic_documents(count, seed=_SEED, token=run_token())
    measured = ingest_documents(docs, kafka=kafka, gateway_url=gateway_url, console=console)
    delete_documents(gateway_url, measured.doc_ids)
    return measured


def run(
    *,
    kafka: str,
    gateway_url: str,
    points: Sequence[SweepPoint],
    documents: int,
    console: Console,
    rounds: int = 1,
    warm_up_documents: int = 0,
) -> dict[str, Any]:
    """Measure every point and return the figures, one row per point.

    Args:
        kafka: Kafka's bootstrap servers.
        gateway_url: The gateway.
        points: The embedder configurations.
        documents: Fresh documents ingested per point and round (about three chunks each).
        console: Progress output.
        rounds: How many times each point is measured (``sweep_order``).
        warm_up_documents: Documents sent through, unmeasured, after each restart.
    """
    order = sweep_order(points, rounds)
    measured: dict[SweepPoint, list[IngestMeasurement]] = {point: [] for point in points}
    try:
        for number, point in enumerate(order, start=1):
            console.print(
                f"[bold]sweep[/] {number}/{len(order)}: embedder at {point.label}, "
                f"{warm_up_documents} documents to warm it up, then {documents}"
            )
            restart_service("embedder", kafka, point.env())
            if warm_up_documents > 0:
                _burst(warm_up_documents, kafka=kafka, gateway_url=gateway_url, console=console)
            measured[point].append(
                _burst(documents, kafka=kafka, gateway_url=gateway_url, console=console)
            )
    finally:
        console.print("[bold]sweep[/]: restoring the embedder's default settings")
        restart_service("embedder", kafka)
    return {
        "documents_per_point": documents,
        "rounds": rounds,
        "warm_up_documents": warm_up_documents,
        "points": [point_row(point, measured[point]) for point in points],
        "notes": (
            "A bulk load per point and round: freshness includes queueing behind the rest of "
            "the load, which is where batching pays. Rounds alternate the order of the points; "
            "chunks/s is each point's median over its rounds. Single-document latency at each "
            "point is not measured."
        ),
    }
