"""Behind a collector nobody here wrote: the OTel Python SDK exports to rotel (a Rust OTLP
collector), rotel forwards to otlpd over OTLP/gRPC, and every span, log record and metric
point must arrive in PostgreSQL with its service name and attributes."""

from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import RunningOtlpd, free_port

RESOURCE = Resource.create({"service.name": "via-rotel", "deployment.environment": "ci"})
DEADLINE = 20.0


def rotel_agent() -> Path:
    spec = importlib.util.find_spec("rotel")
    assert spec is not None and spec.origin is not None, "the rotel package is not installed"
    return Path(spec.origin).parent / "rotel-agent"


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"rotel-agent exited with {proc.returncode}"
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"rotel-agent did not listen on {port} within {timeout}s")


@dataclass
class Rotel:
    endpoint: str  # its OTLP/gRPC receiver
    output: Path  # its log, for failure messages


@contextmanager
def running_rotel(tmp_path: Path, exporter: list[str]) -> Iterator[Rotel]:
    """A rotel-agent receiving OTLP/gRPC on a free port and exporting with the
    ``exporter`` flags (``--otlp-exporter-*``), killed on exit."""
    grpc_port, http_port = free_port(), free_port()
    output_path = tmp_path / "rotel.out"
    output = output_path.open("wb")
    proc = subprocess.Popen(
        [
            str(rotel_agent()),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{http_port}",
            "--exporter",
            "otlp",
            *exporter,
            "--batch-timeout",
            "100ms",
            "--pid-file",
            str(tmp_path / "rotel.pid"),
            "--log-file",
            str(tmp_path / "rotel.log"),
        ],
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(grpc_port, proc, 10)
        yield Rotel(f"127.0.0.1:{grpc_port}", output_path)
    finally:
        proc.kill()
        proc.wait(10)
        output.close()


@pytest.fixture
def rotel(otlpd: RunningOtlpd, tmp_path: Path) -> Iterator[Rotel]:
    """A rotel-agent forwarding OTLP/gRPC to ``otlpd``."""
    with running_rotel(tmp_path, ["--otlp-exporter-endpoint", f"http://{otlpd.grpc_target}"]) as r:
        yield r


def poll_rows(
    url: str, sql: str, done: Callable[[list[tuple[Any, ...]]], bool]
) -> list[tuple[Any, ...]]:
    """Runs ``sql`` until ``done(rows)`` or the deadline; returns the last rows."""
    deadline = time.monotonic() + DEADLINE
    while True:
        with psycopg.connect(url) as conn:
            rows = conn.execute(sql).fetchall()
        if done(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_sdk_through_rotel_reaches_postgres(otlpd: RunningOtlpd, rotel: Rotel) -> None:
    endpoint = rotel.endpoint
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
    logger = logging.getLogger("tests.rotel")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = LoggingHandler(logger_provider=loggers)
    logger.addHandler(handler)
    try:
        tracer = tracers.get_tracer("tests.rotel")
        sent_spans = {}
        for i in range(20):
            with tracer.start_as_current_span(f"op-{i}", attributes={"i": i, "k": "v"}) as span:
                sent_spans[f"op-{i}"] = span.get_span_context().span_id.to_bytes(8, "big")
                logger.warning("log %d", i, extra={"n": i, "session.id": f"s-{i % 3}"})
        meter = meters.get_meter("tests.rotel")
        meter.create_counter("jobs").add(7, {"queue": "q1"})
        meter.create_histogram("latency", unit="ms").record(12.5, {"route": "/x"})
        meter.create_gauge("temperature").set(20.5, {"room": "b"})
    finally:
        logger.removeHandler(handler)
        tracers.shutdown()
        loggers.shutdown()
        meters.shutdown()  # collects and exports once (a force_flush would export twice)

    spans = poll_rows(
        otlpd.database_url,
        "SELECT name, span_id, service_name, s.attributes, r.attributes"
        " FROM spans s JOIN resources r USING (project_id, resource_id)",
        lambda rows: len(rows) >= len(sent_spans),
    )
    forwarded = f"rotel's log:\n{rotel.output.read_text(errors='replace')[-3000:]}"
    assert sorted((r[0], r[1]) for r in spans) == sorted(sent_spans.items()), forwarded
    for name, _, service, attributes, resource in spans:
        assert service == "via-rotel"
        assert attributes == {"i": int(name.split("-")[1]), "k": "v"}
        assert resource["deployment.environment"] == "ci"

    logs = poll_rows(
        otlpd.database_url,
        "SELECT body, service_name, session_id, attributes, span_id FROM logs",
        lambda rows: len(rows) >= 20,
    )
    assert sorted(r[0] for r in logs) == sorted(f"log {i}" for i in range(20)), forwarded
    for body, service, session, attributes, span_id in logs:
        i = int(body.split()[1])
        assert (service, session) == ("via-rotel", f"s-{i % 3}")
        assert attributes["n"] == i
        assert span_id == sent_spans[f"op-{i}"]

    points = poll_rows(
        otlpd.database_url,
        "SELECT s.metric_name, p.service_name, s.attributes, p.value, p.count, p.sum"
        " FROM metric_points p JOIN metric_series s USING (project_id, series_id)",
        lambda rows: len(rows) >= 3,
    )
    got = {r[0]: r[1:] for r in points}
    assert len(points) == 3, forwarded
    assert got["jobs"] == ("via-rotel", {"queue": "q1"}, 7.0, None, None)
    assert got["latency"][:2] == ("via-rotel", {"route": "/x"})
    assert got["latency"][3:] == (1, 12.5)
    assert got["temperature"][:3] == ("via-rotel", {"room": "b"}, 20.5)
