"""OTLP/gRPC end to end: a real otlpd, real grpcio clients, the rows in PostgreSQL.

What a client sees of the three Export services: partial success for every kind of bad
record (and only the good records stored), INVALID_ARGUMENT for bytes that are not OTLP,
RESOURCE_EXHAUSTED above the request limit, gzip, gRPC health and reflection, the
Prometheus counters, and a fuzz run that must never get INTERNAL, UNKNOWN or a hang.
"""

from __future__ import annotations

import gzip
import random
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from otlpd.errors import OTLP_RETRYABLE_CODES
from otlpd.receiver.ingest import count_records
from tests.conftest import RunningOtlpd, start_otlpd_thread

TRACES, LOGS, METRICS = "traces", "logs", "metrics"
SIGNALS = (TRACES, LOGS, METRICS)
SERVICES = {
    TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
    METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
}
STUBS: dict[str, Any] = {
    TRACES: trace_service_pb2_grpc.TraceServiceStub,
    LOGS: logs_service_pb2_grpc.LogsServiceStub,
    METRICS: metrics_service_pb2_grpc.MetricsServiceStub,
}
REQUESTS: dict[str, Any] = {
    TRACES: trace_service_pb2.ExportTraceServiceRequest,
    LOGS: logs_service_pb2.ExportLogsServiceRequest,
    METRICS: metrics_service_pb2.ExportMetricsServiceRequest,
}
RESPONSES: dict[str, Any] = {
    TRACES: trace_service_pb2.ExportTraceServiceResponse,
    LOGS: logs_service_pb2.ExportLogsServiceResponse,
    METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
}
CALL_TIMEOUT = 10.0  # seconds; a call that takes longer counts as a hang
MAX_ATTRIBUTE = 1024  # max_attribute_value_bytes of the module's server
MAX_BODY = 4096  # max_body_bytes of the module's server

# A string field set to HOLE is made invalid UTF-8 in the serialized request: BAD_UTF8 has
# its length (so every length prefix stays right) and 0xff, 0xfe start no UTF-8 sequence.
HOLE = "~HOLE~"
BAD_UTF8 = b"\xff\xfeOLE\xfd"

SECOND = 10**9
HOUR = 3600 * SECOND
YEAR_1970 = 86_400 * SECOND  # 1970-01-02
YEAR_2200 = 7_258_118_400 * SECOND  # 2200-01-01


# --- servers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(shared_database: str) -> Iterator[RunningOtlpd]:
    """One otlpd for the tests that can share it; each of them writes its own service."""
    running = start_otlpd_thread(
        shared_database,
        max_attribute_value_bytes=str(MAX_ATTRIBUTE),
        max_body_bytes=str(MAX_BODY),
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def channel(server: RunningOtlpd) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as opened:
        yield opened


# --- calls ---------------------------------------------------------------------------


def export(
    channel: grpc.Channel,
    signal: str,
    payload: bytes | Message,
    *,
    compression: grpc.Compression | None = None,
) -> Any:
    """``signal``'s Export of a request through the generated stub, or of bytes as they
    are (no serializer, so they may be anything); the parsed answer."""
    if isinstance(payload, Message):
        stub = STUBS[signal](channel)
        return stub.Export(payload, timeout=CALL_TIMEOUT, compression=compression)
    call = channel.unary_unary(
        f"/{SERVICES[signal]}/Export",
        request_serializer=None,
        response_deserializer=RESPONSES[signal].FromString,
    )
    return call(payload, timeout=CALL_TIMEOUT, compression=compression)


def export_error(
    channel: grpc.Channel, signal: str, payload: bytes, **kwargs: Any
) -> grpc.RpcError:
    """The error that Export of ``payload`` must end with."""
    with pytest.raises(grpc.RpcError) as raised:
        export(channel, signal, payload, **kwargs)
    return raised.value


def rejected(signal: str, response: Any) -> int:
    partial = response.partial_success
    if signal == TRACES:
        return int(partial.rejected_spans)
    if signal == LOGS:
        return int(partial.rejected_log_records)
    return int(partial.rejected_data_points)


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def health(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=service)
    return int(stub.Check(request, timeout=CALL_TIMEOUT).status)


# --- requests ------------------------------------------------------------------------


def value(v: str | int | float | bool | bytes) -> common_pb2.AnyValue:
    if isinstance(v, bool):
        return common_pb2.AnyValue(bool_value=v)
    if isinstance(v, str):
        return common_pb2.AnyValue(string_value=v)
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v)
    if isinstance(v, float):
        return common_pb2.AnyValue(double_value=v)
    return common_pb2.AnyValue(bytes_value=v)


def kv(key: str, v: str | int | float | bool | bytes) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=value(v))


def resource(service: str, **attributes: str) -> resource_pb2.Resource:
    pairs = [kv("service.name", service), *(kv(k, v) for k, v in attributes.items())]
    return resource_pb2.Resource(attributes=pairs)


def trace_id(n: int) -> bytes:
    return (0x0AF7651916CD43DD8448EB211C80319C + n).to_bytes(16, "big")


def span_id(n: int) -> bytes:
    return (0x00F067AA0BA902B7 + n).to_bytes(8, "big")


def span(name: str, now: int, n: int = 0) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=trace_id(n),
        span_id=span_id(n),
        name=name,
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now - SECOND,
        end_time_unix_nano=now,
        attributes=[kv("http.route", "/cart"), kv("http.status_code", 200)],
    )


def traces_request(
    service: str, spans: list[trace_pb2.Span]
) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add(resource=resource(service)).scope_spans.add()
    scope.scope.name = "tests.receiver"
    scope.spans.extend(spans)
    return request


def log_record(body: str, now: int, n: int = 0) -> logs_pb2.LogRecord:
    return logs_pb2.LogRecord(
        time_unix_nano=now,
        observed_time_unix_nano=now,
        severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
        severity_text="INFO",
        body=value(body),
        trace_id=trace_id(n),
        span_id=span_id(n),
        attributes=[kv("code.function", "checkout")],
    )


def logs_request(
    service: str, records: list[logs_pb2.LogRecord]
) -> logs_service_pb2.ExportLogsServiceRequest:
    request = logs_service_pb2.ExportLogsServiceRequest()
    scope = request.resource_logs.add(resource=resource(service)).scope_logs.add()
    scope.scope.name = "tests.receiver"
    scope.log_records.extend(records)
    return request


def gauge(name: str, now: int, *values: float) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit="1")
    for i, v in enumerate(values):
        metric.gauge.data_points.add(time_unix_nano=now, as_double=v, attributes=[kv("point", i)])
    return metric


def cumulative_sum(name: str, now: int, *values: float) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name)
    metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    metric.sum.is_monotonic = True
    for i, v in enumerate(values):
        metric.sum.data_points.add(
            time_unix_nano=now,
            start_time_unix_nano=now - HOUR,
            as_double=v,
            attributes=[kv("point", i)],
        )
    return metric


def histogram(name: str, now: int, *counts: int) -> metrics_pb2.Metric:
    """One point per count, all in the first of two buckets."""
    metric = metrics_pb2.Metric(name=name, unit="ms")
    metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    for i, count in enumerate(counts):
        metric.histogram.data_points.add(
            time_unix_nano=now,
            start_time_unix_nano=now - SECOND,
            count=count,
            sum=5.0 * count,
            bucket_counts=[count, 0],
            explicit_bounds=[10.0],
            attributes=[kv("point", i)],
        )
    return metric


def metrics_request(
    service: str, metrics: list[metrics_pb2.Metric]
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    scope = request.resource_metrics.add(resource=resource(service)).scope_metrics.add()
    scope.scope.name = "tests.receiver"
    scope.metrics.extend(metrics)
    return request


Patch = tuple[bytes, bytes]  # bytes of the serialized request, and what replaces them
INVALID_UTF8: Patch = (HOLE.encode(), BAD_UTF8)


def malformed(value: bytes) -> Patch:
    """Replaces the content of ``AnyValue(string_value=HOLE)`` by ``value``, which is not an
    AnyValue: the request around it stays well framed, only the value is broken."""
    hole = b"\x0a\x06" + HOLE.encode()
    assert len(value) == len(hole)
    return hole, value


def patched(request: Any, patch: Patch) -> bytes:
    """``request`` serialized, with the one occurrence of ``patch[0]`` replaced."""
    payload: bytes = request.SerializeToString()
    old, new = patch
    assert payload.count(old) == 1
    return payload.replace(old, new)


def with_invalid_utf8(request: Any) -> bytes:
    """``request`` serialized, with its one ``HOLE`` made invalid UTF-8."""
    return patched(request, INVALID_UTF8)


# Broken AnyValue contents, of the length of AnyValue(string_value=HOLE).
TRUNCATED_VARINT = malformed(b"\x18" + b"\xff" * 7)  # int_value whose varint never ends
TRUNCATED_DOUBLE = malformed(b"\x21" + b"\x00" * 7)  # double_value with 7 of its 8 bytes
STRING_PAST_END = malformed(b"\x0a\x7f" + b"A" * 6)  # string_value longer than its message
WIRE_TYPE_7 = malformed(b"\x0f" + b"\x00" * 7)  # no such wire type
MALFORMED_VALUES = [
    ("truncated-varint", TRUNCATED_VARINT),
    ("truncated-double", TRUNCATED_DOUBLE),
    ("string-past-end", STRING_PAST_END),
    ("wire-type-7", WIRE_TYPE_7),
]


# --- partial success: one bad record among good ones ------------------------------------


@dataclass(frozen=True)
class Bad:
    """One way a record can be bad, and what the answer must say about it.

    ``spoil`` edits the bad record in place (for metrics: the bad metric, and its second
    data point). ``rejected`` is how many records it costs (a bad metric costs all its
    points); ``says`` are fragments the error message must contain.
    """

    id: str
    spoil: Callable[..., Any]
    says: tuple[str, ...]
    rejected: int = 1
    patch: Patch | None = None


def _set(**fields: Any) -> Callable[[Any], None]:
    def spoil(message: Any) -> None:
        for name, v in fields.items():
            setattr(message, name, v)

    return spoil


def _add_attribute(key: str, v: str) -> Callable[[Any], None]:
    def spoil(message: Any) -> None:
        message.attributes.append(kv(key, v))

    return spoil


def _span_times(start: int, end: int) -> Callable[[trace_pb2.Span], None]:
    return _set(start_time_unix_nano=start, end_time_unix_nano=end)


def _span_status(code: int) -> Callable[[trace_pb2.Span], None]:
    def spoil(s: trace_pb2.Span) -> None:
        s.status.code = code  # type: ignore[assignment]

    return spoil


SPAN_CASES = [
    Bad("trace_id-8-bytes", _set(trace_id=b"\x01" * 8), ("invalid trace_id", "got 8")),
    Bad("trace_id-17-bytes", _set(trace_id=b"\x01" * 17), ("invalid trace_id", "got 17")),
    Bad("trace_id-zero", _set(trace_id=bytes(16)), ("invalid trace_id", "all zero")),
    Bad("span_id-4-bytes", _set(span_id=b"\x02" * 4), ("invalid span_id", "got 4")),
    Bad("span_id-zero", _set(span_id=bytes(8)), ("invalid span_id", "all zero")),
    Bad("parent-3-bytes", _set(parent_span_id=b"\x03" * 3), ("parent_span_id", "got 3")),
    Bad("utf8-name", _set(name=HOLE), ("UTF-8", "name"), patch=INVALID_UTF8),
    Bad("utf8-attribute", _add_attribute("db.statement", HOLE), ("UTF-8",), patch=INVALID_UTF8),
    Bad("utf8-attribute-key", _add_attribute(HOLE, "x"), ("UTF-8",), patch=INVALID_UTF8),
    *(
        Bad(f"attribute-{name}", _add_attribute("k", HOLE), ("invalid attribute",), patch=patch)
        for name, patch in MALFORMED_VALUES
    ),
    Bad("time-1970", _span_times(YEAR_1970, YEAR_1970 + SECOND), ("time out of range", "before")),
    Bad("time-2200", _span_times(YEAR_2200, YEAR_2200 + SECOND), ("time out of range", "after")),
    Bad("time-zero", _span_times(0, SECOND), ("invalid time", "start_time_unix_nano is 0")),
    Bad(
        "end-before-start",
        lambda s: _span_times(s.start_time_unix_nano, s.start_time_unix_nano - 1)(s),
        ("end before start",),
    ),
    Bad("kind-9", _set(kind=9), ("invalid kind", "kind 9")),
    Bad("status-code-7", _span_status(7), ("invalid status code", "7")),
    Bad("nul-name", _set(name="GET /\x00cart"), ("NUL character",)),
    Bad("nul-attribute", _add_attribute("user.agent", "curl\x00"), ("NUL character",)),
    Bad("nul-trace_state", _set(trace_state="k=v\x00"), ("NUL character",)),
    # Values of indexed columns: PostgreSQL would refuse the whole COPY (btree row limit).
    Bad(
        "long-session-id",
        _add_attribute("session.id", "s" * 600),  # under the attribute limit, 1024
        ("value too long", "'session.id' is 600 bytes, limit 256"),
    ),
    Bad("long-user-id", _add_attribute("user.id", "u" * 257), ("value too long", "limit 256")),
    Bad(
        "long-project-id", _add_attribute("project.id", "p" * 129), ("value too long", "limit 128")
    ),
]


def _log_body(text: str) -> Callable[[logs_pb2.LogRecord], None]:
    def spoil(record: logs_pb2.LogRecord) -> None:
        record.body.CopyFrom(value(text))

    return spoil


LOG_CASES = [
    Bad("trace_id-5-bytes", _set(trace_id=b"\x01" * 5), ("invalid trace_id", "got 5")),
    Bad("span_id-3-bytes", _set(span_id=b"\x02" * 3), ("invalid span_id", "got 3")),
    Bad("utf8-body", _log_body(HOLE), ("UTF-8", "body"), patch=INVALID_UTF8),
    Bad(
        "utf8-severity_text",
        _set(severity_text=HOLE),
        ("UTF-8", "severity_text"),
        patch=INVALID_UTF8,
    ),
    Bad(
        "utf8-attribute", _add_attribute("exception.message", HOLE), ("UTF-8",), patch=INVALID_UTF8
    ),
    *(
        Bad(f"body-{name}", _log_body(HOLE), ("invalid body",), patch=patch)
        for name, patch in MALFORMED_VALUES
    ),
    Bad(
        "attribute-truncated-varint",
        _add_attribute("k", HOLE),
        ("invalid attribute",),
        patch=TRUNCATED_VARINT,
    ),
    Bad("time-1970", _set(time_unix_nano=YEAR_1970), ("time out of range", "before")),
    Bad("time-2200", _set(time_unix_nano=YEAR_2200), ("time out of range", "after")),
    Bad(
        "observed-2200",
        _set(time_unix_nano=0, observed_time_unix_nano=YEAR_2200),
        ("time out of range", "observed_time_unix_nano"),
    ),
    Bad("severity-99", _set(severity_number=99), ("invalid severity_number", "99")),
    Bad("nul-body", _log_body("payment\x00declined"), ("NUL character",)),
    Bad("nul-severity_text", _set(severity_text="WARN\x00"), ("NUL character",)),
    Bad("nul-attribute", _add_attribute("k", "\x00"), ("NUL character",)),
    Bad(
        "long-session-id",
        _add_attribute("session.id", "é" * 300),
        ("value too long", "600 bytes, limit 256"),
    ),
]


def _point(**fields: Any) -> Callable[[metrics_pb2.Metric, Any], None]:
    return lambda _, point: _set(**fields)(point)


def _point_attribute(key: str, v: str) -> Callable[[metrics_pb2.Metric, Any], None]:
    return lambda _, point: point.attributes.append(kv(key, v))


def _exemplar(**fields: Any) -> Callable[[metrics_pb2.Metric, Any], None]:
    return lambda _, point: point.exemplars.add(time_unix_nano=point.time_unix_nano, **fields)


def _metric(**fields: Any) -> Callable[[metrics_pb2.Metric, Any], None]:
    return lambda metric, _: _set(**fields)(metric)


def _buckets(counts: list[int], bounds: list[float]) -> Callable[[metrics_pb2.Metric, Any], None]:
    def spoil(_: metrics_pb2.Metric, point: Any) -> None:
        point.ClearField("bucket_counts")
        point.ClearField("explicit_bounds")
        point.bucket_counts.extend(counts)
        point.explicit_bounds.extend(bounds)

    return spoil


def _temporality(v: int) -> Callable[[metrics_pb2.Metric, Any], None]:
    def spoil(metric: metrics_pb2.Metric, _: Any) -> None:
        metric.sum.aggregation_temporality = v  # type: ignore[assignment]

    return spoil


# Each case spoils the second point of a two-point metric between two good metrics; the
# metric kind is the one whose rule the case breaks (histogram buckets, sum temporality).
POINT_CASES: list[tuple[str, Bad]] = [
    ("gauge", Bad("time-1970", _point(time_unix_nano=YEAR_1970), ("time out of range",))),
    ("sum", Bad("time-2200", _point(time_unix_nano=YEAR_2200), ("time out of range", "after"))),
    (
        "gauge",
        Bad("utf8-attribute", _point_attribute("host.name", HOLE), ("UTF-8",), patch=INVALID_UTF8),
    ),
    *(
        (
            "gauge",
            Bad(
                f"attribute-{name}",
                _point_attribute("k", HOLE),
                ("invalid attribute",),
                patch=patch,
            ),
        )
        for name, patch in MALFORMED_VALUES
    ),
    (
        "gauge",
        Bad("nul-attribute", _point_attribute("host.name", "a\x00b"), ("NUL character",)),
    ),
    (
        "histogram",
        Bad("buckets-3-for-1-bound", _buckets([1, 0, 0], [10.0]), ("invalid buckets",)),
    ),
    (
        "histogram",
        Bad("bounds-without-buckets", _buckets([], [10.0]), ("invalid buckets",)),
    ),
    (
        "sum",
        Bad(
            "exemplar-trace_id-15-bytes",
            _exemplar(as_double=1.0, trace_id=b"\x01" * 15, span_id=span_id(1)),
            ("exemplar trace_id", "got 15"),
        ),
    ),
    (
        "sum",
        Bad(
            "exemplar-span_id-9-bytes",
            _exemplar(as_double=1.0, trace_id=trace_id(1), span_id=b"\x02" * 9),
            ("exemplar span_id", "got 9"),
        ),
    ),
    # Rules of the metric: every point of it goes.
    (
        "gauge",
        Bad(
            "utf8-metric-name",
            _metric(name=HOLE),
            ("UTF-8", "name"),
            rejected=2,
            patch=INVALID_UTF8,
        ),
    ),
    ("gauge", Bad("nul-metric-name", _metric(name="cpu\x00"), ("NUL character",), rejected=2)),
    (
        "gauge",
        Bad(
            "long-metric-name",
            _metric(name="m" * 256),
            ("value too long", "metric name is 256 bytes, limit 255"),
            rejected=2,
        ),
    ),
    (
        "sum",
        Bad(
            "long-session-id",
            _point_attribute("session.id", "s" * 600),
            ("value too long", "limit 256"),
        ),
    ),
    ("sum", Bad("nul-unit", _metric(unit="\x00"), ("NUL character",), rejected=2)),
    (
        "sum",
        Bad("temporality-7", _temporality(7), ("invalid aggregation_temporality",), rejected=2),
    ),
]

METRIC_KINDS = {"gauge": gauge, "sum": cumulative_sum, "histogram": histogram}


def _check_partial(
    server: RunningOtlpd,
    signal: str,
    response: Any,
    case: Bad,
    *,
    sent: int,
    before: tuple[float, float],
) -> None:
    """The answer counts and explains ``case``'s rejects, and so do the server's counters."""
    assert rejected(signal, response) == case.rejected, response
    message = response.partial_success.error_message
    for fragment in case.says:
        assert fragment in message, (fragment, message)
    accepted_before, rejected_before = before
    assert _record_counts(server, signal) == (
        accepted_before + sent - case.rejected,
        rejected_before + case.rejected,
    )


def _record_counts(server: RunningOtlpd, signal: str) -> tuple[float, float]:
    return (
        server.metric("otlpd_records_total", {"signal": signal, "outcome": "accepted"}),
        server.metric("otlpd_records_total", {"signal": signal, "outcome": "rejected"}),
    )


@pytest.mark.parametrize("case", SPAN_CASES, ids=lambda c: c.id)
def test_a_bad_span_is_rejected_and_its_neighbours_stored(
    server: RunningOtlpd, channel: grpc.Channel, case: Bad
) -> None:
    service = f"spans-{case.id}"
    now = time.time_ns()
    bad = span("bad", now, 1)
    case.spoil(bad)
    request = traces_request(service, [span("good-0", now, 0), bad, span("good-2", now, 2)])
    payload = patched(request, case.patch) if case.patch else request
    before = _record_counts(server, TRACES)

    response = export(channel, TRACES, payload)

    _check_partial(server, TRACES, response, case, sent=3, before=before)
    assert "span 1" in response.partial_success.error_message  # where: its index
    stored = rows(
        server.database_url,
        "SELECT name, span_id FROM spans WHERE service_name = %s ORDER BY name",
        service,
    )
    assert stored == [("good-0", span_id(0)), ("good-2", span_id(2))]


@pytest.mark.parametrize("case", LOG_CASES, ids=lambda c: c.id)
def test_a_bad_log_record_is_rejected_and_its_neighbours_stored(
    server: RunningOtlpd, channel: grpc.Channel, case: Bad
) -> None:
    service = f"logs-{case.id}"
    now = time.time_ns()
    bad = log_record("bad", now, 1)
    case.spoil(bad)
    request = logs_request(
        service, [log_record("good-0", now, 0), bad, log_record("good-2", now, 2)]
    )
    payload = patched(request, case.patch) if case.patch else request
    before = _record_counts(server, LOGS)

    response = export(channel, LOGS, payload)

    _check_partial(server, LOGS, response, case, sent=3, before=before)
    assert "log record 1" in response.partial_success.error_message
    stored = rows(
        server.database_url,
        "SELECT body, span_id FROM logs WHERE service_name = %s ORDER BY body::text",
        service,
    )
    assert stored == [("good-0", span_id(0)), ("good-2", span_id(2))]


@pytest.mark.parametrize(("kind", "case"), POINT_CASES, ids=[c.id for _, c in POINT_CASES])
def test_a_bad_data_point_is_rejected_and_its_neighbours_stored(
    server: RunningOtlpd, channel: grpc.Channel, kind: str, case: Bad
) -> None:
    service = f"metrics-{case.id}"
    now = time.time_ns()
    bad = METRIC_KINDS[kind]("bad", now, 1, 2)
    case.spoil(bad, getattr(bad, kind).data_points[1])
    request = metrics_request(
        service, [gauge("good-0", now, 0.0), bad, histogram("good-2", now, 2)]
    )
    payload = patched(request, case.patch) if case.patch else request
    before = _record_counts(server, METRICS)

    response = export(channel, METRICS, payload)

    _check_partial(server, METRICS, response, case, sent=4, before=before)
    stored = rows(
        server.database_url,
        "SELECT s.metric_name, coalesce(p.value, p.count) FROM metric_points p"
        " JOIN metric_series s USING (project_id, series_id)"
        " WHERE p.service_name = %s ORDER BY 1, 2",
        service,
    )
    good = [("good-0", 0.0), ("good-2", 2.0)]
    if case.rejected == 1:  # only the spoiled point went; the first point of its metric stays
        good.insert(0, ("bad", 1.0))
    assert stored == good


def _exponential(name: str, now: int, *counts: int) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit="By")
    metric.exponential_histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    for i, count in enumerate(counts):
        point = metric.exponential_histogram.data_points.add(
            time_unix_nano=now, count=count, scale=2, attributes=[kv("point", i)]
        )
        point.positive.bucket_counts.append(count)
    return metric


U32 = 2**32 - 1
U64 = 2**64 - 1

# Valid OTLP (the fields are uint32, fixed64 or uint64) beyond integer/bigint columns.
BEYOND_COLUMNS = [
    (TRACES, "-", "span-dropped_attributes_count", _set(dropped_attributes_count=U32)),
    (TRACES, "-", "span-dropped_events_count", _set(dropped_events_count=2**31)),
    (TRACES, "-", "span-end_time-2^64-1", _set(end_time_unix_nano=U64)),
    (LOGS, "-", "log-dropped_attributes_count", _set(dropped_attributes_count=U32)),
    (LOGS, "-", "log-observed_time-2^64-1", _set(observed_time_unix_nano=U64)),
    (METRICS, "sum", "point-start_time-2^64-1", _set(start_time_unix_nano=U64)),
    (METRICS, "histogram", "histogram-count-2^64-1", _set(count=U64)),
    (METRICS, "histogram", "bucket_count-2^64-1", lambda p: p.bucket_counts.__setitem__(0, U64)),
    (METRICS, "exponential", "exponential-zero_count-2^64-1", _set(zero_count=U64)),
]


@pytest.mark.parametrize(
    ("signal", "kind", "spoil"),
    [case[:2] + case[3:] for case in BEYOND_COLUMNS],
    ids=[case[2] for case in BEYOND_COLUMNS],
)
def test_a_value_beyond_its_column_costs_its_record_only(
    server: RunningOtlpd,
    channel: grpc.Channel,
    signal: str,
    kind: str,
    spoil: Callable[[Any], None],
) -> None:
    """Stored (clamped, or in a wider column) or refused by partial success: either is
    fine for the odd record, but the good records of its request must be stored."""
    service = f"beyond-{uuid.uuid4().hex[:8]}"
    now = time.time_ns()
    request: Message
    if signal == TRACES:
        spans = [span(f"good-{i}", now, i) for i in range(3)]
        spoil(spans[1])
        request = traces_request(service, spans)
        table = "spans"
    elif signal == LOGS:
        records = [log_record(f"good-{i}", now, i) for i in range(3)]
        spoil(records[1])
        request = logs_request(service, records)
        table = "logs"
    else:
        bad = {"sum": cumulative_sum, "histogram": histogram, "exponential": _exponential}[kind]
        metric = bad("bad", now, 1)
        data = getattr(metric, "exponential_histogram" if kind == "exponential" else kind)
        spoil(data.data_points[0])
        request = metrics_request(service, [gauge("good-0", now, 0.0), metric, gauge("g", now, 2)])
        table = "metric_points"

    response = export(channel, signal, request)

    (stored,) = rows(
        server.database_url, f"SELECT count(*) FROM {table} WHERE service_name = %s", service
    )
    assert stored[0] + rejected(signal, response) == 3
    assert stored[0] >= 2


def test_a_bad_resource_costs_its_own_records_only(
    server: RunningOtlpd, channel: grpc.Channel
) -> None:
    """Invalid UTF-8 in a resource attribute fails the parse of the whole request: the
    records of the other resource must still be stored."""
    now = time.time_ns()
    request = traces_request("resource-good", [span("kept", now, 0)])
    broken = request.resource_spans.add(resource=resource("resource-bad", host=HOLE))
    broken.scope_spans.add().spans.extend([span("lost-1", now, 1), span("lost-2", now, 2)])

    response = export(channel, TRACES, with_invalid_utf8(request))

    assert response.partial_success.rejected_spans == 2
    assert "UTF-8" in response.partial_success.error_message
    assert "resource 1" in response.partial_success.error_message
    stored = rows(
        server.database_url,
        "SELECT service_name, name FROM spans WHERE service_name LIKE 'resource-%%'",
    )
    assert stored == [("resource-good", "kept")]
    resources = rows(
        server.database_url,
        "SELECT attributes->>'service.name' FROM resources"
        " WHERE attributes->>'service.name' LIKE 'resource-%%'",
    )
    assert resources == [("resource-good",)]


def test_values_over_their_limits_are_stored_cut_and_counted(
    server: RunningOtlpd, channel: grpc.Channel
) -> None:
    """Attribute values and log bodies over their limits are truncated, as the OTel SDKs'
    limits do, not rejected: every record is stored, and the cuts are counted."""
    service = "cut-values"
    now = time.time_ns()
    cuts_before = server.metric("otlpd_truncated_values_total", {"what": "value"})
    bodies_before = server.metric("otlpd_truncated_values_total", {"what": "body"})
    long_span = span("long", now, 1)
    long_span.attributes.append(kv("http.body", "é" * MAX_ATTRIBUTE))  # 2x the limit in bytes
    spans_response = export(channel, TRACES, traces_request(service, [long_span]))
    record = log_record("x" * (MAX_BODY + 100), now, 1)
    record.attributes.append(kv("exception.stacktrace", "y" * (MAX_ATTRIBUTE + 1)))
    logs_response = export(channel, LOGS, logs_request(service, [record]))
    metric = gauge("cut", now, 1.0)
    metric.gauge.data_points[0].attributes.append(kv("sql", "z" * (MAX_ATTRIBUTE * 2)))
    metrics_response = export(channel, METRICS, metrics_request(service, [metric]))

    for signal, response in [(TRACES, spans_response), (LOGS, logs_response)]:
        assert rejected(signal, response) == 0
    assert rejected(METRICS, metrics_response) == 0
    (stored_span,) = rows(
        server.database_url,
        "SELECT attributes->>'http.body' FROM spans WHERE service_name = %s",
        service,
    )
    assert stored_span == ("é" * (MAX_ATTRIBUTE // 2),)
    (stored_log,) = rows(
        server.database_url,
        "SELECT body #>> '{}', attributes->>'exception.stacktrace' FROM logs"
        " WHERE service_name = %s",
        service,
    )
    assert stored_log == ("x" * MAX_BODY, "y" * MAX_ATTRIBUTE)
    (stored_series,) = rows(
        server.database_url,
        "SELECT attributes->>'sql' FROM metric_series WHERE service_name = %s",
        service,
    )
    assert stored_series == ("z" * MAX_ATTRIBUTE,)
    assert server.metric("otlpd_truncated_values_total", {"what": "value"}) == cuts_before + 3
    assert server.metric("otlpd_truncated_values_total", {"what": "body"}) == bodies_before + 1


def test_many_bad_records_are_summed_up_by_reason(
    server: RunningOtlpd, channel: grpc.Channel
) -> None:
    now = time.time_ns()
    spans = [span(f"good-{i}", now, i) for i in range(3)]
    for i in range(10):
        bad = span(f"bad-{i}", now, 100 + i)
        bad.kind = 9  # type: ignore[assignment]
        spans.append(bad)
    for i in range(4):
        spans.append(span(f"zero-{i}", now, 200 + i))
        spans[-1].trace_id = bytes(16)

    response = export(channel, TRACES, traces_request("many-bad", spans))

    message = response.partial_success.error_message
    assert response.partial_success.rejected_spans == 14
    assert "14 spans rejected" in message
    assert "invalid kind: 10" in message and "invalid trace_id: 4" in message
    assert len(message) <= 1024
    stored = rows(server.database_url, "SELECT count(*) FROM spans WHERE service_name = 'many-bad'")
    assert stored == [(3,)]


# --- not OTLP, too large, compressed -------------------------------------------------------

NOT_OTLP = [
    pytest.param(b"\xff" * 16, id="truncated-varint"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: otlpd\r\n\r\n", id="http-text"),
    pytest.param(b'{"resourceSpans":[{"scopeSpans":[]}]}', id="otlp-json"),
    pytest.param(b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 8, id="length-past-the-end"),
    pytest.param(b"\x0b\x0a\x00", id="group-start"),
    pytest.param(random.Random(7).randbytes(4096), id="random-4k"),
]


@pytest.mark.parametrize("payload", NOT_OTLP)
@pytest.mark.parametrize("signal", SIGNALS)
def test_bytes_that_are_not_otlp_are_invalid_argument(
    server: RunningOtlpd, channel: grpc.Channel, signal: str, payload: bytes
) -> None:
    error = export_error(channel, signal, payload)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert "not a valid" in (error.details() or "")


def _sized_traces(service: str, spans: int, padding: int) -> bytes:
    now = time.time_ns()
    request = traces_request(service, [span(f"s-{i}", now, i) for i in range(spans)])
    for s in request.resource_spans[0].scope_spans[0].spans:
        s.attributes.append(kv("padding", "p" * padding))
    return request.SerializeToString()


def test_request_limit_and_gzip(start_otlpd: Callable[..., RunningOtlpd]) -> None:
    limited = start_otlpd(max_request_bytes="65536")
    too_big = _sized_traces("too-big", 100, 1000)
    small = _sized_traces("small", 20, 1000)
    # Compresses to far below the limit, but the limit is on the request after gunzip.
    zipped_too_big = _sized_traces("zipped-too-big", 100, 1000)
    zipped_small = _sized_traces("zipped-small", 50, 1000)
    assert len(too_big) > 65536 > len(small)
    assert len(gzip.compress(zipped_too_big)) < 65536 < len(zipped_too_big)
    assert len(zipped_small) < 65536

    with grpc.insecure_channel(limited.grpc_target) as channel:
        error = export_error(channel, TRACES, too_big)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        error = export_error(channel, TRACES, zipped_too_big, compression=grpc.Compression.Gzip)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        assert rejected(TRACES, export(channel, TRACES, small)) == 0
        response = export(channel, TRACES, zipped_small, compression=grpc.Compression.Gzip)
        assert rejected(TRACES, response) == 0
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING

    stored = rows(
        limited.database_url,
        "SELECT service_name, count(*), min(length(attributes->>'padding'))"
        " FROM spans GROUP BY 1 ORDER BY 1",
    )
    assert stored == [("small", 20, 1000), ("zipped-small", 50, 1000)]


# --- health, reflection, metrics -------------------------------------------------------------


@pytest.mark.parametrize("service", ["", *SERVICES.values()])
def test_health_says_serving(channel: grpc.Channel, service: str) -> None:
    assert health(channel, service) == health_pb2.HealthCheckResponse.SERVING


def test_health_of_an_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        health(channel, "no.such.Service")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_otlp_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=CALL_TIMEOUT))
    names = {s.name for s in answer.list_services_response.service}
    assert set(SERVICES.values()) <= names
    assert "grpc.health.v1.Health" in names

    # And a client can learn the Export method from it.
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICES[TRACES])
    (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=CALL_TIMEOUT))
    assert answer.file_descriptor_response.file_descriptor_proto


def _scrape(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=CALL_TIMEOUT) as answer:
        return int(answer.status), answer.read().decode()


def test_metrics_endpoint_counts_records_by_outcome(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    fresh = start_otlpd()
    now = time.time_ns()
    spans = [span(f"ok-{i}", now, i) for i in range(5)]
    spans[1].span_id = b"\x01"
    logs = [log_record(f"ok-{i}", now, i) for i in range(3)]
    logs[0].severity_number = 99  # type: ignore[assignment]
    with grpc.insecure_channel(fresh.grpc_target) as channel:
        export(channel, TRACES, traces_request("counted", spans))
        export(channel, TRACES, traces_request("counted", spans[2:]))
        export(channel, LOGS, logs_request("counted", logs))
        export(
            channel,
            METRICS,
            metrics_request("counted", [gauge("g", now, 1, 2)]),
        )
        export_error(channel, METRICS, b"\xff\xff")

    status, text = _scrape(f"{fresh.ops_url}/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def records(signal: str, outcome: str) -> float:
        key = (("outcome", outcome), ("signal", signal))
        return samples[("otlpd_records_total", key)]

    assert records(TRACES, "accepted") == 4 + 3
    assert records(TRACES, "rejected") == 1
    assert records(LOGS, "accepted") == 2
    assert records(LOGS, "rejected") == 1
    assert records(METRICS, "accepted") == 2
    assert records(METRICS, "rejected") == 1  # the request that is not OTLP
    assert records(TRACES, "refused") == records(TRACES, "failed") == 0
    requests = samples[("otlpd_requests_total", (("code", "OK"), ("signal", "traces")))]
    assert requests == 2
    invalid = samples[
        ("otlpd_requests_total", (("code", "INVALID_ARGUMENT"), ("signal", "metrics")))
    ]
    assert invalid == 1
    assert rows(fresh.database_url, "SELECT count(*) FROM spans") == [(7,)]

    assert _scrape(f"{fresh.ops_url}/healthz")[0] == 200
    assert _scrape(f"{fresh.ops_url}/readyz")[0] == 200


def test_a_summary_among_good_metrics_is_stored(
    server: RunningOtlpd, channel: grpc.Channel
) -> None:
    """Summary points have no exemplars field: the decoder must not ask for one."""
    now = time.time_ns()
    summary = metrics_pb2.Metric(name="rpc.duration")
    point = summary.summary.data_points.add(time_unix_nano=now, count=2, sum=3.0)
    point.quantile_values.add(quantile=0.5, value=1.0)
    request = metrics_request("summary", [gauge("g", now, 1.0), summary])

    response = export(channel, METRICS, request)

    assert rejected(METRICS, response) == 0
    stored = rows(
        server.database_url,
        "SELECT s.metric_name, p.count FROM metric_points p"
        " JOIN metric_series s USING (project_id, series_id)"
        " WHERE p.service_name = 'summary' ORDER BY 1",
    )
    assert stored == [("g", None), ("rpc.duration", 2)]


# --- fuzz ------------------------------------------------------------------------------------


def _seeds() -> dict[str, bytes]:
    """A realistic request per signal: several resources, scopes, records, nested values."""
    now = time.time_ns()
    traces = traces_request("fuzz", [span(f"op-{i}", now - i * HOUR, i) for i in range(3)])
    s = traces.resource_spans[0].scope_spans[0].spans[0]
    s.parent_span_id = span_id(9)
    s.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    s.status.message = "timeout"
    s.events.add(time_unix_nano=now, name="exception", attributes=[kv("exception.type", "E")])
    s.links.add(trace_id=trace_id(5), span_id=span_id(5), attributes=[kv("k", 1.5)])
    s.attributes.append(
        common_pb2.KeyValue(
            key="nested",
            value=common_pb2.AnyValue(
                kvlist_value=common_pb2.KeyValueList(values=[kv("a", True), kv("b", b"\x00")])
            ),
        )
    )
    second = traces.resource_spans.add(resource=resource("fuzz-2", **{"session.id": "s-1"}))
    second.scope_spans.add().spans.append(span("other", now, 7))

    logs = logs_request("fuzz", [log_record(f"line {i}", now, i) for i in range(3)])
    record = logs.resource_logs[0].scope_logs[0].log_records[1]
    record.body.CopyFrom(
        common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[value(1), value("x")]))
    )
    record.event_name = "checkout.failed"
    logs.resource_logs[0].scope_logs[0].log_records[2].time_unix_nano = 0

    exponential = metrics_pb2.Metric(name="payload.size", unit="By")
    point = exponential.exponential_histogram.data_points.add(
        time_unix_nano=now, count=3, sum=4500.0, scale=3, zero_count=0
    )
    point.positive.offset = 80
    point.positive.bucket_counts.extend([1, 0, 2])
    point.exemplars.add(as_int=1500, time_unix_nano=now, trace_id=trace_id(1), span_id=span_id(1))
    summary = metrics_pb2.Metric(name="rpc.duration", unit="s")
    quantiles = summary.summary.data_points.add(time_unix_nano=now, count=4, sum=10.0)
    quantiles.quantile_values.add(quantile=0.99, value=4.0)
    metrics = metrics_request(
        "fuzz",
        [
            gauge("cpu", now, 0.25, 0.5),
            cumulative_sum("orders", now, 3.0),
            histogram("latency", now, 4),
            exponential,
            summary,
        ],
    )
    return {
        TRACES: traces.SerializeToString(),
        LOGS: logs.SerializeToString(),
        METRICS: metrics.SerializeToString(),
    }


SEEDS = _seeds()


def _length_prefixes(data: bytes, base: int = 0, depth: int = 0) -> list[tuple[int, int, int]]:
    """``(offset, varint size, length)`` of every length prefix that parses as nested
    protobuf, at any depth: where corrupting a length hurts a decoder most."""
    found: list[tuple[int, int, int]] = []
    pos = 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            wire_type = key & 7
            if wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type in (1, 5):
                pos += 8 if wire_type == 1 else 4
            elif wire_type == 2:
                at = pos
                length, pos = _varint(data, pos)
                found.append((base + at, pos - at, length))
                if depth < 8:
                    found += _length_prefixes(data[pos : pos + length], base + pos, depth + 1)
                pos += length
            else:
                break
    except IndexError:
        pass
    return found


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


PREFIXES = {signal: _length_prefixes(seed) for signal, seed in SEEDS.items()}
# Raw edits break the framing of every enclosing message, so the server mostly sees
# INVALID_ARGUMENT material; "nested" edits the inside of one embedded field and fixes
# every enclosing length, so the damage reaches the record decoders and the salvage.
MUTATIONS = ("flip", "truncate", "insert", "delete", "nested", "length")
RAW_EDITS = MUTATIONS[:4]

Mutation = tuple[str, int, int, bytes]  # operation, then its random choices


def _mutate(data: bytes, signal: str, mutation: Mutation) -> bytes:
    """``data`` changed by one ``mutation``."""
    op, a, b, blob = mutation
    if not data:
        return blob
    at = a % len(data)
    if op == "flip":
        return data[:at] + bytes([data[at] ^ (1 << (b % 8))]) + data[at + 1 :]
    if op == "truncate":
        return data[:at]
    if op == "insert":
        return data[:at] + blob + data[at:]
    if op == "delete":
        return data[:at] + data[at + 1 + b % 16 :]
    if op == "nested":
        edit = RAW_EDITS[b % len(RAW_EDITS)]
        return _reframe(data, at, lambda inner, i: _mutate(inner, signal, (edit, i, b >> 2, blob)))
    # Rewrite a length prefix of the seed (offsets refer to it, not to a mutated copy).
    seed = SEEDS[signal]
    offset, size, length = PREFIXES[signal][a % len(PREFIXES[signal])]
    choices = (0, length - 1, length + 1, length * 2, 2**31 - 1, 2**32 + 1, 2**63 - 1, b)
    new = choices[b % len(choices)]
    return seed[:offset] + _encode_varint(max(0, new)) + seed[offset + size :]


def _reframe(data: bytes, at: int, edit: Callable[[bytes, int], bytes], depth: int = 0) -> bytes:
    """``data`` with ``edit`` applied inside the innermost length-delimited field that holds
    byte ``at`` (or to ``data`` itself), and every enclosing length prefix made right."""
    pos = 0
    try:
        while pos < len(data) and depth < 10:
            key, pos = _varint(data, pos)
            wire_type = key & 7
            if wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type in (1, 5):
                pos += 8 if wire_type == 1 else 4
            elif wire_type == 2:
                length, body = _varint(data, pos)
                end = body + length
                if end > len(data):
                    break
                if body <= at < end:
                    new = _reframe(data[body:end], at - body, edit, depth + 1)
                    return data[:pos] + _encode_varint(len(new)) + new + data[end:]
                pos = end
            else:
                break
    except IndexError:
        pass
    return edit(data, at)


RECORD_TABLES = {TRACES: "spans", LOGS: "logs", METRICS: "metric_points"}


@pytest.fixture(scope="module")
def fuzz_db(server: RunningOtlpd) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """One connection for the fuzz tests' row counts (a connection per example is slow)."""
    with psycopg.connect(server.database_url, autocommit=True) as conn:
        yield conn


def _stored(db: psycopg.Connection[tuple[Any, ...]], signal: str) -> int:
    row = db.execute(f"SELECT count(*) FROM {RECORD_TABLES[signal]}").fetchone()
    assert row is not None
    return int(row[0])


def _survives(
    db: psycopg.Connection[tuple[Any, ...]], channel: grpc.Channel, signal: str, payload: bytes
) -> None:
    """Any bytes get an acceptable answer: OK (maybe partial), INVALID_ARGUMENT for bytes
    that are not OTLP, or a code the OTLP spec has clients retry, never one on which a
    client drops the data (INTERNAL, UNKNOWN, ...). A request that parses is accounted for,
    record by record (stored + rejected = sent), and the server is still serving after."""
    sent = count_records(signal, payload) if _parses(signal, payload) else None
    before = _stored(db, signal)
    try:
        response = export(channel, signal, payload)
    except grpc.RpcError as error:
        code = error.code()  # type: ignore[attr-defined]
        assert code == grpc.StatusCode.INVALID_ARGUMENT or code in OTLP_RETRYABLE_CODES, (
            f"{signal} answered {code} ({error.details()}) to {payload.hex()}"  # type: ignore[attr-defined]
        )
        if sent is not None:
            # Refused whole: nothing of it may have been stored.
            assert _stored(db, signal) == before, payload.hex()
    else:
        if sent is not None:
            stored = _stored(db, signal) - before
            assert stored + rejected(signal, response) == sent, (
                f"{signal}: {stored} stored + {rejected(signal, response)} rejected "
                f"!= {sent} sent, for {payload.hex()}"
            )
    assert health(channel) == health_pb2.HealthCheckResponse.SERVING


def _parses(signal: str, payload: bytes) -> bool:
    try:
        REQUESTS[signal].FromString(payload)
    except DecodeError:
        return False
    return True


FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(signal=st.sampled_from(SIGNALS), payload=st.binary(max_size=2048))
def test_fuzz_random_bytes(
    fuzz_db: psycopg.Connection[tuple[Any, ...]],
    channel: grpc.Channel,
    signal: str,
    payload: bytes,
) -> None:
    _survives(fuzz_db, channel, signal, payload)


@st.composite
def mutated_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    signal = draw(st.sampled_from(SIGNALS))
    data = SEEDS[signal]
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(MUTATIONS),
                st.integers(0, 2**16),
                st.integers(0, 2**16),
                st.binary(min_size=1, max_size=16),
            ),
            min_size=1,
            max_size=4,
        )
    )
    # A length rewrite works on the seed, so it can only come first, and once.
    steps.sort(key=lambda step: step[0] != "length")
    for mutation in steps[:1] + [step for step in steps[1:] if step[0] != "length"]:
        data = _mutate(data, signal, mutation)
    return signal, data


@FUZZ
@given(request=mutated_requests())
def test_fuzz_mutated_requests(
    fuzz_db: psycopg.Connection[tuple[Any, ...]],
    channel: grpc.Channel,
    request: tuple[str, bytes],
) -> None:
    _survives(fuzz_db, channel, *request)


def test_fuzz_with_random_mutations(
    fuzz_db: psycopg.Connection[tuple[Any, ...]], channel: grpc.Channel
) -> None:
    """Plain random, seeded: hypothesis shrinks, this one covers more ground per second."""
    rng = random.Random(20240601)
    for _ in range(1500):
        signal = rng.choice(SIGNALS)
        data = SEEDS[signal]
        for step in range(rng.randint(1, 3)):
            # A length rewrite works on the seed, so it can only come first.
            op = rng.choice(MUTATIONS if step == 0 else MUTATIONS[:-1])
            blob = rng.randbytes(rng.randint(1, 32))
            data = _mutate(data, signal, (op, rng.getrandbits(20), rng.getrandbits(20), blob))
        _survives(fuzz_db, channel, signal, data)


def test_after_the_fuzz_the_server_still_stores_and_is_serving(
    server: RunningOtlpd, channel: grpc.Channel
) -> None:
    """Runs last in the module (pytest keeps file order): the server survived the fuzz."""
    now = time.time_ns()
    request = traces_request("after-fuzz", [span("alive", now, 0)])

    response = export(channel, TRACES, request)

    assert rejected(TRACES, response) == 0
    assert rows(
        server.database_url, "SELECT name FROM spans WHERE service_name = 'after-fuzz'"
    ) == [("alive",)]
    assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    assert health(channel, SERVICES[TRACES]) == health_pb2.HealthCheckResponse.SERVING
    for signal in SIGNALS:
        assert server.metric("otlpd_requests_total", {"signal": signal, "code": "INTERNAL"}) == 0
