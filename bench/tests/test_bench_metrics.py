"""The benchmark's figures: percentiles, ratios and ranking quality, checked by hand."""

from __future__ import annotations

import math

import pytest

from bench.metrics import (
    backlog_peaks,
    backlogs,
    cumulative_flow,
    median_interval,
    median_run,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    ratio,
    recall_at_k,
    summarise_latencies,
)


class TestPercentile:
    def test_interpolates_between_ranks(self) -> None:
        """The percentile interpolates linearly between neighbouring ranks, as numpy does."""
        assert percentile([1, 2, 3, 4], 50) == 2.5
        assert percentile([10, 20, 30, 40, 50], 90) == pytest.approx(46.0)

    def test_extremes_are_min_and_max(self) -> None:
        """The 0th and 100th percentiles are the smallest and largest samples, in any order."""
        assert percentile([5, 1, 9], 0) == 1
        assert percentile([5, 1, 9], 100) == 9

    def test_one_sample(self) -> None:
        """A single sample is every percentile."""
        assert percentile([7.5], 99) == 7.5

    def test_refuses_empty_and_out_of_range(self) -> None:
        """No samples, or a percentile outside 0..100, is an error rather than a made-up figure."""
        with pytest.raises(ValueError, match="no samples"):
            percentile([], 50)
        with pytest.raises(ValueError, match="outside"):
            percentile([1], 101)


class TestRatio:
    def test_divides(self) -> None:
        """A ratio is the numerator over the denominator."""
        assert ratio(3.0, 4.0) == 0.75

    def test_none_without_a_denominator(self) -> None:
        """A zero denominator gives None, not an exception or infinity."""
        assert ratio(1.0, 0.0) is None


class TestSummariseLatencies:
    def test_percentiles_and_throughput(self) -> None:
        """The summary holds the percentiles of the latencies and requests per second of wall time."""
        summary = summarise_latencies([10.0, 20.0, 30.0, 40.0], seconds=2.0)
        assert summary["count"] == 4
        assert summary["p50_ms"] == 25.0
        assert summary["mean_ms"] == 25.0
        assert summary["throughput_per_s"] == 2.0


class TestRecallAtK:
    def test_share_of_relevant_found(self) -> None:
        """Recall is the share of relevant documents among the first k distinct results."""
        assert recall_at_k(["a", "b", "c"], {"a", "c"}, k=2) == 0.5
        assert recall_at_k(["a", "b", "c"], {"a", "c"}, k=3) == 1.0

    def test_repeats_count_once(self) -> None:
        """Several chunks of one document take one rank, so they do not push others out of k."""
        assert recall_at_k(["a", "a", "a", "b"], {"b"}, k=2) == 1.0

    def test_refuses_no_relevant(self) -> None:
        """A question without relevant documents cannot be scored."""
        with pytest.raises(ValueError, match="no relevant"):
            recall_at_k(["a"], set(), k=5)


class TestMrrAtK:
    def test_reciprocal_rank_of_first_hit(self) -> None:
        """MRR is one over the rank of the first relevant result."""
        assert mrr_at_k(["x", "y", "a"], {"a"}, k=10) == pytest.approx(1 / 3)

    def test_zero_beyond_k(self) -> None:
        """A relevant result past rank k scores nothing."""
        assert mrr_at_k(["x", "y", "a"], {"a"}, k=2) == 0.0


class TestNdcgAtK:
    def test_perfect_ranking_is_one(self) -> None:
        """Relevant documents ranked first give an nDCG of one."""
        assert ndcg_at_k(["a", "b", "x"], {"a", "b"}, k=10) == pytest.approx(1.0)

    def test_discounts_lower_ranks(self) -> None:
        """A single relevant document at rank 2 scores 1/log2(3) against the ideal of rank 1."""
        assert ndcg_at_k(["x", "a"], {"a"}, k=10) == pytest.approx(1 / math.log2(3))

    def test_nothing_relevant_found(self) -> None:
        """No relevant document in the first k gives zero."""
        assert ndcg_at_k(["x", "y"], {"a"}, k=10) == 0.0


class TestMedianInterval:
    def test_fifteen_runs_give_the_fourth_smallest_and_fourth_largest(self) -> None:
        """1 - 2 P(B <= 3), B binomial(15, 1/2): 1 - 2 * 576 / 32768; the 5th and 11th would
        cover only 88%."""
        runs = [0.80 + i / 100 for i in (7, 3, 11, 0, 14, 5, 9, 1, 13, 2, 8, 12, 4, 10, 6)]

        interval = median_interval(runs)

        assert interval["low"] == pytest.approx(0.83)
        assert interval["high"] == pytest.approx(0.91)
        assert interval["confidence"] == pytest.approx(1 - 2 * 576 / 32768)

    def test_too_few_runs_give_the_widest_interval_and_its_lower_confidence(self) -> None:
        """Five runs cannot reach 95%: smallest to largest holds the median 15 times in 16."""
        interval = median_interval([0.9, 0.7, 0.8, 0.85, 0.75])

        assert (interval["low"], interval["high"]) == (0.7, 0.9)
        assert interval["confidence"] == pytest.approx(0.9375)

    def test_a_lower_confidence_narrows_it(self) -> None:
        runs = list(range(1, 16))

        assert median_interval(runs, 0.8) == {
            "low": 5,
            "high": 11,
            "confidence": pytest.approx(1 - 2 * 1941 / 32768),
        }

    def test_one_run_says_nothing(self) -> None:
        assert median_interval([0.84]) == {"low": 0.84, "high": 0.84, "confidence": 0.0}

    def test_refuses_no_runs_and_impossible_confidence(self) -> None:
        with pytest.raises(ValueError, match="no samples"):
            median_interval([])
        with pytest.raises(ValueError, match="outside"):
            median_interval([1.0], 1.0)


class TestMedianRun:
    def test_an_odd_number_of_runs_gives_the_middle_one(self) -> None:
        runs = [{"e": 0.9, "n": 1}, {"e": 0.7, "n": 2}, {"e": 0.8, "n": 3}]

        assert median_run(runs, "e") == {"e": 0.8, "n": 3}

    def test_an_even_number_gives_the_lower_middle_run(self) -> None:
        runs = [{"e": 0.9}, {"e": 0.7}, {"e": 0.8}, {"e": 0.6}]

        assert median_run(runs, "e") == {"e": 0.7}

    def test_one_run_is_its_own_median(self) -> None:
        assert median_run([{"e": 0.5}], "e") == {"e": 0.5}

    def test_no_runs_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="no runs"):
            median_run([], "e")


_STAGES = ("received", "chunked", "embedded")
# Three items: the model's stage (chunked to embedded) holds the second and third for a while.
_OFFSETS = [
    {"received": 0.0, "chunked": 0.05, "embedded": 0.12},
    {"received": 0.0, "chunked": 0.1, "embedded": 0.3},
    {"received": 0.02, "chunked": 0.1, "embedded": 0.4},
]


class TestCumulativeFlow:
    def test_counts_items_past_each_stage_at_each_sample(self) -> None:
        """At each sampling time, how many items had passed each stage (at or before it)."""
        flow = cumulative_flow(_OFFSETS, _STAGES, 0.1)
        assert flow["t_s"] == [0.0, 0.1, 0.2, 0.3, 0.4]
        assert flow["received"] == [2.0, 3.0, 3.0, 3.0, 3.0]
        assert flow["chunked"] == [0.0, 3.0, 3.0, 3.0, 3.0]
        assert flow["embedded"] == [0.0, 0.0, 1.0, 2.0, 3.0]
        # Counts, so the summary table prints them as whole numbers ("94", not "94.000").
        assert all(isinstance(count, int) for count in flow["embedded"])

    def test_sampled_until_every_item_passed_the_last_stage(self) -> None:
        """The last sample is at or after the last stage, so every curve ends at the total."""
        flow = cumulative_flow(_OFFSETS, _STAGES, 0.25)
        assert flow["t_s"][-1] >= 0.4
        assert all(flow[stage][-1] == 3.0 for stage in _STAGES)

    def test_nothing_passed_is_one_empty_sample(self) -> None:
        assert cumulative_flow([], _STAGES, 0.1) == {
            "t_s": [0.0],
            "received": [0.0],
            "chunked": [0.0],
            "embedded": [0.0],
        }

    def test_a_step_that_is_not_positive_is_refused(self) -> None:
        with pytest.raises(ValueError, match="not above 0"):
            cumulative_flow(_OFFSETS, _STAGES, 0.0)


class TestBacklogs:
    def test_the_gap_between_a_stage_and_the_one_before(self) -> None:
        """A stage's backlog is what passed the stage before it and not yet this one."""
        waiting = backlogs(cumulative_flow(_OFFSETS, _STAGES, 0.1), _STAGES)
        assert waiting == {
            "chunked": [2.0, 0.0, 0.0, 0.0, 0.0],
            "embedded": [0.0, 3.0, 2.0, 1.0, 0.0],
        }

    def test_peaks_and_when_they_first_came(self) -> None:
        peaks = backlog_peaks(cumulative_flow(_OFFSETS, _STAGES, 0.1), _STAGES)
        assert peaks == {
            "chunked": {"peak": 2.0, "at_s": 0.0},
            "embedded": {"peak": 3.0, "at_s": 0.1},
        }
