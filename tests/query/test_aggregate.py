"""The metric math against its definitions: numpy's percentile, Prometheus's
extrapolatedRate and histogram_quantile, worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from query import aggregate
from query.aggregate import (
    Grid,
    Layout,
    default_range,
    delta_increase,
    extrapolated_rate,
    moments,
    repeated_median,
    row_default_range,
    row_increase,
    row_moments,
)
from storage.rollup_rows import Numbers

S = 10**9
T0 = 1_700_000_040 * S  # a multiple of 60 s


def test_grid_buckets_are_aligned_to_multiples_of_the_step() -> None:
    grid = Grid.covering(T0 + 5 * S, T0 + 125 * S, 60 * S)
    assert grid.first_ns == T0
    assert grid.size == 3
    times = np.array([T0, T0 + 59 * S, T0 + 60 * S, T0 + 179 * S], dtype=np.int64)
    assert grid.index(times).tolist() == [0, 0, 1, 2]


def test_moments_per_bucket_and_combined() -> None:
    grid = Grid.covering(T0, T0 + 120 * S, 60 * S)
    a = aggregate.moments(
        grid, np.array([T0 + S, T0 + 2 * S, T0 + 61 * S], dtype=np.int64), np.array([1.0, 3, 10])
    )
    b = aggregate.moments(grid, np.array([T0 + 3 * S], dtype=np.int64), np.array([8.0]))
    both = a.combine(b)
    assert both.result("avg").tolist() == [4.0, 10.0]
    assert both.result("sum").tolist() == [12.0, 10.0]
    assert both.result("min").tolist() == [1.0, 10.0]
    assert both.result("max").tolist() == [8.0, 10.0]
    assert both.result("count").tolist() == [3.0, 1.0]
    assert both.result("last").tolist() == [8.0, 10.0]
    empty = aggregate.moments(grid, np.array([], dtype=np.int64), np.array([]))
    assert np.isnan(empty.result("avg")).all()


def test_increase_over_a_counter_reset_is_prometheus_extrapolated_rate() -> None:
    grid = Grid.covering(T0, T0 + 60 * S, 60 * S)
    times = np.array([T0 + k * S for k in (5, 15, 25, 35, 45, 55)], dtype=np.int64)
    values = np.array([10.0, 20, 30, 5, 15, 25])
    # By hand: 25 - 10 + 30 (the reset adds the value before it) = 45 over 50 s of
    # samples; both edges are 5 s away (< 1.1 x 10 s), so it extrapolates to 60 s; the
    # zero point (50 x 10/45 = 11.1 s back) is farther than the window start.
    increase = aggregate.extrapolated_rate(
        grid, times, values, 60 * S, counter=True, per_second=False
    )
    assert increase.tolist() == pytest.approx([45 * 60 / 50])
    rate = aggregate.extrapolated_rate(grid, times, values, 60 * S, counter=True, per_second=True)
    assert rate.tolist() == pytest.approx([45 * 60 / 50 / 60])


def test_far_edges_extrapolate_half_an_interval_and_not_below_zero() -> None:
    grid = Grid.covering(T0, T0 + 60 * S, 60 * S)
    times = np.array([T0 + 30 * S, T0 + 40 * S, T0 + 50 * S], dtype=np.int64)
    # 20 over 20 s; start 30 s away (>= 11 s): extrapolated by 5 s; end 10 s away: whole.
    far = aggregate.extrapolated_rate(
        grid, times, np.array([100.0, 110, 120]), 60 * S, counter=True, per_second=False
    )
    assert far.tolist() == pytest.approx([20 * 35 / 20])
    # From 1 to 21 over 20 s: the zero point is 1 s before the first sample, nearer than
    # the 5 s extrapolation, so the start extrapolates by 1 s only.
    near_zero = aggregate.extrapolated_rate(
        grid, times, np.array([1.0, 11, 21]), 60 * S, counter=True, per_second=False
    )
    assert near_zero.tolist() == pytest.approx([20 * (20 + 1 + 10) / 20])
    # A gauge (not a counter) drops without a reset and may extrapolate below zero.
    gauge = aggregate.extrapolated_rate(
        grid, times, np.array([21.0, 11, 1]), 60 * S, counter=False, per_second=False
    )
    assert gauge.tolist() == pytest.approx([-20 * 35 / 20])


def test_a_window_with_one_sample_has_no_rate() -> None:
    grid = Grid.covering(T0, T0 + 120 * S, 60 * S)
    times = np.array([T0 + 10 * S, T0 + 70 * S, T0 + 80 * S], dtype=np.int64)
    out = aggregate.extrapolated_rate(
        grid, times, np.array([1.0, 2, 3]), 60 * S, counter=True, per_second=False
    )
    assert np.isnan(out[0]) and not np.isnan(out[1])


def test_delta_increase_sums_the_deltas_of_the_window() -> None:
    grid = Grid.covering(T0, T0 + 120 * S, 60 * S)
    times = np.array([T0 + 10 * S, T0 + 20 * S, T0 + 70 * S], dtype=np.int64)
    values = np.array([3.0, 4, 5])
    assert aggregate.delta_increase(grid, times, values, 60 * S, per_second=False).tolist() == [
        7.0,
        5.0,
    ]
    rate = aggregate.delta_increase(grid, times, values, 120 * S, per_second=True)
    assert rate[0] == pytest.approx(7 / 120)
    assert rate[1] == pytest.approx(12 / 120)


@pytest.mark.parametrize("q", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_raw_quantile_is_numpy_percentile_per_bucket(q: float) -> None:
    rng = np.random.default_rng(7)
    grid = Grid.covering(T0, T0 + 180 * S, 60 * S)
    times = rng.integers(T0, T0 + 180 * S, 500).astype(np.int64)
    values = rng.lognormal(3, 1, 500)
    out = aggregate.raw_quantile(grid, times, values, q)
    for k in range(3):
        inside = values[(times >= T0 + k * 60 * S) & (times < T0 + (k + 1) * 60 * S)]
        assert out[k] == pytest.approx(np.percentile(inside, q * 100))


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    layout = Layout.explicit([1.0, 2.0, 4.0])
    counts = np.array([[10.0, 10, 20, 0], [0, 0, 0, 0], [0, 0, 1, 9]])
    # Row 0, q 0.5: rank 20 reaches the cumulative 20 of bucket (1, 2]: its upper bound.
    # q 0.75: rank 30 is 10 into (2, 4]'s 20: 3. Row 2, q 0.5: rank 5 is in +Inf: 4.
    assert aggregate.histogram_quantile(0.5, layout, counts)[[0, 2]].tolist() == [2.0, 4.0]
    assert aggregate.histogram_quantile(0.75, layout, counts)[0] == pytest.approx(3.0)
    assert np.isnan(aggregate.histogram_quantile(0.5, layout, counts)[1])
    # The first bucket starts at 0 when its bound is positive: rank 5 of 10 in (0, 1].
    assert aggregate.histogram_quantile(0.125, layout, counts)[0] == pytest.approx(0.5)


def test_exponential_layout_buckets_are_powers_of_the_base() -> None:
    layout = Layout.exponential(1, 0.0, range(0, 1), range(-1, 2))
    base = 2**0.5
    assert layout.lowers.tolist() == pytest.approx([-base, 0.0, base**-1, 1.0, base])
    assert layout.uppers.tolist() == pytest.approx([-1.0, 0.0, 1.0, base, 2.0])


def test_cumulative_increments_difference_and_resets() -> None:
    starts = np.array([5, 5, 5, 9], dtype=np.int64)
    counts = np.array([[1.0, 1], [3, 2], [4, 2], [1, 0]])
    increments, keep = aggregate.cumulative_increments(starts, counts, since_ns=5)
    assert increments.tolist() == [[1, 1], [2, 1], [1, 0], [1, 0]]
    assert keep.tolist() == [True, True, True, True]
    _, keep = aggregate.cumulative_increments(starts, counts, since_ns=6)
    assert keep.tolist() == [False, True, True, True]


def test_merge_layouts_maps_each_bucket_to_its_upper_bound() -> None:
    union, columns = aggregate.merge_layouts([[1.0, 5.0], [1.0, 2.0, 5.0]])
    assert union == [1.0, 2.0, 5.0]
    assert [c.tolist() for c in columns] == [[0, 2, 3], [0, 1, 2, 3]]


def test_duplicated_times_keep_their_first_sample() -> None:
    times = np.array([1, 2, 2, 3, 3, 3], dtype=np.int64)
    assert aggregate.deduplicated(times).tolist() == [True, True, False, True, False, False]


# --- the same answers from rollup rows ----------------------------------------------------


def _counter(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A counter sampled at irregular times over six hours, with two resets."""
    times = np.unique(rng.integers(0, 6 * 3600, n)) * 10**9 + 10**12
    values = np.cumsum(rng.integers(0, 40, times.shape[0])).astype(float)
    for at in (times.shape[0] // 3, 2 * times.shape[0] // 3):
        values[at:] -= values[at] - rng.integers(0, 5)
    return times, values


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("counter", [True, False])
def test_rows_give_what_the_samples_give(seed: int, counter: bool) -> None:
    """Whatever the rows' width (minutes, hours), windows of whole rows give the raw
    answers: extrapolated_rate, delta_increase and the moments, floating point apart."""
    rng = np.random.default_rng(seed)
    times, values = _counter(rng, int(rng.integers(2, 2000)))
    series = np.zeros(times.shape[0], dtype=np.int64)
    points = Numbers.of_samples(series, times, values)
    minute, hour = 60 * 10**9, 3600 * 10**9
    for width, step, range_ns in ((minute, 5 * minute, 15 * minute), (hour, hour, 2 * hour)):
        rows = points.merged(minute).merged(width) if width == hour else points.merged(width)
        grid = Grid.covering(10**12, 10**12 + 6 * hour, step)
        for per_second in (False, True):
            want = extrapolated_rate(
                grid, times, values, range_ns, counter=counter, per_second=per_second
            )
            got = row_increase(
                grid, rows, range_ns, counter=counter, delta=False, per_second=per_second
            )
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(
            row_increase(grid, rows, range_ns, counter=True, delta=True, per_second=False),
            delta_increase(grid, times, values, range_ns, per_second=False),
        )
        raw = moments(grid, times, values)
        from_rows = row_moments(grid, rows)
        for how in ("avg", "sum", "min", "max", "count", "last"):
            np.testing.assert_allclose(from_rows.result(how), raw.result(how), rtol=1e-12)


def test_the_default_range_of_rows_is_the_samples_rounded_to_whole_rows() -> None:
    minute = 60 * 10**9
    times = np.arange(0, 3600, 61) * 10**9  # every 61 s
    points = Numbers.of_samples(np.zeros(times.shape[0], np.int64), times, np.ones(times.shape[0]))
    assert default_range(times, minute) == 122 * 10**9
    assert row_default_range(points, minute, 1) == 122 * 10**9  # raw points: the same
    assert row_default_range(points.merged(minute), minute, minute) == 3 * minute
    assert row_default_range(points.merged(minute), 3600 * 10**9, minute) == 3600 * 10**9


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1e15, allow_nan=False),
            st.integers(min_value=0, max_value=70),
        ),
        min_size=1,
        max_size=40,
    ).filter(lambda pairs: sum(c for _, c in pairs) > 0)
)
def test_the_repeated_median_is_numpys_median_of_the_repeats(
    pairs: list[tuple[float, int]],
) -> None:
    values = np.array([v for v, _ in pairs], dtype=np.float64)
    counts = np.array([c for _, c in pairs], dtype=np.int64)
    assert repeated_median(values, counts) == float(np.median(np.repeat(values, counts)))
