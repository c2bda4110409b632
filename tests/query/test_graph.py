"""GetServiceGraph over generated three-service trace trees sent through the receiver."""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np
import pytest

from query.convert import timestamp
from query.proto import pb
from tests.conftest import RunningOtlpd
from tests.query.test_traces import S, send_spans

MS = 10**6
SERVER, CLIENT, INTERNAL = 2, 3, 1
TRACES = 40


@pytest.fixture(scope="module")
def sent(rolling_otlpd: RunningOtlpd) -> dict[str, Any]:
    """Per trace: frontend -> checkout -> payment, and in every fourth trace frontend ->
    payment too; payment fails in every fifth trace."""
    rng = np.random.default_rng(3)
    t0 = time.time_ns() - 30 * 60 * 10**9
    by_service: dict[str, list[S]] = {"frontend": [], "checkout": [], "payment": []}
    payment_durations: dict[str, list[int]] = {"checkout": [], "frontend": []}
    for t in range(TRACES):
        trace = rng.bytes(16)
        start = t0 + t * 1000 * MS
        root = S(trace, "GET /", start, 100 * MS, kind=SERVER)
        call = S(trace, "HTTP POST", start + MS, 80 * MS, parent=root.span_id, kind=CLIENT)
        checkout = S(trace, "POST /checkout", start + 2 * MS, 70 * MS, parent=call.span_id)
        work = S(trace, "validate", start + 3 * MS, 5 * MS, parent=checkout.span_id, kind=INTERNAL)
        pay_call = S(
            trace, "HTTP POST", start + 10 * MS, 40 * MS, parent=checkout.span_id, kind=CLIENT
        )
        duration = int(rng.integers(10, 30)) * MS
        payment = S(
            trace, "charge", start + 11 * MS, duration, parent=pay_call.span_id, error=t % 5 == 0
        )
        payment_durations["checkout"].append(duration)
        by_service["frontend"] += [root, call]
        by_service["checkout"] += [checkout, work, pay_call]
        by_service["payment"].append(payment)
        if t % 4 == 0:
            direct = S(trace, "HTTP GET", start + 50 * MS, 9 * MS, parent=root.span_id, kind=CLIENT)
            quote = S(trace, "quote", start + 51 * MS, 7 * MS, parent=direct.span_id)
            by_service["frontend"].append(direct)
            by_service["payment"].append(quote)
            payment_durations["frontend"].append(7 * MS)
    for service, spans in by_service.items():
        send_spans(rolling_otlpd, spans, service=service)
    other = rng.bytes(16)
    parent = S(other, "x", t0, kind=CLIENT)
    send_spans(rolling_otlpd, [parent], service="frontend", project="other")
    send_spans(rolling_otlpd, [S(other, "y", t0 + MS, parent=parent.span_id)], "spy", "other")
    return {"t0": t0, "payment_durations": payment_durations}


def graph(query: Any, sent: dict[str, Any], **fields: Any) -> pb.GetServiceGraphResponse:
    request = pb.GetServiceGraphRequest(
        start_time=timestamp(sent["t0"] - 10**9),
        end_time=timestamp(sent["t0"] + (TRACES + 1) * 1000 * MS),
        **fields,
    )
    return query.GetServiceGraph(request)  # type: ignore[no-any-return]


def test_the_edges_counts_and_errors_are_exactly_the_calls(
    rolling_query: Any, sent: dict[str, Any]
) -> None:
    answer = graph(rolling_query, sent)
    edges = {(e.caller, e.callee): (e.calls, e.errors) for e in answer.edges}
    assert edges == {
        ("checkout", "payment"): (TRACES, TRACES // 5),
        ("frontend", "checkout"): (TRACES, 0),
        ("frontend", "payment"): (TRACES // 4, 0),
    }
    assert list(answer.services) == ["checkout", "frontend", "payment"]
    for edge in answer.edges:
        if edge.callee == "payment":
            exact = np.percentile(sent["payment_durations"][edge.caller], 95)
            assert edge.p95.seconds * 10**9 + edge.p95.nanos == pytest.approx(exact, abs=1)


def test_edges_page_filter_by_service_and_stay_in_their_project(
    rolling_query: Any, sent: dict[str, Any]
) -> None:
    seen = []
    token = ""
    while True:
        answer = graph(rolling_query, sent, limit=1, page_token=token)
        seen += [(e.caller, e.callee) for e in answer.edges]
        token = answer.next_page_token
        if not token:
            break
    assert seen == [("checkout", "payment"), ("frontend", "checkout"), ("frontend", "payment")]
    touching = graph(rolling_query, sent, service="checkout")
    assert {(e.caller, e.callee) for e in touching.edges} == {
        ("checkout", "payment"),
        ("frontend", "checkout"),
    }
    other = graph(rolling_query, sent, project_id="other")
    assert [(e.caller, e.callee, e.calls) for e in other.edges] == [("frontend", "spy", 1)]
    with pytest.raises(grpc.RpcError) as caught:
        graph(rolling_query, sent, limit=-1)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
