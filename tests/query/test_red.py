"""GetServiceStats over spans sent through the real OTLP receiver, rolled up by the job."""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2

from query.convert import timestamp
from query.proto import pb
from tests.conftest import RunningOtlpd
from tests.query.conftest import wait_rolled_up
from tests.query.test_traces import S, send_spans

MINUTE = 60 * 10**9
SERVER, CLIENT, CONSUMER, INTERNAL = 2, 3, 5, 1


def ns(d: duration_pb2.Duration) -> int:
    return d.seconds * 10**9 + d.nanos


@pytest.fixture(scope="module")
def sent(rolling_otlpd: RunningOtlpd, rolling_query: Any) -> dict[str, Any]:
    """Ten minutes of "api" requests with log-normal durations, a little of "worker",
    and spans RED must not count; the same kind of data in project "other"."""
    rng = np.random.default_rng(7)
    t0 = (time.time_ns() - 60 * MINUTE) // MINUTE * MINUTE
    durations = np.rint(rng.lognormal(np.log(20e6), 0.8, 3000)).astype(np.int64)
    starts = t0 + rng.integers(0, 10 * MINUTE, len(durations))
    errors = rng.random(len(durations)) < 0.05
    spans = [
        S(
            trace_id=rng.bytes(16),
            name="GET /cart" if i % 3 else "POST /pay",
            start_ns=int(starts[i]),
            duration_ns=int(durations[i]),
            error=bool(errors[i]),
            kind=CONSUMER if i % 10 == 0 else SERVER,
        )
        for i in range(len(durations))
    ]
    ignored = [
        S(trace_id=rng.bytes(16), name="db", start_ns=t0 + i * MINUTE // 10, kind=kind)
        for i, kind in enumerate([CLIENT, INTERNAL] * 20)
    ]
    for chunk in range(0, len(spans), 500):
        send_spans(rolling_otlpd, spans[chunk : chunk + 500], service="api")
    send_spans(rolling_otlpd, ignored, service="api")
    send_spans(rolling_otlpd, [S(rng.bytes(16), "tick", t0 + MINUTE)], service="worker")
    send_spans(
        rolling_otlpd,
        [S(rng.bytes(16), "secret", t0 + MINUTE)],
        service="intruder",
        project="other",
    )
    wait_rolled_up(rolling_query, t0 + 10 * MINUTE)
    wait_rolled_up(rolling_query, t0 + 10 * MINUTE, project="other")
    return {"t0": t0, "durations": durations, "errors": errors, "spans": spans}


def stats(query: Any, sent: dict[str, Any], **fields: Any) -> pb.GetServiceStatsResponse:
    t0 = sent["t0"]
    request = pb.GetServiceStatsRequest(
        start_time=timestamp(t0), end_time=timestamp(t0 + 10 * MINUTE), **fields
    )
    return query.GetServiceStats(request)  # type: ignore[no-any-return]


def test_percentiles_agree_with_numpy_within_the_promised_error(
    rolling_query: Any, sent: dict[str, Any]
) -> None:
    answer = stats(rolling_query, sent, service="api")
    (api,) = answer.services
    durations = sent["durations"]
    assert api.stats.requests == len(durations)  # client and internal spans are not requests
    assert api.stats.errors == int(sent["errors"].sum())
    assert api.stats.error_rate == pytest.approx(sent["errors"].mean())
    assert api.stats.request_rate == pytest.approx(len(durations) / 600)
    assert ns(api.stats.mean) == pytest.approx(durations.mean(), abs=1)
    tolerance = answer.percentile_relative_error
    assert 0 < tolerance < 0.05
    for field, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        exact = float(np.percentile(durations, q))
        assert ns(getattr(api.stats, field)) == pytest.approx(exact, rel=tolerance), field


def test_steps_cover_the_range_and_add_up_to_the_totals(
    rolling_query: Any, sent: dict[str, Any]
) -> None:
    answer = stats(rolling_query, sent, service="api", step=duration_pb2.Duration(seconds=60))
    (api,) = answer.services
    assert len(api.points) == 10
    assert [p.time.seconds * 10**9 for p in api.points] == [
        sent["t0"] + i * MINUTE for i in range(10)
    ]
    assert sum(p.stats.requests for p in api.points) == api.stats.requests
    assert sum(p.stats.errors for p in api.points) == api.stats.errors
    minute_of = (np.array([s.start_ns for s in sent["spans"]]) - sent["t0"]) // MINUTE
    for i, point in enumerate(api.points):
        assert point.stats.requests == int((minute_of == i).sum())
        assert point.stats.request_rate == pytest.approx(point.stats.requests / 60)


def test_operations_are_broken_down_by_name_and_kind(
    rolling_query: Any, sent: dict[str, Any]
) -> None:
    (api,) = stats(rolling_query, sent, service="api", operations=True).services
    got = {(op.operation, op.span_kind): op.stats.requests for op in api.operations}
    expected: dict[tuple[str, int], int] = {}
    for s in sent["spans"]:
        expected[(s.name, s.kind)] = expected.get((s.name, s.kind), 0) + 1
    assert got == expected
    assert sum(got.values()) == api.stats.requests


def test_services_are_paged_by_name_and_projects_never_mix(
    rolling_query: Any, sent: dict[str, Any]
) -> None:
    first = stats(rolling_query, sent, limit=1)
    assert [s.service for s in first.services] == ["api"]
    second = stats(rolling_query, sent, limit=1, page_token=first.next_page_token)
    assert [s.service for s in second.services] == ["worker"]
    assert not second.next_page_token
    other = stats(rolling_query, sent, project_id="other")
    assert [s.service for s in other.services] == ["intruder"]
    with pytest.raises(grpc.RpcError) as caught:
        stats(rolling_query, sent, project_id="other", page_token=first.next_page_token)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_a_span_arriving_after_its_minute_was_rolled_up_is_counted(
    rolling_otlpd: RunningOtlpd, rolling_query: Any, sent: dict[str, Any]
) -> None:
    t0 = sent["t0"]
    before = stats(rolling_query, sent, service="worker").services[0].stats.requests
    send_spans(rolling_otlpd, [S(b"\x01" * 16, "tick", t0 + MINUTE + 5)], service="worker")
    wait_rolled_up(rolling_query, t0 + 10 * MINUTE)
    assert stats(rolling_query, sent, service="worker").services[0].stats.requests == before + 1


def test_bad_arguments_name_the_field(rolling_query: Any, sent: dict[str, Any]) -> None:
    t0 = sent["t0"]
    cases = {
        "step": {"step": duration_pb2.Duration(seconds=-1)},
        "limit": {"limit": -1},
        "end_time": {"start_time": timestamp(t0), "end_time": timestamp(t0 - MINUTE)},
    }
    for field, fields in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            rolling_query.GetServiceStats(pb.GetServiceStatsRequest(**fields))
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in (caught.value.details() or "")
