"""What an Export holds in memory: the estimate admission charges for its rows, no request
bytes while it waits for its commit, and a body that does not arrive refused retryably."""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from collections.abc import Callable

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from bench.workload import build_case
from otlpd.app import _decoder
from otlpd.config import Config
from otlpd.envelope import SessionCache
from otlpd.receiver.ingest import decoded_size
from tests.conftest import RunningOtlpd

# --- decoded_size: what admission charges the queue -------------------------------------

MIB = 2**20


def _big_spans() -> tuple[str, list[bytes]]:
    now = time.time_ns()
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(64):
        scope.spans.add(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name=f"s{i}",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1,
            attributes=[
                common_pb2.KeyValue(key="big", value=common_pb2.AnyValue(string_value="é✓" * 10000))
            ],
        )
    return "traces", [request.SerializeToString()] * 2


def _bench(case: str) -> Callable[[], tuple[str, list[bytes]]]:
    def build() -> tuple[str, list[bytes]]:
        workload = build_case(case, 4, time.time_ns())
        return workload.signal, list(workload.requests)

    return build


@pytest.mark.parametrize(
    "requests",
    [
        pytest.param(_bench("spans-sessions"), id="spans"),
        pytest.param(_bench("logs"), id="logs"),
        pytest.param(_bench("metrics"), id="metrics"),
        pytest.param(_bench("metrics-scrape"), id="metrics-scrape"),
        pytest.param(_big_spans, id="big-non-ascii-spans"),
    ],
)
def test_decoded_size_is_close_to_the_memory_the_rows_take(
    requests: Callable[[], tuple[str, list[bytes]]],
) -> None:
    signal, payloads = requests()
    decode = getattr(_decoder(Config(), SessionCache(100_000, ttl=600, negative_ttl=5)), signal)
    now = time.time_ns()
    for payload in payloads:  # caches warm, as in a running server
        decode(payload, now)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        batches = [decode(payload, now).batch for payload in payloads]
        gc.collect()
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimated = sum(decoded_size(batch) for batch in batches)
    protobuf = sum(len(p) for p in payloads)
    assert 0.9 * taken <= estimated <= 1.5 * taken, (estimated, taken, protobuf)


# --- the body is not held while the Export waits for its commit -------------------------


def test_an_export_waiting_for_its_commit_holds_no_request_bytes(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd()
    now = time.time_ns()
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(128):
        scope.spans.add(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name=f"held-{i}",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1,
            attributes=[
                common_pb2.KeyValue(key="big", value=common_pb2.AnyValue(string_value="x" * 60000))
            ],
        )
    payload = request.SerializeToString()
    assert len(payload) > 7 * MIB
    with (
        grpc.insecure_channel(server.grpc_target) as channel,
        psycopg.connect(server.database_url) as blocker,
    ):
        call = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
        )
        blocker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")  # the commit waits
        tracemalloc.start()
        try:
            answer = call.future(payload, timeout=60)
            deadline = time.monotonic() + 20
            while server.metric("otlpd_queue_rows") < 128:
                assert time.monotonic() < deadline, "the Export did not reach the queue"
                time.sleep(0.02)
            gc.collect()
            large = [t.size for t in tracemalloc.take_snapshot().traces if t.size >= len(payload)]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # The server read the body into Python bytes (grpc's own buffers are not traced, nor
        # is our payload, made before tracing began), and dropped them once the rows were
        # built: nothing of that size is alive while the Export waits for its commit.
        assert peak >= len(payload)
        assert large == []
        assert server.metric("otlpd_decode_bytes") == 0
        blocker.rollback()
        assert not answer.result().partial_success.rejected_spans
    with psycopg.connect(server.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM spans").fetchone() == (128,)


def test_a_body_that_does_not_arrive_in_time_is_refused_retryably(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    """A sender that stalls would hold its share of the decode budget: the read has a
    deadline of its own (here absurdly short, so that a 32 MiB body cannot make it)."""
    server = start_otlpd(receive_timeout="1ms", retry_after="2s")
    payload = b"\x00" * (32 * MIB)  # not OTLP, but only its size matters: it is never read
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as refused:
            call(payload, timeout=30)
    error = refused.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert "did not arrive" in (error.details() or "")
    trailers = dict(error.trailing_metadata() or ())
    assert "google.rpc.retryinfo-bin" in trailers
    assert server.metric("otlpd_refused_unread_total", {"signal": "traces"}) == 1
    assert server.metric("otlpd_decode_bytes") == 0
