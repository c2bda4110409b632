"""Pruning: the rows records refer to, once no hot partition needs them.

Spans and logs refer to ``resources``, metric points to ``metric_series``; records name
their session (``sessions``) and their service and operation (the catalog, ``services``
and ``operations``). When tiering drops a partition (its rows are in Parquet, which
carries their resources, scopes and series: docs/storage.md), those rows may be needed
by nothing any more. ``PruneJob`` deletes them, under two conditions, each a column of
every pruned table (0010):

(A) ``newest + R < H``: ``newest`` is the newest record time (coarse) of the writes that
    wrote the row (``last_seen``; ``last_record`` in the catalog), ``R`` the touch
    interval (``OTLPD_TOUCH_INTERVAL``) and ``H`` the lower bound of the oldest partition
    that exists, over the tables that refer to it ("referrers").
(B) ``touched + 2R < T0``: ``touched`` is when a writer last wrote the row (``touched_at``;
    the catalog's ``last_seen``), on PostgreSQL's clock (``statement_timestamp()``); ``T0``
    is PostgreSQL's clock when the pass began, before it read the partitions.

What the writer (``storage.postgres.writer``) does for its part:

(W1) It asks its caches (series, resources, sessions, catalog) whether it may skip a row
     only after the COPY of its records, inside their transaction: at that moment every
     partition the transaction's records went to exists, and stays until the transaction
     ends (the COPY holds it locked; a DROP waits).
(W2) A cache entry vouches for its row only for records whose time is at most ``R`` past
     the newest record of the write that taught it, and only for ``R`` (by the monotonic
     clock) after that write asked its caches. Entries are learned after commit, with
     what was sent.
(W3) Every upsert of a row sets its times: ``newest`` to at least the newest record of
     the write that refers to it, ``touched`` to ``statement_timestamp()`` (after ``c``);
     both only grow while the row exists. The upsert locks the row until commit.

Claim: a committed record never refers to a pruned row while it is in a hot partition
(unless a write inserted the row again). Take a record ``r`` (time ``t``) committed by a
transaction ``Y`` in partition ``X``, referring to row ``k``, and a DELETE of ``k`` in a
pass with ``T0`` and ``H``, deleting a version with times ``newest``, ``touched`` that
meet (A) and (B). The DELETE locks the row first (``FOR UPDATE SKIP LOCKED``) and
deletes only the version its statement's snapshot sees: the upsert of a write that
committed before that is seen, one in progress or committed since keeps the row, and
one that comes after waits for the DELETE and inserts the row again.

* ``Y`` wrote ``k`` itself, at statement time ``s`` after asking its caches at ``c``
  (W1): then ``touched >= s >= c`` (W3) and, by (B), ``c < T0``. At ``c``, ``X`` existed,
  so the pass read it (it read the partitions after ``T0``) unless ``Y`` had ended and
  ``X`` had been dropped, taking ``r`` with it. So ``H <= low(X) <= t <= newest`` (W3):
  (A) fails.
* ``Y`` skipped ``k``, vouched for by an entry learned from its own process's write
  ``Z`` (newest record ``n``, caches asked at ``z``): ``t <= n + R`` and ``c < z + R``
  (W2). Take the first DELETE after ``Z``: it sees ``newest >= n`` and ``touched >= z``
  (W3), so (B) gives ``c < z + R <= touched + R < T0``; as above ``X`` is read, and
  ``H <= t <= n + R <= newest + R``: (A) fails. No DELETE after ``Z`` removes ``k``
  while ``r`` is hot.

Nothing here depends on the clocks of otlpd's hosts: (A) compares record times with
record times (partition bounds), (B) PostgreSQL's clock with itself, and W2 measures a
duration; ``2R`` in (B) (``R`` would do) leaves a touch interval for PostgreSQL's clock
being stepped back or the writer's monotonic clock running slow. Partitions made again
for a late record, records in the future (``OTLPD_ACCEPT_FUTURE``) and writes that stall
between their COPY and their commit are covered by the argument as they are. A partition
whose bound is not a time range (a default or MAXVALUE partition made by hand) could
hold any record: then the rows it refers to are not pruned at all.

The metric rollups (0009) refer to ``metric_series`` as the points do, and are
partitioned by time like them, so (A) holds for them as for the points: a rollup row
covers times of points that named the series, so no rollup partition can hold a row of a
series whose newest record (plus ``R``) is older than the partition. A series goes once
its last rollup partition is tiered (the Parquet objects carry its labels).

A referrer that is not partitioned is probed by key instead, with an index that starts
``(project_id, key)``: the DELETE keeps the rows such a table refers to. That is sound
for a table written only from rows of the partitioned referrers that refer to the same
key, read in the transaction that writes it, never for a table the writer's caches skip.
To add one, name it in the referrers of ``PRUNED``.

What it costs ingest: a writer writes a row it keeps using again once per touch interval
(sooner for sessions, 60 s, and the catalog, 5 min, as before), and the upsert of a row
updates it (two more columns) where it used to do nothing. A live row stays: its record
times move on, and so does ``newest``.

The deletes are batched (``batch`` rows a statement, each its own transaction, found by
a keyset scan of an index on ``(project_id, newest, key)``), project by project, so a
prune of millions holds no lock for long and a pass with nothing to prune costs two
index probes per project and table. The job never waits for a writer's lock (it skips
the row), so it cannot deadlock with one. ``PruneJob`` is an ``otlpd.scheduler.Job``: one
replica at a time, right after tiering.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from storage.postgres.partitions import datetime_from_ns, ns_from_datetime, parse_bound

log = logging.getLogger(__name__)

JOB_NAME: Final = "prune"
BATCH: Final = 5000  # rows per DELETE: a few ms of locks and WAL at a time

Connection = psycopg.AsyncConnection[TupleRow]


@dataclass(frozen=True, slots=True)
class Referenced:
    """A table records refer to, and how ``PruneJob`` tells which of its rows to keep."""

    table: str
    key: tuple[tuple[str, str], ...]  # (column, SQL type) of the key after project_id
    newest: str  # the newest record time of the writes that wrote the row: (A)
    touched: str  # when a writer last wrote it, PostgreSQL's clock: (B)
    referrers: tuple[str, ...]  # the tables whose rows refer to it, by the same key
    # The signals whose cold objects count as referring to it too: the catalog lists what
    # the query API can answer for, and it answers from both tiers. Its rows stay until
    # the project's oldest cold object of those signals is newer, as (A) has it for
    # partitions (cold retention deletes the objects, then the rows may go).
    cold: tuple[str, ...] = ()


PRUNED: Final = (
    Referenced(
        "resources", (("resource_id", "int8"),), "last_seen", "touched_at", ("spans", "logs")
    ),
    Referenced(
        "metric_series",
        (("series_id", "int8"),),
        "last_seen",
        "touched_at",
        ("metric_points", "metric_rollups_1m", "metric_rollups_1h"),
    ),
    Referenced(
        "sessions",
        (("session_id", "text"),),
        "last_seen",
        "touched_at",
        ("spans", "logs", "metric_points"),
    ),
    Referenced(
        "services",
        (("service_name", "text"),),
        "last_record",
        "last_seen",
        ("spans", "logs", "metric_points"),
        cold=("spans", "logs", "metric_points"),
    ),
    Referenced(
        "operations",
        (("service_name", "text"), ("span_name", "text"), ("span_kind", "int2")),
        "last_record",
        "last_seen",
        ("spans",),
        cold=("spans",),
    ),
)

_RELKIND: Final = "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)"
_BOUNDS: Final = """
SELECT pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass(%s)
"""
_MARGIN_NS: Final = 1_000_000  # (A) with a millisecond to spare: times are stored in µs
_OLDEST_COLD: Final = (
    "SELECT min(min_time) FROM cold_objects WHERE project_id = %s AND signal = ANY(%s)"
)


@dataclass(frozen=True, slots=True)
class _Referrer:
    """What a pass learned of one referrer: the start of its oldest partition (ns; None
    when it has none), or that it is probed by key, or that nothing it refers to may go."""

    oldest_ns: int | None = None
    probed: bool = False
    unsafe: bool = False


class PruneJob:
    """Deletes the rows of ``tables`` that no hot partition needs any more (see above).

    ``touch_interval`` must be the writers' ``OTLPD_TOUCH_INTERVAL`` (the same on every
    replica); ``on_pruned(table, rows)`` is told what each pass deleted.
    """

    name = JOB_NAME

    def __init__(
        self,
        *,
        touch_interval: float = 3600.0,
        interval: float = 900.0,
        batch: int = BATCH,
        tables: Sequence[Referenced] = PRUNED,
        on_pruned: Callable[[str, int], None] | None = None,
    ) -> None:
        if touch_interval <= 0 or batch <= 0:
            raise ValueError(f"touch_interval and batch must be > 0, got {touch_interval}, {batch}")
        self._touch_ns = int(touch_interval * 1e9)
        self._interval = interval
        self._batch = batch
        self._tables = tuple(tables)
        self._on_pruned = on_pruned
        self.last: dict[str, int] = {}  # rows the last successful pass deleted, per table

    @property
    def interval(self) -> float:
        """Seconds between passes: the tiering interval, as it runs right after tiering."""
        return self._interval

    async def run(self, conn: Connection) -> None:
        self.last = await self.run_pass(conn)

    async def run_pass(self, conn: Connection) -> dict[str, int]:
        """One pass over every table; rows deleted per table."""
        cursor = await conn.execute("SELECT statement_timestamp()")
        row = await cursor.fetchone()
        assert row is not None
        started: datetime = row[0]  # T0, read before any partition is
        touched_before = started - timedelta(microseconds=2 * self._touch_ns // 1000)
        await conn.execute("SELECT set_config('TimeZone', 'UTC', false)")  # for parse_bound
        referrers: dict[str, _Referrer] = {}
        pruned: dict[str, int] = {}
        for table in self._tables:
            for name in table.referrers:
                if name not in referrers:
                    referrers[name] = await _referrer(conn, name)
            records_before = self._records_before(table, referrers)
            deleted = 0
            if records_before is not None:
                probed = [name for name in table.referrers if referrers[name].probed]
                for project in await _projects(conn, table.table):
                    deleted += await self._prune_project(
                        conn,
                        table,
                        project,
                        records_before=records_before,
                        touched_before=touched_before,
                        probed=probed,
                    )
            pruned[table.table] = deleted
            if self._on_pruned is not None:
                self._on_pruned(table.table, deleted)
        if any(pruned.values()):
            log.info("pruned rows no hot partition needs", extra={"pruned": pruned})
        return pruned

    def _records_before(self, table: Referenced, referrers: dict[str, _Referrer]) -> str | None:
        """Condition (A) as a bound on ``table.newest`` (a timestamptz literal), or None
        when nothing of ``table`` may go."""
        found = [referrers[name] for name in table.referrers]
        if any(r.unsafe for r in found):
            return None
        oldest = [r.oldest_ns for r in found if r.oldest_ns is not None]
        if not oldest:  # no partition at all: no hot record can refer to anything
            return "infinity"
        return datetime_from_ns(min(oldest) - self._touch_ns - _MARGIN_NS).isoformat()

    async def _prune_project(
        self,
        conn: Connection,
        table: Referenced,
        project: str,
        *,
        records_before: str,
        touched_before: datetime,
        probed: list[str],
    ) -> int:
        """Deletes ``project``'s rows of ``table`` that meet (A) and (B), a batch (one
        statement, its own transaction) at a time, in the order of its pruning index."""
        if table.cold:
            cursor = await conn.execute(_OLDEST_COLD, (project, list(table.cold)))
            row = await cursor.fetchone()
            if row is not None and row[0] is not None:
                cold = datetime_from_ns(ns_from_datetime(row[0]) - self._touch_ns - _MARGIN_NS)
                if records_before == "infinity" or cold < datetime.fromisoformat(records_before):
                    records_before = cold.isoformat()
        batches = _statements(table, probed)
        params: dict[str, Any] = {
            "project": project,
            "records_before": records_before,
            "touched_before": touched_before,
            "batch": self._batch,
        }
        deleted = 0
        after: tuple[Any, ...] | None = None
        while True:
            statement = batches[0] if after is None else batches[1]
            position = {} if after is None else {f"after{i}": v for i, v in enumerate(after)}
            cursor = await conn.execute(statement, {**params, **position})
            row = await cursor.fetchone()
            if row is None:  # no candidate left
                return deleted
            found, gone, *last = row
            deleted += int(gone)
            if int(found) < self._batch:
                return deleted
            after = tuple(last)


async def _referrer(conn: Connection, name: str) -> _Referrer:
    cursor = await conn.execute(_RELKIND, (name,))
    row = await cursor.fetchone()
    if row is None:
        log.warning("table %s is missing: what refers to it is not pruned", name)
        return _Referrer(unsafe=True)
    if row[0] != "p":
        return _Referrer(probed=True)
    cursor = await conn.execute(_BOUNDS, (name,))
    lows = []
    for (bound,) in await cursor.fetchall():
        parsed = parse_bound(str(bound))
        if parsed is None:
            log.warning("a partition of %s is not a time range: what it refers to stays", name)
            return _Referrer(unsafe=True)
        lows.append(parsed[0])
    return _Referrer(oldest_ns=min(lows) if lows else None)


async def _projects(conn: Connection, table: str) -> list[str]:
    """The projects with rows in ``table``, one index probe each (its key starts with
    project_id; PostgreSQL has no skip scan of its own)."""
    query = sql.SQL(
        "WITH RECURSIVE p(project_id) AS ("
        " SELECT min(project_id) FROM {t}"
        " UNION ALL"
        " SELECT (SELECT min(project_id) FROM {t} WHERE project_id > p.project_id)"
        " FROM p WHERE p.project_id IS NOT NULL)"
        " SELECT project_id FROM p WHERE project_id IS NOT NULL"
    ).format(t=sql.Identifier(table))
    cursor = await conn.execute(query)
    return [str(project) for (project,) in await cursor.fetchall()]


def _statements(table: Referenced, probed: list[str]) -> tuple[sql.Composed, sql.Composed]:
    """One batch as one statement (the first batch; the next ones, after a position):
    lock up to ``batch`` candidates in the order of the ``(project_id, newest, key)``
    index, delete them by tuple id, and return how many were found, how many deleted,
    and the ``(newest, key)`` of the last. Names come from ``PRUNED``; every value is a
    parameter.

    The lock is ``FOR UPDATE SKIP LOCKED``: a row a writer holds is left (its upsert is
    writing it again), so the job never waits for ingest and cannot deadlock with it,
    whatever order either locks rows in; a row a writer changed since the statement
    began is left too (its new version is not in the statement's snapshot). Once locked,
    a row keeps its tuple id until the statement ends: the DELETE is a TID scan.
    """
    newest, touched = sql.Identifier(table.newest), sql.Identifier(table.touched)
    keys = [sql.Identifier(column) for column, _ in table.key]
    order = sql.SQL(", ").join([newest, *keys])
    descending = sql.SQL(", ").join(sql.SQL("{} DESC").format(c) for c in [newest, *keys])
    kept = sql.SQL("").join(
        sql.SQL(
            " AND NOT EXISTS (SELECT 1 FROM {r} x WHERE x.project_id = c.project_id AND {same})"
        ).format(
            r=sql.Identifier(referrer),
            same=sql.SQL(" AND ").join(sql.SQL("x.{k} = c.{k}").format(k=k) for k in keys),
        )
        for referrer in probed
    )
    after = sql.SQL(" AND ({order}) > ({values})").format(
        order=order,
        values=sql.SQL(", ").join(sql.Placeholder(f"after{i}") for i in range(len(keys) + 1)),
    )
    batch = sql.SQL(
        "WITH doomed AS ("
        "SELECT c.ctid, {order} FROM {t} AS c WHERE c.project_id = %(project)s "
        "AND c.{newest} < %(records_before)s::timestamptz AND c.{touched} < %(touched_before)s"
        "{kept}{after} ORDER BY {order} LIMIT %(batch)s FOR UPDATE OF c SKIP LOCKED), "
        "gone AS (DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM doomed)) RETURNING 1) "
        "SELECT (SELECT count(*) FROM doomed), (SELECT count(*) FROM gone), last.* "
        "FROM (SELECT {order} FROM doomed ORDER BY {descending} LIMIT 1) AS last"
    )
    first, rest = (
        batch.format(
            order=order,
            descending=descending,
            t=sql.Identifier(table.table),
            newest=newest,
            touched=touched,
            kept=kept,
            after=position,
        )
        for position in (sql.SQL(""), after)
    )
    return first, rest
