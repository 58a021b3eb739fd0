"""Quality drift detectors: a frozen baseline window of observations against a sliding recent one.

Each detector keeps two windows of one stream of observations (query embeddings, top retrieval
scores, groundedness, does-not-know answers):

- the **baseline**: the first ``baseline_size`` observations after the process started. It fills
  first, then freezes for the life of the process: it is what "normal" looked like.
- the **recent** window: the last ``recent_size`` observations, sliding. It is fed from the first
  observation on, so right after the baseline freezes it is the baseline's own tail (a score
  starts low, never a false alarm) and a real change shows fully within ``recent_size``
  observations.

Until a detector's baseline is full its scores are NaN, and a service exports NaN for them with
``ragstream_drift_baseline_ready{detector=...}`` at 0: a Prometheus comparison with NaN is false,
so no alert can fire on an empty or half-filled baseline. A restart starts a new baseline, and
every replica has its own: drift is a per-replica signal that the traffic one replica sees has
changed, not a census of all traffic.

Updates cost O(dimensions) (embeddings, by running sums) or O(1); a score costs O(dimensions) or,
for the Kolmogorov-Smirnov statistic, a sort of the recent window (``recent_size`` floats): cheap
enough to refresh on every observation, on the event loop. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_BASELINE_SIZE",
    "DEFAULT_RECENT_SIZE",
    "GROUNDEDNESS_DROP_ALERT_THRESHOLD",
    "QUERY_DRIFT_ALERT_THRESHOLD",
    "SCORE_SHIFT_ALERT_THRESHOLD",
    "UNKNOWN_RATE_RISE_ALERT_THRESHOLD",
    "BaselineWindows",
    "MeanDriftDetector",
    "QueryDriftDetector",
    "RollingMean",
    "RollingRate",
    "ValueShiftDetector",
    "distribution_shift",
    "query_drift",
]

T = TypeVar("T")
Vector = npt.NDArray[np.float64]

# Observations in the baseline and in the recent window. The alert thresholds below are chosen
# for these sizes: smaller windows are noisier and would need higher thresholds.
DEFAULT_BASELINE_SIZE = 200
DEFAULT_RECENT_SIZE = 100

# ``query_drift`` above this means the recent queries are about something else than the
# baseline's. Measured with all-MiniLM-L6-v2 on questions generated from the sample corpus'
# topics (services/retriever/tests/test_retriever_drift.py pins the cases), over 100 random
# splits into a baseline of 100 and a recent window of 60 held-out questions:
#   same topics, held-out questions (hand-written ones from bench/eval among them): 0.00-0.08
#     (0.00-0.06 with the default 200/100 windows);
#   half the recent questions on cooking, football and tax law:                    0.08-0.12;
#   all of them on those three mixed:                                              0.18-0.21;
#   all on one of them:                                                            0.24-0.34.
# 0.12 is 1.5 times the worst same-topic score and 2/3 of the weakest full shift: it fires once
# more than about half the traffic has left the baseline's topics (less when the newcomers share
# one topic). A systematic change of wording alone (every question in phrasings the baseline
# never used) measured 0.10-0.15, so a new client with templated questions may fire it too.
QUERY_DRIFT_ALERT_THRESHOLD = 0.12

# The two-sample Kolmogorov-Smirnov statistic above this means the top retrieval scores changed
# distribution. Its critical value at significance a is sqrt(-ln(a / 2) / 2) * sqrt((n + m) / (n m)):
# 0.24 for a = 0.001 with the default windows (n = 200, m = 100). The alert evaluates a sliding
# window over and over, so a strict a keeps the repeated tests from crying wolf, and a `for:`
# duration in the rule adds to that; rounded up to 0.25.
SCORE_SHIFT_ALERT_THRESHOLD = 0.25

# Recent mean groundedness this far below its baseline mean is a fall worth an alert. The
# difference of a mean of 100 and a mean of 200 scores in [0, 1] with standard deviation s has a
# standard error of s * 0.12; 0.15 is three of them for s up to 0.4 (groundedness scores and
# does-not-know flags at base rates up to 20% or from 80% stay below it).
GROUNDEDNESS_DROP_ALERT_THRESHOLD = 0.15
# Recent share of does-not-know answers this far above its baseline share; the same reasoning.
UNKNOWN_RATE_RISE_ALERT_THRESHOLD = 0.15


def _check_sizes(baseline_size: int, recent_size: int) -> None:
    # Two per window at least: the unbiased statistics divide by n (n - 1).
    if baseline_size < 2 or recent_size < 2:
        raise ValueError("drift windows need at least two observations each")


class BaselineWindows(Generic[T]):
    """The first ``baseline_size`` observations, frozen once full, and the last ``recent_size``.

    Args:
        baseline_size: Observations in the baseline (N).
        recent_size: Observations in the recent, sliding window (M).
    """

    def __init__(self, baseline_size: int, recent_size: int) -> None:
        _check_sizes(baseline_size, recent_size)
        self.baseline_size = baseline_size
        self.recent_size = recent_size
        self._baseline: list[T] = []
        self._recent: deque[T] = deque(maxlen=recent_size)

    def add(self, item: T) -> T | None:
        """Add one observation; return the one it pushed out of the recent window, if any."""
        if len(self._baseline) < self.baseline_size:
            self._baseline.append(item)
        evicted = self._recent[0] if len(self._recent) == self.recent_size else None
        self._recent.append(item)
        return evicted

    @property
    def baseline(self) -> Sequence[T]:
        """The baseline's observations, oldest first (fewer than N while it fills)."""
        return self._baseline

    @property
    def recent(self) -> Sequence[T]:
        """The recent window's observations, oldest first."""
        return self._recent

    @property
    def baseline_full(self) -> bool:
        """Whether the baseline has its N observations and is frozen."""
        return len(self._baseline) == self.baseline_size

    @property
    def ready(self) -> bool:
        """Whether both windows are full, so a comparison of the two means something."""
        return self.baseline_full and len(self._recent) == self.recent_size


def _unit(vector: Sequence[float] | Vector) -> Vector | None:
    array = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 and math.isfinite(norm) else None


def _mmd_score(baseline_sum: Vector, n: int, recent_sum: Vector, m: int) -> float:
    """The cosine-kernel MMD of two windows of unit vectors from their sums, as a distance in [0, 1].

    With k(x, y) = x . y (the cosine of unit vectors) the unbiased MMD^2 estimate is
    mean_{i != j} x_i . x_j + mean_{i != j} y_i . y_j - 2 mean x_i . y_j, and since
    sum_{i != j} x_i . x_j = |sum x|^2 - n for unit vectors, all three come from the sums.
    """
    within_baseline = (float(baseline_sum @ baseline_sum) - n) / (n * (n - 1))
    within_recent = (float(recent_sum @ recent_sum) - m) / (m * (m - 1))
    across = float(baseline_sum @ recent_sum) / (n * m)
    mmd_squared = within_baseline + within_recent - 2 * across
    # MMD^2 estimates |mean x - mean y|^2, at most 4 for unit vectors: half the distance between
    # the mean embeddings is in [0, 1]. The unbiased estimate dips below 0 under pure noise.
    return min(1.0, math.sqrt(max(mmd_squared, 0.0)) / 2)


def query_drift(
    baseline_vectors: Iterable[Sequence[float]], recent_vectors: Iterable[Sequence[float]]
) -> float:
    """Return how far the recent query embeddings moved from the baseline's, in [0, 1].

    The statistic is the maximum mean discrepancy (MMD) with a cosine kernel, unbiased: half the
    distance between the two windows' mean embeddings, with the sampling noise of each window
    taken out. Why this one, and not 1 - cosine(mean, mean): the plain distance between two
    sample means is biased upwards by about (1 - |mean|^2) (1/n + 1/m), a floor that depends on
    the window sizes and on how spread the topics are, so one threshold would not fit every
    deployment; the unbiased estimate is centred on 0 when nothing changed, whatever n and m. It
    compares whole distributions only through their means (a linear kernel), which is what a
    topic shift moves, and it can be kept up to date in O(dimensions) per query from running sums
    (``QueryDriftDetector``), where an RBF-kernel MMD would cost O((n + m)^2 dimensions).

    Vectors are normalised here; zero vectors are skipped.

    Args:
        baseline_vectors: The baseline window's embeddings (two at least).
        recent_vectors: The recent window's embeddings (two at least), of the same dimension.
    """
    baseline = [unit for unit in map(_unit, baseline_vectors) if unit is not None]
    recent = [unit for unit in map(_unit, recent_vectors) if unit is not None]
    _check_sizes(len(baseline), len(recent))
    return _mmd_score(np.sum(baseline, axis=0), len(baseline), np.sum(recent, axis=0), len(recent))


def _ks_statistic(baseline_sorted: npt.NDArray[np.float64], recent: npt.ArrayLike) -> float:
    recent_sorted = np.sort(np.asarray(recent, dtype=np.float64))
    points = np.concatenate([baseline_sorted, recent_sorted])
    # The empirical CDFs at every observed value: the supremum of their gap is reached at one.
    baseline_cdf = np.searchsorted(baseline_sorted, points, side="right") / baseline_sorted.size
    recent_cdf = np.searchsorted(recent_sorted, points, side="right") / recent_sorted.size
    return float(np.max(np.abs(baseline_cdf - recent_cdf)))


def distribution_shift(baseline_values: Iterable[float], recent_values: Iterable[float]) -> float:
    """Return the two-sample Kolmogorov-Smirnov statistic of two samples, in [0, 1].

    The largest gap between the two empirical distribution functions: 0 for identical samples,
    1 when every recent value lies beyond every baseline value. It needs no assumption about the
    shape of the distribution (retrieval scores are bounded, skewed and often tied at 1).

    Args:
        baseline_values: The baseline window's values (one at least).
        recent_values: The recent window's values (one at least).
    """
    baseline = np.sort(np.fromiter(baseline_values, dtype=np.float64))
    recent = np.fromiter(recent_values, dtype=np.float64)
    if baseline.size == 0 or recent.size == 0:
        raise ValueError("the Kolmogorov-Smirnov statistic needs two non-empty samples")
    return _ks_statistic(baseline, recent)


class QueryDriftDetector:
    """Query drift (``query_drift``) between the first N query embeddings and the last M.

    Each observation updates running sums of unit vectors, so a score costs O(dimensions)
    whatever the window sizes.

    Args:
        baseline_size: Queries in the baseline (N).
        recent_size: Queries in the recent window (M).
    """

    def __init__(
        self, baseline_size: int = DEFAULT_BASELINE_SIZE, recent_size: int = DEFAULT_RECENT_SIZE
    ) -> None:
        self._windows: BaselineWindows[Vector] = BaselineWindows(baseline_size, recent_size)
        self._baseline_sum: Vector | None = None
        self._recent_sum: Vector | None = None
        self._evictions = 0

    @property
    def baseline_full(self) -> bool:
        """Whether the baseline is full and frozen."""
        return self._windows.baseline_full

    def observe(self, vector: Sequence[float]) -> None:
        """Add one query's embedding (normalised here; a zero vector is ignored).

        Raises:
            ValueError: Its dimension differs from the first vector's.
        """
        unit = _unit(vector)
        if unit is None:
            return
        if self._recent_sum is not None and unit.shape != self._recent_sum.shape:
            raise ValueError(f"a {unit.size}-dimensional vector among {self._recent_sum.size}")
        filling = not self._windows.baseline_full
        evicted = self._windows.add(unit)
        if filling:
            self._baseline_sum = (
                unit.copy() if self._baseline_sum is None else self._baseline_sum + unit
            )
        self._recent_sum = unit.copy() if self._recent_sum is None else self._recent_sum + unit
        if evicted is not None:
            self._recent_sum -= evicted
            self._evictions += 1
            # Adding and subtracting forever accumulates rounding error; a fresh sum once per
            # window length keeps it at one window's worth, at O(dimensions) amortised.
            if self._evictions % self._windows.recent_size == 0:
                self._recent_sum = np.sum(self._windows.recent, axis=0)

    def score(self) -> float:
        """The drift score in [0, 1]; NaN until the baseline and the recent window are full."""
        if not self._windows.ready or self._baseline_sum is None or self._recent_sum is None:
            return math.nan
        windows = self._windows
        return _mmd_score(
            self._baseline_sum, windows.baseline_size, self._recent_sum, windows.recent_size
        )


class ValueShiftDetector:
    """Distribution shift (``distribution_shift``) between the first N values and the last M.

    The baseline is sorted once, when it freezes; a score sorts the M recent values only.

    Args:
        baseline_size: Values in the baseline (N).
        recent_size: Values in the recent window (M).
    """

    def __init__(
        self, baseline_size: int = DEFAULT_BASELINE_SIZE, recent_size: int = DEFAULT_RECENT_SIZE
    ) -> None:
        self._windows: BaselineWindows[float] = BaselineWindows(baseline_size, recent_size)
        self._baseline_sorted: npt.NDArray[np.float64] | None = None

    @property
    def baseline_full(self) -> bool:
        """Whether the baseline is full and frozen."""
        return self._windows.baseline_full

    def observe(self, value: float) -> None:
        """Add one value; NaN is ignored (it has no place in a distribution function)."""
        if math.isnan(value):
            return
        self._windows.add(value)
        if self._baseline_sorted is None and self._windows.baseline_full:
            self._baseline_sorted = np.sort(np.asarray(self._windows.baseline, dtype=np.float64))

    def score(self) -> float:
        """The KS statistic in [0, 1]; NaN until the baseline and the recent window are full."""
        if not self._windows.ready or self._baseline_sorted is None:
            return math.nan
        return _ks_statistic(self._baseline_sorted, list(self._windows.recent))


class RollingMean:
    """The mean of the last ``size`` values, kept up to date in O(1) per value.

    Args:
        size: Values in the window.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a rolling window needs at least one value")
        self.size = size
        self._values: deque[float] = deque(maxlen=size)
        self._sum = 0.0
        self._added = 0

    def add(self, value: float) -> None:
        """Add one value, pushing out the oldest when the window is full."""
        if len(self._values) == self.size:
            self._sum -= self._values[0]
        self._values.append(value)
        self._sum += value
        self._added += 1
        # Same reason as QueryDriftDetector: bound the rounding error of a running sum.
        if self._added % self.size == 0:
            self._sum = math.fsum(self._values)

    @property
    def count(self) -> int:
        """How many values the window holds (at most ``size``)."""
        return len(self._values)

    @property
    def full(self) -> bool:
        """Whether the window holds ``size`` values."""
        return len(self._values) == self.size

    @property
    def mean(self) -> float:
        """The mean of the values in the window; NaN when it is empty."""
        return self._sum / len(self._values) if self._values else math.nan


class RollingRate(RollingMean):
    """The share of the last ``size`` events that happened: a rolling mean of 0s and 1s."""

    def record(self, happened: bool) -> None:
        """Add one event, which happened or did not."""
        self.add(1.0 if happened else 0.0)

    @property
    def rate(self) -> float:
        """The share of the window's events that happened; NaN when it is empty."""
        return self.mean


class MeanDriftDetector:
    """The mean of the first N values (frozen) against the rolling mean of the last M.

    For a quality score in [0, 1] (groundedness) or an event rate (does-not-know answers), whose
    level matters more than the shape of its distribution.

    Args:
        baseline_size: Values in the baseline (N).
        recent_size: Values in the recent window (M).
    """

    def __init__(
        self, baseline_size: int = DEFAULT_BASELINE_SIZE, recent_size: int = DEFAULT_RECENT_SIZE
    ) -> None:
        _check_sizes(baseline_size, recent_size)
        self.baseline_size = baseline_size
        self._baseline = RollingMean(baseline_size)
        self._recent = RollingMean(recent_size)

    @property
    def baseline_full(self) -> bool:
        """Whether the baseline is full and frozen."""
        return self._baseline.full

    def observe(self, value: float) -> None:
        """Add one value; NaN is ignored."""
        if math.isnan(value):
            return
        if not self._baseline.full:
            self._baseline.add(value)
        self._recent.add(value)

    @property
    def baseline_mean(self) -> float:
        """The baseline's mean; NaN until the baseline is full."""
        return self._baseline.mean if self.baseline_full else math.nan

    @property
    def recent_mean(self) -> float:
        """The mean of the last M values; NaN until the baseline is full (see the module)."""
        return self._recent.mean if self.baseline_full and self._recent.full else math.nan

    @property
    def change(self) -> float:
        """Recent mean minus baseline mean; NaN until the baseline is full."""
        return self.recent_mean - self.baseline_mean
