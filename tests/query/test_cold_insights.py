"""The insight RPCs over the cold tier: spans and log records sent through the OTLP
receiver 50 h ago, tiered to Parquet, answer GetServiceGraph, GetLatencyHistogram,
GetErrorSpikes and GetLogPatterns as they did from PostgreSQL, calls and traces that
straddle the tiers included; GetServiceStats and DetectAnomalies read the RED rollups,
which tiering leaves alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from google.protobuf import duration_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

import query.patterns
from query.convert import timestamp
from query.proto import pb
from tests.query.conftest import HOUR_NS, OLD_HOUR_NS, ColdTierServer, without_ids
from tests.query.test_traces import S, project, send_logs, send_spans

MS = 10**6
SECOND = 10**9
MINUTE = 60 * SECOND
SERVER, CLIENT = 2, 3
OLD = OLD_HOUR_NS  # tiered: its partition, and the next one, are past 48 h
HOT = OLD + 2 * HOUR_NS  # still hot: its partition ends less than 48 h ago


def _window(start_ns: int, end_ns: int) -> dict[str, Any]:
    return {"start_time": timestamp(start_ns), "end_time": timestamp(end_ns)}


def _pages(rpc: Callable[[Any], Any], request: Any) -> list[Any]:
    """Every page of a paged answer, following its tokens."""
    pages = []
    while True:
        answer = rpc(request)
        pages.append(answer)
        if not answer.next_page_token:
            return pages
        request.page_token = answer.next_page_token


def _same(before: list[Any], after: list[Any]) -> None:
    assert [without_ids(a) for a in after] == [without_ids(b) for b in before]


# --- spans: GetServiceGraph, GetLatencyHistogram, GetServiceStats, DetectAnomalies -----


def _calls(rng: np.random.Generator, at: int, *, fail: bool, direct: bool) -> dict[str, list[S]]:
    """One trace: frontend -> checkout -> payment (and frontend -> payment)."""
    trace = rng.bytes(16)
    root = S(trace, "GET /", at, 200 * MS, kind=SERVER)
    call = S(trace, "HTTP POST", at + MS, 150 * MS, parent=root.span_id, kind=CLIENT)
    checkout = S(
        trace, "POST /checkout", at + 2 * MS, int(rng.integers(20, 140)) * MS, parent=call.span_id
    )
    pay = S(trace, "HTTP POST", at + 3 * MS, 30 * MS, parent=checkout.span_id, kind=CLIENT)
    charge = S(
        trace,
        "charge",
        at + 4 * MS,
        int(rng.integers(1_000, 29_000)) * 1000,
        parent=pay.span_id,
        error=fail,
    )
    spans = {"frontend": [root, call], "checkout": [checkout, pay], "payment": [charge]}
    if direct:
        quote_call = S(trace, "HTTP GET", at + 5 * MS, 9 * MS, parent=root.span_id, kind=CLIENT)
        quote = S(trace, "quote", at + 6 * MS, 7 * MS, parent=quote_call.span_id, kind=5)
        spans["frontend"].append(quote_call)
        spans["payment"].append(quote)
    return spans


def _send_calls(server: ColdTierServer) -> None:
    """Traces in the tiered hour and in a hot one, two calls whose spans lie in both
    tiers, a retried export, and another project's call."""
    rng = np.random.default_rng(11)
    by_service: dict[str, list[S]] = {"frontend": [], "checkout": [], "payment": []}
    starts = [OLD + MINUTE + i * 97 * SECOND for i in range(30)]
    starts += [HOT + MINUTE + i * 13 * SECOND for i in range(10)]
    for i, at in enumerate(starts):
        for service, spans in _calls(rng, at, fail=i % 5 == 0, direct=i % 4 == 0).items():
            by_service[service] += spans
    # A caller's span in the tiered hour before HOT, the callee's in the hot one...
    trace = rng.bytes(16)
    caller = S(trace, "HTTP POST", HOT - 2 * SECOND, 5 * SECOND, kind=CLIENT)
    by_service["frontend"].append(caller)
    by_service["checkout"].append(
        S(trace, "POST /checkout", HOT + SECOND, MS, parent=caller.span_id)
    )
    # ...and a callee whose clock runs behind: its span is tiered, its caller's is hot.
    trace = rng.bytes(16)
    caller = S(trace, "HTTP POST", HOT + 500 * MS, 2 * SECOND, kind=CLIENT)
    by_service["frontend"].append(caller)
    callee = S(trace, "charge", HOT - 500 * MS, 77 * MS, parent=caller.span_id, error=True)
    by_service["payment"].append(callee)
    for service, spans in by_service.items():
        send_spans(server.server, spans, service=service)
    send_spans(server.server, by_service["payment"][:3], service="payment")  # retried
    trace = rng.bytes(16)
    spy = S(trace, "x", OLD + MINUTE, kind=CLIENT)
    send_spans(server.server, [spy], service="spy", project="other")
    send_spans(
        server.server, [S(trace, "y", OLD + MINUTE + MS, parent=spy.span_id)], "spy2", "other"
    )


RANGES = {
    "all": (OLD - MINUTE, HOT + HOUR_NS),
    "tiered": (OLD, OLD + HOUR_NS),
    "straddling": (HOT - 10 * MINUTE, HOT + 10 * MINUTE),
    "hot, parents tiered": (HOT, HOT + 10 * MINUTE),
}


def _span_answers(server: ColdTierServer) -> dict[str, list[Any]]:
    query = server.query
    answers: dict[str, list[Any]] = {}
    for name, (start, end) in RANGES.items():
        window = _window(start, end)
        answers[f"graph {name}"] = _pages(
            query.GetServiceGraph, pb.GetServiceGraphRequest(**window)
        )
        answers[f"graph {name} by 1"] = _pages(
            query.GetServiceGraph, pb.GetServiceGraphRequest(limit=1, **window)
        )
        answers[f"graph {name} checkout"] = _pages(
            query.GetServiceGraph, pb.GetServiceGraphRequest(service="checkout", **window)
        )
        for fields in (
            {"service": "payment"},
            {"service": "payment", "operation": "charge", "bins": 7},
            {"service": "payment", "span_kind": 5},
            {"service": "checkout", "bounds": [duration_pb2.Duration(nanos=50 * MS)]},
        ):
            answers[f"latency {name} {fields}"] = [
                query.GetLatencyHistogram(pb.GetLatencyHistogramRequest(**fields, **window))
            ]
    window = _window(OLD, OLD + HOUR_NS)
    answers["stats"] = [
        query.GetServiceStats(
            pb.GetServiceStatsRequest(step=duration_pb2.Duration(seconds=600), **window)
        )
    ]
    red = pb.RedSeriesQuery(
        service="payment",
        signal=pb.RedSeriesQuery.SIGNAL_P95,
        step=duration_pb2.Duration(seconds=300),
        **window,
    )
    answers["anomalies"] = [query.DetectAnomalies(pb.DetectAnomaliesRequest(red=red))]
    answers["other project"] = [
        query.GetServiceGraph(
            pb.GetServiceGraphRequest(**_window(*RANGES["all"])), metadata=project("other")
        )
    ]
    return answers


def test_graph_and_latency_answer_the_same_after_tiering(cold_tier: ColdTierServer) -> None:
    _send_calls(cold_tier)
    cold_tier.roll_up()
    before = _span_answers(cold_tier)
    straddling = {(e.caller, e.callee): e.calls for e in before["graph straddling"][0].edges}
    # 10 minutes either side of HOT: the hot traces' calls and both straddling ones.
    assert straddling == {
        ("checkout", "payment"): 10,
        ("frontend", "checkout"): 11,
        ("frontend", "payment"): 3,
    }
    edges = {(e.caller, e.callee): e for e in before["graph all"][0].edges}
    assert edges[("checkout", "payment")].calls == 40 + 2  # a retried export counts twice
    assert before["latency all {'service': 'payment'}"][0].count == 40 + 10 + 1 + 3
    assert [e.caller for e in before["other project"][0].edges] == ["spy"]
    assert [s.service for s in before["stats"][0].services] == ["checkout", "frontend", "payment"]
    assert before["anomalies"][0].series[0].points

    moved = cold_tier.tier()
    assert moved.objects == 3  # the two tiered hours of "default", one of "other"

    after = _span_answers(cold_tier)
    for name, answers in before.items():
        _same(answers, after[name])
    for name in ("graph all", "graph tiered", "graph hot, parents tiered"):
        assert after[name][0].cold.objects >= 1, name  # the cold tier answered
    assert after["latency straddling {'service': 'payment'}"][0].cold.row_groups >= 1
    assert after["other project"][0].cold.objects == 1  # its own hour, not default's


# --- GetErrorSpikes ----------------------------------------------------------------------


def _record(at: int, body: str, severity: int, trace: bytes = b"") -> logs_pb2.LogRecord:
    record = logs_pb2.LogRecord(time_unix_nano=at, severity_number=severity, trace_id=trace)
    record.body.string_value = body
    return record


def _send_spikes(server: ColdTierServer) -> None:
    """payment fails 40% in OLD+20m..25m against 2% before; search fails in HOT..HOT+5m,
    and one of its failing traces logged 20 minutes before, in a tiered hour."""
    rng = np.random.default_rng(5)
    spans, errors = [], []
    for i in range(250):
        at = OLD + i * 6 * SECOND + int(rng.integers(0, 1000)) * 1000
        window = at >= OLD + 20 * MINUTE
        span = S(rng.bytes(16), "charge", at, error=(i % 5 < 2) if window else i % 50 == 0)
        spans.append(span)
        if span.error and window:
            errors.append(span)
    send_spans(server.server, spans, service="payment")
    newest = errors[-1]
    send_logs(
        server.server,
        [
            _record(newest.start_ns + 1000, "card declined", 17, newest.trace_id),
            _record(errors[-2].start_ns + 1000, "retrying card", 9, errors[-2].trace_id),
            _record(OLD + 21 * MINUTE, "gateway timeout", 17),
            _record(OLD + 22 * MINUTE, "all good", 9),
        ],
        service="payment",
    )
    search = []
    for i in range(120):
        at = HOT - 20 * MINUTE + i * 12 * SECOND + 1000 * i
        search.append(S(rng.bytes(16), "q", at, error=at >= HOT and i % 2 == 0))
    send_spans(server.server, search, service="search")
    failing = [s for s in search if s.error][-1]
    send_logs(
        server.server,
        [
            _record(HOT - 20 * MINUTE, "index shard lost", 17, failing.trace_id),
            _record(HOT + 2 * MINUTE, "search backend down", 17),
        ],
        service="search",
    )


def _spikes(server: ColdTierServer) -> list[Any]:
    requests = [
        pb.GetErrorSpikesRequest(**_window(OLD + 20 * MINUTE, OLD + 25 * MINUTE)),
        pb.GetErrorSpikesRequest(examples=2, **_window(OLD + 20 * MINUTE, OLD + 25 * MINUTE)),
        pb.GetErrorSpikesRequest(**_window(HOT, HOT + 5 * MINUTE)),
    ]
    return [server.query.GetErrorSpikes(request) for request in requests]


def test_error_spikes_have_the_same_examples_after_tiering(cold_tier: ColdTierServer) -> None:
    _send_spikes(cold_tier)
    cold_tier.roll_up()
    before = _spikes(cold_tier)
    payment = before[0].spikes[0]
    assert payment.service == "payment"
    assert len(payment.example_spans) == 5
    assert [r.body.string_value for r in payment.example_logs] == [
        "card declined",
        "retrying card",
        "gateway timeout",
    ]
    search = before[2].spikes[0]
    assert search.service == "search"
    assert [r.body.string_value for r in search.example_logs] == [
        "index shard lost",  # of a failing trace, 20 minutes earlier: tiered
        "search backend down",
    ]

    cold_tier.tier()
    after = _spikes(cold_tier)
    _same(before, after)
    assert after[0].cold.objects == 2  # the hour's spans and its logs
    assert after[2].cold.objects >= 1  # the trace's record, through its key bloom


# --- GetLogPatterns ----------------------------------------------------------------------

TEMPLATES = (
    "user {n} logged in from 10.0.{n}.7",
    "rendered page home in {n}ms",
    "cache miss for key {n}abcdef",
    "payment {n} declined: insufficient funds",
)


def _send_patterns(server: ColdTierServer) -> None:
    """Templated records in the tiered hours and the hot one; one template only after
    OLD+30m, so new against the half hour before. Two services log one template at one
    microsecond, the newest of the window: which is its example depends on the order
    they are mined in, which must not change with their places."""
    tie = OLD + 59 * MINUTE + 50 * SECOND
    for n in range(8):
        service = ("worker", "api")[n % 2]
        send_logs(server.server, [_record(tie, TEMPLATES[0].format(n=907 - n), 9)], service=service)
    for service, offset in (("api", 0), ("worker", 500)):
        records = []
        for i in range(160):
            at = OLD + i * 45 * SECOND + offset * 1000 + i
            template = TEMPLATES[i % (4 if at >= OLD + 30 * MINUTE else 3)]
            severity = 17 if "declined" in template else 9
            records.append(_record(at, template.format(n=i * 7 + offset), severity))
        send_logs(server.server, records, service=service)
    send_logs(
        server.server,
        [_record(HOT + i * 20 * SECOND + i, TEMPLATES[i % 4].format(n=i), 9) for i in range(40)],
        service="api",
    )


PATTERN_REQUESTS: list[dict[str, Any]] = [
    {**_window(OLD + 30 * MINUTE, OLD + HOUR_NS)},
    {**_window(OLD + 30 * MINUTE, OLD + HOUR_NS), "limit": 2},
    {**_window(OLD + 30 * MINUTE, OLD + HOUR_NS), "filter": pb.LogFilter(service="worker")},
    {**_window(OLD, OLD + 2 * HOUR_NS), "filter": pb.LogFilter(q="logged")},
    {**_window(OLD, OLD + 2 * HOUR_NS), "filter": pb.LogFilter(min_severity=17)},
    {
        **_window(HOT - 30 * MINUTE, HOT + 30 * MINUTE),
        "baseline": duration_pb2.Duration(seconds=3600),
    },
    {**_window(OLD, OLD + HOUR_NS), "baseline": duration_pb2.Duration()},
]


def _patterns(server: ColdTierServer) -> list[list[Any]]:
    return [
        _pages(server.query.GetLogPatterns, pb.GetLogPatternsRequest(**fields))
        for fields in PATTERN_REQUESTS
    ]


def test_log_patterns_are_the_same_after_tiering(
    cold_tier: ColdTierServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _send_patterns(cold_tier)
    before = _patterns(cold_tier)
    window = before[0][0]
    assert window.total_records == 2 * 40 + 8 and not window.sampled
    new = {p.template for p in window.patterns if p.new}
    assert new == {"payment <NUM> declined: insufficient funds"}
    assert [len(page.patterns) for page in before[1]] == [2, 2]
    straddling = before[5][0]
    assert straddling.total_records == 80 + 40  # both tiers' records

    monkeypatch.setattr(query.patterns, "SAMPLE_SIZE", 40)
    sampled_before = cold_tier.query.GetLogPatterns(pb.GetLogPatternsRequest(**PATTERN_REQUESTS[3]))
    monkeypatch.undo()

    cold_tier.tier()
    after = _patterns(cold_tier)
    for request, answer, earlier in zip(PATTERN_REQUESTS, after, before, strict=True):
        assert [without_ids(a) for a in answer] == [without_ids(b) for b in earlier], request
    assert after[0][0].cold.objects >= 1
    assert after[5][0].cold.objects >= 1

    # Sampled: the same totals, a repeatable sample (not PostgreSQL's: see docs/insights.md).
    monkeypatch.setattr(query.patterns, "SAMPLE_SIZE", 40)
    request = pb.GetLogPatternsRequest(**PATTERN_REQUESTS[3])
    first, second = (cold_tier.query.GetLogPatterns(request) for _ in range(2))
    assert without_ids(first) == without_ids(second)
    assert first.total_records == sampled_before.total_records == before[3][0].total_records
    assert first.sampled and 0 < first.sampled_records < first.total_records
    scaled = sum(p.count for p in first.patterns)
    assert scaled == pytest.approx(first.total_records, abs=len(first.patterns))


# --- RED rollups and late spans -----------------------------------------------------------


def _stats(cold_tier: ColdTierServer) -> tuple[int, int, float, float]:
    """Requests, errors, mean and p99 duration (ms) of the old hour's one service; the
    p99 comes from the duration buckets."""
    request = pb.GetServiceStatsRequest(**_window(OLD, OLD + HOUR_NS))
    (service,) = cold_tier.query.GetServiceStats(request).services
    stats = service.stats
    mean, p99 = stats.mean.ToNanoseconds() / MS, stats.p99.ToNanoseconds() / MS
    return stats.requests, stats.errors, round(mean, 3), round(p99)


def test_a_late_span_keeps_the_tiered_requests_of_its_minute(cold_tier: ColdTierServer) -> None:
    at = OLD + 2 * MINUTE
    spans = [S(bytes([i + 1]) * 16, "a", at + i * MS, error=i < 3) for i in range(10)]
    send_spans(cold_tier.server, spans)  # 1 ms each
    cold_tier.roll_up()
    cold_tier.tier()
    assert _stats(cold_tier) == (10, 3, 1.0, 1)
    late = S(b"\xee" * 16, "a", at + 500 * MS, duration_ns=12 * MS)  # a new partition
    send_spans(cold_tier.server, [late])
    cold_tier.roll_up()
    assert _stats(cold_tier) == (11, 3, 2.0, 12)
    # Another late span: the minute is recomputed again, its tiered part counted once.
    send_spans(cold_tier.server, [S(b"\xef" * 16, "a", at + 600 * MS, 12 * MS, error=True)])
    cold_tier.roll_up()
    assert _stats(cold_tier) == (12, 4, 2.833, 12)
    # The late spans' partition tiered in turn (its next generation): nothing moves.
    assert cold_tier.tier().objects == 1
    cold_tier.roll_up()
    assert _stats(cold_tier) == (12, 4, 2.833, 12)
    send_spans(cold_tier.server, [S(b"\xf0" * 16, "a", at + 700 * MS, 12 * MS)])
    cold_tier.roll_up()
    assert _stats(cold_tier) == (13, 4, 3.538, 12)


def test_spans_tiered_before_a_rollup_round_are_rolled_up_by_tiering(
    cold_tier: ColdTierServer,
) -> None:
    cold_tier.roll_up()  # the first round's backfill, out of the way
    at = OLD + 3 * MINUTE
    send_spans(cold_tier.server, [S(bytes([i + 1]) * 16, "a", at + i * MS) for i in range(7)])
    assert cold_tier.tier().objects == 1  # their minute still marked, not rolled up
    assert _stats(cold_tier)[0] == 7
    cold_tier.roll_up()
    assert _stats(cold_tier)[0] == 7
