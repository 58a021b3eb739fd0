"""The numbers of the operations view of ``ragstream status``, computed from raw readings.

Plain functions without I/O: ``operations_readings`` reads Kafka, Weaviate and the retriever's
``/metrics``, these turn what it read into per-topic throughput and lag, a freshness quantile,
index sizes and the latest dead letters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from pydantic import ValidationError

from ragstream_common.events import DeadLetter
from ragstream_common.lag import PartitionLag

__all__ = [
    "DeadLetterRow",
    "OperationsSnapshot",
    "TopicActivity",
    "freshness_quantile",
    "histogram_quantile",
    "index_sizes",
    "lag_summary",
    "recent_dead_letters",
    "topic_activity",
]

FRESHNESS_METRIC = "ragstream_document_freshness_seconds"


@dataclass(frozen=True)
class TopicActivity:
    """One topic: how much was ever written, how fast it is written now, who is behind.

    Args:
        topic: The topic.
        end_offset_total: The sum of its partitions' end offsets (records ever written).
        messages_per_s: Records appended per second between two samples; None with one sample.
        lag_by_group: Each consumer group's lag, summed over the topic's partitions.
    """

    topic: str
    end_offset_total: int
    messages_per_s: float | None
    lag_by_group: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetterRow:
    """One dead letter as the status view lists it."""

    time: datetime
    topic: str
    error_type: str
    error: str


@dataclass(frozen=True)
class OperationsSnapshot:
    """Everything the operations view shows; None where a source could not be read."""

    topics: list[TopicActivity]
    freshness_p50_s: float | None
    index_sizes: Mapping[str, int] | None
    dead_letters: list[DeadLetterRow]


def _end_total(end_offsets: Mapping[TopicPartition, int], topic: str) -> int:
    return sum(offset for tp, offset in end_offsets.items() if tp.topic == topic)


def topic_activity(
    topics: Sequence[str],
    first_end_offsets: Mapping[TopicPartition, int],
    last_end_offsets: Mapping[TopicPartition, int],
    elapsed_s: float,
    lags: Iterable[PartitionLag],
) -> list[TopicActivity]:
    """Return the activity of each topic, in the order given.

    Args:
        topics: The topics to report.
        first_end_offsets: End offsets per partition at the first sample.
        last_end_offsets: End offsets per partition at the second sample, ``elapsed_s`` later.
        elapsed_s: Seconds between the samples; zero or less gives no rate.
        lags: Consumer groups' lag per partition, as of the second sample.
    """
    lag_by_topic: dict[str, dict[str, int]] = {}
    for lag in lags:
        groups = lag_by_topic.setdefault(lag.topic, {})
        groups[lag.group] = groups.get(lag.group, 0) + lag.lag
    activity = []
    for topic in topics:
        last = _end_total(last_end_offsets, topic)
        rate = None
        if elapsed_s > 0:
            # A topic recreated between the samples would read as a negative rate.
            rate = max(0, last - _end_total(first_end_offsets, topic)) / elapsed_s
        activity.append(
            TopicActivity(topic, last, rate, dict(sorted(lag_by_topic.get(topic, {}).items())))
        )
    return activity


def lag_summary(lag_by_group: Mapping[str, int], limit: int = 5) -> str:
    """Return "group lag, ..." for the ``limit`` groups furthest behind, and how many are left.

    Abandoned groups (a test's, a retired deployment's) keep their commits, and their lag, until
    Kafka expires them; a topic can have dozens, so only the furthest behind are named.

    Args:
        lag_by_group: Lag per group on one topic.
        limit: How many groups to name.
    """
    if not lag_by_group:
        return "-"
    ordered = sorted(lag_by_group.items(), key=lambda item: (-item[1], item[0]))
    summary = ", ".join(f"{group} {lag}" for group, lag in ordered[:limit])
    rest = ordered[limit:]
    if rest:
        behind = sum(1 for _, lag in rest if lag > 0)
        summary += f" (+{len(rest)} more, {behind} behind)"
    return summary


def histogram_quantile(quantile: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Return a quantile of a Prometheus histogram, interpolated as PromQL's one does.

    Args:
        quantile: Between 0 and 1.
        buckets: (upper bound, cumulative count) pairs, ``+Inf`` included, in any order.

    Returns:
        The estimate; None for an empty histogram. In the ``+Inf`` bucket it is the highest
        finite bound, as PromQL answers.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = quantile * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in ordered:
        if count >= rank:
            if math.isinf(upper_bound):
                return lower_bound
            if count == lower_count:
                return upper_bound
            return lower_bound + (upper_bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = upper_bound, count
    return lower_bound


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def freshness_quantile(metrics_text: str, quantile: float = 0.5) -> float | None:
    """Return a quantile of the retriever's publish-to-indexed freshness, in seconds.

    Args:
        metrics_text: The retriever's ``/metrics`` page (Prometheus text format).
        quantile: Between 0 and 1.

    Returns:
        None when the page has no indexed document yet.
    """
    buckets = []
    for line in metrics_text.splitlines():
        sample = _SAMPLE.match(line)
        if sample is None or sample["name"] != f"{FRESHNESS_METRIC}_bucket":
            continue
        labels = dict(_LABEL.findall(sample["labels"]))
        if labels.get("stage") == "indexed" and "le" in labels:
            buckets.append((float(labels["le"]), float(sample["value"])))
    return histogram_quantile(quantile, buckets)


def index_sizes(nodes: Mapping[str, Any]) -> dict[str, int]:
    """Return the object count of each collection from Weaviate's ``/v1/nodes?output=verbose``.

    A multi-tenant collection has a shard per tenant, so its count is the sum over its shards.

    Args:
        nodes: The decoded JSON answer.
    """
    sizes: dict[str, int] = {}
    for node in nodes.get("nodes", []):
        for shard in node.get("shards") or []:
            name = shard["class"]
            sizes[name] = sizes.get(name, 0) + int(shard.get("objectCount", 0))
    return dict(sorted(sizes.items()))


def recent_dead_letters(
    records: Iterable[tuple[str, int, bytes | None]], *, limit: int = 5, error_width: int = 80
) -> list[DeadLetterRow]:
    """Return the latest ``limit`` dead letters, newest first.

    Args:
        records: (dead-letter topic, record timestamp in ms, value) of the records read.
        limit: How many to keep.
        error_width: Error messages are cut to this many characters.
    """
    rows = []
    for dlq_topic, timestamp_ms, value in records:
        try:
            letter = DeadLetter.model_validate_json(value or b"")
        except ValidationError:
            # Someone wrote something else there; show it rather than hide it.
            rows.append(
                DeadLetterRow(
                    datetime.fromtimestamp(timestamp_ms / 1000, UTC),
                    dlq_topic.removesuffix(".dlq"),
                    "unreadable dead letter",
                    _truncate((value or b"").decode(errors="replace"), error_width),
                )
            )
            continue
        occurred = letter.occurred_at
        # A producer of another language may leave the zone out; ours always write UTC.
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)
        rows.append(
            DeadLetterRow(
                occurred,
                letter.original_topic,
                letter.error_type,
                _truncate(letter.error, error_width),
            )
        )
    rows.sort(key=lambda row: row.time, reverse=True)
    return rows[:limit]


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
