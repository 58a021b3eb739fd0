"""The figures the benchmarks report, as pure functions: percentiles, ratios, ranking quality.

No I/O and no platform code, so that every number in a report can be checked by a unit test.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

__all__ = [
    "backlog_peaks",
    "backlogs",
    "cumulative_flow",
    "median_interval",
    "median_run",
    "mrr_at_k",
    "ndcg_at_k",
    "percentile",
    "ratio",
    "recall_at_k",
    "summarise_latencies",
]


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile of ``values`` by linear interpolation between ranks.

    The same definition as numpy's default (``linear``), so figures agree with other tools.

    Args:
        values: The samples, in any order.
        q: The percentile, 0 to 100.

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside 0..100.
    """
    if not values:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def ratio(numerator: float, denominator: float) -> float | None:
    """Return ``numerator / denominator``, or None when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else None


def summarise_latencies(latencies_ms: Sequence[float], seconds: float) -> dict[str, float]:
    """Return count, p50, p95, p99, mean and throughput of a load run.

    Args:
        latencies_ms: One latency per completed request.
        seconds: Wall time of the whole run, for the throughput.
    """
    return {
        "count": float(len(latencies_ms)),
        "p50_ms": percentile(latencies_ms, 50),
        "p95_ms": percentile(latencies_ms, 95),
        "p99_ms": percentile(latencies_ms, 99),
        "mean_ms": sum(latencies_ms) / len(latencies_ms),
        "throughput_per_s": len(latencies_ms) / seconds if seconds > 0 else 0.0,
    }


def _distinct(ranked: Sequence[str]) -> list[str]:
    # Several chunks of one document may be retrieved; the document counts once, at its best rank.
    seen: set[str] = set()
    distinct = []
    for item in ranked:
        if item not in seen:
            seen.add(item)
            distinct.append(item)
    return distinct


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Return the share of ``relevant`` found in the first ``k`` distinct results.

    Args:
        ranked: Document ids, best first (repeats count once, at their first rank).
        relevant: The ids that answer the question.
        k: How many results count.
    """
    if not relevant:
        raise ValueError("no relevant documents")
    found = set(_distinct(ranked)[:k]) & set(relevant)
    return len(found) / len(set(relevant))


def mrr_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Return 1/rank of the first relevant result within the first ``k``, 0 when there is none.

    Args:
        ranked: Document ids, best first (repeats count once, at their first rank).
        relevant: The ids that answer the question.
        k: How many results count.
    """
    for rank, item in enumerate(_distinct(ranked)[:k], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Return the normalised discounted cumulative gain at ``k`` with binary relevance.

    DCG sums 1/log2(rank + 1) over relevant results; the ideal ranking puts every relevant
    document first.

    Args:
        ranked: Document ids, best first (repeats count once, at their first rank).
        relevant: The ids that answer the question.
        k: How many results count.
    """
    if not relevant:
        raise ValueError("no relevant documents")
    dcg = sum(
        1.0 / math.log2(rank + 1)
        for rank, item in enumerate(_distinct(ranked)[:k], start=1)
        if item in relevant
    )
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(set(relevant)), k) + 1))
    return dcg / ideal


def median_run(runs: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """Return the run whose ``key`` is the median; of an even number, the lower of the middle two.

    A run rather than an average of runs, so that the figures reported together (chunks/s on
    both sides, efficiency) come from one measurement.

    Args:
        runs: The repetitions, each holding ``key``.
        key: The figure to rank them by.
    """
    if not runs:
        raise ValueError("no runs to choose from")
    ranked = sorted(runs, key=lambda run: run[key])
    return ranked[(len(ranked) - 1) // 2]


def median_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Return an interval that holds the true median with at least ``confidence``, if any can.

    The distribution-free interval from order statistics: with ``n`` runs, the median lies
    between the ``k``-th smallest and the ``k``-th largest with probability
    ``1 - 2 P(B <= k - 1)``, ``B`` binomial(n, 1/2), whatever the runs' distribution (noisy
    machines are not normal). The narrowest such interval reaching ``confidence`` is returned;
    with too few runs for that, the widest (smallest to largest) and the confidence it has.
    Computed here rather than with scipy, which nothing else in the project needs.

    Args:
        values: One figure per run.
        confidence: The coverage wanted, below 1.

    Returns:
        ``low``, ``high`` and ``confidence``, the coverage the interval actually has.

    Raises:
        ValueError: ``values`` is empty or ``confidence`` is outside 0..1.
    """
    if not values:
        raise ValueError("no samples")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} outside 0..1")
    ordered, n = sorted(values), len(values)

    def coverage(k: int) -> float:
        below = sum(math.comb(n, i) for i in range(k))
        return 1 - 2 * below / 2**n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return {"low": ordered[k - 1], "high": ordered[n - k], "confidence": coverage(k)}


def cumulative_flow(
    offsets: Sequence[Mapping[str, float]], stages: Sequence[str], step_s: float
) -> dict[str, list[float]]:
    """Return, every ``step_s`` from 0 until the last stage was passed, how many items had passed
    each stage: a cumulative flow diagram.

    Between two stages' curves, the vertical distance is how many items were past the first and
    not yet past the second (the backlog of the work in between), the horizontal one how long an
    item took between them.

    Args:
        offsets: Per item, the time (s, from a common start) it passed each of ``stages``.
        stages: The stages, in the order items pass them.
        step_s: The sampling interval, above 0.

    Returns:
        ``t_s`` (the sampling times) and, per stage, the count at each time.

    Raises:
        ValueError: ``step_s`` is not above 0.
    """
    if step_s <= 0:
        raise ValueError(f"step {step_s} is not above 0")
    passed = {stage: sorted(item[stage] for item in offsets) for stage in stages}
    end = max((times[-1] for times in passed.values() if times), default=0.0)
    times = [round(step * step_s, 9) for step in range(math.ceil(end / step_s) + 1)]
    flow: dict[str, list[float]] = {"t_s": times}
    for stage, moments in passed.items():
        flow[stage] = [bisect.bisect_right(moments, t) for t in times]
    return flow


def backlogs(flow: Mapping[str, Sequence[float]], stages: Sequence[str]) -> dict[str, list[float]]:
    """Return, for each stage after the first and at each of ``cumulative_flow``'s samples, how
    many items had passed the stage before it and not yet this one.

    Args:
        flow: What ``cumulative_flow`` returned.
        stages: Its stages, in order.
    """
    return {
        stage: [ahead - behind for ahead, behind in zip(flow[before], flow[stage], strict=True)]
        for before, stage in itertools.pairwise(stages)
    }


def backlog_peaks(flow: Mapping[str, Sequence[float]], stages: Sequence[str]) -> dict[str, Any]:
    """Return, for each stage after the first, its largest backlog (``backlogs``) and when.

    Args:
        flow: What ``cumulative_flow`` returned.
        stages: Its stages, in order.

    Returns:
        Per stage after the first: ``{"peak": items, "at_s": time}`` (the first time it peaked).
    """
    peaks: dict[str, Any] = {}
    for stage, waiting in backlogs(flow, stages).items():
        top = max(waiting, default=0)
        at = flow["t_s"][waiting.index(top)] if waiting else 0.0
        peaks[stage] = {"peak": top, "at_s": at}
    return peaks
