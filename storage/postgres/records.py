"""How the query side reads whole log records and spans: one column list each, one row type.

Every reader that returns records (search, context, tail, a trace's logs, a session's
timeline) selects ``LOG_COLUMNS`` ``FROM logs l`` with ``RESOURCE_JOIN``, so a record
reads the same wherever it comes from; likewise spans.

A log record has no key of its own (the hot tier stores a retried record twice, like
Loki and Tempo do), so its identity and its place in "newest first" is ``(time, place)``.
In the hot tier the place is the row's ctid, ``"(block,offset)"``: ``time`` picks the
partition and ``ctid`` the row in it. Rows are only ever appended and whole partitions
dropped, never updated, so a row keeps its ctid while it stays in the hot tier. In the
cold tier it is ``"c<object>.<row>"``: the manifest's ``object_id`` of the Parquet object
and the row's position in it (``query.cold_logs``); an object never changes.

Between tiers, at one microsecond, hot rows come after cold ones (``place_order``): a
partition's rows are in one tier or the other, so the two meet at one time only when a
late record made a partition again after its older rows were tiered.
"""

from __future__ import annotations

import base64
import struct
from datetime import datetime
from typing import Any, Final, NamedTuple

from storage.postgres.partitions import micros_from_datetime

# A microsecond count (a cursor, a record id) as timestamptz, exactly: no float on the way.
US_TO_TIME = "('epoch'::timestamptz + {} * interval '1 microsecond')"

RESOURCE_JOIN = (
    "LEFT JOIN resources r ON r.project_id = {alias}.project_id "
    "AND r.resource_id = {alias}.resource_id"
)

LOG_COLUMNS = (
    "l.time, l.ctid::text, l.time_unix_nano, l.observed_time_unix_nano, l.trace_id, "
    "l.span_id, l.flags, l.service_name, l.session_id, l.user_id, l.severity_number, "
    "l.severity_text, l.body, l.attributes, l.event_name, l.scope_name, r.attributes::text, "
    "l.resource_id"
)
LOGS_FROM = "logs l " + RESOURCE_JOIN.format(alias="l")

SPAN_COLUMNS = (
    "s.start_time_unix_nano, s.end_time_unix_nano, s.duration_ns, s.trace_id, s.span_id, "
    "s.parent_span_id, s.trace_state, s.service_name, s.session_id, s.user_id, s.name, "
    "s.kind, s.status_code, s.status_message, s.attributes, s.events, s.links, "
    "s.scope_name, r.attributes::text, s.resource_id"
)
SPANS_FROM = "spans s " + RESOURCE_JOIN.format(alias="s")


# The resource comes as JSON text with its id: many records share one resource, so the
# converter parses and builds it once per resource id (query.convert) instead of once
# per row. A resource id is a hash of the resource's content (storage/ids.py), so one id
# is one content in every project.


class LogRow(NamedTuple):
    """One row of ``LOG_COLUMNS``."""

    time: datetime
    place: str  # the row's place in its tier (above)
    time_unix_nano: int | None
    observed_time_unix_nano: int | None
    trace_id: bytes | None
    span_id: bytes | None
    flags: int | None
    service_name: str | None
    session_id: str | None
    user_id: str | None
    severity_number: int | None
    severity_text: str | None
    body: Any
    attributes: Any
    event_name: str | None
    scope_name: str | None
    resource: str | None  # the resource's attributes as JSON text (see above)
    resource_id: int

    @property
    def time_us(self) -> int:
        return micros(self.time)

    @property
    def id(self) -> str:
        return record_id(self.time_us, self.place)

    @property
    def key(self) -> tuple[int, int, int, int]:
        """The record's position in time order, comparable across tiers."""
        return (self.time_us, *place_order(self.place))


class SpanRow(NamedTuple):
    """One row of ``SPAN_COLUMNS``."""

    start_time_unix_nano: int | None
    end_time_unix_nano: int | None
    duration_ns: int | None
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    trace_state: str | None
    service_name: str | None
    session_id: str | None
    user_id: str | None
    name: str
    kind: int | None
    status_code: int | None
    status_message: str | None
    attributes: Any
    events: Any
    links: Any
    scope_name: str | None
    resource: str | None  # the resource's attributes as JSON text (see above)
    resource_id: int


micros = micros_from_datetime
"""A timestamptz as whole microseconds since the epoch, exactly (no float)."""


_ID = struct.Struct(">qIH")  # a hot record: time, block, offset
_COLD_ID = struct.Struct(">qqI")  # a cold record: time, object, row
HOT: Final = 1
COLD: Final = 0


def cold_place(object_id: int, row: int) -> str:
    """The place of row ``row`` of the cold object ``object_id``."""
    return f"c{object_id}.{row}"


def place_order(place: str) -> tuple[int, int, int]:
    """``(tier, a, b)`` of a place: hot ``(HOT, block, offset)``, cold ``(COLD, object,
    row)``; tuples that order rows as their tier orders them, hot after cold."""
    if place.startswith("c"):
        object_id, row = place[1:].split(".")
        return COLD, int(object_id), int(row)
    block, offset = place.strip("()").split(",")
    return HOT, int(block), int(offset)


def record_id(time_us: int, place: str) -> str:
    """The opaque id of a log record: its time and its place."""
    tier, a, b = place_order(place)
    packed = _ID.pack(time_us, a, b) if tier == HOT else _COLD_ID.pack(time_us, a, b)
    return base64.urlsafe_b64encode(packed).decode()


def parse_record_id(text: str) -> tuple[int, str] | None:
    """``(time_us, place)`` of a record id, or None when ``text`` is not one."""
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
        if len(raw) == _COLD_ID.size:
            time_us, object_id, row = _COLD_ID.unpack(raw)
            return time_us, cold_place(object_id, row)
        time_us, block, offset = _ID.unpack(raw)
    except (ValueError, struct.error, UnicodeEncodeError):
        return None
    return time_us, f"({block},{offset})"
