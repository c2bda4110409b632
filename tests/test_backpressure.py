"""Backpressure as clients see it: when PostgreSQL is down or the ingest queue is full,
Exports get UNAVAILABLE with RetryInfo (in the trailer the Python SDK reads and in the rich
status), readiness follows PostgreSQL, and clients that retry lose nothing and duplicate
nothing once the store catches up."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import grpc
import psycopg
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tests.conftest import RunningOtlpd, trace_request, wait_until

RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
REFUSED = {"signal": "traces", "outcome": "refused"}


def export_raw(target: str, names: list[str], timeout: float = 30) -> grpc.RpcError | None:
    """Exports over a fresh channel; returns the error, or None when acknowledged."""
    with grpc.insecure_channel(target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            stub.Export(trace_request(names), timeout=timeout)
        except grpc.RpcError as exc:
            return exc
    return None


def assert_retry_info(error: grpc.RpcError, seconds: float) -> None:
    """UNAVAILABLE, with RetryInfo(seconds) in both the SDK's trailer and the rich status."""
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    # (key, value) pairs at run time, whatever grpc-stubs says.
    trailers: dict[str, object] = dict(error.trailing_metadata())  # type: ignore[arg-type]
    retry_info, details = trailers[RETRY_INFO_KEY], trailers[STATUS_DETAILS_KEY]
    assert isinstance(retry_info, bytes) and isinstance(details, bytes)
    info = error_details_pb2.RetryInfo.FromString(retry_info)
    assert info.retry_delay.ToTimedelta().total_seconds() == seconds
    status = status_pb2.Status.FromString(details)
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    (detail,) = status.details
    rich = error_details_pb2.RetryInfo()
    assert detail.Unpack(rich)
    assert rich == info


def readyz(server: RunningOtlpd) -> int:
    try:
        with urllib.request.urlopen(f"{server.ops_url}/readyz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def stored(url: str) -> Counter[tuple[str, bytes]]:
    """(name, span_id) of every stored span, with how many times each is stored."""
    with psycopg.connect(url) as conn:
        return Counter(
            (str(name), bytes(span_id))
            for name, span_id in conn.execute("SELECT name, span_id FROM spans")
        )


@contextmanager
def unreachable(url: str) -> Iterator[Callable[[], None]]:
    """PostgreSQL refuses every connection to this database until the yielded callable
    (or the end of the block) lets them in again."""
    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:

        def allow() -> None:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')

        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            yield allow
        finally:
            allow()


class SdkExport:
    """One OTel SDK OTLPSpanExporter export of ``count`` spans, in a thread of its own."""

    def __init__(self, target: str, prefix: str, count: int) -> None:
        provider = TracerProvider(resource=Resource.create({"service.name": "sdk"}))
        tracer = provider.get_tracer("tests.backpressure")
        self.spans: list[ReadableSpan] = []
        for i in range(count):
            span = tracer.start_span(f"{prefix}-{i}")
            span.end()
            assert isinstance(span, ReadableSpan)
            self.spans.append(span)
        self.exporter: SpanExporter = OTLPSpanExporter(endpoint=target, insecure=True, timeout=60)
        self.result: SpanExportResult | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.result = self.exporter.export(self.spans)

    @property
    def keys(self) -> set[tuple[str, bytes]]:
        """(name, span_id) of every span sent, as stored in PostgreSQL."""
        keys = set()
        for span in self.spans:
            context = span.get_span_context()
            assert context is not None
            keys.add((span.name, context.span_id.to_bytes(8, "big")))
        return keys

    def start(self) -> SdkExport:
        self.thread.start()
        return self

    def join(self, timeout: float) -> SpanExportResult | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the SDK export did not finish in time"
        self.exporter.shutdown()
        return self.result


def test_unreachable_postgres_refuses_with_retry_info_and_sdk_retries(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd(retry_after="1s", store_timeout="1s")
    assert readyz(server) == 200
    sdk: SdkExport | None = None
    with unreachable(server.database_url) as allow:
        error = export_raw(server.grpc_target, ["during-outage"], timeout=10)
        assert error is not None, "an Export was acknowledged while PostgreSQL was down"
        assert_retry_info(error, 1.0)
        wait_until(lambda: readyz(server) == 503, "/readyz to turn 503")

        refused_before = server.metric("otlpd_records_total", REFUSED)
        sdk = SdkExport(server.grpc_target, "sdk", 50).start()
        # The SDK's first attempt was refused (it now waits RetryInfo's 1 s): let
        # PostgreSQL back in. It makes at most 6 attempts, so the outage must end soon.
        wait_until(
            lambda: server.metric("otlpd_records_total", REFUSED) >= refused_before + 50,
            "the SDK's first attempt to be refused",
        )
        allow()
    assert sdk.join(60) == SpanExportResult.SUCCESS
    wait_until(lambda: readyz(server) == 200, "/readyz to turn 200 again")

    got = stored(server.database_url)
    assert got == Counter(sdk.keys), "every SDK span exactly once, nothing of the refused one"
    assert server.metric("otlpd_queue_rows") == 0


def test_full_queue_refuses_with_retry_info_and_retrying_clients_lose_nothing(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd(queue_max_rows="1024", batch_max_rows="512", retry_after="1s")
    raw_sent = {f"raw-{r}": [f"raw-{r}-{i}" for i in range(200)] for r in range(16)}
    with psycopg.connect(server.database_url) as blocker:
        # Holding this lock stalls the writer's COPY: admitted work stays in the queue.
        blocker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(len(raw_sent)) as pool:
            raw = {
                key: pool.submit(export_raw, server.grpc_target, names, 60)
                for key, names in raw_sent.items()
            }
            wait_until(
                lambda: sum(f.done() for f in raw.values()) >= len(raw) - 1024 // 200,
                "the requests beyond the queue's room to be refused",
                timeout=20,
            )
            refused = {key: f.result() for key, f in raw.items() if f.done()}
            assert refused and all(e is not None for e in refused.values())
            for error in refused.values():
                assert error is not None
                assert_retry_info(error, 1.0)
            assert 0 < server.metric("otlpd_queue_rows") <= 1024

            refused_before = server.metric("otlpd_records_total", REFUSED)
            sdks = [SdkExport(server.grpc_target, f"sdk{t}", 300).start() for t in range(4)]
            wait_until(
                lambda: server.metric("otlpd_records_total", REFUSED) >= refused_before + 4 * 300,
                "every SDK exporter to be refused once",
                timeout=20,
            )
            assert not any(f.done() for k, f in raw.items() if k not in refused)
            blocker.rollback()
            acked = {key for key, f in raw.items() if f.result() is None}
        results = [sdk.join(60) for sdk in sdks]
    assert results == [SpanExportResult.SUCCESS] * len(sdks)

    expected: Counter[tuple[str, bytes]] = Counter()
    for sdk in sdks:
        expected.update(sdk.keys)
    got = stored(server.database_url)
    raw_got = Counter({k: n for k, n in got.items() if k[0].startswith("raw-")})
    sdk_got = got - raw_got
    assert sdk_got == expected, "every SDK span exactly once"
    assert acked == set(raw) - set(refused)
    assert sorted(name for name, _ in raw_got.elements()) == sorted(
        name for key in acked for name in raw_sent[key]
    ), "acknowledged raw requests exactly once, refused ones not at all"
    assert server.metric("otlpd_records_total", REFUSED) >= 200 * len(refused) + 4 * 300
    assert server.metric("otlpd_queue_rows") == 0


def test_a_lagging_event_loop_sheds_exports_with_retry_info(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    """Decoding backlog (the loop behind) answers UNAVAILABLE + RetryInfo at once, instead
    of letting requests wait past their deadline; served again once the loop catches up."""
    server = start_otlpd(max_loop_lag="100ms", retry_after="1s")
    stalling = threading.Event()

    def stall() -> None:  # what a flood of requests to decode does to the loop
        stalling.set()
        for _ in range(8):
            server.loop.call_soon_threadsafe(time.sleep, 0.3)
            time.sleep(0.32)
        stalling.clear()

    staller = threading.Thread(target=stall)
    staller.start()
    stalling.wait(5)
    codes: list[grpc.StatusCode] = []
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        while stalling.is_set():
            try:
                stub.Export(trace_request(["maybe"]), timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
                assert "behind on decoding" in (exc.details() or "")
                info = dict(exc.trailing_metadata() or ())[RETRY_INFO_KEY]
                assert error_details_pb2.RetryInfo.FromString(info).retry_delay.seconds == 1
        staller.join()
        time.sleep(0.2)
        stub.Export(trace_request(["after"]), timeout=10)
    assert grpc.StatusCode.UNAVAILABLE in codes
    assert server.metric("otlpd_loop_lag_seconds") < 0.1
