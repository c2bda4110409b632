"""When a TestRule evaluates (``alerting.backtest.plan``): one evaluation now, or a
backtest at the rule's interval, widened only where the interval would make more
evaluations than a backtest takes."""

from __future__ import annotations

import pytest

from alerting.backtest import MAX_EVALUATIONS, plan
from alerting.proto import pb
from otlpd.errors import BadArgument

NOW = 1_800_000_000 * 10**9
DAY = 86_400 * 10**9


def request(span_ns: int | None, step_s: float | None = None) -> pb.TestRuleRequest:
    found = pb.TestRuleRequest()
    found.end_time.FromNanoseconds(NOW)
    if span_ns is not None:
        found.start_time.FromNanoseconds(NOW - span_ns)
    if step_s is not None:
        found.step.FromNanoseconds(round(step_s * 1e9))
    return found


def test_without_a_start_it_is_one_evaluation_at_the_end() -> None:
    at, step = plan(request(None), 2.0, NOW)
    assert len(at) == 1 and step is None
    assert int(at[0].timestamp()) * 10**9 == NOW


def test_a_backtest_steps_at_the_rule_interval_when_that_is_few_enough() -> None:
    at, step = plan(request(DAY), 30.0, NOW)
    assert step == 30 * 10**9 and len(at) == 2_881
    assert (at[1] - at[0]).total_seconds() == 30


def test_too_short_an_interval_is_widened_to_the_smallest_multiple_that_fits() -> None:
    at, step = plan(request(DAY), 2.0, NOW)
    # 2 s would make 43,201 evaluations; 4 intervals of 2 s make 10,801, 3 would make 14,401
    assert step == 8 * 10**9 and len(at) == 10_801 <= MAX_EVALUATIONS
    assert (at[-1] - at[0]).total_seconds() == 86_400
    at, step = plan(request(0), 2.0, NOW)  # start == end: one evaluation at the interval
    assert step == 2 * 10**9 and len(at) == 1


def test_a_step_the_caller_gave_is_kept_or_refused() -> None:
    at, step = plan(request(DAY, step_s=60), 2.0, NOW)
    assert step == 60 * 10**9 and len(at) == 1_441
    with pytest.raises(BadArgument, match="43201 evaluations"):
        plan(request(DAY, step_s=2), 30.0, NOW)
    with pytest.raises(BadArgument, match="at least 1s"):
        plan(request(DAY, step_s=0.5), 30.0, NOW)
