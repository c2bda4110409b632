"""Wire-level salvage of a request that the protobuf parser refused as a whole.

upb refuses a whole message when a single string in it is not valid UTF-8, so one bad
span name would cost every span of the request. When that happens the decoder splits the
request here, by reading the wire format itself, into resources, scopes and records,
parses each on its own and refuses only the parts that fail. This runs only on failure:
it is written to be plain, not fast.

Every OTLP Export request has the same shape, which is all this module knows::

    Export*ServiceRequest { repeated Resource* resources = 1; }
    Resource* { Resource resource = 1; repeated Scope* scopes = 2; string schema_url = 3; }
    Scope* { InstrumentationScope scope = 1; repeated <Record> records = 2; string schema_url = 3; }
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor

VARINT: Final = 0
FIXED64: Final = 1
LENGTH_DELIMITED: Final = 2
FIXED32: Final = 5
MAX_DEPTH: Final = 100  # upb's limit on nested messages, which it refuses beyond


class WireError(ValueError):
    """The bytes are not protobuf wire format."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yields ``(field number, wire type, value)`` of each field in ``data``.

    The value is an int for varints, bytes otherwise. Raises ``WireError`` where the bytes
    stop being wire format (groups, deprecated and unused by OTLP, count as such).
    """
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos}")
        value: int | bytes
        if wire_type == VARINT:
            value, pos = _varint(data, pos)
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if pos + size > end:
                raise WireError(f"truncated field {number}")
            value, pos = data[pos : pos + size], pos + size
        elif wire_type == LENGTH_DELIMITED:
            size, pos = _varint(data, pos)
            if pos + size > end:
                raise WireError(f"field {number} runs past the end")
            value, pos = data[pos : pos + size], pos + size
        else:
            raise WireError(f"wire type {wire_type} of field {number} at byte {pos}")
        yield number, wire_type, value


def embedded(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The length-delimited fields of ``data``; other fields are skipped (unknown to us)."""
    for number, wire_type, value in fields(data):
        if wire_type == LENGTH_DELIMITED:
            assert isinstance(value, bytes)
            yield number, value


@dataclass(slots=True)
class ScopePart:
    """One ``Scope*`` message, split but not parsed."""

    index: int
    scope: bytes = b""  # every occurrence concatenated: protobuf merges repeated ones
    schema_url: bytes = b""
    records: list[bytes] = field(default_factory=list)
    error: str | None = None  # where the bytes broke off; records after that are lost


@dataclass(slots=True)
class ResourcePart:
    """One ``Resource*`` message, split but not parsed."""

    index: int
    resource: bytes = b""
    schema_url: bytes = b""
    scopes: list[ScopePart] = field(default_factory=list)
    error: str | None = None


def split(payload: bytes) -> list[ResourcePart]:
    """Splits an Export request into resources, scopes and records.

    Raises ``WireError`` if the request itself is not wire format; a resource or scope
    whose bytes break off keeps what came before and says where in its ``error``.
    """
    parts = [
        _resource(index, data)
        for index, data in enumerate(value for number, value in embedded(payload) if number == 1)
    ]
    return parts


def _resource(index: int, data: bytes) -> ResourcePart:
    part = ResourcePart(index)
    try:
        for number, value in embedded(data):
            if number == 1:
                part.resource += value
            elif number == 2:
                part.scopes.append(_scope(len(part.scopes), value))
            elif number == 3:
                part.schema_url = value
    except WireError as e:
        part.error = f"malformed protobuf: {e}"
    return part


def _scope(index: int, data: bytes) -> ScopePart:
    part = ScopePart(index)
    try:
        for number, value in embedded(data):
            if number == 1:
                part.scope += value
            elif number == 2:
                part.records.append(value)
            elif number == 3:
                part.schema_url = value
    except WireError as e:
        part.error = f"malformed protobuf: {e}"
    return part


def count_embedded(data: bytes, numbers: tuple[int, ...]) -> int:
    """How many length-delimited fields numbered ``numbers`` ``data`` holds (best effort)."""
    count = 0
    try:
        for number, _ in embedded(data):
            count += number in numbers
    except WireError:
        pass
    return count


def explain(data: bytes, descriptor: Descriptor) -> str:
    """Why ``data`` does not parse as ``descriptor``'s message, for an error message.

    Names the first string field that is not valid UTF-8 (the usual cause), with its path
    ("attributes[2].value.string_value"), the place where the wire format breaks, or a
    nesting deeper than the parser accepts.
    """
    return _explain(data, descriptor, "") or "malformed protobuf"


def _explain(data: bytes, descriptor: Descriptor, path: str, depth: int = 0) -> str | None:
    if depth >= MAX_DEPTH:
        return f"messages nested more than {MAX_DEPTH} deep"
    seen: dict[int, int] = {}
    try:
        for number, value in embedded(data):
            f = descriptor.fields_by_number.get(number)
            if f is None:
                continue
            index = seen[number] = seen.get(number, -1) + 1
            name = f"{path}{f.name}[{index}]" if f.is_repeated else f"{path}{f.name}"
            if f.type == FieldDescriptor.TYPE_STRING:
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    return f"invalid UTF-8 in {name}"
            elif f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type is not None:
                found = _explain(value, f.message_type, f"{name}.", depth + 1)
                if found is not None:
                    return found
    except WireError as e:
        return f"malformed protobuf in {path.rstrip('.') or 'message'}: {e}"
    return None
