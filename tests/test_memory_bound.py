"""Memory before admission (issue "Ingest hardening", defect 4), as an operator sees it: the
real ``otlpd`` process flooded with large Exports from several connections stays under its
documented memory bound, refuses only retryably, and stores exactly what it acknowledged.

The bound (``otlpd.receiver.ingest``, "Memory"), for one process:

    peak RSS <= RSS when ready
              + connections x OTLPD_GRPC_MAX_STREAMS x 0.1 MiB   (calls let in, bodies unread)
              + 2 x OTLPD_DECODE_BUDGET                           (bodies being received)
              + 1.2 x OTLPD_QUEUE_MAX_BYTES                       (decoded rows until commit)
              + (1 + r) x OTLPD_MAX_REQUEST_BYTES                 (the one being decoded)

where r is what a request's rows take per byte of its protobuf (1.0 for these requests,
whose spans each carry one 60 KiB string).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import grpc
import psutil
import psycopg
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from otlpd.errors import RETRY_INFO_KEY, STATUS_DETAILS_KEY
from tests.conftest import trace_request
from tests.test_main import OtlpdProcess, serve  # noqa: F401 (the fixture)

MIB = 2**20
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS = 128
CHANNELS = 4
CALLS = 200


def big_request() -> bytes:
    """~7.5 MiB: 128 spans, each with one 60 KiB string attribute (under the 64 KiB limit),
    cheap to decode and to store (PostgreSQL compresses it)."""
    request = trace_request([f"big-{i}" for i in range(SPANS)], "flood")
    for span in request.resource_spans[0].scope_spans[0].spans:
        span.attributes.append(
            common_pb2.KeyValue(key="big", value=common_pb2.AnyValue(string_value="x" * 61440))
        )
    return request.SerializeToString()


def channels(target: str, count: int) -> list[grpc.Channel]:
    """``count`` channels, each with a connection of its own."""
    return [
        grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(count)
    ]


def export_call(
    channel: grpc.Channel,
) -> grpc.UnaryUnaryMultiCallable[bytes, trace_service_pb2.ExportTraceServiceResponse]:
    return channel.unary_unary(
        EXPORT,
        request_serializer=None,
        response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
    )


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread, keeping the highest."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def assert_retryable(error: grpc.RpcError) -> None:
    """UNAVAILABLE with RetryInfo, in the trailer the Python SDK reads and the rich status."""
    assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
    trailers: dict[str, object] = dict(error.trailing_metadata() or ())  # type: ignore[arg-type]
    retry_info, details = trailers.get(RETRY_INFO_KEY), trailers.get(STATUS_DETAILS_KEY)
    assert isinstance(retry_info, bytes) and isinstance(details, bytes), error.details()
    info = error_details_pb2.RetryInfo.FromString(retry_info)
    assert info.retry_delay.ToTimedelta().total_seconds() == 1.0
    (detail,) = status_pb2.Status.FromString(details).details
    assert detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR)


def test_a_flood_of_large_exports_stays_under_the_memory_bound(
    serve: Callable[..., OtlpdProcess],  # noqa: F811 (the fixture)
    database_url: str,
) -> None:
    streams, request_limit, budget, queue = 16, 16 * MIB, 32 * MIB, 32 * MIB
    server = serve(
        OTLPD_GRPC_MAX_STREAMS=str(streams),
        OTLPD_MAX_REQUEST_BYTES=f"{request_limit}",
        OTLPD_DECODE_BUDGET=f"{budget}",
        OTLPD_QUEUE_MAX_BYTES=f"{queue}",
        OTLPD_RETRY_AFTER="1s",
    )
    (process,) = server.tree
    payload = big_request()
    assert 7 * MIB < len(payload) < 8 * MIB
    ready = process.memory_info().rss
    r = 1.0  # the rows of these requests take what their protobuf does (tracemalloc)
    bound = (
        ready + CHANNELS * streams * 0.1 * MIB + 2 * budget + 1.2 * queue + (1 + r) * request_limit
    )

    opened = channels(server.target, CHANNELS)
    codes: Counter[str] = Counter()
    try:
        calls = [export_call(channel) for channel in opened]
        with PeakRss(process) as rss:
            # 200 at once: 64 go in (4 connections x 16 streams), the rest wait in the clients.
            answers = [calls[i % CHANNELS].future(payload, timeout=60) for i in range(CALLS)]
            for answer in answers:
                try:
                    response = answer.result()
                except grpc.RpcError as error:
                    assert_retryable(error)
                    codes["UNAVAILABLE"] += 1
                else:
                    assert not response.partial_success.rejected_spans
                    codes["OK"] += 1
        peak = rss.peak
    finally:
        for channel in opened:
            channel.close()

    print(f"peak RSS {peak / MIB:.0f} MiB, bound {bound / MIB:.0f} MiB (ready {ready / MIB:.0f})")
    assert codes["OK"] + codes["UNAVAILABLE"] == CALLS
    assert codes["OK"] and codes["UNAVAILABLE"], f"the bound was not reached: {codes}"
    assert peak < bound, (
        f"peak RSS {peak / MIB:.0f} MiB over the bound {bound / MIB:.0f} MiB"
        f" (ready {ready / MIB:.0f} MiB; {codes})"
    )
    with psycopg.connect(database_url) as conn:
        stored, shortest, longest = conn.execute(
            "SELECT count(*), min(length(attributes->>'big')), max(length(attributes->>'big'))"
            " FROM spans"
        ).fetchone() or (0, 0, 0)
    assert stored == SPANS * codes["OK"], "stored rows are exactly the acknowledged spans"
    assert shortest == longest == 61440
    # Every refusal is counted: in records when its body was read, else as unread.
    refused = server.sample("otlpd_records_total", signal="traces", outcome="refused")
    unread = server.sample("otlpd_refused_unread_total", signal="traces")
    assert refused + SPANS * unread == SPANS * codes["UNAVAILABLE"]
    assert server.sample("otlpd_queue_bytes") == 0
    assert server.sample("otlpd_decode_bytes") == 0

    # Still serving.
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        export_call(channel)(trace_request(["after"]).SerializeToString(), timeout=15)
    assert server.get("/readyz")[0] == 200


def test_exports_beyond_the_stream_limit_wait_in_the_client(
    serve: Callable[..., OtlpdProcess],  # noqa: F811 (the fixture)
    database_url: str,
) -> None:
    """OTLPD_GRPC_MAX_STREAMS is HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS: a connection's
    calls beyond it are queued by the client, not refused (grpc core's own "overload
    protection" would refuse them with RST_STREAM, UNAVAILABLE without RetryInfo)."""
    server = serve(OTLPD_GRPC_MAX_STREAMS="2")
    names = [[f"q{c}-{i}" for i in range(10)] for c in range(40)]
    (channel,) = channels(server.target, 1)
    try:
        call = export_call(channel)
        with psycopg.connect(database_url) as blocker:
            blocker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")  # commits wait
            answers = [
                call.future(trace_request(batch).SerializeToString(), timeout=60) for batch in names
            ]
            deadline = time.monotonic() + 15
            while server.sample("otlpd_queue_rows") < 20:
                assert time.monotonic() < deadline, "the first two Exports did not queue"
                time.sleep(0.05)
            for _ in range(10):
                assert server.sample("otlpd_exports_active") == 2
                assert server.sample("otlpd_queue_rows") == 20
                time.sleep(0.05)
            assert not any(answer.done() for answer in answers)
            blocker.rollback()
        for answer in answers:
            answer.result()  # every one OK: none refused, none failed
    finally:
        channel.close()
    with psycopg.connect(database_url) as conn:
        stored = sorted(str(r[0]) for r in conn.execute("SELECT name FROM spans"))
    assert stored == sorted(name for batch in names for name in batch)
