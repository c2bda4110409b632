"""Decoding OTLP requests into rows: every column, the envelope, rejections and salvage."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, SeverityNumber
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    SummaryDataPoint,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otlpd.envelope import EnvelopeKeys, SessionCache
from otlpd.errors import InvalidRequest
from otlpd.receiver.anyvalue import has_nul
from otlpd.receiver.decode import Decoded, DecodeLimits, Decoder
from otlpd.receiver.redaction import Redaction
from storage.model import (
    LOG_COLUMNS,
    POINT_COLUMNS,
    RESOURCE_COLUMNS,
    SERIES_COLUMNS,
    SPAN_COLUMNS,
    MetricType,
    Row,
    SessionSighting,
)
from tests.receiver.test_salvage import deep_attribute, varint

NOW = 1_700_000_000 * 10**9
T0 = NOW - 10**9
TRACE = bytes(range(1, 17))
SPAN = bytes(range(1, 9))
PARENT = bytes(range(11, 19))
OTHER_TRACE = bytes(range(21, 37))
OTHER_SPAN = bytes(range(31, 39))
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE

# -- building requests -------------------------------------------------------------------


def any_value(value: object) -> AnyValue:
    if value is None:
        return AnyValue()
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    assert isinstance(value, dict)
    return AnyValue(kvlist_value=KeyValueList(values=attrs(value)))


def attrs(values: Mapping[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in values.items()]


def span(**fields: Any) -> Span:
    base: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "op",
        "start_time_unix_nano": T0,
        "end_time_unix_nano": T0 + 1000,
    }
    return Span(**(base | fields))


def traces(
    spans: Iterable[Span],
    resource: Mapping[str, object] | None = None,
    scope: Mapping[str, object] | None = None,
) -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(attrs({"service.name": "svc"} if resource is None else resource))
    ss = rs.scope_spans.add()
    ss.scope.attributes.extend(attrs(scope or {}))
    ss.spans.extend(spans)
    return request.SerializeToString()


def log(**fields: Any) -> LogRecord:
    base: dict[str, Any] = {"time_unix_nano": T0, "severity_number": 9}
    return LogRecord(**(base | fields))


def logs(records: Iterable[LogRecord], resource: Mapping[str, object] | None = None) -> bytes:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend(attrs({"service.name": "svc"} if resource is None else resource))
    rl.scope_logs.add().log_records.extend(records)
    return request.SerializeToString()


def metrics(items: Iterable[Metric], resource: Mapping[str, object] | None = None) -> bytes:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(attrs({"service.name": "svc"} if resource is None else resource))
    sm = rm.scope_metrics.add()
    sm.scope.name = "meter"
    sm.scope.version = "2"
    sm.metrics.extend(items)
    return request.SerializeToString()


def gauge(*points: NumberDataPoint, name: str = "g") -> Metric:
    metric = Metric(name=name)
    metric.gauge.data_points.extend(points)
    return metric


def number(value: float | int = 1.0, **fields: Any) -> NumberDataPoint:
    base: dict[str, Any] = {"time_unix_nano": T0}
    if isinstance(value, int):
        base["as_int"] = value
    else:
        base["as_double"] = value
    return NumberDataPoint(**(base | fields))


def decoder(
    cache: SessionCache | None = None, redaction: Redaction | None = None, **limits: int
) -> Decoder:
    return Decoder(
        EnvelopeKeys(),
        DecodeLimits(**limits),
        "default",
        SessionCache() if cache is None else cache,
        redaction=Redaction() if redaction is None else redaction,
    )


NO_REDACTION = Redaction(enabled=False, anonymize_ip=False)


def row(columns: tuple[str, ...], values: Row) -> dict[str, Any]:
    assert len(values) == len(columns)
    return dict(zip(columns, values, strict=True))


def spans_of(decoded: Decoded) -> list[dict[str, Any]]:
    return [row(SPAN_COLUMNS, r) for r in decoded.batch.spans]


def logs_of(decoded: Decoded) -> list[dict[str, Any]]:
    return [row(LOG_COLUMNS, r) for r in decoded.batch.logs]


def points_of(decoded: Decoded) -> list[dict[str, Any]]:
    return [row(POINT_COLUMNS, r) for r in decoded.batch.points]


def series_of(decoded: Decoded) -> list[dict[str, Any]]:
    return [row(SERIES_COLUMNS, r) for r in decoded.batch.series.values()]


def resources_of(decoded: Decoded) -> list[dict[str, Any]]:
    return [row(RESOURCE_COLUMNS, r) for r in decoded.batch.resources.values()]


def resource_id(attributes: str, schema_url: str = "", dropped: int = 0) -> int:
    """The documented resource_id of a resource (attributes as canonical JSON text)."""
    text = f"{attributes}\x00{schema_url}\x00{dropped}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


# -- spans -----------------------------------------------------------------------------


def test_span_row_has_every_column() -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add(schema_url="https://res/1")
    rs.resource.attributes.extend(attrs({"service.name": "checkout", "host.name": "h1"}))
    rs.resource.dropped_attributes_count = 6
    ss = rs.scope_spans.add(schema_url="https://scope/1")
    ss.scope.CopyFrom(
        InstrumentationScope(
            name="lib",
            version="1.0",
            attributes=attrs({"lib.flag": True}),
            dropped_attributes_count=4,
        )
    )
    ss.spans.append(
        Span(
            trace_id=TRACE,
            span_id=SPAN,
            parent_span_id=PARENT,
            trace_state="vendor=1",
            flags=0x301,
            name="GET /cart",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=T0,
            end_time_unix_nano=T0 + 2500,
            attributes=attrs({"http.status_code": 200, "url": "/cart?x=ü", "ok": True}),
            dropped_attributes_count=1,
            events=[
                Span.Event(
                    time_unix_nano=T0 + 10,
                    name="retry",
                    attributes=attrs({"attempt": 2}),
                    dropped_attributes_count=2,
                )
            ],
            dropped_events_count=3,
            links=[
                Span.Link(
                    trace_id=OTHER_TRACE,
                    span_id=OTHER_SPAN,
                    trace_state="t=1",
                    attributes=attrs({"why": "batch"}),
                    dropped_attributes_count=4,
                    flags=1,
                ),
                Span.Link(trace_id=OTHER_TRACE),
            ],
            dropped_links_count=5,
            status=Status(code=Status.STATUS_CODE_ERROR, message="boom"),
        )
    )
    decoded = decoder().traces(request.SerializeToString(), NOW)
    assert (decoded.rejected, decoded.error_message, decoded.unresolved_sessions) == (0, "", set())
    assert spans_of(decoded) == [
        {
            "project_id": "default",
            "time": T0,
            "start_time_unix_nano": T0,
            "end_time_unix_nano": T0 + 2500,
            "duration_ns": 2500,
            "trace_id": TRACE,
            "span_id": SPAN,
            "parent_span_id": PARENT,
            "trace_state": "vendor=1",
            "flags": 0x301,
            "service_name": "checkout",
            "session_id": None,
            "user_id": None,
            "name": "GET /cart",
            "kind": 2,
            "status_code": 2,
            "status_message": "boom",
            "attributes": '{"http.status_code":200,"url":"/cart?x=ü","ok":true}',
            "events": '[{"time_unix_nano":1699999999000000010,"name":"retry",'
            '"attributes":{"attempt":2},"dropped_attributes_count":2}]',
            "links": f'[{{"trace_id":"{OTHER_TRACE.hex()}","span_id":"{OTHER_SPAN.hex()}",'
            '"trace_state":"t=1","attributes":{"why":"batch"},"dropped_attributes_count":4,'
            f'"flags":1}},{{"trace_id":"{OTHER_TRACE.hex()}","span_id":null,"trace_state":"",'
            '"attributes":{},"dropped_attributes_count":0,"flags":0}]',
            "dropped_attributes_count": 1,
            "dropped_events_count": 3,
            "dropped_links_count": 5,
            "resource_id": RESOURCE_ID,
            "scope_name": "lib",
            "scope_version": "1.0",
            "scope_attributes": '{"lib.flag":true}',
            "scope_schema_url": "https://scope/1",
            "scope_dropped_attributes_count": 4,
        }
    ]
    assert resources_of(decoded) == [
        {
            "project_id": "default",
            "resource_id": RESOURCE_ID,
            "attributes": '{"host.name":"h1","service.name":"checkout"}',
            "schema_url": "https://res/1",
            "dropped_attributes_count": 6,
            "first_seen": T0,
        }
    ]
    assert decoded.batch.sessions == {}


RESOURCE_ID = resource_id('{"host.name":"h1","service.name":"checkout"}', "https://res/1", 6)


def test_minimal_span_has_nulls_where_nothing_was_sent() -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span(parent_span_id=bytes(8)))
    (got,) = spans_of(decoder().traces(request.SerializeToString(), NOW))
    assert {k: v for k, v in got.items() if v in (None, 0, "{}")} == {
        "parent_span_id": None,  # an all-zero parent is a root span
        "trace_state": None,
        "flags": 0,
        "service_name": None,
        "session_id": None,
        "user_id": None,
        "kind": 0,
        "status_code": 0,
        "status_message": None,
        "attributes": "{}",
        "events": None,
        "links": None,
        "dropped_attributes_count": 0,
        "dropped_events_count": 0,
        "dropped_links_count": 0,
        "scope_name": None,
        "scope_version": None,
        "scope_attributes": None,
        "scope_schema_url": None,
        "scope_dropped_attributes_count": 0,
    }


def test_resource_and_scope_are_shared_by_their_rows() -> None:
    decoded = decoder().traces(traces([span(), span()], scope={"a": 1}), NOW)
    first, second = decoded.batch.spans
    index = SPAN_COLUMNS.index("resource_id")
    assert first[index] == second[index] == resource_id('{"service.name":"svc"}')
    assert list(decoded.batch.resources) == [("default", first[index])]
    index = SPAN_COLUMNS.index("scope_attributes")
    assert first[index] is second[index] == '{"a":1}'


def test_every_request_resource_and_scope_is_decoded() -> None:
    request = ExportTraceServiceRequest()
    for r in range(2):
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(attrs({"service.name": f"svc{r}"}))
        for s in range(2):
            ss = rs.scope_spans.add()
            ss.scope.name = f"scope{s}"
            ss.spans.extend([span(name=f"{r}.{s}.{k}") for k in range(2)])
    got = spans_of(decoder().traces(request.SerializeToString(), NOW))
    assert [(g["service_name"], g["scope_name"], g["name"]) for g in got] == [
        (f"svc{r}", f"scope{s}", f"{r}.{s}.{k}")
        for r in range(2)
        for s in range(2)
        for k in range(2)
    ]


def test_spans_from_the_python_sdk() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=SdkResource.create({"service.name": "sdk-svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("lib", "1.2")
    with tracer.start_as_current_span("parent", attributes={"n": 1, "list": [1, 2]}) as parent:
        parent.add_event("ev", {"ok": True})
        with tracer.start_as_current_span("child", attributes={"session.id": "s"}):
            pass
    finished = exporter.get_finished_spans()
    payload = encode_spans(finished).SerializeToString()
    got = {s["name"]: s for s in spans_of(decoder().traces(payload, time.time_ns()))}
    child, root = got["child"], got["parent"]
    assert (root["service_name"], root["scope_name"], root["scope_version"]) == (
        "sdk-svc",
        "lib",
        "1.2",
    )
    assert json.loads(root["attributes"]) == {"n": 1, "list": [1, 2]}
    assert json.loads(root["events"])[0]["attributes"] == {"ok": True}
    assert root["parent_span_id"] is None
    assert child["parent_span_id"] == root["span_id"]
    assert child["trace_id"] == root["trace_id"]
    assert child["session_id"] == "s"
    assert root["trace_id"] == finished[0].context.trace_id.to_bytes(16, "big")


def test_decoding_is_deterministic() -> None:
    payload = traces(
        [span(attributes=attrs({"a": [1, 2.5, "x", {"k": None}], "b": b"\x00\x01"}))] * 3
    )
    d = decoder()
    assert d.traces(payload, NOW).batch == d.traces(payload, NOW).batch
    assert decoder().traces(payload, NOW).batch == d.traces(payload, NOW).batch


# -- attribute values --------------------------------------------------------------------


def test_attribute_value_mapping() -> None:
    values = {
        "s": 'text "quoted" ü \u2028',
        "b": False,
        "i": -(2**63),
        "big": 2**63 - 1,
        "d": 0.1,
        "nan": math.nan,
        "inf": math.inf,
        "-inf": -math.inf,
        "bytes": b"\xff\x00",
        "array": [1, "two", [3.0], {"four": 4}],
        "kvlist": {"z": 1, "a": {"nested": True}},
        "empty": None,
    }
    (got,) = spans_of(decoder().traces(traces([span(attributes=attrs(values))]), NOW))
    text = got["attributes"]
    assert json.loads(text) == values | {
        "nan": "NaN",
        "inf": "Infinity",
        "-inf": "-Infinity",
        "bytes": base64.b64encode(b"\xff\x00").decode(),
    }
    assert '"d":0.1,' in text and " " not in text.replace("text ", "").replace(" ü ", "")
    assert '"kvlist":{"a":{"nested":true},"z":1}' in text  # nested objects: sorted keys


def test_long_attribute_values_are_correct_every_time() -> None:
    long = "x" * 5000
    d = decoder()
    payload = traces([span(attributes=attrs({"long": long, "n": 300, "s": "é" * 200}))])
    for _ in range(2):  # the second time from the cache, where cached
        (got,) = spans_of(d.traces(payload, NOW))
        assert json.loads(got["attributes"]) == {"long": long, "n": 300, "s": "é" * 200}


# -- the envelope ------------------------------------------------------------------------


def envelope(decoded: Decoded) -> list[tuple[str, str | None, str | None]]:
    return [(s["project_id"], s["session_id"], s["user_id"]) for s in spans_of(decoded)]


def test_envelope_precedence_record_scope_resource_default() -> None:
    payload = traces(
        [
            span(attributes=attrs({"project.id": "rec", "user.id": "u-rec"})),
            span(),
            span(attributes=attrs({"enduser.id": "end"})),
            span(attributes=attrs({"enduser.id": "end", "user.id": "first"})),
        ],
        resource={"service.name": "svc", "project.id": "res", "user.id": "u-res"},
        scope={"user.id": "u-scope"},
    )
    assert envelope(decoder().traces(payload, NOW)) == [
        ("rec", None, "u-rec"),
        ("res", None, "u-scope"),
        ("res", None, "end"),  # enduser.id on the record beats user.id on the scope
        ("res", None, "first"),  # user.id is preferred to enduser.id at one level
    ]
    assert envelope(decoder().traces(traces([span()]), NOW)) == [("default", None, None)]


def test_envelope_values_are_strings_and_ints() -> None:
    payload = traces(
        [
            span(attributes=attrs({"session.id": 12345, "user.id": 7, "project.id": "p"})),
            span(attributes=attrs({"project.id": True, "user.id": "", "session.id": 1.5})),
        ]
    )
    assert envelope(decoder().traces(payload, NOW)) == [
        ("p", "12345", "7"),
        ("default", None, None),
    ]


def test_service_name_comes_from_the_resource_only() -> None:
    payload = traces([span(attributes=attrs({"service.name": "not me"}))], resource={})
    (got,) = spans_of(decoder().traces(payload, NOW))
    assert got["service_name"] is None
    assert json.loads(got["attributes"]) == {"service.name": "not me"}


def test_configured_keys() -> None:
    keys = EnvelopeKeys(service=("app",), session=("sid",), user=("uid",), project=("tenant",))
    d = Decoder(keys, DecodeLimits(), "dflt", SessionCache())
    payload = traces(
        [span(attributes=attrs({"sid": "s", "uid": "u", "session.id": "no"}))],
        resource={"app": "a", "tenant": "t"},
    )
    (got,) = spans_of(d.traces(payload, NOW))
    assert (got["service_name"], got["project_id"], got["session_id"], got["user_id"]) == (
        "a",
        "t",
        "s",
        "u",
    )


def test_session_only_records_are_unresolved_then_completed() -> None:
    cache = SessionCache()
    d = decoder(cache)
    payload = traces([span(attributes=attrs({"session.id": "s1"}))])
    first = d.traces(payload, NOW)
    assert envelope(first) == [("default", "s1", None)]
    assert first.unresolved_sessions == {"s1"}
    cache.learn({"s1": ("p1", "u1")}, first.unresolved_sessions)
    again = d.traces(payload, NOW)
    assert envelope(again) == [("p1", "s1", "u1")]
    assert again.unresolved_sessions == set()
    assert again.batch.sessions == {("p1", "s1"): SessionSighting("u1", "svc", T0, T0)}


def test_unknown_session_is_asked_once_then_remembered_as_unknown() -> None:
    cache = SessionCache()
    d = decoder(cache)
    payload = traces([span(attributes=attrs({"session.id": "s1"}))] * 2)
    first = d.traces(payload, NOW)
    assert first.unresolved_sessions == {"s1"}
    cache.learn({}, first.unresolved_sessions)
    again = d.traces(payload, NOW)
    assert (envelope(again), again.unresolved_sessions) == ([("default", "s1", None)] * 2, set())


def test_explicit_record_completes_later_records_of_the_request() -> None:
    payload = traces(
        [
            span(attributes=attrs({"session.id": "s", "project.id": "p", "user.id": "u"})),
            span(attributes=attrs({"session.id": "s"}), start_time_unix_nano=T0 + 5),
        ]
    )
    decoded = decoder().traces(payload, NOW)
    assert envelope(decoded) == [("p", "s", "u"), ("p", "s", "u")]
    assert decoded.unresolved_sessions == set()
    assert decoded.batch.sessions == {("p", "s"): SessionSighting("u", "svc", T0, T0 + 5)}


def test_rejected_records_neither_sight_nor_teach_sessions() -> None:
    cache = SessionCache()
    named = {"session.id": "s", "project.id": "p", "user.id": "u"}
    payload = traces([span(attributes=attrs(named), events=[Span.Event(name="\x00")])])
    decoded = decoder(cache).traces(payload, NOW)
    assert (decoded.rejected, decoded.batch.sessions, cache.get("s")) == (1, {}, None)


def test_session_from_the_resource_applies_to_every_record() -> None:
    cache = SessionCache()
    cache.learn({"s": ("p", "u")}, ["s"])
    payload = traces(
        [span(), span(attributes=attrs({"user.id": "me"}))], resource={"session.id": "s"}
    )
    assert envelope(decoder(cache).traces(payload, NOW)) == [("p", "s", "u"), ("p", "s", "me")]


# -- logs ------------------------------------------------------------------------------


def test_log_row_has_every_column() -> None:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add(schema_url="https://res")
    rl.resource.attributes.extend(attrs({"service.name": "svc", "session.id": "s"}))
    sl = rl.scope_logs.add(schema_url="https://scope")
    sl.scope.CopyFrom(InstrumentationScope(name="logger", version="3", dropped_attributes_count=9))
    sl.log_records.append(
        LogRecord(
            time_unix_nano=T0,
            observed_time_unix_nano=T0 + 7,
            severity_number=SeverityNumber.SEVERITY_NUMBER_ERROR,
            severity_text="ERROR",
            body=any_value({"msg": "failed", "code": 3}),
            attributes=attrs({"user.id": "u", "project.id": "p", "n": 1}),
            dropped_attributes_count=2,
            flags=1,
            trace_id=TRACE,
            span_id=SPAN,
            event_name="payment.failed",
        )
    )
    decoded = decoder().logs(request.SerializeToString(), NOW)
    assert (decoded.rejected, decoded.error_message) == (0, "")
    assert logs_of(decoded) == [
        {
            "project_id": "p",
            "time": T0,
            "time_unix_nano": T0,
            "observed_time_unix_nano": T0 + 7,
            "trace_id": TRACE,
            "span_id": SPAN,
            "flags": 1,
            "service_name": "svc",
            "session_id": "s",
            "user_id": "u",
            "severity_number": 17,
            "severity_text": "ERROR",
            "body": '{"code":3,"msg":"failed"}',
            "attributes": '{"user.id":"u","project.id":"p","n":1}',
            "event_name": "payment.failed",
            "dropped_attributes_count": 2,
            "resource_id": resource_id('{"service.name":"svc","session.id":"s"}', "https://res"),
            "scope_name": "logger",
            "scope_version": "3",
            "scope_attributes": None,
            "scope_schema_url": "https://scope",
            "scope_dropped_attributes_count": 9,
        }
    ]
    assert decoded.batch.sessions == {("p", "s"): SessionSighting("u", "svc", T0, T0)}
    assert resources_of(decoded) == [
        {
            "project_id": "p",
            "resource_id": resource_id('{"service.name":"svc","session.id":"s"}', "https://res"),
            "attributes": '{"service.name":"svc","session.id":"s"}',
            "schema_url": "https://res",
            "dropped_attributes_count": 0,
            "first_seen": T0,
        }
    ]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("hello", '"hello"'),
        (42, "42"),
        (2.5, "2.5"),
        (True, "true"),
        ([1, "a"], '[1,"a"]'),
        (b"\x01", '"AQ=="'),
        (None, None),
    ],
)
def test_log_body_of_any_type(body: object, text: str | None) -> None:
    (got,) = logs_of(decoder().logs(logs([log(body=any_value(body))]), NOW))
    assert got["body"] == text


def test_log_time_falls_back_to_observed_then_now_and_ids_may_be_empty() -> None:
    records = [
        log(time_unix_nano=0, observed_time_unix_nano=T0 + 1, trace_id=bytes(16)),
        log(time_unix_nano=0, observed_time_unix_nano=0),
    ]
    got = logs_of(decoder().logs(logs(records), NOW))
    assert [(g["time"], g["time_unix_nano"], g["observed_time_unix_nano"]) for g in got] == [
        (T0 + 1, 0, T0 + 1),
        (NOW, 0, 0),
    ]
    assert [(g["trace_id"], g["span_id"]) for g in got] == [(None, None), (None, None)]


# -- resources -------------------------------------------------------------------------


def test_resource_id_is_stable_and_depends_on_the_resource_only() -> None:
    def ids(payload: bytes, signal: str = "traces") -> set[int]:
        return {key[1] for key in getattr(decoder(), signal)(payload, NOW).batch.resources}

    def request(schema_url: str = "", dropped: int = 0, **resource: object) -> bytes:
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add(schema_url=schema_url)
        rs.resource.attributes.extend(attrs(resource or {"service.name": "svc", "host.name": "h"}))
        rs.resource.dropped_attributes_count = dropped
        rs.scope_spans.add().spans.append(span())
        return request.SerializeToString()

    (base,) = ids(request())
    # The same in every process and version: stored resources would be orphaned otherwise.
    assert base == 3170376910554596898
    assert base == resource_id('{"host.name":"h","service.name":"svc"}')
    # Neither attribute order, nor the records, their scope, project or signal.
    assert ids(request(**{"host.name": "h", "service.name": "svc"})) == {base}
    assert ids(
        traces(
            [span(name="x", attributes=attrs({"project.id": "p"}))],
            resource={"service.name": "svc", "host.name": "h"},
            scope={"s": 1},
        )
    ) == {base}
    assert ids(logs([log()], resource={"host.name": "h", "service.name": "svc"}), "logs") == {base}
    different = [
        request(**{"host.name": "h2", "service.name": "svc"}),
        request(**{"host.name": "h", "service.name": "svc", "k": 1}),
        request(schema_url="https://opentelemetry.io/schemas/1.26.0"),
        request(dropped=1),
    ]
    assert len({base, *(i for payload in different for i in ids(payload))}) == 5
    assert ids(different[2]) == {
        resource_id(
            '{"host.name":"h","service.name":"svc"}', "https://opentelemetry.io/schemas/1.26.0"
        )
    }


def test_a_resource_is_one_row_per_project_that_stored_records_of_it() -> None:
    request = ExportTraceServiceRequest()
    for r in range(2):  # the same resource twice in one request, as a collector may send it
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(attrs({"service.name": "svc"}))
        rs.scope_spans.add().spans.extend(
            span(start_time_unix_nano=T0 + 10 * r + k, attributes=attrs(extra))
            for k, extra in enumerate([{}, {"project.id": "a"}, {}, {"project.id": "a"}])
        )
    decoded = decoder().traces(request.SerializeToString(), NOW)
    rid = resource_id('{"service.name":"svc"}')
    assert {(s["project_id"], s["resource_id"]) for s in spans_of(decoded)} == {
        ("default", rid),
        ("a", rid),
    }
    assert [
        (r["project_id"], r["resource_id"], r["first_seen"]) for r in resources_of(decoded)
    ] == [
        ("default", rid, T0),  # the time of the first record that referred to it
        ("a", rid, T0 + 1),
    ]


def test_a_resource_whose_records_are_all_rejected_adds_no_row() -> None:
    request = ExportLogsServiceRequest()
    bad_only = request.resource_logs.add()
    bad_only.resource.attributes.extend(attrs({"service.name": "bad-only"}))
    bad_only.scope_logs.add().log_records.extend([log(severity_number=99)] * 2)
    mixed = request.resource_logs.add()
    mixed.resource.attributes.extend(attrs({"service.name": "mixed"}))
    mixed.scope_logs.add().log_records.extend(
        [log(), log(severity_number=99, attributes=attrs({"project.id": "only-rejected"}))]
    )
    decoded = decoder().logs(request.SerializeToString(), NOW)
    assert decoded.rejected == 3
    assert list(decoded.batch.resources) == [("default", resource_id('{"service.name":"mixed"}'))]


def test_resource_dropped_attributes_count_is_saturated_to_integer() -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.dropped_attributes_count = 2**32 - 1
    rs.scope_spans.add().spans.append(span())
    (got,) = resources_of(decoder().traces(request.SerializeToString(), NOW))
    assert got["dropped_attributes_count"] == 2**31 - 1
    assert got["resource_id"] == resource_id("{}", dropped=2**31 - 1)


def test_metrics_keep_their_resource_in_the_series() -> None:
    decoded = decoder().metrics(metrics([gauge(number())]), NOW)
    assert decoded.batch.resources == {}
    assert series_of(decoded)[0]["resource"] == '{"service.name":"svc"}'


# -- metrics ---------------------------------------------------------------------------

NONE_VALUES = {
    "value": None,
    "value_int": None,
    "count": None,
    "sum": None,
    "min": None,
    "max": None,
    "bucket_counts": None,
    "explicit_bounds": None,
    "scale": None,
    "zero_count": None,
    "zero_threshold": None,
    "positive_offset": None,
    "positive_bucket_counts": None,
    "negative_offset": None,
    "negative_bucket_counts": None,
    "quantiles": None,
}


def point_row(series_id: int, **values: Any) -> dict[str, Any]:
    return (
        {
            "project_id": "default",
            "time": T0,
            "time_unix_nano": T0,
            "start_time_unix_nano": T0 - 60,
            "series_id": series_id,
            "service_name": "svc",
            "trace_id": None,
            "span_id": None,
            "session_id": None,
            "user_id": None,
            "flags": 0,
        }
        | NONE_VALUES
        | {"exemplars": None}
        | values
    )


def series_row(series_id: int, **values: Any) -> dict[str, Any]:
    return {
        "project_id": "default",
        "series_id": series_id,
        "unit": None,
        "description": None,
        "aggregation_temporality": None,
        "is_monotonic": None,
        "service_name": "svc",
        "attributes": "{}",
        "resource": '{"service.name":"svc"}',
        "scope_name": "meter",
        "scope_version": "2",
        "metadata": None,
        "first_seen": T0,
        "resource_schema_url": None,
        "resource_dropped_attributes_count": 0,
        "scope_attributes": None,
        "scope_schema_url": None,
        "scope_dropped_attributes_count": 0,
    } | values


def test_gauge_points_and_series() -> None:
    metric = Metric(name="temp", unit="Cel", description="Temperature")
    metric.metadata.extend(attrs({"m": 1}))
    metric.gauge.data_points.extend(
        [
            NumberDataPoint(
                attributes=attrs({"room": "a", "floor": 1}),
                start_time_unix_nano=T0 - 60,
                time_unix_nano=T0,
                as_double=21.5,
                flags=2,  # not FLAG_NO_RECORDED_VALUE: stored as sent
                exemplars=[
                    Exemplar(time_unix_nano=T0 - 5, as_double=math.nan),
                    Exemplar(
                        filtered_attributes=attrs({"x": "y"}),
                        time_unix_nano=T0 - 3,
                        as_int=7,
                        trace_id=TRACE,
                        span_id=SPAN,
                    ),
                ],
            ),
            NumberDataPoint(
                attributes=attrs({"floor": 1, "room": "a"}),  # the same series
                start_time_unix_nano=T0 - 60,
                time_unix_nano=T0 - 10,
                as_int=-3,
            ),
        ]
    )
    decoded = decoder().metrics(metrics([metric]), NOW)
    assert (decoded.rejected, decoded.error_message) == (0, "")
    first, second = points_of(decoded)
    series_id = first["series_id"]
    assert second["series_id"] == series_id
    assert first == point_row(
        series_id,
        flags=2,
        value=21.5,
        trace_id=TRACE,
        span_id=SPAN,
        exemplars='[{"time_unix_nano":1699999998999999995,"value":"NaN","trace_id":null,'
        '"span_id":null,"filtered_attributes":{}},{"time_unix_nano":1699999998999999997,'
        f'"value":7,"trace_id":"{TRACE.hex()}","span_id":"{SPAN.hex()}",'
        '"filtered_attributes":{"x":"y"}}]',
    )
    assert second == point_row(
        series_id, time=T0 - 10, time_unix_nano=T0 - 10, value=-3.0, value_int=-3
    )
    assert series_of(decoded) == [
        series_row(
            series_id,
            metric_name="temp",
            metric_type=MetricType.GAUGE,
            unit="Cel",
            description="Temperature",
            attributes='{"floor":1,"room":"a"}',
            metadata='{"m":1}',
            first_seen=T0 - 10,  # the earliest point of the request
        )
    ]


def test_sum_points_and_series() -> None:
    metric = Metric(name="requests")
    metric.sum.aggregation_temporality = CUMULATIVE
    metric.sum.is_monotonic = True
    metric.sum.data_points.append(number(5, start_time_unix_nano=T0 - 60))
    decoded = decoder().metrics(metrics([metric]), NOW)
    (got,) = points_of(decoded)
    assert got == point_row(got["series_id"], value=5.0, value_int=5)
    assert series_of(decoded) == [
        series_row(
            got["series_id"],
            metric_name="requests",
            metric_type=MetricType.SUM,
            aggregation_temporality=2,
            is_monotonic=True,
        )
    ]


def test_histogram_points() -> None:
    metric = Metric(name="latency", unit="s")
    metric.histogram.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    metric.histogram.data_points.extend(
        [
            HistogramDataPoint(
                start_time_unix_nano=T0 - 60,
                time_unix_nano=T0,
                count=6,
                sum=1.5,
                min=0.01,
                max=0.9,
                bucket_counts=[1, 2, 3],
                explicit_bounds=[0.1, 0.5],
            ),
            HistogramDataPoint(start_time_unix_nano=T0 - 60, time_unix_nano=T0, count=0),
        ]
    )
    decoded = decoder().metrics(metrics([metric]), NOW)
    full, empty = points_of(decoded)
    assert full == point_row(
        full["series_id"],
        count=6,
        sum=1.5,
        min=0.01,
        max=0.9,
        bucket_counts=[1, 2, 3],
        explicit_bounds=[0.1, 0.5],
    )
    assert empty == point_row(full["series_id"], count=0, bucket_counts=[], explicit_bounds=[])
    (series,) = series_of(decoded)
    assert (series["metric_type"], series["unit"], series["aggregation_temporality"]) == (
        MetricType.HISTOGRAM,
        "s",
        1,
    )


def test_exponential_histogram_points() -> None:
    metric = Metric(name="sizes")
    metric.exponential_histogram.aggregation_temporality = CUMULATIVE
    metric.exponential_histogram.data_points.append(
        ExponentialHistogramDataPoint(
            start_time_unix_nano=T0 - 60,
            time_unix_nano=T0,
            count=10,
            sum=99.5,
            scale=3,
            zero_count=1,
            zero_threshold=0.001,
            positive=ExponentialHistogramDataPoint.Buckets(offset=-2, bucket_counts=[1, 2]),
            negative=ExponentialHistogramDataPoint.Buckets(offset=4, bucket_counts=[3]),
            max=50.0,
        )
    )
    decoded = decoder().metrics(metrics([metric]), NOW)
    (got,) = points_of(decoded)
    assert got == point_row(
        got["series_id"],
        count=10,
        sum=99.5,
        max=50.0,
        scale=3,
        zero_count=1,
        zero_threshold=0.001,
        positive_offset=-2,
        positive_bucket_counts=[1, 2],
        negative_offset=4,
        negative_bucket_counts=[3],
    )
    assert series_of(decoded)[0]["metric_type"] == MetricType.EXPONENTIAL_HISTOGRAM


def test_summary_points() -> None:
    metric = Metric(name="rpc")
    metric.summary.data_points.append(
        SummaryDataPoint(
            start_time_unix_nano=T0 - 60,
            time_unix_nano=T0,
            count=4,
            sum=10.0,
            quantile_values=[
                SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=2.0),
                SummaryDataPoint.ValueAtQuantile(quantile=1.0, value=math.inf),
            ],
        )
    )
    decoded = decoder().metrics(metrics([metric]), NOW)
    (got,) = points_of(decoded)
    assert got == point_row(
        got["series_id"], count=4, sum=10.0, quantiles='[[0.5,2.0],[1.0,"Infinity"]]'
    )
    (series,) = series_of(decoded)
    assert (series["metric_type"], series["aggregation_temporality"]) == (MetricType.SUMMARY, None)


def test_series_id_is_stable_and_depends_on_identity_only() -> None:
    def series_id(metric: Metric, resource: Mapping[str, object] | None = None) -> int:
        (got,) = points_of(decoder().metrics(metrics([metric], resource), NOW))
        return int(got["series_id"])

    base = series_id(gauge(number(attributes=attrs({"a": 1, "b": "x"}))))
    # The same in every process and version: stored series would be orphaned otherwise.
    assert base == 3252424440997953022
    identity = json.dumps(
        ["g", MetricType.GAUGE, "", None, None, '{"service.name":"svc"}', "meter", "2"],
        separators=(",", ":"),
    )
    text = f'default\x00{{"a":1,"b":"x"}}\x00{identity}'
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    assert base == int.from_bytes(digest, "big") & (2**63 - 1)
    assert 0 <= base < 2**63
    assert series_id(gauge(number(2.0, attributes=attrs({"b": "x", "a": 1})))) == base
    metric = gauge(number(attributes=attrs({"a": 1, "b": "x"})))
    metric.description = "descriptions do not identify a series"
    assert series_id(metric) == base
    different = [
        gauge(number(attributes=attrs({"a": 2, "b": "x"}))),
        gauge(number(attributes=attrs({"a": 1, "b": "x"})), name="h"),
        gauge(number(attributes=attrs({"a": 1, "b": "x", "project.id": "p"}))),
    ]
    assert len({base, *(series_id(m) for m in different)}) == 4
    assert series_id(gauge(number(attributes=attrs({"a": 1, "b": "x"}))), {"r": 1}) != base


def test_metric_without_data_is_not_an_error_and_without_kind_is_a_warning() -> None:
    decoded = decoder().metrics(metrics([gauge(), Metric(name="kindless")]), NOW)
    assert (decoded.batch.row_count, decoded.rejected) == (0, 0)
    assert decoded.error_message == (
        "warning: metric has no data of a known kind (resource 0, scope 0, metric 1 ('kindless'))"
    )


def test_point_envelope_and_session() -> None:
    point = number(attributes=attrs({"session.id": "s", "project.id": "p"}))
    decoded = decoder().metrics(
        metrics([gauge(point)], {"service.name": "svc", "user.id": "u"}), NOW
    )
    (got,) = points_of(decoded)
    assert (got["project_id"], got["session_id"], got["user_id"]) == ("p", "s", "u")
    assert decoded.batch.sessions == {("p", "s"): SessionSighting("u", "svc", T0, T0)}
    (series,) = series_of(decoded)
    assert series["project_id"] == "p"


# -- rejections ------------------------------------------------------------------------


def assert_rejected(decoded: Decoded, count: int, *fragments: str) -> None:
    assert decoded.rejected == count, decoded.error_message
    for fragment in fragments:
        assert fragment in decoded.error_message
    assert len(decoded.error_message) <= 1024


BAD_SPANS: dict[str, tuple[dict[str, Any], str]] = {
    "short trace_id": (
        {"trace_id": b"abc"},
        "invalid trace_id: 1): trace_id must be 16 bytes, got 3",
    ),
    "zero trace_id": ({"trace_id": bytes(16)}, "trace_id is all zero"),
    "short span_id": ({"span_id": b"1234"}, "span_id must be 8 bytes, got 4"),
    "zero span_id": ({"span_id": bytes(8)}, "span_id is all zero"),
    "bad parent": ({"parent_span_id": b"123"}, "parent_span_id must be empty or 8 bytes, got 3"),
    "end before start": (
        {"end_time_unix_nano": T0 - 1},
        f"end_time_unix_nano {T0 - 1} is before start_time_unix_nano {T0}",
    ),
    "no start": ({"start_time_unix_nano": 0}, "start_time_unix_nano is 0"),
    "too old": (
        {"start_time_unix_nano": NOW - 2 * 86400 * 10**9},
        "is 2.0 d before the server clock (accepted: 1.0 d)",
    ),
    "future": (
        {"start_time_unix_nano": NOW + 7200 * 10**9, "end_time_unix_nano": NOW + 7201 * 10**9},
        "is 2.0 h after the server clock (accepted: 1.0 h)",
    ),
    "end beyond bigint": (
        {"end_time_unix_nano": 2**64 - 1},
        "end_time_unix_nano 18446744073709551615 is",
    ),
    "kind": ({"kind": 6}, "kind 6 is not in 0..5"),
    "status": ({"status": Status.FromString(b"\x18\x03")}, "status code 3 is not in 0..2"),
    "NUL name": ({"name": "a\x00b"}, "NUL character: 1"),
    "NUL attribute": ({"attributes": attrs({"k": ["a\x00"]})}, "attribute 'k' contains a NUL"),
    "NUL attribute key": ({"attributes": attrs({"k\x00": 1})}, "contains a NUL character"),
    "NUL event": ({"events": [Span.Event(name="\x00")]}, "event name contains a NUL"),
    "bad link": (
        {"links": [Span.Link(trace_id=TRACE, span_id=b"1")]},
        "link span_id must be empty or 8 bytes, got 1",
    ),
}


@pytest.mark.parametrize("case", BAD_SPANS)
def test_bad_span_is_rejected_alone(case: str) -> None:
    fields, message = BAD_SPANS[case]
    payload = traces([span(name="good0"), span(**fields), span(name="good2")])
    decoded = decoder(max_attribute_value_bytes=1000).traces(payload, NOW)
    assert [s["name"] for s in spans_of(decoded)] == ["good0", "good2"]
    assert_rejected(decoded, 1, "1 span rejected (", message, "(resource 0, scope 0, span 1)")


def test_dropped_counts_beyond_integer_are_saturated() -> None:
    top = 2**32 - 1
    spans = [span(dropped_attributes_count=top, dropped_events_count=5, dropped_links_count=top)]
    (got,) = spans_of(decoder().traces(traces(spans), NOW))
    dropped = ("dropped_attributes_count", "dropped_events_count", "dropped_links_count")
    assert [got[name] for name in dropped] == [2**31 - 1, 5, 2**31 - 1]
    (got,) = logs_of(decoder().logs(logs([log(dropped_attributes_count=top)]), NOW))
    assert got["dropped_attributes_count"] == 2**31 - 1


def test_the_limit_is_in_utf8_bytes_and_cuts_on_a_character() -> None:
    payload = traces([span(attributes=attrs({"k": "é" * 600}))])  # 1200 bytes
    for limit, kept in [(1000, 500), (999, 499), (1200, 600)]:
        decoded = decoder(max_attribute_value_bytes=limit).traces(payload, NOW)
        (got,) = spans_of(decoded)
        assert (decoded.rejected, json.loads(got["attributes"])) == (0, {"k": "é" * kept})


def test_message_counts_per_reason_and_caps_examples_and_length() -> None:
    bad = [span(trace_id=b"x")] * 8 + [span(kind=9)] * 2 + [span(name="x" * 2000 + "\x00")]
    decoded = decoder().traces(traces([span(), *bad]), NOW)
    assert len(decoded.batch.spans) == 1
    assert decoded.error_message.startswith(
        "11 spans rejected (invalid trace_id: 8, invalid kind: 2, NUL character: 1): "
        "trace_id must be 16 bytes, got 1 (resource 0, scope 0, span 1); "
    )
    assert decoded.error_message.count("trace_id must be") == 5
    assert len(decoded.error_message) <= 1024


def test_bad_resource_rejects_its_records_only() -> None:
    request = ExportTraceServiceRequest()
    bad = request.resource_spans.add()
    bad.resource.attributes.extend(attrs({"service.name": "x\x00"}))
    bad.scope_spans.add().spans.extend([span(), span()])
    good = request.resource_spans.add()
    good.scope_spans.add().spans.append(span())
    scope_bad = good.scope_spans.add()
    scope_bad.scope.name = "\x00"
    scope_bad.spans.append(span())
    decoded = decoder().traces(request.SerializeToString(), NOW)
    assert len(decoded.batch.spans) == 1
    assert_rejected(
        decoded,
        3,
        "attribute 'service.name' contains a NUL character (resource 0)",
        "scope name, version or schema_url contains a NUL character (resource 1, scope 1)",
    )


BAD_LOGS: dict[str, tuple[dict[str, Any], str]] = {
    "severity": ({"severity_number": 25}, "severity_number 25 is not in 0..24"),
    "trace_id": ({"trace_id": b"abc"}, "trace_id must be empty or 16 bytes, got 3"),
    "span_id": ({"span_id": b"abc"}, "span_id must be empty or 8 bytes, got 3"),
    "old": ({"time_unix_nano": 5}, "time_unix_nano 5 is"),
    "old observed": (
        {"time_unix_nano": 0, "observed_time_unix_nano": NOW + 10**13},
        "observed_time_unix_nano",
    ),
    "observed beyond bigint": (
        {"observed_time_unix_nano": 2**64 - 1},
        "observed_time_unix_nano 18446744073709551615 is",
    ),
    "NUL body": ({"body": any_value({"a": "\x00"})}, "body contains a NUL character"),
    "NUL text": ({"severity_text": "\x00"}, "severity_text or event_name contains a NUL"),
    "NUL attribute": ({"attributes": attrs({"a": "\x00"})}, "attribute 'a' contains a NUL"),
}


@pytest.mark.parametrize("case", BAD_LOGS)
def test_bad_log_record_is_rejected_alone(case: str) -> None:
    fields, message = BAD_LOGS[case]
    payload = logs([log(event_name="good0"), log(**fields), log(event_name="good2")])
    decoded = decoder(max_body_bytes=2000).logs(payload, NOW)
    assert [g["event_name"] for g in logs_of(decoded)] == ["good0", "good2"]
    assert_rejected(decoded, 1, "1 log record rejected (", message, "log record 1)")


def test_literal_backslash_u0000_is_not_a_nul() -> None:
    payload = logs([log(body=any_value("\\u0000"), attributes=attrs({"k": "\\u0000"}))])
    (got,) = logs_of(decoder().logs(payload, NOW))
    assert json.loads(got["body"]) == "\\u0000"


def test_bad_points_are_rejected_alone() -> None:
    histogram = Metric(name="h")
    histogram.histogram.aggregation_temporality = CUMULATIVE
    histogram.histogram.data_points.extend(
        [
            HistogramDataPoint(time_unix_nano=T0, bucket_counts=[1], explicit_bounds=[1.0]),
            HistogramDataPoint(time_unix_nano=T0, bucket_counts=[1, 1], explicit_bounds=[1.0]),
        ]
    )
    bad_temporality = Metric(name="s")
    bad_temporality.sum.aggregation_temporality = 3  # type: ignore[assignment]
    bad_temporality.sum.data_points.extend([number(), number()])
    items = [
        gauge(number(), number(time_unix_nano=0), number(exemplars=[Exemplar(trace_id=b"x")])),
        histogram,
        bad_temporality,
        gauge(number(), name="bad\x00name"),
    ]
    decoded = decoder().metrics(metrics(items), NOW)
    assert len(decoded.batch.points) == 2
    assert_rejected(
        decoded,
        6,
        "6 data points rejected (",
        "time_unix_nano is 0 (resource 0, scope 0, metric 0 ('g'), point 1)",
        "exemplar trace_id must be empty or 16 bytes, got 1",
        "1 bucket_counts for 1 explicit_bounds",
        "aggregation_temporality 3 is not in 0..2 (resource 0, scope 0, metric 2 ('s'))",
        "metric name, unit or description contains a NUL",
    )


def test_points_beyond_their_columns_are_rejected_alone() -> None:
    big = 2**64 - 1
    histogram = Metric(name="h")
    histogram.histogram.data_points.extend(
        [
            HistogramDataPoint(time_unix_nano=T0, count=big),
            HistogramDataPoint(time_unix_nano=T0, bucket_counts=[1, big], explicit_bounds=[1.0]),
        ]
    )
    exponential = Metric(name="e")
    exponential.exponential_histogram.data_points.extend(
        [
            ExponentialHistogramDataPoint(time_unix_nano=T0, zero_count=big),
            ExponentialHistogramDataPoint(
                time_unix_nano=T0,
                negative=ExponentialHistogramDataPoint.Buckets(bucket_counts=[big]),
            ),
        ]
    )
    summary = Metric(name="q")
    summary.summary.data_points.append(SummaryDataPoint(time_unix_nano=T0, count=big))
    items = [gauge(number(start_time_unix_nano=T0 + 1)), histogram, exponential, summary]
    decoded = decoder().metrics(metrics([*items, gauge(number())]), NOW)
    assert len(decoded.batch.points) == 1
    assert_rejected(
        decoded,
        6,
        "(start after time: 1, count out of range: 5)",
        f"start_time_unix_nano {T0 + 1} is after time_unix_nano {T0}",
        f"count {2**64 - 1} is beyond 2^63-1 (resource 0, scope 0, metric 1 ('h'), point 0)",
        "a bucket count 18446744073709551615 is beyond 2^63-1",
        "count or zero_count 18446744073709551615 is beyond 2^63-1",
    )


# -- limits: values cut, not refused ---------------------------------------------------


def counting_decoder(
    counts: list[str], redaction: Redaction = NO_REDACTION, **limits: int
) -> Decoder:
    """A decoder that appends every truncation it counts to ``counts``."""
    return Decoder(
        EnvelopeKeys(),
        DecodeLimits(**limits),
        "default",
        SessionCache(),
        redaction=redaction,
        on_truncated=counts.append,
    )


def test_values_over_the_limit_are_cut_and_counted() -> None:
    values = {
        "s": "x" * 2000,
        "b": b"\xff" * 1500,  # bytes are cut before base64
        "nested": {"n": ["z" * 1001, "short"]},
        "ok": "y" * 1000,
    }
    counts: list[str] = []
    d = counting_decoder(counts, max_attribute_value_bytes=1000)
    payload = traces([span(name="big", attributes=attrs(values))])
    decoded = d.traces(payload, NOW)
    assert (decoded.rejected, decoded.error_message) == (0, "")
    (got,) = spans_of(decoded)
    assert json.loads(got["attributes"]) == {
        "s": "x" * 1000,
        "b": base64.b64encode(b"\xff" * 1000).decode(),
        "nested": {"n": ["z" * 1000, "short"]},
        "ok": "y" * 1000,
    }
    assert sorted(counts) == ["value"] * 3


def test_attributes_beyond_the_count_limit_are_dropped_into_the_dropped_counts() -> None:
    five = attrs({f"k{i}": i for i in range(5)})
    kept = {"k0": 0, "k1": 1, "k2": 2}
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(five)
    rs.resource.dropped_attributes_count = 1
    ss = rs.scope_spans.add()
    ss.scope.attributes.extend(five)
    ss.spans.append(
        span(
            attributes=five,
            dropped_attributes_count=10,
            events=[Span.Event(name="e", attributes=five, dropped_attributes_count=1)],
            links=[Span.Link(trace_id=OTHER_TRACE, attributes=five)],
        )
    )
    counts: list[str] = []
    decoded = counting_decoder(counts, max_attributes=3).traces(request.SerializeToString(), NOW)
    (got,) = spans_of(decoded)
    assert (json.loads(got["attributes"]), got["dropped_attributes_count"]) == (kept, 12)
    (event,) = json.loads(got["events"])
    assert (event["attributes"], event["dropped_attributes_count"]) == (kept, 3)
    (link,) = json.loads(got["links"])
    assert (link["attributes"], link["dropped_attributes_count"]) == (kept, 2)
    assert (json.loads(got["scope_attributes"]), got["scope_dropped_attributes_count"]) == (
        kept,
        2,
    )
    (resource,) = resources_of(decoded)
    assert (json.loads(resource["attributes"]), resource["dropped_attributes_count"]) == (kept, 3)
    assert resource["resource_id"] == resource_id(json.dumps(kept, separators=(",", ":")), "", 3)
    assert counts == ["attributes"] * 5

    payload = logs([log(attributes=five, dropped_attributes_count=2**32 - 1)])
    (got,) = logs_of(counting_decoder([], max_attributes=3).logs(payload, NOW))
    assert (json.loads(got["attributes"]), got["dropped_attributes_count"]) == (kept, 2**31 - 1)
    # Points have no dropped count: their first attributes name their series.
    payload = metrics([gauge(number(attributes=five))])
    (series,) = series_of(counting_decoder([], max_attributes=3).metrics(payload, NOW))
    assert json.loads(series["attributes"]) == kept


def test_a_long_string_body_is_cut_on_a_character() -> None:
    counts: list[str] = []
    d = counting_decoder(counts, max_body_bytes=2001)
    payload = logs([log(body=any_value("é" * 1500)), log(body=any_value("x" * 2001))])
    first, second = logs_of(d.logs(payload, NOW))
    assert (json.loads(first["body"]), json.loads(second["body"])) == ("é" * 1000, "x" * 2001)
    assert counts == ["body"]


def test_a_large_structured_body_becomes_the_start_of_its_json_text() -> None:
    counts: list[str] = []
    body = {"message": "x" * 3000, "n": 1}
    payload = logs([log(body=any_value(body)), log(body=any_value({"small": [1, 2]}))])
    big, small = logs_of(counting_decoder(counts, max_body_bytes=2000).logs(payload, NOW))
    text = json.loads(big["body"])
    assert isinstance(text, str) and len(text) == 2000
    assert text == '{"message":"' + "x" * (2000 - 12)
    assert json.loads(small["body"]) == {"small": [1, 2]}
    assert counts == ["body"]


def test_nesting_deeper_than_the_limit_becomes_null() -> None:
    counts: list[str] = []
    d = counting_decoder(counts, max_attribute_depth=2)
    values = {"a": [[1, [2]], 3], "m": {"x": {"y": {"z": 1}}, "k": 1}, "flat": [1]}
    payload = traces([span(attributes=attrs(values))])
    (got,) = spans_of(d.traces(payload, NOW))
    assert json.loads(got["attributes"]) == {
        "a": [[1, None], 3],
        "m": {"x": {"y": None}, "k": 1},
        "flat": [1],
    }
    (got,) = logs_of(d.logs(logs([log(body=any_value([[["deep"]]]))]), NOW))
    assert json.loads(got["body"]) == [[None]]
    assert counts == ["depth"] * 3


def test_envelope_values_are_never_cut_and_still_refused_over_their_limit() -> None:
    d = decoder(max_attribute_value_bytes=100)
    user, long_user = "u" * 200, "u" * 300  # the user id limit is 256
    payload = traces(
        [
            span(attributes=attrs({"user.id": user, "other": "o" * 200})),
            span(attributes=attrs({"user.id": long_user})),
        ],
        resource={"service.name": "s" * 200},
    )
    decoded = d.traces(payload, NOW)
    (got,) = spans_of(decoded)
    assert (got["user_id"], got["service_name"]) == (user, "s" * 200)
    assert json.loads(got["attributes"]) == {"user.id": user, "other": "o" * 100}
    assert_rejected(decoded, 1, "value too long", "'user.id' is 300 bytes, limit 256")


# -- invalid UTF-8 and garbage ---------------------------------------------------------


def corrupt(payload: bytes, marker: str) -> bytes:
    """``payload`` with the UTF-8 of ``marker`` replaced by as many invalid bytes."""
    encoded = marker.encode()
    assert payload.count(encoded) == 1
    return payload.replace(encoded, b"\xff" * len(encoded))


def test_invalid_utf8_span_name_rejects_that_span_only() -> None:
    payload = corrupt(traces([span(name="good0"), span(name="BAD!"), span(name="good2")]), "BAD!")
    decoded = decoder().traces(payload, NOW)
    assert [s["name"] for s in spans_of(decoded)] == ["good0", "good2"]
    assert_rejected(
        decoded, 1, "invalid UTF-8: 1", "invalid UTF-8 in name (resource 0, scope 0, span 1)"
    )


def test_invalid_utf8_in_an_event_names_the_field() -> None:
    bad = span(events=[Span.Event(name="ok"), Span.Event(name="BAD!")])
    decoded = decoder().traces(corrupt(traces([span(), bad]), "BAD!"), NOW)
    assert len(decoded.batch.spans) == 1
    assert_rejected(decoded, 1, "invalid UTF-8 in events[1].name (resource 0, scope 0, span 1)")


def test_invalid_utf8_attribute_rejects_its_record_without_salvage() -> None:
    payload = traces([span(), span(attributes=attrs({"k": ["ok", "BAD!"]}))])
    decoded = decoder().traces(corrupt(payload, "BAD!"), NOW)
    assert len(decoded.batch.spans) == 1
    assert_rejected(
        decoded, 1, "attribute: invalid UTF-8 in value.array_value.values[1].string_value"
    )


def test_invalid_utf8_in_a_scope_or_resource_rejects_their_records() -> None:
    request = ExportTraceServiceRequest()
    rs0 = request.resource_spans.add(schema_url="BAD0")
    rs0.scope_spans.add().spans.extend([span(), span()])
    rs1 = request.resource_spans.add()
    rs1.scope_spans.add(scope=InstrumentationScope(name="BAD1")).spans.append(span())
    rs1.scope_spans.add().spans.append(span(name="kept"))
    payload = corrupt(corrupt(request.SerializeToString(), "BAD0"), "BAD1")
    decoded = decoder().traces(payload, NOW)
    assert [s["name"] for s in spans_of(decoded)] == ["kept"]
    assert list(decoded.batch.resources) == [("default", resource_id("{}"))]
    assert_rejected(
        decoded,
        3,
        "invalid UTF-8 in resource schema_url (resource 0)",
        "scope: invalid UTF-8 in name (resource 1, scope 0)",
    )


def test_invalid_utf8_metric_rejects_its_points() -> None:
    payload = corrupt(metrics([gauge(number(), number(), name="BAD!"), gauge(number())]), "BAD!")
    decoded = decoder().metrics(payload, NOW)
    assert len(decoded.batch.points) == 1
    assert_rejected(decoded, 2, "invalid UTF-8 in name (resource 0, scope 0, metric 0)")


def test_invalid_utf8_log_body_and_text() -> None:
    payload = logs([log(body=any_value("BAD0")), log(severity_text="BAD1"), log()])
    decoded = decoder().logs(corrupt(corrupt(payload, "BAD0"), "BAD1"), NOW)
    assert len(decoded.batch.logs) == 1
    assert_rejected(
        decoded,
        2,
        "body: invalid UTF-8 in string_value (resource 0, scope 0, log record 0)",
        "invalid UTF-8 in severity_text (resource 0, scope 0, log record 1)",
    )


def raw_traces(*spans: bytes) -> bytes:
    """A trace request of one resource and scope holding ``spans`` (serialized)."""
    scope_x = b"".join(b"\x12" + varint(len(s)) + s for s in spans)
    resource_x = b"\x12" + varint(len(scope_x)) + scope_x
    return b"\x0a" + varint(len(resource_x)) + resource_x


def test_nested_attributes_within_the_parsers_depth_are_kept() -> None:
    deep = KeyValue.FromString(deep_attribute(30))
    payload = traces([span(attributes=[deep])])
    (got,) = spans_of(decoder(max_attribute_depth=30).traces(payload, NOW))
    assert got["attributes"] == '{"k":' + "[" * 30 + '"x"' + "]" * 30 + "}"


def test_too_deeply_nested_attribute_rejects_its_record() -> None:
    attribute = deep_attribute(5000)
    bad = span().SerializeToString() + b"\x4a" + varint(len(attribute)) + attribute
    decoded = decoder().traces(raw_traces(span().SerializeToString(), bad), NOW)
    assert len(decoded.batch.spans) == 1
    assert_rejected(decoded, 1, "messages nested more than 100 deep (resource 0, scope 0, span 1)")


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_garbage_is_an_invalid_request(signal: str) -> None:
    with pytest.raises(InvalidRequest, match=r"not a valid Export\w+ServiceRequest"):
        getattr(decoder(), signal)(b"\xff\xff\xff\xff garbage", NOW)


def test_truncated_request_is_an_invalid_request() -> None:
    payload = corrupt(traces([span(name="BAD!")]), "BAD!")
    with pytest.raises(InvalidRequest):
        decoder().traces(payload[:-3], NOW)


def test_empty_request_is_empty() -> None:
    decoded = decoder().traces(b"", NOW)
    assert (decoded.batch.row_count, decoded.rejected, decoded.error_message) == (0, 0, "")


# -- properties ------------------------------------------------------------------------

CHARACTERS = st.characters(codec="utf-8", exclude_characters="\x00")
KEYS = st.text(CHARACTERS, max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(CHARACTERS, max_size=40)
    | st.binary(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


def expected_json(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [expected_json(v) for v in value]
    if isinstance(value, dict):
        return {k: expected_json(v) for k, v in value.items()}
    return value


# Shared across examples: the attribute cache must stay right. Without redaction, and deep
# enough for any value drawn, so that what comes out is what went in.
SHARED = decoder(redaction=NO_REDACTION, max_attribute_depth=64)
REDACTING = decoder(max_attribute_value_bytes=64, max_attribute_depth=2, max_attributes=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_attributes_parse_back_to_the_values(values: dict[str, object]) -> None:
    payload = traces([span(attributes=attrs(values))])
    (got,) = spans_of(SHARED.traces(payload, NOW))
    assert strict_json(got["attributes"]) == expected_json(values)
    assert "\t" not in got["attributes"]


def _nesting(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_nesting, value.values()), default=0)
    return 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=8))
@example({"": [{"TOKEN": []}]})  # a secret's array below the depth limit (found by hypothesis)
def test_stored_values_keep_within_every_limit(values: dict[str, object]) -> None:
    (got,) = spans_of(REDACTING.traces(traces([span(attributes=attrs(values))]), NOW))
    stored = strict_json(got["attributes"])
    assert len(stored) <= 4
    for value in stored.values():
        assert _nesting(value) <= 2
        for text in _strings(value):
            assert len(text.encode()) <= 88  # 64 bytes, or their base64


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["traces", "logs", "metrics"]))
def test_arbitrary_bytes_decode_or_are_invalid(payload: bytes, signal: str) -> None:
    try:
        decoded = getattr(REDACTING, signal)(payload, NOW)
    except InvalidRequest:
        return
    assert_rows_keep_the_contract(decoded)


def _refuse(constant: str) -> object:
    raise AssertionError(f"{constant} is not JSON that jsonb accepts")


def strict_json(text: str) -> Any:
    """``text`` parsed as JSON that PostgreSQL jsonb accepts (no NaN, no Infinity)."""
    return json.loads(text, parse_constant=_refuse)


def assert_rows_keep_the_contract(decoded: Decoded) -> None:
    """Whatever came in, what comes out is storable."""
    assert decoded.rejected >= 0
    assert (decoded.rejected == 0) <= (
        decoded.error_message == "" or "warning" in decoded.error_message
    )
    for got in spans_of(decoded):
        assert len(got["trace_id"]) == 16 and len(got["span_id"]) == 8
        assert got["project_id"]
        assert got["end_time_unix_nano"] >= got["start_time_unix_nano"]
        for name in ("attributes", "events", "links", "scope_attributes"):
            if got[name] is not None:
                assert not has_nul(strict_json(got[name]))
        for text in (got["name"], got["trace_state"] or "", got["status_message"] or ""):
            assert "\x00" not in text
    for got in logs_of(decoded):
        assert got["trace_id"] is None or len(got["trace_id"]) == 16
        assert 0 <= got["severity_number"] <= 24
        strict_json(got["attributes"])
        if got["body"] is not None:
            strict_json(got["body"])
    for got in points_of(decoded):
        assert 0 <= got["series_id"] < 2**63
        assert (got["project_id"], got["series_id"]) in decoded.batch.series
    # Every stored span and log refers to a resource row of its project, and every resource
    # row is referred to.
    referred = {(got["project_id"], got["resource_id"]) for got in spans_of(decoded)}
    referred |= {(got["project_id"], got["resource_id"]) for got in logs_of(decoded)}
    assert referred == set(decoded.batch.resources)
    for got in resources_of(decoded):
        assert 0 <= got["resource_id"] < 2**63
        assert not has_nul(strict_json(got["attributes"]))
        assert 0 <= got["dropped_attributes_count"] < 2**31
    # Every number fits its PostgreSQL column: integer for the dropped counts, else bigint.
    for columns, values in (
        (SPAN_COLUMNS, decoded.batch.spans),
        (LOG_COLUMNS, decoded.batch.logs),
        (POINT_COLUMNS, decoded.batch.points),
    ):
        for values_row in values:
            for name, value in zip(columns, values_row, strict=True):
                limit = 2**31 if name.startswith("dropped_") else 2**63
                for number in value if isinstance(value, list) else [value]:
                    if isinstance(number, int):
                        assert -limit <= number < limit, (name, number)


U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
NEAR = st.integers(T0 - 10**9, T0 + 10**9)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "trace_id": st.just(TRACE) | st.binary(max_size=17),
            "span_id": st.just(SPAN) | st.binary(max_size=9),
            "parent_span_id": st.binary(max_size=9),
            "start_time_unix_nano": NEAR | U64,
            "end_time_unix_nano": NEAR | U64,
            "kind": st.integers(-(2**31), 2**31 - 1),
            "flags": U32,
            "dropped_attributes_count": U32,
            "dropped_events_count": U32,
            "dropped_links_count": U32,
            "name": st.text(CHARACTERS | st.just("\x00"), max_size=5),
        }
    )
)
def test_any_span_is_stored_or_rejected_alone(fields: dict[str, Any]) -> None:
    decoded = SHARED.traces(traces([span(**fields)]), NOW)
    assert decoded.rejected + len(decoded.batch.spans) == 1
    assert_rows_keep_the_contract(decoded)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_valid_requests_decode_or_are_invalid(data: st.DataObject) -> None:
    payload = bytearray(
        traces([span(attributes=attrs({"k": "v", "n": 1}), events=[Span.Event(name="e")])] * 2)
    )
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = REDACTING.traces(bytes(payload), NOW)
    except InvalidRequest:
        return
    assert_rows_keep_the_contract(decoded)


def test_a_project_id_that_could_leave_its_key_segment_rejects_its_record_alone() -> None:
    d = decoder()
    hostile = ["../etc", "a/b", "p=q", "x\\y", "tab\tbed"]
    payload = traces(
        [span(attributes=attrs({"project.id": p})) for p in hostile]
        + [span(attributes=attrs({"project.id": "shop-1.eu"}))]
    )
    decoded = d.traces(payload, NOW)
    assert [s["project_id"] for s in spans_of(decoded)] == ["shop-1.eu"]
    assert_rejected(decoded, len(hostile), "invalid project id", "'project.id' may not contain")
