"""Per-minute RED rollups of request spans (0005), kept by one fenced background job.

GetServiceStats over a day of 10M spans cannot read the spans: a day is ~30k
service-minutes instead. The rollups are derived data, rebuilt from ``spans``:

* every write of spans marks the ``(project, minute)``s of its request spans in
  ``span_rollup_dirty``, in the transaction of the spans (``storage.postgres.writer``);
* ``SpanRollupJob`` (an ``otlpd.scheduler.Job``, so one replica at a time) takes the marks
  older than ``delay``, and for each project and hour recomputes those minutes whole
  from the spans, replaces their rollup rows and deletes the marks, in one REPEATABLE
  READ transaction. A mark committed after that transaction's snapshot is invisible to
  it, so it survives the DELETE and its span (equally invisible) is rolled up by the next
  round: a late span is never lost, and a recomputed minute never counts anything twice.
* ``delay`` keeps the minute being written from being recomputed every round; it is the
  rollups' lag. ``complete_until`` tells readers up to when the rollups are final.

Durations are bucketed as ``b = floor(log2(d) * SUB_BUCKETS)``, bucket ``b`` holding
``[2^(b/8), 2^((b+1)/8))`` ns; see ``query.buckets`` for reading them back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from storage.postgres.partitions import datetime_from_ns, ns_from_datetime, ranges_before

log = logging.getLogger(__name__)

# OTLP SpanKind SERVER and CONSUMER: the spans RED counts as requests.
REQUEST_KINDS: Final = frozenset({2, 5})
ERROR_STATUS: Final = 2  # OTLP Status.StatusCode ERROR
SUB_BUCKETS: Final = 8  # buckets per doubling of the duration
JOB_NAME: Final = "span_rollups"

Connection = psycopg.AsyncConnection[TupleRow]

# Work of one round: the marked minutes older than the horizon, per project (NULL: all)
# and hour, oldest first. One hour is one partition at the default width, and one scan.
_DUE: Final = """
SELECT project_id, array_agg(DISTINCT minute ORDER BY minute)
FROM span_rollup_dirty
WHERE minute < %(horizon)s
GROUP BY project_id, date_trunc('hour', minute)
ORDER BY min(minute), project_id NULLS FIRST
LIMIT %(chunks)s
"""

_SCOPE_ALL: Final = sql.SQL("TRUE")
_SCOPE_ONE: Final = sql.SQL("project_id = %(project)s")

_DELETE_ROLLUPS: Final = """
DELETE FROM {table} WHERE minute = ANY(%(minutes)s::timestamptz[]) AND {scope}
"""

# The minutes' request spans, bucketed; then one row per operation and one per service.
# Data-modifying CTEs run exactly once whether or not the outer query reads them
# (PostgreSQL documentation, "Data-Modifying Statements in WITH").
_RECOMPUTE: Final = """
WITH s AS (
    SELECT project_id, date_trunc('minute', time) AS minute,
           coalesce(service_name, '') AS service_name, name AS span_name, kind AS span_kind,
           status_code = %(error)s AS error,
           greatest(coalesce(duration_ns, 0), 0) AS d,
           floor(ln(greatest(coalesce(duration_ns, 1), 1)::float8) * %(k)s)::smallint AS b
    FROM spans
    WHERE time >= %(lo)s AND time < %(hi)s AND kind = ANY(%(kinds)s::smallint[])
      AND date_trunc('minute', time) = ANY(%(minutes)s::timestamptz[]) AND {scope}
), per_bucket AS (
    SELECT project_id, minute, service_name, span_name, span_kind, b,
           count(*) AS n, count(*) FILTER (WHERE error) AS e, sum(d) AS d
    FROM s GROUP BY project_id, minute, service_name, span_name, span_kind, b
), operations AS (
    INSERT INTO operation_rollups
    SELECT project_id, minute, service_name, span_name, span_kind,
           sum(n)::bigint, sum(e)::bigint, sum(d)::bigint,
           array_agg(b ORDER BY b), array_agg(n::bigint ORDER BY b)
    FROM per_bucket GROUP BY project_id, minute, service_name, span_name, span_kind
    RETURNING 1
), service_bucket AS (
    SELECT project_id, minute, service_name, b, sum(n) AS n, sum(e) AS e, sum(d) AS d
    FROM per_bucket GROUP BY project_id, minute, service_name, b
)
INSERT INTO service_rollups
SELECT project_id, minute, service_name, sum(n)::bigint, sum(e)::bigint, sum(d)::bigint,
       array_agg(b ORDER BY b), array_agg(n::bigint ORDER BY b)
FROM service_bucket GROUP BY project_id, minute, service_name
"""

_DELETE_MARKS: Final = """
DELETE FROM span_rollup_dirty WHERE minute = ANY(%(minutes)s::timestamptz[]) AND {scope}
"""

_SAVE_HORIZON: Final = """
INSERT INTO span_rollup_state (name, horizon) VALUES (%(name)s, %(horizon)s)
ON CONFLICT (name) DO UPDATE SET horizon = greatest(span_rollup_state.horizon, EXCLUDED.horizon)
"""

# Up to when ``project``'s rollups are final: the job's horizon, or the oldest minute
# still marked for the project (or for every project), whichever is earlier.
COMPLETE_UNTIL: Final = """
SELECT least(
    coalesce((SELECT horizon FROM span_rollup_state WHERE name = %(name)s), 'epoch'),
    (SELECT min(minute) FROM span_rollup_dirty
     WHERE project_id = %(project)s OR project_id IS NULL)
)
"""


def bucket_scale() -> float:
    """``SUB_BUCKETS / ln 2``: ``floor(ln(d) * scale)`` is the bucket of duration d."""
    return SUB_BUCKETS / math.log(2)


class SpanRollupJob:
    """Recomputes the marked minutes of ``service_rollups`` and ``operation_rollups``."""

    name = JOB_NAME

    def __init__(
        self,
        *,
        interval: float = 15.0,
        delay: float = 60.0,
        chunks_per_round: int = 48,
        on_round: Callable[[int, float], None] | None = None,
    ) -> None:
        self.interval = interval
        self._delay_ns = int(delay * 1e9)
        self._chunks = chunks_per_round
        self._on_round = on_round  # (minutes recomputed, seconds)

    async def run(self, conn: Connection) -> None:
        """One round: backfill on the first ever, then every due mark (up to the cap)."""
        started = time.perf_counter()
        await conn.execute("SELECT set_config('TimeZone', 'UTC', false)")
        horizon = datetime_from_ns(time.time_ns() - self._delay_ns)
        if await self._first_round(conn):
            await self._backfill(conn, horizon)
        cursor = await conn.execute(_DUE, {"horizon": horizon, "chunks": self._chunks})
        due = await cursor.fetchall()
        minutes = 0
        for project, chunk in due:
            await self.recompute(conn, project, list(chunk))
            minutes += len(chunk)
        await conn.execute(_SAVE_HORIZON, {"name": JOB_NAME, "horizon": horizon})
        if self._on_round is not None:
            self._on_round(minutes, time.perf_counter() - started)

    async def recompute(
        self, conn: Connection, project: str | None, minutes: list[datetime]
    ) -> None:
        """Rebuilds ``minutes`` (within one hour) of ``project`` (None: every project)."""
        scope = _SCOPE_ALL if project is None else _SCOPE_ONE
        params = {
            "project": project,
            "minutes": minutes,
            "lo": min(minutes),
            "hi": max(minutes) + timedelta(minutes=1),
            "kinds": sorted(REQUEST_KINDS),
            "error": ERROR_STATUS,
            "k": bucket_scale(),
        }
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for table in ("operation_rollups", "service_rollups"):
                await conn.execute(
                    sql.SQL(_DELETE_ROLLUPS).format(table=sql.Identifier(table), scope=scope),
                    params,
                )
            await conn.execute(sql.SQL(_RECOMPUTE).format(scope=scope), params)
            await conn.execute(sql.SQL(_DELETE_MARKS).format(scope=scope), params)

    async def _first_round(self, conn: Connection) -> bool:
        cursor = await conn.execute("SELECT 1 FROM span_rollup_state WHERE name = %s", (JOB_NAME,))
        return await cursor.fetchone() is None

    async def _backfill(self, conn: Connection, horizon: datetime) -> None:
        """Marks every minute of every span partition before ``horizon`` for every
        project: spans stored before the rollups existed (or by hand) get rolled up."""
        ranges = await ranges_before(conn, "spans", horizon)
        async with conn.transaction():
            for low, high in ranges:
                await conn.execute(
                    "INSERT INTO span_rollup_dirty (project_id, minute) "
                    "SELECT NULL, m FROM generate_series(date_trunc('minute', %s::timestamptz), "
                    "%s::timestamptz - interval '1 microsecond', interval '1 minute') AS m",
                    (low, high),
                )
            # The state row makes this the only backfill, even if the round fails later.
            await conn.execute(
                "INSERT INTO span_rollup_state (name, horizon) VALUES (%s, 'epoch') "
                "ON CONFLICT (name) DO NOTHING",
                (JOB_NAME,),
            )
        log.info(
            "rolling up spans stored before the rollups existed",
            extra={"partitions": len(ranges), "until": ns_from_datetime(horizon)},
        )
