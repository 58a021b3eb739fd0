"""Tests for the quality drift detectors: windows, statistics and their not-ready semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragstream_common.drift import (
    SCORE_SHIFT_ALERT_THRESHOLD,
    BaselineWindows,
    MeanDriftDetector,
    QueryDriftDetector,
    RollingMean,
    RollingRate,
    ValueShiftDetector,
    distribution_shift,
    query_drift,
)

DIMS = 32


def _topic_vectors(rng: np.random.Generator, centre: np.ndarray, count: int) -> np.ndarray:
    """Unit vectors scattered around one topic's centre, like embeddings of related queries."""
    vectors = centre + rng.normal(scale=0.08, size=(count, centre.size))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _centre(rng: np.random.Generator) -> np.ndarray:
    centre = rng.normal(size=DIMS)
    return centre / np.linalg.norm(centre)


class TestBaselineWindows:
    def test_baseline_freezes_after_its_first_observations(self) -> None:
        """The baseline keeps the first N observations; later ones only reach the recent window."""
        windows: BaselineWindows[int] = BaselineWindows(3, 2)
        for item in range(10):
            windows.add(item)
        assert list(windows.baseline) == [0, 1, 2]
        assert list(windows.recent) == [8, 9]

    def test_add_returns_what_slid_out_of_the_recent_window(self) -> None:
        """Once the recent window is full, each addition pushes out its oldest observation."""
        windows: BaselineWindows[int] = BaselineWindows(2, 2)
        assert [windows.add(item) for item in range(4)] == [None, None, 0, 1]

    def test_not_ready_before_the_baseline_is_full(self) -> None:
        """A full recent window alone is not enough: the baseline must have its N first."""
        windows: BaselineWindows[int] = BaselineWindows(5, 2)
        for item in range(4):
            windows.add(item)
        assert not windows.baseline_full
        assert not windows.ready
        windows.add(4)
        assert windows.baseline_full
        assert windows.ready

    def test_windows_of_fewer_than_two_are_refused(self) -> None:
        """The unbiased statistics need two observations per window."""
        with pytest.raises(ValueError, match="at least two"):
            BaselineWindows(1, 5)


class TestDistributionShift:
    def test_disjoint_samples_score_one(self) -> None:
        """Every recent value beyond every baseline value is the largest possible shift."""
        assert distribution_shift([1, 2, 3], [4, 5, 6]) == 1.0

    def test_identical_samples_score_zero(self) -> None:
        """The same values, in any order and multiplicity, do not differ in distribution."""
        assert distribution_shift([1, 2, 3, 4], [4, 3, 2, 1, 1, 2, 3, 4]) == 0.0

    def test_known_statistic(self) -> None:
        """Half of each sample overlaps the other: the CDFs are at most 0.5 apart."""
        assert distribution_shift([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
        # F_a steps by 1/3 at 0, 1 and 2, F_b by 1/2 at 0.5 and 2.5: the gap is 1/3 after 0, 1/6
        # after 0.5 and after 1, and 1/2 after 2.
        assert distribution_shift([0, 1, 2], [0.5, 2.5]) == pytest.approx(0.5)

    def test_empty_samples_are_refused(self) -> None:
        """A distribution function of nothing is undefined."""
        with pytest.raises(ValueError, match="non-empty"):
            distribution_shift([], [1.0])

    def test_same_distribution_stays_under_the_alert_threshold(self) -> None:
        """Samples of one distribution, at the default window sizes, stay under the threshold."""
        rng = np.random.default_rng(7)
        shifts = [distribution_shift(rng.beta(5, 2, 200), rng.beta(5, 2, 100)) for _ in range(300)]
        assert max(shifts) < SCORE_SHIFT_ALERT_THRESHOLD

    def test_shifted_distribution_crosses_the_alert_threshold(self) -> None:
        """Top scores falling from around 0.7 to around 0.5 fire the alert."""
        rng = np.random.default_rng(7)
        shifts = [distribution_shift(rng.beta(7, 3, 200), rng.beta(5, 5, 100)) for _ in range(300)]
        assert min(shifts) > SCORE_SHIFT_ALERT_THRESHOLD


class TestQueryDrift:
    def test_two_samples_of_one_topic_mix_score_near_zero(self) -> None:
        """Sampling noise alone scores near 0: the estimate is unbiased."""
        rng = np.random.default_rng(1)
        centres = [_centre(rng) for _ in range(4)]
        pool = np.concatenate([_topic_vectors(rng, centre, 100) for centre in centres])
        rng.shuffle(pool)
        assert query_drift(pool[:200], pool[200:300]) < 0.05

    def test_a_new_topic_scores_high(self) -> None:
        """Recent queries on topics the baseline never saw score far above the noise."""
        rng = np.random.default_rng(1)
        baseline = np.concatenate([_topic_vectors(rng, _centre(rng), 50) for _ in range(4)])
        recent = _topic_vectors(rng, _centre(rng), 100)
        assert query_drift(baseline, recent) > 0.3

    def test_identical_single_vectors_score_zero_and_opposite_ones_one(self) -> None:
        """The score is half the distance between the mean embeddings: 0 to 1."""
        north, south = [0.0, 1.0], [0.0, -1.0]
        assert query_drift([north] * 3, [north] * 3) == pytest.approx(0.0, abs=1e-9)
        assert query_drift([north] * 3, [south] * 3) == pytest.approx(1.0)

    def test_vectors_are_normalised_first(self) -> None:
        """A vector's length does not matter, only its direction."""
        rng = np.random.default_rng(2)
        baseline, recent = rng.normal(size=(20, DIMS)), rng.normal(size=(10, DIMS))
        assert query_drift(baseline * 3.0, recent * 0.5) == pytest.approx(
            query_drift(baseline, recent)
        )


class TestQueryDriftDetector:
    def test_nan_until_the_baseline_is_full(self) -> None:
        """No score, and so no alert, while the baseline fills."""
        detector = QueryDriftDetector(baseline_size=4, recent_size=2)
        for _ in range(3):
            detector.observe([1.0, 0.0])
            assert math.isnan(detector.score())
        detector.observe([1.0, 0.0])
        assert detector.baseline_full
        assert detector.score() == pytest.approx(0.0, abs=1e-9)

    def test_running_sums_match_the_batch_statistic(self) -> None:
        """The incremental score equals query_drift of the frozen baseline and the last M."""
        rng = np.random.default_rng(3)
        vectors = rng.normal(size=(700, DIMS))
        detector = QueryDriftDetector(baseline_size=50, recent_size=30)
        for vector in vectors:
            detector.observe(vector)
        assert detector.score() == pytest.approx(query_drift(vectors[:50], vectors[-30:]))

    def test_the_baseline_does_not_follow_the_traffic(self) -> None:
        """After the baseline froze, a new topic stays drift for as long as it lasts."""
        rng = np.random.default_rng(4)
        detector = QueryDriftDetector(baseline_size=100, recent_size=50)
        for vector in _topic_vectors(rng, _centre(rng), 100):
            detector.observe(vector)
        for vector in _topic_vectors(rng, _centre(rng), 500):
            detector.observe(vector)
        assert detector.score() > 0.3

    def test_zero_vectors_are_ignored_and_other_sizes_refused(self) -> None:
        """A zero vector has no direction; a vector of another model cannot be compared."""
        detector = QueryDriftDetector(baseline_size=2, recent_size=2)
        detector.observe([0.0, 0.0])
        assert not detector.baseline_full
        detector.observe([1.0, 0.0])
        with pytest.raises(ValueError, match="dimensional"):
            detector.observe([1.0, 0.0, 0.0])


class TestValueShiftDetector:
    def test_nan_until_the_baseline_is_full_then_the_ks_statistic(self) -> None:
        """The score is NaN while filling, then the KS statistic of baseline and recent values."""
        detector = ValueShiftDetector(baseline_size=4, recent_size=2)
        for value in (0.1, 0.2, 0.3):
            detector.observe(value)
            assert math.isnan(detector.score())
        detector.observe(0.4)
        for value in (0.9, 0.95):
            detector.observe(value)
        assert detector.score() == pytest.approx(1.0)
        assert detector.score() == distribution_shift([0.1, 0.2, 0.3, 0.4], [0.9, 0.95])

    def test_nan_values_are_ignored(self) -> None:
        """NaN is no observation: it neither fills the baseline nor enters the recent window."""
        detector = ValueShiftDetector(baseline_size=2, recent_size=2)
        detector.observe(math.nan)
        detector.observe(0.5)
        assert not detector.baseline_full


class TestRollingMean:
    def test_mean_of_the_last_values(self) -> None:
        """Only the last ``size`` values count; an empty window's mean is NaN."""
        rolling = RollingMean(3)
        assert math.isnan(rolling.mean)
        for value in (10.0, 1.0, 2.0, 3.0):
            rolling.add(value)
        assert rolling.mean == pytest.approx(2.0)
        assert rolling.full
        assert rolling.count == 3

    def test_rate_is_the_share_of_events_that_happened(self) -> None:
        """A rate is a rolling mean of 1 (happened) and 0 (did not)."""
        rate = RollingRate(4)
        for happened in (True, True, False, True, False, False):
            rate.record(happened)
        assert rate.rate == pytest.approx(0.25)

    def test_long_runs_do_not_accumulate_rounding_error(self) -> None:
        """The running sum is refreshed, so a million updates still give the exact mean."""
        rolling = RollingMean(7)
        for step in range(1_000_000):
            rolling.add(0.1 * (step % 13))
        expected = sum(0.1 * (step % 13) for step in range(1_000_000 - 7, 1_000_000)) / 7
        assert rolling.mean == pytest.approx(expected, abs=1e-12)


class TestMeanDriftDetector:
    def test_nan_until_the_baseline_is_full(self) -> None:
        """Neither mean is reported before the baseline has its N values."""
        detector = MeanDriftDetector(baseline_size=3, recent_size=2)
        detector.observe(1.0)
        detector.observe(1.0)
        assert math.isnan(detector.baseline_mean)
        assert math.isnan(detector.recent_mean)
        assert math.isnan(detector.change)

    def test_baseline_freezes_and_recent_follows(self) -> None:
        """The baseline mean keeps the first values; the recent mean and the change follow."""
        detector = MeanDriftDetector(baseline_size=3, recent_size=2)
        for value in (0.9, 0.9, 0.9, 0.5, 0.3):
            detector.observe(value)
        assert detector.baseline_mean == pytest.approx(0.9)
        assert detector.recent_mean == pytest.approx(0.4)
        assert detector.change == pytest.approx(-0.5)
