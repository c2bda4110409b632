"""AnyValue and attribute lists to JSON text, and the fragment cache behind it."""

from __future__ import annotations

import json
import math

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from otlpd.envelope import EnvelopeKeys
from otlpd.receiver.anyvalue import (
    AttributeEncoder,
    body_text,
    finite,
    has_nul,
    json_text,
    json_value,
    scalar_text,
)
from otlpd.receiver.rejections import RecordRejected


def raw(key: str, **value: object) -> bytes:
    kv = KeyValue(key=key)
    for field, v in value.items():
        setattr(kv.value, field, v)
    return kv.SerializeToString()


def encoder(max_value_bytes: int = 64 * 1024, entries: int = 1000) -> AttributeEncoder:
    return AttributeEncoder(EnvelopeKeys(), max_value_bytes, entries)


@pytest.mark.parametrize(
    ("x", "expected"),
    [(1.5, 1.5), (-0.0, -0.0), (math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")],
)
def test_finite(x: float, expected: object) -> None:
    assert finite(x) == expected


def test_json_value_of_every_kind() -> None:
    value = AnyValue(
        array_value=ArrayValue(
            values=[
                AnyValue(string_value="s"),
                AnyValue(bool_value=True),
                AnyValue(int_value=-5),
                AnyValue(double_value=math.nan),
                AnyValue(bytes_value=b"\x00\xff"),
                AnyValue(),
                AnyValue(string_value_strindex=3),
            ]
        )
    )
    assert json_value(value) == ["s", True, -5, "NaN", "AP8=", None, None]


@pytest.mark.parametrize(
    "value", ['a"b\\c\n\u2028é', 0, -(2**63), True, False, 1e300, 0.1, None, [1, {"b": 1, "a": 2}]]
)
def test_scalar_text_is_json_dumps(value: object) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    assert scalar_text(value) == json_text(value) == expected  # type: ignore[arg-type]


def test_has_nul() -> None:
    assert has_nul(["a", {"b": "\x00"}])
    assert has_nul({"\x00": 1})
    assert not has_nul(["a", {"b": "\\u0000"}, 1, None])


def test_encode_keeps_order_and_sorted_sorts() -> None:
    raws = [raw("b", int_value=1), raw("a", string_value="x")]
    assert encoder().encode(raws) == ('{"b":1,"a":"x"}', None)
    assert encoder().encode_sorted(raws) == ('{"a":"x","b":1}', None)
    assert encoder().encode([]) == ("{}", None)


def test_encode_finds_envelope_values_by_rank() -> None:
    raws = [
        raw("enduser.id", string_value="end"),
        raw("x", int_value=1),
        raw("user.id", string_value="u"),
        raw("session.id", int_value=42),
        raw("project.id", bool_value=True),  # not a usable id
    ]
    text, found = encoder().encode(raws)
    assert found == ("42", "u", None, None)
    assert text == ('{"enduser.id":"end","x":1,"user.id":"u","session.id":42,"project.id":true}')
    assert encoder().encode([raw("service.name", string_value="svc")])[1] == (
        None,
        None,
        None,
        "svc",
    )


def test_combined_envelope_values_are_cached_per_order() -> None:
    e = encoder()
    end, user = raw("enduser.id", string_value="end"), raw("user.id", string_value="u")
    session = raw("session.id", string_value="s")
    for _ in range(2):  # made, then from the cache
        assert e.encode([end, session, user])[1] == ("s", "u", None, None)
        assert e.encode([user, end])[1] == (None, "u", None, None)
        assert e.encode([raw("user.id", string_value="v"), user])[1] == (None, "u", None, None)
        assert e.encode([user, raw("user.id", string_value="v")])[1] == (None, "v", None, None)


def test_combined_envelope_cache_is_bounded() -> None:
    e = encoder(entries=3)
    for i in range(10):
        raws = [
            raw("session.id", int_value=i),
            raw("user.id", int_value=i),
            raw("project.id", int_value=i),
        ]
        assert e.encode(raws)[1] == (str(i), str(i), str(i), None)
    assert 0 < len(e._combined) <= 3


def test_two_envelope_values_merge_without_the_cache() -> None:
    e = encoder()
    for i in range(10):  # a user per record: the combined cache would only churn
        raws = [raw("session.id", string_value="s"), raw("user.id", int_value=i)]
        assert e.encode(raws)[1] == ("s", str(i), None, None)
    assert len(e._combined) == 0


def test_a_double_under_a_known_key_is_made_from_the_key_alone() -> None:
    e = encoder()
    assert e.encode([raw("ms", double_value=1.5)])[0] == '{"ms":1.5}'
    cache = e._fragment.__self__  # type: ignore[attr-defined]
    assert list(cache._double_keys.values()) == ['"ms":'] and len(cache) == 0
    for x, text in [(2.25, "2.25"), (-0.0, "-0.0"), (math.nan, '"NaN"'), (math.inf, '"Infinity"')]:
        assert e.encode([raw("ms", double_value=x)])[0] == f'{{"ms":{text}}}'
    # Neither a key with a NUL nor one that is not UTF-8 is learned.
    with pytest.raises(RecordRejected, match="NUL"):
        e.encode([raw("a\x00", double_value=1.0)])
    with pytest.raises(RecordRejected, match="invalid UTF-8 in key"):
        e.encode([b"\x0a\x02\xff\xfe\x12\x09\x21" + bytes(8)])
    assert list(cache._double_keys.values()) == ['"ms":']


_SHARED = encoder()  # one cache for every example: keys learned by one serve the next


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(["ms", "a\x00", "é", "x" * 127, "y" * 200, ""]),
    st.floats() | st.sampled_from([0.0, 1.0]),
)
def test_double_fast_path_agrees_with_protobuf(key: str, x: float) -> None:
    data = raw(key, double_value=x)
    try:
        text, _ = _SHARED.encode([data])
        got = text[1:-1]
    except RecordRejected:
        got = "rejected"
    assert got == reference(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=13, max_size=30), st.binary(min_size=8, max_size=8))
def test_a_learned_double_key_never_reads_other_layouts(prefix: bytes, value: bytes) -> None:
    _SHARED.encode([raw("ms", double_value=1.0)])
    for data in (prefix, b"\x0a\x02ms\x12\x09\x21" + value, prefix + value):
        try:
            got = _SHARED.encode([data])[0][1:-1]
        except RecordRejected:
            got = "rejected"
        assert got == reference(data)


def test_cache_is_bounded() -> None:
    e = encoder(entries=3)
    for i in range(10):
        assert e.encode([raw("k", int_value=i)]) == (f'{{"k":{i}}}', None)
    cache = e._fragment.__self__  # type: ignore[attr-defined]
    assert 0 < len(cache) <= 3


def reference(data: bytes, max_value_bytes: int = 64 * 1024) -> str:
    """The fragment of ``data`` through protobuf alone, or "rejected"."""
    try:
        kv = KeyValue.FromString(data)
    except DecodeError:
        return "rejected"
    value = json_value(kv.value)
    text = f"{json_text(kv.key)}:{scalar_text(value)}"
    if has_nul(value) or "\x00" in kv.key:
        return "rejected"
    return text


def fast(data: bytes) -> str:
    try:
        text, _ = encoder().encode([data])
    except RecordRejected:
        return "rejected"
    return text[1:-1]


@settings(max_examples=500, deadline=None)
@given(
    st.text(max_size=140),
    st.one_of(
        st.builds(dict, string_value=st.text(max_size=140)),
        st.builds(dict, int_value=st.integers(-(2**63), 2**63 - 1)),
        st.builds(dict, double_value=st.floats()),
        st.builds(dict, bool_value=st.booleans()),
        st.builds(dict, bytes_value=st.binary(max_size=10)),
    ),
)
def test_fast_path_agrees_with_protobuf(key: str, value: dict[str, object]) -> None:
    try:
        data = raw(key, **value)
    except UnicodeEncodeError:  # a surrogate: not a string protobuf can hold
        return
    assert fast(data) == reference(data)


def _framed(key: bytes, value: bytes) -> bytes:
    return b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value


@settings(max_examples=1000, deadline=None)
@given(
    st.binary(max_size=40)
    | st.builds(_framed, st.binary(max_size=4), st.binary(max_size=12))
    | st.builds(
        _framed,
        st.binary(max_size=4),
        st.builds(
            bytes.__add__, st.sampled_from([b"\x0a", b"\x18", b"\x21"]), st.binary(max_size=11)
        ),
    )
)
def test_fast_path_agrees_with_protobuf_on_any_bytes(data: bytes) -> None:
    assert fast(data) == reference(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x12\x05\x0a\x03abc\x0a\x01k",  # value before key
        b"\x0a\x01k\x12\x05\x0a\x03abc\x0a\x01j",  # a second key: the last wins
        b"\x0a\x81\x00k\x12\x05\x0a\x03abc",  # an over-long length varint
        b"\x0a\x01k\x12\x07\x0a\x03abc\x18\x05",  # two values in one AnyValue: the last wins
        b"\x0a\x01k\x12\x03\x18\x05\x00",  # trailing bytes after the varint
        b"\x0a\x01k\x12\x02\x0a\x05",  # a string running past the end
        b"\x0a\x01k\x12\x0b\x18" + b"\xff" * 10,  # a varint too long for 64 bits
        b"\x0a\x01k\x12\x01\x18",  # a tag without its value
        b"\x0a\x01k\x12\x02\x18\x80",  # a varint cut short
        b"\x0a\x01k\x12\x03\x18\x05\x01",  # one-byte varint, then a stray byte
        b"\x0a\x01k\x12\x03\x18\x85\x01",  # two-byte varint
        b"\x0a\x01k\x12\x04\x18\x85\x81\x01",  # three-byte varint
        b"\x0a\x01k\x12\x0b\x18" + b"\xff" * 9 + b"\x01",  # -1
        b"\x0a\x01k\x12\x02\x0a\x00",  # empty string
        b"\x0a\x01k\x12\x00",  # empty value
        b"\x0a\x02\xff\xfe\x12\x02\x18\x01",  # invalid UTF-8 key
        b"\x0a\x01k\x12\x04\x0a\x02\xc3\x28",  # invalid UTF-8 value
    ],
)
def test_fast_path_leaves_unusual_layouts_to_protobuf(data: bytes) -> None:
    assert fast(data) == reference(data)


def test_body_text() -> None:
    assert body_text(AnyValue(string_value="hi").SerializeToString(), 100) == '"hi"'
    assert body_text(b"", 100) is None
    assert body_text(AnyValue(string_value="x" * 12).SerializeToString(), 10) == json_text("x" * 10)
    with pytest.raises(RecordRejected, match="body: invalid UTF-8 in string_value"):
        body_text(b"\x0a\x01\xff", 100)


def _cut(text: str, max_bytes: int) -> str:
    return text.encode()[:max_bytes].decode("utf-8", "ignore")


def body_reference(data: bytes, max_bytes: int) -> str | None:
    """``body_text`` through protobuf alone, or "rejected"."""
    try:
        value = json_value(AnyValue.FromString(data))
    except DecodeError:
        return "rejected"
    if value is None:
        return None
    if has_nul(value):
        return "rejected"
    if isinstance(value, str):  # a string is cut
        return json_text(_cut(value, max_bytes))
    text = json_text(value)  # a structured body too long becomes its text, cut
    return json_text(_cut(text, max_bytes)) if len(text.encode()) > max_bytes else text


def body_fast(data: bytes, max_bytes: int) -> str | None:
    try:
        return body_text(data, max_bytes)
    except RecordRejected:
        return "rejected"


@settings(max_examples=1000, deadline=None)
@given(
    st.binary(max_size=300)
    | st.builds(
        bytes.__add__,
        st.sampled_from([b"\x0a", b"\x0a\x90", b"\x0a\x90\x02"]),
        st.binary(max_size=300),
    ),
    st.sampled_from([20, 10_000]),
)
def test_body_fast_path_agrees_with_protobuf(data: bytes, max_bytes: int) -> None:
    assert body_fast(data, max_bytes) == body_reference(data, max_bytes)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16383, 16384, 70000])
def test_string_bodies_of_every_length(size: int) -> None:
    data = AnyValue(string_value="é" * size).SerializeToString()
    assert body_fast(data, 10**6) == body_reference(data, 10**6) == json_text("é" * size)


def test_sorted_lists_are_cached_whole_and_bounded() -> None:
    e = encoder(entries=4)  # two generations of 2 lists each
    labels = [raw("room", string_value="a"), raw("floor", int_value=1)]
    first = e.encode_sorted(labels)
    assert first == ('{"floor":1,"room":"a"}', None)
    assert e.encode_sorted(list(labels)) is first  # equal bytes: the cached answer
    for i in range(20):
        assert e.encode_sorted([raw("n", int_value=i), *labels])[0].startswith('{"floor":1,"n"')
    assert len(e._sorted) <= 2 and len(e._old_sorted) <= 2
    big = [raw("sql", string_value="x" * 2000)]
    assert e.encode_sorted(big) == e.encode_sorted(big)
    assert tuple(big) not in e._sorted and tuple(big) not in e._old_sorted
