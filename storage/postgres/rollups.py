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
* a spans partition leaving for the cold tier takes its spans out of every later
  recompute: tiering calls ``TieredSpans`` in the transaction of its DROP, which rolls up
  the range's marked minutes and keeps the range's rows in ``span_rollups_tiered`` (0012)
  while a late span may still arrive there; a recompute adds them to the minute's hot
  spans, so a late span adds to its minute instead of replacing it.

Durations are bucketed as ``b = floor(log2(d) * SUB_BUCKETS)``, bucket ``b`` holding
``[2^(b/8), 2^((b+1)/8))`` ns; see ``query.buckets`` for reading them back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
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
), hot AS (
    SELECT project_id, minute, service_name, span_name, span_kind, b,
           count(*) AS n, count(*) FILTER (WHERE error) AS e, sum(d) AS d
    FROM s GROUP BY project_id, minute, service_name, span_name, span_kind, b
), tiered AS (
    -- What the minutes counted of spans tiered since (0012), one row per bucket; the
    -- row's errors and duration go with its first bucket, since only their sums are read.
    SELECT t.project_id, t.minute, t.service_name, t.span_name, t.span_kind, u.b, u.n,
           CASE WHEN u.i = 1 THEN t.errors ELSE 0 END AS e,
           CASE WHEN u.i = 1 THEN t.duration_ns_sum ELSE 0 END AS d
    FROM span_rollups_tiered t, unnest(t.buckets, t.counts) WITH ORDINALITY AS u(b, n, i)
    WHERE t.minute = ANY(%(minutes)s::timestamptz[]) AND {scope}
), per_bucket AS (
    SELECT project_id, minute, service_name, span_name, span_kind, b,
           sum(n) AS n, sum(e) AS e, sum(d) AS d
    FROM (SELECT * FROM hot UNION ALL SELECT * FROM tiered) AS both_tiers
    GROUP BY project_id, minute, service_name, span_name, span_kind, b
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
        if await _never_ran(conn):
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
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            await _recompute(conn, project, minutes)

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


async def _never_ran(conn: Connection) -> bool:
    cursor = await conn.execute("SELECT 1 FROM span_rollup_state WHERE name = %s", (JOB_NAME,))
    return await cursor.fetchone() is None


async def _recompute(conn: Connection, project: str | None, minutes: list[datetime]) -> None:
    """Replaces the rollup rows of ``minutes`` (within one hour) of ``project`` (None:
    every project) and deletes their marks, in the caller's transaction."""
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
    for table in ("operation_rollups", "service_rollups"):
        await conn.execute(
            sql.SQL(_DELETE_ROLLUPS).format(table=sql.Identifier(table), scope=scope), params
        )
    await conn.execute(sql.SQL(_RECOMPUTE).format(scope=scope), params)
    await conn.execute(sql.SQL(_DELETE_MARKS).format(scope=scope), params)


# The marked minutes of [low, high), per project (NULL: all) and hour, as _DUE has them.
_MARKED_IN: Final = """
SELECT project_id, array_agg(DISTINCT minute ORDER BY minute)
FROM span_rollup_dirty
WHERE minute >= %(low)s AND minute < %(high)s
GROUP BY project_id, date_trunc('hour', minute)
ORDER BY min(minute), project_id NULLS FIRST
"""

_CLEAR_TIERED: Final = """
DELETE FROM span_rollups_tiered WHERE minute >= %(low)s AND minute < %(high)s
"""

# The projects whose rollups of the range are kept: the partition's, and those an earlier
# generation of it left rows for (their tiered spans are still counted there).
_TIERED_PROJECTS: Final = """
SELECT DISTINCT project_id FROM span_rollups_tiered
WHERE minute >= %(low)s AND minute < %(high)s
"""

_KEEP_TIERED: Final = """
INSERT INTO span_rollups_tiered
SELECT project_id, minute, service_name, span_name, span_kind, requests, errors,
       duration_ns_sum, buckets, counts
FROM operation_rollups
WHERE project_id = ANY(%(projects)s) AND minute >= %(low)s AND minute < %(high)s
"""

# Rows no recompute can need any more: no late span can reach their minute, and no mark
# waits on it.
_FORGET_TIERED: Final = """
DELETE FROM span_rollups_tiered t
WHERE t.minute < %(before)s
  AND NOT EXISTS (SELECT 1 FROM span_rollup_dirty d WHERE d.minute = t.minute)
"""


async def seal(
    conn: Connection,
    low_ns: int,
    high_ns: int,
    projects: Sequence[str],
    *,
    keep: bool,
    fence: Callable[[Connection], Awaitable[bool]],
) -> bool:
    """Makes the RED rollups of spans ``[low_ns, high_ns)`` (of ``projects``) final before
    those spans leave PostgreSQL, in the caller's transaction (tiering's, which holds the
    partition so that no span can join it): rolls up the range's marked minutes, and if
    ``keep`` (a late span may still arrive for the range) copies the range's operation
    rows into ``span_rollups_tiered``, which later recomputes of those minutes add to
    their spans.

    ``fence(conn)`` takes the rollup job's lock for the transaction, so that no round
    recomputes the range meanwhile; False if a round holds it: nothing is done, and the
    partition must wait (returns False).
    """
    if not await fence(conn) or await _never_ran(conn):
        # A round is under way, or the job never ran: its first round marks the minutes
        # of every partition that exists then, and these spans would miss it.
        return False
    low, high = datetime_from_ns(low_ns), datetime_from_ns(high_ns)
    cursor = await conn.execute(_MARKED_IN, {"low": low, "high": high})
    for project, chunk in await cursor.fetchall():
        await _recompute(conn, project, list(chunk))
    if keep:
        # Replaces the range's rows: an earlier generation of the partition left its own.
        cursor = await conn.execute(_TIERED_PROJECTS, {"low": low, "high": high})
        kept = {str(p) for (p,) in await cursor.fetchall()}
        await conn.execute(_CLEAR_TIERED, {"low": low, "high": high})
        await conn.execute(
            _KEEP_TIERED, {"low": low, "high": high, "projects": sorted(kept | set(projects))}
        )
    return True


async def forget_tiered(conn: Connection, before_ns: int) -> None:
    """Deletes the tiered rollup rows of minutes before ``before_ns`` that no mark waits
    on: the caller knows no late span can reach them any more."""
    await conn.execute(_FORGET_TIERED, {"before": datetime_from_ns(before_ns)})


# How long after OTLPD_ACCEPT_PAST a tiered minute's rows are kept: a record accepted just
# inside the window is committed seconds later, and its mark must find them.
TIERED_MARGIN_NS: Final = 3600 * 10**9


class TieredSpans:
    """The hook tiering calls before it drops a partition (``TierJob(before_drop=...)``):
    for a spans partition, ``seal``s its range, keeping its rollups in
    ``span_rollups_tiered`` if a late span may still arrive for it (``accept_past``
    seconds, ``OTLPD_ACCEPT_PAST``), and forgets those no late span can reach any more.
    Other tables feed no RED rollup. False: the partition waits for the next pass."""

    def __init__(self, accept_past: float, fence: Callable[[Connection], Awaitable[bool]]):
        self._accept_past_ns = int(accept_past * 1e9)
        self._fence = fence

    async def __call__(
        self, conn: Connection, table: str, low_ns: int, high_ns: int, projects: Sequence[str]
    ) -> bool:
        if table != "spans":
            return True
        reachable_from = time.time_ns() - self._accept_past_ns - TIERED_MARGIN_NS
        keep = high_ns > reachable_from
        if not await seal(conn, low_ns, high_ns, projects, keep=keep, fence=self._fence):
            return False
        await forget_tiered(conn, reachable_from)
        return True
