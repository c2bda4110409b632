"""The arithmetic of QueryMetrics, over numpy arrays: step buckets, aggregates over time,
Prometheus ``rate``/``increase``, and quantiles from histogram buckets or raw samples.

Pure functions of sorted arrays (times in nanoseconds, ascending, one sample per time):
no SQL, no protobuf, so each definition can be checked against its reference by hand.

Alignment: bucket ``k`` of a ``Grid`` covers ``[k·step, (k+1)·step)`` (multiples of the
step since the epoch, so the same query always gets the same buckets) and is reported at
its start. Aggregates over time use the samples inside the bucket. ``rate`` and
``increase`` use a window of ``range`` ending where the bucket ends, ``[end - range,
end)``: with ``range == step`` that is the bucket itself. Prometheus evaluates at step
instants over ``(t - range, t]``; we keep the half-open ``[start, end)`` of the rest of
the API, which differs only for a sample exactly on a window edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from storage.rollup_rows import Buckets, Numbers, counter_cross

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# Prometheus extrapolates a window's first and last sample to its edges when they are
# closer than this many average sample intervals (promql/functions.go, extrapolatedRate).
_EXTRAPOLATION_THRESHOLD = 1.1


@dataclass(frozen=True, slots=True)
class Grid:
    """``size`` buckets of ``step_ns``, the first starting at ``first_ns`` (a multiple of
    the step)."""

    first_ns: int
    step_ns: int
    size: int

    @classmethod
    def covering(cls, start_ns: int, end_ns: int, step_ns: int) -> Grid:
        """The aligned buckets that together cover ``[start_ns, end_ns)``."""
        first = start_ns // step_ns
        last = -(-end_ns // step_ns)  # ceiling
        return cls(first * step_ns, step_ns, max(0, last - first))

    def starts(self) -> Ints:
        return self.first_ns + np.arange(self.size, dtype=np.int64) * self.step_ns

    def index(self, times: Ints) -> Ints:
        """The bucket of each time; outside ``[0, size)`` for times off the grid."""
        return (times - self.first_ns) // self.step_ns


def deduplicated(times: Ints) -> npt.NDArray[np.bool_]:
    """The samples to keep of ascending ``times``: the first of each run of equal times.

    An exporter that retries sends a point twice and the hot tier stores both; counting
    both would double a delta sum or a histogram's increase.
    """
    keep = np.ones(times.shape[0], dtype=bool)
    if times.shape[0] > 1:
        keep[1:] = times[1:] != times[:-1]
    return keep


def default_range(times: Ints, step_ns: int) -> int:
    """The window of ``rate``/``increase`` nobody gave: the step, but at least twice the
    median sample interval so every window holds two samples (Grafana's ``$__rate_interval``
    reasoning)."""
    if times.shape[0] < 2:
        return step_ns
    return max(step_ns, int(2 * np.median(np.diff(times))))


@dataclass(slots=True)
class Moments:
    """Per bucket: sum, count, min, max and the latest sample (and its time). Moments of
    several series combine exactly, so a group's avg is the mean of all its samples."""

    total: Floats
    count: Ints
    low: Floats
    high: Floats
    last: Floats
    last_ns: Ints

    @classmethod
    def empty(cls, size: int) -> Moments:
        return cls(
            np.zeros(size),
            np.zeros(size, dtype=np.int64),
            np.full(size, np.inf),
            np.full(size, -np.inf),
            np.full(size, np.nan),
            np.full(size, np.iinfo(np.int64).min, dtype=np.int64),
        )

    def combine(self, other: Moments) -> Moments:
        later = other.last_ns > self.last_ns
        return Moments(
            self.total + other.total,
            self.count + other.count,
            np.minimum(self.low, other.low),
            np.maximum(self.high, other.high),
            np.where(later, other.last, self.last),
            np.where(later, other.last_ns, self.last_ns),
        )

    def result(self, how: str) -> Floats:
        """``how`` of each bucket (avg, sum, min, max, count, last); NaN where empty."""
        has = self.count > 0
        if how == "avg":
            value = self.total / np.where(has, self.count, 1)
        elif how == "sum":
            value = self.total.copy()
        elif how == "min":
            value = self.low.copy()
        elif how == "max":
            value = self.high.copy()
        elif how == "count":
            value = self.count.astype(np.float64)
        elif how == "last":
            value = self.last.copy()
        else:
            raise ValueError(how)
        value[~has] = np.nan
        return value


def _runs(index: Ints) -> tuple[Ints, Ints]:
    """Start and end (exclusive) positions of each run of equal values in sorted ``index``."""
    n = index.shape[0]
    change = np.ones(n, dtype=bool)
    change[1:] = index[1:] != index[:-1]
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n)
    return starts, ends


def moments(grid: Grid, times: Ints, values: Floats) -> Moments:
    """The moments of each bucket of the samples (ascending ``times``)."""
    out = Moments.empty(grid.size)
    index = grid.index(times)
    inside = (index >= 0) & (index < grid.size)
    index, times, values = index[inside], times[inside], values[inside]
    if index.shape[0] == 0:
        return out
    starts, ends = _runs(index)
    buckets = index[starts]
    out.total[buckets] = np.add.reduceat(values, starts)
    out.count[buckets] = ends - starts
    out.low[buckets] = np.minimum.reduceat(values, starts)
    out.high[buckets] = np.maximum.reduceat(values, starts)
    out.last[buckets] = values[ends - 1]
    out.last_ns[buckets] = times[ends - 1]
    return out


def _windows(grid: Grid, range_ns: int) -> tuple[Ints, Ints]:
    """``[end - range, end)`` for each bucket's end."""
    ends = grid.starts() + grid.step_ns
    return ends - range_ns, ends


def extrapolated_rate(
    grid: Grid,
    times: Ints,
    values: Floats,
    range_ns: int,
    *,
    counter: bool,
    per_second: bool,
) -> Floats:
    """Prometheus ``increase`` (or ``rate`` with ``per_second``) of a cumulative series,
    per window; NaN for a window with fewer than two samples.

    As ``extrapolatedRate`` in promql/functions.go: for a counter a drop is a reset, which
    adds the value before it; the difference between the first and last sample is then
    extrapolated to the window's edges when they lie within 1.1 average sample intervals
    (else by half an interval), and for a counter not below the point where it would
    have been zero.
    """
    out = np.full(grid.size, np.nan)
    if times.shape[0] < 2 or grid.size == 0:
        return out
    lo, hi = _windows(grid, range_ns)
    first = np.searchsorted(times, lo, side="left")
    last = np.searchsorted(times, hi, side="left") - 1
    ok = last - first >= 1
    if not ok.any():
        return out
    f, la = first[ok], last[ok]
    adjusted = values
    if counter:
        drops = np.zeros(values.shape[0])
        drops[1:] = np.where(values[1:] < values[:-1], values[:-1], 0.0)
        adjusted = values + np.cumsum(drops)
    out[ok] = _extrapolated(
        adjusted[la] - adjusted[f],
        Window(times[f], times[la], values[f], la - f + 1, lo[ok], hi[ok]),
        counter=counter,
        per_second=per_second,
        range_ns=range_ns,
    )
    return out


@dataclass(frozen=True, slots=True)
class Window:
    """What extrapolation needs of the samples of each window: the first and last
    sample's time, the first's value, how many samples, and the window's edges."""

    first_ns: Ints
    last_ns: Ints
    first_value: Floats
    samples: Ints
    lo_ns: Ints
    hi_ns: Ints


def _extrapolated(
    result: Floats, window: Window, *, counter: bool, per_second: bool, range_ns: int
) -> Floats:
    """``result`` (the increase from the first to the last sample, resets adjusted)
    extrapolated to each window's edges, as ``extrapolatedRate`` does."""
    to_start = (window.first_ns - window.lo_ns) / 1e9
    to_end = (window.hi_ns - window.last_ns) / 1e9
    sampled = (window.last_ns - window.first_ns) / 1e9
    average = sampled / (window.samples - 1)
    threshold = average * _EXTRAPOLATION_THRESHOLD
    to_start = np.where(to_start >= threshold, average / 2, to_start)
    if counter:
        first_values = window.first_value
        rising = (result > 0) & (first_values >= 0)
        to_zero = sampled * first_values / np.where(rising, result, 1.0)
        to_start = np.where(rising & (to_zero < to_start), to_zero, to_start)
    to_end = np.where(to_end >= threshold, average / 2, to_end)
    factor = (sampled + to_start + to_end) / sampled
    if per_second:
        factor = factor / (range_ns / 1e9)
    out: Floats = result * factor
    return out


def delta_increase(
    grid: Grid, times: Ints, values: Floats, range_ns: int, *, per_second: bool
) -> Floats:
    """``increase`` of a delta-temporality series: the sum of the deltas in each window
    (each delta is already an increase); ``rate`` divides it by the window's seconds."""
    out = np.full(grid.size, np.nan)
    if grid.size == 0:
        return out
    lo, hi = _windows(grid, range_ns)
    running = np.concatenate(([0.0], np.cumsum(values)))
    first = np.searchsorted(times, lo, side="left")
    end = np.searchsorted(times, hi, side="left")
    has = end > first
    total = running[end] - running[first]
    if per_second:
        total = total / (range_ns / 1e9)
    out[has] = total[has]
    return out


def raw_quantile(grid: Grid, times: Ints, values: Floats, q: float) -> Floats:
    """The ``q`` quantile of the samples of each bucket, as ``numpy.percentile``'s default
    (linear) method computes it; times need not be sorted."""
    out = np.full(grid.size, np.nan)
    index = grid.index(times)
    inside = (index >= 0) & (index < grid.size)
    index, values = index[inside], values[inside]
    if index.shape[0] == 0:
        return out
    order = np.lexsort((values, index))
    index, values = index[order], values[order]
    counts = np.bincount(index, minlength=grid.size)
    has = counts > 0
    starts = np.cumsum(counts) - counts
    position = q * (counts[has] - 1)
    below = np.floor(position).astype(np.int64)
    fraction = position - below
    above = np.minimum(below + 1, counts[has] - 1)
    a = values[starts[has] + below]
    b = values[starts[has] + above]
    out[has] = a + (b - a) * fraction
    return out


@dataclass(frozen=True, slots=True)
class Layout:
    """Histogram buckets as ``(lower, upper]`` ranges, ascending and contiguous."""

    lowers: Floats
    uppers: Floats

    @classmethod
    def explicit(cls, bounds: Sequence[float]) -> Layout:
        """OTLP explicit bounds: buckets ``(-inf, b0], (b0, b1], ..., (bn, +inf)``. As in
        Prometheus the first bucket starts at 0 when its upper bound is positive."""
        uppers = np.append(np.asarray(bounds, dtype=np.float64), np.inf)
        first = 0.0 if bounds and bounds[0] > 0 else -np.inf
        lowers = np.concatenate(([first], np.asarray(bounds, dtype=np.float64)))
        return cls(lowers, uppers)

    @classmethod
    def exponential(
        cls, scale: int, zero_threshold: float, negative: range, positive: range
    ) -> Layout:
        """OTLP exponential buckets at ``scale``: index ``i`` is ``(base^i, base^(i+1)]``
        with ``base = 2^(2^-scale)``; negatives mirrored; the zero bucket in between.
        Columns: negative indexes from highest to lowest, zero, positive ascending."""
        base = 2.0 ** (2.0**-scale)
        neg = np.arange(negative.stop - 1, negative.start - 1, -1, dtype=np.float64)
        pos = np.arange(positive.start, positive.stop, dtype=np.float64)
        lowers = np.concatenate((-(base ** (neg + 1)), [-zero_threshold], base**pos))
        uppers = np.concatenate((-(base**neg), [zero_threshold], base ** (pos + 1)))
        return cls(lowers, uppers)


def histogram_quantile(q: float, layout: Layout, counts: Floats) -> Floats:
    """Prometheus ``histogram_quantile`` for each row of ``counts`` (per-bucket counts,
    not cumulative, in ``layout``'s order); NaN for a row with no observations.

    The rank ``q·total`` is found in the first bucket whose cumulative count reaches it
    and interpolated linearly inside it; a rank in the +Inf bucket yields the highest
    finite bound, and one in a first bucket without a lower bound its upper bound
    (promql/quantile.go, bucketQuantile).
    """
    rows, width = counts.shape
    if width == 0:
        return np.full(rows, np.nan)
    cumulative = np.cumsum(counts, axis=1)
    total = cumulative[:, -1]
    rank = q * total
    bucket = np.minimum((cumulative < rank[:, None]).sum(axis=1), width - 1)
    at = np.arange(rows)
    before = np.where(bucket > 0, cumulative[at, np.maximum(bucket - 1, 0)], 0.0)
    inside = counts[at, bucket]
    fraction = np.where(inside > 0, (rank - before) / np.where(inside > 0, inside, 1), 0.0)
    lower, upper = layout.lowers[bucket], layout.uppers[bucket]
    with np.errstate(invalid="ignore"):
        value = lower + (upper - lower) * fraction
    value = np.where(np.isinf(upper), lower, value)
    value = np.where(np.isinf(lower), upper, value)
    return np.where(total > 0, value, np.nan)


def cumulative_increments(
    starts_ns: Ints, counts: Floats, *, since_ns: int
) -> tuple[Floats, npt.NDArray[np.bool_]]:
    """What each cumulative histogram point adds to its bucket counts since the previous
    point, and which points count at all.

    The increase is the difference to the previous point, or the point's own counts after
    a reset (a bucket count went down, or the start time changed). The first point has
    no previous one here: it counts whole only when its series started at or after
    ``since_ns`` (the start of what was read), else it is only the base of the next.
    """
    n = counts.shape[0]
    increments = counts.copy()
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return increments, keep
    if n > 1:
        diff = counts[1:] - counts[:-1]
        reset = (diff < 0).any(axis=1) | (starts_ns[1:] != starts_ns[:-1])
        increments[1:] = np.where(reset[:, None], counts[1:], diff)
    keep[0] = bool(starts_ns[0] > 0 and starts_ns[0] >= since_ns)
    return increments, keep


def bucket_sums(grid: Grid, times: Ints, rows: Floats) -> Floats:
    """The sum of ``rows`` (one per time, ascending) per grid bucket: (grid.size, width)."""
    out = np.zeros((grid.size, rows.shape[1]))
    index = grid.index(times)
    inside = (index >= 0) & (index < grid.size)
    index, rows = index[inside], rows[inside]
    if index.shape[0] == 0:
        return out
    starts, _ = _runs(index)
    out[index[starts]] = np.add.reduceat(rows, starts, axis=0)
    return out


def merge_layouts(layouts: Sequence[Sequence[float]]) -> tuple[list[float], list[Ints]]:
    """One set of explicit bounds for histograms of different bounds: their union, and for
    each layout the union column each of its buckets goes to.

    A bucket lands in the union bucket with its own upper bound, so cumulative counts
    stay exact at every bound a layout has (all a quantile of that layout could use);
    between them the merged histogram knows only the coarser resolution.
    """
    union = sorted({float(b) for bounds in layouts for b in bounds})
    union_array = np.asarray(union, dtype=np.float64)
    columns = [
        np.append(np.searchsorted(union_array, np.asarray(bounds, dtype=np.float64)), len(union))
        for bounds in layouts
    ]
    return union, columns


# --- rollup rows (storage.rollup_rows) ---------------------------------------------------
#
# The same answers from rows that summarize intervals of a series' points. Every step of a
# query served by rollups is a whole number of intervals, so a row lies in one step.


def row_moments(grid: Grid, rows: Numbers) -> Moments:
    """The moments of each bucket from one series' rows (ascending times): sums and
    counts add up, min and max combine, the last value is the last row's."""
    out = Moments.empty(grid.size)
    index = grid.index(rows.time)
    inside = (index >= 0) & (index < grid.size)
    index = index[inside]
    if index.shape[0] == 0:
        return out
    rows = rows.take(inside)
    starts, ends = _runs(index)
    buckets = index[starts]
    out.total[buckets] = np.add.reduceat(rows.total, starts)
    out.count[buckets] = np.add.reduceat(rows.samples, starts)
    out.low[buckets] = np.minimum.reduceat(rows.low, starts)
    out.high[buckets] = np.maximum.reduceat(rows.high, starts)
    out.last[buckets] = rows.last[ends - 1]
    out.last_ns[buckets] = rows.last_ns[ends - 1]
    return out


def row_increase(
    grid: Grid,
    rows: Numbers,
    range_ns: int,
    *,
    counter: bool,
    delta: bool,
    per_second: bool,
) -> Floats:
    """``increase`` (or ``rate``) per window ``[end - range, end)`` from one series' rows
    (ascending times), exactly as ``extrapolated_rate`` (or ``delta_increase``) computes
    it from the samples, for windows of whole rows: the rows keep each interval's sample
    count, first and last sample, and the counter increase between its samples; the
    increase across an edge between two rows of the window comes from the last sample of
    one and the first of the next."""
    out = np.full(grid.size, np.nan)
    if grid.size == 0 or not len(rows):
        return out
    lo, hi = _windows(grid, range_ns)
    first = np.searchsorted(rows.time, lo, side="left")
    end = np.searchsorted(rows.time, hi, side="left")
    if delta:
        running = np.concatenate(([0.0], np.cumsum(rows.total)))
        total = running[end] - running[first]
        if per_second:
            total = total / (range_ns / 1e9)
        has = end > first
        out[has] = total[has]
        return out
    samples = np.concatenate(([0], np.cumsum(rows.samples)))
    count = samples[end] - samples[first]
    ok = count >= 2
    if not ok.any():
        return out
    f, la = first[ok], end[ok] - 1
    if counter:
        cross = np.zeros(len(rows))
        cross[1:] = counter_cross(rows.last[:-1], rows.first[1:])
        inside = np.concatenate(([0.0], np.cumsum(rows.increase)))
        edges = np.concatenate(([0.0], np.cumsum(cross)))
        result = (inside[la + 1] - inside[f]) + (edges[la + 1] - edges[f + 1])
    else:
        result = rows.last[la] - rows.first[f]
    out[ok] = _extrapolated(
        result,
        Window(rows.first_ns[f], rows.last_ns[la], rows.first[f], count[ok], lo[ok], hi[ok]),
        counter=counter,
        per_second=per_second,
        range_ns=range_ns,
    )
    return out


def row_default_range(rows: Numbers, step_ns: int, width_ns: int) -> int:
    """``default_range`` from one series' rows: the step, but at least twice the median
    interval between samples, rounded up to whole rows (a window must hold whole rows).
    A row of n samples counts its mean interval n - 1 times; the gaps between rows count
    as they are, so for raw points (one-sample rows) this is ``default_range`` exactly,
    before the rounding."""
    if rows.samples.sum() < 2:
        return step_ns
    spans = rows.samples > 1
    intervals = np.concatenate(
        (
            (rows.last_ns[spans] - rows.first_ns[spans]) / (rows.samples[spans] - 1),
            (rows.first_ns[1:] - rows.last_ns[:-1]).astype(np.float64),
        )
    )
    # Each row's mean interval stands for its samples - 1 intervals; each gap for one.
    counts = np.concatenate((rows.samples[spans] - 1, np.ones(len(rows) - 1, dtype=np.int64)))
    wanted = max(step_ns, int(2 * repeated_median(intervals, counts)))
    return -(-wanted // width_ns) * width_ns


def repeated_median(values: Floats, counts: Ints) -> float:
    """``np.median(np.repeat(values, counts))`` without the repeats: the middle of the
    sorted values, each counted ``counts`` times. A month of a series' 1-hour rows of 60
    samples each is 720 values standing for 42,000; the repeats' median took 15% of a
    30-day QueryMetrics call (py-spy, docs/benchmarks.md)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    through = np.cumsum(counts[order])
    n = int(through[-1])

    def at(k: int) -> float:  # the k-th of the repeated values, from 0, in sorted order
        return float(ordered[np.searchsorted(through, k, side="right")])

    if n % 2:
        return at(n // 2)
    return (at(n // 2 - 1) + at(n // 2)) / 2


def bucket_steps(grid: Grid, rows: Buckets, since_ns: int, window_start_ns: int) -> Floats:
    """Per grid bucket, what ``rows`` (one layout, sorted by chain and time) added to each
    histogram bucket: every row's contribution (``Buckets.contributions``), for the rows
    that start at or after ``window_start_ns``: (grid.size, width)."""
    contributions = rows.contributions(since_ns)
    index = grid.index(rows.time)
    keep = (rows.time >= window_start_ns) & (index >= 0) & (index < grid.size)
    if not keep.all():  # each copy of a day of 100 series' bucket rows is ~15 MB
        index, contributions = index[keep], contributions[keep]
    contributions = contributions.astype(np.float64)
    width = rows.first.shape[1]
    out = np.zeros((grid.size, width))
    for column in range(width):
        out[:, column] = np.bincount(index, weights=contributions[:, column], minlength=grid.size)[
            : grid.size
        ]
    return out
