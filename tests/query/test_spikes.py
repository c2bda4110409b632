"""GetErrorSpikes over spans and logs sent through the real OTLP receiver."""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2

from query.convert import timestamp
from query.proto import pb
from tests.conftest import RunningOtlpd
from tests.query.conftest import wait_rolled_up
from tests.query.test_logs import export
from tests.query.test_traces import S, send_spans

MINUTE = 60 * 10**9


@pytest.fixture(scope="module")
def sent(rolling_otlpd: RunningOtlpd, rolling_query: Any) -> dict[str, Any]:
    """Twenty minutes of baseline at a 2% error rate for three services, then five
    minutes in which payment's "charge" fails 40% of the time."""
    rng = np.random.default_rng(5)
    t0 = (time.time_ns() - 40 * MINUTE) // MINUTE * MINUTE
    window = t0 + 20 * MINUTE
    burst: list[S] = []
    for service, operations in (
        ("checkout", ["buy"]),
        ("payment", ["charge", "refund"]),
        ("search", ["q"]),
    ):
        spans = []
        for i in range(1500):
            start = t0 + int(rng.integers(0, 25 * MINUTE))
            operation = operations[i % len(operations)]
            rate = (
                0.4 if service == "payment" and operation == "charge" and start >= window else 0.02
            )
            span = S(rng.bytes(16), operation, start, error=bool(rng.random() < rate))
            spans.append(span)
            if service == "payment" and span.error and start >= window:
                burst.append(span)
        send_spans(rolling_otlpd, spans, service=service)
    burst.sort(key=lambda s: s.start_ns)
    newest = burst[-1]
    export(
        rolling_otlpd,
        [
            {"body": "card declined", "time_ns": newest.start_ns + 1, "severity": 17,
             "trace_id": newest.trace_id, "span_id": newest.span_id},
            {"body": "gateway timeout", "time_ns": window + MINUTE, "severity": 17},
            {"body": "all good", "time_ns": window + MINUTE, "severity": 9},
        ],
        service="payment",
    )  # fmt: skip
    send_spans(rolling_otlpd, [S(rng.bytes(16), "x", window, error=True)], "spy", "other")
    wait_rolled_up(rolling_query, t0 + 25 * MINUTE)
    wait_rolled_up(rolling_query, t0 + 25 * MINUTE, project="other")
    return {"window": window, "burst": burst}


def spikes(query: Any, sent: dict[str, Any], **fields: Any) -> pb.GetErrorSpikesResponse:
    request = pb.GetErrorSpikesRequest(
        start_time=timestamp(sent["window"]),
        end_time=timestamp(sent["window"] + 5 * MINUTE),
        **fields,
    )
    return query.GetErrorSpikes(request)  # type: ignore[no-any-return]


def test_the_burst_ranks_first_with_the_spans_and_logs_that_explain_it(
    rolling_query: Any, sent: dict[str, Any]
) -> None:
    answer = spikes(rolling_query, sent)
    top = answer.spikes[0]
    assert top.service == "payment"
    assert top.error_rate > 0.15
    assert top.baseline_error_rate < 0.05
    assert top.excess_errors == pytest.approx(top.errors - top.requests * top.baseline_error_rate)
    assert top.zscore > 5
    assert all(top.excess_errors >= s.excess_errors for s in answer.spikes)
    assert top.operations[0].operation == "charge"
    assert all(op.operation != "refund" or op.excess_errors > 0 for op in top.operations)
    burst_ids = {s.span_id for s in sent["burst"]}
    assert len(top.example_spans) == 5
    assert all(s.span_id in burst_ids and s.status_code == 2 for s in top.example_spans)
    assert top.example_spans[0].span_id == sent["burst"][-1].span_id  # newest first
    bodies = [r.body.string_value for r in top.example_logs]
    assert bodies == ["card declined", "gateway timeout"]  # its traces' first, no INFO


def test_the_baseline_window_and_paging(rolling_query: Any, sent: dict[str, Any]) -> None:
    everything = [s.service for s in spikes(rolling_query, sent).spikes]
    pages: list[str] = []
    token = ""
    while True:
        answer = spikes(rolling_query, sent, limit=1, examples=1, page_token=token)
        pages += [s.service for s in answer.spikes]
        token = answer.next_page_token
        if not token:
            break
    assert pages == everything
    # The baseline defaults to four times the window, ending where the window starts.
    default = spikes(rolling_query, sent).spikes[0]
    short = spikes(rolling_query, sent, baseline=duration_pb2.Duration(seconds=300)).spikes[0]
    assert short.service == "payment"
    assert short.baseline_requests == pytest.approx(default.baseline_requests / 4, rel=0.3)


def test_projects_never_mix_and_bad_arguments_name_the_field(
    rolling_query: Any, sent: dict[str, Any]
) -> None:
    other = spikes(rolling_query, sent, project_id="other")
    assert [s.service for s in other.spikes] == ["spy"]
    cases = {
        "baseline": {"baseline": duration_pb2.Duration(seconds=1)},
        "examples": {"examples": 101},
        "limit": {"limit": -1},
    }
    for field, fields in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            spikes(rolling_query, sent, **fields)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (caught.value.details() or "").startswith(field)
