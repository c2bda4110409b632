"""OTLP/HTTP end to end: a real otlpd, real HTTP clients, the rows in PostgreSQL.

The OpenTelemetry SDK's OTLP/HTTP exporters (protobuf, plain, gzip and deflate) and
hand-written OTLP/JSON requests must store exactly the rows that the same data stores
over OTLP/gRPC (a twin server on its own database). Then every answer the spec defines,
from a real request: 200 with partial success (protobuf and JSON), 400, 401, 403, 404,
405, 413 (before and after decompression), 415, 429 and 503 with ``Retry-After``, each
error with its ``google.rpc.Status`` body in the request's encoding; CORS preflights and
browser POSTs; and an Export in flight when the server drains.
"""

from __future__ import annotations

import base64
import gzip
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import psycopg
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from otlpd.errors import PayloadTooLarge
from otlpd.receiver.http import _Inflater
from storage.model import LOG_COLUMNS, POINT_COLUMNS, RESOURCE_COLUMNS, SERIES_COLUMNS, SPAN_COLUMNS
from storage.postgres import tenants
from tests.conftest import (
    PG_SERVER,
    RunningOtlpd,
    start_otlpd_thread,
    trace_request,
    wait_until,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
RUM = "https://rum.example"  # OTLPD_CORS_ORIGINS of the module's server
SHOP = "https://shop.example"  # allowed by project "shop" of the secured server only
OTHER = "https://evil.example"
MAX_REQUEST = 2 * 1024 * 1024
QUEUE_ROWS = 1000
SECOND = 10**9
TIMEOUT = 20

STUBS: dict[str, Any] = {
    "traces": trace_service_pb2_grpc.TraceServiceStub,
    "logs": logs_service_pb2_grpc.LogsServiceStub,
    "metrics": metrics_service_pb2_grpc.MetricsServiceStub,
}
REQUESTS: dict[str, Any] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
}
RESPONSES: dict[str, Any] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
}


# --- servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def new_database() -> Iterator[Callable[[], str]]:
    """Makes databases for the module's servers; drops them all at its end."""
    made: list[str] = []

    def make() -> str:
        name = f"otlpd_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{PG_SERVER}/{name}"

    yield make
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def server(new_database: Callable[[], str]) -> Iterator[RunningOtlpd]:
    """Auth off; browsers at RUM allowed; a small queue and request limit to reach."""
    running = start_otlpd_thread(
        new_database(),
        cors_origins=RUM,
        queue_max_rows=str(QUEUE_ROWS),
        batch_max_rows="512",
        max_request_bytes=str(MAX_REQUEST),
        retry_after="2s",
        shutdown_grace="2s",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def twin(new_database: Callable[[], str]) -> Iterator[RunningOtlpd]:
    """The same settings on a database of its own: what gRPC stores, to compare with."""
    running = start_otlpd_thread(
        new_database(), max_request_bytes=str(MAX_REQUEST), shutdown_grace="2s"
    )
    yield running
    running.stop()


@dataclass
class Secured:
    server: RunningOtlpd
    ingest: str  # tokens of project "shop"
    query_only: str
    limited: str  # 1 record/s of its own


@pytest.fixture(scope="module")
def secured(new_database: Callable[[], str]) -> Iterator[Secured]:
    """Auth required; project "shop" allows browsers at SHOP (the server default: none)."""
    running = start_otlpd_thread(
        new_database(), auth="required", retry_after="1s", shutdown_grace="2s"
    )
    url = running.database_url
    tenants.set_project(url, "shop", origins=[SHOP])
    _, ingest = tenants.create_token(url, "shop", ["ingest"])
    _, query_only = tenants.create_token(url, "shop", ["query"])
    _, limited = tenants.create_token(url, "shop", ["ingest"], rate=(1.0, None))
    wait_until(
        lambda: post(running, "/v1/traces", b"", token=limited).status == 200,
        "the tokens to be loaded (OTLPD_AUTH_REFRESH)",
    )
    yield Secured(running, ingest, query_only, limited)
    running.stop()


# --- calls ---------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def status_message(self) -> status_pb2.Status:
        """The google.rpc.Status of an error answer, in whichever encoding it came."""
        if self.headers["Content-Type"] == JSON:
            return json_format.Parse(self.body, status_pb2.Status())
        assert self.headers["Content-Type"] == PROTOBUF, self.headers
        return status_pb2.Status.FromString(self.body)

    def export_response(self, signal: str) -> Any:
        response = RESPONSES[signal]()
        if self.headers["Content-Type"] == JSON:
            return json_format.Parse(self.body, response)
        return response.FromString(self.body)


def request(
    server: RunningOtlpd,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    *,
    method: str = "POST",
    content_type: str | None = PROTOBUF,
    token: str | None = None,
    **headers: str,
) -> Answer:
    """One HTTP request to ``server``'s OTLP/HTTP port (chunked if ``body`` is an
    iterable); header names in ``headers`` use ``_`` for ``-``."""
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    if content_type is not None:
        sent["Content-Type"] = content_type
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    call = urllib.request.Request(server.http_url + path, data=body, method=method, headers=sent)
    try:
        with urllib.request.urlopen(call, timeout=TIMEOUT) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read())


def post(server: RunningOtlpd, path: str, body: bytes, **kwargs: Any) -> Answer:
    return request(server, path, body, **kwargs)


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def stored(url: str, service: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row ``service``'s records made, in every table, in a stable order; without
    the columns that say when they were stored (``first_seen``)."""

    def columns(names: Iterable[str]) -> str:
        return ", ".join(name for name in names if name != "first_seen")

    resources = (
        f"SELECT {columns(RESOURCE_COLUMNS)} FROM resources WHERE resource_id IN"
        " (SELECT resource_id FROM spans WHERE service_name = %s"
        "  UNION SELECT resource_id FROM logs WHERE service_name = %s) ORDER BY resource_id"
    )
    return {
        "spans": rows(
            url,
            f"SELECT {columns(SPAN_COLUMNS)} FROM spans WHERE service_name = %s ORDER BY span_id",
            service,
        ),
        "logs": rows(
            url,
            f"SELECT {columns(LOG_COLUMNS)} FROM logs WHERE service_name = %s"
            " ORDER BY time_unix_nano, body::text",
            service,
        ),
        "metric_points": rows(
            url,
            f"SELECT {columns(POINT_COLUMNS)} FROM metric_points WHERE service_name = %s"
            " ORDER BY series_id, time_unix_nano, start_time_unix_nano",
            service,
        ),
        "metric_series": rows(
            url,
            f"SELECT {columns(SERIES_COLUMNS)} FROM metric_series WHERE service_name = %s"
            " ORDER BY series_id",
            service,
        ),
        "resources": rows(url, resources, service, service),
    }


def assert_same_rows(http: RunningOtlpd, grpc_twin: RunningOtlpd, service: str) -> None:
    """Both servers stored the same rows for ``service``, and some."""
    got, expected = stored(http.database_url, service), stored(grpc_twin.database_url, service)
    assert any(expected.values()), "the gRPC twin stored nothing: the test proves nothing"
    for table in expected:
        assert got[table] == expected[table], table


def count(server: RunningOtlpd, table: str, service: str) -> int:
    """Rows of ``service`` in ``table``."""
    sql = f"SELECT count(*) FROM {table} WHERE service_name = %s"
    return int(rows(server.database_url, sql, service)[0][0])


def export_grpc(server: RunningOtlpd, signal: str, request_message: Message) -> Any:
    with grpc.insecure_channel(server.grpc_target) as channel:
        return STUBS[signal](channel).Export(request_message, timeout=TIMEOUT)


def requests_metric(server: RunningOtlpd, signal: str, code: str) -> float:
    return server.metric("otlpd_requests_total", {"signal": signal, "code": code})


# --- the SDK's OTLP/HTTP exporters against its OTLP/gRPC ones -------------------------


def test_sdk_http_span_exporter_stores_what_grpc_stores(
    server: RunningOtlpd, twin: RunningOtlpd
) -> None:
    """The same finished spans exported by the SDK's OTLP/HTTP exporter (protobuf) and by
    its OTLP/gRPC exporter: the same rows."""
    service = "sdk-http-traces"
    provider = TracerProvider(resource=Resource.create({"service.name": service, "k": "v"}))
    tracer = provider.get_tracer("tests.http", "1.0")
    spans: list[ReadableSpan] = []
    for i in range(20):
        with tracer.start_as_current_span(
            f"GET /item/{i}",
            kind=SpanKind.SERVER,
            attributes={"session.id": f"s-{i % 3}", "user.id": "u-1", "n": i, "x": 0.5},
        ) as span:
            span.add_event("cache.miss", {"key": f"item:{i}"})
            if i % 5 == 0:
                span.set_status(Status(StatusCode.ERROR, "boom"))
        assert isinstance(span, ReadableSpan)
        spans.append(span)
    before = requests_metric(server, "traces", "200")

    http = OTLPSpanExporter(endpoint=f"{server.http_url}/v1/traces", timeout=TIMEOUT)
    grpc_exporter = GrpcSpanExporter(endpoint=twin.grpc_target, insecure=True, timeout=TIMEOUT)
    assert http.export(spans) == SpanExportResult.SUCCESS
    assert grpc_exporter.export(spans) == SpanExportResult.SUCCESS
    http.shutdown()  # type: ignore[no-untyped-call]
    grpc_exporter.shutdown()

    assert_same_rows(server, twin, service)
    assert len(stored(server.database_url, service)["spans"]) == 20
    assert requests_metric(server, "traces", "200") == before + 1


def test_sdk_http_log_exporter_gzip_stores_what_grpc_stores(
    server: RunningOtlpd, twin: RunningOtlpd
) -> None:
    service = "sdk-http-logs"
    memory = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("tests.http.logs", "1.0")
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("op"):
        for i in range(10):
            logger.emit(
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
                body=f"payment {i} declined",
                attributes={"session.id": "s-9", "amount": i},
                event_name="payment.declined",
            )
    logger.emit(severity_number=SeverityNumber.INFO, body={"msg": "no trace", "n": 1})
    records = memory.get_finished_logs()
    assert len(records) == 11

    http = OTLPLogExporter(
        endpoint=f"{server.http_url}/v1/logs", compression=Compression.Gzip, timeout=TIMEOUT
    )
    grpc_exporter = GrpcLogExporter(endpoint=twin.grpc_target, insecure=True, timeout=TIMEOUT)
    assert http.export(records) == LogRecordExportResult.SUCCESS
    assert grpc_exporter.export(records) == LogRecordExportResult.SUCCESS
    http.shutdown()  # type: ignore[no-untyped-call]
    grpc_exporter.shutdown()

    assert_same_rows(server, twin, service)
    assert count(server, "logs", service) == 11


def test_sdk_http_metric_exporter_deflate_stores_what_grpc_stores(
    server: RunningOtlpd, twin: RunningOtlpd
) -> None:
    service = "sdk-http-metrics"
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create({"service.name": service}), metric_readers=[reader]
    )
    meter = provider.get_meter("tests.http.metrics")
    meter.create_counter("orders").add(3, {"region": "eu"})
    meter.create_up_down_counter("queue.depth").add(-2, {"queue": "q1"})
    meter.create_histogram("latency", unit="ms").record(42.0, {"route": "/cart"})
    meter.create_gauge("temperature").set(21.5, {"room": "a"})
    data = reader.get_metrics_data()
    assert data is not None
    provider.shutdown()

    http = OTLPMetricExporter(
        endpoint=f"{server.http_url}/v1/metrics", compression=Compression.Deflate, timeout=TIMEOUT
    )
    grpc_exporter = GrpcMetricExporter(endpoint=twin.grpc_target, insecure=True, timeout=TIMEOUT)
    assert http.export(data) == MetricExportResult.SUCCESS
    assert grpc_exporter.export(data) == MetricExportResult.SUCCESS
    http.shutdown()
    grpc_exporter.shutdown()

    assert_same_rows(server, twin, service)
    assert len(stored(server.database_url, service)["metric_points"]) == 4


# --- hand-written OTLP/JSON against the same data over gRPC -----------------------------


def named(service: str) -> dict[str, Any]:
    return {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}


def json_traces(service: str, now: int) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": service}},
                        {"key": "host.cores", "value": {"intValue": "8"}},
                    ],
                    "droppedAttributesCount": 1,
                },
                "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
                "scopeSpans": [
                    {
                        "scope": {"name": "checkout", "version": "2.1"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "name": "POST /pay",
                                "kind": 2,
                                "startTimeUnixNano": str(now - SECOND),
                                "endTimeUnixNano": str(now),
                                "traceState": "vendor=1",
                                "attributes": [
                                    {"key": "session.id", "value": {"stringValue": "s-1"}},
                                    {"key": "http.status_code", "value": {"intValue": 502}},
                                    {"key": "retry", "value": {"boolValue": True}},
                                    {"key": "ratio", "value": {"doubleValue": 0.25}},
                                    {
                                        "key": "tags",
                                        "value": {
                                            "arrayValue": {
                                                "values": [
                                                    {"stringValue": "a"},
                                                    {"intValue": "2"},
                                                ]
                                            }
                                        },
                                    },
                                    {
                                        "key": "card",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [
                                                    {
                                                        "key": "brand",
                                                        "value": {"stringValue": "visa"},
                                                    }
                                                ]
                                            }
                                        },
                                    },
                                ],
                                "events": [
                                    {
                                        "timeUnixNano": str(now - SECOND // 2),
                                        "name": "retrying",
                                        "attributes": [
                                            {"key": "attempt", "value": {"intValue": "2"}}
                                        ],
                                    }
                                ],
                                "links": [
                                    {
                                        "traceId": "0af7651916cd43dd8448eb211c80319c",
                                        "spanId": "b7ad6b7169203331",
                                        "attributes": [],
                                    }
                                ],
                                "status": {"code": 2, "message": "gateway"},
                                "flags": 1,
                            },
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b175",
                                "parentSpanId": "eee19b7ec3c1b174",
                                "name": "SELECT cart",
                                "kind": 3,
                                "startTimeUnixNano": str(now - SECOND + 1000),
                                "endTimeUnixNano": str(now - 1000),
                            },
                        ],
                    }
                ],
            }
        ]
    }


def json_logs(service: str, now: int) -> dict[str, Any]:
    return {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeLogs": [
                    {
                        "scope": {"name": "app"},
                        "logRecords": [
                            {
                                "timeUnixNano": str(now),
                                "observedTimeUnixNano": str(now + 5),
                                "severityNumber": 17,
                                "severityText": "ERROR",
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "body": {"stringValue": "payment declined"},
                                "attributes": [
                                    {"key": "user.id", "value": {"stringValue": "u-7"}},
                                    {"key": "amount", "value": {"doubleValue": 12.5}},
                                ],
                                "eventName": "payment.declined",
                                "flags": 1,
                            },
                            {
                                "timeUnixNano": str(now + 1),
                                "severityNumber": 9,
                                "body": {
                                    "kvlistValue": {
                                        "values": [
                                            {"key": "msg", "value": {"stringValue": "hi"}},
                                            {"key": "n", "value": {"intValue": "3"}},
                                        ]
                                    }
                                },
                            },
                        ],
                    }
                ],
            }
        ]
    }


def json_metrics(service: str, now: int) -> dict[str, Any]:
    start = str(now - 60 * SECOND)
    attributes = [{"key": "route", "value": {"stringValue": "/cart"}}]
    return {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeMetrics": [
                    {
                        "scope": {"name": "meter"},
                        "metrics": [
                            {
                                "name": "orders",
                                "unit": "1",
                                "description": "orders placed",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": start,
                                            "timeUnixNano": str(now),
                                            "asInt": "42",
                                            "attributes": attributes,
                                            "exemplars": [
                                                {
                                                    "timeUnixNano": str(now - 5),
                                                    "asDouble": 1,
                                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                                    "spanId": "eee19b7ec3c1b174",
                                                }
                                            ],
                                        }
                                    ],
                                },
                            },
                            {
                                "name": "temperature",
                                "gauge": {
                                    "dataPoints": [
                                        {"timeUnixNano": str(now), "asDouble": -3.5},
                                        {"timeUnixNano": str(now), "asDouble": "Infinity"},
                                    ]
                                },
                            },
                            {
                                "name": "latency",
                                "unit": "ms",
                                "histogram": {
                                    "aggregationTemporality": 1,
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": start,
                                            "timeUnixNano": str(now),
                                            "count": "3",
                                            "sum": 33,
                                            "min": 1,
                                            "max": 30,
                                            "bucketCounts": ["1", "1", "1"],
                                            "explicitBounds": [5, 10],
                                            "attributes": attributes,
                                        }
                                    ],
                                },
                            },
                            {
                                "name": "payload",
                                "unit": "By",
                                "exponentialHistogram": {
                                    "aggregationTemporality": 1,
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": start,
                                            "timeUnixNano": str(now),
                                            "count": "2",
                                            "sum": 3000,
                                            "scale": 3,
                                            "zeroCount": "0",
                                            "positive": {"offset": 80, "bucketCounts": ["1", "1"]},
                                        }
                                    ],
                                },
                            },
                            {
                                "name": "rpc.duration",
                                "summary": {
                                    "dataPoints": [
                                        {
                                            "startTimeUnixNano": start,
                                            "timeUnixNano": str(now),
                                            "count": "4",
                                            "sum": 10,
                                            "quantileValues": [
                                                {"quantile": 0.5, "value": 2},
                                                {"quantile": 0.99, "value": 4},
                                            ],
                                        }
                                    ]
                                },
                            },
                        ],
                    }
                ],
            }
        ]
    }


ID_KEYS = ("traceId", "spanId", "parentSpanId")


def as_base64(document: Any) -> Any:
    """``document`` with its hex ids in base64: what ``json_format`` (the reference
    reading of the proto3 mapping) wants."""
    if isinstance(document, list):
        return [as_base64(item) for item in document]
    if not isinstance(document, dict):
        return document
    return {
        key: base64.b64encode(bytes.fromhex(value)).decode() if key in ID_KEYS else as_base64(value)
        for key, value in document.items()
    }


@pytest.mark.parametrize(
    ("signal", "document"),
    [("traces", json_traces), ("logs", json_logs), ("metrics", json_metrics)],
    ids=["traces", "logs", "metrics"],
)
def test_hand_written_json_stores_what_grpc_stores(
    server: RunningOtlpd,
    twin: RunningOtlpd,
    signal: str,
    document: Callable[[str, int], dict[str, Any]],
) -> None:
    """The JSON goes to OTLP/HTTP as it is; json_format reads the same document (ids in
    base64) into the protobuf request that goes over gRPC to the twin."""
    service = f"json-{signal}"
    body = document(service, time.time_ns())
    answer = post(server, f"/v1/{signal}", orjson.dumps(body), content_type=JSON)
    assert answer.status == 200, answer
    assert answer.headers["Content-Type"] == JSON
    assert orjson.loads(answer.body) == {}  # full success: partial_success unset

    reference = json_format.ParseDict(as_base64(body), REQUESTS[signal]())
    response = export_grpc(twin, signal, reference)
    assert not response.HasField("partial_success")
    assert_same_rows(server, twin, service)


# --- partial success -----------------------------------------------------------------


def test_json_partial_success_answers_in_json_and_stores_the_good_records(
    server: RunningOtlpd,
) -> None:
    """A span of 1970 and one whose id is not hex are rejected; the answer says both."""
    service = "json-partial"
    now = time.time_ns()
    document = json_traces(service, now)
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    good = spans[1]
    spans[:] = [
        good,
        {**good, "spanId": "00f067aa0ba902b7", "startTimeUnixNano": "86400000000000"},
        {**good, "spanId": "not-hex!"},
    ]
    answer = post(server, "/v1/traces", orjson.dumps(document), content_type=JSON)
    assert answer.status == 200
    partial = orjson.loads(answer.body)["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    message = partial["errorMessage"]
    assert message.startswith("OTLP/JSON: an id not hex (spanId: 'not-hex!')")
    assert "time out of range" in message and "span 1" in message
    assert "invalid span_id" in message and "span 2" in message
    assert rows(server.database_url, "SELECT name FROM spans WHERE service_name = %s", service) == [
        ("SELECT cart",)
    ]


def test_protobuf_partial_success_answers_in_protobuf(server: RunningOtlpd) -> None:
    service = "protobuf-partial"
    request_message = trace_request(["good", "bad"], service)
    request_message.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x01" * 8
    answer = post(server, "/v1/traces", request_message.SerializeToString())
    assert answer.status == 200 and answer.headers["Content-Type"] == PROTOBUF
    partial = answer.export_response("traces").partial_success
    assert partial.rejected_spans == 1
    assert "trace_id must be 16 bytes, got 8" in partial.error_message
    assert rows(server.database_url, "SELECT name FROM spans WHERE service_name = %s", service) == [
        ("good",)
    ]


@pytest.mark.parametrize("content_type", [JSON, PROTOBUF])
@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_an_empty_request_is_a_success(
    server: RunningOtlpd, signal: str, content_type: str
) -> None:
    """The spec: "If the server receives an empty request ... respond with success"; an
    empty body is one in either encoding, and so is ``{}`` in JSON."""
    for body in [b"", b"{}"] if content_type == JSON else [b""]:
        answer = post(server, f"/v1/{signal}", body, content_type=content_type)
        assert answer.status == 200, answer
        assert answer.headers["Content-Type"] == content_type
        assert not answer.export_response(signal).HasField("partial_success")


def test_media_type_parameters_and_case_are_ignored(server: RunningOtlpd) -> None:
    service = "charset"
    body = orjson.dumps(json_traces(service, time.time_ns()))
    answer = post(server, "/v1/traces", body, content_type="Application/JSON; charset=utf-8")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == JSON
    assert count(server, "spans", service) == 2


def test_a_large_json_body_is_parsed_in_a_thread_and_stored(server: RunningOtlpd) -> None:
    """Over JSON_THREAD_BYTES (256 KiB), gzip: stored all the same."""
    service = "json-large"
    now = time.time_ns()
    document = json_traces(service, now)
    template = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    spans = []
    for i in range(800):
        spans.append({**template, "spanId": f"{i + 1:016x}", "name": f"span-{i}"})
    document["resourceSpans"][0]["scopeSpans"][0]["spans"] = spans
    body = orjson.dumps(document)
    assert 256 * 1024 < len(body) < MAX_REQUEST
    answer = post(
        server, "/v1/traces", gzip.compress(body), content_type=JSON, Content_Encoding="gzip"
    )
    assert answer.status == 200, answer
    assert orjson.loads(answer.body) == {}
    assert rows(
        server.database_url, "SELECT count(*) FROM spans WHERE service_name = %s", service
    ) == [(800,)]


# --- errors --------------------------------------------------------------------------


def assert_error(answer: Answer, status: int, code: int, says: str, encoding: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["Content-Type"] == encoding
    message = answer.status_message()
    assert message.code == code, message
    assert says in message.message, message


def test_a_body_that_is_not_otlp_is_400_in_the_request_encoding(server: RunningOtlpd) -> None:
    before = requests_metric(server, "logs", "400")
    rejected_before = server.metric(
        "otlpd_records_total", {"signal": "logs", "outcome": "rejected"}
    )
    assert_error(
        post(server, "/v1/logs", b"\xff\xfe not protobuf"),
        400,
        code_pb2.INVALID_ARGUMENT,
        "not a valid ExportLogsServiceRequest",
        PROTOBUF,
    )
    assert_error(
        post(server, "/v1/logs", b"{not json", content_type=JSON),
        400,
        code_pb2.INVALID_ARGUMENT,
        "the body is not JSON",
        JSON,
    )
    assert_error(
        post(server, "/v1/logs", b'{"resourceLogs": [{"scopeLogs": 3}]}', content_type=JSON),
        400,
        code_pb2.INVALID_ARGUMENT,
        "resourceLogs[0].scopeLogs: expected an array, got a number",
        JSON,
    )
    assert_error(
        post(server, "/v1/logs", b"\x1f\x8b\x08garbage", Content_Encoding="gzip"),
        400,
        code_pb2.INVALID_ARGUMENT,
        "not valid gzip",
        PROTOBUF,
    )
    truncated = gzip.compress(trace_request(["x"]).SerializeToString())[:-8]
    assert_error(
        post(server, "/v1/traces", truncated, Content_Encoding="gzip"),
        400,
        code_pb2.INVALID_ARGUMENT,
        "truncated",
        PROTOBUF,
    )
    assert requests_metric(server, "logs", "400") == before + 4
    # One record each for the unparsable protobuf and JSON bodies, as gRPC counts them.
    assert (
        server.metric("otlpd_records_total", {"signal": "logs", "outcome": "rejected"})
        == rejected_before + 3
    )


def test_another_path_is_404_and_another_method_405(server: RunningOtlpd) -> None:
    assert_error(
        post(server, "/v1/profiles", b""), 404, code_pb2.NOT_FOUND, "no such path", PROTOBUF
    )
    assert_error(
        request(server, "/", method="GET", content_type=JSON),
        404,
        code_pb2.NOT_FOUND,
        "/v1/traces, /v1/logs, /v1/metrics",
        JSON,
    )
    for method in ("GET", "PUT", "DELETE"):
        answer = request(server, "/v1/metrics", method=method)
        assert_error(answer, 405, code_pb2.INVALID_ARGUMENT, f"{method} is not allowed", PROTOBUF)
        assert answer.headers["Allow"] == "POST, OPTIONS"
    plain = request(server, "/v1/metrics", method="OPTIONS", content_type=None)
    assert (plain.status, plain.headers["Allow"]) == (204, "POST, OPTIONS")


def test_over_the_request_limit_is_413_before_and_after_inflating(server: RunningOtlpd) -> None:
    before = rows(server.database_url, "SELECT count(*) FROM spans")
    too_big = b"\x00" * (MAX_REQUEST + 1)
    assert_error(
        post(server, "/v1/traces", too_big),
        413,
        code_pb2.RESOURCE_EXHAUSTED,
        f"over the limit of {MAX_REQUEST} bytes",
        PROTOBUF,
    )
    # Chunked: no Content-Length to refuse it by, counted as it arrives.
    chunks = (b"\x0a" * 65536 for _ in range(MAX_REQUEST // 65536 + 2))
    assert_error(
        request(server, "/v1/traces", chunks, Transfer_Encoding="chunked"),
        413,
        code_pb2.RESOURCE_EXHAUSTED,
        f"over the limit of {MAX_REQUEST} bytes",
        PROTOBUF,
    )
    # A bomb: 40 KiB that would inflate to 40 MiB; inflating stops at the limit.
    bomb = gzip.compress(b"\x00" * (20 * MAX_REQUEST), compresslevel=9)
    assert len(bomb) < MAX_REQUEST // 20
    for coding, body in (("gzip", bomb), ("deflate", zlib.compress(b"{" * (3 * MAX_REQUEST)))):
        assert_error(
            post(server, "/v1/traces", body, content_type=JSON, Content_Encoding=coding),
            413,
            code_pb2.RESOURCE_EXHAUSTED,
            f"inflates past the limit of {MAX_REQUEST} bytes",
            JSON,
        )
    assert rows(server.database_url, "SELECT count(*) FROM spans") == before


def test_another_content_type_or_encoding_is_415_in_protobuf(server: RunningOtlpd) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        assert_error(
            post(server, "/v1/traces", b"{}", content_type=content_type),
            415,
            code_pb2.INVALID_ARGUMENT,
            "is not OTLP; send application/x-protobuf or application/json",
            PROTOBUF,
        )
    answer = post(server, "/v1/traces", b"{}", content_type=JSON, Content_Encoding="br")
    assert_error(answer, 415, code_pb2.INVALID_ARGUMENT, "content encoding 'br'", PROTOBUF)
    assert answer.headers["Accept-Encoding"] == "gzip, deflate, identity"


def test_a_full_queue_is_503_with_retry_after_and_nothing_is_lost(server: RunningOtlpd) -> None:
    """With the writer stalled, one Export fills the queue; the next is refused with 503,
    Retry-After and RetryInfo; the first is stored once the writer moves again."""
    service = "backpressure"
    first = trace_request([f"first-{i}" for i in range(QUEUE_ROWS - 100)], service)
    second = trace_request([f"second-{i}" for i in range(200)], service)
    answers: list[Answer] = []
    with psycopg.connect(server.database_url) as blocker:
        blocker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")
        waiting = threading.Thread(
            target=lambda: answers.append(post(server, "/v1/traces", first.SerializeToString()))
        )
        waiting.start()
        wait_until(lambda: server.metric("otlpd_queue_rows") > 0, "the first Export to queue")
        refused = post(server, "/v1/traces", second.SerializeToString(), content_type=PROTOBUF)
        blocker.rollback()
    waiting.join(TIMEOUT)
    assert_error(refused, 503, code_pb2.UNAVAILABLE, "ingest queue full", PROTOBUF)
    assert refused.headers["Retry-After"] == "2"
    (detail,) = refused.status_message().details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info) and info.retry_delay.seconds == 2
    assert [a.status for a in answers] == [200]
    names = rows(server.database_url, "SELECT name FROM spans WHERE service_name = %s", service)
    assert sorted(n for (n,) in names) == sorted(f"first-{i}" for i in range(QUEUE_ROWS - 100))


# --- tokens --------------------------------------------------------------------------


def test_without_a_valid_token_it_is_401_and_without_the_scope_403(secured: Secured) -> None:
    server = secured.server
    body = trace_request(["x"], "secured").SerializeToString()
    for token in (None, "otlpd_aaaaaaaaaaaa_notasecret", secured.ingest + "x"):
        answer = post(server, "/v1/traces", body, token=token)
        assert_error(answer, 401, code_pb2.UNAUTHENTICATED, "token", PROTOBUF)
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="otlpd"'
    answer = post(server, "/v1/traces", body, content_type=JSON, token=secured.query_only)
    assert_error(answer, 403, code_pb2.PERMISSION_DENIED, "no ingest scope", JSON)
    assert rows(server.database_url, "SELECT count(*) FROM spans") == [(0,)]

    answer = post(server, "/v1/traces", body, token=secured.ingest)
    assert answer.status == 200
    assert rows(server.database_url, "SELECT project_id, name FROM spans") == [("shop", "x")]


def test_over_the_token_rate_limit_is_429_with_retry_after(secured: Secured) -> None:
    """The bucket (1 record/s) lets one request through into debt, then refuses."""
    server = secured.server
    service = "throttled"
    first = post(
        server,
        "/v1/logs",
        orjson.dumps(json_logs(service, time.time_ns())),
        content_type=JSON,
        token=secured.limited,
    )
    assert first.status == 200, first
    second = post(
        server,
        "/v1/logs",
        orjson.dumps(json_logs(service, time.time_ns())),
        content_type=JSON,
        token=secured.limited,
    )
    assert_error(second, 429, code_pb2.UNAVAILABLE, "over its limit of 1 records/s", JSON)
    assert int(second.headers["Retry-After"]) >= 1
    assert count(server, "logs", service) == 2


# --- CORS ----------------------------------------------------------------------------


def preflight(server: RunningOtlpd, origin: str, headers: str = "content-type") -> Answer:
    return request(
        server,
        "/v1/traces",
        method="OPTIONS",
        content_type=None,
        Origin=origin,
        Access_Control_Request_Method="POST",
        Access_Control_Request_Headers=headers,
    )


def test_a_preflight_from_an_allowed_origin_is_answered(server: RunningOtlpd) -> None:
    answer = preflight(server, RUM, "Content-Type, Content-Encoding, X-Not-Allowed, authorization")
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == RUM
    assert answer.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert answer.headers["Access-Control-Allow-Headers"] == (
        "content-type, content-encoding, authorization"
    )
    assert int(answer.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in answer.headers["Vary"]


def test_a_preflight_from_another_origin_is_403_without_cors_headers(server: RunningOtlpd) -> None:
    answer = preflight(server, OTHER)
    assert answer.status == 403
    assert not any(name.startswith("Access-Control-") for name in answer.headers)


def test_a_browser_post_from_an_allowed_origin_is_stored_and_readable(
    server: RunningOtlpd,
) -> None:
    service = "browser"
    body = orjson.dumps(json_traces(service, time.time_ns()))
    answer = post(server, "/v1/traces", body, content_type=JSON, Origin=RUM)
    assert answer.status == 200
    assert answer.headers["Access-Control-Allow-Origin"] == RUM
    assert answer.headers["Vary"] == "Origin"
    assert "Retry-After" in answer.headers["Access-Control-Expose-Headers"]
    assert count(server, "spans", service) == 2
    # An error answer is readable by the page too.
    error = post(server, "/v1/traces", b"[", content_type=JSON, Origin=RUM)
    assert error.status == 400 and error.headers["Access-Control-Allow-Origin"] == RUM


def test_a_browser_post_from_another_origin_is_403_and_its_body_never_read(
    server: RunningOtlpd,
) -> None:
    service = "intruder"
    body = orjson.dumps(json_traces(service, time.time_ns()))
    read_before = server.metric("otlpd_request_bytes_count", {"signal": "traces"})
    answer = post(server, "/v1/traces", body, content_type=JSON, Origin=OTHER)
    assert_error(answer, 403, code_pb2.PERMISSION_DENIED, "may not send", JSON)
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert server.metric("otlpd_request_bytes_count", {"signal": "traces"}) == read_before
    assert rows(server.database_url, "SELECT 1 FROM spans WHERE service_name = %s", service) == []


def test_origins_are_a_setting_of_the_token_project(secured: Secured) -> None:
    """Project "shop" allows SHOP: its token may send from there, not from RUM; a request
    without a token from SHOP is refused (401) with CORS headers, so the page can read why."""
    server = secured.server
    service = "shop-browser"
    body = orjson.dumps(json_traces(service, time.time_ns()))
    assert preflight(server, SHOP).status == 204
    assert preflight(server, RUM).status == 403
    allowed = post(server, "/v1/traces", body, content_type=JSON, Origin=SHOP, token=secured.ingest)
    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == SHOP
    refused = post(server, "/v1/traces", body, content_type=JSON, Origin=RUM, token=secured.ingest)
    assert_error(refused, 403, code_pb2.PERMISSION_DENIED, "may not send", JSON)
    anonymous = post(server, "/v1/traces", body, content_type=JSON, Origin=SHOP)
    assert anonymous.status == 401
    assert anonymous.headers["Access-Control-Allow-Origin"] == SHOP
    assert rows(
        server.database_url, "SELECT count(*) FROM spans WHERE service_name = %s", service
    ) == [(2,)]


# --- draining ------------------------------------------------------------------------


def test_an_export_in_flight_when_the_server_drains_is_answered_and_stored(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    """SIGTERM while an Export waits for its commit: new Exports get 503 + Retry-After,
    the one in flight commits and gets 200 before the port closes."""
    server = start_otlpd(shutdown_grace="10s", retry_after="1s")
    answers: list[Answer] = []
    body = trace_request([f"inflight-{i}" for i in range(5)], "drain").SerializeToString()
    with psycopg.connect(server.database_url) as blocker:
        blocker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")
        inflight = threading.Thread(target=lambda: answers.append(post(server, "/v1/traces", body)))
        inflight.start()
        wait_until(lambda: server.metric("otlpd_queue_rows") > 0, "the Export to queue")
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        wait_until(lambda: server.app.ready is False, "the drain to begin")
        late = post(server, "/v1/traces", trace_request(["late"], "drain").SerializeToString())
        time.sleep(0.5)
        blocker.rollback()
    inflight.join(TIMEOUT)
    stopping.join(TIMEOUT)
    assert_error(late, 503, code_pb2.UNAVAILABLE, "shutting down", PROTOBUF)
    assert late.headers["Retry-After"] == "1"
    assert [a.status for a in answers] == [200]
    assert rows(server.database_url, "SELECT count(*) FROM spans") == [(5,)]


# --- inflating -----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    raw=st.binary(max_size=3000).map(lambda b: b * 40),
    coding=st.sampled_from(["gzip", "gzip-members", "deflate", "raw-deflate"]),
    cuts=st.lists(st.integers(1, 70_000), max_size=8),
    slack=st.integers(-2, 2),
)
def test_bodies_inflate_whole_in_any_pieces_and_never_past_the_limit(
    raw: bytes, coding: str, cuts: list[int], slack: int
) -> None:
    """However the body is cut on the wire (gzip of several members, zlib-wrapped or raw
    deflate), it inflates to exactly what was sent, or is refused as soon as it passes
    the limit; never more than the limit plus one chunk is held."""
    if coding == "gzip":
        body = gzip.compress(raw)
    elif coding == "gzip-members":
        body = gzip.compress(raw[: len(raw) // 2]) + gzip.compress(raw[len(raw) // 2 :])
    elif coding == "deflate":
        body = zlib.compress(raw)
    else:
        squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = squeeze.compress(raw) + squeeze.flush()
    limit = max(0, len(raw) + slack)
    inflater = _Inflater("gzip" if coding.startswith("gzip") else "deflate", limit)
    pieces: list[bytes] = []
    at = 0
    try:
        for cut in [*cuts, len(body)]:
            pieces += inflater.feed(body[at : at + cut])
            at += cut
            assert inflater.size <= limit
        pieces += inflater.feed(body[at:])
        inflater.finish()
    except PayloadTooLarge:
        assert len(raw) > limit
        return
    assert len(raw) <= limit
    assert b"".join(pieces) == raw
