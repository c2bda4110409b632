"""OTLP/JSON to protobuf (``otlpd.receiver.otlp_json``): the spec's deviations from the
proto3 JSON mapping (hex ids, integer enums), agreement with ``json_format`` on
everything else, and what a body that is not OTLP/JSON is told.

The end-to-end path (JSON over HTTP into PostgreSQL) is tests/receiver/test_http.py.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import orjson
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from otlpd.errors import InvalidRequest
from otlpd.receiver.otlp_json import (
    MAX_DEPTH,
    NOT_HEX,
    REQUESTS,
    parse_request,
    to_json,
    to_otlp_json,
)

TRACE_ID = "5B8EFFF798038103D269B633813FC60C"
SPAN_ID = "EEE19B7EC3C1B174"
PARENT_ID = "eee19b7ec3c1b173"


def parse(signal: str, document: Any) -> Any:
    """The protobuf request that ``document`` (OTLP/JSON) stands for."""
    payload = parse_request(signal, orjson.dumps(document)).payload
    return REQUESTS[signal].FromString(payload)


def traces(payload: bytes) -> Any:
    """The traces request ``payload`` serializes."""
    return trace_service_pb2.ExportTraceServiceRequest.FromString(payload)


def invalid(signal: str, body: bytes) -> str:
    """The message of the InvalidRequest that ``body`` must be answered with."""
    with pytest.raises(InvalidRequest) as raised:
        parse_request(signal, body)
    return str(raised.value)


def one_span(**fields: Any) -> dict[str, Any]:
    return {"resourceSpans": [{"scopeSpans": [{"spans": [fields]}]}]}


# --- the spec's examples -------------------------------------------------------------


def test_a_trace_as_the_spec_writes_it() -> None:
    """Hex ids (any case), an integer kind, 64-bit times as strings, attributes of every
    kind, an event and a link: each lands in its protobuf field."""
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "my.library", "version": "1.0.0"},
                        "spans": [
                            {
                                "traceId": TRACE_ID,
                                "spanId": SPAN_ID,
                                "parentSpanId": PARENT_ID,
                                "name": "GET /cart",
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "kind": 2,
                                "attributes": [
                                    {"key": "s", "value": {"stringValue": "v"}},
                                    {"key": "b", "value": {"boolValue": True}},
                                    {"key": "i", "value": {"intValue": "-9007199254740993"}},
                                    {"key": "d", "value": {"doubleValue": 1.5}},
                                    {"key": "raw", "value": {"bytesValue": "AAEC"}},
                                    {
                                        "key": "a",
                                        "value": {
                                            "arrayValue": {
                                                "values": [{"intValue": 1}, {"stringValue": "x"}]
                                            }
                                        },
                                    },
                                    {
                                        "key": "kv",
                                        "value": {
                                            "kvlistValue": {
                                                "values": [
                                                    {"key": "n", "value": {"doubleValue": "NaN"}}
                                                ]
                                            }
                                        },
                                    },
                                ],
                                "events": [{"timeUnixNano": "1544712660500000000", "name": "e"}],
                                "links": [{"traceId": TRACE_ID.lower(), "spanId": SPAN_ID}],
                                "status": {"code": 2, "message": "boom"},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    request = parse("traces", document)
    resource_spans = request.resource_spans[0]
    assert resource_spans.resource.attributes[0].value.string_value == "shop"
    scope_spans = resource_spans.scope_spans[0]
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("my.library", "1.0.0")
    span = scope_spans.spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.span_id == bytes.fromhex(SPAN_ID)
    assert span.parent_span_id == bytes.fromhex(PARENT_ID)
    assert span.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (
        1544712660000000000,
        1544712661000000000,
    )
    values = {a.key: a.value for a in span.attributes}
    assert values["s"].string_value == "v"
    assert values["b"].bool_value is True
    assert values["i"].int_value == -9007199254740993
    assert values["d"].double_value == 1.5
    assert values["raw"].bytes_value == b"\x00\x01\x02"
    assert [v.WhichOneof("value") for v in values["a"].array_value.values] == [
        "int_value",
        "string_value",
    ]
    assert math.isnan(values["kv"].kvlist_value.values[0].value.double_value)
    assert span.events[0].name == "e"
    assert span.links[0].trace_id == bytes.fromhex(TRACE_ID)
    assert (span.status.code, span.status.message) == (2, "boom")


def test_logs_and_metrics_as_the_spec_writes_them() -> None:
    logs = parse(
        "logs",
        {
            "resourceLogs": [
                {
                    "scopeLogs": [
                        {
                            "logRecords": [
                                {
                                    "timeUnixNano": "1544712660300000000",
                                    "severityNumber": 10,
                                    "severityText": "Information",
                                    "traceId": TRACE_ID,
                                    "spanId": SPAN_ID,
                                    "body": {"stringValue": "Example log record"},
                                    "eventName": "checkout",
                                }
                            ]
                        }
                    ]
                }
            ]
        },
    )
    record = logs.resource_logs[0].scope_logs[0].log_records[0]
    assert (record.severity_number, record.severity_text) == (10, "Information")
    assert (record.trace_id, record.span_id) == (bytes.fromhex(TRACE_ID), bytes.fromhex(SPAN_ID))
    assert record.body.string_value == "Example log record"
    assert record.event_name == "checkout"

    metrics = parse(
        "metrics",
        {
            "resourceMetrics": [
                {
                    "scopeMetrics": [
                        {
                            "metrics": [
                                {
                                    "name": "my.counter",
                                    "unit": "1",
                                    "sum": {
                                        "aggregationTemporality": 1,
                                        "isMonotonic": True,
                                        "dataPoints": [
                                            {
                                                "asDouble": 5,
                                                "startTimeUnixNano": "1544712660300000000",
                                                "timeUnixNano": "1544712660300000000",
                                                "exemplars": [
                                                    {
                                                        "asInt": "3",
                                                        "traceId": TRACE_ID,
                                                        "spanId": SPAN_ID,
                                                    }
                                                ],
                                            }
                                        ],
                                    },
                                },
                                {
                                    "name": "my.histogram",
                                    "histogram": {
                                        "aggregationTemporality": 2,
                                        "dataPoints": [
                                            {
                                                "timeUnixNano": "1544712660300000000",
                                                "count": "2",
                                                "sum": 2,
                                                "bucketCounts": ["1", 1],
                                                "explicitBounds": [1],
                                                "min": 0,
                                                "max": 2,
                                            }
                                        ],
                                    },
                                },
                            ]
                        }
                    ]
                }
            ]
        },
    )
    counter, histogram = metrics.resource_metrics[0].scope_metrics[0].metrics
    point = counter.sum.data_points[0]
    assert (point.as_double, counter.sum.aggregation_temporality) == (5.0, 1)
    assert counter.sum.is_monotonic
    exemplar = point.exemplars[0]
    assert (exemplar.as_int, exemplar.trace_id) == (3, bytes.fromhex(TRACE_ID))
    hpoint = histogram.histogram.data_points[0]
    assert list(hpoint.bucket_counts) == [1, 1]
    assert list(hpoint.explicit_bounds) == [1.0]
    assert (hpoint.count, hpoint.sum, hpoint.min, hpoint.max) == (2, 2.0, 0.0, 2.0)
    assert hpoint.HasField("min")  # proto3 optional: set, even to 0


def test_what_the_proto3_mapping_allows_is_accepted_too() -> None:
    """Proto field names, enum names, 64-bit integers as numbers, URL-safe base64 without
    padding, integral floats, null for absent, and unknown fields (ignored)."""
    request = parse(
        "traces",
        {
            "resource_spans": [
                {
                    "schemaUrl": None,
                    "scope_spans": [
                        {
                            "spans": [
                                {
                                    "trace_id": TRACE_ID,
                                    "span_id": SPAN_ID,
                                    "kind": "SPAN_KIND_CLIENT",
                                    "start_time_unix_nano": 1544712660000000000,
                                    "endTimeUnixNano": 1.5e18,
                                    "droppedAttributesCount": "2",
                                    "flags": 257,
                                    "attributes": [
                                        {"key": "b", "value": {"bytes_value": "-_8"}},
                                        {"key": "new", "value": {"futureValue": {"x": 1}}},
                                    ],
                                    "status": {"code": "STATUS_CODE_OK"},
                                    "aFieldFromTheFuture": [1, {"nested": True}],
                                }
                            ]
                        }
                    ],
                }
            ],
            "somethingElse": "ignored",
        },
    )
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.end_time_unix_nano == 1_500_000_000_000_000_000
    assert (span.dropped_attributes_count, span.flags) == (2, 257)
    assert span.attributes[0].value.bytes_value == b"\xfb\xff"
    assert span.attributes[1].value.WhichOneof("value") is None  # unknown kind: empty
    assert span.status.code == trace_pb2.Status.STATUS_CODE_OK


def test_an_enum_name_of_a_later_version_leaves_the_field_unset() -> None:
    request = parse("traces", one_span(name="x", kind="SPAN_KIND_FROM_THE_FUTURE"))
    assert request.resource_spans[0].scope_spans[0].spans[0].kind == 0


def test_an_empty_object_is_an_empty_request() -> None:
    for signal in REQUESTS:
        assert parse_request(signal, b"{}").payload == b""


# --- ids that are not hex ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["zz", "5B8EFFF79803810", 42, ["00"], "0a 0b", "é" * 16],
    ids=["letters", "odd-length", "number", "array", "spaces", "non-ascii"],
)
def test_an_id_that_is_not_hex_spoils_only_its_record(bad: Any) -> None:
    """It becomes NOT_HEX (which the decoder rejects with its record), its neighbours keep
    their ids, and the warning says what was wrong."""
    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": TRACE_ID, "spanId": SPAN_ID, "name": "good"},
                            {"traceId": bad, "spanId": SPAN_ID, "name": "bad"},
                        ]
                    }
                ]
            }
        ]
    }
    parsed = parse_request("traces", orjson.dumps(document))
    spans = traces(parsed.payload).resource_spans[0].scope_spans[0].spans
    assert [s.trace_id for s in spans] == [bytes.fromhex(TRACE_ID), NOT_HEX]
    assert "an id not hex (traceId: " in parsed.warning


def test_ids_of_the_wrong_length_are_kept_as_they_are_for_the_decoder_to_judge() -> None:
    parsed = parse_request("traces", orjson.dumps(one_span(traceId="0102", spanId="")))
    span = traces(parsed.payload).resource_spans[0].scope_spans[0].spans[0]
    assert (span.trace_id, span.span_id) == (b"\x01\x02", b"")
    assert parsed.warning == ""


def test_every_id_field_of_otlp_is_hex() -> None:
    """Links, log records and exemplars too; the warning counts them all."""
    bad = "not-hex"
    traces = parse_request(
        "traces", orjson.dumps(one_span(parentSpanId=bad, links=[{"spanId": bad}]))
    )
    logs = parse_request(
        "logs",
        orjson.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"spanId": bad}]}]}]}),
    )
    point = {"asInt": 1, "exemplars": [{"traceId": bad, "spanId": bad}]}
    metrics = parse_request(
        "metrics",
        orjson.dumps(
            {
                "resourceMetrics": [
                    {"scopeMetrics": [{"metrics": [{"gauge": {"dataPoints": [point]}}]}]}
                ]
            }
        ),
    )
    assert traces.warning.startswith("OTLP/JSON: 2 ids not hex (")
    assert logs.warning.startswith("OTLP/JSON: an id not hex (spanId: 'not-hex')")
    assert metrics.warning.startswith("OTLP/JSON: 2 ids not hex (traceId: 'not-hex')")


# --- bodies that are not OTLP/JSON ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b'{"resourceSpans": [1]}', "resourceSpans[0]: expected an object, got a number"),
        (b"[]", "expected an object, got an array"),
        (b'{"resourceSpans": {}}', "resourceSpans: expected an array, got an object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{}, {"name": 5}]}]}]}',
            "resourceSpans[0].scopeSpans[0].spans[1].name: expected a string, got a number",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": true}]}]}]}',
            "spans[0].kind: expected an enum number, got a boolean",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
            "startTimeUnixNano: expected an integer, got 'soon'",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": -1}]}]}]}',
            "startTimeUnixNano: -1 is out of range 0..18446744073709551615",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"droppedEventsCount": 1.5}]}]}]}',
            "droppedEventsCount: expected an integer, got a number",
        ),
        (
            b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value":'
            b' {"stringValue": "a", "intValue": 1}}]}}]}',
            "attributes[0].value: more than one field of oneof 'value' is set",
        ),
        (
            b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value":'
            b' {"bytesValue": "***"}}]}}]}',
            "attributes[0].value.bytesValue: not base64",
        ),
        (b'{"resourceSpans": [null]}', "resourceSpans[0]: expected an object, got null"),
        (b"[" * 100_000, "the body is not JSON: maximum recursion depth exceeded"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\\ud800"}]}]}]}',
            "surrogates not allowed",  # JSON allows a lone surrogate; UTF-8 has no such thing
        ),
    ],
)
def test_a_body_that_is_not_otlp_json_is_refused_naming_the_field(body: bytes, says: str) -> None:
    assert says in invalid("traces", body)


def _nested(messages: int) -> bytes:
    """A span whose attribute nests AnyValues until the request is ``messages`` deep."""
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range((messages - 6) // 2):  # request, resource/scope spans, span, key-value
        value = {"arrayValue": {"values": [value]}}  # two messages a level
    return json.dumps(one_span(attributes=[{"key": "deep", "value": value}])).encode()


def test_nesting_past_the_limit_is_refused() -> None:
    body = _nested(MAX_DEPTH + 2)
    assert f"nested more than {MAX_DEPTH} messages deep" in invalid("traces", body)


def test_nesting_up_to_the_limit_reads_back_in_protobuf() -> None:
    payload = parse_request("traces", _nested(MAX_DEPTH)).payload
    request = traces(payload)  # protobuf's own limit is 100
    assert request.resource_spans[0].scope_spans[0].spans[0].attributes[0].key == "deep"


# --- agreement with json_format ------------------------------------------------------

_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
}
_DOUBLES = st.floats(allow_nan=False) | st.sampled_from([math.nan, math.inf, -math.inf, -0.0])


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INTS:
        lo, hi = _INTS[kind]
        return st.integers(lo, hi) | st.sampled_from([lo, hi, 0])
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return _DOUBLES
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=8)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=20)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.sampled_from(known) | st.integers(-(2**31), 2**31 - 1)
    raise AssertionError(f"no strategy for {field.full_name}")


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    """Any message of ``descriptor``: a random subset of its fields, nested up to 7 deep."""
    message = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE
        if (is_message and depth >= 7) or not draw(st.booleans()):
            continue
        if is_message:
            assert field.message_type is not None
            count = draw(st.integers(0, 2)) if field.is_repeated else 1
            for _ in range(count):
                sub = draw(messages(field.message_type, depth + 1))
                target = getattr(message, field.name)
                (target.add() if field.is_repeated else target).CopyFrom(sub)
        elif field.is_repeated:
            getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=3)))
        else:
            setattr(message, field.name, draw(_scalar(field)))
    return message


def requests(signal: str) -> st.SearchStrategy[Message]:
    descriptor = REQUESTS[signal].DESCRIPTOR
    return messages(descriptor)  # type: ignore[arg-type]


def _bytes(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(REQUESTS)).flatmap(lambda s: st.tuples(st.just(s), requests(s))))
def test_any_request_survives_the_round_trip(case: tuple[str, Message]) -> None:
    """protobuf -> OTLP/JSON (hex ids, integer enums) -> protobuf is the identity."""
    signal, request = case
    payload = parse_request(signal, orjson.dumps(to_otlp_json(request))).payload
    assert _bytes(REQUESTS[signal].FromString(payload)) == _bytes(request)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(REQUESTS)).flatmap(lambda s: st.tuples(st.just(s), requests(s))),
    st.booleans(),
    st.booleans(),
)
def test_json_format_reads_every_document_the_same_way(
    case: tuple[str, Message], proto_names: bool, enum_names: bool
) -> None:
    """With field names in either case and enums as names or numbers, this parser and
    json_format (given the ids in base64, as it wants them) build the same request."""
    signal, request = case
    document = json_format.MessageToDict(
        request, preserving_proto_field_name=proto_names, use_integers_for_enums=not enum_names
    )
    reference = json_format.ParseDict(document, REQUESTS[signal](), ignore_unknown_fields=True)
    ours = to_otlp_json(request) if not (proto_names or enum_names) else _hex(request, document)
    payload = parse_request(signal, orjson.dumps(ours)).payload
    assert _bytes(REQUESTS[signal].FromString(payload)) == _bytes(reference)


def _hex(request: Message, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with its ids in hex (a copy; ``to_otlp_json``'s walk, any key names)."""
    from otlpd.receiver.otlp_json import _hexify

    copy: dict[str, Any] = orjson.loads(orjson.dumps(document))
    _hexify(request.DESCRIPTOR, copy)  # type: ignore[arg-type]
    return copy


def test_hex_ids_match_the_base64_that_json_format_reads() -> None:
    span_id = bytes.fromhex(SPAN_ID)
    document = to_otlp_json(
        trace_service_pb2.ExportTraceServiceRequest(
            resource_spans=[{"scope_spans": [{"spans": [{"span_id": span_id}]}]}]  # type: ignore[list-item]
        )
    )
    assert document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] == SPAN_ID.lower()
    assert base64.b64encode(span_id).decode() != SPAN_ID.lower()


# --- answers -------------------------------------------------------------------------


def test_responses_are_written_in_camel_case_with_64_bit_counts_as_strings() -> None:
    response = trace_service_pb2.ExportTraceServiceResponse()
    response.partial_success.rejected_spans = 3
    response.partial_success.error_message = "3 spans rejected"
    assert orjson.loads(to_json(response)) == {
        "partialSuccess": {"rejectedSpans": "3", "errorMessage": "3 spans rejected"}
    }
    assert orjson.loads(to_json(logs_service_pb2.ExportLogsServiceResponse())) == {}
    metrics = metrics_service_pb2.ExportMetricsServiceResponse()
    metrics.partial_success.rejected_data_points = 1
    assert orjson.loads(to_json(metrics)) == {"partialSuccess": {"rejectedDataPoints": "1"}}
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad")
    assert orjson.loads(to_json(status)) == {"code": 3, "message": "bad"}
