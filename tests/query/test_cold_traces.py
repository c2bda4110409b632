"""GetTrace and SearchTraces over the cold tier: spans sent through the OTLP receiver 50 h
ago, tiered to Parquet, answer as they did from PostgreSQL, and a trace whose spans lie in
both tiers is whole."""

from __future__ import annotations

import os
import time
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from query.proto import pb
from tests.query.conftest import HOUR_NS, OLD_HOUR_NS, ColdTierServer, without_ids
from tests.query.test_traces import S, send_logs, send_spans

MS = 10**6


def _ts(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // 10**9, nanos=ns % 10**9)


def _tree(trace: bytes, at: int, *, error: bool = False, slow: bool = False) -> list[S]:
    """A root, two children and a grandchild; optionally an error, a slow child."""
    ids = [os.urandom(8) for _ in range(4)]
    return [
        S(trace, "GET /checkout", at, 400 * MS, span_id=ids[0], attributes={"http.route": "/c"}),
        S(
            trace,
            "charge",
            at + MS,
            (900 if slow else 90) * MS,
            span_id=ids[1],
            parent=ids[0],
            error=error,
            kind=3,
            attributes={"amount": 42},
        ),
        S(trace, "reserve", at + 2 * MS, 50 * MS, span_id=ids[2], parent=ids[0], kind=3),
        S(trace, "sql", at + 3 * MS, 5 * MS, span_id=ids[3], parent=ids[2], kind=3),
    ]


TRACES = [bytes([i + 1]) * 16 for i in range(12)]
CROSSING = b"\xcc" * 16  # a root in the tiered hour, a child two hours later (still hot)


def _send(server: ColdTierServer) -> None:
    trees = [
        _tree(trace, OLD_HOUR_NS + (60 + i * 30) * 10**9, error=i % 4 == 0, slow=i % 3 == 0)
        for i, trace in enumerate(TRACES)
    ]
    for spans in trees:
        send_spans(server.server, spans[:2], service="checkout")
        send_spans(server.server, spans[2:], service="inventory")
    send_spans(server.server, trees[0][:1], service="checkout")  # a retried export
    root = os.urandom(8)
    send_spans(
        server.server,
        [S(CROSSING, "long job", OLD_HOUR_NS + 59 * 60 * 10**9, 2 * HOUR_NS, span_id=root)],
        service="batch",
    )
    send_spans(
        server.server,
        [S(CROSSING, "late step", OLD_HOUR_NS + 2 * HOUR_NS + 60 * 10**9, MS, parent=root)],
        service="batch",
    )
    log = logs_pb2.LogRecord(
        time_unix_nano=OLD_HOUR_NS + 61 * 10**9, trace_id=TRACES[0], severity_number=17
    )
    log.body.string_value = "card declined"
    send_logs(server.server, [log], service="checkout")


SEARCHES: list[dict[str, Any]] = [
    {},
    {"service": "inventory"},
    {"span_name": "charge"},
    {"errors_only": True},
    {"min_duration": duration_pb2.Duration(nanos=500 * MS)},
    {"max_duration": duration_pb2.Duration(nanos=10 * MS)},
    {"attributes": [pb.AttributeFilter(key="amount", value="42")]},
    {"attributes": [pb.AttributeFilter(key="http.route", value="/nowhere")]},
    {"service": "batch"},
]


def _search_all(server: ColdTierServer, limit: int, **fields: Any) -> list[pb.TraceSummary]:
    window = {"start_time": _ts(OLD_HOUR_NS), "end_time": _ts(OLD_HOUR_NS + 3 * HOUR_NS)}
    found: list[pb.TraceSummary] = []
    token = ""
    while True:
        answer = server.query.SearchTraces(
            pb.SearchTracesRequest(limit=limit, page_token=token, **window, **fields)
        )
        found.extend(answer.traces)
        token = answer.next_page_token
        if not token:
            return found


def _trace(server: ColdTierServer, trace: bytes) -> pb.GetTraceResponse:
    answer: pb.GetTraceResponse = server.query.GetTrace(
        pb.GetTraceRequest(trace_id=trace, include_logs=True)
    )
    return answer


def test_trace_answers_are_the_same_after_tiering(cold_tier: ColdTierServer) -> None:
    _send(cold_tier)
    traces_before = {t: without_ids(_trace(cold_tier, t)) for t in [*TRACES, CROSSING]}
    searches_before = [list(_search_all(cold_tier, 5, **s)) for s in SEARCHES]
    assert [len(s) for s in searches_before] == [13, 12, 12, 3, 5, 13, 12, 0, 1]
    assert len(traces_before[TRACES[0]].spans) == 4  # the copy sent twice is listed once

    moved = cold_tier.tier()
    assert moved.objects == 2  # the hour's spans and its logs

    for trace in [*TRACES, CROSSING]:
        after = _trace(cold_tier, trace)
        assert without_ids(after) == traces_before[trace]
        assert after.cold.objects >= 1
    crossing = _trace(cold_tier, CROSSING)
    assert [(s.name, s.depth) for s in crossing.spans] == [("long job", 0), ("late step", 1)]
    for search, before in zip(SEARCHES, searches_before, strict=True):
        assert list(_search_all(cold_tier, 5, **search)) == before, search
    (batch,) = _search_all(cold_tier, 5, service="batch")
    assert (batch.span_count, batch.root_name) == (2, "long job")  # summed over both tiers


def test_an_unknown_trace_is_not_found_and_projects_stay_apart(
    cold_tier: ColdTierServer,
) -> None:
    at = OLD_HOUR_NS + 60 * 10**9
    send_spans(cold_tier.server, [S(TRACES[0], "a", at, MS)], service="s", project="a")
    cold_tier.tier()
    found = cold_tier.query.GetTrace(
        pb.GetTraceRequest(trace_id=TRACES[0]), metadata=(("x-otlpd-project", "a"),)
    )
    assert [s.name for s in found.spans] == ["a"]
    for project, trace in (("b", TRACES[0]), ("a", TRACES[1])):
        with pytest.raises(grpc.RpcError) as caught:
            cold_tier.query.GetTrace(
                pb.GetTraceRequest(trace_id=trace), metadata=(("x-otlpd-project", project),)
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_trace_id_the_blooms_do_not_admit_reads_nothing(cold_tier: ColdTierServer) -> None:
    _send(cold_tier)
    cold_tier.tier()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        cold_tier.query.GetTrace(pb.GetTraceRequest(trace_id=os.urandom(16)))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert time.monotonic() - started < 5
