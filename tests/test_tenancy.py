"""Tokens and tenants end to end: who may send, into which project, and who reads what.

Two otlpd replicas share one database; tokens are made with the same functions as
``otlpd tokens create``. Everything goes through the real OTLP/gRPC receiver and the
real query API, and the outcome is read back from PostgreSQL.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from query.convert import timestamp
from query.proto import pb, pb_grpc
from storage.postgres import tenants
from storage.postgres.migrate import migrate
from tests.conftest import RunningOtlpd

MS = 1_000_000


def _kv(key: str, value: str) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def _bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token is not None else ()


def _spans(
    trace_id: bytes, *, project: str | None = None, session: str | None = None, n: int = 1
) -> trace_service_pb2.ExportTraceServiceRequest:
    now = time.time_ns()
    resource = [_kv("service.name", "shop")]
    if project is not None:
        resource.append(_kv("project.id", project))
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add(
        resource=resource_pb2.Resource(attributes=resource)
    ).scope_spans.add()
    for i in range(n):
        scope.spans.add(
            trace_id=trace_id,
            span_id=os.urandom(8),
            name=f"op{i}",
            kind=2,
            start_time_unix_nano=now - MS,
            end_time_unix_nano=now,
            attributes=[_kv("session.id", session)] if session else [],
        )
    return request


def _export(
    server: RunningOtlpd, request: trace_service_pb2.ExportTraceServiceRequest, token: str | None
) -> trace_service_pb2.ExportTraceServiceResponse:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        return stub.Export(request, metadata=_bearer(token), timeout=10)  # type: ignore[no-any-return]


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()  # type: ignore[no-any-return]


def _projects_of(database_url: str, trace_id: bytes) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT project_id FROM spans WHERE trace_id = %s ORDER BY 1", (trace_id,)
        ).fetchall()
    return [r[0] for r in rows]


class Tokens:
    """Tokens of two projects, made before the servers start (so auth is required)."""

    def __init__(self, database_url: str) -> None:
        def make(project: str, *scopes: str) -> tuple[str, str]:
            token_id, text = tenants.create_token(
                database_url,
                project,
                list(scopes),
                name=f"{project}-{'-'.join(scopes)}",
                actor="test",
            )
            return token_id, text

        self.a_ingest_id, self.a_ingest = make("acme", "ingest")
        self.b_ingest_id, self.b_ingest = make("globex", "ingest")
        self.a_query_id, self.a_query = make("acme", "query")
        self.admin_id, self.admin = make("acme", "admin")


@pytest.fixture
def tokens(database_url: str) -> Tokens:
    migrate(database_url)
    return Tokens(database_url)


@pytest.fixture
def replicas(
    tokens: Tokens, start_otlpd: Callable[..., RunningOtlpd]
) -> Iterator[tuple[RunningOtlpd, RunningOtlpd]]:
    yield start_otlpd(auth_refresh="0.2s"), start_otlpd(auth_refresh="0.2s")


def test_ingest_needs_a_valid_token_of_the_right_scope(
    tokens: Tokens, replicas: tuple[RunningOtlpd, RunningOtlpd], database_url: str
) -> None:
    server = replicas[0]
    trace = os.urandom(16)
    for token in (None, "otlpd_nonsense", tokens.a_ingest + "x", "otlpd_" + "a" * 60):
        code = _code(lambda t=token: _export(server, _spans(trace), t))
        assert code is grpc.StatusCode.UNAUTHENTICATED, token
    assert _code(lambda: _export(server, _spans(trace), tokens.a_query)) is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert _projects_of(database_url, trace) == []
    # The token's project, whatever the records say of none: acme.
    assert not _export(server, _spans(trace), tokens.a_ingest).partial_success.rejected_spans
    assert _projects_of(database_url, trace) == ["acme"]


def test_a_record_claiming_another_project_is_rejected_alone(
    tokens: Tokens, replicas: tuple[RunningOtlpd, RunningOtlpd], database_url: str
) -> None:
    trace = os.urandom(16)
    request = _spans(trace, n=2)
    intruder = request.resource_spans.add(
        resource=resource_pb2.Resource(attributes=[_kv("project.id", "globex")])
    ).scope_spans.add()
    intruder.spans.extend(_spans(trace, n=3).resource_spans[0].scope_spans[0].spans)
    same = request.resource_spans.add(
        resource=resource_pb2.Resource(attributes=[_kv("project.id", "acme")])
    ).scope_spans.add()
    same.spans.extend(_spans(trace, n=1).resource_spans[0].scope_spans[0].spans)

    response = _export(replicas[0], request, tokens.a_ingest)

    assert response.partial_success.rejected_spans == 3
    assert "project" in response.partial_success.error_message
    assert "globex" not in response.partial_success.error_message
    assert _projects_of(database_url, trace) == ["acme"] * 3


def test_session_completion_never_crosses_projects(
    tokens: Tokens, replicas: tuple[RunningOtlpd, RunningOtlpd], database_url: str
) -> None:
    server = replicas[0]
    trace_b, trace_a = os.urandom(16), os.urandom(16)
    request = _spans(trace_b, session="s-shared")
    request.resource_spans[0].scope_spans[0].spans[0].attributes.append(_kv("user.id", "bob"))
    _export(server, request, tokens.b_ingest)
    # acme's record names only the session that globex's user owns.
    _export(server, _spans(trace_a, session="s-shared"), tokens.a_ingest)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT project_id, user_id FROM spans WHERE trace_id = ANY(%s) ORDER BY 1",
            ([trace_a, trace_b],),
        ).fetchall()
    assert rows == [("acme", None), ("globex", "bob")]


def test_a_revoked_token_stops_on_every_replica_within_five_seconds(
    tokens: Tokens, replicas: tuple[RunningOtlpd, RunningOtlpd], database_url: str
) -> None:
    for server in replicas:
        _export(server, _spans(os.urandom(16)), tokens.a_ingest)
    assert tenants.revoke_token(database_url, tokens.a_ingest_id, actor="test")
    revoked = time.monotonic()
    for server in replicas:
        while True:
            try:
                _export(server, _spans(os.urandom(16)), tokens.a_ingest)
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.UNAUTHENTICATED
                break
            assert time.monotonic() - revoked < 5.0, "a revoked token still works"
            time.sleep(0.1)
    # The other project's token is untouched.
    _export(replicas[1], _spans(os.urandom(16)), tokens.b_ingest)


def _send_everything(server: RunningOtlpd, token: str, project: str, now: int) -> bytes:
    """A trace, a log record of it and a metric point, all under service ``svc-{project}``."""
    trace = os.urandom(16)
    service = _kv("service.name", f"svc-{project}")
    spans = trace_service_pb2.ExportTraceServiceRequest()
    spans.resource_spans.add(
        resource=resource_pb2.Resource(attributes=[service])
    ).scope_spans.add().spans.add(
        trace_id=trace,
        span_id=os.urandom(8),
        name="checkout",
        kind=2,
        start_time_unix_nano=now - MS,
        end_time_unix_nano=now,
        attributes=[_kv("session.id", f"sess-{project}")],
    )
    logs = logs_service_pb2.ExportLogsServiceRequest()
    logs.resource_logs.add(
        resource=resource_pb2.Resource(attributes=[service])
    ).scope_logs.add().log_records.add(
        time_unix_nano=now - MS,
        severity_number=17,
        body=common_pb2.AnyValue(string_value="payment declined"),
        trace_id=trace,
        attributes=[_kv("session.id", f"sess-{project}")],
    )
    metrics = metrics_service_pb2.ExportMetricsServiceRequest()
    metrics.resource_metrics.add(
        resource=resource_pb2.Resource(attributes=[service])
    ).scope_metrics.add().metrics.add(
        name="orders",
        gauge=metrics_pb2.Gauge(
            data_points=[metrics_pb2.NumberDataPoint(time_unix_nano=now - MS, as_double=1.0)]
        ),
    )
    metadata = _bearer(token)
    with grpc.insecure_channel(server.grpc_target) as channel:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(spans, metadata=metadata)
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(logs, metadata=metadata)
        metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics, metadata=metadata)
    return trace


def test_a_query_token_sees_its_own_project_only_on_every_rpc(
    tokens: Tokens, replicas: tuple[RunningOtlpd, RunningOtlpd]
) -> None:
    server = replicas[0]
    now = time.time_ns()
    mine = _send_everything(server, tokens.a_ingest, "acme", now)
    theirs = _send_everything(server, tokens.b_ingest, "globex", now)
    start, end = timestamp(now - 3600 * 10**9), timestamp(now + 60 * 10**9)
    window = {"start_time": start, "end_time": end}
    a = _bearer(tokens.a_query)
    with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as channel:
        q = pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        logs = q.SearchLogs(pb.SearchLogsRequest(**window), metadata=a).records
        assert [r.service for r in logs] == ["svc-acme"]
        their_logs = q.SearchLogs(pb.SearchLogsRequest(**window), metadata=_bearer(tokens.admin))
        assert [r.service for r in their_logs.records] == ["svc-acme"]  # admin: own by default
        context = pb.GetLogContextRequest(id=logs[0].id)
        assert q.GetLogContext(context, metadata=a).record.id == logs[0].id
        volume = q.GetLogVolume(pb.GetLogVolumeRequest(**window), metadata=a)
        assert sum(c.count for b in volume.buckets for c in b.counts) == 1
        found = q.SearchTraces(pb.SearchTracesRequest(**window), metadata=a).traces
        assert [t.trace_id for t in found] == [mine]
        assert q.GetTrace(pb.GetTraceRequest(trace_id=mine), metadata=a).spans
        assert _code(lambda: q.GetTrace(pb.GetTraceRequest(trace_id=theirs), metadata=a)) is (
            grpc.StatusCode.NOT_FOUND
        )
        services = q.ListServices(pb.ListServicesRequest(), metadata=a).services
        assert [s.name for s in services] == ["svc-acme"]
        operations = q.ListOperations(
            pb.ListOperationsRequest(service="svc-globex"), metadata=a
        ).operations
        assert list(operations) == []
        names = [m.name for m in q.ListMetrics(pb.ListMetricsRequest(), metadata=a).metrics]
        assert names == ["orders"]
        series = (
            q.QueryMetrics(
                pb.QueryMetricsRequest(
                    queries=[
                        pb.MetricQuery(
                            metric_name="orders", aggregation=pb.AGGREGATION_SUM, **window
                        )
                    ]
                ),
                metadata=a,
            )
            .results[0]
            .series
        )
        assert [p.value for s in series for p in s.samples] == [1.0]
        timeline = pb.GetSessionTimelineRequest(session_id="sess-globex")
        assert _code(lambda: q.GetSessionTimeline(timeline, metadata=a)) is (
            grpc.StatusCode.NOT_FOUND
        )
        # Naming another project: refused to a query token, honoured for an admin one.
        other = (*a, ("x-otlpd-project", "globex"))
        assert _code(lambda: q.ListServices(pb.ListServicesRequest(), metadata=other)) is (
            grpc.StatusCode.PERMISSION_DENIED
        )
        admin_other = (*_bearer(tokens.admin), ("x-otlpd-project", "globex"))
        services = q.ListServices(pb.ListServicesRequest(), metadata=admin_other).services
        assert [s.name for s in services] == ["svc-globex"]
        # No token, or an ingest token, reads nothing.
        assert _code(lambda: q.ListServices(pb.ListServicesRequest())) is (
            grpc.StatusCode.UNAUTHENTICATED
        )
        ingest_only = _bearer(tokens.a_ingest)
        assert _code(lambda: q.ListServices(pb.ListServicesRequest(), metadata=ingest_only)) is (
            grpc.StatusCode.PERMISSION_DENIED
        )
        tail = q.TailLogs(pb.TailLogsRequest(), metadata=ingest_only)
        assert _code(lambda: next(iter(tail))) is grpc.StatusCode.PERMISSION_DENIED
