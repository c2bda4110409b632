"""GetSessionTimeline over spans, logs and metric exemplars sent through the real OTLP
receiver."""

from __future__ import annotations

import os
import time
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from query.convert import timestamp
from query.proto import pb
from tests.conftest import RunningOtlpd
from tests.query.test_traces import MS, S, attrs, code_of, project, send_logs, send_spans


def log(time_ns: int, body: str, **fields: Any) -> logs_pb2.LogRecord:
    return logs_pb2.LogRecord(
        time_unix_nano=time_ns, body=common_pb2.AnyValue(string_value=body), **fields
    )


def send_gauge(
    otlpd: RunningOtlpd,
    name: str,
    time_ns: int,
    value: float,
    resource: dict[str, Any],
    **exemplar: Any,
) -> None:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    scope = request.resource_metrics.add(
        resource=resource_pb2.Resource(attributes=attrs(resource))
    ).scope_metrics.add()
    point = scope.metrics.add(name=name, unit="ms").gauge.data_points.add(
        time_unix_nano=time_ns, as_double=value
    )
    if exemplar:
        point.exemplars.add(time_unix_nano=time_ns, as_double=value, **exemplar)
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        answer = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(request, timeout=30)
    assert not answer.partial_success.rejected_data_points, answer


def timeline(query: Any, session_id: str, metadata: Any = (), limit: int = 0) -> list[Any]:
    """Every page's items, and the last page's session."""
    items: list[Any] = []
    token = ""
    while True:
        answer = query.GetSessionTimeline(
            pb.GetSessionTimelineRequest(session_id=session_id, limit=limit, page_token=token),
            metadata=metadata,
        )
        items.extend(answer.items)
        token = answer.next_page_token
        if not token:
            return items


def describe(item: Any) -> tuple[str, str]:
    kind = item.WhichOneof("item")
    if kind == "span":
        return kind, item.span.name
    if kind == "log":
        return kind, item.log.body.string_value
    return kind, item.exemplar.metric_name


def test_timeline_merges_spans_logs_and_exemplars_in_time_order(
    otlpd: RunningOtlpd, query: Any
) -> None:
    now = time.time_ns()
    session = {"session.id": "sess-1", "user.id": "alice"}
    trace = os.urandom(16)
    click = S(trace, "click", now - 50 * MS)
    fetch = S(trace, "fetch", now - 30 * MS, parent=click.span_id)
    send_spans(otlpd, [fetch, click], service="web", project="acme", resource=session)
    send_spans(otlpd, [fetch], service="web", project="acme", resource=session)  # retried
    send_spans(
        otlpd,
        [S(os.urandom(16), "api", now - 20 * MS)],
        service="api",
        project="acme",
        resource=session,
    )
    send_logs(
        otlpd,
        [log(now - 40 * MS, "clicked", trace_id=trace), log(now - 10 * MS, "done")],
        service="web",
        project="acme",
        resource=session,
    )
    send_gauge(
        otlpd,
        "latency",
        now - 25 * MS,
        12.5,
        {"service.name": "web", "project.id": "acme", **session},
        trace_id=trace,
        span_id=fetch.span_id,
    )
    # Not of this session, or not of this project.
    send_spans(
        otlpd,
        [S(os.urandom(16), "other", now - 35 * MS)],
        service="web",
        project="acme",
        resource={"session.id": "sess-2"},
    )
    send_logs(
        otlpd, [log(now - 15 * MS, "globex")], project="globex", resource={"session.id": "sess-1"}
    )

    acme = project("acme")
    answer = query.GetSessionTimeline(
        pb.GetSessionTimelineRequest(session_id="sess-1"), metadata=acme
    )
    assert [describe(i) for i in answer.items] == [
        ("span", "click"),
        ("log", "clicked"),
        ("span", "fetch"),
        ("exemplar", "latency"),
        ("span", "api"),
        ("log", "done"),
    ]
    assert not answer.next_page_token
    assert answer.items[0].time == timestamp(click.start_ns)
    assert answer.items[1].time == timestamp(now - 40 * MS)
    exemplar = answer.items[3].exemplar
    assert (exemplar.service, exemplar.value) == ("web", 12.5)
    assert (exemplar.trace_id, exemplar.span_id) == (trace, fetch.span_id)
    assert answer.items[5].log.session_id == "sess-1"
    s = answer.session
    assert (s.session_id, s.project_id, s.user_id) == ("sess-1", "acme", "alice")
    assert list(s.services) == ["api", "web"]
    assert s.first_seen.ToNanoseconds() <= now - 50 * MS + 1000
    assert s.last_seen.ToNanoseconds() >= s.first_seen.ToNanoseconds()

    # Paged one item at a time: the same items, none twice (the retried span included).
    paged = timeline(query, "sess-1", acme, limit=1)
    assert [describe(i) for i in paged] == [describe(i) for i in answer.items]
    paged = timeline(query, "sess-1", acme, limit=4)
    assert [describe(i) for i in paged] == [describe(i) for i in answer.items]

    # The other project has its own session of the same id; the default project none.
    globex = query.GetSessionTimeline(
        pb.GetSessionTimelineRequest(session_id="sess-1"), metadata=project("globex")
    )
    assert [describe(i) for i in globex.items] == [("log", "globex")]
    assert globex.session.project_id == "globex" and not globex.session.user_id
    missing = pb.GetSessionTimelineRequest(session_id="sess-1")
    assert code_of(query.GetSessionTimeline, missing) == grpc.StatusCode.NOT_FOUND
    unknown = pb.GetSessionTimelineRequest(session_id="never")
    assert code_of(query.GetSessionTimeline, unknown, acme) == grpc.StatusCode.NOT_FOUND


def test_timeline_pages_a_large_session_and_refuses_bad_arguments(
    otlpd: RunningOtlpd, query: Any
) -> None:
    now = time.time_ns()
    session = {"session.id": "big", "user.id": "bob"}
    spans = [S(os.urandom(16), f"s{i}", now - (1000 - i) * MS) for i in range(0, 600, 2)]
    send_spans(otlpd, spans, project="acme", resource=session)
    # Records at the same microsecond as spans, and several at one microsecond.
    send_logs(
        otlpd,
        [log(now - (1000 - i) * MS, f"l{i}") for i in range(0, 600, 3)]
        + [log(now - 100 * MS, f"same{k}") for k in range(5)],
        project="acme",
        resource=session,
    )
    acme = project("acme")
    whole = timeline(query, "big", acme)
    paged = timeline(query, "big", acme, limit=7)
    assert len(whole) == 300 + 200 + 5
    assert [describe(i) for i in paged] == [describe(i) for i in whole]
    times = [i.time.ToNanoseconds() for i in whole]
    assert times == sorted(times)
    assert describe(whole[0]) == ("span", "s0") and describe(whole[1]) == ("log", "l0")

    for field_name, request in {
        "session_id": pb.GetSessionTimelineRequest(),
        "limit": pb.GetSessionTimelineRequest(session_id="big", limit=10**8),
        "page_token": pb.GetSessionTimelineRequest(session_id="big", page_token="x"),
    }.items():
        with pytest.raises(grpc.RpcError) as caught:
            query.GetSessionTimeline(request, metadata=acme)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field_name
        assert caught.value.details().startswith(field_name)
    first = query.GetSessionTimeline(
        pb.GetSessionTimelineRequest(session_id="big", limit=3), metadata=acme
    )
    moved = pb.GetSessionTimelineRequest(session_id="big", page_token=first.next_page_token)
    assert code_of(query.GetSessionTimeline, moved, project("globex")) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_first_and_last_seen_reach_the_items_the_stored_sighting_trails(
    otlpd: RunningOtlpd, query: Any
) -> None:
    now = time.time_ns()
    session = {"session.id": "sess-seen", "user.id": "bob"}
    early, late = now - 10_000 * MS, now - 5_000 * MS
    send_spans(otlpd, [S(os.urandom(16), "open", early)], service="web", resource=session)
    # Five seconds later: the writer does not rewrite a session's last_seen for less than
    # a minute, so the stored row still says `early`.
    send_spans(otlpd, [S(os.urandom(16), "tap", late)], service="web", resource=session)
    answer = query.GetSessionTimeline(pb.GetSessionTimelineRequest(session_id="sess-seen"))
    assert [describe(i) for i in answer.items] == [("span", "open"), ("span", "tap")]
    assert answer.session.first_seen.ToNanoseconds() == early // 1000 * 1000
    assert answer.session.last_seen.ToNanoseconds() == late // 1000 * 1000
    # A page of the first item only: the sighting is not widened past what it shows.
    first = query.GetSessionTimeline(pb.GetSessionTimelineRequest(session_id="sess-seen", limit=1))
    assert first.session.last_seen.ToNanoseconds() == early // 1000 * 1000
