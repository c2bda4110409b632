"""The SQL of GetServiceGraph: caller -> callee edges from parent/child spans.

An edge is a SERVER or CONSUMER span whose parent span (same trace) belongs to another
service: the callee's span under the caller's (usually CLIENT or PRODUCER), as Tempo's
service graph pairs them; Jaeger's dependency view counts any parent/child pair across
services, which adds only calls whose callee side was not a server or consumer span. The
callee's span must start in the range; its parent may start up to ``PARENT_LEAD``
before it, so that calls of a long-running caller at the start of the range are not
lost. One hash join of the range's spans with those a little before it, in one
statement (measured on the benchmark data: ~0.4 s for an hour of 420k spans, of which
~0.26 s is the join).

Spans have no unique key: a call whose spans a retried export stored twice counts
twice, as in the RED rollups and in Tempo's service graph. Keeping each call once per
callee span id (a sort of every cross-service pair) cost 150 of 550 ms on the
benchmark's hour (docs/benchmarks.md), for retries that are rare.

When part of the range is in the cold tier, a call may have one span in each tier:
``query.graph`` then asks for the hot calls' durations rather than their p95 (it merges
them with the cold ones), and for the hot spans of the traces the cold side names
(``callees``, ``parents``), by ``trace_id = ANY(...)``. Edges sort by service names in
byte order (``COLLATE "C"``), whatever the database's collation, so that pages of hot
and cold edges merge in one order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from psycopg import sql

from storage.postgres.reading import Query

Statement = tuple[Query, dict[str, Any]]

PARENT_LEAD: Final = timedelta(minutes=5)
# The callee's side of a call: SERVER and CONSUMER spans (OTLP SpanKind), as the pairs
# of Tempo's service graph. Under them may be any span of the caller: a CLIENT or
# PRODUCER span, or whatever span propagated the context.
CALLEE_KINDS: Final = frozenset({2, 5})
ERROR_STATUS: Final = 2

_EDGES: Final = """
WITH c AS (
    SELECT trace_id, span_id, parent_span_id, coalesce(service_name, '') AS service,
           status_code, duration_ns
    FROM spans
    WHERE project_id = %(project)s AND time >= %(start)s AND time < %(end)s
      AND parent_span_id IS NOT NULL AND kind = ANY(%(callee_kinds)s::smallint[])
), p AS (
    SELECT trace_id, span_id, coalesce(service_name, '') AS service, status_code
    FROM spans
    WHERE project_id = %(project)s AND time >= %(lead)s AND time < %(end)s
), e AS (
    SELECT p.service AS caller, c.service AS callee,
           (c.status_code = %(error)s OR p.status_code = %(error)s) AS failed, c.duration_ns
    FROM c JOIN p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
    WHERE c.service <> p.service {service}
)
SELECT caller, callee, count(*), count(*) FILTER (WHERE failed), {durations}
FROM e
{after}
GROUP BY caller, callee
ORDER BY caller COLLATE "C", callee COLLATE "C"
LIMIT %(limit)s
"""
_P95: Final = "percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ns)"
# percentile_cont leaves out NULLs; so does what the cold tier's durations are merged with.
_ALL_DURATIONS: Final = (
    "array_send(coalesce(array_agg(duration_ns) FILTER (WHERE duration_ns IS NOT NULL), "
    "'{}'::bigint[]))"
)

# The callee spans of the range in some traces, and the spans that may be their parents:
# the hot side of the calls whose other side is cold.
_CALLEES: Final = """
SELECT trace_id, parent_span_id, coalesce(service_name, ''), status_code, duration_ns
FROM spans
WHERE project_id = %(project)s AND time >= %(start)s AND time < %(end)s
  AND parent_span_id IS NOT NULL AND kind = ANY(%(callee_kinds)s::smallint[])
  AND trace_id = ANY(%(traces)s::bytea[])
"""
_PARENTS: Final = """
SELECT trace_id, span_id, coalesce(service_name, ''), status_code
FROM spans
WHERE project_id = %(project)s AND time >= %(lead)s AND time < %(end)s
  AND trace_id = ANY(%(traces)s::bytea[])
"""


def edges(
    project: str,
    *,
    start: datetime,
    end: datetime,
    service: str | None,
    after: tuple[str, str] | None,
    limit: int,
    durations: bool = False,
) -> Statement:
    """``(caller, callee, calls, errors, p95 ns)`` by (caller, callee) in byte order, after
    ``after``; with ``durations``, instead of the p95 every (non-null) duration of the
    callee's spans as an ``array_send`` int8[] (read it with ``binary=True``), to merge
    with the calls of the cold tier."""
    params: dict[str, Any] = {
        "project": project,
        "start": start,
        "end": end,
        "lead": start - PARENT_LEAD,
        "error": ERROR_STATUS,
        "callee_kinds": sorted(CALLEE_KINDS),
        "limit": limit,
    }
    service_filter = sql.SQL("")
    if service is not None:
        service_filter = sql.SQL("AND (c.service = %(service)s OR p.service = %(service)s)")
        params["service"] = service
    after_filter = sql.SQL("")
    if after is not None:
        after_filter = sql.SQL(
            'WHERE (caller COLLATE "C", callee COLLATE "C") > (%(after_caller)s, %(after_callee)s)'
        )
        params["after_caller"], params["after_callee"] = after
    query = sql.SQL(_EDGES).format(
        service=service_filter,
        after=after_filter,
        durations=sql.SQL(_ALL_DURATIONS if durations else _P95),
    )
    return query, params


def callees(project: str, *, start: datetime, end: datetime, traces: Sequence[bytes]) -> Statement:
    """``(trace_id, parent_span_id, service, status_code, duration_ns)`` of the callee
    spans (server or consumer, with a parent) of ``traces`` starting in the range."""
    params = {
        "project": project,
        "start": start,
        "end": end,
        "callee_kinds": sorted(CALLEE_KINDS),
        "traces": list(traces),
    }
    return sql.SQL(_CALLEES), params


def parents(project: str, *, start: datetime, end: datetime, traces: Sequence[bytes]) -> Statement:
    """``(trace_id, span_id, service, status_code)`` of the spans of ``traces`` that may
    be the parent of a call of the range (they start at most ``PARENT_LEAD`` before it)."""
    params = {"project": project, "lead": start - PARENT_LEAD, "end": end, "traces": list(traces)}
    return sql.SQL(_PARENTS), params
