"""The full-text index of closed log partitions: a pg_trgm GIN on each body's text (and
the BRIN summaries of the open ones, which the same newest-first search reads first).

A trigram GIN index maintained during COPY makes ingest ~50x slower (measured, see
0001_init.sql), so the open partitions have none and SearchLogs scans them; once a
partition closes (its upper bound is ``grace`` behind now, past the writers' clock skew
and batching) it rarely gets a row again, and one ``CREATE INDEX CONCURRENTLY`` makes its
bodies searchable by index. CONCURRENTLY takes only SHARE UPDATE EXCLUSIVE on that
partition, so neither COPY into it (late records) nor reads wait for the build
(PostgreSQL documentation, "Building Indexes Concurrently"). A build that fails (a
cancelled statement, a lost connection) leaves an INVALID index behind, which the
planner never uses and IF NOT EXISTS would keep forever: it is dropped and built again.
Once built, the partition is analyzed, so that the planner knows how common a word is
(``TextIndexJob.analyze_indexed``).

The open partitions get the same index in slices: once ``SLICE_SECONDS`` of a partition
have passed (and ``settle`` more for late records), a partial index ``WHERE time >= start
AND time < end`` covers them. A row COPY writes after that slice is outside every slice's
predicate, so ingest pays nothing for it; a late record inside one is indexed as it is
written. A word search then reads by index every slice and scans only the newest
minutes (``log_reader.search``, ``slices``), where it used to scan the whole open hour:
~150 ms of PostgreSQL for a rare word 42 minutes into an hour of the query benchmark
(docs/benchmarks.md, "The open partition indexed in slices"). Once a partition has its
whole-partition index, its slices are dropped.

The indexed expression is ``storage.postgres.log_reader.BODY_TEXT`` without its alias:
the planner uses an expression index only for the identical expression.

``TextIndexJob`` is a ``otlpd.scheduler.Job``: the scheduler's lock makes sure one replica
at a time builds (two concurrent builds of one partition would double the work).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from storage.postgres.partitions import datetime_from_ns, ns_from_datetime, parse_bound

log = logging.getLogger(__name__)

INDEX_SUFFIX: Final = "_body_trgm"
# A slice's index: ``<partition>_body_trgm_s<UTC start as %Y%m%dt%H%M>``.
SLICE_INFIX: Final = INDEX_SUFFIX + "_s"
SLICE_SECONDS: Final = 600
SLICE_NS: Final = SLICE_SECONDS * 1_000_000_000
_SLICE_NAME: Final = re.compile(r"_body_trgm_s(\d{8}t\d{4})$")
_SLICE_LIKE: Final = "%" + SLICE_INFIX.replace("_", "\\_") + "%"

# Every slice index of a log partition: (partition, index, valid).
_SLICES: Final = """
SELECT c.relname, ic.relname, ix.indisvalid
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_index ix ON ix.indrelid = c.oid
JOIN pg_class ic ON ic.oid = ix.indexrelid
WHERE i.inhparent = to_regclass('logs') AND ic.relname LIKE %s
"""

# Every partition of logs, its bound (printed in UTC by the caller's TimeZone setting),
# and whether its text index exists and is valid (null: there is none).
_PARTITIONS: Final = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), ix.indisvalid
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
LEFT JOIN pg_class ic ON ic.relnamespace = c.relnamespace AND ic.relname = c.relname || %s
LEFT JOIN pg_index ix ON ix.indexrelid = ic.oid
WHERE i.inhparent = to_regclass('logs')
"""

# The BRIN index of every log partition that is open (upper bound after ``%s``, µs).
_OPEN_BRINS: Final = """
SELECT x.indexrelid::regclass::text
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_index x ON x.indrelid = c.oid
JOIN pg_class ic ON ic.oid = x.indexrelid
JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'brin'
WHERE i.inhparent = to_regclass('logs')
  AND (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz
      > 'epoch'::timestamptz + %s * interval '1 microsecond'
"""

_INSERTS: Final = "SELECT relname, n_tup_ins FROM pg_stat_user_tables WHERE relname = ANY(%s)"

# Every log partition with a valid whole text index but no statistics on its indexed
# expression, never analyzed by us (``last_analyze``: a partition whose statistics stay
# hidden from this role is analyzed once, not every round), newest first.
_UNANALYZED: Final = """
SELECT c.relname
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class ic ON ic.relnamespace = c.relnamespace AND ic.relname = c.relname || %s
JOIN pg_index ix ON ix.indexrelid = ic.oid AND ix.indisvalid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables t ON t.relid = c.oid
WHERE i.inhparent = to_regclass('logs')
  AND t.last_analyze IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = ic.relname
  )
ORDER BY c.relname DESC
"""

Connection = psycopg.AsyncConnection[TupleRow]


def index_name(partition: str) -> str:
    """The text index's name for ``partition``: fixed, so a build is found again (and an
    invalid leftover recognised) by name alone."""
    return partition + INDEX_SUFFIX


def slice_name(partition: str, start_ns: int) -> str:
    """The name of ``partition``'s slice index for ``[start_ns, start_ns + SLICE_NS)``."""
    return f"{partition}{SLICE_INFIX}{datetime_from_ns(start_ns):%Y%m%dt%H%M}"


def slice_start(index: str) -> int | None:
    """The start (ns) of the slice an index of that name covers; None for another index."""
    match = _SLICE_NAME.search(index)
    if match is None:
        return None
    moment = datetime.strptime(match[1], "%Y%m%dt%H%M").replace(tzinfo=UTC)
    return ns_from_datetime(moment)


def slices_statement() -> tuple[str, list[Any]]:
    """``(partition, index, valid)`` of every slice index (``slice_start`` reads an
    index's name): for the job, and for searches, which read the valid ones by index."""
    return _SLICES, [_SLICE_LIKE]


async def closed_unindexed(conn: Connection, now_ns: int, grace_ns: int) -> list[tuple[str, bool]]:
    """(partition, has an invalid index) of every log partition closed by ``now - grace``
    without a valid text index, newest first (the ones searched most)."""
    await conn.execute("SELECT set_config('TimeZone', 'UTC', false)")
    cursor = await conn.execute(_PARTITIONS, (INDEX_SUFFIX,))
    found: list[tuple[int, str, bool]] = []
    for name, bound, valid in await cursor.fetchall():
        parsed = parse_bound(str(bound))
        if parsed is None or valid:
            continue  # not a bound we made, or indexed already
        high = parsed[1]
        if high <= now_ns - grace_ns:
            found.append((high, str(name), valid is False))
    return [(name, invalid) for _, name, invalid in sorted(found, reverse=True)]


async def index_partition(conn: Connection, partition: str, *, invalid: bool) -> None:
    """Builds ``partition``'s text index (``conn`` in autocommit: CONCURRENTLY needs it),
    dropping a failed build's leftover first."""
    name = sql.Identifier(index_name(partition))
    if invalid:
        await conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(name))
    await conn.execute(
        sql.SQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} "
            "USING gin ((body #>> '{{}}') gin_trgm_ops)"
        ).format(name, sql.Identifier(partition))
    )


async def index_slice(conn: Connection, partition: str, start_ns: int, *, invalid: bool) -> None:
    """Builds the slice index of ``partition`` from ``start_ns`` (``conn`` in autocommit),
    dropping a failed build's leftover first. The bounds are literals: the planner proves
    a search's arm implies the predicate by comparing them with the arm's values."""
    name = sql.Identifier(slice_name(partition, start_ns))
    if invalid:
        await conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(name))
    low, high = datetime_from_ns(start_ns), datetime_from_ns(start_ns + SLICE_NS)
    await conn.execute(
        sql.SQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} "
            "USING gin ((body #>> '{{}}') gin_trgm_ops) WHERE time >= {} AND time < {}"
        ).format(name, sql.Identifier(partition), sql.Literal(low), sql.Literal(high))
    )


class TextIndexJob:
    """Indexes every closed log partition that has no valid text index yet, and the
    settled slices of the open ones."""

    name = "text_index"

    def __init__(
        self,
        *,
        interval: float = 60.0,
        grace: float = 300.0,
        settle: float = 60.0,
        slices: bool = True,
        quiet_seconds: float = 2.0,
        busy_rows: int = 1000,
        on_indexed: Callable[[str], None] | None = None,
    ) -> None:
        self.interval = interval
        self._grace_ns = int(grace * 1e9)
        self._settle_ns = int(settle * 1e9)
        self._slices = slices
        self._quiet_seconds = quiet_seconds
        self._busy_rows = busy_rows
        self._on_indexed = on_indexed
        self._no_extension = False

    async def run(self, conn: Connection) -> None:
        """One scheduled round: the open partitions' BRIN summaries, the closed
        partitions' indexes, then the open partitions' slices."""
        now = time.time_ns()
        await self.summarize_open(conn, now)
        await self.index_closed(conn, now)
        await self.index_slices(conn, now)

    async def index_slices(self, conn: Connection, now_ns: int) -> list[str]:
        """Drops the slices of partitions indexed whole, then indexes the slices of the
        open partitions that ended ``settle`` ago (unless the job was made without
        ``slices``); returns the slices it built, newest first. A failed build or drop is
        logged and left for the next round."""
        if not await self._extension(conn):
            return []
        await conn.execute("SELECT set_config('TimeZone', 'UTC', false)")
        cursor = await conn.execute(_PARTITIONS, (INDEX_SUFFIX,))
        partitions = await cursor.fetchall()
        cursor = await conn.execute(*slices_statement())
        slices = {str(index): bool(valid) for _, index, valid in await cursor.fetchall()}
        whole = {str(name) for name, _, valid in partitions if valid}
        for index in sorted(slices):
            if index[: index.find(SLICE_INFIX)] not in whole:
                continue
            try:
                drop = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}")
                await conn.execute(drop.format(sql.Identifier(index)))
            except psycopg.Error as exc:
                log.warning("dropping %s failed; will retry: %s", index, exc)
        if not self._slices:
            return []
        built: list[str] = []
        for start, partition in self._unindexed_slices(partitions, slices, now_ns):
            index = slice_name(partition, start)
            started = time.perf_counter()
            try:
                await index_slice(conn, partition, start, invalid=index in slices)
            except psycopg.Error as exc:
                log.warning("text index slice %s failed; will retry: %s", index, exc)
                continue
            seconds = round(time.perf_counter() - started, 3)
            log.info("indexed log bodies of %s", index, extra={"seconds": seconds})
            built.append(index)
        return built

    def _unindexed_slices(
        self, partitions: Sequence[Any], slices: Mapping[str, bool], now_ns: int
    ) -> list[tuple[int, str]]:
        """(start, partition) of every slice over and settled by ``now_ns`` in a partition
        that is open (not ``grace`` past its end) and has no whole index, lacking a valid
        index (``slices``: index name -> valid), newest first."""
        wanted: list[tuple[int, str]] = []
        settled = now_ns - self._settle_ns
        for name, bound, valid in partitions:
            parsed = parse_bound(str(bound))
            if parsed is None or valid or parsed[1] <= now_ns - self._grace_ns:
                continue  # not ours, indexed whole, or closed (index_closed's)
            low, high = parsed
            start = -(-low // SLICE_NS) * SLICE_NS
            while start + SLICE_NS <= min(high, settled):
                if not slices.get(slice_name(str(name), start)):
                    wanted.append((start, str(name)))
                start += SLICE_NS
        return sorted(wanted, reverse=True)

    async def summarize_open(self, conn: Connection, now_ns: int) -> int:
        """Summarizes the block ranges the open partitions' BRIN indexes do not cover yet;
        returns how many it summarized.

        A BRIN range filled by inserts stays unsummarized (matching every query) until a
        VACUUM, and autovacuum visits an insert-only table only after it grew by 20%
        (``autovacuum_vacuum_insert_scale_factor``): exactly the newest rows, which
        SearchLogs reads first, would be scanned whole. Measured on a 420k-row partition
        before its first vacuum: a one-minute window read all 9,010 blocks (72 ms) instead
        of 50 (0.5 ms). The last, partial range stays unsummarized until it is full (the
        function skips it): under a minute of data. ``brin_summarize_new_values`` takes
        SHARE UPDATE EXCLUSIVE on the partition, which COPY's ROW EXCLUSIVE does not
        conflict with.
        """
        cursor = await conn.execute(_OPEN_BRINS, ((now_ns - self._grace_ns) // 1000,))
        summarized = 0
        for (index,) in await cursor.fetchall():
            try:
                result = await conn.execute(
                    "SELECT brin_summarize_new_values(%s::regclass)", (index,)
                )
            except psycopg.Error as exc:
                log.warning("summarizing %s failed; will retry: %s", index, exc)
                continue
            row = await result.fetchone()
            summarized += int(row[0]) if row is not None else 0
        return summarized

    async def index_closed(self, conn: Connection, now_ns: int) -> list[str]:
        """One round: the partitions it indexed, newest first, then analyzed (with any
        indexed earlier and never analyzed, see ``analyze_indexed``). A partition whose
        build fails is logged and left for the next round; the others still get theirs."""
        if not await self._extension(conn):
            return []
        indexed: list[str] = []
        candidates = await closed_unindexed(conn, now_ns, self._grace_ns)
        busy = await self._busy(conn, [name for name, _ in candidates])
        for partition, invalid in candidates:
            if partition in busy:
                log.info("%s still takes writes; its text index waits", partition)
                continue
            started = time.perf_counter()
            try:
                await index_partition(conn, partition, invalid=invalid)
            except psycopg.Error as exc:
                log.warning("text index of %s failed; will retry: %s", partition, exc)
                continue
            log.info(
                "indexed log bodies of %s",
                partition,
                extra={"seconds": round(time.perf_counter() - started, 3)},
            )
            indexed.append(partition)
            if self._on_indexed is not None:
                self._on_indexed(partition)
        await self.analyze_indexed(conn)
        return indexed

    async def analyze_indexed(self, conn: Connection) -> list[str]:
        """ANALYZEs every partition whose whole text index has no statistics yet; returns
        them, newest first.

        The planner estimates how many bodies a word matches from the statistics of the
        indexed expression, which ANALYZE gathers for an expression index, and only once
        the index exists. Autovacuum analyzes a partition while rows arrive, so before its
        index is built, and then no more: without this, every word looks rare to the
        planner, which then takes every candidate the whole partition's index holds and
        rechecks its body, to keep the few of a search's time window. Measured on the
        query benchmark's newest closed hour (417k records): the one-minute window of
        SearchLogs for "request", a word in 43% of bodies, took 360 ms before and 56 ms
        after, a rare word 0.4 and 0.2 ms (docs/benchmarks.md, "Word statistics for the
        planner"). ANALYZE reads a sample (30,000 rows at the default statistics target;
        0.45 s for that hour) under SHARE UPDATE EXCLUSIVE, which neither COPY nor reads
        wait for. A server upgraded over many indexed partitions analyzes them all in its
        first round; only this job's round is longer for it (each job has its own lock
        and connection, ``otlpd.scheduler``).
        """
        cursor = await conn.execute(_UNANALYZED, (INDEX_SUFFIX,))
        analyzed: list[str] = []
        for (partition,) in await cursor.fetchall():
            try:
                await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(str(partition))))
            except psycopg.Error as exc:
                log.warning("analyzing %s failed; will retry: %s", partition, exc)
                continue
            analyzed.append(str(partition))
        return analyzed

    async def _busy(self, conn: Connection, partitions: list[str]) -> set[str]:
        """The ``partitions`` that took ``busy_rows`` or more rows in ``quiet_seconds``.

        "Closed" is by the clock, but records are accepted up to a day late: a backfill,
        or a replay of old telemetry, can write a closed partition at full rate, and COPY
        into a partition with a trigram GIN is ~50x slower (0001_init.sql). Such a
        partition waits for a later round; a trickle of late records does not hold it up.
        The counts are the cumulative statistics' inserts per table
        (``pg_stat_user_tables.n_tup_ins``), which busy writers flush every second; each
        autocommit statement reads them afresh.
        """
        if not partitions or self._quiet_seconds <= 0:
            return set()

        async def inserts() -> dict[str, int]:
            cursor = await conn.execute(_INSERTS, (partitions,))
            return {str(name): int(n) for name, n in await cursor.fetchall()}

        before = await inserts()
        await asyncio.sleep(self._quiet_seconds)
        after = await inserts()
        return {name for name, n in after.items() if n - before.get(name, n) >= self._busy_rows}

    async def _extension(self, conn: Connection) -> bool:
        """Whether pg_trgm is there (creating it if we may); logged once when it cannot be:
        search still works without it, by scanning."""
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except psycopg.Error as exc:
            if not self._no_extension:
                log.warning("pg_trgm is unavailable; log search will scan: %s", exc)
            self._no_extension = True
            return False
        self._no_extension = False
        return True
