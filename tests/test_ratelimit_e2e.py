"""Rate limits end to end: a real otlpd with ``OTLPD_RATE_LIMIT_RECORDS``, real clients.

A client sending several times its limit is throttled with the retry hint OTLP clients
honour (UNAVAILABLE + ``google.rpc.retryinfo-bin``); the OpenTelemetry SDK exporter,
retrying as told, gets everything it sent stored, at the limit's pace; and two replicas
on one database each admit the configured rate on their own (``otlpd.ratelimit``).
The unit tests of the buckets are in tests/test_ratelimit.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otlpd.errors import RETRY_INFO_KEY
from storage.postgres.migrate import migrate
from storage.postgres.tenants import create_token
from tests.conftest import RunningOtlpd, start_otlpd_thread, trace_request

RATE = 200  # records/s of the module's server, with a bucket of 1 s
BATCH = 50
CALL_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def limited(shared_database: str) -> Iterator[RunningOtlpd]:
    running = start_otlpd_thread(
        shared_database, rate_limit_records=str(RATE), rate_limit_burst="1s"
    )
    try:
        yield running
    finally:
        running.stop()


def stored(server: RunningOtlpd, service: str) -> int:
    with psycopg.connect(server.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM spans WHERE service_name = %s", (service,))
        return int(row.fetchone()[0])  # type: ignore[index]


def send(channel: grpc.Channel, service: str, count: int, token: str = "") -> grpc.RpcError | None:
    """One Export of ``count`` spans; the error it was refused with, if it was."""
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
    names = [f"op-{i}" for i in range(count)]
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        stub.Export(trace_request(names, service=service), timeout=CALL_TIMEOUT, metadata=metadata)
    except grpc.RpcError as error:
        return error
    return None


def retry_delay(error: grpc.RpcError) -> float | None:
    """The delay in the trailer the OpenTelemetry Python SDK reads (None: no trailer)."""
    trailers: Any = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == RETRY_INFO_KEY:
            info = error_details_pb2.RetryInfo.FromString(value)
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def sdk_spans(service: str, count: int) -> list[ReadableSpan]:
    """``count`` finished SDK spans of ``service``, to hand an exporter directly."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.test_ratelimit_e2e")
    for i in range(count):
        with tracer.start_as_current_span(f"op-{i}"):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def test_a_client_over_its_limit_is_throttled_with_a_retry_hint(limited: RunningOtlpd) -> None:
    # 3x the limit as fast as it goes: 12 Exports of 50 spans, 600 spans against 200/s.
    with grpc.insecure_channel(limited.grpc_target) as channel:
        started = time.monotonic()
        errors = [send(channel, "flood", BATCH) for _ in range(12)]
        elapsed = time.monotonic() - started
    admitted = sum(error is None for error in errors)
    refused = [error for error in errors if error is not None]
    # The bucket (200) passes at once, then what refills while the calls go (and one
    # request's debt); the rest is refused.
    assert errors[:4] == [None] * 4
    assert admitted * BATCH <= RATE * 1.0 + RATE * elapsed + BATCH, (admitted, elapsed)
    assert len(refused) >= 3
    for error in refused:
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert "over its limit of 200 records/s; retry in " in (error.details() or "")
        delay = retry_delay(error)
        assert delay is not None and 0.1 <= delay <= 0.3  # one request's debt: 50 / 200/s
    assert stored(limited, "flood") == admitted * BATCH
    throttled = limited.metric(
        "otlpd_throttled_records_total", {"project": "default", "signal": "traces"}
    )
    assert throttled >= len(refused) * BATCH


def test_the_sdk_exporter_retrying_as_told_gets_everything_stored(limited: RunningOtlpd) -> None:
    spans = sdk_spans("paced", 12 * BATCH)
    exporter = OTLPSpanExporter(endpoint=limited.grpc_target, insecure=True, timeout=10)
    started = time.monotonic()
    try:
        results = [exporter.export(spans[i : i + BATCH]) for i in range(0, len(spans), BATCH)]
    finally:
        exporter.shutdown()
    elapsed = time.monotonic() - started
    assert results == [SpanExportResult.SUCCESS] * 12
    assert stored(limited, "paced") == 12 * BATCH
    # Within the limit: at most the bucket, the refill and one request's debt in that time.
    sent = 12 * BATCH
    assert sent <= RATE * 1.0 + RATE * elapsed + BATCH
    assert elapsed < 6.0  # paced by the hints (~2 s), not by the SDK's own backoff


def test_two_replicas_each_admit_the_configured_rate(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    # 5 records/s with a 20 s bucket (100): per replica, 60 + 60 pass (the second into
    # debt), the third 60 is refused for 4 s: far longer than three calls take, even on
    # a box the suite keeps busy (at 50/s and 0.4 s, a slow pair of calls repaid the debt).
    replicas = [start_otlpd(rate_limit_records="5", rate_limit_burst="20s") for _ in range(2)]
    outcomes = []
    for name, replica in zip("ab", replicas, strict=True):
        with grpc.insecure_channel(replica.grpc_target) as channel:
            outcomes.append([send(channel, f"replica-{name}", 60) is None for _ in range(3)])
    assert outcomes == [[True, True, False]] * 2
    # One project, one database, twice what one replica admits: each process enforces the
    # full rate on its own (docs/edge.md, "Rate limits").
    assert stored(replicas[0], "replica-a") + stored(replicas[0], "replica-b") == 2 * 120


def test_a_tokens_own_limit_leaves_the_projects_other_tokens_alone(
    database_url: str, start_otlpd: Callable[..., RunningOtlpd]
) -> None:
    migrate(database_url)
    slow_id, slow = create_token(database_url, "shop", ["ingest"], rate=(50, None))
    _, other = create_token(database_url, "shop", ["ingest"])
    server = start_otlpd(rate_limit_burst="2s")  # no project limit: only the token's
    with grpc.insecure_channel(server.grpc_target) as channel:
        slowed = [send(channel, "token-slow", 60, slow) for _ in range(3)]
        unlimited = [send(channel, "token-other", 60, other) for _ in range(3)]
    assert [error is None for error in slowed] == [True, True, False]
    refused = slowed[2]
    assert refused is not None and refused.code() is grpc.StatusCode.UNAVAILABLE
    assert (refused.details() or "").startswith(
        f"token {slow_id} of project shop is over its limit of 50 records/s; retry in "
    )
    assert unlimited == [None] * 3
    assert stored(server, "token-slow") == 120
    assert stored(server, "token-other") == 180
