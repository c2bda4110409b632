"""Time partitions of the record tables: the whole accepted window made ahead of time.

``spans``, ``logs`` and ``metric_points`` are range-partitioned on ``time`` with no
default partition, so a row whose partition is missing is refused. ``maintain`` makes
every partition of the window in which the decoder accepts records (``OTLPD_ACCEPT_PAST``
back to ``OTLPD_ACCEPT_FUTURE`` ahead, plus a few intervals), so ingest normally finds its
partitions; ``ensure`` makes one on demand, on a connection of its own and outside any
ingest transaction, for the rare row that finds none (a partition dropped by hand).

How a partition is made matters: ``CREATE TABLE ... PARTITION OF`` waits for an ACCESS
EXCLUSIVE lock on the parent, so it queues behind every open read of the parent, and
every later COPY queues behind it. Here a partition is a plain table made ``LIKE`` the
parent, with a CHECK constraint that proves its bounds, then ``ATTACH PARTITION``: that
takes SHARE UPDATE EXCLUSIVE on the parent, which neither reads nor COPY conflict with,
and the CHECK spares it the scan that proves the bounds (PostgreSQL documentation,
"Partition Maintenance"). Measured here: 12-16 ms while a long read held the parent,
when the PARTITION OF form was not granted its lock within 3 s (docs/design.md).

Buckets are aligned to the Unix epoch: bucket ``k`` holds ``[k * width, (k + 1) * width)``
and its partition is named ``<table>_p<UTC start as %Y%m%dt%H%M>``. The record tables share
one width (``OTLPD_PARTITION_INTERVAL``); the metric rollup tables (0009) have their own,
``ROLLUP_WIDTHS``, and are made by the rollup job when it writes, not ahead of time.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from storage.postgres.connect import connection_kwargs
from storage.postgres.errors import translate

PARTITIONED_TABLES: Final = ("spans", "logs", "metric_points")
# Seconds per partition of the metric rollups: a day of 1-minute rows is 1,440 per series,
# a week of 1-hour rows 168 (migration 0009).
ROLLUP_WIDTHS: Final = {"metric_rollups_1m": 86400, "metric_rollups_1h": 7 * 86400}
_TABLES: Final = (*PARTITIONED_TABLES, *ROLLUP_WIDTHS)

# Serializes partition creation across processes: concurrent CREATE TABLE IF NOT EXISTS
# of the same name can still collide on the catalog's unique indexes. One key per
# table (the second argument, its position in _TABLES) lets different tables proceed in
# parallel.
PARTITION_LOCK_CLASS: Final = 0x6F746C70  # "otlp"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_BOUNDS: Final = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")

# What exists, read once per manager: the bound expressions, printed in UTC so the
# timestamps parse the same whatever the server's TimeZone.
_EXISTING: Final = """
SELECT p.name, pg_get_expr(c.relpartbound, c.oid)
FROM unnest(%s::text[]) AS p(name)
JOIN pg_inherits i ON i.inhparent = to_regclass(p.name)
JOIN pg_class c ON c.oid = i.inhrelid
"""


# Every partition of one table, for the background jobs (rollups' backfill, tiering).
_PARTITIONS_OF: Final = """
SELECT c.relname, c.oid, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass(%s)
"""


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of ``table``: ``[low_ns, high_ns)``, its name and table oid."""

    table: str
    name: str
    oid: int
    low_ns: int
    high_ns: int


def parse_bound(bound: str) -> tuple[int, int] | None:
    """``(low_ns, high_ns)`` of a range bound as PostgreSQL prints it in UTC; None for a
    bound otlpd did not make (MINVALUE, MAXVALUE, a BC date)."""
    match = _BOUNDS.search(bound)
    if not match:
        return None
    try:
        low = ns_from_datetime(datetime.fromisoformat(match[1]))
        high = ns_from_datetime(datetime.fromisoformat(match[2]))
    except ValueError:
        return None
    return low, high


async def partitions_of(conn: psycopg.AsyncConnection[Any], table: str) -> list[Partition]:
    """Every partition of ``table`` that otlpd made, oldest first. Sets the session's
    TimeZone to UTC, so that the bounds print the way ``parse_bound`` reads them."""
    await conn.execute("SELECT set_config('TimeZone', 'UTC', false)")
    cursor = await conn.execute(_PARTITIONS_OF, (table,))
    found = []
    for name, oid, bound in await cursor.fetchall():
        parsed = parse_bound(str(bound))
        if parsed is not None:
            found.append(Partition(table, str(name), int(oid), *parsed))
    return sorted(found, key=lambda p: (p.low_ns, p.name))


async def ranges_before(
    conn: psycopg.AsyncConnection[Any], table: str, horizon: datetime
) -> list[tuple[datetime, datetime]]:
    """The time range ``[low, high)`` of every partition of ``table``, cut at ``horizon``;
    partitions wholly after it left out (what the rollups' first rounds backfill)."""
    ranges = [
        (datetime_from_ns(p.low_ns), min(datetime_from_ns(p.high_ns), horizon))
        for p in await partitions_of(conn, table)
    ]
    return [(low, high) for low, high in ranges if low < high]


def datetime_from_ns(ns: int) -> datetime:
    """``ns`` since the Unix epoch as an aware UTC datetime, truncated to microseconds."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def micros_from_datetime(moment: datetime) -> int:
    """An aware datetime as whole microseconds since the Unix epoch, exactly (no float).

    The divisor is one constant: building ``timedelta(microseconds=1)`` on every call was
    most of the 0.9 us this took, and readers convert every row's timestamptz (py-spy,
    GetSessionTimeline: 6% of otlpd's samples)."""
    return (moment - _EPOCH) // _MICROSECOND


def ns_from_datetime(moment: datetime) -> int:
    """An aware datetime as nanoseconds since the Unix epoch (exact to the microsecond)."""
    return (moment - _EPOCH) // _MICROSECOND * 1000


class PartitionManager:
    """Knows which time partitions exist and creates the missing ones; thread-safe.

    ``interval_seconds`` is the width of a partition of the record tables; it must be a
    positive multiple of 60 (names have minute resolution). Every process writing to a
    database must use the same width: a partition of another width that overlaps a
    bucket makes creating that bucket fail. The rollup tables have ``ROLLUP_WIDTHS``.
    ``lock_timeout`` bounds how long a creation waits for the parent's lock behind long
    queries, so that it cannot hold up all ingest queued behind it.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        interval_seconds: int = 3600,
        connect_timeout: float = 3.0,
        lock_timeout: float = 5.0,
        on_created: Callable[[list[str]], None] | None = None,
    ) -> None:
        if interval_seconds <= 0 or interval_seconds % 60:
            raise ValueError(
                f"interval_seconds must be a positive multiple of 60, got {interval_seconds}"
            )
        self._conninfo = conninfo
        self._connect_kwargs = connection_kwargs("otlpd-partitions", connect_timeout)
        self._lock_timeout_ms = max(1, int(lock_timeout * 1000))
        self.interval_ns: Final = interval_seconds * 1_000_000_000
        self._widths = dict.fromkeys(PARTITIONED_TABLES, self.interval_ns) | {
            table: seconds * 1_000_000_000 for table, seconds in ROLLUP_WIDTHS.items()
        }
        # Bucket starts (ns) known to exist, per table. Read without the lock on the fast
        # path (a set lookup is atomic under the GIL); changed only under it.
        self._known: dict[str, set[int]] = {table: set() for table in _TABLES}
        self._loaded = False
        self._lock = threading.Lock()
        # Told the names of the partitions this manager created (for otlpd's metrics).
        self._on_created = on_created

    def bucket_start(self, time_ns: int, table: str = "spans") -> int:
        """Start (ns) of ``table``'s bucket that holds ``time_ns``."""
        width = self.width_ns(table)
        return time_ns // width * width

    def width_ns(self, table: str) -> int:
        """The width of ``table``'s partitions in nanoseconds."""
        return self._widths[table]

    def partition_name(self, table: str, bucket_start_ns: int) -> str:
        """The name of ``table``'s partition for the bucket starting at ``bucket_start_ns``."""
        return f"{table}_p{datetime_from_ns(bucket_start_ns):%Y%m%dt%H%M}"

    def ensure(self, table: str, bucket_starts_ns: Iterable[int]) -> list[str]:
        """Make sure ``table`` has a partition for each bucket; returns the names created.

        Cheap when they all exist (a set lookup each). Blocking; call it before opening
        the transaction that writes the rows. Raises ``StorageUnavailable`` when the
        database cannot be reached or the parent's lock is not granted in time.
        """
        known = self._known[table]
        wanted = [start for start in bucket_starts_ns if start not in known]
        if not wanted:
            return []
        width = self.width_ns(table)
        for start in wanted:
            if start % width:
                raise ValueError(f"{start} is not the start of a {width} ns bucket of {table}")
        with self._lock:
            self._load_once()
            missing = sorted({start for start in wanted if start not in known})
            if not missing:
                return []
            created = self._create(table, missing)
            known.update(missing)
        if created and self._on_created is not None:
            self._on_created(created)
        return created

    def window(self, now_ns: int, past_ns: int, future_ns: int, ahead: int = 2) -> list[int]:
        """Bucket starts from ``now - past`` to ``now + future`` plus ``ahead`` more intervals,
        the current and the next ones first (the ones that are needed soonest)."""
        width = self.interval_ns
        current = self.bucket_start(now_ns)
        newest = self.bucket_start(now_ns + future_ns) + ahead * width
        oldest = self.bucket_start(max(0, now_ns - past_ns))
        soon = list(range(current, newest + width, width))
        back = list(range(current - width, oldest - width, -width))
        return soon + back

    def maintain(
        self, now_ns: int, past_ns: int = 0, future_ns: int = 0, ahead: int = 2
    ) -> list[str]:
        """Make every bucket of ``window`` in every table; returns the names created.

        Called at start and periodically (well within one interval), so that ingest
        finds its partitions and never waits for a creation. Raises like ``ensure``.
        """
        starts = self.window(now_ns, past_ns, future_ns, ahead)
        created: list[str] = []
        for table in PARTITIONED_TABLES:
            created += self.ensure(table, starts)
        return created

    def forget(self) -> None:
        """Drops what this manager knows; the next ``ensure`` reads the catalog again.

        For when partitions were dropped behind its back (retention, tiering, by hand):
        the writer calls it when PostgreSQL finds no partition for a row.
        """
        with self._lock:
            for known in self._known.values():
                known.clear()
            self._loaded = False

    def unknown(self, table: str, bucket_starts_ns: Iterable[int]) -> list[int]:
        """The bucket starts of ``table`` not known to exist; cheap (a set lookup each)."""
        known = self._known[table]
        return [start for start in bucket_starts_ns if start not in known]

    def known_buckets(self, table: str) -> frozenset[int]:
        """Bucket starts this manager knows exist (for tests and metrics)."""
        return frozenset(self._known[table])

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(self._conninfo, autocommit=True, **self._connect_kwargs)
        conn.execute("SELECT set_config('TimeZone', 'UTC', false)")
        return conn

    def _load_once(self) -> None:
        # At start, so that a restarted process knows what exists and does not take the
        # parent's lock again for every bucket; partitions of another width are honoured
        # by counting as known every bucket they cover entirely.
        if self._loaded:
            return
        try:
            with self._connect() as conn:
                rows = conn.execute(_EXISTING, (list(_TABLES),)).fetchall()
        except psycopg.Error as exc:
            raise translate(exc) from exc
        for table, bound in rows:
            width = self.width_ns(str(table))
            parsed = parse_bound(str(bound))
            if parsed is None:
                continue  # MINVALUE/MAXVALUE, a BC date: a bound we did not create
            low, high = parsed
            start = -(-low // width) * width
            known = self._known[str(table)]
            while start + width <= high:
                known.add(start)
                start += width
        self._loaded = True

    def _create(self, table: str, starts: list[int]) -> list[str]:
        created: list[str] = []
        lock_key = _TABLES.index(table)
        width = self.width_ns(table)
        try:
            with self._connect() as conn:
                conn.execute(
                    "SELECT set_config('lock_timeout', %s, false)", (str(self._lock_timeout_ms),)
                )
                for start in starts:
                    name = self.partition_name(table, start)
                    # One short transaction per partition: the parent's lock is held only
                    # for the time it takes to attach one.
                    with conn.transaction():
                        conn.execute(
                            "SELECT pg_advisory_xact_lock(%s, %s)",
                            (PARTITION_LOCK_CLASS, lock_key),
                        )
                        exists = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
                        if exists is not None and exists[0] is not None:
                            continue  # another process made it first
                        for statement in _attach_statements(
                            table, name, datetime_from_ns(start), width
                        ):
                            conn.execute(statement)
                    created.append(name)
        except psycopg.Error as exc:
            raise translate(exc) from exc
        return created


def _attach_statements(table: str, name: str, low: datetime, width_ns: int) -> list[sql.Composed]:
    """The statements that make ``name`` the partition of ``table`` for ``[low, low + width)``."""
    high = low + timedelta(microseconds=width_ns // 1000)
    bounds = (sql.Literal(low.isoformat()), sql.Literal(high.isoformat()))
    check = sql.Identifier(f"{name}_bounds")
    return [
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            sql.Identifier(name), sql.Identifier(table)
        ),
        # Proves the bounds, so ATTACH does not scan (the table is empty anyway, but the
        # proof keeps the lock short whatever the table holds).
        sql.SQL(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK (time IS NOT NULL AND time >= {} AND time < {})"
        ).format(sql.Identifier(name), check, *bounds),
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(table), sql.Identifier(name), *bounds
        ),
        # Redundant once attached: the partition constraint says the same.
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(name), check),
    ]
