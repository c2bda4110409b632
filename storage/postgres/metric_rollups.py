"""1-minute and 1-hour rollups of metric points (0009), kept by one fenced background job.

Raw points stay hot for ``OTLPD_HOT_RETENTION_METRICS`` (2 h) and are then tiered; the
rollups are what QueryMetrics reads for longer ranges. They are derived data, rebuilt the
way the RED rollups are (``storage.postgres.rollups``):

* every write of points marks its ``(project, minute)``s in ``metric_rollup_dirty``, in the
  transaction of the points (``storage.postgres.writer``);
* ``MetricRollupJob`` (an ``otlpd.scheduler.Job``: one replica at a time) takes the marks
  older than ``delay`` and, per project and hour, recomputes those minutes whole from the
  raw points in one REPEATABLE READ transaction: deletes their 1-minute rows, writes the
  new ones, deletes the marks its snapshot saw and marks the hour in
  ``metric_rollup_dirty_hours``. A mark committed after the snapshot survives, and so
  its point (equally invisible) is rolled up by a later round: late points are never
  lost, and a minute recomputed whole never counts a point twice;
* then it recomputes each marked hour that has ended (and has no minute left to do) from
  its 1-minute rows, the same way. Rows merge exactly (``storage.rollup_rows``), so an
  hour from its minutes equals an hour from the points.

The arithmetic is numpy's, not SQL's: the rows keep each interval's first and last
histogram states and what the points added in between (resets included), exponential
histograms at the lowest scale of their points, which SQL would make hard to read.

``complete_until`` tells readers up to when the rollups of a project are final;
``final_until`` tells tiering up to when the raw points (or the 1-minute rows) may go,
because every rollup that needs them is final: a raw partition is tiered only after the
rollups of its range are final.

Points that arrive for a minute whose raw points already left for the cold tier (a
partition made again for a late record) cannot be recomputed with the rest of their
minute; the minute keeps the rollup made from the points it had, the late points stay
raw (and go cold with their partition), and ``sealed`` counts them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg.types.string import BytesBinaryDumper

from storage.postgres.connect import connection_kwargs
from storage.postgres.metric_reader import (
    ROLLUP_TABLES,
    RollupScope,
    binary_array,
    decode_rollup_buckets,
    decode_rollup_exponential,
    decode_rollup_numbers,
    rollup_statement,
)
from storage.postgres.partitions import (
    PartitionManager,
    datetime_from_ns,
    ns_from_datetime,
    ranges_before,
)
from storage.postgres.writer import (
    Float8ArrayBinaryDumper,
    Int8ArrayBinaryDumper,
    NanosTimestamptzBinaryDumper,
)
from storage.rollup_rows import (
    Buckets,
    ExponentialRow,
    ExponentialState,
    Numbers,
    merge_exponential,
)

log = logging.getLogger(__name__)

JOB_NAME: Final = "metric_rollups"
MINUTE_NS: Final = 60 * 10**9
HOUR_NS: Final = 3600 * 10**9
TABLE_1M: Final = ROLLUP_TABLES[MINUTE_NS]
TABLE_1H: Final = ROLLUP_TABLES[HOUR_NS]
_GROUPS: Final = 64  # result rows per read of a project: series_id % 64

Connection = psycopg.AsyncConnection[TupleRow]
SyncConnection = psycopg.Connection[TupleRow]

# Columns of the rollup tables in COPY order, with their types (0009).
COLUMNS: Final = (
    ("project_id", "text"),
    ("time", "timestamptz"),
    ("series_id", "int8"),
    ("part", "int2"),
    ("samples", "int8"),
    ("sum", "float8"),
    ("min", "float8"),
    ("max", "float8"),
    ("first_time_unix_nano", "int8"),
    ("first_value", "float8"),
    ("last_time_unix_nano", "int8"),
    ("last_value", "float8"),
    ("increase", "float8"),
    ("first_start_time_unix_nano", "int8"),
    ("last_start_time_unix_nano", "int8"),
    ("explicit_bounds", "float8[]"),
    ("bucket_increments", "bytea"),  # counts as 8-byte big-endian integers (0009)
    ("first_bucket_counts", "bytea"),
    ("last_bucket_counts", "bytea"),
    ("scale", "int4"),
    ("zero_threshold", "float8"),
    ("positive_offset", "int4"),
    ("negative_offset", "int4"),
    ("zero_increment", "int8"),
    ("positive_increments", "int8[]"),
    ("negative_increments", "int8[]"),
    ("first_zero_count", "int8"),
    ("first_positive_counts", "int8[]"),
    ("first_negative_counts", "int8[]"),
    ("last_zero_count", "int8"),
    ("last_positive_counts", "int8[]"),
    ("last_negative_counts", "int8[]"),
)

# --- marks and state -----------------------------------------------------------------

# Work of one round: the marked minutes older than the horizon, per project (NULL: all)
# and hour, oldest first.
_DUE_MINUTES: Final = """
SELECT project_id, array_agg(DISTINCT minute ORDER BY minute)
FROM metric_rollup_dirty
WHERE minute < %(horizon)s
GROUP BY project_id, date_trunc('hour', minute)
ORDER BY min(minute), project_id NULLS FIRST
LIMIT %(chunks)s
"""

# Hours that ended before the horizon and have no minute of theirs left to do.
_DUE_HOURS: Final = """
SELECT DISTINCT h.project_id, h.hour
FROM metric_rollup_dirty_hours h
WHERE h.hour + interval '1 hour' <= %(horizon)s
  AND NOT EXISTS (
      SELECT 1 FROM metric_rollup_dirty d
      WHERE d.minute >= h.hour AND d.minute < h.hour + interval '1 hour'
        AND (d.project_id IS NULL OR h.project_id IS NULL OR d.project_id = h.project_id))
ORDER BY h.hour, h.project_id NULLS FIRST
LIMIT %(chunks)s
"""

_SAVE_HORIZON: Final = """
INSERT INTO metric_rollup_state (name, horizon) VALUES (%(name)s, %(horizon)s)
ON CONFLICT (name) DO UPDATE SET horizon = greatest(metric_rollup_state.horizon, EXCLUDED.horizon)
"""

# Up to when a project's rollups are final: 1-minute rows before the horizon with no mark
# of the project (or of every project); 1-hour rows likewise, in whole hours, and before
# any hour still marked.
COMPLETE_UNTIL: Final = """
SELECT least(s.horizon, (SELECT min(minute) FROM metric_rollup_dirty
                         WHERE project_id = %(project)s OR project_id IS NULL)),
       least(date_trunc('hour', s.horizon),
             (SELECT date_trunc('hour', min(minute)) FROM metric_rollup_dirty
              WHERE project_id = %(project)s OR project_id IS NULL),
             (SELECT min(hour) FROM metric_rollup_dirty_hours
              WHERE project_id = %(project)s OR project_id IS NULL))
FROM metric_rollup_state s WHERE s.name = %(name)s
"""

# The same for every project at once: what tiering may move.
_FINAL_UNTIL: Final = """
SELECT least(s.horizon, (SELECT min(minute) FROM metric_rollup_dirty)),
       least(date_trunc('hour', s.horizon),
             (SELECT date_trunc('hour', min(minute)) FROM metric_rollup_dirty),
             (SELECT min(hour) FROM metric_rollup_dirty_hours))
FROM metric_rollup_state s WHERE s.name = %(name)s
"""

# Projects whose rows of a source table in [lo, hi) were tiered and whose partition is
# gone or made again since (a late record): their minutes there cannot be recomputed whole.
_SEALED: Final = """
SELECT DISTINCT project_id FROM cold_objects
WHERE signal = %(signal)s AND min_time < %(hi)s AND max_time >= %(lo)s
  AND (%(project)s::text IS NULL OR project_id = %(project)s)
  AND to_regclass(quote_ident(partition))::oid IS DISTINCT FROM partition_oid
"""

# --- raw points of the minutes being recomputed ----------------------------------------

# The points of the minutes being recomputed, of one project (NULL: every project not
# sealed), and of one group of its series (``GROUP_ROWS``).
_RAW_SCOPE: Final = (
    "{p}time >= %(lo)s AND {p}time < %(hi)s "
    "AND date_trunc('minute', {p}time) = ANY(%(minutes)s::timestamptz[]) "
    "AND ({p}project_id = %(project)s OR %(project)s::text IS NULL) "
    "AND NOT {p}project_id = ANY(%(sealed)s::text[])"
)
_RAW_WHERE: Final = _RAW_SCOPE + " AND {p}series_id %% %(groups)s = %(group)s"
# Points (or 1-minute rows) read into memory at once, at most about: a busy minute is
# split by series (series_id % groups), so the job's memory does not grow with ingest.
GROUP_ROWS: Final = 200_000
_RAW_COUNT: Final = f"SELECT count(*) FROM metric_points WHERE {_RAW_SCOPE.format(p='')}"

_RAW_NUMBERS: Final = (
    "SELECT project_id, array_send(array_agg(series_id)), array_send(array_agg(time_unix_nano)), "
    "array_send(array_agg(v)) "
    "FROM (SELECT project_id, series_id, time_unix_nano, coalesce(value, count::float8) AS v "
    f"      FROM metric_points WHERE {_RAW_WHERE.format(p='')}) p "
    f"WHERE v IS NOT NULL GROUP BY project_id, series_id %% {_GROUPS}"
)

_RAW_BUCKETS: Final = (
    "SELECT p.project_id, coalesce(s.aggregation_temporality = 1, false), "
    "array_send(array_agg(p.series_id)), array_send(array_agg(p.time_unix_nano)), "
    "array_send(array_agg(coalesce(p.start_time_unix_nano, 0))), "
    "array_send(array_agg(p.bucket_counts)), array_send(array_agg(p.explicit_bounds)) "
    "FROM metric_points p LEFT JOIN metric_series s "
    "ON s.project_id = p.project_id AND s.series_id = p.series_id "
    f"WHERE {_RAW_WHERE.format(p='p.')} "
    "AND cardinality(p.bucket_counts) > 0 AND cardinality(p.explicit_bounds) > 0 "
    f"GROUP BY 1, 2, cardinality(p.bucket_counts), p.series_id %% {_GROUPS}"
)

_RAW_EXPONENTIAL: Final = (
    "SELECT p.project_id, coalesce(s.aggregation_temporality = 1, false), p.series_id, "
    "p.time_unix_nano, coalesce(p.start_time_unix_nano, 0), p.scale, "
    "coalesce(p.zero_threshold, 0), coalesce(p.zero_count, 0), coalesce(p.positive_offset, 0), "
    "coalesce(p.positive_bucket_counts, '{}'), coalesce(p.negative_offset, 0), "
    "coalesce(p.negative_bucket_counts, '{}') "
    "FROM metric_points p LEFT JOIN metric_series s "
    "ON s.project_id = p.project_id AND s.series_id = p.series_id "
    f"WHERE {_RAW_WHERE.format(p='p.')} AND p.scale IS NOT NULL "
    "ORDER BY p.project_id, p.series_id, p.time_unix_nano"
)

_CLUSTER_MINUTES: Final = (
    "WITH gone AS (DELETE FROM metric_rollups_1m WHERE time >= %(lo)s AND time < %(hi)s "
    "AND (project_id = %(project)s OR %(project)s::text IS NULL) "
    "AND NOT project_id = ANY(%(sealed)s::text[]) RETURNING *) "
    "INSERT INTO metric_rollups_1m SELECT * FROM gone ORDER BY project_id, series_id, time, part"
)

_DELETE_ROWS: Final = (
    "DELETE FROM {table} WHERE time = ANY(%(times)s::timestamptz[]) "
    "AND (project_id = %(project)s OR %(project)s::text IS NULL) "
    "AND NOT project_id = ANY(%(sealed)s::text[])"
)


@dataclass(slots=True)
class Round:
    """What one round did, for metrics and ``otlpd tier --once``."""

    minutes: int = 0  # (project, minute)s recomputed
    hours: int = 0  # (project, hour)s recomputed
    sealed: int = 0  # (project, minute)s left as they were: their raw points are cold
    more: bool = False  # the round stopped at its cap with marks left to do
    seconds: float = 0.0


class MetricRollupJob:
    """Recomputes the marked minutes of ``metric_rollups_1m`` and the marked hours of
    ``metric_rollups_1h``.

    The scheduler's connection (``run``'s) holds the job's lock and finds the work; each
    recompute runs in a worker thread on a connection of the job's own: the rows are
    built with numpy and Python, which would otherwise hold up the event loop that
    serves ingest and queries (the writer and tiering do their heavy work in threads for
    the same reason). A round's recomputes run one after another, on one connection.
    """

    name = JOB_NAME

    def __init__(
        self,
        conninfo: str,
        partitions: PartitionManager,
        *,
        interval: float = 15.0,
        delay: float = 60.0,
        chunks_per_round: int = 48,
        group_rows: int = GROUP_ROWS,
        connect_timeout: float = 10.0,
        on_round: Callable[[Round], None] | None = None,
    ) -> None:
        """``partitions`` makes the rollup tables' partitions (``ROLLUP_WIDTHS``) before
        rows are written to them; ``group_rows`` bounds what one read holds."""
        self.interval = interval
        self._conninfo = conninfo
        self._connect_kwargs = connection_kwargs("otlpd-metric-rollups", connect_timeout)
        self._partitions = partitions
        self._delay_ns = int(delay * 1e9)
        self._chunks = chunks_per_round
        self._group_rows = group_rows
        self._on_round = on_round
        self.last = Round()  # what the last round did
        self.rounds = 0  # rounds this job ran

    async def run(self, conn: Connection) -> None:
        """One round: backfill on the first ever, then the due minutes, then the due hours
        (each up to the cap)."""
        started = time.perf_counter()
        done = Round()
        await conn.execute("SELECT set_config('TimeZone', 'UTC', false)")
        horizon = datetime_from_ns(time.time_ns() - self._delay_ns)
        if await self._first_round(conn):
            await self._backfill(conn, horizon)
        cursor = await conn.execute(_DUE_MINUTES, {"horizon": horizon, "chunks": self._chunks})
        due = await cursor.fetchall()
        opened: list[SyncConnection] = []

        async def worker() -> SyncConnection:
            if not opened:
                opened.append(await asyncio.to_thread(self._connect))
            return opened[0]

        try:
            for project, minutes in due:
                recomputed, sealed = await asyncio.to_thread(
                    self.recompute_minutes, await worker(), project, list(minutes)
                )
                done.minutes += recomputed
                done.sealed += sealed
            await conn.execute(_SAVE_HORIZON, {"name": JOB_NAME, "horizon": horizon})
            cursor = await conn.execute(_DUE_HOURS, {"horizon": horizon, "chunks": self._chunks})
            hours = await cursor.fetchall()
            for project, hour in hours:
                await asyncio.to_thread(self.recompute_hour, await worker(), project, hour)
                done.hours += 1
        finally:
            for work in opened:
                await asyncio.to_thread(work.close)
        done.more = len(due) >= self._chunks or len(hours) >= self._chunks
        done.seconds = time.perf_counter() - started
        self.last = done
        self.rounds += 1
        if self._on_round is not None:
            self._on_round(done)

    def _connect(self) -> SyncConnection:
        conn = psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs)
        conn.execute("SELECT set_config('TimeZone', 'UTC', false)")
        # The writer's binary dumpers, by oid only: they serve this connection's COPY of
        # rollup rows and leave its other parameters alone.
        for dumper in (
            NanosTimestamptzBinaryDumper,
            Int8ArrayBinaryDumper,
            Float8ArrayBinaryDumper,
            BytesBinaryDumper,
        ):
            conn.adapters.register_dumper(None, dumper)
        return conn

    # --- 1-minute rows (in a worker thread) --------------------------------------------

    def recompute_minutes(
        self, conn: SyncConnection, project: str | None, minutes: list[datetime]
    ) -> tuple[int, int]:
        """Rebuilds ``minutes`` (within one hour) of ``project`` (None: every project)
        from the raw points, on ``conn`` (blocking); returns how many (project, minute)s
        were recomputed and how many left alone because their raw points are cold."""
        lo, hi = min(minutes), max(minutes) + timedelta(minutes=1)
        self._ensure_partitions(TABLE_1M, lo, hi)
        params: dict[str, Any] = {
            "project": project,
            "minutes": minutes,
            "lo": lo,
            "hi": hi,
            "times": minutes,
        }
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            sealed = _sealed(conn, "metric_points", project, lo, hi)
            params["sealed"] = sealed
            conn.execute(sql.SQL(_DELETE_ROWS).format(table=sql.Identifier(TABLE_1M)), params)
            groups = _groups(conn, _RAW_COUNT, params, self._group_rows)
            for group in range(groups):
                rows = _minute_rows(conn, params | {"groups": groups, "group": group})
                _copy_rows(conn, TABLE_1M, rows)
            # A chunk of every project (None) did every project's marks of these minutes.
            conn.execute(
                "DELETE FROM metric_rollup_dirty WHERE minute = ANY(%(minutes)s::timestamptz[]) "
                "AND (project_id = %(project)s OR %(project)s::text IS NULL)",
                params,
            )
            if project is None or project not in sealed:
                conn.execute(
                    "INSERT INTO metric_rollup_dirty_hours (project_id, hour) "
                    "VALUES (%(project)s, date_trunc('hour', %(lo)s::timestamptz))",
                    params,
                )
        if sealed:
            log.warning(
                "points arrived for minutes whose raw points are in the cold tier; the "
                "rollups of those minutes keep what they had",
                extra={"projects": sealed, "minutes": len(minutes)},
            )
        count = 0 if project is not None and sealed else len(minutes)
        return count, len(minutes) * len(sealed)

    # --- 1-hour rows (in a worker thread) ----------------------------------------------

    def recompute_hour(self, conn: SyncConnection, project: str | None, hour: datetime) -> None:
        """Rebuilds ``hour`` of ``project`` (None: every project) from its 1-minute rows,
        on ``conn`` (blocking)."""
        lo, hi = hour, hour + timedelta(hours=1)
        self._ensure_partitions(TABLE_1H, lo, hi)
        params: dict[str, Any] = {"project": project, "times": [hour], "hour": hour}
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            sealed = _sealed(conn, TABLE_1M, project, lo, hi)
            params["sealed"] = sealed
            where = (
                "time >= %s AND time < %s AND (project_id = %s OR %s::text IS NULL) "
                "AND NOT project_id = ANY(%s::text[])"
            )
            where_params = [lo, hi, project, project, sealed]
            conn.execute(sql.SQL(_DELETE_ROWS).format(table=sql.Identifier(TABLE_1H)), params)
            counted = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                sql.Identifier(TABLE_1M), sql.SQL(where)
            )
            groups = _groups(conn, counted, where_params, self._group_rows)
            for group in range(groups):
                scope = RollupScope(
                    sql.SQL(where + " AND series_id %% %s = %s"),
                    [*where_params, groups, group],
                    sql.SQL(f", series_id %% {_GROUPS}"),
                )
                _copy_rows(conn, TABLE_1H, _hour_rows(conn, scope))
            # The hour's 1-minute rows were written a minute at a time, every series' row
            # of a minute together: a query of a few series over a day visited a heap
            # page per row. Written again in series order, a series' hour is a page or
            # two (docs/benchmarks.md).
            conn.execute(_CLUSTER_MINUTES, params | {"lo": lo, "hi": hi})
            conn.execute(
                "DELETE FROM metric_rollup_dirty_hours WHERE hour = %(hour)s "
                "AND (project_id = %(project)s OR %(project)s::text IS NULL)",
                params,
            )

    def _ensure_partitions(self, table: str, lo: datetime, hi: datetime) -> None:
        """The partitions of ``table`` for ``[lo, hi)``, made on the manager's own
        connection before the recompute's transaction (their creation takes the parent's
        lock)."""
        width = self._partitions.width_ns(table)
        first = ns_from_datetime(lo) // width * width
        self._partitions.ensure(table, range(first, ns_from_datetime(hi), width))

    async def _first_round(self, conn: Connection) -> bool:
        cursor = await conn.execute(
            "SELECT 1 FROM metric_rollup_state WHERE name = %s", (JOB_NAME,)
        )
        return await cursor.fetchone() is None

    async def _backfill(self, conn: Connection, horizon: datetime) -> None:
        """Marks every minute of every metric_points partition before ``horizon`` for
        every project: points stored before the rollups existed get rolled up."""
        ranges = await ranges_before(conn, "metric_points", horizon)
        async with conn.transaction():
            for low, high in ranges:
                # The minutes that have points: one scan of the partition.
                await conn.execute(
                    "INSERT INTO metric_rollup_dirty (project_id, minute) "
                    "SELECT DISTINCT NULL::text, date_trunc('minute', time) FROM metric_points "
                    "WHERE time >= %s AND time < %s",
                    (low, high),
                )
            # The state row makes this the only backfill, even if the round fails later.
            await conn.execute(
                "INSERT INTO metric_rollup_state (name, horizon) VALUES (%s, 'epoch') "
                "ON CONFLICT (name) DO NOTHING",
                (JOB_NAME,),
            )
        log.info(
            "rolling up metric points stored before the rollups existed",
            extra={"partitions": len(ranges), "until": ns_from_datetime(horizon)},
        )


def _fetch(conn: SyncConnection, query: Any, params: Any) -> list[Any]:
    with conn.cursor(binary=True) as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def _sealed(
    conn: SyncConnection, signal: str, project: str | None, lo: datetime, hi: datetime
) -> list[str]:
    rows = conn.execute(_SEALED, {"signal": signal, "project": project, "lo": lo, "hi": hi})
    return sorted(str(p) for (p,) in rows.fetchall())


def _copy_rows(conn: SyncConnection, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    if not rows:
        return
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c, _ in COLUMNS)
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types([t for _, t in COLUMNS])
        for row in rows:
            copy.write_row(row)


def _groups(conn: SyncConnection, count: Any, params: Any, group_rows: int) -> int:
    """Into how many groups of series to split a read of ``count`` rows."""
    row = conn.execute(count, params).fetchone()
    return max(1, -(-int(row[0] if row else 0) // group_rows))


def _hour_rows(conn: SyncConnection, scope: RollupScope) -> list[tuple[Any, ...]]:
    """The 1-hour table rows of the 1-minute rows ``scope`` selects (one hour)."""
    fetched = [
        _fetch(conn, *rollup_statement(kind, TABLE_1M, scope))
        for kind in ("numbers", "buckets", "exponential")
    ]
    number_rows = {p: r.merged(HOUR_NS) for p, r in decode_rollup_numbers(fetched[0]).items()}
    buckets: dict[str, list[tuple[list[float], Buckets]]] = {}
    for chain in decode_rollup_buckets(fetched[1]):
        buckets.setdefault(chain.project, []).append((chain.bounds, chain.rows.merged(HOUR_NS)))
    exponential = {
        p: merge_exponential(r, HOUR_NS) for p, r in decode_rollup_exponential(fetched[2]).items()
    }
    return assemble(number_rows, buckets, exponential)


def _minute_rows(conn: SyncConnection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The 1-minute table rows of the raw points ``params`` select."""
    numbers: dict[str, list[tuple[Any, ...]]] = {}
    for project, series_b, times_b, values_b in _fetch(conn, _RAW_NUMBERS, params):
        numbers.setdefault(project, []).append(
            (binary_array(series_b), binary_array(times_b), binary_array(values_b))
        )
    number_rows = {
        project: Numbers.of_samples(
            *(np.concatenate([a[i] for a in arrays]) for i in range(3))
        ).merged(MINUTE_NS)
        for project, arrays in numbers.items()
    }
    buckets = _raw_buckets(_fetch(conn, _RAW_BUCKETS, params), MINUTE_NS)
    exponential = _raw_exponential(_fetch(conn, _RAW_EXPONENTIAL, params), MINUTE_NS)
    return assemble(number_rows, buckets, exponential)


# --- from raw points and rows to table rows ----------------------------------------------


def _raw_buckets(
    fetched: Sequence[Any], width_ns: int
) -> dict[str, list[tuple[list[float], Buckets]]]:
    """Explicit-histogram points as rows of ``width_ns``, per project and bucket layout."""
    grouped: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for project, delta, series_b, times_b, starts_b, counts_b, bounds_b in fetched:
        series = binary_array(series_b)
        counts = binary_array(counts_b)
        bounds = binary_array(bounds_b)
        width = counts.shape[1]
        grouped.setdefault((project, width), []).append(
            (series, binary_array(times_b), binary_array(starts_b), counts, bounds,
             np.full(series.shape[0], bool(delta)))
        )  # fmt: skip
    out: dict[str, list[tuple[list[float], Buckets]]] = {}
    for (project, _), parts in grouped.items():
        series, times, starts, counts, bounds, delta = (
            np.concatenate([p[i] for p in parts]) for i in range(6)
        )
        if (bounds == bounds[0]).all():  # nearly always: one layout
            layouts, layout = bounds[:1], np.zeros(bounds.shape[0], dtype=np.int64)
        else:
            layouts, layout = np.unique(bounds, axis=0, return_inverse=True)
            layout = layout.reshape(-1)
        for k, layout_bounds in enumerate(layouts):
            mine = layout == k
            rows = Buckets.of_points(
                series[mine], times[mine], starts[mine], counts[mine], delta[mine]
            )
            out.setdefault(project, []).append(
                ([float(b) for b in layout_bounds], rows.merged(width_ns))
            )
    return out


def _raw_exponential(fetched: Sequence[Any], width_ns: int) -> dict[str, list[ExponentialRow]]:
    """Exponential-histogram points (in project, series and time order) as rows of
    ``width_ns``, per project; of points at the same time in a series the first is kept."""
    points: dict[str, list[ExponentialRow]] = {}
    previous: tuple[str, int, int] | None = None
    for (
        project, delta, series_id, time_ns, start, scale, threshold, zero, pos_off, pos,
        neg_off, neg,
    ) in fetched:  # fmt: skip
        key = (project, series_id, time_ns)
        if key == previous:
            continue
        previous = key
        state = ExponentialState(
            int(zero), pos_off, np.asarray(pos, dtype=np.int64), neg_off,
            np.asarray(neg, dtype=np.int64),
        )  # fmt: skip
        points.setdefault(project, []).append(
            ExponentialRow.of_point(
                series_id, time_ns, start, scale, float(threshold), state, delta=bool(delta)
            )
        )
    return {project: merge_exponential(rows, width_ns) for project, rows in points.items()}


def _bucket_fields(bounds: list[float], rows: Buckets) -> list[tuple[Any, ...]]:
    """COLUMNS[13:] of every explicit-histogram row; a state equal to what a reader takes
    in its place is NULL (first counts equal to the last, increments equal to last minus
    first), and a delta row has increments only. Compared and converted a matrix at a
    time: per row, numpy's overhead would be most of the job's time."""
    same_first = (rows.first == rows.last).all(axis=1)
    same_increments = (rows.increments == rows.last - rows.first).all(axis=1)
    width = rows.first.shape[1] * 8
    increments, first, last = (
        _packed(m.astype(">i8").tobytes(), width) for m in (rows.increments, rows.first, rows.last)
    )
    exponential_none = (None,) * 13
    out: list[tuple[Any, ...]] = []
    for i, (delta, first_start, last_start) in enumerate(
        zip(
            rows.delta.tolist(),
            rows.first_start.tolist(),
            rows.last_start.tolist(),
            strict=True,
        )
    ):
        if delta:
            stored: tuple[Any, ...] = (increments[i], None, None)
        else:
            stored = (
                None if same_increments[i] else increments[i],
                None if same_first[i] else first[i],
                last[i],
            )
        out.append((first_start, last_start, bounds, *stored, *exponential_none))
    return out


def _packed(data: bytes, width: int) -> list[bytes]:
    """Each row of a matrix's bytes (``width`` bytes a row) as a bytea value."""
    return [data[i : i + width] for i in range(0, len(data), width)]


def _exponential_fields(row: ExponentialRow) -> tuple[Any, ...]:
    """COLUMNS[13:] of an exponential-histogram row: its states share the row's offsets."""
    inc = row.increments
    if row.delta or row.first is None or row.last is None:
        inc_fields: tuple[Any, ...] = (inc.zero, _ints(inc.positive), _ints(inc.negative))
        first_fields: tuple[Any, ...] = (None, None, None)
        last_fields: tuple[Any, ...] = (None, None, None)
    else:
        first, last = row.first, row.last
        flat = [_flat(s) for s in (inc, first, last)]
        same_first = np.array_equal(flat[1], flat[2])
        same_inc = np.array_equal(flat[0], flat[2] - flat[1])
        inc_fields = (
            (None, None, None) if same_inc else (inc.zero, _ints(inc.positive), _ints(inc.negative))
        )
        first_fields = (
            (None, None, None)
            if same_first
            else (first.zero, _ints(first.positive), _ints(first.negative))
        )
        last_fields = (last.zero, _ints(last.positive), _ints(last.negative))
    return (
        row.first_start, row.last_start, None, None, None, None, row.scale, row.zero_threshold,
        inc.positive_offset, inc.negative_offset, *inc_fields, *first_fields, *last_fields,
    )  # fmt: skip


def _flat(state: ExponentialState) -> np.ndarray:
    return np.concatenate(([state.zero], state.positive, state.negative))


def _ints(values: np.ndarray) -> list[int]:
    return [int(v) for v in values]


def assemble(
    numbers: dict[str, Numbers],
    buckets: dict[str, list[tuple[list[float], Buckets]]],
    exponential: dict[str, list[ExponentialRow]],
) -> list[tuple[Any, ...]]:
    """Table rows (``COLUMNS`` order) from merged rows of each kind: per project, series
    and interval, part 0 holds the numbers and the histogram layout whose first point
    came first, parts 1.. the other layouts in that order (samples 0, number columns null)."""
    # Per (project, series, interval start): its number fields (COLUMNS[4:13]), and each
    # histogram layout's fields (COLUMNS[13:]) with the time of its first point.
    numbered: dict[tuple[str, int, int], tuple[Any, ...]] = {}
    histograms: dict[tuple[str, int, int], list[tuple[int, tuple[Any, ...]]]] = {}
    for project, rows in numbers.items():
        columns = (
            rows.samples, rows.total, rows.low, rows.high, rows.first_ns, rows.first,
            rows.last_ns, rows.last, rows.increase,
        )  # fmt: skip
        for series, start, *number_fields in zip(
            rows.series.tolist(), rows.time.tolist(), *(c.tolist() for c in columns), strict=True
        ):
            numbered[project, series, start] = tuple(number_fields)
    for project, per_layout in buckets.items():
        for bounds, hist in per_layout:
            for series, start, first_ns, hist_fields in zip(
                hist.chain.tolist(),
                hist.time.tolist(),
                hist.first_ns.tolist(),
                _bucket_fields(bounds, hist),
                strict=True,
            ):
                histograms.setdefault((project, series, start), []).append((first_ns, hist_fields))
    for project, exp_rows in exponential.items():
        for row in exp_rows:
            histograms.setdefault((project, row.series, row.time), []).append(
                (row.first_ns, _exponential_fields(row))
            )
    out: list[tuple[Any, ...]] = []
    no_numbers = (0, None, None, None, None, None, None, None, None)
    no_histogram = (None,) * (len(COLUMNS) - 13)
    for key in numbered.keys() | histograms.keys():
        project, series, start = key
        found = histograms.get(key, ())
        parts = [fields for _, fields in (sorted(found, key=_first) if len(found) > 1 else found)]
        out.append(
            (project, start, series, 0, *numbered.get(key, no_numbers),
             *(parts[0] if parts else no_histogram))
        )  # fmt: skip
        for part, fields in enumerate(parts[1:], start=1):
            out.append((project, start, series, part, *no_numbers, *fields))
    return out


def _first(layout: tuple[int, tuple[Any, ...]]) -> int:
    return layout[0]


async def complete_until(conn: Connection, project: str) -> tuple[int, int]:
    """``(1-minute, 1-hour)``: the rollups of ``project`` are final before these times (ns,
    0 when the job has never run)."""
    cursor = await conn.execute(COMPLETE_UNTIL, {"project": project, "name": JOB_NAME})
    row = await cursor.fetchone()
    if row is None:
        return 0, 0
    return ns_from_datetime(row[0]), ns_from_datetime(row[1])


async def final_until(conn: Connection, table: str) -> int:
    """Rows of ``table`` before this time (ns) are no longer needed by any rollup: every
    rollup made from them is final for every project. metric_points feeds the 1-minute
    rows, metric_rollups_1m the 1-hour rows; any other table feeds nothing."""
    if table not in ("metric_points", TABLE_1M):
        return 2**62
    cursor = await conn.execute(_FINAL_UNTIL, {"name": JOB_NAME})
    row = await cursor.fetchone()
    if row is None:
        return 0
    minutes, hours = row
    return ns_from_datetime(minutes if table == "metric_points" else hours)
