"""The SQL of the trace RPCs: a trace's spans and logs, trace search, the service catalog.

Each function returns one parameterized statement (``(query, params)``) for
``query.call.QueryCall.fetch``; nothing a client sends is spliced into the text, which is
chosen among fixed fragments by which filters are present.

A trace is read without a time range: ``spans_trace_idx (project_id, trace_id)`` exists on
every partition, so the lookup is one index probe per partition (a trace that crosses an
hour boundary is found whole). Spans have no unique key (a retried export is stored
twice), so whatever counts spans deduplicates by span id first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from storage.postgres.reading import Query
from storage.postgres.records import LOG_COLUMNS, LOGS_FROM, SPAN_COLUMNS, SPANS_FROM

Statement = tuple[Query, dict[str, Any]]

ERROR_STATUS = 2  # OTLP Status.StatusCode ERROR


def trace_spans(project: str, trace_id: bytes) -> Statement:
    """Every stored copy of every span of one trace (``SpanRow``s), in no order."""
    query = sql.SQL(
        "SELECT " + SPAN_COLUMNS + " FROM " + SPANS_FROM + " "
        "WHERE s.project_id = %(project)s AND s.trace_id = %(trace)s"
    )
    return query, {"project": project, "trace": trace_id}


def trace_logs(project: str, trace_id: bytes, limit: int) -> Statement:
    """The first ``limit`` log records of one trace (``LogRow``s), oldest first."""
    query = sql.SQL(
        "SELECT " + LOG_COLUMNS + " FROM " + LOGS_FROM + " "
        "WHERE l.project_id = %(project)s AND l.trace_id = %(trace)s "
        "ORDER BY l.time, l.ctid LIMIT %(limit)s"
    )
    return query, {"project": project, "trace": trace_id, "limit": limit}


@dataclass(frozen=True, slots=True)
class SpanMatch:
    """What a span must have for its trace to match a search; None: any."""

    start: datetime
    end: datetime
    service: str | None = None
    name: str | None = None
    attributes: Sequence[tuple[str, str]] = ()
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    errors_only: bool = False


def _match_conditions(
    project: str, match: SpanMatch
) -> tuple[list[sql.Composable], dict[str, Any]]:
    """The WHERE conditions (over alias ``s``) of a span that matches, and their values."""
    conditions: list[sql.Composable] = [
        sql.SQL("s.project_id = %(project)s"),
        sql.SQL("s.time >= %(start)s"),
        sql.SQL("s.time < %(end)s"),
    ]
    params: dict[str, Any] = {"project": project, "start": match.start, "end": match.end}
    if match.service is not None:
        # spans_service_time_idx (project_id, service_name, time)
        conditions.append(sql.SQL("s.service_name = %(service)s"))
        params["service"] = match.service
    if match.name is not None:
        conditions.append(sql.SQL("s.name = %(name)s"))
        params["name"] = match.name
    for i, (key, value) in enumerate(match.attributes):
        # ->> gives a JSON scalar's text form: "42" matches 42, "true" matches true.
        conditions.append(
            sql.SQL("(s.attributes ->> {}) = {}").format(
                sql.Placeholder(f"key{i}"), sql.Placeholder(f"value{i}")
            )
        )
        params[f"key{i}"], params[f"value{i}"] = key, value
    if match.min_duration_ns is not None:
        conditions.append(sql.SQL("s.duration_ns >= %(min_duration)s"))
        params["min_duration"] = match.min_duration_ns
    if match.max_duration_ns is not None:
        conditions.append(sql.SQL("s.duration_ns <= %(max_duration)s"))
        params["max_duration"] = match.max_duration_ns
    if match.errors_only:
        conditions.append(sql.SQL("s.status_code = %(error)s"))
        params["error"] = ERROR_STATUS
    return conditions, params


def matching_traces(
    project: str, match: SpanMatch, after: tuple[datetime, bytes] | None, limit: int
) -> Statement:
    """``(trace_id, latest matching span time)`` of the traces with a matching span,
    newest first by that time then by trace id, after the keyset cursor ``after``.

    The cursor is compared with the trace's aggregate (HAVING), not with each span: a
    trace already listed also has older matching spans, which must not list it again.
    """
    conditions, params = _match_conditions(project, match)
    params["limit"] = limit
    having = sql.SQL("")
    if after is not None:
        having = sql.SQL("HAVING (max(s.time), s.trace_id) < (%(after_time)s, %(after_trace)s) ")
        params["after_time"], params["after_trace"] = after
    query = sql.SQL(
        "SELECT s.trace_id, max(s.time) AS latest FROM spans s WHERE {conditions} "
        "GROUP BY s.trace_id {having}"
        "ORDER BY latest DESC, s.trace_id DESC LIMIT %(limit)s"
    ).format(conditions=sql.SQL(" AND ").join(conditions), having=having)
    return query, params


def latest_matching(project: str, match: SpanMatch, trace_ids: Sequence[bytes]) -> Statement:
    """``(trace_id, latest matching span time)`` of those of ``trace_ids`` with a matching
    span (the cold tier's candidates, whose hot spans may be newer)."""
    conditions, params = _match_conditions(project, match)
    conditions.append(sql.SQL("s.trace_id = ANY(%(traces)s::bytea[])"))
    params["traces"] = list(trace_ids)
    query = sql.SQL(
        "SELECT s.trace_id, max(s.time) FROM spans s WHERE {} GROUP BY s.trace_id"
    ).format(sql.SQL(" AND ").join(conditions))
    return query, params


def spans_of(project: str, trace_ids: Sequence[bytes]) -> Statement:
    """Every stored copy of every span of ``trace_ids`` (``SpanRow``s), in no order."""
    query = sql.SQL(
        "SELECT " + SPAN_COLUMNS + " FROM " + SPANS_FROM + " "
        "WHERE s.project_id = %(project)s AND s.trace_id = ANY(%(traces)s::bytea[])"
    )
    return query, {"project": project, "traces": list(trace_ids)}


# Root: a span with no parent, else one whose parent is not in the trace (an orphan),
# else (a cycle) any; the earliest of the best rank (proto TraceSummary.root_service).
_SUMMARIES = """
WITH u AS MATERIALIZED (
    SELECT DISTINCT ON (s.trace_id, s.span_id)
        s.trace_id, s.span_id, s.parent_span_id,
        s.start_time_unix_nano AS st,
        coalesce(s.end_time_unix_nano, s.start_time_unix_nano) AS et,
        s.status_code, s.service_name, s.name
    FROM spans s
    WHERE s.project_id = %(project)s AND s.trace_id = ANY(%(traces)s::bytea[])
    ORDER BY s.trace_id, s.span_id
)
SELECT
    u.trace_id,
    min(u.st),
    max(u.et),
    count(*)::int,
    (count(*) FILTER (WHERE u.status_code = %(error)s))::int,
    coalesce(
        array_agg(DISTINCT u.service_name ORDER BY u.service_name)
            FILTER (WHERE u.service_name <> ''),
        '{}'::text[]
    ),
    (array_agg(u.service_name ORDER BY r.rank, u.st, u.span_id))[1],
    (array_agg(u.name ORDER BY r.rank, u.st, u.span_id))[1]
FROM u
LEFT JOIN u p ON p.trace_id = u.trace_id AND p.span_id = u.parent_span_id
CROSS JOIN LATERAL (
    SELECT CASE WHEN u.parent_span_id IS NULL THEN 0 WHEN p.span_id IS NULL THEN 1 ELSE 2 END
) AS r(rank)
GROUP BY u.trace_id
"""


def trace_summaries(project: str, trace_ids: Sequence[bytes]) -> Statement:
    """One row per trace of ``trace_ids``, over ALL its spans (each span id once):
    ``(trace_id, min start ns, max end ns, span count, error count, services,
    root service, root name)``."""
    return sql.SQL(_SUMMARIES), {
        "project": project,
        "traces": list(trace_ids),
        "error": ERROR_STATUS,
    }


def services(project: str, after: str | None, limit: int) -> Statement:
    """``(name, first_seen, last_seen)`` of the project's services, by name, after ``after``."""
    query = sql.SQL(
        "SELECT service_name, first_seen, last_seen FROM services "
        "WHERE project_id = %(project)s AND service_name > %(after)s "
        "ORDER BY service_name LIMIT %(limit)s"
    )
    return query, {"project": project, "after": after or "", "limit": limit}


def operations(project: str, service: str, after: tuple[str, int] | None, limit: int) -> Statement:
    """``(span name, span kind)`` of one service, by name then kind, after ``after``."""
    conditions: sql.Composable = sql.SQL("project_id = %(project)s AND service_name = %(service)s")
    params: dict[str, Any] = {"project": project, "service": service, "limit": limit}
    if after is not None:
        conditions = sql.SQL(
            "{} AND (span_name, span_kind) > (%(after_name)s, %(after_kind)s)"
        ).format(conditions)
        params["after_name"], params["after_kind"] = after
    query = sql.SQL(
        "SELECT span_name, span_kind FROM operations WHERE {} "
        "ORDER BY span_name, span_kind LIMIT %(limit)s"
    ).format(conditions)
    return query, params


def error_spans(
    project: str, service: str, start: datetime, end: datetime, limit: int
) -> Statement:
    """The newest ``limit`` spans of ``service`` with status ERROR in ``[start, end)``
    (``SpanRow``s), by ``spans_service_time_idx`` backwards."""
    query = sql.SQL(
        "SELECT " + SPAN_COLUMNS + " FROM " + SPANS_FROM + " "
        "WHERE s.project_id = %(project)s AND s.service_name = %(service)s "
        "AND s.time >= %(start)s AND s.time < %(end)s AND s.status_code = %(error)s "
        "ORDER BY s.time DESC LIMIT %(limit)s"
    )
    params = {
        "project": project,
        "service": service,
        "start": start,
        "end": end,
        "error": ERROR_STATUS,
        "limit": limit,
    }
    return query, params


def explaining_logs(
    project: str,
    traces: Sequence[bytes],
    service: str,
    *,
    start: datetime,
    end: datetime,
    min_severity: int,
    limit: int,
) -> Statement:
    """Up to ``limit`` log records (``LogRow``s), newest first: those of ``traces``, then
    ``service``'s records of at least ``min_severity`` in ``[start, end)``."""
    query = sql.SQL(
        "(SELECT " + LOG_COLUMNS + ", 0 AS rank FROM " + LOGS_FROM + " "
        "WHERE l.project_id = %(project)s AND l.trace_id = ANY(%(traces)s::bytea[]) "
        "ORDER BY l.time DESC LIMIT %(limit)s) "
        "UNION ALL "
        "(SELECT " + LOG_COLUMNS + ", 1 AS rank FROM " + LOGS_FROM + " "
        "WHERE l.project_id = %(project)s AND l.service_name = %(service)s "
        "AND l.time >= %(start)s AND l.time < %(end)s "
        "AND l.severity_number >= %(severity)s "
        "AND (l.trace_id IS NULL OR NOT l.trace_id = ANY(%(traces)s::bytea[])) "
        "ORDER BY l.time DESC LIMIT %(limit)s) "
        "ORDER BY rank, time DESC LIMIT %(limit)s"
    )
    params = {
        "project": project,
        "traces": list(traces),
        "service": service,
        "start": start,
        "end": end,
        "severity": min_severity,
        "limit": limit,
    }
    return query, params
