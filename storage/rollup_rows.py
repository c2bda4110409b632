"""Rollup rows of metric points, and how they merge: the arithmetic of migration 0009,
shared by the rollup job (raw points into minutes, minutes into hours) and QueryMetrics
(rows into the steps of a query).

A row summarizes the points of one series over an interval so that consecutive rows merge
*exactly*, whatever the interval: what a query computes from the merged rows is what it
would compute from the points. Two things make that work.

* The samples' moments (count, sum, min, max, first and last value with their times)
  combine by addition, min, max and order.
* Increases are kept *inside* a row only. A counter's increase between two samples
  belongs to the row of the later sample; the increase across a row's start (from the
  previous row's last sample to this row's first) is not in the row, because the previous
  row may be recomputed on its own (a late point). Whoever merges rows adds the increase
  across each edge they join, from the last state of one row and the first of the next;
  a query adds it at every edge, so a step gets the increase from the sample before it,
  as the raw points would give it. For histograms the states are bucket counts: what the
  row's points added to each bucket inside the row, and the counts of its first and last
  point (cumulative temporality; a delta point's counts are its increase already).

Resets are handled as the query side handles them for the raw points (``query.aggregate``):
a counter sample below the previous one is a reset, and the increase is the sample
itself; a histogram point whose start time changed, or with any bucket below the previous
point's, restarted, and its increase is its own counts.

Rows are struct-of-arrays (numpy), sorted by chain and time. A *chain* is the sequence of
rows whose edges join: one series for numbers, one series and bucket layout for
histograms (a histogram that changed its bounds restarts its chain, as the raw points are
read per layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Self

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def chain_time_order(chain: Ints, time: Ints) -> Ints:
    """The stable order of rows by chain, then time: ``np.lexsort((time, chain))``.

    When both fit one int64 key (chain offset times the time span, plus the time offset:
    series ids are dense and a query's span is days), one stable argsort of that key
    instead: numpy's timsort follows the sorted runs that rows arrive in (a heap scan of
    rows inserted minute by minute), where lexsort sorts twice. 140,000 rows in random
    order: 23 -> 14 ms (docs/benchmarks.md, "QueryMetrics: bucket rows sorted on one
    key")."""
    n = chain.shape[0]
    if n < 2:
        return np.arange(n)
    # In int64 whatever they came as: a narrower array times a wide span would overflow.
    chain, time = chain.astype(np.int64, copy=False), time.astype(np.int64, copy=False)
    chain_low, chain_high = int(chain.min()), int(chain.max())
    time_low, time_high = int(time.min()), int(time.max())
    span = time_high - time_low + 1
    if (chain_high - chain_low + 1) * span >= 1 << 63:
        return np.lexsort((time, chain))
    key = (chain - chain_low) * span + (time - time_low)
    return np.argsort(key, kind="stable")


def _runs(*keys: npt.NDArray[Any]) -> tuple[Ints, Ints]:
    """Start and end (exclusive) positions of each run of rows equal in every ``keys``."""
    n = keys[0].shape[0]
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    starts = np.flatnonzero(change)
    return starts, np.append(starts[1:], n).astype(np.int64)


def _group_starts(n: int, starts: Ints) -> Bools:
    mask = np.zeros(n, dtype=bool)
    mask[starts] = True
    return mask


def counter_cross(previous_last: Floats, first: Floats) -> Floats:
    """A counter's increase from one sample to the next: the difference, or after a
    reset (the next is lower) the next sample itself (Prometheus' counter rule)."""
    return np.where(first >= previous_last, first - previous_last, first)


@dataclass(frozen=True, slots=True)
class Numbers:
    """The samples of series per interval: one row per series and interval, sorted by
    series and time. For a raw sample (``of_samples``) the interval is the sample."""

    series: Ints
    time: Ints  # start of the row's interval, ns
    samples: Ints
    total: Floats
    low: Floats
    high: Floats
    first_ns: Ints
    first: Floats
    last_ns: Ints
    last: Floats
    increase: Floats  # counter increase between the samples inside the row

    def __len__(self) -> int:
        return int(self.series.shape[0])

    def take(self, index: npt.NDArray[Any]) -> Numbers:
        """The rows at ``index`` (positions or a mask)."""
        return Numbers(*(getattr(self, f.name)[index] for f in fields(self)))

    @classmethod
    def concat(cls, parts: Sequence[Numbers]) -> Numbers:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]  # rows are values: nobody writes into their arrays
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    @classmethod
    def empty(cls) -> Numbers:
        i, f = np.empty(0, dtype=np.int64), np.empty(0)
        return cls(i, i, i, f, f, f, i, f, i, f, f)

    @classmethod
    def of_samples(cls, series: Ints, times: Ints, values: Floats) -> Numbers:
        """One row per sample, sorted by series and time; of samples at the same time in
        a series (a retried export stored twice) the lowest is kept, as the query side
        keeps it (``storage.postgres.metric_reader.decode_numbers``)."""
        order = np.lexsort((values, times, series))
        series, times, values = series[order], times[order], values[order]
        keep = np.ones(series.shape[0], dtype=bool)
        keep[1:] = (series[1:] != series[:-1]) | (times[1:] != times[:-1])
        series, times, values = series[keep], times[keep], values[keep]
        ones = np.ones(series.shape[0], dtype=np.int64)
        return cls(
            series, times, ones, values, values, values, times, values, times, values,
            np.zeros(series.shape[0]),
        )  # fmt: skip

    def crosses(self) -> tuple[Floats, Bools]:
        """Each row's counter increase from the previous row of its series (0 for the
        first row of a series), and whether it has a previous row."""
        n = len(self)
        joined = np.zeros(n, dtype=bool)
        joined[1:] = self.series[1:] == self.series[:-1]
        cross = np.zeros(n)
        if n > 1:
            cross[1:] = counter_cross(self.last[:-1], self.first[1:])
        return np.where(joined, cross, 0.0), joined

    def merged(self, width_ns: int) -> Numbers:
        """Rows merged into intervals of ``width_ns`` (aligned to the epoch): the moments
        combine and each edge joined inside an interval adds its counter increase."""
        if not len(self):
            return self
        bucket = self.time // width_ns
        starts, ends = _runs(self.series, bucket)
        cross, _ = self.crosses()
        cross[starts] = 0.0  # edges between intervals stay outside the rows
        return Numbers(
            self.series[starts],
            bucket[starts] * width_ns,
            np.add.reduceat(self.samples, starts),
            np.add.reduceat(self.total, starts),
            np.minimum.reduceat(self.low, starts),
            np.maximum.reduceat(self.high, starts),
            self.first_ns[starts],
            self.first[starts],
            self.last_ns[ends - 1],
            self.last[ends - 1],
            np.add.reduceat(self.increase + cross, starts),
        )


@dataclass(frozen=True, slots=True)
class Buckets:
    """Histogram rows of one bucket layout (``width`` buckets, a dense matrix per state),
    sorted by chain and time. ``chain`` tells apart the series (and layouts) whose rows
    join; ``delta`` rows hold increments only (their first and last are unused)."""

    chain: Ints
    time: Ints  # start of the row's interval, ns
    first_ns: Ints  # time of the row's first point: orders parts within an interval
    delta: Bools
    first_start: Ints  # start time of the row's first and last point (0: none sent)
    last_start: Ints
    increments: Ints  # (rows, width): what the row's points added inside the row
    first: Ints  # (rows, width): counts of the row's first point
    last: Ints  # (rows, width): counts of its last point

    def __len__(self) -> int:
        return int(self.chain.shape[0])

    def take(self, index: npt.NDArray[Any]) -> Buckets:
        return Buckets(*(getattr(self, f.name)[index] for f in fields(self)))

    @classmethod
    def concat(cls, parts: Sequence[Buckets]) -> Buckets:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    @classmethod
    def sorted_union(cls, parts: Sequence[Buckets]) -> Buckets:
        """The rows of ``parts`` together, sorted by chain and time (stably: rows of a
        chain at the same time keep their order in ``parts``), as ``concat`` then
        ``take`` would give them, with one copy of each bucket matrix instead of two:
        each part's rows go straight to their sorted places. Those copies were half of
        the Python time of a day of 100 series at 1-minute steps (pyinstrument,
        docs/benchmarks.md)."""
        if len(parts) == 1:
            only = parts[0]
            return only.take(chain_time_order(only.chain, only.time))
        order = chain_time_order(
            np.concatenate([p.chain for p in parts]), np.concatenate([p.time for p in parts])
        )
        place = np.empty_like(order)
        place[order] = np.arange(order.shape[0])
        columns: list[npt.NDArray[Any]] = []
        # A row per point (the 1-minute rollups of one point a minute, raw points) has its
        # first and last counts in one shared matrix and no increments: the shared
        # matrix is placed once and the zeros are allocated, not placed (each placement
        # of a day of 100 series' 13 buckets is ~15 MB moved at random).
        placed: dict[tuple[int, ...], npt.NDArray[Any]] = {}
        for f in fields(cls):
            pieces = [getattr(p, f.name) for p in parts]
            if pieces[0].ndim == 1:
                columns.append(np.concatenate(pieces)[order])
                continue
            same = tuple(map(id, pieces))
            if same in placed:
                columns.append(placed[same])
                continue
            shape = (order.shape[0], *pieces[0].shape[1:])
            dtype = np.result_type(*pieces)  # as concatenate
            if not any(piece.any() for piece in pieces):
                matrix = np.zeros(shape, dtype=dtype)
            else:
                matrix = np.empty(shape, dtype=dtype)
                at = 0
                for piece in pieces:
                    matrix[place[at : at + piece.shape[0]]] = piece
                    at += piece.shape[0]
            placed[same] = matrix
            columns.append(matrix)
        return cls(*columns)

    @classmethod
    def of_points(
        cls, chain: Ints, times: Ints, starts: Ints, counts: Ints, delta: Bools
    ) -> Buckets:
        """One row per point, sorted by chain and time; of points at the same time in a
        chain the first (in the given order) is kept."""
        order = chain_time_order(chain, times)
        chain, times, starts, counts, delta = (
            chain[order], times[order], starts[order], counts[order], delta[order]
        )  # fmt: skip
        keep = np.ones(chain.shape[0], dtype=bool)
        keep[1:] = (chain[1:] != chain[:-1]) | (times[1:] != times[:-1])
        chain, times, starts, counts, delta = (
            chain[keep], times[keep], starts[keep], counts[keep], delta[keep]
        )  # fmt: skip
        counts = counts.astype(np.int64)
        increments = np.where(delta[:, None], counts, 0)
        return cls(chain, times, times, delta, starts, starts, increments, counts, counts)

    def crosses(self) -> tuple[Ints, Bools]:
        """Each row's increase from the previous row of its chain: the difference of its
        first counts to the previous row's last, or its first counts after a reset (a
        bucket went down or the start time changed); zero for delta rows and for the
        first row of a chain. Also whether the row has a previous row."""
        n = len(self)
        joined = np.zeros(n, dtype=bool)
        joined[1:] = self.chain[1:] == self.chain[:-1]
        joined &= ~self.delta
        cross = np.zeros_like(self.first)
        if n > 1:
            # The increase from the previous row, and a reset where a bucket went down (or
            # the start time changed): such a row's first point counts whole. One
            # subtraction in place and the few reset rows fixed up, rather than a
            # comparison, a subtraction and a select each over the whole matrix (9.7 ->
            # 3.7 ms for 140,000 rows of 13 buckets, a throw-away script). The rows where
            # a bucket went down are found in the flat matrix: ``.any(axis=1)`` over rows
            # 13 wide took 5.7 ms for 144,000 rows, the flat scan 1.2 ms (same script).
            np.subtract(self.first[1:], self.last[:-1], out=cross[1:])
            width = cross.shape[1]
            went_down = np.flatnonzero(cross[1:].ravel() < 0) // width
            restarted = np.flatnonzero(self.first_start[1:] != self.last_start[:-1])
            again = np.union1d(went_down, restarted).astype(np.int64) + 1
            cross[again] = self.first[again]
        cross[~joined] = 0
        return cross, joined

    def contributions(self, since_ns: int) -> Ints:
        """What each row adds to the buckets in a query that read these rows: its own
        increments plus the increase from the previous row. The first row of a chain has
        no previous row; its first point counts whole only if its series started at or
        after ``since_ns`` (the start of what was read), else it is only the base of the
        next, as ``query.aggregate.cumulative_increments`` treats the first raw point."""
        cross, joined = self.crosses()
        new = ~joined & ~self.delta & (self.first_start > 0) & (self.first_start >= since_ns)
        cross[new] = self.first[new]
        # In place: cross is this call's own matrix, and a row of one point (the common
        # 1-minute row) has no increments, so most often there is nothing to add.
        if self.increments.any():
            cross += self.increments
        return cross

    def merged(self, width_ns: int) -> Buckets:
        """Rows merged into intervals of ``width_ns`` (aligned to the epoch), per chain."""
        if not len(self):
            return self
        bucket = self.time // width_ns
        starts, ends = _runs(self.chain, bucket)
        cross, _ = self.crosses()
        cross[starts] = 0
        last = ends - 1
        return Buckets(
            self.chain[starts],
            bucket[starts] * width_ns,
            self.first_ns[starts],
            self.delta[starts],
            self.first_start[starts],
            self.last_start[last],
            np.add.reduceat(self.increments + cross, starts, axis=0),
            self.first[starts],
            self.last[last],
        )


# --- exponential histograms ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExponentialState:
    """Bucket counts of an exponential histogram at one scale: the zero bucket, and the
    positive and negative buckets from their offsets (OTLP's ``ExponentialHistogramDataPoint``
    buckets: index ``i`` is ``(base^i, base^(i+1)]`` with ``base = 2^(2^-scale)``)."""

    zero: int
    positive_offset: int
    positive: Ints
    negative_offset: int
    negative: Ints


@dataclass(frozen=True, slots=True)
class ExponentialRow:
    """One exponential-histogram row: its scale (the lowest of its points), the largest
    zero threshold of its points, and its three states at that scale (first and last are
    None for a delta row)."""

    series: int
    time: int
    first_ns: int
    delta: bool
    scale: int
    zero_threshold: float
    first_start: int
    last_start: int
    increments: ExponentialState
    first: ExponentialState | None
    last: ExponentialState | None

    @classmethod
    def of_point(  # noqa: PLR0917 (a point's fields, as OTLP has them)
        cls,
        series: int,
        time: int,
        start: int,
        scale: int,
        zero_threshold: float,
        state: ExponentialState,
        *,
        delta: bool,
    ) -> Self:
        empty = ExponentialState(0, 0, np.zeros(0, np.int64), 0, np.zeros(0, np.int64))
        return cls(
            series,
            time,
            time,
            delta,
            scale,
            zero_threshold,
            start,
            start,
            state if delta else empty,
            None if delta else state,
            None if delta else state,
        )


@dataclass(frozen=True, slots=True)
class ExponentialLayout:
    """Dense columns for exponential buckets at ``scale``: the negative indexes from the
    highest to the lowest, the zero bucket, the positive indexes ascending (the order of
    their values, as ``query.aggregate.Layout.exponential`` bounds them)."""

    scale: int
    negative: range
    positive: range

    @property
    def width(self) -> int:
        return len(self.negative) + 1 + len(self.positive)

    @property
    def zero_column(self) -> int:
        return len(self.negative)

    @classmethod
    def covering(cls, states: Sequence[tuple[int, ExponentialState]]) -> ExponentialLayout:
        """The layout at the lowest scale of ``(scale, state)`` pairs holding every bucket
        of them (a bucket at scale s is exactly two at s + 1: downscaling loses nothing
        but resolution)."""
        scale = min(s for s, _ in states)
        pos_lo = neg_lo = 2**62
        pos_hi = neg_hi = -(2**62)
        for s, state in states:
            shift = s - scale
            if state.positive.shape[0]:
                pos_lo = min(pos_lo, state.positive_offset >> shift)
                pos_hi = max(
                    pos_hi, ((state.positive_offset + state.positive.shape[0] - 1) >> shift) + 1
                )
            if state.negative.shape[0]:
                neg_lo = min(neg_lo, state.negative_offset >> shift)
                neg_hi = max(
                    neg_hi, ((state.negative_offset + state.negative.shape[0] - 1) >> shift) + 1
                )
        positive = range(pos_lo, pos_hi) if pos_hi > pos_lo else range(0)
        negative = range(neg_lo, neg_hi) if neg_hi > neg_lo else range(0)
        return cls(scale, negative, positive)

    def dense(self, scale: int, state: ExponentialState) -> Ints:
        """``state`` (at ``scale`` >= this layout's) as a row of this layout's columns."""
        out = np.zeros(self.width, dtype=np.int64)
        shift = scale - self.scale
        zero = self.zero_column
        if state.positive.shape[0]:
            index = (state.positive_offset + np.arange(state.positive.shape[0])) >> shift
            np.add.at(out, zero + 1 + (index - self.positive.start), state.positive)
        if state.negative.shape[0]:
            index = (state.negative_offset + np.arange(state.negative.shape[0])) >> shift
            np.add.at(out, zero - 1 - (index - self.negative.start), state.negative)
        out[zero] += state.zero
        return out

    def state(self, row: Ints) -> ExponentialState:
        """A dense row back as a state at this layout's scale (offsets at the layout's
        lowest indexes, the arrays spanning every index of the layout)."""
        zero = self.zero_column
        return ExponentialState(
            int(row[zero]),
            self.positive.start,
            row[zero + 1 :].copy(),
            self.negative.start,
            row[:zero][::-1].copy(),
        )


def exponential_buckets(rows: Sequence[ExponentialRow]) -> tuple[ExponentialLayout, Buckets]:
    """``rows`` (sorted by series and time) as dense ``Buckets`` over one layout that
    covers them all (the lowest scale among them); the chain is the series."""
    states = [(r.scale, s) for r in rows for s in (r.increments, r.first, r.last) if s is not None]
    layout = (
        ExponentialLayout.covering(states) if states else ExponentialLayout(0, range(0), range(0))
    )

    def matrix(pick: str) -> Ints:
        out = np.zeros((len(rows), layout.width), dtype=np.int64)
        for i, r in enumerate(rows):
            state = getattr(r, pick)
            if state is not None:
                out[i] = layout.dense(r.scale, state)
        return out

    return layout, Buckets(
        np.array([r.series for r in rows], dtype=np.int64),
        np.array([r.time for r in rows], dtype=np.int64),
        np.array([r.first_ns for r in rows], dtype=np.int64),
        np.array([r.delta for r in rows], dtype=bool),
        np.array([r.first_start for r in rows], dtype=np.int64),
        np.array([r.last_start for r in rows], dtype=np.int64),
        matrix("increments"),
        matrix("first"),
        matrix("last"),
    )


def merge_exponential(rows: Sequence[ExponentialRow], width_ns: int) -> list[ExponentialRow]:
    """``rows`` (sorted by series and time) merged into intervals of ``width_ns``: each
    interval's rows at the lowest scale among them."""
    out: list[ExponentialRow] = []
    start = 0
    for i in range(1, len(rows) + 1):
        if i < len(rows) and (
            rows[i].series == rows[start].series
            and rows[i].time // width_ns == rows[start].time // width_ns
        ):
            continue
        group = rows[start:i]
        start = i
        layout, buckets = exponential_buckets(group)
        merged = buckets.merged(width_ns)
        delta = bool(merged.delta[0])
        out.append(
            ExponentialRow(
                group[0].series,
                int(merged.time[0]),
                group[0].first_ns,
                delta,
                layout.scale,
                max(r.zero_threshold for r in group),
                int(merged.first_start[0]),
                int(merged.last_start[0]),
                layout.state(merged.increments[0]),
                None if delta else layout.state(merged.first[0]),
                None if delta else layout.state(merged.last[0]),
            )
        )
    return out
