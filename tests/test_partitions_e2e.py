"""Time partitions seen from a client: the whole accepted window is made ahead of time,
records exported over OTLP/gRPC land in the hourly partition that covers their time, a
partition dropped by hand is made again on demand, neither a long read nor a partition
that cannot be made stalls current ingest, and records outside the accepted window are
refused through partial success, the rest stored."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from otlpd.errors import RETRY_INFO_KEY
from tests.conftest import RunningOtlpd

SECOND = 10**9
HOUR = 3600 * SECOND
DAY = 24 * HOUR
TABLES = ("spans", "logs", "metric_points")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Bounds = tuple[datetime, datetime]


def partitions(url: str, table: str) -> dict[str, Bounds]:
    """Each partition of ``table`` with its bounds, read from the catalog."""
    with psycopg.connect(url) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        found = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (table,),
        ).fetchall()
    out = {}
    for name, bound in found:
        low, high = str(bound).split("'")[1::2]
        out[str(name)] = (datetime.fromisoformat(low), datetime.fromisoformat(high))
    return out


def covering(bounds: dict[str, Bounds], ns: int) -> list[str]:
    moment = EPOCH + timedelta(microseconds=ns // 1000)
    return [name for name, (low, high) in bounds.items() if low <= moment < high]


def resource() -> resource_pb2.Resource:
    service = common_pb2.AnyValue(string_value="partitioned")
    return resource_pb2.Resource(
        attributes=[common_pb2.KeyValue(key="service.name", value=service)]
    )


def span(name: str, start: int, n: int) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=(0x5B8EFFF798038103D269B633813FC60C).to_bytes(16, "big"),
        span_id=(0xEEE19B7EC3C1B174 + n).to_bytes(8, "big"),
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + SECOND,
    )


def export_spans(server: RunningOtlpd, spans: list[trace_pb2.Span]) -> Any:
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add(resource=resource()).scope_spans.add().spans.extend(spans)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        return stub.Export(request, timeout=10)


def stored_spans(server: RunningOtlpd) -> dict[str, tuple[int, str]]:
    """Each stored span's name: its start and the partition its row is in."""
    with psycopg.connect(server.database_url) as conn:
        found = conn.execute(
            "SELECT name, start_time_unix_nano, tableoid::regclass::text FROM spans"
        ).fetchall()
    return {name: (start, partition) for name, start, partition in found}


def window_made(server: RunningOtlpd, timeout: float = 30.0) -> None:
    """Waits until the server has made every partition of its accepted window."""
    deadline = time.monotonic() + timeout
    while server.metric("otlpd_partitions_missing") > 0 or not partitions(
        server.database_url, "metric_points"
    ):
        assert time.monotonic() < deadline, "the accepted window was not made in time"
        time.sleep(0.05)


def test_the_whole_accepted_window_is_made_ahead_of_time(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()  # hourly partitions, 2 ahead, accepting 24 h back, 1 h ahead
    window_made(server)
    now = time.time_ns()
    for table in TABLES:
        bounds = partitions(server.database_url, table)
        # Every hour from 24 h ago to 1 h ahead, plus the 2 after it: 28 or 29 hours.
        for hours in range(-24, 4):
            assert len(covering(bounds, now + hours * HOUR)) == 1, (table, hours)
        assert len(bounds) in (28, 29), table
        for low, high in bounds.values():
            assert high - low == timedelta(hours=1)
            assert low.minute == low.second == low.microsecond == 0
    made = sum(len(partitions(server.database_url, table)) for table in TABLES)
    assert server.metric("otlpd_partitions_created_total") == made


def test_spans_land_in_the_partition_of_their_hour(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()
    window_made(server)
    now = time.time_ns()
    before = partitions(server.database_url, "spans")
    starts = {f"hours-ago-{h}": now - h * HOUR for h in range(6)} | {"late-20h": now - 20 * HOUR}

    response = export_spans(
        server, [span(name, start, n) for n, (name, start) in enumerate(starts.items())]
    )

    assert response.partial_success.rejected_spans == 0, response
    stored = stored_spans(server)
    assert {name: start for name, (start, _) in stored.items()} == starts
    for name, (start, partition) in stored.items():
        # The row is in the one partition whose range covers its time.
        assert covering(before, start) == [partition], name
    assert len({partition for _, partition in stored.values()}) == 7
    assert partitions(server.database_url, "spans") == before  # none made on the way


def test_a_partition_dropped_behind_our_back_is_made_again(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()
    window_made(server)
    late = time.time_ns() - 20 * HOUR
    for table in ("spans", "logs", "metric_points"):
        (name,) = covering(partitions(server.database_url, table), late)
        with psycopg.connect(server.database_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {name}")

    logs = logs_service_pb2.ExportLogsServiceRequest()
    scope_logs = logs.resource_logs.add(resource=resource()).scope_logs.add()
    scope_logs.log_records.add(time_unix_nano=late, body=common_pb2.AnyValue(string_value="late"))
    metrics = metrics_service_pb2.ExportMetricsServiceRequest()
    scope_metrics = metrics.resource_metrics.add(resource=resource()).scope_metrics.add()
    metric = scope_metrics.metrics.add(name="late.gauge")
    metric.gauge.data_points.add(time_unix_nano=late, as_double=1.0)
    assert export_spans(server, [span("late", late, 0)]).partial_success.rejected_spans == 0
    with grpc.insecure_channel(server.grpc_target) as channel:
        answer = logs_service_pb2_grpc.LogsServiceStub(channel).Export(logs, timeout=10)
        assert answer.partial_success.rejected_log_records == 0, answer
        answered = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics, timeout=10)
        assert answered.partial_success.rejected_data_points == 0, answered

    for table in TABLES:
        bounds = partitions(server.database_url, table)
        with psycopg.connect(server.database_url) as conn:
            (row,) = conn.execute(f"SELECT tableoid::regclass::text FROM {table}").fetchall()
        assert covering(bounds, late) == [row[0]], table


def test_times_outside_the_window_are_rejected_and_the_rest_stored(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()  # accept_past=24h, accept_future=1h
    window_made(server)
    now = time.time_ns()
    starts = {
        "month-ago": now - 30 * DAY,
        "day-ahead": now + DAY,
        "now": now,
        "23h-ago": now - 23 * HOUR,
        "30min-ahead": now + HOUR // 2,
    }
    before = {table: partitions(server.database_url, table) for table in TABLES}

    response = export_spans(
        server, [span(name, start, n) for n, (name, start) in enumerate(starts.items())]
    )

    message = response.partial_success.error_message
    assert response.partial_success.rejected_spans == 2, response
    assert "time out of range: 2" in message
    assert "before the server clock" in message and "after the server clock" in message
    assert "span 0" in message and "span 1" in message  # their places in the request
    stored = stored_spans(server)
    assert set(stored) == {"now", "23h-ago", "30min-ahead"}
    after = partitions(server.database_url, "spans")
    for start, partition in stored.values():
        assert covering(after, start) == [partition]
    # A refused record makes no partition.
    assert not covering(after, starts["month-ago"]) and not covering(after, starts["day-ahead"])
    for table in TABLES:
        assert partitions(server.database_url, table) == before[table]


def drop_partition(server: RunningOtlpd, table: str, at: int) -> None:
    (name,) = covering(partitions(server.database_url, table), at)
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {name}")


def test_a_long_read_stalls_neither_late_nor_current_spans(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()
    window_made(server)
    now = time.time_ns()
    late = now - 20 * HOUR
    drop_partition(server, "spans", late)  # so that the late spans' partition is made anew

    with psycopg.connect(server.database_url) as reader:
        # A long query of the query service holds ACCESS SHARE on spans until it ends.
        reader.execute("SELECT count(*) FROM spans")
        with ThreadPoolExecutor(2) as pool:
            late_call = pool.submit(export_spans, server, [span("late", late, 0)])
            current_call = pool.submit(export_spans, server, [span("current", now, 1)])
            assert current_call.result(timeout=10).partial_success.rejected_spans == 0
            assert late_call.result(timeout=10).partial_success.rejected_spans == 0
        reader.rollback()

    assert set(stored_spans(server)) == {"late", "current"}


def test_a_partition_that_cannot_be_made_fails_only_the_records_that_need_it(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    first = start_otlpd()
    window_made(first)
    first.stop()
    now = time.time_ns()
    late = now - 20 * HOUR
    drop_partition(first, "spans", late)

    with psycopg.connect(first.database_url) as blocker:
        # Another ATTACH, or a manual ALTER, holds the lock that making a partition needs.
        blocker.execute("LOCK TABLE spans IN SHARE UPDATE EXCLUSIVE MODE")
        server = start_otlpd(partition_lock_timeout="1s", retry_after="3s")
        with ThreadPoolExecutor(2) as pool:
            late_call = pool.submit(export_spans, server, [span("late", late, 0)])
            current = export_spans(server, [span("current", now, 1)])
            assert current.partial_success.rejected_spans == 0
            assert not late_call.done()  # still waiting for its partition
            with pytest.raises(grpc.RpcError) as raised:
                late_call.result(timeout=30)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        trailers = dict(raised.value.trailing_metadata() or ())  # type: ignore[attr-defined]
        assert (
            error_details_pb2.RetryInfo.FromString(trailers[RETRY_INFO_KEY]).retry_delay.seconds
            == 3
        )
        assert server.app.ready  # PostgreSQL is fine, and so is the rest of ingest
        assert server.metric("otlpd_partitions_missing") >= 1
        blocker.rollback()

    assert export_spans(server, [span("late", late, 0)]).partial_success.rejected_spans == 0
    assert sorted(stored_spans(server)) == ["current", "late"]
