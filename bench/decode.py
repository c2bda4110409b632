"""Timing of ``otlpd.receiver.decode`` on realistic requests, single-threaded.

Run: ``.venv/bin/python -m bench.decode`` (add ``--profile`` for a pyinstrument profile of
the span case). Prints µs per record for spans, log records and data points. A span has
10 attributes of mixed types (3 with values unique to the span), one event with two
attributes (one unique), and comes from one of 2 resources; "rum" spans also carry a
``session.id`` (8 sessions a request); "unique" spans have every attribute value unique
(the attribute cache never hits). The naive walk is timed on the same payloads in the
same run, as a yardstick that does not depend on how busy the machine is.
"""

from __future__ import annotations

import base64
import json
import random
import sys
import time
from collections.abc import Callable, Iterable

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otlpd.envelope import EnvelopeKeys, SessionCache
from otlpd.receiver.decode import Decoded, DecodeLimits, Decoder
from storage.model import RowBatch

NOW = 1_700_000_000 * 10**9
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
PER_RESOURCE = 256


def _kv(key: str, value: object) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, str):
        kv.value.string_value = value
    elif isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    return kv


def _resource(r: int) -> Resource:
    return Resource(
        attributes=[
            _kv("service.name", f"checkout-{r}"),
            _kv("service.version", "1.4.2"),
            _kv("host.name", f"ip-10-0-0-{r}.ec2.internal"),
            _kv("telemetry.sdk.name", "opentelemetry"),
            _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.version", "1.27.0"),
            _kv("process.pid", 4242 + r),
        ]
    )


def _span_attributes(rnd: random.Random, variant: str, seed: int) -> list[KeyValue]:
    unique = variant == "unique"
    attributes = [
        _kv(
            "http.request.method", rnd.choice(("GET", "POST")) if not unique else f"M{rnd.random()}"
        ),
        _kv("url.full", f"https://shop.example.com/api/cart/{rnd.randrange(10**9)}?currency=EUR"),
        _kv("http.route", "/api/cart/{id}" if not unique else f"/r/{rnd.random()}"),
        _kv(
            "http.response.status_code",
            rnd.choice((200, 200, 200, 404)) if not unique else rnd.randrange(10**9),
        ),
        _kv("server.port", 8080 if not unique else rnd.randrange(10**6)),
        _kv("client.port", rnd.randrange(1024, 65536)),
        _kv(
            "user_agent.original",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0" if not unique else f"UA {rnd.random()}",
        ),
        _kv("http.server.request.duration", rnd.random()),
        _kv("sampled", True if not unique else rnd.random() < 0.5),
        _kv("network.protocol.version", "1.1" if not unique else f"{rnd.random()}"),
    ]
    if variant == "rum":  # a batch from 8 browser sessions, new to the server
        attributes[4] = _kv("session.id", f"sess-{seed}-{rnd.randrange(8)}")
    return attributes


def traces(variant: str, seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    request = ExportTraceServiceRequest()
    for r in range(2):
        resource_spans = request.resource_spans.add(resource=_resource(r))
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "opentelemetry.instrumentation.flask"
        scope_spans.scope.version = "0.48b0"
        for i in range(PER_RESOURCE):
            start = NOW - 10**9 + i * 1000
            span = scope_spans.spans.add(
                trace_id=rnd.randbytes(16),
                span_id=rnd.randbytes(8),
                parent_span_id=rnd.randbytes(8),
                name="GET /api/cart/{id}",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=start,
                end_time_unix_nano=start + rnd.randrange(10**6, 10**8),
                flags=0x301,
                attributes=_span_attributes(rnd, variant, seed),
            )
            span.events.add(
                time_unix_nano=start + 500,
                name="cache.miss",
                attributes=[_kv("cache.key", f"cart:{rnd.randrange(10**6)}"), _kv("attempt", 1)],
            )
            span.status.code = Status.STATUS_CODE_OK
    return request.SerializeToString()


def logs(seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    request = ExportLogsServiceRequest()
    for r in range(2):
        resource_logs = request.resource_logs.add(resource=_resource(r))
        scope_logs = resource_logs.scope_logs.add()
        scope_logs.scope.name = "checkout.cart"
        for i in range(PER_RESOURCE):
            record = scope_logs.log_records.add(
                time_unix_nano=NOW - 10**9 + i,
                observed_time_unix_nano=NOW - 10**9 + i + 1000,
                severity_number=SeverityNumber.SEVERITY_NUMBER_INFO,
                severity_text="INFO",
                trace_id=rnd.randbytes(16),
                span_id=rnd.randbytes(8),
                flags=1,
                attributes=[
                    _kv("code.function", "add_item"),
                    _kv("code.lineno", 120),
                    _kv("cart.items", rnd.randrange(20)),
                    _kv("thread.name", "MainThread"),
                    _kv("cart.id", f"cart-{rnd.randrange(10**9)}"),
                ],
            )
            record.body.string_value = f"added item {rnd.randrange(10**6)} to cart"
    return request.SerializeToString()


def metrics(seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    request = ExportMetricsServiceRequest()
    for r in range(2):
        resource_metrics = request.resource_metrics.add(resource=_resource(r))
        scope_metrics = resource_metrics.scope_metrics.add()
        scope_metrics.scope.name = "opentelemetry.instrumentation.flask"
        for m in range(16):
            counter = scope_metrics.metrics.add(name=f"http.server.requests.{m}", unit="1")
            counter.sum.aggregation_temporality = CUMULATIVE
            counter.sum.is_monotonic = True
            histogram = scope_metrics.metrics.add(name=f"http.server.duration.{m}", unit="s")
            histogram.histogram.aggregation_temporality = CUMULATIVE
            for p in range(8):
                attributes = [
                    _kv("http.route", f"/api/route/{p}"),
                    _kv("http.request.method", "GET"),
                    _kv("http.response.status_code", 200),
                ]
                counter.sum.data_points.add(
                    attributes=attributes,
                    start_time_unix_nano=NOW - 60 * 10**9,
                    time_unix_nano=NOW - 10**9,
                    as_int=rnd.randrange(10**6),
                )
                histogram.histogram.data_points.add(
                    attributes=attributes,
                    start_time_unix_nano=NOW - 60 * 10**9,
                    time_unix_nano=NOW - 10**9,
                    count=100,
                    sum=rnd.random() * 100,
                    bucket_counts=[10] * 10,
                    explicit_bounds=[0.005 * 2**b for b in range(9)],
                )
    return request.SerializeToString()


def _naive_value(value: AnyValue) -> object:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_naive_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _naive_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which) if which else None


def _naive_attributes(attributes: Iterable[KeyValue]) -> str:
    return json.dumps(
        {kv.key: _naive_value(kv.value) for kv in attributes},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def naive_traces(payload: bytes, now_ns: int) -> Decoded:
    """The reference: a plain walk of the real protobuf classes, no validation, no envelope.

    What a prototype measured at ~10 µs a span (docs/benchmarks.md, "Reference
    measurements"); the decoder is timed against it in the same
    run, which makes the comparison robust to a busy machine.
    """
    batch = RowBatch()
    for rs in ExportTraceServiceRequest.FromString(payload).resource_spans:
        resource = _naive_attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope
            for span in ss.spans:
                events = [
                    {
                        "time_unix_nano": e.time_unix_nano,
                        "name": e.name,
                        "attributes": {kv.key: _naive_value(kv.value) for kv in e.attributes},
                    }
                    for e in span.events
                ]
                start = span.start_time_unix_nano
                end = span.end_time_unix_nano
                batch.spans.append(
                    (
                        "default",
                        start,
                        start,
                        end,
                        end - start,
                        span.trace_id,
                        span.span_id,
                        span.parent_span_id or None,
                        span.trace_state or None,
                        span.flags,
                        None,
                        None,
                        None,
                        span.name,
                        span.kind,
                        span.status.code,
                        span.status.message or None,
                        _naive_attributes(span.attributes),
                        json.dumps(events, separators=(",", ":")) if events else None,
                        None,
                        span.dropped_attributes_count,
                        span.dropped_events_count,
                        span.dropped_links_count,
                        resource,
                        rs.schema_url or None,
                        scope.name,
                        scope.version,
                        None,
                        ss.schema_url or None,
                    )
                )
    return Decoded(batch, 0, "", set())


def _time(decode: Callable[[bytes, int], Decoded], payloads: list[bytes]) -> float:
    """µs per record: best of 5 rounds, a round decodes each payload once.

    Payloads differ (seeds), so values unique to a record are new to the attribute cache
    each time, as in production; repeated values (routes, methods) hit it.
    """
    records = sum(decode(payload, NOW).batch.row_count for payload in payloads)
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for payload in payloads:
            decode(payload, NOW)
        best = min(best, time.process_time() - t0)
    return best / records * 1e6


def main() -> None:
    decoder = Decoder(EnvelopeKeys(), DecodeLimits(), "default", SessionCache())
    if "--profile" in sys.argv:
        from pyinstrument import Profiler

        payloads = [traces("backend", seed) for seed in range(20)]
        with Profiler(interval=0.0005) as profiler:
            for _ in range(10):
                for payload in payloads:
                    decoder.traces(payload, NOW)
        print(profiler.output_text(unicode=False, show_all=False))
        return
    seeds = range(20)
    for variant in ("backend", "rum", "unique"):
        payloads = [traces(variant, seed) for seed in seeds]
        ours = _time(decoder.traces, payloads)
        naive = _time(naive_traces, payloads)
        print(f"span ({variant}): {ours:.2f} µs (naive walk, same payloads: {naive:.2f} µs)")
    print(f"log record: {_time(decoder.logs, [logs(seed) for seed in seeds]):.2f} µs")
    points = [metrics(seed) for seed in seeds]
    print(f"data point (sum + histogram): {_time(decoder.metrics, points):.2f} µs")


if __name__ == "__main__":
    main()
