"""One Export end to end, through the real gRPC receiver into real PostgreSQL: what the
pipeline answers when the fault is ours, when one value is bad, and what it keeps.

Each test names the defect of issue "Ingest hardening" it pins down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from otlpd.errors import RETRY_INFO_KEY
from tests.conftest import RunningOtlpd

SECOND = 10**9
TIMEOUT = 10.0
# What no answer to a client may contain: our tables, partitions, indexes, SQL states.
INTERNAL_WORDS = (
    "spans_",
    "logs_",
    "sessions",
    "metric_",
    "relation",
    "constraint",
    "_idx",
    "index row",
    "btree",
    "SQLSTATE",
    "[",
)


def kv(key: str, value: str | int) -> common_pb2.KeyValue:
    any_value = (
        common_pb2.AnyValue(string_value=value)
        if isinstance(value, str)
        else common_pb2.AnyValue(int_value=value)
    )
    return common_pb2.KeyValue(key=key, value=any_value)


def span(name: str, **attributes: str) -> trace_pb2.Span:
    now = time.time_ns()
    return trace_pb2.Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name=name,
        start_time_unix_nano=now - SECOND,
        end_time_unix_nano=now,
        attributes=[kv(k, v) for k, v in attributes.items()],
    )


def traces(
    *resources: tuple[str, list[trace_pb2.Span]],
) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    for service, spans in resources:
        rs = request.resource_spans.add(
            resource=resource_pb2.Resource(attributes=[kv("service.name", service)])
        )
        rs.scope_spans.add().spans.extend(spans)
    return request


def export_traces(
    server: RunningOtlpd, request: trace_service_pb2.ExportTraceServiceRequest
) -> trace_service_pb2.ExportTraceServiceResponse:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        response: trace_service_pb2.ExportTraceServiceResponse = stub.Export(
            request, timeout=TIMEOUT
        )
        return response


def failure(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def retry_delay(error: grpc.RpcError) -> float:
    """The RetryInfo delay the answer carries in the trailer the Python SDK reads."""
    trailers = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    info = error_details_pb2.RetryInfo.FromString(trailers[RETRY_INFO_KEY])
    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def execute(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def names_nothing_internal(message: str) -> bool:
    return not any(word in message for word in INTERNAL_WORDS)


# --- 1. a fault of ours is retryable and counted ----------------------------------------


def test_a_failed_session_lookup_is_unavailable_with_retry_info_and_counted(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd(retry_after="2s")
    # The lookup of a session fails (the table is gone for a moment), while PostgreSQL
    # itself stays reachable: readiness and admission see nothing wrong.
    execute(server.database_url, "ALTER TABLE sessions RENAME TO sessions_away")
    request = traces(("web", [span("only-a-session", **{"session.id": "s-1"})]))

    error = failure(lambda: export_traces(server, request))

    assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert retry_delay(error) == 2.0
    assert names_nothing_internal(error.details()), error.details()  # type: ignore[attr-defined]
    labels = {"signal": "traces", "outcome": "failed"}
    assert server.metric("otlpd_records_total", labels) == 1
    assert server.metric("otlpd_requests_total", {"signal": "traces", "code": "INTERNAL"}) == 0

    execute(server.database_url, "ALTER TABLE sessions_away RENAME TO sessions")
    response = export_traces(server, request)

    assert response.partial_success.rejected_spans == 0
    assert rows(server.database_url, "SELECT project_id, session_id FROM spans") == [
        ("default", "s-1")
    ]


def test_a_refusal_by_postgresql_names_none_of_its_objects(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()
    # A rule of the database that no decoder check knows: PostgreSQL refuses the COPY
    # with a message naming the partition and the constraint.
    execute(
        server.database_url,
        "ALTER TABLE spans ADD CONSTRAINT spans_no_evil_check CHECK (name <> 'evil')",
    )

    error = failure(lambda: export_traces(server, traces(("web", [span("evil")]))))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    details = error.details()  # type: ignore[attr-defined]
    assert "the store refused these records (reference " in details
    assert names_nothing_internal(details) and "evil" not in details, details


# --- 2. one oversized indexed value costs its record only -------------------------------


def test_an_oversized_service_name_costs_its_resource_only(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()
    long_service = "s" * 6000
    request = traces(
        (long_service, [span("lost-1"), span("lost-2")]),
        ("checkout", [span("kept", **{"session.id": "x" * 6000}), span("kept-too")]),
    )

    response = export_traces(server, request)

    assert response.partial_success.rejected_spans == 3
    message = response.partial_success.error_message
    assert "value too long" in message and "limit 256" in message, message
    assert names_nothing_internal(message), message
    assert rows(server.database_url, "SELECT service_name, name FROM spans") == [
        ("checkout", "kept-too")
    ]


# --- 5. acknowledged means durable, whatever the database's default ---------------------


def test_the_writer_commits_synchronously_when_the_database_says_off(
    database_url: str, start_otlpd: Callable[..., RunningOtlpd]
) -> None:
    name = database_url.rsplit("/", 1)[1]
    execute(database_url, f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    server = start_otlpd()
    # What the writer's transaction runs with, seen from inside it by a trigger.
    execute(
        database_url,
        """
        CREATE TABLE commit_levels (level text);
        CREATE FUNCTION record_commit_level() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO commit_levels VALUES (current_setting('synchronous_commit'));
            RETURN NEW;
        END $$;
        CREATE TRIGGER record_commit_level BEFORE INSERT ON spans
            FOR EACH ROW EXECUTE FUNCTION record_commit_level();
        """,
    )
    assert rows(database_url, "SELECT current_setting('synchronous_commit')") == [("off",)]

    export_traces(server, traces(("web", [span("durable")])))

    assert rows(database_url, "SELECT level FROM commit_levels") == [("on",)]


# --- 6. OTLP fields kept -----------------------------------------------------------------


def test_scope_and_resource_fields_and_staleness_markers_are_kept(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()
    url = server.database_url
    now = time.time_ns()
    scope = common_pb2.InstrumentationScope(
        name="meter", version="1", attributes=[kv("scope.k", "v")], dropped_attributes_count=3
    )
    spans = traces(("web", [span("s")]))
    spans.resource_spans[0].scope_spans[0].scope.CopyFrom(scope)
    export_traces(server, spans)

    logs = logs_service_pb2.ExportLogsServiceRequest()
    sl = logs.resource_logs.add().scope_logs.add(scope=scope)
    sl.log_records.add(time_unix_nano=now, body=common_pb2.AnyValue(string_value="hi"))

    metrics = metrics_service_pb2.ExportMetricsServiceRequest()
    rm = metrics.resource_metrics.add(schema_url="https://opentelemetry.io/schemas/1.26.0")
    rm.resource.attributes.append(kv("service.name", "web"))
    rm.resource.dropped_attributes_count = 2
    sm = rm.scope_metrics.add(scope=scope, schema_url="https://scope/1")
    gauge = sm.metrics.add(name="queue.depth")
    gauge.gauge.data_points.add(time_unix_nano=now - SECOND, as_double=7.0)
    # The series stopped: no recorded value, whatever as_double says (0 here).
    gauge.gauge.data_points.add(
        time_unix_nano=now, as_double=0.0, flags=metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(logs, timeout=TIMEOUT)
        metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics, timeout=TIMEOUT)

    assert rows(url, "SELECT scope_dropped_attributes_count FROM spans") == [(3,)]
    assert rows(url, "SELECT scope_dropped_attributes_count FROM logs") == [(3,)]
    assert rows(
        url,
        "SELECT resource_schema_url, resource_dropped_attributes_count, scope_attributes,"
        " scope_schema_url, scope_dropped_attributes_count FROM metric_series",
    ) == [("https://opentelemetry.io/schemas/1.26.0", 2, {"scope.k": "v"}, "https://scope/1", 3)]
    assert rows(url, "SELECT value, flags & 1 FROM metric_points ORDER BY time") == [
        (7.0, 0),
        (None, 1),
    ]


# --- 7. what the session cache does not know expires -------------------------------------


@pytest.fixture
def two_replicas(start_otlpd: Callable[..., RunningOtlpd]) -> Iterator[tuple[RunningOtlpd, ...]]:
    yield start_otlpd(session_negative_ttl="500ms"), start_otlpd()


def test_a_session_unknown_to_one_replica_is_asked_again(
    two_replicas: tuple[RunningOtlpd, RunningOtlpd],
) -> None:
    first, second = two_replicas
    # The first replica sees the session before anyone knows its owner ...
    export_traces(first, traces(("web", [span("early", **{"session.id": "s-9"})])))
    # ... then the other replica stores the record that names it.
    owner = {"session.id": "s-9", "project.id": "shop", "user.id": "u-1"}
    export_traces(second, traces(("web", [span("login", **owner)])))
    time.sleep(0.6)  # past the first replica's negative TTL

    export_traces(first, traces(("web", [span("later", **{"session.id": "s-9"})])))

    assert rows(
        first.database_url, "SELECT name, project_id, user_id FROM spans ORDER BY time, name"
    ) == [("early", "default", None), ("login", "shop", "u-1"), ("later", "shop", "u-1")]
