"""One otlpd per module for the alerting API's tests, and stubs scoped to a project."""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from alerting.proto import pb, pb_grpc
from tests.conftest import RunningOtlpd, start_otlpd_thread


@pytest.fixture(scope="module")
def alerting_otlpd(shared_database: str) -> Iterator[RunningOtlpd]:
    server = start_otlpd_thread(shared_database, scheduler="off")
    yield server
    server.stop()


class Project:
    """An AlertService stub whose every call names one project (x-otlpd-project)."""

    def __init__(self, stub: Any, project: str) -> None:
        self._stub = stub
        self.project = project

    def __getattr__(self, rpc: str) -> Callable[..., Any]:
        method = getattr(self._stub, rpc)

        def call(request: Any) -> Any:
            return method(request, metadata=(("x-otlpd-project", self.project),), timeout=10)

        return call


@pytest.fixture(scope="module")
def alert_stub(alerting_otlpd: RunningOtlpd) -> Iterator[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{alerting_otlpd.app.ports.query}") as channel:
        yield pb_grpc.AlertServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture
def project(alert_stub: Any, request: pytest.FixtureRequest) -> Project:
    """A project of its own for each test (the module shares one database)."""
    return Project(alert_stub, f"p-{request.node.name[:60]}")


@pytest.fixture
def other(alert_stub: Any, request: pytest.FixtureRequest) -> Project:
    return Project(alert_stub, f"o-{request.node.name[:60]}")


def refused(call: Callable[[], Any]) -> grpc.RpcError:
    """The error ``call`` raised (it must raise one)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value  # type: ignore[no-any-return]


def audit_rows(database_url: str, project: str) -> list[tuple[Any, ...]]:
    """(actor, action, subject, details) of the project's audit log, oldest first."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT actor, action, subject, details FROM audit_log WHERE project_id = %s"
            " ORDER BY entry_id",
            (project,),
        ).fetchall()


# --- sending telemetry through the real OTLP receiver -----------------------------------


def _attributes(labels: dict[str, str]) -> list[common_pb2.KeyValue]:
    return [
        common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
        for k, v in labels.items()
    ]


def _resource(service: str, project: str) -> resource_pb2.Resource:
    return resource_pb2.Resource(
        attributes=_attributes({"service.name": service, "project.id": project})
    )


def send_gauge(
    otlpd: RunningOtlpd,
    name: str,
    value: float,
    *,
    project: str,
    service: str = "svc",
    labels: dict[str, str] | None = None,
    at_ns: int | None = None,
) -> None:
    """One gauge point, timed now (or ``at_ns``), through OTLP/gRPC."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    scope = request.resource_metrics.add(resource=_resource(service, project)).scope_metrics.add()
    metric = scope.metrics.add(name=name, unit="1")
    metric.gauge.data_points.add(
        time_unix_nano=at_ns or time.time_ns(),
        as_double=value,
        attributes=_attributes(labels or {}),
    )
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        answer = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]
    assert answer.partial_success.rejected_data_points == 0, answer.partial_success


def send_logs(
    otlpd: RunningOtlpd,
    bodies: list[str],
    *,
    project: str,
    service: str = "checkout",
    severity: int = 17,
) -> None:
    """Log records timed now, through OTLP/gRPC."""
    request = logs_service_pb2.ExportLogsServiceRequest()
    scope = request.resource_logs.add(resource=_resource(service, project)).scope_logs.add()
    now = time.time_ns()
    for i, body in enumerate(bodies):
        scope.log_records.add(
            time_unix_nano=now + i * 1000,
            severity_number=severity,
            body=common_pb2.AnyValue(string_value=body),
        )
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]


def send_requests(
    otlpd: RunningOtlpd,
    *,
    project: str,
    service: str,
    total: int,
    errors: int,
    name: str = "GET /pay",
    duration_ns: int = 1_000_000,
    ago: float = 0.0,
) -> None:
    """``total`` server spans of ``service`` ending now (or ``ago`` seconds ago),
    ``errors`` of them failed."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add(resource=_resource(service, project)).scope_spans.add()
    now = time.time_ns() - round(ago * 1e9)
    for i in range(total):
        scope.spans.add(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name=name,
            kind=2,
            start_time_unix_nano=now - duration_ns - i * 1000,
            end_time_unix_nano=now - i * 1000,
            status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR if i < errors else 0),
        )
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]


# --- a real HTTP receiver ----------------------------------------------------------------


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Receiver:
    """An HTTP server on loopback that records every POST and answers with the statuses
    of ``answers`` in turn (then 200)."""

    def __init__(self, answers: list[int] | None = None, *, tls: ssl.SSLContext | None = None):
        self.deliveries: list[Delivery] = []
        self.answers = list(answers or [])
        self.attempts = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    receiver.attempts += 1
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    if status == 200:
                        receiver.deliveries.append(
                            Delivery(self.path, dict(self.headers.items()), body)
                        )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self, status: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                d.body for d in self.deliveries if status is None or d.body.get("status") == status
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def wait_for(check: Callable[[], Any], timeout: float = 20.0, every: float = 0.1) -> Any:
    """Polls ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {check}")
        time.sleep(every)


# Settings that make evaluation and delivery quick enough for a test.
FAST = {
    "alert_poll": "0.2s",
    "alert_lease": "2s",
    "notify_backoff": "0.2s",
    "notify_backoff_max": "1s",
    "external_url": "http://otlpd.example",
}


def alerting_server(database_url: str, **settings: str) -> RunningOtlpd:
    """An otlpd whose evaluator and senders run every 0.2 s."""
    return start_otlpd_thread(database_url, **{**FAST, **settings})


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def event_kinds(project: Project, rule_id: str) -> list[str]:
    """The rule's events, oldest first, by kind name."""
    answer = project.ListAlertEvents(pb.ListAlertEventsRequest(rule_id=rule_id))
    return [pb.AlertEvent.Kind.Name(e.kind) for e in reversed(answer.events)]


def webhook_channel(project: Project, url: str, name: str = "hook") -> str:
    created = project.CreateChannel(
        pb.CreateChannelRequest(
            channel=pb.Channel(
                name=name, webhook=pb.WebhookChannel(url=url, headers={"X-Team": "payments"})
            )
        )
    )
    return str(created.channel.id)


class Feeder:
    """Sends ``value`` of a gauge every 0.2 s from a thread until stopped; change
    ``value`` to move the series."""

    def __init__(
        self, otlpd: RunningOtlpd, name: str, value: float, *, project: str, ahead: float = 0.0
    ) -> None:
        self.value = value
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.is_set():
                at = time.time_ns() + round(ahead * 1e9)
                send_gauge(otlpd, name, self.value, project=project, at_ns=at)
                self._stop.wait(0.2)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
