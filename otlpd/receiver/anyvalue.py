"""OTLP ``AnyValue`` and attribute lists as JSON text for PostgreSQL ``jsonb``.

Mapping: string, bool and int as themselves, double as a number (NaN and the infinities,
which ``jsonb`` refuses, as the strings "NaN", "Infinity", "-Infinity"), bytes as base64,
array as a list, kvlist as an object, an empty value as null. Text is compact and objects
nested in values have sorted keys, so equal attributes give equal text.

Attribute lists arrive as raw ``KeyValue`` bytes (see ``messages``). ``AttributeEncoder``
turns each into a JSON fragment ``"key":value`` once, caches it per bytes, and joins a
record's fragments; a record whose attributes are all cached costs a dictionary lookup
per attribute, against ~0.5 µs for walking the protobuf wrappers of one.

What may be stored is decided where a fragment is made, so that a cached fragment costs
nothing more (``ValueRules``): strings and bytes longer than the value limit are cut to
it (UTF-8 bytes, on a character boundary), arrays and kvlists nested deeper than the
depth limit become null, and a ``redaction.Redactor`` masks secrets and client IPs. An
attribute list longer than the count limit keeps its first attributes (the caller adds
the others to its dropped count), as the OpenTelemetry SDKs' attribute limits do.
Envelope values (``envelope``) are kept exactly as sent, or refused when longer than
their indexed column allows: cutting or masking an id would merge two into one.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import Final

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otlpd.envelope import (
    NOTHING_FOUND,
    PROJECT,
    EnvelopeKeys,
    Found,
    envelope_value,
    key_safe_project,
)
from otlpd.receiver import salvage
from otlpd.receiver.redaction import CLIENT_IP, PLAIN, REDACTED, SECRET, Count, Redactor, ignore
from otlpd.receiver.rejections import RecordRejected

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]

_INF: Final = float("inf")
_UNLIMITED: Final = 1 << 62
_NUL_ESCAPE: Final = "\\u0000"

# Fragments of attributes up to this size are cached: short values (methods, routes, status
# codes, host names) repeat across records; long ones (URLs, statements) rarely do.
CACHEABLE_BYTES: Final = 256
CACHE_ENTRIES: Final = 16_384
# encode_sorted caches attribute lists up to this many raw bytes (a series' labels).
_SORTED_CACHEABLE_BYTES: Final = 1024
DEFAULT_MAX_DEPTH: Final = 8

json_text = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, sort_keys=True, check_circular=False
).encode
"""Compact JSON text of a ``JsonValue`` (what ``json.dumps`` gives with those options)."""


def finite(x: float) -> float | str:
    """``x``, or the name of a NaN or an infinity, which JSON numbers cannot hold."""
    if x - x == 0.0:  # false for NaN and both infinities only
        return x
    if math.isnan(x):
        return "NaN"
    return "Infinity" if x == _INF else "-Infinity"


def json_value(value: AnyValue) -> JsonValue:
    """The JSON value of an OTLP ``AnyValue``."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return finite(value.double_value)
    if which == "array_value":
        return [json_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: json_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    # Empty, or a string_value_strindex: an index into a profiles dictionary that other
    # signals do not have.
    return None


def scalar_text(value: JsonValue) -> str:
    """``json_text(value)``, faster for the scalars that most values are."""
    if isinstance(value, str):
        return encode_basestring(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value)
    return json_text(value)


def has_nul(value: JsonValue) -> bool:
    """True if a string (or key) in ``value`` holds U+0000, which PostgreSQL cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    if isinstance(value, dict):
        return any("\x00" in k or has_nul(v) for k, v in value.items())
    return False


def nul_in_text(text: str, value: JsonValue) -> bool:
    """``has_nul(value)`` given ``text = json_text(value)``: cheap when the answer is no.

    JSON escapes U+0000 as ``\\u0000``, so its absence from the text proves the absence of
    NUL; its presence may also be an escaped backslash followed by "u0000".
    """
    return _NUL_ESCAPE in text and has_nul(value)


def cut_utf8(text: str, limit: int) -> str | None:
    """``text`` cut to at most ``limit`` UTF-8 bytes on a character boundary; None if it
    fits (cheap for a short text: a character is at most 4 bytes)."""
    if len(text) <= limit // 4:
        return None
    data = text.encode()
    if len(data) <= limit:
        return None
    # Only the last character can be cut short, and "ignore" drops its bytes.
    return data[:limit].decode("utf-8", "ignore")


class ValueRules:
    """What a stored value may be: strings and bytes cut to ``max_value_bytes``, arrays and
    kvlists nested deeper than ``max_depth`` replaced by null (their place kept, so an
    array keeps its length), secrets redacted by ``redactor`` (None: none).

    ``truncated`` counts each value cut (``"value"``, ``"depth"``, ``"body"``); the
    redactor counts its own. Both count where the value is made: once per fragment made,
    not per use of a cached one.
    """

    __slots__ = ("_truncated", "max_depth", "max_value", "redactor")

    def __init__(
        self,
        max_value_bytes: int,
        max_depth: int = DEFAULT_MAX_DEPTH,
        redactor: Redactor | None = None,
        truncated: Count = ignore,
    ) -> None:
        self.max_value = max_value_bytes
        self.max_depth = max_depth
        self.redactor = redactor if redactor is not None and redactor.acts else None
        self._truncated = truncated

    def scalar(self, key: str, value: str | int | float) -> JsonValue:
        """The stored value of a short scalar attribute (needs no cut): redacted."""
        redactor = self.redactor
        if redactor is None:
            return value
        kind = redactor.kind(key)
        if kind == SECRET:
            redactor.redacted_key()
            return REDACTED
        if value.__class__ is str:
            if kind == CLIENT_IP:
                value = redactor.anonymize(value)
            if redactor.masks:
                value = redactor.mask(value)
        return value

    def attribute(self, key: str, value: AnyValue) -> JsonValue:
        """The stored value of any attribute: cut and redacted."""
        redactor = self.redactor
        kind = PLAIN if redactor is None else redactor.kind(key)
        if kind == SECRET:
            redactor.redacted_key()  # type: ignore[union-attr]
            return self._redacted(value, 1)
        return self.walk(value, self.max_value, 1, kind == CLIENT_IP)

    def walk(self, value: AnyValue, limit: int, depth: int, ip: bool) -> JsonValue:
        """``json_value(value)`` with the rules applied; ``value`` is at ``depth`` (1: an
        attribute's value, a body), ``ip`` says its strings are client addresses."""
        which = value.WhichOneof("value")
        if which == "string_value":
            return self.text(value.string_value, limit, ip)
        if which == "int_value":
            return value.int_value
        if which == "bool_value":
            return value.bool_value
        if which == "double_value":
            return finite(value.double_value)
        if which == "array_value":
            if depth > self.max_depth:
                self._truncated("depth")
                return None
            return [self.walk(v, limit, depth + 1, ip) for v in value.array_value.values]
        if which == "kvlist_value":
            if depth > self.max_depth:
                self._truncated("depth")
                return None
            return {
                kv.key: self._member(kv.key, kv.value, limit, depth + 1)
                for kv in value.kvlist_value.values
            }
        if which == "bytes_value":
            data = value.bytes_value
            if len(data) > limit:
                data = data[:limit]
                self._truncated("value")
            return base64.b64encode(data).decode("ascii")
        return None  # empty, or a profiles string_value_strindex

    def _member(self, key: str, value: AnyValue, limit: int, depth: int) -> JsonValue:
        redactor = self.redactor
        kind = PLAIN if redactor is None else redactor.kind(key)
        if kind == SECRET:
            redactor.redacted_key()  # type: ignore[union-attr]
            return self._redacted(value, depth)
        return self.walk(value, limit, depth, kind == CLIENT_IP)

    def _redacted(self, value: AnyValue, depth: int) -> JsonValue:
        """What stands for a secret ``value`` at ``depth``: an array stays an array (of
        one redacted string), unless it lies deeper than arrays may, where the depth cut
        applies as to any array (found by hypothesis: ``[{"TOKEN": []}]`` was stored one
        level deeper than ``max_depth`` allows)."""
        if value.WhichOneof("value") != "array_value":
            return REDACTED
        if depth > self.max_depth:
            self._truncated("depth")
            return None
        return [REDACTED]

    def text(self, text: str, limit: int, ip: bool = False) -> str:
        """A string value redacted, then cut to ``limit`` bytes (masked first, so that a
        secret across the cut is masked whole)."""
        redactor = self.redactor
        if redactor is not None:
            if ip:
                text = redactor.anonymize(text)
            if redactor.masks:
                text = redactor.mask(text)
        cut = cut_utf8(text, limit)
        if cut is None:
            return text
        self._truncated("value")
        return cut

    def body(self, raw: bytes, max_bytes: int) -> str | None:
        """The JSON text of a log body given as serialized ``AnyValue``; None when empty.

        A string body longer than ``max_bytes`` (UTF-8, before JSON escaping) is cut to
        it. A structured body whose JSON text is longer becomes a string: the first
        ``max_bytes`` of that text (cutting its strings instead would not bound it: a
        body may hold any number of them). Raises ``RecordRejected`` for a body that is
        malformed or holds a NUL.
        """
        text: str | None = None
        # Most bodies are a string (field 1) whose length covers the rest: read it directly.
        n = len(raw)
        if n > 1 and raw[0] == 0x0A:
            length = raw[1]
            start = 2
            if length > 0x7F:  # a longer length: two bytes are read here, more are not
                if n > 2 and raw[2] < 0x80:
                    length = (length & 0x7F) | raw[2] << 7
                    start = 3
                else:
                    length = -1
            if length == n - start:
                # Not contextlib.suppress: it costs ~0.3 µs per body (bench.decode, logs).
                try:
                    text = raw[start:].decode()
                except UnicodeDecodeError:
                    text = None  # protobuf says where
        value: JsonValue
        if text is not None:
            redactor = self.redactor
            if redactor is not None and redactor.masks:
                text = redactor.mask(text)
            value = text
        else:
            try:
                body = AnyValue.FromString(raw)
            except DecodeError:
                raise RecordRejected(
                    "invalid body", f"body: {salvage.explain(raw, AnyValue.DESCRIPTOR)}"
                ) from None
            value = self.walk(body, _UNLIMITED, 1, False)
            if value is None:
                return None
        if value.__class__ is str:
            if "\x00" in value:
                raise RecordRejected("NUL character", "body contains a NUL character")
            if len(value) > max_bytes // 4:
                cut = cut_utf8(value, max_bytes)
                if cut is not None:
                    self._truncated("body")
                    value = cut
            return encode_basestring(value)
        text = scalar_text(value)
        if nul_in_text(text, value):
            raise RecordRejected("NUL character", "body contains a NUL character")
        cut = cut_utf8(text, max_bytes)
        if cut is not None:
            self._truncated("body")
            return encode_basestring(cut)
        return text


_PLAIN_RULES: Final = ValueRules(_UNLIMITED, _UNLIMITED)


def body_text(raw: bytes, max_bytes: int, rules: ValueRules = _PLAIN_RULES) -> str | None:
    """``rules.body(raw, max_bytes)``: by default cut to ``max_bytes`` only."""
    return rules.body(raw, max_bytes)


def _short(text: str) -> str:
    return repr(text if len(text) <= 64 else text[:61] + "...")


class _EnvelopeFragment(str):
    """The fragment of an envelope attribute, with what it names.

    Its text has a tab after the colon. A tab never occurs in compact JSON otherwise (it
    is escaped inside strings), so one ``"\\t" in text`` per record tells whether any of
    its attributes is an envelope one; the tab is removed before the text is stored.
    """

    slot: int
    rank: int
    found: Found  # its value in its slot, None in the others


class _Fragments(dict[bytes, str]):
    """The fragment cache: ``fragments[raw]`` is the fragment of ``raw``, made on a miss.

    A lookup through ``dict.__getitem__`` stays in C when it hits, which makes
    ``map(fragments.__getitem__, raws)`` the cheapest walk of an attribute list; a miss
    calls ``__missing__``, which makes the fragment and keeps it if it may repeat.
    """

    __slots__ = (
        "_cacheable",
        "_double_keys",
        "_entries",
        "_envelope_limits",
        "_kind",
        "_mask",
        "_max_value",
        "_old",
        "_rules",
        "_slots",
    )

    def __init__(
        self,
        keys: EnvelopeKeys,
        rules: ValueRules,
        entries: int,
        envelope_limits: tuple[int, int, int, int],
    ) -> None:
        super().__init__()
        self._slots = keys.slots()
        self._envelope_limits = envelope_limits
        max_value_bytes = rules.max_value
        self._max_value = max_value_bytes
        self._rules = rules
        # What a key is to the redactor (None: nothing is redacted), and the masking of a
        # text (None: none), taken out of the redactor so that a miss calls no more
        # Python than the masking itself (bench.decode, spans).
        redactor = rules.redactor
        self._kind = redactor.kind if redactor is not None else None
        self._mask = redactor.mask if redactor is not None and redactor.masks else None
        self._cacheable = min(CACHEABLE_BYTES, max_value_bytes)
        self._entries = entries
        # The bytes of a double attribute but its 8 value bytes -> its key's text and ":".
        self._double_keys: dict[bytes, str] = {}
        # The previous generation: when the cache fills it becomes this, and what is still
        # used moves back on its next hit. Clearing instead made every fragment miss at
        # once after each fill, which values unique per record (user ids under churn,
        # URL paths) caused every few thousand records (bench "spans, user churn").
        self._old: dict[bytes, str] = {}

    def _keep(self, raw: bytes, fragment: str) -> None:
        if len(self) >= self._entries:
            self._old = dict(self)
            self.clear()
        self[raw] = fragment

    def __missing__(self, raw: bytes) -> str:
        known = self._old.get(raw)
        if known is not None:
            self._keep(raw, known)
            return known
        n = len(raw)
        # A double is a measurement, a new value nearly every time, under a key that
        # repeats: once its key is known (from a double in the layout read below, with no
        # NUL in it), the fragment is the key's text and the number's. This halves the
        # cost of the miss that nearly every record has.
        if n >= 13 and raw[n - 9] == 0x21:
            head = self._double_keys.get(raw[: n - 8])
            if head is not None:
                x = _unpack_double(raw, n - 8)[0]
                if x - x == 0.0:  # finite
                    return head + float.__repr__(x)
        key = ""
        value: JsonValue = None
        value_text = None
        double_head = False
        # Most attributes are in the layout every SDK writes for short ones: the key, then
        # the value, each with a one-byte length, and a value that is a string (one-byte
        # length), an int or a double. Reading that layout here costs about half of
        # parsing with protobuf and walking the wrappers; anything else goes to protobuf.
        if 5 <= n <= self._max_value and raw[0] == 0x0A and raw[1] < 0x80:  # field 1: key
            key_end = raw[1] + 2
            # field 2: value, whose one-byte length covers the rest
            value_length = n - key_end - 2  # a tag and at least one byte after it
            if (
                value_length > 1
                and raw[key_end] == 0x12
                and raw[key_end + 1] == value_length < 0x80
            ):
                tag = raw[key_end + 2]
                start = key_end + 3
                try:
                    if tag == 0x0A:  # string_value, with a one-byte length
                        if raw[start] == n - start - 1:
                            text = raw[start + 1 :].decode()
                            value, value_text = text, encode_basestring(text)
                    elif tag == 0x21:  # double_value, 8 bytes little-endian
                        if n == start + 8:
                            x = _unpack_double(raw, start)[0]
                            if x - x == 0.0:  # finite
                                value, value_text = x, float.__repr__(x)
                                double_head = True
                            else:
                                value = finite(x)
                                value_text = scalar_text(value)
                    elif tag == 0x18:  # int_value, a varint
                        first = raw[start]
                        if first < 0x80 and n == start + 1:
                            number: int | None = first
                        elif first >= 0x80 and n == start + 2 and raw[start + 1] < 0x80:
                            number = (first & 0x7F) | raw[start + 1] << 7
                        else:
                            number = _varint64(raw, start)
                        if number is not None:
                            value, value_text = number, int.__repr__(number)
                    if value_text is not None:
                        key = raw[2:key_end].decode()
                except UnicodeDecodeError:
                    value_text = None  # protobuf says where
                    double_head = False
        if value_text is None:
            key, value = self._parse(raw)
            value_text = scalar_text(value)
        elif self._kind is not None and (
            key not in self._slots or envelope_value(value) is None  # envelope: as sent
        ):
            if self._kind(key) != PLAIN:
                cleaned = self._rules.scalar(key, value)  # type: ignore[arg-type]
            elif self._mask is not None and value.__class__ is str:
                cleaned = self._mask(value)
            else:
                cleaned = value
            if cleaned is not value:
                value = cleaned
                value_text = scalar_text(cleaned)
                double_head = False
        key_text = encode_basestring(key)
        fragment = f"{key_text}:{value_text}"
        if _NUL_ESCAPE in fragment and ("\x00" in key or has_nul(value)):
            raise RecordRejected(
                "NUL character", f"attribute {_short(key)} contains a NUL character"
            )
        slot = self._slots.get(key)
        if slot is not None:
            named = envelope_value(value)
            if named is not None:
                # An envelope value lands in indexed columns, which PostgreSQL limits:
                # refused here, once per distinct value (a refused one is not cached).
                limit = self._envelope_limits[slot[0]]
                if len(named) > limit // 4 and len(named.encode()) > limit:
                    raise RecordRejected(
                        "value too long",
                        f"attribute {_short(key)} is {len(named.encode())} bytes, "
                        f"limit {limit} for an indexed value",
                    )
                if slot[0] == PROJECT and not key_safe_project(named):
                    # A project id is a key segment of the cold tier (project={id}).
                    raise RecordRejected(
                        "invalid project id",
                        f"attribute {_short(key)} may not contain '/', '\\', '=', '..' "
                        "or control characters",
                    )
                fragment = _EnvelopeFragment(f"{key_text}:\t{value_text}")
                fragment.slot, fragment.rank = slot
                found = list(NOTHING_FOUND)
                found[fragment.slot] = named
                fragment.found = (found[0], found[1], found[2], found[3])
        if double_head:
            double_keys = self._double_keys
            if len(double_keys) >= self._entries:
                double_keys.clear()
            double_keys[raw[: n - 8]] = f"{key_text}:"
            return fragment
        # Doubles are measurements, nearly never repeated: caching them would only evict.
        if n <= self._cacheable and value.__class__ is not float:
            self._keep(raw, fragment)
        return fragment

    def _parse(self, raw: bytes) -> tuple[str, JsonValue]:
        """``(key, stored value)`` of any ``KeyValue``, through protobuf."""
        try:
            kv = KeyValue.FromString(raw)
        except DecodeError:
            raise RecordRejected(
                "invalid attribute", f"attribute: {salvage.explain(raw, KeyValue.DESCRIPTOR)}"
            ) from None
        key = kv.key
        value = kv.value
        if key in self._slots:
            which = value.WhichOneof("value")
            if (which == "string_value" and value.string_value) or which == "int_value":
                return key, json_value(value)  # an envelope value: as sent
        return key, self._rules.attribute(key, value)


_unpack_double = struct.Struct("<d").unpack_from
_INT64_SIGN: Final = 1 << 63
_UINT64: Final = 1 << 64


def _varint64(data: bytes, start: int) -> int | None:
    """The int64 varint that fills ``data[start:]`` exactly, else None."""
    number = 0
    shift = 0
    end = len(data)
    if end - start > 10:
        return None
    for pos in range(start, end):
        byte = data[pos]
        number |= (byte & 0x7F) << shift
        if byte < 0x80:
            if pos + 1 != end:
                return None
            number &= _UINT64 - 1
            return number - _UINT64 if number >= _INT64_SIGN else number
        shift += 7
    return None


class AttributeEncoder:
    """Attribute lists (raw ``KeyValue`` bytes) to JSON object text, plus envelope values.

    One per ``Decoder`` and client-IP policy (its fragments are redacted accordingly);
    the cache is bounded (two generations of ``cache_entries`` fragments each) and safe to
    share between threads (plain dict operations). A list longer than ``max_attributes``
    keeps its first ``max_attributes`` (counted as ``"attributes"`` in ``truncated``);
    the other limits are ``ValueRules``'.
    """

    def __init__(
        self,
        keys: EnvelopeKeys,
        max_value_bytes: int,
        cache_entries: int = CACHE_ENTRIES,
        *,
        envelope_limits: tuple[int, int, int, int] = (_UNLIMITED,) * 4,
        max_attributes: int = _UNLIMITED,
        max_depth: int = DEFAULT_MAX_DEPTH,
        redactor: Redactor | None = None,
        truncated: Count = ignore,
    ) -> None:
        self._ranks = len(keys.slots())
        self.rules = ValueRules(max_value_bytes, max_depth, redactor, truncated)
        """What this encoder's values may be; its ``body`` is the log body's rule."""
        redactor = self.rules.redactor
        self.mask_name = redactor.name if redactor is not None and redactor.masks else None
        """Masks a span name, status message or event name; None when nothing is masked."""
        self.max_attributes = max_attributes
        self._truncated = truncated
        fragments = _Fragments(keys, self.rules, cache_entries, envelope_limits)
        self._fragment = fragments.__getitem__
        # The envelope values of a record's envelope fragments, when it has several (a
        # session and a user, typically): merging them costs ~1 µs, a lookup ~0.1 µs.
        # Equal fragment texts name the same key and value, so the key is sound.
        self._combined: dict[tuple[str, ...], Found] = {}
        self._combined_entries = cache_entries
        # encode_sorted's whole lists: raw KeyValue bytes -> its result, two generations.
        self._sorted: dict[tuple[bytes, ...], tuple[str, Found | None]] = {}
        self._old_sorted: dict[tuple[bytes, ...], tuple[str, Found | None]] = {}
        self._sorted_entries = max(1, cache_entries // 2)

    def encode(self, raws: Sequence[bytes]) -> tuple[str, Found | None]:
        """The JSON object of ``raws`` in their order, and the envelope values among them.

        Raises ``RecordRejected`` if an attribute is malformed or holds a NUL, or if an
        envelope value is longer than its slot's limit (``envelope_limits``, in ``Found``
        order: session, user, project, service).
        """
        if len(raws) > self.max_attributes:
            raws = raws[: self.max_attributes]
            self._truncated("attributes")
        fragments = list(map(self._fragment, raws))
        text = ",".join(fragments)
        if "\t" in text:
            return "{" + text.replace("\t", "") + "}", self._found(fragments)
        return f"{{{text}}}", None

    def encode_sorted(self, raws: Sequence[bytes]) -> tuple[str, Found | None]:
        """Like ``encode``, with the attributes in a canonical order (for series identity).

        Whole lists are cached: a data point's attributes name its series, and a series
        repeats in every export, where a span's attributes nearly never repeat as a whole
        (py-spy, bench "metrics": the sort and join were 13% of otlpd's CPU). Only short
        lists, in two generations like the fragments.
        """
        if len(raws) > self.max_attributes:
            raws = raws[: self.max_attributes]
            self._truncated("attributes")
        key = tuple(raws)
        sorted_lists = self._sorted
        hit = sorted_lists.get(key)
        if hit is None:
            hit = self._old_sorted.get(key)
            if hit is None:
                fragments = sorted(map(self._fragment, key))
                text = ",".join(fragments)
                if "\t" in text:
                    hit = "{" + text.replace("\t", "") + "}", self._found(fragments)
                else:
                    hit = f"{{{text}}}", None
                if sum(map(len, key)) > _SORTED_CACHEABLE_BYTES:
                    return hit
            if len(sorted_lists) >= self._sorted_entries:
                self._old_sorted = sorted_lists
                self._sorted = sorted_lists = {}
            sorted_lists[key] = hit
        return hit

    def dropped(self, raws: Sequence[bytes], sent: int) -> int:
        """A list's dropped attributes count: ``sent`` plus what ``encode`` drops of it."""
        excess = len(raws) - self.max_attributes
        return sent + excess if excess > 0 else sent

    def _found(self, fragments: list[str]) -> Found:
        named = [f for f in fragments if f.__class__ is _EnvelopeFragment]
        if len(named) == 1:
            return named[0].found
        if len(named) == 2:
            # A session and a user, typically: merged directly, without the cache, whose
            # key would be new for every record when users churn.
            a, b = named
            if a.slot != b.slot:
                x, y = a.found, b.found
                return (x[0] or y[0], x[1] or y[1], x[2] or y[2], x[3] or y[3])
        key = tuple(named)
        combined = self._combined
        found = combined.get(key)
        if found is None:
            found = self._combine(named)
            if len(combined) >= self._combined_entries:
                combined.clear()
            combined[key] = found
        return found

    def _combine(self, named: list[_EnvelopeFragment]) -> Found:
        found: list[str | None] = list(NOTHING_FOUND)
        ranks = [self._ranks] * len(found)
        for f in named:
            if f.rank <= ranks[f.slot]:  # the last of a repeated key wins, as in jsonb
                ranks[f.slot] = f.rank
                found[f.slot] = f.found[f.slot]
        return (found[0], found[1], found[2], found[3])
