"""GetLogPatterns over records sent through the OTLP receiver, on one shared server.

Each test writes under projects of its own, so the tests share a server and a database
without seeing each other's records.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from query import patterns
from query.proto import pb, pb_grpc
from tests.conftest import RunningOtlpd, start_otlpd_thread
from tests.query.test_logs import export

TIMEOUT = 10
MINUTE_NS = 60 * 10**9


@pytest.fixture(scope="module")
def otlpd(shared_database: str) -> Iterator[RunningOtlpd]:
    server = start_otlpd_thread(shared_database)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def query(otlpd: RunningOtlpd) -> Iterator[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{otlpd.app.ports.query}") as channel:
        yield pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]


def get(query: Any, project: str, **fields: Any) -> pb.GetLogPatternsResponse:
    metadata = (("x-otlpd-project", project),)
    response: pb.GetLogPatternsResponse = query.GetLogPatterns(
        pb.GetLogPatternsRequest(**fields), metadata=metadata, timeout=TIMEOUT
    )
    return response


def by_template(response: pb.GetLogPatternsResponse) -> dict[str, pb.LogPattern]:
    return {p.template: p for p in response.patterns}


def refused(query: Any, project: str, **fields: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        get(query, project, **fields)
    return caught.value


def test_formatted_messages_are_one_template_and_a_new_kind_is_new(
    otlpd: RunningOtlpd, query: Any
) -> None:
    now = time.time_ns()
    before = now - 90 * MINUTE_NS  # in the default baseline: the hour before the last

    def took(i: int, at: int) -> dict[str, Any]:
        return {"body": f"took {7 + i * 131}ms for order {uuid.uuid4()}", "time_ns": at}

    def login(i: int, at: int) -> dict[str, Any]:
        return {"body": f"user {1000 + i} logged in from 10.0.{i}.7", "time_ns": at}

    baseline = [took(i, before + i) for i in range(5)] + [
        login(i, before + 9 + i) for i in range(3)
    ]
    window_took = [took(i, now - 10**9 + i * 1000) for i in range(20)]
    window_cache = [
        {"body": f"cache miss for key {uuid.uuid4().hex[:12]}a1", "time_ns": now - 10**8 + i}
        for i in range(7)
    ]
    window_login = [login(i, now - 5 * 10**8 + i) for i in range(4)]
    export(otlpd, baseline, project="pat-main")
    export(otlpd, window_took + window_cache + window_login, project="pat-main", host="h9")

    response = get(query, "pat-main")
    assert (response.total_records, response.sampled_records) == (31, 31)
    assert not response.sampled and response.sample_rate == 1.0
    assert not response.next_page_token
    found = by_template(response)
    assert set(found) == {
        "took <NUM>ms for order <UUID>",
        "cache miss for key <HEX>",
        "user <NUM> logged in from <IP>",
    }
    took_p = found["took <NUM>ms for order <UUID>"]
    assert (took_p.count, took_p.baseline_count, took_p.new) == (20, 5, False)
    cache_p = found["cache miss for key <HEX>"]
    assert (cache_p.count, cache_p.baseline_count, cache_p.new) == (7, 0, True)
    login_p = found["user <NUM> logged in from <IP>"]
    assert (login_p.count, login_p.baseline_count, login_p.new) == (4, 3, False)
    # Most frequent first.
    assert [p.template for p in response.patterns] == [
        "took <NUM>ms for order <UUID>",
        "cache miss for key <HEX>",
        "user <NUM> logged in from <IP>",
    ]
    # first/last seen are the window's records; the example is the newest, whole.
    assert took_p.first_seen.ToNanoseconds() // 1000 == window_took[0]["time_ns"] // 1000
    assert took_p.last_seen.ToNanoseconds() // 1000 == window_took[-1]["time_ns"] // 1000
    example = took_p.example
    assert example.body.string_value == window_took[-1]["body"]
    assert example.time.ToNanoseconds() == window_took[-1]["time_ns"]
    assert (example.service, example.resource["host.name"]) == ("checkout", "h9")
    assert example.id
    context = query.GetLogContext(
        pb.GetLogContextRequest(id=example.id),
        metadata=(("x-otlpd-project", "pat-main"),),
        timeout=TIMEOUT,
    )
    assert context.record.body.string_value == example.body.string_value

    # A baseline of ten minutes ends where the window starts: the records 90 minutes
    # ago are outside it, so every kind is new; without a baseline none is.
    short = by_template(get(query, "pat-main", baseline=duration_pb2.Duration(seconds=600)))
    assert all(p.new and p.baseline_count == 0 for p in short.values())
    none = by_template(get(query, "pat-main", baseline=duration_pb2.Duration()))
    assert not any(p.new or p.baseline_count for p in none.values())
    assert none["took <NUM>ms for order <UUID>"].count == 20


def test_filters_include_and_exclude(otlpd: RunningOtlpd, query: Any) -> None:
    export(
        otlpd,
        [{"body": f"payment failed with code {400 + i}", "severity": 17} for i in range(3)],
        service="api",
        project="pat-filter",
    )
    export(
        otlpd,
        [{"body": f"page rendered in {i * 3}ms", "severity": 9} for i in range(4)],
        service="web",
        project="pat-filter",
    )

    def counts(**filter_fields: Any) -> dict[str, int]:
        response = get(query, "pat-filter", filter=pb.LogFilter(**filter_fields))
        assert response.total_records == sum(p.count for p in response.patterns)
        return {p.template: p.count for p in response.patterns}

    payment, page = "payment failed with code <NUM>", "page rendered in <NUM>ms"
    assert counts() == {payment: 3, page: 4}
    assert counts(service="api") == {payment: 3}
    assert counts(service="web") == {page: 4}
    assert counts(service="nope") == {}
    assert counts(min_severity=17) == {payment: 3}
    assert counts(min_severity=18) == {}
    assert counts(q="rendered") == {page: 4}


def test_a_project_sees_only_its_own_records(otlpd: RunningOtlpd, query: Any) -> None:
    export(otlpd, [{"body": f"secret of one {i}"} for i in range(3)], project="pat-one")
    export(otlpd, [{"body": f"secret of two {i}"} for i in range(5)], project="pat-two")
    one, two = get(query, "pat-one"), get(query, "pat-two")
    assert [(p.template, p.count) for p in one.patterns] == [("secret of one <NUM>", 3)]
    assert [(p.template, p.count) for p in two.patterns] == [("secret of two <NUM>", 5)]
    assert (one.total_records, two.total_records) == (3, 5)
    assert get(query, "pat-three").patterns == []
    assert get(query, "pat-three").total_records == 0


def test_a_sample_is_scaled_and_pages_return_every_pattern_once(
    otlpd: RunningOtlpd, query: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server runs in this process: it reads the constant at every call.
    monkeypatch.setattr(patterns, "SAMPLE_SIZE", 200)
    kinds = {
        "disk {} is full": 800,
        "job {} finished": 500,
        "retrying connection to shard {}": 300,
        "cache warmed with {} entries": 200,
    }
    records = [{"body": kind.format(i)} for kind, n in kinds.items() for i in range(n)]
    export(otlpd, records, project="pat-sample")
    first = get(query, "pat-sample")
    assert first.sampled and first.total_records == 1800
    assert 100 <= first.sampled_records <= 320
    assert first.sample_rate == pytest.approx(first.sampled_records / 1800)
    counts = {p.template: p.count for p in first.patterns}
    assert set(counts) == {
        "disk <NUM> is full",
        "job <NUM> finished",
        "retrying connection to shard <NUM>",
        "cache warmed with <NUM> entries",
    }
    # The ratio estimator: the scaled counts add up to the total, up to rounding.
    assert abs(sum(counts.values()) - 1800) <= len(counts)
    assert counts["disk <NUM> is full"] == pytest.approx(800, rel=0.3)
    assert counts["cache warmed with <NUM> entries"] == pytest.approx(200, rel=0.6)

    # One pattern a page: the same sample every page, every pattern once, same counts.
    seen: list[tuple[str, int]] = []
    token = ""
    while True:
        page = get(query, "pat-sample", limit=1, page_token=token)
        assert page.total_records == 1800 and page.sampled_records == first.sampled_records
        seen += [(p.template, p.count) for p in page.patterns]
        token = page.next_page_token
        if not token:
            break
    assert seen == [(p.template, p.count) for p in first.patterns]

    # A token belongs to its request and its project.
    token = get(query, "pat-sample", limit=1).next_page_token
    other = refused(query, "pat-sample", page_token=token, filter=pb.LogFilter(q="disk"))
    assert other.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (other.details() or "")
    elsewhere = refused(query, "pat-one", page_token=token)
    assert elsewhere.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_bad_arguments_are_refused_naming_the_field(query: Any) -> None:
    now = int(time.time())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"baseline": duration_pb2.Duration(seconds=-60)}, "baseline"),
        (
            {
                "start_time": timestamp_pb2.Timestamp(seconds=now),
                "end_time": timestamp_pb2.Timestamp(seconds=now - 60),
            },
            "end_time",
        ),
        ({"limit": 10**6}, "limit"),
        ({"limit": -1}, "limit"),
        ({"filter": pb.LogFilter(min_severity=-1)}, "filter.min_severity"),
        ({"filter": pb.LogFilter(service="a\x00")}, "filter.service"),
        ({"page_token": "garbage!"}, "page_token"),
    ]
    for fields, field in cases:
        error = refused(query, "pat-bad", **fields)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in (error.details() or ""), (field, error.details())
