"""Tests for the operations view's numbers and its rendering, from canned readings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from rich.console import Console

from ragstream_cli.operations import (
    DeadLetterRow,
    OperationsSnapshot,
    TopicActivity,
    freshness_quantile,
    histogram_quantile,
    index_sizes,
    lag_summary,
    recent_dead_letters,
    topic_activity,
)
from ragstream_cli.status_view import operations_view
from ragstream_common.events import DeadLetter
from ragstream_common.lag import PartitionLag


def _tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


class TestTopicActivity:
    def test_end_offsets_are_summed_over_partitions(self) -> None:
        """A topic's end offset total is the sum of its partitions' end offsets."""
        ends = {_tp("chunks", 0): 10, _tp("chunks", 1): 5, _tp("documents", 0): 3}

        [chunks] = topic_activity(["chunks"], ends, ends, 1.0, [])

        assert chunks.end_offset_total == 15

    def test_rate_is_growth_between_samples_over_elapsed_time(self) -> None:
        """Messages per second are the end offsets' growth divided by the seconds between."""
        first = {_tp("chunks", 0): 10, _tp("chunks", 1): 5}
        last = {_tp("chunks", 0): 16, _tp("chunks", 1): 9}

        [chunks] = topic_activity(["chunks"], first, last, 2.0, [])

        assert chunks.messages_per_s == pytest.approx(5.0)

    def test_no_elapsed_time_gives_no_rate(self) -> None:
        """Without a second sample apart from the first there is no rate, rather than a wrong one."""
        ends = {_tp("chunks", 0): 1}

        assert topic_activity(["chunks"], ends, ends, 0.0, [])[0].messages_per_s is None

    def test_lag_is_summed_per_group_over_the_topics_partitions(self) -> None:
        """Each group's lag on a topic is the sum over its partitions; other topics stay apart."""
        lags = [
            PartitionLag("embedder", "chunks", 0, 2),
            PartitionLag("embedder", "chunks", 1, 3),
            PartitionLag("ingestor", "documents", 0, 7),
        ]
        ends = {_tp("chunks", 0): 9, _tp("documents", 0): 9}

        chunks, documents, answers = topic_activity(
            ["chunks", "documents", "answers"], ends, ends, 1.0, lags
        )

        assert chunks.lag_by_group == {"embedder": 5}
        assert documents.lag_by_group == {"ingestor": 7}
        assert answers.lag_by_group == {}
        assert answers.end_offset_total == 0


class TestLagSummary:
    def test_groups_furthest_behind_come_first(self) -> None:
        """Groups are named by lag, largest first."""
        assert lag_summary({"a": 1, "b": 5, "c": 0}) == "b 5, a 1, c 0"

    def test_groups_beyond_the_limit_are_counted(self) -> None:
        """Past the limit, groups are counted, with how many of them are behind."""
        summary = lag_summary({"a": 9, "b": 8, "c": 1, "d": 0}, limit=2)

        assert summary == "a 9, b 8 (+2 more, 1 behind)"

    def test_no_group_reads_as_a_dash(self) -> None:
        """A topic no group consumes shows a dash."""
        assert lag_summary({}) == "-"


class TestHistogramQuantile:
    def test_interpolates_inside_the_bucket_like_promql(self) -> None:
        """The median of 4 observations, 2 under 1 s and 4 under 2 s, is 1 s; 3 of 4 is 1.5 s."""
        buckets = [(1.0, 2.0), (2.0, 4.0), (float("inf"), 4.0)]

        assert histogram_quantile(0.5, buckets) == pytest.approx(1.0)
        assert histogram_quantile(0.75, buckets) == pytest.approx(1.5)

    def test_first_bucket_interpolates_from_zero(self) -> None:
        """Below the first bound the estimate runs from zero, as PromQL assumes."""
        assert histogram_quantile(0.5, [(0.1, 4.0), (float("inf"), 4.0)]) == pytest.approx(0.05)

    def test_rank_in_the_infinite_bucket_is_the_highest_finite_bound(self) -> None:
        """Observations above every bound give the highest finite bound, not infinity."""
        assert histogram_quantile(0.5, [(1.0, 1.0), (float("inf"), 10.0)]) == 1.0

    def test_empty_histogram_has_no_quantile(self) -> None:
        """No observations: no estimate."""
        assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None
        assert histogram_quantile(0.5, []) is None


METRICS_PAGE = """\
# HELP ragstream_document_freshness_seconds Time from a document's publication to ...
# TYPE ragstream_document_freshness_seconds histogram
ragstream_document_freshness_seconds_bucket{le="0.5",service="retriever",stage="indexed"} 1.0
ragstream_document_freshness_seconds_bucket{le="1.0",service="retriever",stage="indexed"} 3.0
ragstream_document_freshness_seconds_bucket{le="+Inf",service="retriever",stage="indexed"} 4.0
ragstream_document_freshness_seconds_count{service="retriever",stage="indexed"} 4.0
ragstream_document_freshness_seconds_bucket{le="0.5",service="retriever",stage="deleted"} 0.0
ragstream_document_freshness_seconds_bucket{le="1.0",service="retriever",stage="deleted"} 0.0
ragstream_document_freshness_seconds_bucket{le="+Inf",service="retriever",stage="deleted"} 9.0
ragstream_stage_duration_seconds_bucket{le="0.5",service="retriever",stage="indexed"} 100.0
"""


class TestFreshnessQuantile:
    def test_reads_only_the_indexed_stage_of_the_freshness_histogram(self) -> None:
        """Deleted-stage buckets and other histograms on the page do not count."""
        # Rank 2 of 4 lies halfway through the (0.5, 1.0] bucket, which holds observations 2-3.
        assert freshness_quantile(METRICS_PAGE, 0.5) == pytest.approx(0.75)

    def test_page_without_the_histogram_gives_none(self) -> None:
        """A retriever that has indexed nothing yet reports no freshness."""
        assert freshness_quantile("# nothing here\n") is None


class TestIndexSizes:
    def test_counts_are_summed_over_each_collections_shards(self) -> None:
        """A multi-tenant collection's size is the sum of its tenants' shards."""
        nodes = {
            "nodes": [
                {
                    "shards": [
                        {"class": "RagTenantChunk", "name": "acme", "objectCount": 8},
                        {"class": "RagTenantChunk", "name": "default", "objectCount": 30},
                        {"class": "RagTenantChunkVersions", "name": "acme", "objectCount": 2},
                    ]
                },
                {"shards": None},
            ]
        }

        assert index_sizes(nodes) == {"RagTenantChunk": 38, "RagTenantChunkVersions": 2}


def _letter(topic: str, error: str, at: datetime) -> bytes:
    return (
        DeadLetter(
            service="embedder",
            original_topic=topic,
            error_type="ValidationError",
            error=error,
            original_value_b64="",
            occurred_at=at,
        )
        .model_dump_json()
        .encode()
    )


class TestRecentDeadLetters:
    def test_newest_first_and_limited(self) -> None:
        """Dead letters of every topic are merged, newest first, and cut to the limit."""
        records = [
            ("chunks.dlq", 0, _letter("chunks", "old", datetime(2026, 1, 1, tzinfo=UTC))),
            ("queries.dlq", 0, _letter("queries", "newest", datetime(2026, 1, 3, tzinfo=UTC))),
            ("chunks.dlq", 0, _letter("chunks", "middle", datetime(2026, 1, 2, tzinfo=UTC))),
        ]

        rows = recent_dead_letters(records, limit=2)

        assert [(row.topic, row.error) for row in rows] == [
            ("queries", "newest"),
            ("chunks", "middle"),
        ]

    def test_long_errors_are_truncated_on_one_line(self) -> None:
        """An error message is cut to the width, its line breaks folded."""
        records = [("chunks.dlq", 0, _letter("chunks", "line one\nline two " + "x" * 200, _NOW))]

        [row] = recent_dead_letters(records, error_width=20)

        assert row.error == "line one line two x…"
        assert len(row.error) == 20

    def test_unreadable_record_is_shown_not_hidden(self) -> None:
        """A record that is no DeadLetter appears with the record's time and its topic."""
        [row] = recent_dead_letters([("chunks.dlq", 1_700_000_000_000, b"not json")])

        assert row.topic == "chunks"
        assert row.error_type == "unreadable dead letter"
        assert row.time == datetime.fromtimestamp(1_700_000_000, UTC)


_NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class TestOperationsView:
    def _render(self, snapshot: OperationsSnapshot) -> str:
        console = Console(width=200, record=True)
        console.print(operations_view(snapshot))
        return console.export_text()

    def test_shows_every_part(self) -> None:
        """Topics with rate and lag, freshness, index sizes and dead letters all appear."""
        snapshot = OperationsSnapshot(
            topics=[TopicActivity("chunks", 1234, 2.5, {"embedder": 7})],
            freshness_p50_s=0.84,
            index_sizes={"RagTenantChunk": 38},
            dead_letters=[DeadLetterRow(_NOW, "chunks", "ValidationError", "bad json")],
        )

        text = self._render(snapshot)

        for expected in ("chunks", "1234", "2.5", "embedder 7", "0.84 s", "RagTenantChunk", "38"):
            assert expected in text
        assert "2026-11-29 12:00:00" in text
        assert "bad json" in text

    def test_missing_sources_are_said_not_hidden(self) -> None:
        """No retriever, no Weaviate, no dead letters: each says so in a line."""
        snapshot = OperationsSnapshot(
            topics=[], freshness_p50_s=None, index_sizes=None, dead_letters=[]
        )

        text = self._render(snapshot)

        assert "no reading from the retriever" in text
        assert "Weaviate did not answer" in text
        assert "dead letters: none" in text
