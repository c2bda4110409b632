"""The arithmetic of DetectAnomalies, over numpy arrays: trailing-window z-scores and
robust (median/MAD) scores, seasonal differences, and the runs of anomalous points.

Pure functions of time-ordered arrays (times in nanoseconds, ascending, one value per
time; NaN where a point has no value, an infinity treated alike): no SQL, no protobuf,
so each definition can be checked by hand.

Each point is scored against its *trailing window*: the points with a value whose time
lies in ``[t - window, t)``, the point itself excluded (a spike must not dilute the
baseline it is measured against). Points without a value are never scored and never
enter a window. A point is ``scored`` only when its window holds at least
``min_points`` values; before that (the warm-up, or after a long gap) its scores are 0.

- ``zscore = (x - mean) / std``, the window's mean and population standard deviation.
- ``robust = 0.6745 (x - median) / MAD`` (Iglewicz and Hoaglin's modified z-score; 0.6745
  is the 0.75 quantile of the standard normal, so MAD / 0.6745 estimates sigma). When the
  MAD is 0 (more than half the window equals its median: a mostly idle error count) we
  fall back to ``(x - median) / (1.253314 · MeanAD)``, the mean absolute deviation around
  the median, which estimates sigma through sqrt(pi/2) (the fallback of IBM SPSS
  Modeler's and others' modified z-score).
- A window without spread at all (every value equal, or MeanAD 0) scores a point equal
  to its centre 0 and any other point ``±SCORE_CAP``: a flat line that steps must be
  found, and an infinity does not survive every client (JSON). Every score is clipped to
  ``±SCORE_CAP`` for the same reason.

A point is anomalous when it is scored and both ``|zscore|`` and ``|robust|`` reach the
threshold. The z-score alone is swayed by the outliers of its window; the robust score
alone calls every blip of a mostly-flat series anomalous; asking both keeps what they
agree on. One consequence worth knowing: after a step, the z-score stops flagging once a
few of the new level's points are in the window (they raise its spread), so the
interval of a step covers its first points, not the whole new level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

SCORE_CAP: Final = 1e9  # |score| of a departure from a window without spread
MAD_SCALE: Final = 0.6745  # the standard normal's 0.75 quantile: sigma ~ MAD / 0.6745
MEAN_AD_SCALE: Final = 1.253314  # sqrt(pi / 2): sigma ~ 1.253314 * mean absolute deviation
# Window cells (points x window length) sorted at once: a few MB of float64 per block,
# so a long window over many points never allocates its whole matrix.
_BLOCK_CELLS: Final = 1 << 18


@dataclass(frozen=True, slots=True)
class Scores:
    """Per input point. ``mean`` and ``median`` are those of whatever window the point
    has (NaN when it is empty); ``zscore`` and ``robust`` are 0 unless ``scored``."""

    mean: Floats
    median: Floats
    zscore: Floats
    robust: Floats
    scored: Bools
    anomalous: Bools

    def subset(self, keep: Ints | Bools) -> Scores:
        """The scores of the points ``keep`` selects (positions or a mask)."""
        return Scores(
            self.mean[keep],
            self.median[keep],
            self.zscore[keep],
            self.robust[keep],
            self.scored[keep],
            self.anomalous[keep],
        )


@dataclass(frozen=True, slots=True)
class Interval:
    """A run of anomalous points: ``[start_ns, end_ns)``, ``end_ns`` the end of the last
    one's step. The max scores are the run's largest in magnitude, with their sign (up
    or down)."""

    start_ns: int
    end_ns: int
    max_zscore: float
    max_robust: float


def seasonal_difference(
    times: Ints, values: Floats, earlier_times: Ints, earlier_values: Floats, period_ns: int
) -> Floats:
    """``values`` minus the value at ``time - period_ns`` of the earlier series; NaN where
    either is missing. Both series are ascending and on grids the period maps onto each
    other (the step divides the period), so points match by exact time."""
    out = np.full(times.shape[0], np.nan)
    if times.shape[0] == 0 or earlier_times.shape[0] == 0:
        return out
    wanted = times - period_ns
    at = np.searchsorted(earlier_times, wanted, side="left")
    inside = at < earlier_times.shape[0]
    found = np.zeros(times.shape[0], dtype=bool)
    found[inside] = earlier_times[at[inside]] == wanted[inside]
    out[found] = values[found] - earlier_values[at[found]]
    return out


def score(
    times: Ints, values: Floats, *, window_ns: int, threshold: float, min_points: int
) -> Scores:
    """Every point of ``values`` (ascending ``times``) scored against its trailing window."""
    n = times.shape[0]
    mean = np.full(n, np.nan)
    median = np.full(n, np.nan)
    zscore = np.zeros(n)
    robust = np.zeros(n)
    scored = np.zeros(n, dtype=bool)
    present = np.flatnonzero(np.isfinite(values))
    if present.shape[0] > 0:
        t, x = times[present], values[present]
        first = np.searchsorted(t, t - window_ns, side="left")
        counts = np.arange(t.shape[0]) - first
        stats = _window_stats(x, first, counts)
        mean[present], median[present] = stats.mean, stats.median
        ok = counts >= max(1, min_points)
        scored[present] = ok
        zscore[present[ok]] = _ratio(x[ok] - stats.mean[ok], stats.std[ok], 1.0)
        by_mad = stats.mad[ok] > 0
        spread = np.where(by_mad, stats.mad[ok], MEAN_AD_SCALE * stats.mean_ad[ok])
        scale = np.where(by_mad, MAD_SCALE, 1.0)
        robust[present[ok]] = _ratio(x[ok] - stats.median[ok], spread, scale)
    anomalous = scored & (np.abs(zscore) >= threshold) & (np.abs(robust) >= threshold)
    return Scores(mean, median, zscore, robust, scored, anomalous)


def intervals(times: Ints, scores: Scores, step_ns: int) -> list[Interval]:
    """The runs of anomalous points on consecutive steps: a point that is not anomalous,
    or a step without a point, ends a run."""
    hits = np.flatnonzero(scores.anomalous)
    if hits.shape[0] == 0:
        return []
    t = times[hits]
    breaks = np.flatnonzero(np.diff(t) != step_ns) + 1
    out = []
    for run in np.split(np.arange(hits.shape[0]), breaks):
        at = hits[run]
        z, r = scores.zscore[at], scores.robust[at]
        out.append(
            Interval(
                start_ns=int(t[run[0]]),
                end_ns=int(t[run[-1]]) + step_ns,
                max_zscore=float(z[np.argmax(np.abs(z))]),
                max_robust=float(r[np.argmax(np.abs(r))]),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class _WindowStats:
    mean: Floats
    std: Floats
    median: Floats
    mad: Floats
    mean_ad: Floats  # around the median


def _ratio(deviation: Floats, spread: Floats, scale: Floats | float) -> Floats:
    """``scale · deviation / spread``, clipped to ±SCORE_CAP; a zero spread gives 0 for
    no deviation and the cap otherwise."""
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = scale * deviation / spread
    flat = spread == 0
    raw = np.where(flat, np.sign(deviation) * SCORE_CAP, raw)
    return np.clip(raw, -SCORE_CAP, SCORE_CAP)


def _window_stats(x: Floats, first: Ints, counts: Ints) -> _WindowStats:
    """Mean, std, median, MAD and MeanAD of ``x[first[i] : first[i] + counts[i]]`` for
    every ``i`` (NaN for an empty window), by sorting each window as a row of a matrix,
    in blocks of rows."""
    m = x.shape[0]
    out = _WindowStats(*(np.full(m, np.nan) for _ in range(5)))
    width = int(counts.max()) if m else 0
    if width == 0:
        return out
    rows = max(1, _BLOCK_CELLS // width)
    columns = np.arange(width)
    for lo in range(0, m, rows):
        hi = min(m, lo + rows)
        c = counts[lo:hi]
        inside = columns[None, :] < c[:, None]
        window = np.where(inside, x[np.minimum(first[lo:hi, None] + columns, m - 1)], np.nan)
        window.sort(axis=1)  # NaN last: the values fill the first c columns
        has = c > 0
        size = np.maximum(c, 1)
        centre = _middle(window, size)
        total = np.where(inside, window, 0.0).sum(axis=1)
        mean = total / size
        lowest = window[:, 0]
        highest = window[np.arange(hi - lo), size - 1]
        flat = lowest == highest
        # A window of equal values has exactly that mean and no spread (the sum of n
        # copies of 0.1 divided by n is not always 0.1).
        mean = np.where(flat, lowest, mean)
        deviation = np.where(inside, window - mean[:, None], 0.0)
        std = np.sqrt((deviation**2).sum(axis=1) / size)
        std = np.where(flat, 0.0, std)
        spread = np.abs(window - centre[:, None])  # NaN stays last in every row
        mean_ad = np.where(inside, spread, 0.0).sum(axis=1) / size
        spread.sort(axis=1)
        mad = _middle(spread, size)
        for name, value in (
            ("mean", mean),
            ("std", std),
            ("median", centre),
            ("mad", mad),
            ("mean_ad", mean_ad),
        ):
            getattr(out, name)[lo:hi] = np.where(has, value, np.nan)
    return out


def _middle(sorted_rows: Floats, size: Ints) -> Floats:
    """The median of the first ``size[i]`` values of each sorted row."""
    at = np.arange(sorted_rows.shape[0])
    return 0.5 * (sorted_rows[at, (size - 1) // 2] + sorted_rows[at, size // 2])
