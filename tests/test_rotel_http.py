"""Behind a collector nobody here wrote, over OTLP/HTTP: the OTel Python SDK exports to
rotel (a Rust OTLP collector) over OTLP/gRPC, rotel forwards to otlpd's OTLP/HTTP port
(protobuf, gzip), and every span, log record and metric point it received is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import RunningOtlpd
from tests.test_rotel import Rotel, poll_rows, running_rotel

RESOURCE = Resource.create({"service.name": "via-rotel-http"})


@pytest.fixture
def rotel_http(otlpd: RunningOtlpd, tmp_path: Path) -> Iterator[Rotel]:
    """A rotel-agent forwarding to ``otlpd`` over OTLP/HTTP with gzip."""
    exporter = [
        "--otlp-exporter-protocol",
        "http",
        "--otlp-exporter-compression",
        "gzip",
        "--otlp-exporter-endpoint",
        otlpd.http_url,
    ]
    with running_rotel(tmp_path, exporter) as rotel:
        yield rotel


def test_rotel_over_otlp_http_lands_everything(otlpd: RunningOtlpd, rotel_http: Rotel) -> None:
    endpoint = rotel_http.endpoint
    tracers = TracerProvider(resource=RESOURCE)
    tracers.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    )
    loggers = LoggerProvider(resource=RESOURCE)
    loggers.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True))
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint, insecure=True), export_interval_millis=3_600_000
    )
    meters = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    logger = loggers.get_logger("tests.rotel_http")
    try:
        tracer = tracers.get_tracer("tests.rotel_http")
        for i in range(30):
            with tracer.start_as_current_span(f"op-{i}", attributes={"i": i}):
                logger.emit(body=f"log {i}", attributes={"n": i})
        meter = meters.get_meter("tests.rotel_http")
        meter.create_counter("jobs").add(7, {"queue": "q1"})
        meter.create_histogram("latency", unit="ms").record(12.5, {"route": "/x"})
        meter.create_gauge("temperature").set(20.5, {"room": "b"})
    finally:
        tracers.shutdown()
        loggers.shutdown()
        meters.shutdown()  # collects and exports once

    forwarded = f"rotel's log:\n{rotel_http.output.read_text(errors='replace')[-3000:]}"
    url = otlpd.database_url
    spans = poll_rows(url, "SELECT name FROM spans", lambda rows: len(rows) >= 30)
    assert sorted(r[0] for r in spans) == sorted(f"op-{i}" for i in range(30)), forwarded
    logs = poll_rows(url, "SELECT body FROM logs", lambda rows: len(rows) >= 30)
    assert sorted(r[0] for r in logs) == sorted(f"log {i}" for i in range(30)), forwarded
    points = poll_rows(
        url,
        "SELECT s.metric_name FROM metric_points p JOIN metric_series s USING (series_id)",
        lambda rows: len(rows) >= 3,
    )
    assert sorted(r[0] for r in points) == ["jobs", "latency", "temperature"], forwarded
    # It came over OTLP/HTTP (counted by HTTP status; gRPC's codes are names).
    for signal in ("traces", "logs", "metrics"):
        assert otlpd.metric("otlpd_requests_total", {"signal": signal, "code": "200"}) > 0
        assert otlpd.metric("otlpd_requests_total", {"signal": signal, "code": "OK"}) == 0
