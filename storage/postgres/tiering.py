"""Tiering: hot partitions past their retention become Parquet objects, then go.

A partition (one table of one signal, one time range) is tiered once its whole range is
older than its signal's hot retention. For each project with rows in it:

1. export the project's rows to a local Parquet file (``storage.parquet.export_rows``);
2. upload it under its Hive-style key (``storage.objectstore.hive_key``), replacing what
   an interrupted pass may have left there;
3. read the object's footer back from the store and check it against the export (row
   count and otlpd's metadata: ``storage.parquet.verify``) and its size;
4. record it in the ``cold_objects`` manifest (0006), with its key blooms (0008,
   ``storage.keybloom``) in the same transaction.

Then, in one transaction that holds the partition ``ACCESS EXCLUSIVE`` (no write can
slip in), the rows of each project are counted again; only when every count equals the
manifest's is the partition dropped. A count that differs (a late record after the
export) removes that project's manifest rows of this generation instead, so the next
pass exports it again under the same key.

Killed at any step, a later pass goes on from what it finds: an object without a
manifest row is overwritten (same key), a manifest row without a drop skips the export
and goes to the check and drop. Nothing is lost (rows leave PostgreSQL only after their
object was read back) and nothing is stored twice (one key per project, partition and
generation). A partition made again after its drop (the writer makes missing ones for a
late record) is a new generation: another table oid, the next ``{n}`` in the key.

Cold objects past their signal's cold retention (by their newest row) are deleted,
manifest row first, then the object. A project's own retentions (``project_retention``,
``otlpd projects set-retention``) win over the server's: a partition is exported for a
project once its range is past that project's hot retention, and dropped once it is for
every project with rows in it; until then those rows are in both tiers, and the hot
copy is the answer.

Some tables feed derived data that must be made before their rows leave: the metric
rollups (``storage.postgres.metric_rollups``) are computed from the raw points while they
are hot, and the 1-hour rollups from the 1-minute ones. ``final_until(conn, table)`` says
up to when a table's rows are no longer needed; a partition ending later waits, hot, even
past its retention, until the rollups of its range are final. The rollup tables are tiered
like the others (their own hot retentions, ``OTLPD_ROLLUP_RETENTION_1M`` and ``_1H``), and
a project's own cold retention of metric points applies to them too.

The store being down fails the round before anything is dropped; the partition stays
hot and the job tries again with backoff (``interval``). ``TierJob`` is an
``otlpd.scheduler.Job``: one replica at a time.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from storage import parquet
from storage.objectstore import ObjectStore, hive_key
from storage.postgres.connect import connection_kwargs
from storage.postgres.partitions import Partition, datetime_from_ns, partitions_of

log = logging.getLogger(__name__)

JOB_NAME: Final = "tiering"
TAIL_BYTES: Final = 64 * 1024  # read first for a footer; a larger one is read again
DROP_LOCK_TIMEOUT: Final = "1s"  # writers wait this long at most while a partition goes
MAX_BACKOFF: Final = 3600.0

Connection = psycopg.AsyncConnection[TupleRow]

# The signal whose per-project retentions (project_retention) a table follows: the
# rollups follow the cold retention of the points they summarize, never a hot one.
RETENTION_SIGNAL: Final = {
    "metric_rollups_1m": "metric_points",
    "metric_rollups_1h": "metric_points",
}

_OVERRIDES: Final = """
SELECT project_id, signal, hot_seconds FROM project_retention WHERE hot_seconds IS NOT NULL
"""
# Objects past their project's cold retention, or the server's where it has none.
_EXPIRE: Final = """
DELETE FROM cold_objects c
WHERE c.signal = %(signal)s
  AND c.max_time < coalesce(
      (SELECT now() - r.cold_seconds * interval '1 second' FROM project_retention r
       WHERE r.project_id = c.project_id AND r.signal = %(retention_signal)s
         AND r.cold_seconds IS NOT NULL),
      %(default_cutoff)s::timestamptz)
RETURNING c.key
"""
# A key recorded again (its project exported anew after a late record) replaces the old
# row, and gets a new object_id: a cold record's id names the content it was read from.
_FORGET: Final = "DELETE FROM cold_objects WHERE project_id = %s AND signal = %s AND key = %s"
_RECORD: Final = """
INSERT INTO cold_objects (project_id, signal, key, partition, partition_oid, min_time,
    max_time, rows, bytes, sha256, schema_version, row_groups)
VALUES (%(project)s, %(signal)s, %(key)s, %(partition)s, %(oid)s, %(min_time)s,
    %(max_time)s, %(rows)s, %(bytes)s, %(sha256)s, %(version)s, %(row_groups)s)
RETURNING object_id
"""
_BLOOM: Final = """
INSERT INTO cold_key_blooms (project_id, kind, shard, object_id, segment_bits, hashes, bits)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""


class Pacer:
    """Sleeps the exporting thread so that it reads at most ``rate`` rows per second
    (0: no limit). An export at full speed takes a core, PostgreSQL's reading of it
    part of the other: ingest on the same two cores lost 22-26% while one ran
    (docs/benchmarks.md)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._started = time.monotonic()
        self._rows = 0

    def __call__(self, rows: int) -> None:
        if self._rate <= 0:
            return
        self._rows += rows
        ahead = self._rows / self._rate - (time.monotonic() - self._started)
        if ahead > 0:
            time.sleep(ahead)


@dataclass(frozen=True, slots=True)
class Moved:
    """What one pass did, for metrics and ``otlpd tier``."""

    partitions: int = 0
    objects: int = 0
    rows: int = 0
    bytes: int = 0
    expired: int = 0  # cold objects deleted past their cold retention


def _cutoff(own: Mapping[str, int], default: int, project: str) -> int:
    return own.get(project, default)


async def record(conn: Connection, partition: Partition, key: str, result: parquet.Exported) -> int:
    """Step 4: the manifest row of an uploaded, verified object and its key blooms, in one
    transaction; the new row's ``object_id``."""
    async with conn.transaction():
        await conn.execute(_FORGET, (result.project, partition.table, key))
        cursor = await conn.execute(
            _RECORD,
            {
                "project": result.project,
                "signal": partition.table,
                "key": key,
                "partition": partition.name,
                "oid": partition.oid,
                "min_time": datetime_from_ns(result.min_time_ns),
                "max_time": datetime_from_ns(result.max_time_ns),
                "rows": result.rows,
                "bytes": result.bytes,
                "sha256": result.sha256,
                "version": parquet.SCHEMA_VERSION,
                "row_groups": result.row_groups,
            },
        )
        row = await cursor.fetchone()
        assert row is not None  # INSERT ... RETURNING returns its row
        object_id = int(row[0])
        async with conn.cursor() as many:
            await many.executemany(
                _BLOOM,
                [
                    (result.project, b.kind, b.shard, object_id, b.segment_bits, b.hashes, b.bits)
                    for b in result.blooms
                ],
            )
    return object_id


def object_key(partition: Partition, project: str, generation: int) -> str:
    """``{signal}/project={id}/date=/hour=/{partition}-{generation}.parquet``."""
    return hive_key(
        partition.table, project, partition.low_ns, f"{partition.name}-{generation}.parquet"
    )


async def partitions_past(conn: Connection, table: str, cutoff_ns: int) -> list[Partition]:
    """``table``'s partitions whose whole range ends at or before ``cutoff_ns``, oldest first."""
    return [p for p in await partitions_of(conn, table) if p.high_ns <= cutoff_ns]


class TierJob:
    """Moves every partition past its signal's hot retention to ``store``."""

    name = JOB_NAME

    def __init__(
        self,
        conninfo: str,
        open_store: Callable[[], ObjectStore],
        retention: Mapping[str, float],
        *,
        interval: float = 900.0,
        max_rows_per_second: float = 0.0,
        cold_retention: Mapping[str, float] | None = None,
        on_object: Callable[[str, int, int], None] | None = None,
        on_lag: Callable[[str, float], None] | None = None,
        accept_past: float = 0.0,
        final_until: Callable[[Connection, str], Awaitable[int]] | None = None,
        before_drop: Callable[[Connection, str, int, int, Sequence[str]], Awaitable[bool]]
        | None = None,
    ) -> None:
        """``open_store`` is called at the first round (in a thread: it may create the
        bucket), so a store that is down delays tiering, never start-up;
        ``retention``: seconds per hot table (``spans``, ``logs``, ``metric_points``, the
        rollup tables); ``cold_retention``: likewise for the objects (a table left out
        expires only where a project set its own); ``accept_past``: how far back ingest
        takes records (``OTLPD_ACCEPT_PAST``): an empty partition that could still receive
        one is left, since the partition manager makes the whole accepted window ahead of
        time and would only make it again (for raw metric points, hot 2 h and accepted 24 h
        back, every pass dropped and the next maintenance made ~22 empty partitions a
        table); ``final_until(conn, table)``: the time (ns) before which ``table``'s rows
        feed no rollup that is not final (None: nothing waits); ``before_drop(conn, table,
        low_ns, high_ns, projects)``: called in the transaction that drops a partition,
        holding it, before the DROP, with the projects that have rows in it, to make what
        is derived from its rows final (False: the partition stays for the next pass, its
        objects recorded)."""
        self._conninfo = conninfo
        self._open_store = open_store
        self._store: ObjectStore | None = None
        self.last = Moved()  # what the last successful round did
        self._retention = dict(retention)
        self._cold_retention = dict(cold_retention or {})
        self._interval = interval
        self._max_rows_per_second = max_rows_per_second
        self._failures = 0
        self._on_object = on_object  # (table, rows, bytes) per object recorded
        self._on_lag = on_lag  # (table, seconds the oldest due partition is overdue)
        self._accept_past_ns = int(accept_past * 1e9)
        self._final_until = final_until
        self._before_drop = before_drop

    def store(self) -> ObjectStore:
        """The object store, opened on first use (blocking: call it in a thread)."""
        if self._store is None:
            self._store = self._open_store()
        return self._store

    @property
    def interval(self) -> float:
        """The tiering interval; after failed rounds, 30 s doubling up to it (backoff)."""
        if not self._failures:
            return self._interval
        backoff: float = 30.0 * 2.0 ** (self._failures - 1)
        return min(self._interval, MAX_BACKOFF, backoff)

    async def run(self, conn: Connection) -> None:
        try:
            self.last = await self.run_pass(conn)
        except BaseException:
            self._failures += 1
            raise
        self._failures = 0

    async def run_pass(self, conn: Connection) -> Moved:
        """Every due partition of every signal, oldest first."""
        await asyncio.to_thread(self.store)
        now = time.time_ns()
        total = Moved()
        cursor = await conn.execute(_OVERRIDES)
        overrides = {(str(p), str(t)): float(s) for p, t, s in await cursor.fetchall()}
        for table, keep_s in self._retention.items():
            cutoff = now - int(keep_s * 1e9)
            own = {p: now - int(s * 1e9) for (p, t), s in overrides.items() if t == table}
            # A partition may be due for one project (a shorter retention) before the
            # others: the earliest cutoff of any project finds it.
            due = await partitions_past(conn, table, max([cutoff, *own.values()]))
            if self._on_lag is not None:
                overdue = [cutoff - p.high_ns for p in due if p.high_ns <= cutoff]
                self._on_lag(table, max(overdue) / 1e9 if overdue else 0.0)
            if self._final_until is not None:
                # Rows that rollups still need stay hot, past their retention or not.
                needed_from = await self._final_until(conn, table)
                due = [p for p in due if p.high_ns <= needed_from]
            for partition in due:
                moved = await self.tier(conn, partition, due_for=partial(_cutoff, own, cutoff))
                total = Moved(
                    total.partitions + moved.partitions,
                    total.objects + moved.objects,
                    total.rows + moved.rows,
                    total.bytes + moved.bytes,
                    total.expired,
                )
        for table in self._retention:
            keep = self._cold_retention.get(table)
            default = None if keep is None else now - int(keep * 1e9)
            expired = await self.expire(conn, table, default)
            total = Moved(
                total.partitions, total.objects, total.rows, total.bytes, total.expired + expired
            )
        return total

    async def expire(self, conn: Connection, table: str, cutoff_ns: int | None) -> int:
        """Deletes ``table``'s objects whose newest row is older than their project's
        cold retention, else than ``cutoff_ns`` (None: only projects' own retentions):
        manifest row first, then the object, so no reader is ever sent to an object that
        is gone (a crash in between leaves an object nothing names, not a dangling row).
        Returns how many."""
        cursor = await conn.execute(
            _EXPIRE,
            {
                "signal": table,
                "retention_signal": RETENTION_SIGNAL.get(table, table),
                "default_cutoff": None if cutoff_ns is None else datetime_from_ns(cutoff_ns),
            },
        )
        keys = [str(key) for (key,) in await cursor.fetchall()]
        store = self.store()
        for key in keys:
            await asyncio.to_thread(store.delete, key)
        return len(keys)

    async def tier(
        self,
        conn: Connection,
        partition: Partition,
        *,
        due_for: Callable[[str], int] | None = None,
    ) -> Moved:
        """Exports what of ``partition`` is not in the manifest yet, then drops it if
        every project's count agrees with the manifest.

        ``due_for(project)`` is the time (ns) a partition must end before to be due for
        that project (its own hot retention); a project it is not due for yet stays hot,
        and so does the partition. None: due for every project."""
        ident = sql.Identifier(partition.name)
        cursor = await conn.execute(sql.SQL("SELECT DISTINCT project_id FROM {}").format(ident))
        projects = sorted(str(p) for (p,) in await cursor.fetchall())
        if not projects and partition.high_ns > time.time_ns() - self._accept_past_ns:
            return Moved()  # empty, and may still take a late record: left for later
        cursor = await conn.execute(
            "SELECT project_id, partition_oid, rows FROM cold_objects "
            "WHERE partition = %s AND signal = %s",
            (partition.name, partition.table),
        )
        recorded = await cursor.fetchall()
        generation = len({int(oid) for _, oid, _ in recorded if int(oid) != partition.oid})
        exported = {str(p): int(n) for p, oid, n in recorded if int(oid) == partition.oid}
        objects = rows = size = 0
        waiting = [p for p in projects if due_for is not None and partition.high_ns > due_for(p)]
        for project in projects:
            if project in exported or project in waiting:
                continue  # a pass before this one got as far as the manifest, or not yet due
            key = object_key(partition, project, generation)
            result = await asyncio.to_thread(self.export_and_upload, partition, project, key)
            await record(conn, partition, key, result)
            exported[project] = result.rows
            objects, rows, size = objects + 1, rows + result.rows, size + result.bytes
            if self._on_object is not None:
                self._on_object(partition.table, result.rows, result.bytes)
        dropped = not waiting and await self._drop_if_complete(conn, partition, exported)
        return Moved(int(dropped), objects, rows, size, 0)

    def export_and_upload(self, partition: Partition, project: str, key: str) -> parquet.Exported:
        """Steps 1-3, in a worker thread: export, upload, read the footer back."""
        store = self.store()
        with tempfile.TemporaryDirectory(prefix="otlpd-tier-") as tmp:
            path = Path(tmp) / "object.parquet"
            with psycopg.connect(
                self._conninfo, **connection_kwargs("otlpd-tiering", 10.0)
            ) as export_conn:
                result = parquet.export_rows(
                    export_conn,
                    partition.table,
                    partition.name,
                    project,
                    path,
                    pace=Pacer(self._max_rows_per_second),
                )
            info = store.put_file(key, path)
        if info.size != result.bytes:
            raise OSError(f"{key}: stored {info.size} bytes of {result.bytes}")
        tail = store.get_range(key, -min(TAIL_BYTES, result.bytes), 0)
        needed = parquet.footer_bytes_needed(tail)
        if needed > len(tail):
            tail = store.get_range(key, -needed, 0)
        parquet.verify(tail, result)
        return result

    async def _drop_if_complete(
        self, conn: Connection, partition: Partition, exported: dict[str, int]
    ) -> bool:
        ident = sql.Identifier(partition.name)
        async with conn.transaction():
            await conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(DROP_LOCK_TIMEOUT))
            )
            await conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(ident))
            cursor = await conn.execute(
                sql.SQL("SELECT project_id, count(*) FROM {} GROUP BY project_id").format(ident)
            )
            counts = {str(p): int(n) for p, n in await cursor.fetchall()}
            differ = sorted(
                p for p in counts.keys() | exported.keys() if counts.get(p) != exported.get(p)
            )
            if differ:
                # Late records after the export: export those projects again next pass.
                log.warning(
                    "partition %s changed while it was tiered; exporting %d project(s) again",
                    partition.name,
                    len(differ),
                )
                await conn.execute(
                    "DELETE FROM cold_objects WHERE partition = %s AND partition_oid = %s "
                    "AND project_id = ANY(%s)",
                    (partition.name, partition.oid, differ),
                )
                return False
            hook = self._before_drop
            if hook is not None and not await hook(
                conn, partition.table, partition.low_ns, partition.high_ns, sorted(counts)
            ):
                log.info("partition %s waits for its rollups", partition.name)
                return False
            await conn.execute(sql.SQL("DROP TABLE {}").format(ident))
        log.info(
            "tiered partition",
            extra={"partition": partition.name, "rows": sum(exported.values())},
        )
        return True
