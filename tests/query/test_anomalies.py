"""DetectAnomalies end to end: gauges and spans sent through the real OTLP receiver, scored
over the query port by one server shared by the module (each test its own metric)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2

from query.convert import timestamp
from query.proto import pb, pb_grpc
from tests.conftest import RunningOtlpd, start_otlpd_thread
from tests.query.test_metrics import _gauge, _send
from tests.query.test_traces import S, send_spans

SECOND = 10**9
MINUTE = 60 * SECOND
DAY = 86_400 * SECOND
MS = 1_000_000
Seasonality = pb.DetectAnomaliesRequest


@pytest.fixture(scope="module")
def server(shared_database: str) -> Iterator[RunningOtlpd]:
    """Accepts records two days old (for a day of seasonality) and rolls spans up at once."""
    running = start_otlpd_thread(shared_database, accept_past="2d", rollup_interval="1s")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def query(server: RunningOtlpd) -> Iterator[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as channel:
        yield pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]


def _t0() -> int:
    """A 10-minute boundary 2.5 hours ago or more: 120 one-minute points fit before now."""
    return (time.time_ns() - 150 * MINUTE) // (10 * MINUTE) * (10 * MINUTE)


def _series(seed: int, step_at: int | None = None, n: int = 120) -> list[float]:
    """100 with small deterministic noise, 120 from ``step_at`` on."""
    values = 100 + np.random.default_rng(seed).uniform(-1, 1, n)
    if step_at is not None:
        values[step_at:] += 20
    return [float(v) for v in values]


def _send_gauge(
    server: RunningOtlpd, name: str, t0: int, values: list[float], project: str = "", **labels: str
) -> None:
    points = [(t0 + k * MINUTE + SECOND, v, labels) for k, v in enumerate(values)]
    _send(server, [_gauge(name, points)], project=project)


def _metric(name: str, start: int, end: int, **fields: Any) -> pb.MetricQuery:
    return pb.MetricQuery(
        metric_name=name,
        start_time=timestamp(start),
        end_time=timestamp(end),
        step=duration_pb2.Duration(seconds=60),
        **fields,
    )


def _detect(query: Any, project: str = "default", **fields: Any) -> pb.DetectAnomaliesResponse:
    answer: pb.DetectAnomaliesResponse = query.DetectAnomalies(
        pb.DetectAnomaliesRequest(**fields), metadata=(("x-otlpd-project", project),)
    )
    return answer


def _ns(ts: Any) -> int:
    return int(ts.seconds) * SECOND + int(ts.nanos)


def test_a_step_change_in_a_gauge_is_found_with_both_scores(
    server: RunningOtlpd, query: Any
) -> None:
    t0 = _t0()
    _send_gauge(server, "queue.depth", t0, _series(1, step_at=110), host="a")
    answer = _detect(query, metric=_metric("queue.depth", t0, t0 + 120 * MINUTE))
    assert answer.step.seconds == 60
    (series,) = answer.series
    assert dict(series.labels) == {"host": "a", "service.name": "svc"}
    assert len(series.points) == 120
    assert [_ns(p.time) for p in series.points] == [t0 + k * MINUTE for k in range(120)]
    # Nothing was sent before t0: the first points warm up, then everything is scored.
    assert [p.scored for p in series.points[:9]] == [False] * 8 + [True]
    assert not any(p.anomalous for p in series.points[:110])
    (interval,) = series.intervals
    assert _ns(interval.start_time) == t0 + 110 * MINUTE
    assert t0 + 111 * MINUTE <= _ns(interval.end_time) <= t0 + 120 * MINUTE
    assert interval.max_zscore >= 3.5 and interval.max_robust_score >= 3.5
    step = series.points[110]
    assert step.anomalous and step.zscore >= 3.5 and step.robust_score >= 3.5
    assert step.scored_value == step.value and 99 <= step.mean <= 101 and 99 <= step.median <= 101

    # A range starting late: its first points are scored against the window before it.
    late = _detect(query, metric=_metric("queue.depth", t0 + 60 * MINUTE, t0 + 120 * MINUTE))
    (series,) = late.series
    assert len(series.points) == 60 and all(p.scored for p in series.points)
    assert [_ns(i.start_time) for i in series.intervals] == [t0 + 110 * MINUTE]


def test_a_steady_gauge_has_no_interval(server: RunningOtlpd, query: Any) -> None:
    t0 = _t0()
    _send_gauge(server, "steady", t0, _series(2), host="a")
    _send_gauge(server, "steady", t0, _series(3), host="b")
    answer = _detect(query, metric=_metric("steady", t0, t0 + 120 * MINUTE), threshold=3.0)
    assert [s.labels["host"] for s in answer.series] == ["a", "b"]
    for series in answer.series:
        assert all(p.scored for p in series.points[8:])
        assert not any(p.anomalous for p in series.points)
        assert not series.intervals
    # The metric engine's group_by applies: both hosts averaged into one series.
    grouped = _detect(
        query,
        metric=_metric("steady", t0, t0 + 120 * MINUTE, group_by=["service.name"]),
        window=duration_pb2.Duration(seconds=20 * 60),
    )
    (series,) = grouped.series
    assert dict(series.labels) == {"service.name": "svc"} and not series.intervals
    assert series.points[50].value == pytest.approx((_series(2)[50] + _series(3)[50]) / 2)


def test_a_second_project_sees_no_series_of_the_first(server: RunningOtlpd, query: Any) -> None:
    t0 = _t0()
    _send_gauge(server, "tenant.load", t0, _series(4, step_at=110), project="p1")
    metric = _metric("tenant.load", t0, t0 + 120 * MINUTE)
    (mine,) = _detect(query, "p1", metric=metric).series
    assert [_ns(i.start_time) for i in mine.intervals] == [t0 + 110 * MINUTE]
    assert not _detect(query, "p2", metric=metric).series
    assert not _detect(query, metric=metric).series  # the default project
    # The request's project_id is the project when no metadata names one.
    for project, expected in (("p1", 1), ("p2", 0)):
        request = pb.DetectAnomaliesRequest(project_id=project, metric=metric)
        by_field = query.DetectAnomalies(request)
        assert len(by_field.series) == expected


def test_day_seasonality_scores_the_difference_from_yesterday(
    server: RunningOtlpd, query: Any
) -> None:
    t0 = _t0()
    # Every day at t0 + 60 min the value jumps for 20 minutes (a daily batch job); today
    # it also rises at t0 + 110 min, which yesterday it did not.
    daily = np.array(_series(5))
    daily[60:80] += 30
    today = daily + np.random.default_rng(6).uniform(-0.5, 0.5, 120)
    today[110:] += 20
    _send_gauge(server, "batch.load", t0 - DAY, [float(v) for v in daily])
    _send_gauge(server, "batch.load", t0, [float(v) for v in today])
    metric = _metric("batch.load", t0, t0 + 120 * MINUTE)

    (plain,) = _detect(query, metric=metric).series
    assert [_ns(i.start_time) for i in plain.intervals] == [t0 + 60 * MINUTE, t0 + 110 * MINUTE]

    (seasonal,) = _detect(query, metric=metric, seasonality=Seasonality.SEASONALITY_DAY).series
    assert [_ns(i.start_time) for i in seasonal.intervals] == [t0 + 110 * MINUTE]
    point = seasonal.points[65]
    assert point.value == pytest.approx(today[65])
    assert point.scored_value == pytest.approx(today[65] - daily[65])
    # Nothing a week ago: no point has a difference to score.
    (weekly,) = _detect(query, metric=metric, seasonality=Seasonality.SEASONALITY_WEEK).series
    assert len(weekly.points) == 120
    assert not any(p.scored for p in weekly.points) and not weekly.intervals
    assert all(np.isnan(p.scored_value) for p in weekly.points)


def _refused(query: Any, **fields: Any) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        query.DetectAnomalies(pb.DetectAnomaliesRequest(**fields))
    details = str(caught.value.details())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, details
    return details


def test_bad_arguments_are_refused_naming_the_field(query: Any) -> None:
    t0 = _t0()
    metric = _metric("queue.depth", t0, t0 + 120 * MINUTE)
    assert _refused(query).startswith("source:")
    assert _refused(query, metric=metric, threshold=-1).startswith("threshold:")
    assert _refused(query, metric=metric, window=duration_pb2.Duration(seconds=-60)).startswith(
        "window:"
    )
    assert _refused(query, metric=metric, window=duration_pb2.Duration(seconds=60)).startswith(
        "window:"
    )
    assert _refused(query, metric=metric, seasonality=99).startswith("seasonality:")
    odd = _metric("queue.depth", t0, t0 + 120 * MINUTE)
    odd.step.seconds = 7 * 60  # does not divide a day
    assert _refused(query, metric=odd, seasonality=Seasonality.SEASONALITY_DAY).startswith(
        "seasonality:"
    )
    assert _refused(query, metric=pb.MetricQuery()).startswith("metric.metric_name:")
    backwards = _metric("queue.depth", t0 + MINUTE, t0)
    assert _refused(query, metric=backwards).startswith("metric.end_time:")
    assert _refused(query, red=pb.RedSeriesQuery()).startswith("red.service:")
    unknown = pb.RedSeriesQuery(service="x", signal=42)  # type: ignore[arg-type]
    assert _refused(query, red=unknown).startswith("red.signal:")


def test_rising_latency_of_a_service_is_found_in_its_red_series(
    server: RunningOtlpd, query: Any
) -> None:
    t0 = _t0()
    trace = os.urandom(16)
    spans = [
        S(
            trace,
            "GET /cart",
            t0 + minute * MINUTE + k * SECOND,
            (200 if minute >= 55 else 10 + (k % 3)) * MS,
        )
        for minute in range(60)
        for k in range(4)
    ]
    send_spans(server, spans, service="cart")
    red = pb.RedSeriesQuery(
        service="cart",
        signal=pb.RedSeriesQuery.SIGNAL_P95,
        start_time=timestamp(t0),
        end_time=timestamp(t0 + 60 * MINUTE),
    )
    deadline = time.monotonic() + 20
    while True:  # the rollup job takes the spans' minutes within a round or two
        answer = _detect(query, red=red)
        if (answer.series and len(answer.series[0].points) == 60) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.step.seconds == 60
    (series,) = answer.series
    assert dict(series.labels) == {"service.name": "cart"}
    assert len(series.points) == 60
    assert series.points[55].value == pytest.approx(0.2, rel=0.1)  # seconds
    assert [_ns(i.start_time) for i in series.intervals] == [t0 + 55 * MINUTE]
    rate = _detect(
        query,
        red=pb.RedSeriesQuery(service="cart", start_time=red.start_time, end_time=red.end_time),
    )
    (series,) = rate.series
    assert series.points[10].value == pytest.approx(4 / 60)
    # Before t0 the service had no requests: a rate of 0, from which t0's traffic departs.
    assert [_ns(i.start_time) for i in series.intervals] == [t0]


def test_red_steps_the_rollups_do_not_hold_yet_are_left_out(
    server: RunningOtlpd, query: Any
) -> None:
    """The server rolls a minute up 60 s after it ends (the default delay): a range ending
    now must not read its last minutes as a drop to no traffic."""
    now = time.time_ns()
    spans = [S(os.urandom(16), "GET /", now - k * 20 * SECOND) for k in range(30)]
    send_spans(server, spans, service="recent")
    red = pb.RedSeriesQuery(
        service="recent",
        start_time=timestamp(now - 20 * MINUTE),
        end_time=timestamp(now),
        step=duration_pb2.Duration(seconds=60),
    )
    deadline = time.monotonic() + 20
    while True:  # until the rollups hold the older of the spans' minutes
        answer = _detect(query, red=red)
        if (answer.series and answer.series[0].points) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (series,) = answer.series
    until = query.GetServiceStats(pb.GetServiceStatsRequest(limit=1)).complete_until
    assert until.seconds < now // SECOND - 59  # the delay holds the last minute back
    assert series.points
    assert all(_ns(p.time) + MINUTE <= _ns(until) for p in series.points)
    assert all(p.value > 0 for p in series.points if _ns(p.time) >= now - 9 * MINUTE)
