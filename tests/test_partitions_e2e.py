"""Time partitions seen from a client: records exported over OTLP/gRPC land in the hourly
partition that covers their time, late records get theirs made on demand, and records
outside the accepted window are refused through partial success, the rest stored."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

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


def test_spans_land_in_the_partition_of_their_hour(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()  # hourly partitions, 2 ahead, accepting 24 h into the past
    now = time.time_ns()
    before = partitions(server.database_url, "spans")
    # Made at start: the current hour and the two after it, nothing in the past.
    assert len(before) == 3
    assert covering(before, now) and covering(before, now + 2 * HOUR)
    late = now - 20 * HOUR
    assert not covering(before, now - HOUR) and not covering(before, late)

    starts = {f"hours-ago-{h}": now - h * HOUR for h in range(6)} | {"late-20h": late}
    response = export_spans(
        server, [span(name, start, n) for n, (name, start) in enumerate(starts.items())]
    )

    assert response.partial_success.rejected_spans == 0, response
    after = partitions(server.database_url, "spans")
    stored = stored_spans(server)
    assert {name: start for name, (start, _) in stored.items()} == starts
    for name, (start, partition) in stored.items():
        # The row is in the one partition whose range covers its time, an hour wide.
        assert covering(after, start) == [partition], name
        low, high = after[partition]
        assert high - low == timedelta(hours=1)
        assert low.minute == low.second == low.microsecond == 0
    assert len({partition for _, partition in stored.values()}) == 7
    # The past hours, the late one among them, were made on demand, and nothing else.
    made = {partition for start, partition in stored.values() if not covering(before, start)}
    assert len(made) == 6
    assert set(after) - set(before) == made


def test_late_logs_and_points_get_partitions_on_demand(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()
    late = time.time_ns() - 20 * HOUR
    for table in ("logs", "metric_points"):
        assert not covering(partitions(server.database_url, table), late)

    logs = logs_service_pb2.ExportLogsServiceRequest()
    scope_logs = logs.resource_logs.add(resource=resource()).scope_logs.add()
    scope_logs.log_records.add(time_unix_nano=late, body=common_pb2.AnyValue(string_value="late"))
    metrics = metrics_service_pb2.ExportMetricsServiceRequest()
    scope_metrics = metrics.resource_metrics.add(resource=resource()).scope_metrics.add()
    metric = scope_metrics.metrics.add(name="late.gauge")
    metric.gauge.data_points.add(time_unix_nano=late, as_double=1.0)
    with grpc.insecure_channel(server.grpc_target) as channel:
        answer = logs_service_pb2_grpc.LogsServiceStub(channel).Export(logs, timeout=10)
        assert answer.partial_success.rejected_log_records == 0, answer
        answered = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics, timeout=10)
        assert answered.partial_success.rejected_data_points == 0, answered

    for table in ("logs", "metric_points"):
        bounds = partitions(server.database_url, table)
        with psycopg.connect(server.database_url) as conn:
            (row,) = conn.execute(f"SELECT tableoid::regclass::text FROM {table}").fetchall()
        assert covering(bounds, late) == [row[0]], table


def test_times_outside_the_window_are_rejected_and_the_rest_stored(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()  # accept_past=24h, accept_future=1h
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
    assert len(after) == len(before["spans"]) + 1  # the one for 23 h ago
    for table in ("logs", "metric_points"):
        assert partitions(server.database_url, table) == before[table]


def test_partitions_created_are_counted(start_otlpd: Callable[..., RunningOtlpd]) -> None:
    server = start_otlpd()
    export_spans(server, [span("late", time.time_ns() - 20 * HOUR, 0)])

    made = sum(len(partitions(server.database_url, table)) for table in TABLES)
    assert made == 3 * 3 + 1  # 3 hours per table at start, then the late one
    assert server.metric("otlpd_partitions_created_total") == made
