"""How the query side reads whole log records and spans: one column list each, one row type.

Every reader that returns records (search, context, tail, a trace's logs, a session's
timeline) selects ``LOG_COLUMNS`` ``FROM logs l`` with ``RESOURCE_JOIN``, so a record
reads the same wherever it comes from; likewise spans.

A log record has no key of its own (the hot tier stores a retried record twice, like
Loki and Tempo do), so its identity and its place in "newest first" is ``(time, ctid)``:
``time`` picks the partition and ``ctid`` the row in it. Rows are only ever appended and
whole partitions dropped, never updated, so a row keeps its ctid while it stays in the hot
tier.
"""

from __future__ import annotations

import base64
import struct
from datetime import datetime
from typing import Any, NamedTuple

from storage.postgres.partitions import ns_from_datetime

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
    ctid: str
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
        return record_id(self.time_us, self.ctid)


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


def micros(moment: datetime) -> int:
    """A timestamptz as whole microseconds since the epoch, exactly (no float)."""
    return ns_from_datetime(moment) // 1000


_ID = struct.Struct(">qIH")


def record_id(time_us: int, ctid: str) -> str:
    """The opaque id of a log record: its time and its ctid ``"(block,offset)"``."""
    block, offset = ctid.strip("()").split(",")
    return base64.urlsafe_b64encode(_ID.pack(time_us, int(block), int(offset))).decode()


def parse_record_id(text: str) -> tuple[int, str] | None:
    """``(time_us, ctid)`` of a record id, or None when ``text`` is not one."""
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
        time_us, block, offset = _ID.unpack(raw)
    except (ValueError, struct.error, UnicodeEncodeError):
        return None
    return time_us, f"({block},{offset})"
