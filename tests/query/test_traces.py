"""SearchTraces, GetTrace, ListServices and ListOperations over data sent through the real
OTLP receiver."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from query.convert import timestamp
from query.proto import pb
from tests.conftest import RunningOtlpd

MS = 1_000_000
HOUR = 3600 * 10**9


def attrs(values: dict[str, Any]) -> list[common_pb2.KeyValue]:
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            any_value = common_pb2.AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = common_pb2.AnyValue(int_value=value)
        else:
            any_value = common_pb2.AnyValue(string_value=value)
        out.append(common_pb2.KeyValue(key=key, value=any_value))
    return out


@dataclass
class S:
    """One span to send."""

    trace_id: bytes
    name: str
    start_ns: int
    duration_ns: int = MS
    parent: bytes = b""
    span_id: bytes = field(default_factory=lambda: os.urandom(8))
    error: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    kind: int = 2


def send_spans(
    otlpd: RunningOtlpd,
    spans: Sequence[S],
    service: str = "checkout",
    project: str | None = None,
    resource: dict[str, Any] | None = None,
) -> None:
    """One OTLP Export of ``spans`` under one resource; OK means committed."""
    resource_attrs = {"service.name": service, **(resource or {})}
    if project is not None:
        resource_attrs["project.id"] = project
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add(
        resource=resource_pb2.Resource(attributes=attrs(resource_attrs))
    ).scope_spans.add()
    for s in spans:
        scope.spans.add(
            trace_id=s.trace_id,
            span_id=s.span_id,
            parent_span_id=s.parent,
            name=s.name,
            kind=s.kind,
            start_time_unix_nano=s.start_ns,
            end_time_unix_nano=s.start_ns + s.duration_ns,
            attributes=attrs(s.attributes),
            status=trace_pb2.Status(code=2 if s.error else 0),
        )
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        response = trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=30)
    assert not response.partial_success.rejected_spans, response


def send_logs(
    otlpd: RunningOtlpd,
    records: Sequence[logs_pb2.LogRecord],
    service: str = "checkout",
    project: str | None = None,
    resource: dict[str, Any] | None = None,
) -> None:
    resource_attrs = {"service.name": service, **(resource or {})}
    if project is not None:
        resource_attrs["project.id"] = project
    request = logs_service_pb2.ExportLogsServiceRequest()
    scope = request.resource_logs.add(
        resource=resource_pb2.Resource(attributes=attrs(resource_attrs))
    ).scope_logs.add()
    scope.log_records.extend(records)
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        response = logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=30)
    assert not response.partial_success.rejected_log_records, response


def project(name: str) -> tuple[tuple[str, str], ...]:
    return (("x-otlpd-project", name),)


def code_of(call: Any, request: Any, metadata: Any = ()) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=metadata)
    return caught.value.code()  # type: ignore[no-any-return]


def search(query: Any, metadata: Any = (), **fields: Any) -> list[bytes]:
    """The trace ids of every page of a SearchTraces."""
    found: list[bytes] = []
    token = ""
    while True:
        answer = query.SearchTraces(
            pb.SearchTracesRequest(page_token=token, **fields), metadata=metadata
        )
        found.extend(t.trace_id for t in answer.traces)
        token = answer.next_page_token
        if not token:
            return found


@pytest.fixture
def now() -> int:
    return time.time_ns()


# --- GetTrace ---------------------------------------------------------------------------


def test_get_trace_returns_each_span_once_in_waterfall_order_with_depth(
    otlpd: RunningOtlpd, query: Any, now: int
) -> None:
    trace = os.urandom(16)
    root = S(trace, "GET /cart", now - 50 * MS, 40 * MS, attributes={"http.status": 200})
    db = S(trace, "SELECT", now - 45 * MS, 5 * MS, parent=root.span_id)
    call = S(trace, "POST /pay", now - 30 * MS, 10 * MS, parent=root.span_id, error=True)
    inner = S(trace, "charge", now - 29 * MS, 2 * MS, parent=call.span_id)
    send_spans(otlpd, [inner, call, db, root])
    # The exporter retried: the same spans again (the hot tier keeps both copies).
    send_spans(otlpd, [call, root, inner])

    answer = query.GetTrace(pb.GetTraceRequest(trace_id=trace))
    assert [(s.name, s.depth) for s in answer.spans] == [
        ("GET /cart", 0),
        ("SELECT", 1),
        ("POST /pay", 1),
        ("charge", 2),
    ]
    first = answer.spans[0]
    assert first.span_id == root.span_id and first.trace_id == trace
    assert first.service == "checkout" and first.kind == 2
    assert first.start_time == timestamp(root.start_ns)
    assert first.duration.ToNanoseconds() == 40 * MS
    assert first.attributes["http.status"] == 200
    assert first.resource["service.name"] == "checkout"
    assert answer.spans[2].status_code == 2
    assert answer.spans[3].parent_span_id == call.span_id
    assert not answer.logs
    (summary,) = query.SearchTraces(pb.SearchTracesRequest()).traces
    assert (summary.span_count, summary.error_count) == (4, 1)
    assert (summary.root_name, summary.duration.ToNanoseconds()) == ("GET /cart", 40 * MS)


def test_a_trace_across_two_partitions_is_whole_and_a_broken_one_has_orphans_on_top(
    otlpd: RunningOtlpd, query: Any, now: int
) -> None:
    trace = os.urandom(16)
    root = S(trace, "batch", now - HOUR - 60 * 10**9, 2 * HOUR)
    late = S(trace, "late step", now - 10 * MS, parent=root.span_id)
    send_spans(otlpd, [root])
    send_spans(otlpd, [late])
    answer = query.GetTrace(pb.GetTraceRequest(trace_id=trace))
    assert [(s.name, s.depth) for s in answer.spans] == [("batch", 0), ("late step", 1)]

    broken = os.urandom(16)
    missing = os.urandom(8)
    a = S(broken, "orphan a", now - 20 * MS, parent=missing)
    a_child = S(broken, "child of a", now - 19 * MS, parent=a.span_id)
    b = S(broken, "orphan b", now - 30 * MS, parent=os.urandom(8))
    send_spans(otlpd, [a_child, a, b])
    answer = query.GetTrace(pb.GetTraceRequest(trace_id=broken))
    assert [(s.name, s.depth) for s in answer.spans] == [
        ("orphan b", 0),
        ("orphan a", 0),
        ("child of a", 1),
    ]
    assert answer.spans[1].parent_span_id == missing


def test_get_trace_with_logs_unknown_ids_and_project_isolation(
    otlpd: RunningOtlpd, query: Any, now: int
) -> None:
    trace = os.urandom(16)
    root = S(trace, "GET /", now - 10 * MS)
    send_spans(otlpd, [root], project="acme")
    send_logs(
        otlpd,
        [
            logs_pb2.LogRecord(
                time_unix_nano=now - 5 * MS,
                body=common_pb2.AnyValue(string_value="second"),
                trace_id=trace,
                span_id=root.span_id,
            ),
            logs_pb2.LogRecord(
                time_unix_nano=now - 9 * MS,
                body=common_pb2.AnyValue(string_value="first"),
                trace_id=trace,
            ),
            logs_pb2.LogRecord(
                time_unix_nano=now - 7 * MS,
                body=common_pb2.AnyValue(string_value="other trace"),
                trace_id=os.urandom(16),
            ),
        ],
        project="acme",
    )
    acme = project("acme")
    answer = query.GetTrace(pb.GetTraceRequest(trace_id=trace, include_logs=True), metadata=acme)
    assert [s.name for s in answer.spans] == ["GET /"]
    assert [r.body.string_value for r in answer.logs] == ["first", "second"]
    assert answer.logs[1].span_id == root.span_id
    without = query.GetTrace(pb.GetTraceRequest(trace_id=trace), metadata=acme)
    assert not without.logs

    other = pb.GetTraceRequest(trace_id=trace, include_logs=True)
    assert code_of(query.GetTrace, other, project("globex")) == grpc.StatusCode.NOT_FOUND
    assert code_of(query.GetTrace, other) == grpc.StatusCode.NOT_FOUND  # default project
    unknown = pb.GetTraceRequest(trace_id=os.urandom(16))
    assert code_of(query.GetTrace, unknown, acme) == grpc.StatusCode.NOT_FOUND
    for bad in (b"", b"x" * 15, b"x" * 17):
        with pytest.raises(grpc.RpcError) as caught:
            query.GetTrace(pb.GetTraceRequest(trace_id=bad), metadata=acme)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "trace_id" in caught.value.details()


# --- SearchTraces -----------------------------------------------------------------------


def test_search_traces_every_filter_includes_and_excludes(
    otlpd: RunningOtlpd, query: Any, now: int
) -> None:
    fast, slow, failed, old = (os.urandom(16) for _ in range(4))
    fast_root = S(fast, "GET /cart", now - 40 * MS, 2 * MS, attributes={"region": "eu"})
    slow_root = S(slow, "GET /cart", now - 30 * MS, 900 * MS, attributes={"retries": 3})
    failed_root = S(failed, "POST /pay", now - 20 * MS, 50 * MS, error=True)
    old_root = S(old, "GET /cart", now - 3 * HOUR, 2 * MS)
    send_spans(otlpd, [fast_root, slow_root, failed_root, old_root], service="web")
    # A second service in the slow trace: a child span, found by its own service.
    send_spans(
        otlpd,
        [
            S(
                slow,
                "query",
                now - 25 * MS,
                100 * MS,
                parent=slow_root.span_id,
                attributes={"ok": True},
            )
        ],
        service="db",
    )

    def ids(**fields: Any) -> set[bytes]:
        return set(search(query, **fields))

    assert ids() == {fast, slow, failed}  # default: the last hour
    assert ids(start_time=timestamp(now - 4 * HOUR)) == {fast, slow, failed, old}
    assert ids(start_time=timestamp(now - 4 * HOUR), end_time=timestamp(now - HOUR)) == {old}
    assert ids(service="db") == {slow}
    assert ids(service="nope") == set()
    assert ids(span_name="POST /pay") == {failed}
    assert ids(span_name="query", service="web") == set()  # both on one span
    assert ids(attributes=[pb.AttributeFilter(key="region", value="eu")]) == {fast}
    assert ids(attributes=[pb.AttributeFilter(key="region", value="us")]) == set()
    assert ids(attributes=[pb.AttributeFilter(key="retries", value="3")]) == {slow}
    assert ids(attributes=[pb.AttributeFilter(key="ok", value="true")]) == {slow}
    assert ids(attributes=[pb.AttributeFilter(key="ok", value="false")]) == set()
    assert ids(min_duration=duration_pb2.Duration(nanos=100 * MS)) == {slow}
    assert ids(min_duration=duration_pb2.Duration(seconds=1)) == set()
    assert ids(max_duration=duration_pb2.Duration(nanos=10 * MS)) == {fast}
    assert ids(
        min_duration=duration_pb2.Duration(nanos=10 * MS),
        max_duration=duration_pb2.Duration(nanos=60 * MS),
    ) == {failed}
    assert ids(errors_only=True) == {failed}
    assert ids(errors_only=True, service="db") == set()

    # Newest first by the latest matching span; summaries over all spans of the trace.
    answer = query.SearchTraces(pb.SearchTracesRequest())
    assert [t.trace_id for t in answer.traces] == [failed, slow, fast]
    by_id = {t.trace_id: t for t in answer.traces}
    summary = by_id[slow]
    assert (summary.root_service, summary.root_name) == ("web", "GET /cart")
    assert summary.start_time == timestamp(slow_root.start_ns)
    assert summary.duration.ToNanoseconds() == 900 * MS
    assert summary.span_count == 2 and summary.error_count == 0
    assert list(summary.services) == ["db", "web"]
    assert by_id[failed].error_count == 1
    # Found through the db span, summarized over the whole trace.
    (via_db,) = query.SearchTraces(pb.SearchTracesRequest(service="db")).traces
    assert via_db.root_name == "GET /cart" and via_db.span_count == 2


def test_search_traces_refuses_bad_arguments_naming_the_field(query: Any, now: int) -> None:
    cases = {
        "limit": pb.SearchTracesRequest(limit=-1),
        "end_time": pb.SearchTracesRequest(
            start_time=timestamp(now), end_time=timestamp(now - HOUR)
        ),
        "min_duration": pb.SearchTracesRequest(min_duration=duration_pb2.Duration(seconds=-1)),
        "max_duration": pb.SearchTracesRequest(
            min_duration=duration_pb2.Duration(seconds=2),
            max_duration=duration_pb2.Duration(seconds=1),
        ),
        "attributes[0].key": pb.SearchTracesRequest(attributes=[pb.AttributeFilter(value="x")]),
        "page_token": pb.SearchTracesRequest(page_token="garbage"),
        "service": pb.SearchTracesRequest(service="x" * 1001),
    }
    for field_name, request in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            query.SearchTraces(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field_name
        assert caught.value.details().startswith(field_name), caught.value.details()
    huge = pb.SearchTracesRequest(limit=10**9)
    assert code_of(query.SearchTraces, huge) == grpc.StatusCode.INVALID_ARGUMENT
    # Hostile text is a value, never SQL.
    hostile = "x' OR 1=1; DROP TABLE spans; -- %_\\\"\x01"
    answer = query.SearchTraces(
        pb.SearchTracesRequest(
            service=hostile,
            span_name=hostile,
            attributes=[pb.AttributeFilter(key=hostile, value=hostile)],
        )
    )
    assert not answer.traces


def test_search_traces_pages_without_duplicates_or_gaps_under_concurrent_ingest(
    otlpd: RunningOtlpd, query: Any, now: int
) -> None:
    traces = [os.urandom(16) for _ in range(25)]
    # Some traces share a start time to the microsecond: the trace id breaks the tie.
    send_spans(otlpd, [S(t, "job", now - HOUR // 2 + (i // 3) * MS) for i, t in enumerate(traces)])
    stop = threading.Event()

    def ingest() -> None:
        while not stop.is_set():
            send_spans(otlpd, [S(os.urandom(16), "job", time.time_ns())])
            # And late spans of traces already stored (their latest span moves).
            send_spans(otlpd, [S(traces[0], "job", time.time_ns(), parent=os.urandom(8))])

    writer = threading.Thread(target=ingest)
    writer.start()
    try:
        pages: list[list[bytes]] = []
        token = ""
        request = pb.SearchTracesRequest(limit=4)
        while True:
            request.page_token = token
            answer = query.SearchTraces(request)
            pages.append([t.trace_id for t in answer.traces])
            token = answer.next_page_token
            if not token:
                break
    finally:
        stop.set()
        writer.join()
    seen = [t for page in pages for t in page]
    assert len(seen) == len(set(seen)), "a trace was listed twice"
    assert set(traces) <= set(seen), "a trace was skipped"
    assert all(len(page) == 4 for page in pages[:-1])
    # A token belongs to its request.
    first = query.SearchTraces(pb.SearchTracesRequest(limit=2))
    other = pb.SearchTracesRequest(limit=2, service="x", page_token=first.next_page_token)
    assert code_of(query.SearchTraces, other) == grpc.StatusCode.INVALID_ARGUMENT
    elsewhere = pb.SearchTracesRequest(limit=2, page_token=first.next_page_token)
    assert code_of(query.SearchTraces, elsewhere, project("p2")) == grpc.StatusCode.INVALID_ARGUMENT


def test_search_traces_is_scoped_to_the_project(otlpd: RunningOtlpd, query: Any, now: int) -> None:
    mine, theirs = os.urandom(16), os.urandom(16)
    send_spans(otlpd, [S(mine, "a", now - MS)], project="acme")
    send_spans(otlpd, [S(theirs, "a", now - MS)], project="globex")
    # A trace id in both projects: each sees only its own spans.
    send_spans(otlpd, [S(mine, "intruder", now - MS)], project="globex")
    assert search(query, project("acme")) == [mine]
    assert set(search(query, project("globex"))) == {mine, theirs}
    assert search(query) == []
    (summary,) = query.SearchTraces(pb.SearchTracesRequest(), metadata=project("acme")).traces
    assert summary.span_count == 1 and summary.root_name == "a"
    # The project_id field scopes too.
    assert [
        t.trace_id for t in query.SearchTraces(pb.SearchTracesRequest(project_id="acme")).traces
    ] == [mine]


# --- the catalog ------------------------------------------------------------------------


def test_catalog_lists_services_and_operations_per_project_with_pages(
    otlpd: RunningOtlpd, query: Any, now: int
) -> None:
    for service in ("web", "db", "auth", "queue"):
        t = os.urandom(16)
        send_spans(
            otlpd,
            [S(t, f"{service} op {k}", now - MS, kind=k) for k in (1, 2, 3)]
            + [S(t, "shared", now - MS, kind=1), S(t, "shared", now - MS, kind=3)],
            service=service,
            project="acme",
        )
    send_spans(otlpd, [S(os.urandom(16), "secret", now - MS)], service="hidden", project="globex")
    acme = project("acme")

    names: list[str] = []
    token = ""
    while True:
        answer = query.ListServices(
            pb.ListServicesRequest(limit=3, page_token=token), metadata=acme
        )
        names.extend(s.name for s in answer.services)
        for s in answer.services:
            assert (
                s.first_seen.seconds > 0
                and s.last_seen.ToNanoseconds() >= s.first_seen.ToNanoseconds()
            )
        token = answer.next_page_token
        if not token:
            break
    assert names == ["auth", "db", "queue", "web"]
    globex = query.ListServices(pb.ListServicesRequest(), metadata=project("globex"))
    assert [s.name for s in globex.services] == ["hidden"]
    assert not query.ListServices(pb.ListServicesRequest()).services

    ops: list[tuple[str, int]] = []
    token = ""
    while True:
        answer = query.ListOperations(
            pb.ListOperationsRequest(service="db", limit=2, page_token=token), metadata=acme
        )
        ops.extend((o.name, o.span_kind) for o in answer.operations)
        token = answer.next_page_token
        if not token:
            break
    assert ops == [("db op 1", 1), ("db op 2", 2), ("db op 3", 3), ("shared", 1), ("shared", 3)]
    hidden = pb.ListOperationsRequest(service="hidden")
    assert not query.ListOperations(hidden, metadata=acme).operations
    assert [
        o.name for o in query.ListOperations(hidden, metadata=project("globex")).operations
    ] == ["secret"]
    with pytest.raises(grpc.RpcError) as caught:
        query.ListOperations(pb.ListOperationsRequest(), metadata=acme)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("service")
    wrong = pb.ListServicesRequest(page_token="bm90IGEgdG9rZW4")
    assert code_of(query.ListServices, wrong, acme) == grpc.StatusCode.INVALID_ARGUMENT
