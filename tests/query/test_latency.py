"""GetLatencyHistogram over spans sent through the real OTLP receiver."""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2

from query.convert import timestamp
from query.latency import log_edges
from query.proto import pb
from tests.conftest import RunningOtlpd
from tests.query.test_traces import S, send_spans

MINUTE = 60 * 10**9


def ns(d: duration_pb2.Duration) -> int:
    return d.seconds * 10**9 + d.nanos


@pytest.fixture(scope="module")
def sent(rolling_otlpd: RunningOtlpd) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    t0 = time.time_ns() - 20 * MINUTE
    durations = np.rint(rng.lognormal(np.log(5e6), 1.2, 1500)).astype(np.int64)
    spans = [
        S(rng.bytes(16), "GET /a" if i % 2 else "GET /b", t0 + i * 10**8, int(d), kind=2 + i % 2)
        for i, d in enumerate(durations)
    ]
    send_spans(rolling_otlpd, spans, service="api")
    send_spans(rolling_otlpd, [S(rng.bytes(16), "GET /a", t0, 1)], service="api", project="other")
    return {"t0": t0, "spans": spans, "durations": durations}


def histogram(query: Any, sent: dict[str, Any], **fields: Any) -> pb.GetLatencyHistogramResponse:
    request = pb.GetLatencyHistogramRequest(
        start_time=timestamp(sent["t0"]), end_time=timestamp(sent["t0"] + 10 * MINUTE), **fields
    )
    return query.GetLatencyHistogram(request)  # type: ignore[no-any-return]


def test_bins_and_percentiles_agree_with_numpy(rolling_query: Any, sent: dict[str, Any]) -> None:
    durations = sent["durations"]
    answer = histogram(rolling_query, sent, service="api")
    assert answer.count == len(durations)
    assert sum(b.count for b in answer.bins) == len(durations)
    edges = [ns(b.lower) for b in answer.bins] + [ns(answer.bins[-1].upper)]
    assert edges == sorted(set(edges))
    counts, _ = np.histogram(durations, bins=np.array(edges))
    # numpy's last bin is closed, ours half-open: the maximum sits below our last edge
    assert [b.count for b in answer.bins] == counts.tolist()
    ratios = np.diff(np.log(edges[1:]))
    assert np.allclose(ratios, ratios.mean(), rtol=0.05)  # log-scaled
    for mark in answer.percentiles:
        exact = np.percentile(durations, mark.quantile * 100)
        assert ns(mark.value) == pytest.approx(exact, abs=1)
        assert ns(answer.bins[mark.bin].lower) <= ns(mark.value) < ns(answer.bins[mark.bin].upper)
    assert [m.quantile for m in answer.percentiles] == [0.5, 0.9, 0.95, 0.99]
    assert (ns(answer.min), ns(answer.max)) == (durations.min(), durations.max())
    assert ns(answer.mean) == pytest.approx(durations.mean(), abs=1)


def test_given_bounds_an_operation_and_a_kind_narrow_the_spans(
    rolling_query: Any, sent: dict[str, Any]
) -> None:
    chosen = [s.duration_ns for s in sent["spans"] if s.name == "GET /a" and s.kind == 3]
    bounds = [duration_pb2.Duration(nanos=n) for n in (10**6, 10**7, 10**8)]
    answer = histogram(
        rolling_query, sent, service="api", operation="GET /a", span_kind=3, bounds=bounds
    )
    assert answer.count == len(chosen)
    edges = np.array([0, 10**6, 10**7, 10**8, max(chosen) + 1])
    assert [b.count for b in answer.bins] == np.histogram(chosen, bins=edges)[0].tolist()
    other = histogram(rolling_query, sent, service="api", project_id="other")
    assert other.count == 1


def test_bad_arguments_name_the_field(rolling_query: Any, sent: dict[str, Any]) -> None:
    cases = {
        "service": {},
        "bounds": {"service": "api", "bounds": [duration_pb2.Duration(seconds=2)] * 2},
        "bins": {"service": "api", "bins": -1},
        "span_kind": {"service": "api", "span_kind": 9},
    }
    for field, fields in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            histogram(rolling_query, sent, **fields)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (caught.value.details() or "").startswith(field)


def test_log_edges_cover_the_range_with_a_bin_for_zero() -> None:
    edges = log_edges(1, 10**9, 10)
    assert edges[0] == 0 and edges[-1] > 10**9
    assert list(edges) == sorted(set(edges.tolist()))
