"""SearchLogs, GetLogContext and GetLogVolume over records sent through the OTLP receiver."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from query import logs
from query.proto import pb
from tests.conftest import RunningOtlpd

TIMEOUT = 10


def _kv(key: str, value: object) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        any_value = common_pb2.AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = common_pb2.AnyValue(int_value=value)
    else:
        any_value = common_pb2.AnyValue(string_value=str(value))
    return common_pb2.KeyValue(key=key, value=any_value)


def export(
    otlpd: RunningOtlpd,
    records: list[dict[str, Any]],
    *,
    service: str = "checkout",
    project: str | None = None,
    host: str = "h1",
) -> None:
    """One Export of ``records`` (dicts: body, time_ns, severity, trace_id, span_id, attrs)
    under one resource."""
    request = logs_service_pb2.ExportLogsServiceRequest()
    attrs = [_kv("service.name", service), _kv("host.name", host)]
    if project is not None:
        attrs.append(_kv("project.id", project))
    scope = request.resource_logs.add(
        resource=resource_pb2.Resource(attributes=attrs)
    ).scope_logs.add()
    now = time.time_ns()
    for i, r in enumerate(records):
        record = scope.log_records.add(
            time_unix_nano=r.get("time_ns", now - 1000 * (len(records) - i)),
            severity_number=r.get("severity", 9),
            trace_id=r.get("trace_id", b""),
            span_id=r.get("span_id", b""),
            attributes=[_kv(k, v) for k, v in r.get("attrs", {}).items()],
        )
        body = r.get("body", "")
        if isinstance(body, dict):
            record.body.kvlist_value.values.extend(_kv(k, v) for k, v in body.items())
        else:
            record.body.string_value = body
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)  # type: ignore[no-untyped-call]
        stub.Export(request, timeout=TIMEOUT)


def search(query: Any, project: str = "default", **kwargs: Any) -> pb.SearchLogsResponse:
    request = pb.SearchLogsRequest(**kwargs)
    metadata = (("x-otlpd-project", project),)
    response: pb.SearchLogsResponse = query.SearchLogs(request, metadata=metadata, timeout=TIMEOUT)
    return response


def bodies(query: Any, project: str = "default", **filter_fields: Any) -> list[str]:
    response = search(query, project, filter=pb.LogFilter(**filter_fields), limit=1000)
    return [r.body.string_value for r in response.records]


def details(error: grpc.RpcError) -> str:
    return error.details() or ""


def refused(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT)
    return caught.value


# --- full text ------------------------------------------------------------------------


def test_words_phrases_and_prefixes_include_and_exclude(otlpd: RunningOtlpd, query: Any) -> None:
    export(
        otlpd,
        [
            {"body": "Payment accepted for order 42"},
            {"body": "payments queue is full"},
            {"body": "order   42\tshipped"},
            {"body": "user-42 logged in"},
        ],
    )
    assert bodies(query, q="payment") == ["Payment accepted for order 42"]
    assert sorted(bodies(query, q="pay*")) == [
        "Payment accepted for order 42",
        "payments queue is full",
    ]
    assert sorted(bodies(query, q='"order 42"')) == [
        "Payment accepted for order 42",
        "order   42\tshipped",
    ]
    assert bodies(query, q='"42 order"') == []
    assert bodies(query, q="order shipped") == ["order   42\tshipped"]
    assert bodies(query, q="order nothing") == []
    assert bodies(query, q="ORDER SHIPPED") == ["order   42\tshipped"]
    assert bodies(query, q="ord") == []
    assert bodies(query, q="user-42") == ["user-42 logged in"]
    assert len(bodies(query, q="")) == 4


def test_a_structured_body_is_searched_as_its_json_text(otlpd: RunningOtlpd, query: Any) -> None:
    export(otlpd, [{"body": {"event": "refund", "amount": 7}}, {"body": "refunded"}])
    response = search(query, filter=pb.LogFilter(q="refund"))
    assert [r.body.struct_value["event"] for r in response.records] == ["refund"]


def test_hostile_text_is_matched_literally_or_refused(otlpd: RunningOtlpd, query: Any) -> None:
    hostile = [
        "'; DROP TABLE logs; --",
        r"C:\temp\new",
        "100% done_ok",
        "a.b*c (x|y) [z] ^$ {2}",
        'say "hi" o\'clock',
    ]
    export(otlpd, [{"body": b} for b in [*hostile, "plain text", "100 percent doneXok"]])
    assert bodies(query, q="'; DROP TABLE logs; --") == ["'; DROP TABLE logs; --"]
    assert bodies(query, q=r"C:\temp\new") == [r"C:\temp\new"]
    assert bodies(query, q="100%") == ["100% done_ok"]
    assert bodies(query, q="done_ok") == ["100% done_ok"]
    assert bodies(query, q="done_*") == ["100% done_ok"]
    assert bodies(query, q="(x|y)") == ["a.b*c (x|y) [z] ^$ {2}"]
    assert bodies(query, q="a.b*c") == ["a.b*c (x|y) [z] ^$ {2}"]
    assert bodies(query, q='"hi"') == ['say "hi" o\'clock']
    assert bodies(query, q="o'clock\x01\x7f") == ['say "hi" o\'clock']
    assert bodies(query, q="%") == ["100% done_ok"]
    # "_" is a word character: as a bare word it must stand alone, and it is no wildcard.
    assert bodies(query, q="_") == []
    # The table is still there, with every record.
    assert len(bodies(query)) == 7
    for q, why in (("x" * 1001, "1000"), ('say "hi', "quote"), ("a\x00b", "NUL")):
        error = refused(query.SearchLogs, pb.SearchLogsRequest(filter=pb.LogFilter(q=q)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "filter.q" in details(error) and why in details(error)
    assert bodies(query, q="x" * 1000) == []


# --- filters --------------------------------------------------------------------------


def test_every_filter_includes_and_excludes(otlpd: RunningOtlpd, query: Any) -> None:
    trace, span = os.urandom(16), os.urandom(8)
    export(
        otlpd,
        [
            {
                "body": "match",
                "severity": 17,
                "trace_id": trace,
                "span_id": span,
                "attrs": {"session.id": "s-1", "user.id": "u-1", "code": 42, "ok": True},
            },
        ],
        service="api",
    )
    export(otlpd, [{"body": "other", "severity": 5, "attrs": {"code": "7"}}], service="web")
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"service": "api"}, {"service": "nope"}),
        ({"min_severity": 17}, {"min_severity": 18}),
        ({"trace_id": trace}, {"trace_id": os.urandom(16)}),
        ({"span_id": span}, {"span_id": os.urandom(8)}),
        ({"session_id": "s-1"}, {"session_id": "s-2"}),
        ({"user_id": "u-1"}, {"user_id": "u-2"}),
        (
            {"attributes": [pb.AttributeFilter(key="code", value="42")]},
            {"attributes": [pb.AttributeFilter(key="code", value="43")]},
        ),
        (
            {"attributes": [pb.AttributeFilter(key="ok", value="true")]},
            {"attributes": [pb.AttributeFilter(key="ok", value="false")]},
        ),
    ]
    for including, excluding in cases:
        assert bodies(query, **including) == ["match"], including
        assert bodies(query, **excluding) == [], excluding
    assert bodies(query, attributes=[pb.AttributeFilter(key="code", value="7")]) == ["other"]
    found = search(query, filter=pb.LogFilter(trace_id=trace)).records[0]
    assert (found.service, found.session_id, found.user_id) == ("api", "s-1", "u-1")
    assert (found.trace_id, found.span_id, found.severity_number) == (trace, span, 17)
    assert found.resource["host.name"] == "h1"
    assert found.attributes["code"] == 42


def test_a_trace_filter_without_start_reaches_back_past_the_default_hour(
    otlpd: RunningOtlpd, query: Any
) -> None:
    trace = os.urandom(16)
    three_hours_ago = time.time_ns() - 3 * 3600 * 10**9
    export(otlpd, [{"body": "old", "trace_id": trace, "time_ns": three_hours_ago}])
    export(
        otlpd, [{"body": "old session", "time_ns": three_hours_ago, "attrs": {"session.id": "s9"}}]
    )
    assert bodies(query, trace_id=trace) == ["old"]
    assert bodies(query, session_id="s9") == ["old session"]
    assert bodies(query, q="old") == []  # no id filter: the last hour only
    start = timestamp_pb2.Timestamp(seconds=three_hours_ago // 10**9 - 60)
    response = search(query, start_time=start, filter=pb.LogFilter(q="old"))
    assert sorted(r.body.string_value for r in response.records) == ["old", "old session"]


def test_bad_arguments_are_refused_naming_the_field(otlpd: RunningOtlpd, query: Any) -> None:
    now = int(time.time())
    cases = [
        (pb.SearchLogsRequest(limit=10**6), "limit"),
        (pb.SearchLogsRequest(limit=-1), "limit"),
        (pb.SearchLogsRequest(filter=pb.LogFilter(trace_id=b"short")), "filter.trace_id"),
        (pb.SearchLogsRequest(filter=pb.LogFilter(span_id=b"x")), "filter.span_id"),
        (pb.SearchLogsRequest(filter=pb.LogFilter(min_severity=-1)), "filter.min_severity"),
        (pb.SearchLogsRequest(filter=pb.LogFilter(service="a\x00")), "filter.service"),
        (
            pb.SearchLogsRequest(
                start_time=timestamp_pb2.Timestamp(seconds=now),
                end_time=timestamp_pb2.Timestamp(seconds=now - 60),
            ),
            "end_time",
        ),
        (pb.SearchLogsRequest(page_token="garbage!"), "page_token"),
    ]
    for request, field in cases:
        error = refused(query.SearchLogs, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in details(error), (field, details(error))
    step = duration_pb2.Duration(seconds=-5)
    error = refused(query.GetLogVolume, pb.GetLogVolumeRequest(step=step))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "step" in details(error)


# --- pages ----------------------------------------------------------------------------


def test_pages_are_newest_first_and_a_token_is_bound_to_its_request(
    otlpd: RunningOtlpd, query: Any
) -> None:
    base = time.time_ns() - 10**9
    # Two records share each timestamp: the ctid breaks the tie, deterministically.
    export(otlpd, [{"body": f"r{i}", "time_ns": base + (i // 2) * 1000} for i in range(25)])
    seen: list[str] = []
    token = ""
    while True:
        page = search(query, limit=10, page_token=token)
        seen += [r.id for r in page.records]
        times = [r.time.ToNanoseconds() for r in page.records]
        assert times == sorted(times, reverse=True)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 25
    first = search(query, limit=10)
    assert [r.id for r in first.records] == seen[:10]
    error = refused(
        query.SearchLogs,
        pb.SearchLogsRequest(page_token=first.next_page_token, filter=pb.LogFilter(q="r1")),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in details(error)


def test_paging_under_concurrent_ingest_neither_repeats_nor_skips(
    otlpd: RunningOtlpd, query: Any
) -> None:
    export(otlpd, [{"body": f"before {i}"} for i in range(300)])
    existing = {r.id for r in search(query, limit=1000).records}
    assert len(existing) == 300
    stop = threading.Event()
    sent = [0]

    def keep_exporting() -> None:
        while not stop.is_set():
            export(otlpd, [{"body": f"during {sent[0]} {i}"} for i in range(20)])
            sent[0] += 1

    writer = threading.Thread(target=keep_exporting)
    writer.start()
    try:
        seen: list[str] = []
        token = ""
        while True:
            page = search(query, limit=25, page_token=token)
            seen += [r.id for r in page.records]
            token = page.next_page_token
            if not token:
                break
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join()
    assert sent[0] > 0
    assert len(seen) == len(set(seen))
    assert existing <= set(seen)


# --- project isolation ----------------------------------------------------------------


def test_every_log_rpc_sees_only_its_project(otlpd: RunningOtlpd, query: Any) -> None:
    export(otlpd, [{"body": "secret of p1"}], project="p1")
    export(otlpd, [{"body": "secret of p2"}], project="p2")
    assert bodies(query, "p1", q="secret") == ["secret of p1"]
    assert bodies(query, "p2", q="secret") == ["secret of p2"]
    assert bodies(query, "p3", q="secret") == []
    record = search(query, "p1").records[0]
    p1 = (("x-otlpd-project", "p1"),)
    p2 = (("x-otlpd-project", "p2"),)
    got = query.GetLogContext(pb.GetLogContextRequest(id=record.id), metadata=p1, timeout=TIMEOUT)
    assert got.record.body.string_value == "secret of p1"
    with pytest.raises(grpc.RpcError) as caught:
        query.GetLogContext(pb.GetLogContextRequest(id=record.id), metadata=p2, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    for project, total in (("p1", 1), ("p2", 1), ("p3", 0)):
        volume = query.GetLogVolume(
            pb.GetLogVolumeRequest(),
            metadata=(("x-otlpd-project", project),),
            timeout=TIMEOUT,
        )
        assert sum(b.total for b in volume.buckets) == total, project


# --- context --------------------------------------------------------------------------


def test_context_is_the_neighbours_of_the_same_service_and_resource(
    otlpd: RunningOtlpd, query: Any
) -> None:
    base = time.time_ns() - 60 * 10**9
    export(otlpd, [{"body": f"c{i}", "time_ns": base + i * 10**6} for i in range(30)])
    # Same service, other resource; other service: interleaved in time, never context.
    export(
        otlpd, [{"body": f"o{i}", "time_ns": base + i * 10**6 + 1} for i in range(30)], host="h2"
    )
    export(
        otlpd, [{"body": f"w{i}", "time_ns": base + i * 10**6 + 2} for i in range(30)], service="w"
    )
    middle = search(query, filter=pb.LogFilter(q="c15")).records[0]
    got = query.GetLogContext(pb.GetLogContextRequest(id=middle.id), timeout=TIMEOUT)
    assert got.record.body.string_value == "c15"
    assert [r.body.string_value for r in got.before] == [f"c{i}" for i in range(5, 15)]
    assert [r.body.string_value for r in got.after] == [f"c{i}" for i in range(16, 26)]
    got = query.GetLogContext(
        pb.GetLogContextRequest(id=middle.id, before=2, after=20), timeout=TIMEOUT
    )
    assert [r.body.string_value for r in got.before] == ["c13", "c14"]
    assert [r.body.string_value for r in got.after] == [f"c{i}" for i in range(16, 30)]
    for bad_id in ("", "not-an-id", "AAAAAAAAAAAAAAAAAAAA"):
        error = refused(query.GetLogContext, pb.GetLogContextRequest(id=bad_id))
        assert error.code() == grpc.StatusCode.NOT_FOUND, bad_id
    error = refused(query.GetLogContext, pb.GetLogContextRequest(id=middle.id, before=10**7))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "before" in details(error)


# --- volume ---------------------------------------------------------------------------


def test_a_long_volume_is_read_in_two_parts_that_count_each_record_once(
    otlpd: RunningOtlpd, query: Any
) -> None:
    hour = 3600 * 10**9
    start = (time.time_ns() // hour - 5) * hour  # five whole hours ago
    # Four hourly buckets, read as [start, start + 2h) and [start + 2h, start + 4h): the
    # records on either side of that boundary, and one on it.
    times = [start + 5, start + 2 * hour - 1000, start + 2 * hour, start + 4 * hour - 1000]
    export(otlpd, [{"body": f"r{i}", "time_ns": t} for i, t in enumerate(times)])
    assert logs.volume_parts(start // 1000, (start + 4 * hour) // 1000, hour // 1000) == [
        (start // 1000, (start + 2 * hour) // 1000),
        ((start + 2 * hour) // 1000, (start + 4 * hour) // 1000),
    ]
    request = pb.GetLogVolumeRequest(
        start_time=timestamp_pb2.Timestamp(seconds=start // 10**9),
        end_time=timestamp_pb2.Timestamp(seconds=start // 10**9 + 4 * 3600),
        step=duration_pb2.Duration(seconds=3600),
    )
    volume = query.GetLogVolume(request, timeout=TIMEOUT)
    assert [b.total for b in volume.buckets] == [1, 1, 1, 1]


def test_volume_parts_split_on_a_bucket_boundary_near_the_middle() -> None:
    hour = 3600 * 10**6
    assert logs.volume_parts(0, hour, 60 * 10**6) == [(0, hour)]  # short: one read
    # 5 h in hourly buckets: split on the boundary nearest the middle (2.5 h), 3 h
    assert logs.volume_parts(7, 5 * hour + 7, hour) == [(7, 3 * hour), (3 * hour, 5 * hour + 7)]
    # a single bucket wider than the range: no boundary inside, one read
    assert logs.volume_parts(hour, 4 * hour, 24 * hour) == [(hour, 4 * hour)]


def test_volume_counts_every_bucket_and_severity(otlpd: RunningOtlpd, query: Any) -> None:
    minute = 60 * 10**9
    start = (time.time_ns() // minute - 10) * minute
    records = [
        {"body": "a", "time_ns": start + 1, "severity": 9},
        {"body": "b", "time_ns": start + 2, "severity": 12},
        {"body": "c", "time_ns": start + 3, "severity": 17},
        {"body": "d", "time_ns": start + 2 * minute + 5, "severity": 0},
        {"body": "e", "time_ns": start + 2 * minute + 6, "severity": 24},
        {"body": "f", "time_ns": start + 9 * minute, "severity": 1},
        {"body": "g", "time_ns": start + 2 * minute - 1000, "severity": 5},  # a bucket's last µs
    ]
    export(otlpd, records)
    request = pb.GetLogVolumeRequest(
        start_time=timestamp_pb2.Timestamp(seconds=start // 10**9),
        end_time=timestamp_pb2.Timestamp(seconds=start // 10**9 + 600),
        step=duration_pb2.Duration(seconds=60),
    )
    volume = query.GetLogVolume(request, timeout=TIMEOUT)
    assert volume.step.seconds == 60
    assert len(volume.buckets) == 10
    assert [b.time.seconds for b in volume.buckets] == [start // 10**9 + 60 * i for i in range(10)]
    assert [b.total for b in volume.buckets] == [3, 1, 2, 0, 0, 0, 0, 0, 0, 1]

    def by_name(bucket: pb.VolumeBucket) -> dict[str, int]:
        return {c.severity: c.count for c in bucket.counts if c.count}

    assert by_name(volume.buckets[0]) == {"INFO": 2, "ERROR": 1}
    assert by_name(volume.buckets[2]) == {"UNSPECIFIED": 1, "FATAL": 1}
    assert by_name(volume.buckets[1]) == {"DEBUG": 1}
    assert by_name(volume.buckets[9]) == {"TRACE": 1}
    assert [c.severity_number for c in volume.buckets[1].counts] == [0, 1, 5, 9, 13, 17, 21]
    filtered = pb.GetLogVolumeRequest()
    filtered.CopyFrom(request)
    filtered.filter.min_severity = 13
    assert [b.total for b in query.GetLogVolume(filtered, timeout=TIMEOUT).buckets] == [
        1,
        0,
        1,
        *[0] * 7,
    ]
    filtered.filter.min_severity = 0
    filtered.filter.q = "d"
    totals = [b.total for b in query.GetLogVolume(filtered, timeout=TIMEOUT).buckets]
    assert totals == [0, 0, 1, *[0] * 7]
    # No step: about 60 round buckets over the default hour.
    default = query.GetLogVolume(pb.GetLogVolumeRequest(), timeout=TIMEOUT)
    assert default.step.seconds == 60 and len(default.buckets) in (60, 61)
    assert sum(b.total for b in default.buckets) == 7
