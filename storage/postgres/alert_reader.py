"""The SQL of alerting rules' queries over logs and spans (metric rules are QueryMetrics'
own reads, ``query.metrics``).

* Log rules count the records a SearchLogs filter matches (``log_reader.filter_conditions``,
  the very conditions SearchLogs and GetLogVolume use) in a window, per group, and quote
  the newest matching lines in notifications.
* Span rules and span SLOs count requests, errors and duration buckets of a window. The
  whole minutes the RED rollups already hold (before ``complete_until``, 0005) are read
  from ``operation_rollups``: a 3-day SLO window is ~4,300 rows per operation instead of
  every span. The rest of the window (its first, partial minute and what the rollups do
  not hold yet, the last ``OTLPD_ROLLUP_DELAY`` or so) is read from ``spans`` through
  ``spans_service_time_idx``. Raw spans are bucketed exactly as the rollup job buckets
  them, so a percentile is the same whichever side a span was read from, and a window
  read today gives what it gave when it was live.

Every value a rule carries (service, operation, filter text, labels) is a parameter; the
statements are built from fixed fragments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from psycopg import sql

from storage.postgres.log_reader import BODY_TEXT, LogFilter, filter_conditions
from storage.postgres.records import US_TO_TIME
from storage.postgres.rollups import COMPLETE_UNTIL, ERROR_STATUS, JOB_NAME, bucket_scale

_T = US_TO_TIME.format("%s")
# The severity range of a record, by its lowest number, as GetLogVolume counts them.
SEVERITY_RANGE: Final = (
    "CASE WHEN coalesce(l.severity_number, 0) <= 0 THEN 0 "
    "ELSE least((l.severity_number - 1) / 4, 5) * 4 + 1 END"
)
SEVERITY_LABEL: Final = "severity"
SERVICE_LABEL: Final = "service.name"
SPAN_NAME_LABEL: Final = "span.name"
MAX_EXAMPLE_CHARS: Final = 1000
_MINUTE: Final = timedelta(minutes=1)


# ---- logs ----------------------------------------------------------------------------


def _group_expression(label: str) -> tuple[str, list[Any]]:
    if label == SERVICE_LABEL:
        return "coalesce(l.service_name, '')", []
    if label == SEVERITY_LABEL:
        return f"({SEVERITY_RANGE})::text", []
    return "coalesce((l.attributes -> %s) #>> '{}', '')", [label]


def log_counts(
    f: LogFilter, *, start_us: int, end_us: int, group_by: Sequence[str]
) -> tuple[str, list[Any]]:
    """``(*group values, count)`` of the records matching ``f`` in ``[start_us, end_us)``,
    one row per group; without ``group_by`` exactly one row (the count may be 0). A
    ``severity`` group's value is the number its range starts at (``SEVERITY_RANGES``)."""
    conditions, params = filter_conditions(f)
    conditions += ["l.time >= " + _T, "l.time < " + _T]
    params += [start_us, end_us]
    select: list[str] = []
    select_params: list[Any] = []
    for label in group_by:
        expression, extra = _group_expression(label)
        select.append(expression)
        select_params += extra
    statement = (
        "SELECT "
        + "".join(f"{s}, " for s in select)
        + "count(*) FROM logs l WHERE "
        + " AND ".join(conditions)
        + (" GROUP BY " + ", ".join(str(i + 1) for i in range(len(select))) if select else "")
    )
    return statement, [*select_params, *params]


def log_examples(
    f: LogFilter,
    *,
    start_us: int,
    end_us: int,
    group: Sequence[tuple[str, str]],
    limit: int,
) -> tuple[str, list[Any]]:
    """``(time, severity_text, service, body text)`` of the newest ``limit`` records
    matching ``f`` in ``[start_us, end_us)`` whose group values are ``group``'s; bodies
    cut to ``MAX_EXAMPLE_CHARS``."""
    conditions, params = filter_conditions(f)
    conditions += ["l.time >= " + _T, "l.time < " + _T]
    params += [start_us, end_us]
    for label, value in group:
        expression, extra = _group_expression(label)
        conditions.append(f"{expression} = %s")
        params += [*extra, value]
    statement = (
        "SELECT l.time, coalesce(l.severity_text, ''), coalesce(l.service_name, ''), "
        f"left({BODY_TEXT}, %s) FROM logs l WHERE "
        + " AND ".join(conditions)
        + " ORDER BY l.time DESC LIMIT %s"
    )
    return statement, [MAX_EXAMPLE_CHARS, *params, limit]


# ---- spans ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpanSelection:
    """Which spans count: a service (empty: every one), a span name (empty: every one)
    and the span kinds (empty: server and consumer, the rollups' requests)."""

    project: str
    service: str = ""
    operation: str = ""
    kinds: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)``, known to the caller by ``key``."""

    key: int
    start: datetime
    end: datetime


def _ceil_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + _MINUTE


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


_REQUEST_KINDS: Final = (2, 5)

_SPAN_PARTS: Final = """
WITH u AS (SELECT ({complete_until}) AS at),
w AS (
    SELECT e.k, e.lo, e.mlo, least(e.cap, greatest(e.mlo, coalesce(u.at, 'epoch'))) AS mhi, e.hi
    FROM unnest(%(k)s::int[], %(lo)s::timestamptz[], %(mlo)s::timestamptz[],
                %(cap)s::timestamptz[], %(hi)s::timestamptz[]) AS e(k, lo, mlo, cap, hi), u
),
parts AS (
    SELECT w.k, r.service_name AS service, r.span_name AS operation, r.requests AS n,
           r.errors AS e, r.buckets, r.counts
    FROM w JOIN operation_rollups r ON r.project_id = %(project)s
         AND r.minute >= w.mlo AND r.minute < w.mhi {rollup_filters}
    UNION ALL
    SELECT w.k, coalesce(s.service_name, ''), s.name, 1,
           (s.status_code = %(error)s)::int,
           ARRAY[floor(ln(greatest(coalesce(s.duration_ns, 1), 1)::float8) * %(scale)s)::smallint],
           ARRAY[1::bigint]
    FROM w JOIN spans s ON s.project_id = %(project)s
         AND ((s.time >= w.lo AND s.time < w.mlo) OR (s.time >= w.mhi AND s.time < w.hi))
         {raw_filters}
)
"""

_COUNTS: Final = """
SELECT p.k, p.service, p.operation, sum(p.n)::bigint, sum(p.e)::bigint,
       coalesce(sum((SELECT sum(c) FROM unnest(p.buckets, p.counts) AS x(b, c)
                     WHERE x.b >= %(slow)s)), 0)::bigint
FROM parts p GROUP BY 1, 2, 3
"""

_BUCKETS: Final = """
SELECT p.k, p.service, p.operation, x.b, sum(x.c)::bigint
FROM parts p, unnest(p.buckets, p.counts) AS x(b, c) GROUP BY 1, 2, 3, 4
"""


def _span_statement(
    selection: SpanSelection, windows: Sequence[Window], tail: str, extra: dict[str, Any]
) -> tuple[sql.Composed, dict[str, Any]]:
    kinds = selection.kinds or _REQUEST_KINDS
    # The rollups hold server and consumer spans only; a rule on other kinds reads spans.
    rollups = set(kinds) <= set(_REQUEST_KINDS)
    rollup_filters: list[sql.Composable] = []
    raw_filters: list[sql.Composable] = [sql.SQL("AND s.kind = ANY(%(kinds)s::smallint[])")]
    if selection.service:
        rollup_filters.append(sql.SQL("AND r.service_name = %(service)s"))
        raw_filters.append(sql.SQL("AND s.service_name = %(service)s"))
    if selection.operation:
        rollup_filters.append(sql.SQL("AND r.span_name = %(operation)s"))
        raw_filters.append(sql.SQL("AND s.name = %(operation)s"))
    if selection.kinds:
        rollup_filters.append(sql.SQL("AND r.span_kind = ANY(%(kinds)s::smallint[])"))
    mlo = [min(_ceil_minute(w.start), w.end) for w in windows]
    cap = [
        max(m, _floor_minute(w.end)) if rollups else m for m, w in zip(mlo, windows, strict=True)
    ]
    params: dict[str, Any] = {
        "name": JOB_NAME,
        "project": selection.project,
        "service": selection.service,
        "operation": selection.operation,
        "kinds": list(kinds),
        "error": ERROR_STATUS,
        "scale": bucket_scale(),
        "k": [w.key for w in windows],
        "lo": [w.start for w in windows],
        "mlo": mlo,
        "cap": cap,
        "hi": [w.end for w in windows],
        **extra,
    }
    query = sql.SQL(_SPAN_PARTS + tail).format(
        complete_until=sql.SQL(COMPLETE_UNTIL.strip()),
        rollup_filters=sql.SQL(" ").join(rollup_filters),
        raw_filters=sql.SQL(" ").join(raw_filters),
    )
    return query, params


def span_counts(
    selection: SpanSelection, windows: Sequence[Window], *, slow_bucket: int | None = None
) -> tuple[sql.Composed, dict[str, Any]]:
    """``(key, service, span name, requests, errors, slow)`` per window and operation
    with requests; ``slow`` counts requests in buckets at or above ``slow_bucket``."""
    return _span_statement(selection, windows, _COUNTS, {"slow": slow_bucket})


def span_buckets(
    selection: SpanSelection, windows: Sequence[Window]
) -> tuple[sql.Composed, dict[str, Any]]:
    """``(key, service, span name, bucket, requests)`` per window, operation and
    duration bucket (``storage.postgres.rollups``)."""
    return _span_statement(selection, windows, _BUCKETS, {})
