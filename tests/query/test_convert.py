"""Stored values to API messages; a resource is parsed once per id, and copies stay apart."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from query import convert
from query.proto import pb
from storage.postgres.records import LogRow, SpanRow


def test_a_resource_is_built_once_per_id_and_every_target_gets_its_own_copy() -> None:
    cache = convert._Resources(2)
    first = cache.get(1, '{"service.name": "a", "n": 1}')
    assert first is not None and first["service.name"] == "a"
    assert cache.get(1, None) is first  # known: no text needed, nothing parsed again
    target = struct_pb2.Struct()
    convert.set_resource(target, 424242, '{"host": "h"}')
    target["host"] = "changed"
    again = struct_pb2.Struct()
    convert.set_resource(again, 424242, None)
    assert again["host"] == "h"  # a copy, not the cached Struct itself


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = convert._Resources(2)
    cache.get(1, '{"a": 1}')
    cache.get(2, '{"b": 2}')
    cache.get(1, None)
    cache.get(3, '{"c": 3}')  # evicts 2, the least recently used
    assert cache.get(2, None) is None
    assert cache.get(1, None) is not None and cache.get(3, None) is not None


def test_a_record_without_resource_attributes_has_an_empty_resource() -> None:
    target = struct_pb2.Struct()
    convert.set_resource(target, 7, "{}")
    assert not target.fields
    convert.set_resource(target, 8, None)
    assert not target.fields


def _log_row(**values: object) -> LogRow:
    sparse: dict[str, Any] = dict.fromkeys(LogRow._fields)
    sparse.update(time=datetime(2026, 12, 6, 12, 0, 1, 5, tzinfo=UTC), place="(3,4)")
    sparse["resource_id"] = 90_002
    sparse.update(values)
    return LogRow(**sparse)


def _span_row(**values: object) -> SpanRow:
    sparse: dict[str, Any] = dict.fromkeys(SpanRow._fields)
    sparse.update(trace_id=b"t" * 16, span_id=b"s" * 8, name="GET /", resource_id=90_002)
    sparse.update(values)
    return SpanRow(**sparse)


FULL_LOG = _log_row(
    time_unix_nano=1_796_565_601_000_005_000,
    observed_time_unix_nano=1_796_565_601_000_006_000,
    trace_id=b"t" * 16,
    span_id=b"s" * 8,
    flags=1,
    service_name="checkout",
    session_id="sess-1",
    user_id="user-1",
    severity_number=17,
    severity_text="ERROR",
    body={"message": "payment failed", "codes": [1, 2]},
    attributes={"http.method": "POST", "retry": 2, "ok": False},
    event_name="payment.failed",
    scope_name="app",
    resource='{"service.name": "checkout"}',
    resource_id=90_001,  # the sparse rows' resource (90_002) is one never seen
)
FULL_SPAN = _span_row(
    start_time_unix_nano=1_796_565_601_000_000_000,
    end_time_unix_nano=1_796_565_601_250_000_000,
    duration_ns=250_000_000,
    parent_span_id=b"p" * 8,
    trace_state="k=v",
    service_name="checkout",
    session_id="sess-1",
    user_id="user-1",
    kind=2,
    status_code=2,
    status_message="boom",
    attributes={"http.route": "/pay"},
    events=[{"name": "exception", "attributes": {"type": "E"}}],
    links=[{"trace_id": "ab" * 16}],
    scope_name="app",
    resource='{"service.name": "checkout"}',
    resource_id=90_001,  # the sparse rows' resource (90_002) is one never seen
)


def _expected_log(row: LogRow) -> pb.LogRecord:
    """What the API returns for ``row``, written out field by field."""
    expected = pb.LogRecord(
        id=row.id,
        trace_id=row.trace_id or b"",
        span_id=row.span_id or b"",
        service=row.service_name or "",
        session_id=row.session_id or "",
        user_id=row.user_id or "",
        severity_number=row.severity_number or 0,
        severity_text=row.severity_text or "",
        scope_name=row.scope_name or "",
        event_name=row.event_name or "",
        flags=row.flags or 0,
    )
    expected.time.FromNanoseconds(row.time_unix_nano or row.time_us * 1000)
    if row.observed_time_unix_nano:
        expected.observed_time.FromNanoseconds(row.observed_time_unix_nano)
    if row.body is None:
        expected.body.null_value = struct_pb2.NULL_VALUE
    else:
        expected.body.struct_value.update(row.body)
    if row.attributes:
        expected.attributes.update(row.attributes)
    if row.resource:
        expected.resource.update({"service.name": "checkout"})
    return expected


@pytest.mark.parametrize("row", [FULL_LOG, _log_row()], ids=["full", "sparse"])
def test_a_log_record_filled_in_its_answer_is_the_stored_record(row: LogRow) -> None:
    answer = pb.SearchLogsResponse()
    convert.fill_log_record(answer.records.add(), row)
    assert answer.records[0] == _expected_log(row)
    assert convert.log_record(row) == _expected_log(row)


@pytest.mark.parametrize("row", [FULL_SPAN, _span_row()], ids=["full", "sparse"])
def test_a_span_filled_in_its_answer_is_the_stored_span(row: SpanRow) -> None:
    expected = pb.Span(
        trace_id=row.trace_id,
        span_id=row.span_id,
        parent_span_id=row.parent_span_id or b"",
        name=row.name,
        service=row.service_name or "",
        kind=row.kind or 0,
        status_code=row.status_code or 0,
        status_message=row.status_message or "",
        session_id=row.session_id or "",
        user_id=row.user_id or "",
        scope_name=row.scope_name or "",
        trace_state=row.trace_state or "",
        depth=2,
    )
    start = row.start_time_unix_nano or 0
    expected.start_time.FromNanoseconds(start)
    expected.end_time.FromNanoseconds(row.end_time_unix_nano or start)
    expected.duration.FromNanoseconds(row.duration_ns or 0)
    if row.attributes:
        expected.attributes.update(row.attributes)
        expected.resource.update({"service.name": "checkout"})
        expected.events.extend(row.events)
        expected.links.extend(row.links)
    answer = pb.GetTraceResponse()
    convert.fill_span(answer.spans.add(), row, 2)
    assert answer.spans[0] == expected
    assert convert.span(row, 2) == expected


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text()
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.lists(st.dictionaries(st.text(max_size=8), _JSON, max_size=6), max_size=4))
@settings(max_examples=300)
def test_a_struct_is_filled_as_struct_update_fills_it(objects: list[dict[str, Any]]) -> None:
    # Several objects in a row, so that later ones meet entries the earlier ones cached
    # (0.0 before -0.0, True before 1, 1 before 1.0).
    for value in [*objects, *objects]:
        expected = struct_pb2.Struct()
        expected.update(value)
        got = struct_pb2.Struct()
        convert.set_struct(got, value)
        assert got == expected
        signs = {k: math.copysign(1, v.number_value) for k, v in expected.fields.items()}
        assert {k: math.copysign(1, v.number_value) for k, v in got.fields.items()} == signs


def test_scalar_attributes_of_every_type_keep_their_type() -> None:
    got = struct_pb2.Struct()
    convert.set_struct(got, {"b": True, "i": 1, "f": 1.0, "s": "1", "n": None, "z": -0.0})
    assert got.fields["b"].WhichOneof("kind") == "bool_value"
    assert got.fields["i"].number_value == 1 and got.fields["f"].number_value == 1.0
    assert got.fields["s"].string_value == "1"
    assert got.fields["n"].WhichOneof("kind") == "null_value"
    assert math.copysign(1, got.fields["z"].number_value) == -1
    # The same keys with values equal to the cached ones but of another type or sign.
    again = struct_pb2.Struct()
    convert.set_struct(again, {"b": 1, "i": True, "s": 1, "z": 0.0})
    assert again.fields["b"].WhichOneof("kind") == "number_value"
    assert again.fields["i"].bool_value is True
    assert again.fields["s"].number_value == 1
    assert math.copysign(1, again.fields["z"].number_value) == 1
