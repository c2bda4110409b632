"""OTLP/JSON: the protobuf JSON mapping with OTLP's deviations, to and from protobuf.

OTLP/HTTP carries a request either as protobuf or as JSON; a JSON request is turned into
the protobuf request here and serialized, so one decoder (``receiver.decode``) stores
both. The OTLP specification ("JSON Protobuf Encoding") departs from the proto3 JSON
mapping in two ways, which ``google.protobuf.json_format`` does not know:

* ``traceId``, ``spanId`` and ``parentSpanId`` (of spans, links, log records and
  exemplars) are hex strings, case-insensitive, not base64;
* enums are integers (the names are accepted too: harmless).

The rest is proto3 JSON: lowerCamelCase keys (the proto field names are accepted too),
64-bit integers as strings or numbers, bytes as base64 (standard or URL-safe, padded or
not), doubles as numbers or "NaN", "Infinity", "-Infinity", null as absent, and unknown
fields ignored, as the spec requires.

Why not ``json_format.ParseDict``: it costs ~100-150 us a span of eight attributes, ten
times the decode itself. Here a table per message type, built once from the descriptors,
turns the parsed JSON into constructor arguments, and the protobuf constructor (upb, in
C) builds each record in one call. Measured on this 2-core box, 2,000 such spans (1.2 MB
of JSON): 50-70 ms, against 270-390 ms for ``json_format`` in the same runs
(tests/receiver/test_otlp_json.py checks that both read every document alike). Memory:
the parsed document (7.5 times the body) is let go record by record as the request is
built (``_Level``), so the peak is the document, plus the message it turned into.

An id that is not a hex string cannot be stored, but it spoils one record only: it
becomes ``NOT_HEX`` (one byte, a length no id has), which the decoder rejects with its
record through partial success, and the answer says why first (``JsonRequest.warning``).
Anything else that breaks the mapping (not JSON, a string where a number belongs, a
oneof set twice, nesting past ``MAX_DEPTH``) refuses the request: ``InvalidRequest``,
whose message names the field (``resourceSpans[0].scopeSpans[0].spans[3].kind``).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, cast

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlpd.errors import InvalidRequest
from storage.model import Signal

# The bytes fields OTLP/JSON writes in hex, in every message that has them.
HEX_ID_FIELDS: Final = frozenset({"trace_id", "span_id", "parent_span_id"})
# What an id that is not a hex string becomes: non-empty and of a length no id has, so
# the decoder rejects its record (an empty id would mean "absent", valid where optional).
NOT_HEX: Final = b"\x00"
# Message nesting (AnyValue in AnyValue ...) beyond this is refused: protobuf's own
# parser stops at 100 levels, so the decoder could not read the request back anyway.
MAX_DEPTH: Final = 96

REQUESTS: Final[dict[str, type[Message]]] = {
    Signal.TRACES: ExportTraceServiceRequest,
    Signal.LOGS: ExportLogsServiceRequest,
    Signal.METRICS: ExportMetricsServiceRequest,
}

_INT_RANGES: Final = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_SPECIAL_DOUBLES: Final = {
    "NaN": float("nan"),
    "Infinity": float("inf"),
    "-Infinity": -float("inf"),
}
_URLSAFE: Final = str.maketrans("-_", "+/")


@dataclass(frozen=True, slots=True)
class JsonRequest:
    """A JSON request as the serialized protobuf request, and what to tell the client
    about it in the partial success ("" when nothing)."""

    payload: bytes
    warning: str


def parse_request(signal: str, body: bytes) -> JsonRequest:
    """The OTLP/JSON ``body`` of a ``signal`` Export as its serialized protobuf request.

    Raises ``InvalidRequest`` (naming the field) when ``body`` is not OTLP/JSON. CPU-bound:
    50-80 ms a MiB of spans; the caller runs a large body in a thread.
    """
    try:
        # The standard library's parser, not orjson's: as fast here (~15 ms for 1.2 MB
        # of spans, against ~12), and its peak is the document (8.5 times the body), where
        # orjson's holds a copy of its own as well (19.5 times).
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidRequest(f"the body is not JSON: {exc}") from None
    request = REQUESTS[signal]()
    state = _State()
    try:
        if type(document) is not dict:
            raise _Bad(f"expected an object, got {_kind(document)}")
        top = _LEVELS[signal]
        for key, items in document.items():
            if key in top.keys and items is not None:
                try:
                    _fill(getattr(request, top.name), top, items, state)
                except _Bad as bad:
                    bad.path.append(key)
                    raise
    except _Bad as bad:
        raise InvalidRequest(f"not OTLP/JSON: {bad.where()}{bad.problem}") from None
    except (ValueError, TypeError) as exc:  # the tables check first: a gap in them
        raise InvalidRequest(f"not OTLP/JSON: {exc}") from None
    return JsonRequest(request.SerializeToString(), state.warning())


def to_json(message: Message) -> bytes:
    """A response (``Export*ServiceResponse``, ``google.rpc.Status``) as JSON: camelCase
    keys, 64-bit integers as strings, as the proto3 mapping writes them."""
    return orjson.dumps(json_format.MessageToDict(message, use_integers_for_enums=True))


def to_otlp_json(request: Message) -> dict[str, Any]:
    """An OTLP request as OTLP/JSON would carry it (hex ids, integer enums), for clients
    that send JSON (tests, tools)."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    _hexify(_descriptor(request), document)
    return document


# --- JSON to constructor arguments ----------------------------------------------------


class _Bad(Exception):
    """A value the mapping cannot take; ``path`` is filled in on the way out."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []  # innermost first: "kind", "[3]", "spans", ...

    def where(self) -> str:
        text = ""
        for part in reversed(self.path):
            text += part if part.startswith("[") or not text else f".{part}"
        return f"{text}: " if text else ""


class _Skip(Exception):
    """An enum name this version does not know: the field is left unset, as for an
    unknown field (json_format does the same with ``ignore_unknown_fields``)."""


class _State:
    """What one parse collects on the way: its depth, and the ids that were not hex."""

    __slots__ = ("depth", "first_not_hex", "not_hex")

    def __init__(self) -> None:
        self.depth = 0
        self.not_hex = 0
        self.first_not_hex = ""

    def warning(self) -> str:
        if not self.not_hex:
            return ""
        ids = "an id" if self.not_hex == 1 else f"{self.not_hex} ids"
        return (
            f"OTLP/JSON: {ids} not hex ({self.first_not_hex}); a record with such an id is"
            f" rejected (below, as an id {len(NOT_HEX)} byte long)"
        )


Convert = Callable[[Any, _State], Any]


class _Field(NamedTuple):
    name: str  # the constructor argument
    convert: Convert
    repeated: bool
    oneof: str | None  # a real oneof (not proto3 optional's synthetic one)


def _message(fields: dict[str, _Field], value: Any, state: _State) -> dict[str, Any]:
    """The constructor arguments of one message from its JSON object."""
    if type(value) is not dict:
        raise _Bad(f"expected an object, got {_kind(value)}")
    state.depth += 1
    if state.depth > MAX_DEPTH:
        raise _Bad(f"nested more than {MAX_DEPTH} messages deep")
    arguments: dict[str, Any] = {}
    oneofs: set[str] | None = None
    for key, item in value.items():
        field = fields.get(key)
        if field is None or item is None:  # unknown fields are ignored; null is absent
            continue
        try:
            if field.repeated:
                if type(item) is not list:
                    raise _Bad(f"expected an array, got {_kind(item)}")
                convert = field.convert
                converted: list[Any] = []
                append = converted.append
                try:
                    for element in item:
                        append(convert(element, state))
                except _Bad as bad:
                    bad.path.append(f"[{len(converted)}]")
                    raise
                arguments[field.name] = converted
            else:
                arguments[field.name] = field.convert(item, state)
        except _Skip:
            continue
        except _Bad as bad:
            bad.path.append(key)
            raise
        if field.oneof is not None:
            if oneofs is None:
                oneofs = set()
            elif field.oneof in oneofs:
                raise _Bad(f"more than one field of oneof {field.oneof!r} is set")
            oneofs.add(field.oneof)
    state.depth -= 1
    return arguments


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _string(value: Any, _: _State) -> str:
    if type(value) is str:
        return value
    raise _Bad(f"expected a string, got {_kind(value)}")


def _boolean(value: Any, _: _State) -> bool:
    if type(value) is bool:
        return value
    raise _Bad(f"expected true or false, got {_kind(value)}")


def _integer(lo: int, hi: int) -> Convert:
    def convert(value: Any, _: _State) -> int:
        kind = type(value)
        number: int
        if kind is int:
            number = value
        elif kind is str:  # 64-bit integers are strings in proto3 JSON
            try:
                number = int(value)
            except ValueError:
                raise _Bad(f"expected an integer, got {value[:32]!r}") from None
        elif kind is float and value.is_integer():
            number = int(value)
        else:
            raise _Bad(f"expected an integer, got {_kind(value)}")
        if lo <= number <= hi:
            return number
        raise _Bad(f"{number} is out of range {lo}..{hi}")

    return convert


def _double(value: Any, _: _State) -> float:
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if kind is str:
        special = _SPECIAL_DOUBLES.get(value)
        if special is not None:
            return special
        try:
            return float(value)
        except ValueError:
            raise _Bad(f"expected a number, got {value[:32]!r}") from None
    raise _Bad(f"expected a number, got {_kind(value)}")


def _enum(enum: EnumDescriptor) -> Convert:
    numbers = {value.name: value.number for value in enum.values}

    def convert(value: Any, _: _State) -> int:
        kind = type(value)
        if kind is int and -(2**31) <= value < 2**31:
            return int(value)  # open enums: any int32; the decoder checks the range
        if kind is str:
            number = numbers.get(value)
            if number is not None:
                return number
            try:
                return int(value)
            except ValueError:
                raise _Skip from None
        raise _Bad(f"expected an enum number, got {_kind(value)}")

    return convert


def _base64(value: Any, _: _State) -> bytes:
    if type(value) is not str:
        raise _Bad(f"expected a base64 string, got {_kind(value)}")
    text = value.translate(_URLSAFE)
    try:
        return binascii.a2b_base64(text + "=" * (-len(text) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        raise _Bad("not base64") from None


def _hex_id(json_name: str) -> Convert:
    def convert(value: Any, state: _State) -> bytes:
        if type(value) is str:
            try:
                return binascii.a2b_hex(value)
            except (binascii.Error, ValueError):
                pass
        state.not_hex += 1
        if state.not_hex == 1:
            shown = repr(value[:40]) if type(value) is str else _kind(value)
            state.first_not_hex = f"{json_name}: {shown}"
        return NOT_HEX

    return convert


class _Level(NamedTuple):
    """A list of the request's envelope (resources, scopes, or the records in a scope),
    built one element at a time: the JSON of an element is let go as soon as it is built
    (and a tree of constructor arguments exists for one record at a time, never for the
    whole request)."""

    name: str  # the list field, on the message that holds it
    keys: frozenset[str]  # its JSON and proto names
    fields: dict[str, _Field]  # of an element, but for the next level's list
    depth: int  # messages above an element (the request is 1)
    inner: _Level | None  # the level of the list in each element; None for records


def _fill(target: Any, level: _Level, items: Any, state: _State) -> None:
    """Appends the elements of the JSON array ``items`` to the repeated field ``target``."""
    if type(items) is not list:
        raise _Bad(f"expected an array, got {_kind(items)}")
    inner = level.inner
    add = target.add
    for i, item in enumerate(items):
        try:
            if type(item) is not dict:
                raise _Bad(f"expected an object, got {_kind(item)}")
            own, nested = item, []
            if inner is not None:
                nested = [(k, v) for k, v in item.items() if k in inner.keys and v is not None]
                if nested:
                    own = {k: v for k, v in item.items() if k not in inner.keys}
            state.depth = level.depth
            element = add(**_message(level.fields, own, state))
            for key, values in nested:
                assert inner is not None
                try:
                    _fill(getattr(element, inner.name), inner, values, state)
                except _Bad as bad:
                    bad.path.append(key)
                    raise
        except _Bad as bad:
            bad.path.append(f"[{i}]")
            raise
        items[i] = None  # this element's JSON is in the message now


_TABLES: dict[str, dict[str, _Field]] = {}


def _table(descriptor: Descriptor) -> dict[str, _Field]:
    """The fields of ``descriptor`` by JSON name and by proto name (built once; types
    that refer to themselves, AnyValue in ArrayValue, share the table being built)."""
    table = _TABLES.get(descriptor.full_name)
    if table is not None:
        return table
    table = _TABLES[descriptor.full_name] = {}
    for field in descriptor.fields:
        oneof = field.containing_oneof
        real_oneof = oneof.name if oneof is not None and len(oneof.fields) > 1 else None
        entry = _Field(field.name, _converter(field), field.is_repeated, real_oneof)
        table[field.json_name] = entry
        table[field.name] = entry
    return table


def _converter(field: FieldDescriptor) -> Convert:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        if field.message_type.GetOptions().map_entry:
            raise TypeError(f"{field.full_name}: map fields are not supported")
        sub = _table(field.message_type)
        return lambda value, state: _message(sub, value, state)
    if kind in _INT_RANGES:
        return _integer(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_STRING:
        return _string
    if kind == FieldDescriptor.TYPE_BOOL:
        return _boolean
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _double
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return _enum(field.enum_type)
    if kind == FieldDescriptor.TYPE_BYTES:
        return _hex_id(field.json_name) if field.name in HEX_ID_FIELDS else _base64
    raise TypeError(f"{field.full_name}: field type {kind} is not supported")


def _descriptor(message: Message | type[Message]) -> Descriptor:
    return cast(Descriptor, message.DESCRIPTOR)


def _levels(request: type[Message]) -> _Level:
    """The request's three lists (resources, their scopes, the scopes' records)."""
    names: list[tuple[str, Descriptor]] = []
    descriptor = _descriptor(request)
    for _ in range(3):
        (field,) = (f for f in descriptor.fields if f.is_repeated)
        assert field.message_type is not None
        names.append((field.name, descriptor))
        descriptor = field.message_type
    level: _Level | None = None
    for depth, (name, holder) in reversed(list(enumerate(names, 1))):
        field = holder.fields_by_name[name]
        assert field.message_type is not None
        element = _table(field.message_type)
        if level is not None:
            element = {k: v for k, v in element.items() if k not in level.keys}
        level = _Level(name, frozenset({name, field.json_name}), element, depth, level)
    assert level is not None
    return level


_LEVELS: Final = {signal: _levels(request) for signal, request in REQUESTS.items()}


# --- protobuf to OTLP/JSON ------------------------------------------------------------


def _hexify(descriptor: Descriptor, document: dict[str, Any]) -> None:
    """Rewrites, in place, the base64 ids MessageToDict wrote as OTLP/JSON's hex (under
    either name of their field)."""
    for field in descriptor.fields:
        for key in {field.json_name, field.name}:
            value = document.get(key)
            if value is None:
                continue
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                assert field.message_type is not None
                for item in value if field.is_repeated else (value,):
                    _hexify(field.message_type, item)
            elif field.type == FieldDescriptor.TYPE_BYTES and field.name in HEX_ID_FIELDS:
                document[key] = binascii.a2b_base64(value).hex()
