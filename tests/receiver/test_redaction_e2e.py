"""Redaction end to end: secrets sent to a real otlpd never reach a PostgreSQL row."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import grpc
import psycopg
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.conftest import RunningOtlpd

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sig-Xk42"
PASSWORD = "hunter2-Pa55"
EMAIL = "alice.wonder@example.org"
CARD = "4111-1111-1111-1111"
URL = "https://deploy:Zq9-url-pass@git.example.com/repo.git"
CLIENT_IP = "203.0.113.77"
CLIENT_IP6 = "2001:db8:1:2:3:4:5:6"
SECRETS = (TOKEN, PASSWORD, EMAIL, CARD, "4111111111111111", "Zq9-url-pass", CLIENT_IP, "3:4:5:6")


def kv(key: str, value: str | list[str]) -> KeyValue:
    if isinstance(value, list):
        array = ArrayValue(values=[AnyValue(string_value=v) for v in value])
        return KeyValue(key=key, value=AnyValue(array_value=array))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def resource() -> Resource:
    return Resource(
        attributes=[
            kv("service.name", "redaction-e2e"),
            kv("password", PASSWORD),
            kv("token", TOKEN),
        ]
    )


def rows_text(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(f"SELECT t::text FROM {table} t").fetchall()]


def test_no_secret_reaches_a_row(start_otlpd: Callable[..., RunningOtlpd]) -> None:
    server = start_otlpd()
    now = time.time_ns()
    traces = trace_service_pb2.ExportTraceServiceRequest()
    scope = traces.resource_spans.add(resource=resource()).scope_spans.add()
    scope.spans.add(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name=f"POST /login {EMAIL}",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now - 10**6,
        end_time_unix_nano=now,
        attributes=[
            kv("http.request.header.authorization", [f"Bearer {TOKEN}"]),
            kv("password", PASSWORD),
            kv("client.address", CLIENT_IP),
            kv("network.peer.address", CLIENT_IP6),
            kv("url.full", URL),
        ],
        events=[
            trace_pb2.Span.Event(
                time_unix_nano=now - 10,
                name="payment",
                attributes=[kv("card", CARD), kv("Set-Cookie", "session=abc")],
            )
        ],
        status=trace_pb2.Status(code=2, message=f"declined for {EMAIL}"),
    )
    logs = logs_service_pb2.ExportLogsServiceRequest()
    records = logs.resource_logs.add(resource=resource()).scope_logs.add().log_records
    body = f"login by {EMAIL} with Authorization: Bearer {TOKEN}, card {CARD}, repo {URL}"
    records.append(
        logs_pb2.LogRecord(
            time_unix_nano=now,
            severity_number=logs_pb2.SEVERITY_NUMBER_WARN,
            body=AnyValue(string_value=body),
            attributes=[kv("client.ip", CLIENT_IP), kv("api_key", TOKEN)],
        )
    )
    metrics = metrics_service_pb2.ExportMetricsServiceRequest()
    metric = metrics.resource_metrics.add(resource=resource()).scope_metrics.add().metrics.add()
    metric.name = "logins"
    metric.gauge.data_points.add(
        time_unix_nano=now, as_int=1, attributes=[kv("user.email", EMAIL), kv("secret", "s")]
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        for stub, request in [
            (trace_service_pb2_grpc.TraceServiceStub, traces),
            (logs_service_pb2_grpc.LogsServiceStub, logs),
            (metrics_service_pb2_grpc.MetricsServiceStub, metrics),
        ]:
            response = stub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]
            assert not response.partial_success.error_message

    stored = {t: rows_text(server.database_url, t) for t in ("spans", "logs", "resources")}
    stored["metric_series"] = rows_text(server.database_url, "metric_series")
    assert [len(v) for v in stored.values()] == [1, 1, 1, 1]
    for table, texts in stored.items():
        for secret in SECRETS:
            assert secret not in texts[0], (table, secret, texts[0])
    assert "[REDACTED]" in stored["resources"][0]
    assert "203.0.113.0" in stored["spans"][0] and "2001:db8:1::" in stored["spans"][0]
    assert "203.0.113.0" in stored["logs"][0]
    # What a user searching the logs sees: the text around the secrets.
    assert (
        "login by [REDACTED] with Authorization: Bearer [REDACTED], card [REDACTED]"
        in (stored["logs"][0])
    )
    assert "https://[REDACTED]@git.example.com/repo.git" in stored["logs"][0]
    for what in ("key", "pattern", "ip"):
        assert server.metric("otlpd_redacted_values_total", {"what": what}) > 0
