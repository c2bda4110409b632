"""Which resolution serves a metric query, and where each part of its range is read."""

from __future__ import annotations

import pytest

from query.proto import pb
from query.resolution import HOUR_NS, MINUTE_NS, Retention, rollup_width, sources

DAY = 24 * HOUR_NS
NOW = 20_000 * DAY + 13 * HOUR_NS + 25 * MINUTE_NS + 7 * 10**9


def width(step: int, range_ns: int | None = None, start: int = NOW - DAY, **kw: bool) -> int | None:
    return rollup_width(
        step_ns=step,
        range_ns=range_ns,
        start_ns=start,
        now_ns=NOW,
        needs_raw_values=kw.get("raw", False),
        retention=Retention(),
    )


@pytest.mark.parametrize(
    ("step", "range_ns", "start", "expected"),
    [
        (HOUR_NS, None, NOW - 7 * DAY, HOUR_NS),  # the coarsest that divides the step
        (6 * HOUR_NS, 3 * HOUR_NS, NOW - 30 * DAY, HOUR_NS),
        (5 * MINUTE_NS, None, NOW - DAY, MINUTE_NS),
        (HOUR_NS, 90 * MINUTE_NS, NOW - DAY, MINUTE_NS),  # the range must be whole rows too
        (5 * MINUTE_NS, None, NOW - 8 * DAY, None),  # 1-minute rows are kept 7 days
        (HOUR_NS, None, NOW - 401 * DAY, None),  # 1-hour rows 400
        (30 * 10**9, None, NOW - DAY, None),
        (90 * 10**9, None, NOW - DAY, None),
        (HOUR_NS, 30 * 10**9, NOW - DAY, None),
    ],
)
def test_the_coarsest_kept_rollup_that_divides_the_step_and_range(
    step: int, range_ns: int | None, start: int, expected: int | None
) -> None:
    assert width(step, range_ns, start) == expected


def test_values_that_only_raw_points_hold_are_read_from_them() -> None:
    assert width(HOUR_NS, raw=True) is None


def test_a_range_reaching_now_is_read_in_three_parts_that_meet() -> None:
    end = NOW + 1
    complete_1m = NOW - 61 * 10**9  # the job's horizon, a minute behind
    complete_1h = NOW // HOUR_NS * HOUR_NS
    parts = sources(
        HOUR_NS,
        read_from_ns=NOW - 7 * DAY - 20 * MINUTE_NS,
        end_ns=end,
        complete_1m_ns=complete_1m,
        complete_1h_ns=complete_1h,
    )
    assert parts.resolution == pb.RESOLUTION_1H
    assert parts.read_from_ns == (NOW - 7 * DAY) // HOUR_NS * HOUR_NS  # widened down
    assert parts.hours_until_ns == complete_1h
    assert parts.minutes_until_ns == complete_1m // MINUTE_NS * MINUTE_NS
    # Before the job's first round, every part is read from the points.
    nothing = sources(
        MINUTE_NS, read_from_ns=NOW - DAY, end_ns=end, complete_1m_ns=0, complete_1h_ns=0
    )
    assert nothing.resolution == pb.RESOLUTION_1M
    assert nothing.read_from_ns == nothing.hours_until_ns == nothing.minutes_until_ns
    # A range that ended long ago is all 1-hour rows, widened to the hour it ends in.
    past = sources(
        HOUR_NS,
        read_from_ns=NOW - 3 * DAY,
        end_ns=NOW - DAY + 1,
        complete_1m_ns=complete_1m,
        complete_1h_ns=complete_1h,
    )
    assert past.hours_until_ns == past.minutes_until_ns == NOW - DAY + 1
