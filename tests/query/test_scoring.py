"""query.scoring on synthetic arrays: each score checked against its definition by hand
(numpy on the explicit window), and the cases the definitions leave open."""

from __future__ import annotations

import numpy as np
import pytest

from query import scoring

MIN = 60 * 10**9
W = 30 * MIN  # a 30-step window


def _times(n: int) -> scoring.Ints:
    return np.arange(n, dtype=np.int64) * MIN + 1_700_000_000 * 10**9


def _score(values: scoring.Floats, window_ns: int = W, min_points: int = 8) -> scoring.Scores:
    return scoring.score(
        _times(values.shape[0]), values, window_ns=window_ns, threshold=3.5, min_points=min_points
    )


def test_scores_are_their_definitions_over_the_trailing_window() -> None:
    values = np.random.default_rng(7).normal(50, 5, 80)
    scores = _score(values, window_ns=10 * MIN)
    for i in range(10, 80):
        window = values[i - 10 : i]  # [t - 10 min, t): the 10 points before, not i itself
        median = np.median(window)
        mad = np.median(np.abs(window - median))
        assert scores.mean[i] == pytest.approx(window.mean())
        assert scores.median[i] == pytest.approx(median)
        assert scores.zscore[i] == pytest.approx((values[i] - window.mean()) / window.std())
        assert scores.robust[i] == pytest.approx(0.6745 * (values[i] - median) / mad)
    assert scores.scored[8:].all()


def test_a_step_change_is_found_by_both_scores_at_the_step() -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate([rng.normal(10, 0.5, 100), rng.normal(20, 0.5, 20)])
    scores = _score(values)
    assert not scores.anomalous[:100].any()
    assert scores.anomalous[100]
    assert scores.zscore[100] >= 3.5 and scores.robust[100] >= 3.5
    runs = scoring.intervals(_times(120), scores, MIN)
    assert len(runs) == 1
    (run,) = runs
    assert run.start_ns == _times(120)[100]
    # The z-score stops flagging once a few new-level points widen the window's spread;
    # the robust score keeps flagging well after, the median staying at the old level.
    assert run.end_ns - run.start_ns < 10 * MIN
    assert scores.robust[100:110].min() >= 3.5
    last = int((run.end_ns - run.start_ns) // MIN) + 100
    assert run.max_zscore == pytest.approx(scores.zscore[100:last].max())
    assert run.max_robust == pytest.approx(scores.robust[100:last].max())


def test_steady_noise_has_no_interval() -> None:
    values = 100 + np.random.default_rng(3).uniform(-1, 1, 500)
    scores = _score(values)
    assert scores.scored[8:].all()
    assert not scores.anomalous.any()
    assert scoring.intervals(_times(500), scores, MIN) == []
    assert np.abs(scores.zscore).max() < 3.5


def test_a_step_from_a_perfectly_flat_window_scores_the_cap_with_both_scores() -> None:
    values = np.concatenate([np.full(40, 0.1), [0.1, 0.5, 0.0]])
    scores = _score(values)
    # Forty copies of 0.1 have exactly 0.1 as mean, and no spread.
    assert scores.mean[40] == 0.1 and scores.zscore[40] == 0 and scores.robust[40] == 0
    assert not scores.anomalous[40]
    assert scores.zscore[41] == scoring.SCORE_CAP and scores.robust[41] == scoring.SCORE_CAP
    assert scores.anomalous[41]
    # The window of the next point holds the 0.5: it has spread now.
    assert abs(scores.zscore[42]) < scoring.SCORE_CAP
    (run,) = scoring.intervals(_times(43), scores, MIN)
    assert run.max_zscore == scoring.SCORE_CAP


def test_a_zero_mad_falls_back_to_the_mean_absolute_deviation() -> None:
    # A mostly idle error count: the median and the MAD of the window are 0.
    values = np.zeros(30)
    values[[3, 11, 19]] = 1.0
    values = np.append(values, 5.0)
    scores = _score(values)
    window = values[:30]
    mean_ad = np.abs(window - 0).mean()
    assert scores.median[30] == 0
    assert scores.robust[30] == pytest.approx(5.0 / (1.253314 * mean_ad))
    assert scores.zscore[30] == pytest.approx((5.0 - window.mean()) / window.std())
    assert scores.anomalous[30]


def test_missing_points_are_not_scored_and_stay_out_of_windows() -> None:
    values = np.random.default_rng(5).normal(0, 1, 60)
    values[[20, 21, 22, 35]] = np.nan
    values[40] = np.inf
    scores = _score(values, window_ns=10 * MIN)
    for i in (20, 21, 22, 35, 40):
        assert not scores.scored[i] and scores.zscore[i] == 0
    # Point 25's window [15, 25) holds 7 values (three are missing): below the minimum.
    assert not scores.scored[25]
    window = values[15:25][np.isfinite(values[15:25])]
    assert scores.mean[25] == pytest.approx(window.mean())
    # Point 45's window [35, 45) skips both the NaN and the infinity.
    window = values[36:45][np.isfinite(values[36:45])]
    assert scores.scored[45]
    assert scores.zscore[45] == pytest.approx((values[45] - window.mean()) / window.std())


def test_points_are_unscored_until_their_window_holds_the_minimum() -> None:
    values = np.random.default_rng(1).normal(0, 1, 20)
    values[5] = 1e6  # would be anomalous were it scored
    scores = _score(values, min_points=8)
    assert not scores.scored[:8].any()
    assert scores.scored[8:].all()
    assert not scores.anomalous[:8].any()
    assert (scores.zscore[:8] == 0).all() and (scores.robust[:8] == 0).all()
    assert np.isnan(scores.mean[0]) and scores.mean[1] == values[0]


def test_seasonal_difference_removes_what_repeats() -> None:
    day = 1440 * MIN
    times = _times(120) + day
    earlier_times = _times(120)
    pattern = 50 + 10 * np.sin(np.arange(120) / 10)
    values = pattern.copy()
    values[100:] += 7
    earlier = pattern.copy()
    earlier[[10, 11]] = np.nan
    keep = np.ones(120, dtype=bool)
    keep[50] = False  # no earlier point at all
    diff = scoring.seasonal_difference(
        times, values, earlier_times[keep], earlier[keep], period_ns=day
    )
    assert np.isnan(diff[[10, 11, 50]]).all()
    expected = np.where(np.arange(120) >= 100, 7.0, 0.0)
    finite = np.isfinite(diff)
    assert diff[finite] == pytest.approx(expected[finite])
    scores = scoring.score(times, diff, window_ns=W, threshold=3.5, min_points=8)
    (run,) = scoring.intervals(times, scores, MIN)
    assert run.start_ns == times[100]
    # Scored raw, the sine's swings would be judged against each other instead.
    assert not scores.anomalous[:100].any()


def test_intervals_break_at_gaps_and_keep_the_sign_of_the_larger_score() -> None:
    values = np.concatenate([np.random.default_rng(2).uniform(-1, 1, 40), [-50.0, -60.0]])
    times = _times(42)
    times[41] += MIN  # a missing step between the two drops
    scores = scoring.score(times, values, window_ns=W, threshold=3.5, min_points=8)
    assert scores.anomalous[40] and scores.anomalous[41]
    runs = scoring.intervals(times, scores, MIN)
    assert [(r.start_ns, r.end_ns) for r in runs] == [
        (times[40], times[40] + MIN),
        (times[41], times[41] + MIN),
    ]
    assert runs[0].max_zscore < -3.5 and runs[0].max_robust < -3.5
