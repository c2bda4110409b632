"""The arithmetic of rollup rows against the definitions it must agree with: points merged
into minutes and then hours equal points merged into hours, and what rows contribute to
a query's steps equals what the raw points contribute (query.aggregate's rules)."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from query.aggregate import Grid, bucket_sums, cumulative_increments
from storage.rollup_rows import (
    Buckets,
    ExponentialRow,
    ExponentialState,
    Numbers,
    chain_time_order,
    exponential_buckets,
    merge_exponential,
)

S = 10**9
MINUTE, HOUR = 60 * S, 3600 * S


def random_samples(rng: np.random.Generator, series: int) -> tuple[np.ndarray, ...]:
    """Counter-like samples of a few series over three hours, with resets and duplicates."""
    ids, times, values = [], [], []
    for s in range(series):
        n = int(rng.integers(1, 400))
        t = np.sort(rng.integers(0, 3 * HOUR, n))
        v = np.cumsum(rng.integers(0, 9, n)).astype(float)
        if n > 10:
            v[n // 3 :] -= v[n // 3] - 1  # a reset to 1
            t[4] = t[3]  # stored twice
        ids.append(np.full(n, s))
        times.append(t)
        values.append(v)
    return np.concatenate(ids), np.concatenate(times), np.concatenate(values)


def by_hand(series: np.ndarray, times: np.ndarray, values: np.ndarray, width: int) -> dict:
    """Each series' interval summaries, one sample at a time: the definitions."""
    out: dict = {}
    order = np.lexsort((values, times, series))
    previous: tuple | None = None
    for s, t, v in zip(series[order], times[order], values[order], strict=True):
        if previous is not None and previous[:2] == (s, t):
            continue  # the lowest of a duplicate
        key = (int(s), int(t) // width * width)
        row = out.get(key)
        if row is None:
            row = out[key] = {"n": 0, "sum": 0.0, "min": v, "max": v, "first": (t, v), "inc": 0.0}
        elif previous is not None and previous[0] == s:
            before = previous[2]
            row["inc"] += v - before if v >= before else v
        row["n"] += 1
        row["sum"] += v
        row["min"], row["max"] = min(row["min"], v), max(row["max"], v)
        row["last"] = (t, v)
        previous = (s, t, v)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_numbers_merge_exactly_whatever_the_levels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    series, times, values = random_samples(rng, 5)
    points = Numbers.of_samples(series, times, values)
    minutes = points.merged(MINUTE)
    hours = minutes.merged(HOUR)
    direct = points.merged(HOUR)
    for name in ("series", "time", "samples", "first_ns", "last_ns"):
        np.testing.assert_array_equal(getattr(hours, name), getattr(direct, name))
    for name in ("total", "low", "high", "first", "last", "increase"):
        np.testing.assert_allclose(getattr(hours, name), getattr(direct, name))
    expected = by_hand(series, times, values, HOUR)
    assert len(expected) == len(hours)
    for i in range(len(hours)):
        row = expected[int(hours.series[i]), int(hours.time[i])]
        assert (hours.samples[i], hours.first_ns[i], hours.last_ns[i]) == (
            row["n"],
            row["first"][0],
            row["last"][0],
        )
        assert hours.total[i] == pytest.approx(row["sum"])
        assert (hours.low[i], hours.high[i]) == (row["min"], row["max"])
        assert (hours.first[i], hours.last[i]) == (row["first"][1], row["last"][1])
        assert hours.increase[i] == pytest.approx(row["inc"])


def random_histograms(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Cumulative histogram points of four series over three hours: resets (a bucket
    down, or a new start time), duplicates, and one delta series."""
    chains, times, starts, counts, delta = [], [], [], [], []
    for s in range(4):
        n = int(rng.integers(1, 300))
        t = np.sort(rng.integers(0, 3 * HOUR, n))
        c = np.cumsum(rng.integers(0, 4, (n, 5)), axis=0)
        start = np.full(n, 7 * S)
        if n > 20:
            c[n // 2 :] -= c[n // 2] - 1  # counts fall: a reset
            start[3 * n // 4 :] = 9 * S  # and a restart with a new start time
            c[3 * n // 4 :] -= c[3 * n // 4]
            t[5] = t[4]
        is_delta = s == 3
        if is_delta:
            c = rng.integers(0, 4, (n, 5))
        chains.append(np.full(n, s))
        times.append(t)
        starts.append(start)
        counts.append(c)
        delta.append(np.full(n, is_delta))
    return tuple(np.concatenate(x) for x in (chains, times, starts, counts, delta))


@pytest.mark.parametrize("seed", range(6))
def test_bucket_rows_contribute_what_their_points_do(seed: int) -> None:
    """Per query step, rows (points merged into minutes, then hours) add to each bucket
    what the raw points add by query.aggregate's rules, wherever the read starts (on an
    interval's start: rows are whole intervals)."""
    rng = np.random.default_rng(seed)
    chain, times, starts, counts, delta = random_histograms(rng)
    points = Buckets.of_points(chain, times, starts, counts, delta)
    minutes = points.merged(MINUTE)
    for rows, step, reads in (
        (minutes, 5 * MINUTE, (0, 7 * MINUTE, HOUR)),
        (minutes.merged(HOUR), HOUR, (0, HOUR, 2 * HOUR)),
    ):
        for since in reads:
            grid = Grid.covering(since, 3 * HOUR, step)
            expected = np.zeros((grid.size, 5))
            for c in range(4):
                mine = (points.chain == c) & (points.time >= since)
                t, st, co = points.time[mine], points.first_start[mine], points.first[mine]
                if points.delta[mine].any():
                    increments, keep = points.increments[mine].astype(float), np.ones(len(t), bool)
                else:
                    increments, keep = cumulative_increments(st, co.astype(float), since_ns=since)
                expected += bucket_sums(grid, t[keep], increments[keep])
            read = rows.take(rows.time >= since)
            contributions = read.contributions(since)
            found = np.zeros((grid.size, 5))
            index = grid.index(read.time)
            np.add.at(found, index, contributions)
            np.testing.assert_array_equal(found, expected)


def test_exponential_rows_merge_at_the_lowest_scale_and_keep_every_count() -> None:
    """Cumulative points whose scale drops half-way: an hour of them at the lowest scale
    adds, per bucket, what the points add once downscaled."""
    rows, pos = [], np.zeros(8, dtype=np.int64)
    for k in range(120):
        pos[k % 8] += k % 3
        scale = 3 if k < 60 else 2
        state = ExponentialState(k, 4, pos.copy(), -2, np.array([k], dtype=np.int64))
        if scale == 2:  # the same counts as an SDK would send them after downscaling
            state = ExponentialState(k, 2, pos[0::2] + pos[1::2], -1, np.array([k]))
        rows.append(ExponentialRow.of_point(1, k * 30 * S, 0, scale, 0.5, state, delta=False))
    minutes = merge_exponential(rows, MINUTE)
    (hour,) = merge_exponential(minutes, HOUR)
    assert hour.scale == 2 and hour.zero_threshold == 0.5
    assert hour.first is not None and hour.last is not None
    layout, buckets = exponential_buckets(rows)
    assert layout.scale == 2
    expected = buckets.take(np.arange(len(rows))).contributions(0)[1:].sum(axis=0)
    _, merged = exponential_buckets([hour])
    np.testing.assert_array_equal(merged.increments[0], expected)
    np.testing.assert_array_equal(merged.last[0], buckets.last[-1])
    np.testing.assert_array_equal(merged.first[0], buckets.first[0])


def _random_buckets(
    rng: np.random.Generator, n: int, width: int, *, one_point: bool = False
) -> Buckets:
    """Random rows; ``one_point``: a point a row, as the decoders build such rows (first
    and last one shared matrix, increments zero)."""
    last = rng.integers(0, 50, (n, width))
    return Buckets(
        rng.integers(0, 4, n),  # few chains and times: ties across parts
        rng.integers(0, 5, n) * MINUTE,
        rng.integers(0, 1000, n),
        rng.random(n) < 0.3,
        rng.integers(0, 1000, n),
        rng.integers(0, 1000, n),
        np.zeros((n, width), dtype=np.int64) if one_point else rng.integers(0, 50, (n, width)),
        last if one_point else rng.integers(0, 50, (n, width)),
        last,
    )


@pytest.mark.parametrize("sizes", [(7,), (0, 9), (13, 1, 8), (5, 0)])
@pytest.mark.parametrize("one_point", [(False,), (True,), (True, False)])
def test_a_sorted_union_is_the_parts_concatenated_then_sorted(
    sizes: tuple[int, ...], one_point: tuple[bool, ...]
) -> None:
    rng = np.random.default_rng(sum(sizes))
    parts = [
        _random_buckets(rng, n, 4, one_point=one_point[k % len(one_point)])
        for k, n in enumerate(sizes)
    ]
    together = Buckets.concat(parts)
    expected = together.take(np.lexsort((together.time, together.chain)))
    got = Buckets.sorted_union(parts)
    for name in (f.name for f in fields(Buckets)):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name
        assert getattr(got, name).dtype == getattr(expected, name).dtype, name
    if len(parts) > 1 and all(one_point):
        assert got.first is got.last  # placed once


@pytest.mark.parametrize(
    ("chains", "times"),
    [
        ((1, 100), (0, 1440)),  # a day of minutes: the one-key path
        ((-5, 5), (-(10**12), 10**12)),  # negative ids and times
        ((0, 3), (-(2**62), 2**62)),  # a span too wide for one key: lexsort
        ((0, 2**40), (0, 2**30)),  # ids too far apart for one key: lexsort
    ],
)
def test_chain_time_order_is_lexsorts_order(
    chains: tuple[int, int], times: tuple[int, int]
) -> None:
    """The same stable order as lexsort by chain then time, ties (a chain's rows at one
    time) kept in the order given, whichever way it is computed."""
    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 500, 20_000):
        chain = rng.integers(*chains, n, dtype=np.int64)
        time = rng.integers(*times, n, dtype=np.int64) // 7 * 7  # ties
        time[: n // 3] = time[0] if n else 0  # many ties
        expected = np.lexsort((time, chain))
        assert np.array_equal(chain_time_order(chain, time), expected)
        # Rows arriving in sorted runs, as from a heap scan.
        runs = np.concatenate([expected[k::7] for k in range(7)])
        assert np.array_equal(
            chain_time_order(chain[runs], time[runs]), np.lexsort((time[runs], chain[runs]))
        )
        # Narrower integer types are ordered alike (and do not overflow the key).
        if chains[1] < 2**31:
            assert np.array_equal(chain_time_order(chain.astype(np.int32), time), expected)
