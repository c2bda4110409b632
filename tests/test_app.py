"""End to end with clients nobody here wrote: the OpenTelemetry Python SDK's OTLP/gRPC
exporters send traces, logs and metrics to a running otlpd; the rows must be in PostgreSQL
with their envelope columns, attributes and nanosecond timestamps."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import grpc
import psycopg
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.conftest import RunningOtlpd

RESOURCE = Resource.create(
    {"service.name": "checkout", "project.id": "shop", "deployment.environment": "test"}
)


def rows(server: RunningOtlpd, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.database_url) as conn:
        return conn.execute(sql, params).fetchall()


def test_sdk_spans_are_stored_with_their_envelope(otlpd: RunningOtlpd) -> None:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlpd.grpc_target, insecure=True))
    )
    tracer = provider.get_tracer("tests.app", "1.2.3")
    with tracer.start_as_current_span(
        "GET /cart",
        kind=SpanKind.SERVER,
        attributes={"session.id": "s-1", "user.id": "u-7", "http.status_code": 200},
    ) as parent:
        parent.add_event("cache.miss", {"key": "cart:7"})
        with tracer.start_as_current_span("SELECT cart") as child:
            child.set_status(Status(StatusCode.ERROR, "timeout"))
    provider.shutdown()

    got = rows(
        otlpd,
        "SELECT name, project_id, service_name, session_id, user_id, trace_id, span_id,"
        " parent_span_id, start_time_unix_nano, end_time_unix_nano, duration_ns, kind,"
        " status_code, status_message, s.attributes, events, r.attributes, scope_name,"
        " scope_version, (extract(epoch from time) * 1e6)::bigint, r.schema_url"
        " FROM spans s JOIN resources r USING (project_id, resource_id)"
        " ORDER BY start_time_unix_nano",
    )
    assert [r[0] for r in got] == ["GET /cart", "SELECT cart"]
    ctx_parent, ctx_child = parent.get_span_context(), child.get_span_context()
    server_row, client_row = got
    assert server_row[1:5] == ("shop", "checkout", "s-1", "u-7")
    assert server_row[5] == ctx_parent.trace_id.to_bytes(16, "big")
    assert server_row[6] == ctx_parent.span_id.to_bytes(8, "big")
    assert server_row[7] is None
    assert server_row[8] == parent.start_time and server_row[9] == parent.end_time
    assert server_row[10] == parent.end_time - parent.start_time  # type: ignore[operator]
    assert server_row[11] == 2  # SPAN_KIND_SERVER
    assert server_row[14] == {"session.id": "s-1", "user.id": "u-7", "http.status_code": 200}
    assert server_row[15][0]["name"] == "cache.miss"
    assert server_row[16] == client_row[16] == dict(RESOURCE.attributes)
    assert server_row[17:19] == ("tests.app", "1.2.3")
    assert server_row[19] == parent.start_time // 1000  # type: ignore[operator]
    # The child names no session: project and service come from the resource.
    assert client_row[1:3] == ("shop", "checkout")
    assert client_row[5] == ctx_child.trace_id.to_bytes(16, "big")
    assert client_row[7] == ctx_parent.span_id.to_bytes(8, "big")
    assert client_row[12:14] == (2, "timeout")  # STATUS_CODE_ERROR
    # Both spans refer to one stored resource.
    assert rows(otlpd, "SELECT count(*), min(project_id) FROM resources") == [(1, "shop")]


def test_sdk_logs_carry_trace_context_and_body(otlpd: RunningOtlpd) -> None:
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=otlpd.grpc_target, insecure=True))
    )
    tracer_provider = TracerProvider(resource=RESOURCE)
    logger = logging.getLogger("tests.app.logs")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        with tracer_provider.get_tracer("t").start_as_current_span("op") as span:
            logger.warning("payment declined", extra={"session.id": "s-9", "amount": 12.5})
        logger.info("no trace here")
    finally:
        logger.removeHandler(handler)
        provider.shutdown()

    got = rows(
        otlpd,
        "SELECT body, severity_number, severity_text, trace_id, span_id, session_id,"
        " project_id, service_name, l.attributes, time_unix_nano, observed_time_unix_nano,"
        " r.attributes FROM logs l JOIN resources r USING (project_id, resource_id)"
        " ORDER BY observed_time_unix_nano",
    )
    assert [r[0] for r in got] == ["payment declined", "no trace here"]
    warned, info = got
    ctx = span.get_span_context()
    assert warned[1:3] == (13, "WARN")  # SEVERITY_NUMBER_WARN
    assert warned[3] == ctx.trace_id.to_bytes(16, "big")
    assert warned[4] == ctx.span_id.to_bytes(8, "big")
    assert warned[5:8] == ("s-9", "shop", "checkout")
    assert warned[8]["amount"] == 12.5
    assert warned[9] > 1_600_000_000 * 10**9  # nanoseconds since the epoch
    assert warned[11] == info[11] == dict(RESOURCE.attributes)
    assert info[3] is None and info[4] is None and info[5] is None


def test_sdk_metrics_of_every_kind_are_stored_against_their_series(otlpd: RunningOtlpd) -> None:
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlpd.grpc_target, insecure=True),
        export_interval_millis=3_600_000,
    )
    provider = MeterProvider(
        resource=RESOURCE,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation()
            )
        ],
    )
    meter = provider.get_meter("tests.app.metrics")
    meter.create_counter("orders", unit="1").add(3, {"region": "eu"})
    meter.create_up_down_counter("queue.depth").add(-2, {"queue": "q1"})
    meter.create_histogram("latency", unit="ms").record(42.0, {"route": "/cart"})
    meter.create_histogram("payload.size", unit="By").record(1500, {"route": "/cart"})
    meter.create_gauge("temperature").set(21.5, {"room": "a"})
    meter.create_observable_gauge("cpu", callbacks=[lambda _: [Observation(0.25, {"core": "0"})]])
    provider.force_flush()
    provider.shutdown()

    got = {
        r[0]: r[1:]
        for r in rows(
            otlpd,
            "SELECT s.metric_name, s.metric_type, s.is_monotonic, s.attributes, p.value,"
            " p.value_int, p.count, p.sum, p.bucket_counts, p.scale, p.positive_bucket_counts,"
            " p.project_id, p.service_name, s.unit"
            " FROM metric_points p JOIN metric_series s USING (project_id, series_id)",
        )
    }
    assert set(got) == {"orders", "queue.depth", "latency", "payload.size", "temperature", "cpu"}
    assert got["orders"][:5] == (2, True, {"region": "eu"}, 3.0, 3)
    assert got["queue.depth"][:2] == (2, False) and got["queue.depth"][4] == -2
    assert got["latency"][0] == 3 and got["latency"][5:7] == (1, 42.0)
    assert sum(got["latency"][7]) == 1
    assert got["payload.size"][0] == 4 and got["payload.size"][5] == 1
    assert got["payload.size"][8] is not None and sum(got["payload.size"][9]) == 1
    assert got["temperature"][0] == 1 and got["temperature"][3] == 21.5
    assert got["cpu"][3] == 0.25
    assert all(v[10:12] == ("shop", "checkout") for v in got.values())
    assert got["latency"][12] == "ms"


def test_summary_points_are_stored(otlpd: RunningOtlpd) -> None:
    """The Python SDK produces no summaries, so a raw OTLP request sends one."""
    now = time.time_ns()
    point = metrics_pb2.SummaryDataPoint(
        time_unix_nano=now, start_time_unix_nano=now - 10**9, count=4, sum=10.0
    )
    point.quantile_values.add(quantile=0.5, value=2.0)
    point.quantile_values.add(quantile=0.99, value=4.0)
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add(
        resource=resource_pb2.Resource(
            attributes=[
                common_pb2.KeyValue(
                    key="service.name", value=common_pb2.AnyValue(string_value="db")
                )
            ]
        )
    )
    metric = resource_metrics.scope_metrics.add().metrics.add(name="rpc.duration", unit="s")
    metric.summary.data_points.append(point)
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        response = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(request, timeout=10)
    assert response.partial_success.rejected_data_points == 0

    (row,) = rows(
        otlpd,
        "SELECT s.metric_type, p.count, p.sum, p.quantiles, p.time_unix_nano,"
        " p.start_time_unix_nano FROM metric_points p JOIN metric_series s"
        " USING (project_id, series_id)",
    )
    assert row[0] == 5
    assert row[1:3] == (4, 10.0)
    assert json.loads(json.dumps(row[3])) == [[0.5, 2.0], [0.99, 4.0]]
    assert row[4:] == (now, now - 10**9)
