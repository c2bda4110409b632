"""The wire-level reader that salvages requests the protobuf parser refuses."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otlpd.receiver import salvage


def test_fields_reads_every_wire_type() -> None:
    data = b"\x08\x96\x01" + b"\x11" + bytes(8) + b"\x1a\x03abc" + b"\x25" + bytes(4)
    assert list(salvage.fields(data)) == [
        (1, salvage.VARINT, 150),
        (2, salvage.FIXED64, bytes(8)),
        (3, salvage.LENGTH_DELIMITED, b"abc"),
        (4, salvage.FIXED32, bytes(4)),
    ]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x08", "truncated varint"),
        (b"\x08" + b"\xff" * 11, "varint longer than 10 bytes"),
        (b"\x0a\x05ab", "field 1 runs past the end"),
        (b"\x11\x00", "truncated field 2"),
        (b"\x0b", "wire type 3 of field 1"),
        (b"\x00", "field number 0"),
    ],
)
def test_fields_refuses_what_is_not_wire_format(data: bytes, error: str) -> None:
    with pytest.raises(salvage.WireError, match=error):
        list(salvage.fields(data))


def test_split_keeps_positions_and_merges_repeated_messages() -> None:
    request = ExportTraceServiceRequest()
    first = request.resource_spans.add(schema_url="r0")
    first.resource.attributes.add(key="a")
    scope = first.scope_spans.add(schema_url="s0")
    scope.scope.name = "lib"
    scope.spans.extend([Span(name="x"), Span(name="y")])
    request.resource_spans.add()
    payload = request.SerializeToString()
    # A second occurrence of the resource field merges into the first, as protobuf does.
    extra = b"\x0a\x02\x0a\x00" * 2  # Resource{attributes: [{}]}, twice
    parts = salvage.split(payload + b"\x0a" + bytes([len(extra)]) + extra)
    assert [p.index for p in parts] == [0, 1, 2]
    assert parts[0].schema_url == b"r0"
    assert len(parts[0].scopes) == 1
    assert parts[0].scopes[0].schema_url == b"s0"
    assert [Span.FromString(r).name for r in parts[0].scopes[0].records] == ["x", "y"]
    assert parts[1].scopes == []
    assert parts[2].resource == b"\x0a\x00" * 2


def test_split_reports_a_broken_tail_inside_a_part() -> None:
    scope = b"\x12\x02\x2a\x00" + b"\x12\x05\x2a"  # one record, then a record cut short
    resource_x = b"\x12" + bytes([len(scope)]) + scope
    (part,) = salvage.split(b"\x0a" + bytes([len(resource_x)]) + resource_x)
    (scope_part,) = part.scopes
    assert scope_part.records == [b"\x2a\x00"]
    assert scope_part.error == "malformed protobuf: field 2 runs past the end"


def test_split_refuses_a_broken_request() -> None:
    with pytest.raises(salvage.WireError):
        salvage.split(b"\x0a\x10short")


def test_count_embedded() -> None:
    assert salvage.count_embedded(b"\x0a\x00\x12\x00\x0a\x01x\x08\x01", (1,)) == 2
    assert salvage.count_embedded(b"\x0a\x00\x0a\x09", (1,)) == 1  # up to the break


def test_explain_names_the_invalid_utf8_field() -> None:
    span = Span(name="ok", attributes=[KeyValue(key="k")])
    span.attributes[0].value.string_value = "XX"
    data = span.SerializeToString().replace(b"XX", b"\xff\xfe")
    assert salvage.explain(data, Span.DESCRIPTOR) == (
        "invalid UTF-8 in attributes[0].value.string_value"
    )
    assert salvage.explain(b"\x2a\x05ab", Span.DESCRIPTOR) == (
        "malformed protobuf in message: field 5 runs past the end"
    )
    assert salvage.explain(b"", Span.DESCRIPTOR) == "malformed protobuf"


def varint(n: int) -> bytes:
    out = b""
    while n > 0x7F:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def deep_attribute(levels: int) -> bytes:
    """A KeyValue whose value is an array in an array ... ``levels`` deep."""
    value = b"\x0a\x01x"
    for _ in range(levels):
        array = b"\x0a" + varint(len(value)) + value  # ArrayValue.values
        value = b"\x2a" + varint(len(array)) + array  # AnyValue.array_value
    return b"\x0a\x01k\x12" + varint(len(value)) + value


def test_explain_stops_at_the_parsers_depth() -> None:
    assert salvage.explain(deep_attribute(5000), KeyValue.DESCRIPTOR) == (
        "messages nested more than 100 deep"
    )
