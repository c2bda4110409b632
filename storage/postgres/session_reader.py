"""The SQL of GetSessionTimeline: the session row, and its spans, logs and exemplars in
time order after a keyset position.

The three kinds of item share one order, ``(time, kind, tiebreak)``: time in microseconds
(the partition key of each table), then spans before logs before exemplars at the same
microsecond, then a key unique within the kind at that time (a span's trace and span id,
a row's ctid; ``storage.postgres.records`` explains why ctid identifies a record). Each
reader returns the first rows of its kind after a position of that order, so the caller
can merge the three and cut one page; every read is an index range scan
(``spans_session_time_idx``, ``logs_session_time_idx``, ``metric_points_session_time_idx``)
with no time range, over every partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg import sql

from storage.postgres.records import LOG_COLUMNS, LOGS_FROM, SPAN_COLUMNS, SPANS_FROM
from storage.postgres.trace_reader import Statement

Kind = Literal[0, 1, 2]
SPAN: Kind = 0
LOG: Kind = 1
EXEMPLAR: Kind = 2


@dataclass(frozen=True, slots=True)
class Position:
    """The last item of the previous page: its time, kind and tiebreak key (empty: an
    item that sorts before every row of its kind at its time, a cold one), and for a log
    record or exemplar its place (``storage.postgres.records``)."""

    time: datetime
    kind: Kind
    key: Sequence[Any]
    place: str = ""


def session(project: str, session_id: str) -> Statement:
    """``(user_id, service_name, first_seen, last_seen)`` of the session, if it exists."""
    query = sql.SQL(
        "SELECT user_id, service_name, first_seen, last_seen FROM sessions "
        "WHERE project_id = %(project)s AND session_id = %(session)s"
    )
    return query, {"project": project, "session": session_id}


def _after(
    kind: Kind, position: Position | None, time_column: str, key_condition: str
) -> tuple[sql.Composable, dict[str, Any]]:
    """The condition "after ``position``" for the rows of ``kind``.

    ``time_column`` and ``key_condition`` are fixed fragments of this module."""
    if position is None:
        return sql.SQL("TRUE"), {}
    params: dict[str, Any] = {"after_time": position.time}
    if kind < position.kind:  # this kind sorts first at that time: all listed
        return sql.SQL(time_column + " > %(after_time)s"), params
    if kind > position.kind or not position.key:  # none of this kind at that time listed yet
        return sql.SQL(time_column + " >= %(after_time)s"), params
    params.update({f"after_key{i}": value for i, value in enumerate(position.key)})
    return sql.SQL(key_condition), params


def spans(project: str, session_id: str, after: Position | None, limit: int) -> Statement:
    """``(time, *SPAN_COLUMNS)`` of the session's spans, by (time, trace id, span id)."""
    condition, params = _after(
        SPAN,
        after,
        "s.time",
        "(s.time, s.trace_id, s.span_id) > (%(after_time)s, %(after_key0)s, %(after_key1)s)",
    )
    query = sql.SQL(
        "SELECT s.time, " + SPAN_COLUMNS + " FROM " + SPANS_FROM + " "
        "WHERE s.project_id = %(project)s AND s.session_id = %(session)s AND {} "
        "ORDER BY s.time, s.trace_id, s.span_id LIMIT %(limit)s"
    ).format(condition)
    return query, {"project": project, "session": session_id, "limit": limit, **params}


def logs(project: str, session_id: str, after: Position | None, limit: int) -> Statement:
    """``LOG_COLUMNS`` of the session's log records, by (time, ctid)."""
    condition, params = _after(
        LOG, after, "l.time", "(l.time, l.ctid) > (%(after_time)s, %(after_key0)s::tid)"
    )
    query = sql.SQL(
        "SELECT " + LOG_COLUMNS + " FROM " + LOGS_FROM + " "
        "WHERE l.project_id = %(project)s AND l.session_id = %(session)s AND {} "
        "ORDER BY l.time, l.ctid LIMIT %(limit)s"
    ).format(condition)
    return query, {"project": project, "session": session_id, "limit": limit, **params}


def exemplars(project: str, session_id: str, after: Position | None, limit: int) -> Statement:
    """``(time, ctid, time_unix_nano, metric name, service, value, trace id, span id)`` of
    the session's metric points that carry an exemplar's trace, by (time, ctid).

    A histogram point has no value of its own: the exemplar's is given instead."""
    condition, params = _after(
        EXEMPLAR, after, "p.time", "(p.time, p.ctid) > (%(after_time)s, %(after_key0)s::tid)"
    )
    query = sql.SQL(
        "SELECT p.time, p.ctid::text, p.time_unix_nano, m.metric_name, p.service_name, "
        "coalesce(p.value, CASE WHEN jsonb_typeof(p.exemplars -> 0 -> 'value') = 'number' "
        "THEN (p.exemplars -> 0 ->> 'value')::double precision END), "
        "p.trace_id, p.span_id "
        "FROM metric_points p JOIN metric_series m "
        "ON m.project_id = p.project_id AND m.series_id = p.series_id "
        "WHERE p.project_id = %(project)s AND p.session_id = %(session)s "
        "AND p.trace_id IS NOT NULL AND {} "
        "ORDER BY p.time, p.ctid LIMIT %(limit)s"
    ).format(condition)
    return query, {"project": project, "session": session_id, "limit": limit, **params}
