"""The PostgreSQL writer: every row of a group of batches in one transaction, by binary COPY.

Per ``write``: the partitions the rows need are made sure of first (on a connection of
their own, see ``partitions``), then one transaction holds three binary COPY streams
(spans, logs, metric points), one upsert each of the metric series and of the resources
its caches do not vouch for, one of the sessions and one of the catalog, and commits.
Binary COPY is the fastest way into PostgreSQL and the row tuples of ``storage.model``
are what it consumes, so the hot loop is one C call per row. Only two dumpers run in
Python, once per value: int nanoseconds to ``timestamptz`` and JSON text to binary
``jsonb``; ``smallint`` and ``integer`` columns are range-checked a column at a time
before the COPY (psycopg's C dumpers wrap silently). Measured on 2 cores with the
benchmark's spans (~650 B a row on disk, four indexes): ~1-1.5 µs of Python per row
against ~12 µs of PostgreSQL (~17.5 µs while every row carried its resource as jsonb), so
one writer thread runs at what the server takes from one connection (~75k rows/s).

``write`` is called from writer threads; the pool hands each its own connection and
psycopg releases the GIL while libpq talks to the server.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import operator
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from time import monotonic, perf_counter
from typing import Any, Final

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper
from psycopg.rows import TupleRow
from psycopg.types.string import BytesBinaryDumper
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.api import StorageDataError, WriteStats
from storage.model import (
    LOG_COLUMNS,
    POINT_COLUMNS,
    RESOURCE_COLUMNS,
    SERIES_COLUMNS,
    SESSION_COLUMNS,
    SPAN_COLUMNS,
    Row,
    RowBatch,
    SessionSighting,
)
from storage.postgres.connect import connection_kwargs
from storage.postgres.errors import ENCODING_ERRORS, translate, translate_encoding
from storage.postgres.partitions import PartitionManager, datetime_from_ns
from storage.postgres.rollups import REQUEST_KINDS

logger = logging.getLogger(__name__)

_TIME: Final = operator.itemgetter(1)  # every record row has its time second
_PROJECT: Final = operator.itemgetter(0)  # and its project first

# --- Encoding ------------------------------------------------------------------------

# timestamptz on the wire is int64 microseconds since 2000-01-01 UTC.
_PG_EPOCH_US: Final = 946_684_800_000_000
_pack_int64 = struct.Struct("!q").pack
_encode_str = str.encode  # raises TypeError (a data error) for a non-str, unlike obj.encode


class NanosTimestamptzBinaryDumper(Dumper):
    """Dumps int nanoseconds since the Unix epoch as binary ``timestamptz`` (truncated to µs).

    Registered by oid only, so it serves ``COPY ... set_types`` on the writer's
    connections and leaves ``datetime`` parameters alone.
    """

    format = pq.Format.BINARY
    oid = 1184  # timestamptz

    def dump(self, obj: int) -> bytes:
        """Runs once per value: keep it to one division and one pack."""
        return _pack_int64(obj // 1000 - _PG_EPOCH_US)


class JsonTextJsonbBinaryDumper(Dumper):
    """Dumps a ``str`` of serialized JSON as binary ``jsonb`` (version 1, then the text).

    The decoder serialized it already (a resource shared by many rows, once); psycopg's
    own jsonb dumper would serialize the str again, as a JSON string.
    """

    format = pq.Format.BINARY
    oid = 3802  # jsonb

    def dump(self, obj: str) -> bytes:
        """Runs once per value: one encode, one concatenation; PostgreSQL validates."""
        return b"\x01" + _encode_str(obj)


_ARRAY_HEAD = struct.Struct("!iiIii")  # dimensions, has nulls, element oid, length, lower bound
_EMPTY_ARRAY = struct.Struct("!iiI")  # no dimensions
_PACKERS_MAX = 256  # distinct array lengths with a packer ready, per element type


class _NumberArrayBinaryDumper(Dumper):
    """Dumps a list of numbers, none of them None, as a binary one-dimensional array.

    psycopg's own list dumper inspects every element's type and dims in Python: ~7 µs for
    a histogram point's two arrays (py-spy, bench "metrics"); here one struct per length
    packs the whole array. Registered by oid only, like the timestamptz one.
    """

    format = pq.Format.BINARY
    element_oid = 0
    element_code = ""
    _packers: dict[int, struct.Struct]

    def dump(self, obj: list[Any]) -> bytes:
        """Raises struct.error (a data error) for a value out of the element's range."""
        n = len(obj)
        if not n:
            return _EMPTY_ARRAY.pack(0, 0, self.element_oid)
        packers = self._packers
        packer = packers.get(n)
        if packer is None:
            if len(packers) >= _PACKERS_MAX:
                packers.clear()
            # Each element is its length (8) then its value.
            packer = packers[n] = struct.Struct("!" + ("i" + self.element_code) * n)
        lengths = itertools.repeat(8, n)
        elements = packer.pack(*itertools.chain.from_iterable(zip(lengths, obj, strict=True)))
        return _ARRAY_HEAD.pack(1, 0, self.element_oid, n, 1) + elements


class Int8ArrayBinaryDumper(_NumberArrayBinaryDumper):
    """``bigint[]``: histogram bucket counts."""

    oid = 1016
    element_oid = 20
    element_code = "q"
    _packers: dict[int, struct.Struct] = {}


class Float8ArrayBinaryDumper(_NumberArrayBinaryDumper):
    """``double precision[]``: histogram explicit bounds."""

    oid = 1022
    element_oid = 701
    element_code = "d"
    _packers: dict[int, struct.Struct] = {}


# smallint and integer columns are range-checked a whole column at a time (``_ranges``)
# and then dumped by psycopg's C dumpers, which on their own keep the low bits (70000 is
# stored as 4464): an OTLP enum is an open int32 and a dropped count a uint32, so a
# client can send any value, and storing a different number would cost the data its
# meaning. Per value in Python the check cost ~0.13 µs (a dumper call); per column in C
# (filter, min, max) ~0.03 µs a row (py-spy, bench "spans-sessions").
_INT_RANGES: Final = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1)}
_NOT_NONE: Final = functools.partial(operator.is_not, None)


def _ranges(types: Sequence[str]) -> tuple[tuple[int, int, int], ...]:
    """``(column index, low, high)`` of every smallint and integer column of ``types``."""
    return tuple((i, *_INT_RANGES[t]) for i, t in enumerate(types) if t in _INT_RANGES)


def _check_ranges(rows: list[Row], ranges: tuple[tuple[int, int, int], ...]) -> None:
    """Raises a data error if a value is outside its column's range (see ``_INT_RANGES``)."""
    for index, low, high in ranges:
        values = list(filter(_NOT_NONE, map(operator.itemgetter(index), rows)))
        if values and (min(values) < low or max(values) > high):
            bad = next(v for v in values if not low <= v <= high)
            raise StorageDataError(f"cannot encode a row: {bad} is out of range for column {index}")


def configure_connection(conn: psycopg.Connection[TupleRow]) -> None:
    """Prepares a new pooled connection for the writer: its dumpers and its session limits."""
    adapters = conn.adapters
    adapters.register_dumper(None, NanosTimestamptzBinaryDumper)
    adapters.register_dumper(None, JsonTextJsonbBinaryDumper)
    adapters.register_dumper(None, Int8ArrayBinaryDumper)
    adapters.register_dumper(None, Float8ArrayBinaryDumper)
    # psycopg.dbapi20 registers a Python dumper for bytea (to unwrap Binary objects);
    # by oid we want the C one, which passes bytes through.
    adapters.register_dumper(None, BytesBinaryDumper)


# --- Statements ----------------------------------------------------------------------

# COPY types in model.py's column order; tests check them against the catalog.
SPAN_TYPES: Final = (
    "text", "timestamptz", "int8", "int8", "int8", "bytea", "bytea", "bytea", "text",
    "int8", "text", "text", "text", "text", "int2", "int2", "text", "jsonb", "jsonb",
    "jsonb", "int4", "int4", "int4", "int8", "text", "text", "jsonb", "text", "int4",
)  # fmt: skip
LOG_TYPES: Final = (
    "text", "timestamptz", "int8", "int8", "bytea", "bytea", "int8", "text", "text",
    "text", "int2", "text", "jsonb", "jsonb", "text", "int4", "int8", "text", "text",
    "jsonb", "text", "int4",
)  # fmt: skip
POINT_TYPES: Final = (
    "text", "timestamptz", "int8", "int8", "int8", "text", "bytea", "bytea", "text",
    "text", "int8", "float8", "int8", "int8", "float8", "float8", "float8", "int8[]",
    "float8[]", "int4", "int8", "float8", "int4", "int8[]", "int4", "int8[]", "jsonb",
    "jsonb",
)  # fmt: skip
SERIES_TYPES: Final = (
    "text", "int8", "text", "int2", "text", "text", "int2", "bool", "text", "jsonb",
    "jsonb", "text", "text", "jsonb", "timestamptz", "text", "int4", "jsonb", "text", "int4",
)  # fmt: skip
RESOURCE_TYPES: Final = ("text", "int8", "jsonb", "text", "int4", "timestamptz")
SESSION_TYPES: Final = ("text", "text", "text", "text", "timestamptz", "timestamptz")

assert len(SPAN_TYPES) == len(SPAN_COLUMNS)
assert len(LOG_TYPES) == len(LOG_COLUMNS)
assert len(POINT_TYPES) == len(POINT_COLUMNS)
assert len(SERIES_TYPES) == len(SERIES_COLUMNS)
assert len(RESOURCE_TYPES) == len(RESOURCE_COLUMNS)
assert len(SESSION_TYPES) == len(SESSION_COLUMNS)


def _column_list(columns: Iterable[str]) -> str:
    return ", ".join(f'"{column}"' for column in columns)


def _copy_statement(table: str, columns: Sequence[str]) -> bytes:
    return f"COPY {table} ({_column_list(columns)}) FROM STDIN (FORMAT BINARY)".encode()


def _unnest(types: Sequence[str]) -> str:
    # jsonb and timestamptz travel as text[] and timestamptz[] parameters (the custom
    # dumpers serve COPY only); jsonb is parsed by the cast.
    casts = {"jsonb": "text[]::jsonb[]"}
    return ", ".join(f"%s::{casts.get(t, t + '[]')}" for t in types)


_COPY_SPANS: Final = _copy_statement("spans", SPAN_COLUMNS)
_COPY_LOGS: Final = _copy_statement("logs", LOG_COLUMNS)
_COPY_POINTS: Final = _copy_statement("metric_points", POINT_COLUMNS)
_RANGES: Final = {
    _COPY_SPANS: _ranges(SPAN_TYPES),
    _COPY_LOGS: _ranges(LOG_TYPES),
    _COPY_POINTS: _ranges(POINT_TYPES),
}

# Every upsert sent updates the row, if only to move touched_at: pruning counts on it
# (storage.postgres.prune), and the ledger sends a session only when it has news or its
# touch interval has passed, so no write is wasted on a session that did not change.
_UPSERT_SESSIONS: Final = (
    f"INSERT INTO sessions AS s ({_column_list(SESSION_COLUMNS)}, touched_at) "
    f"SELECT *, statement_timestamp() FROM unnest({_unnest(SESSION_TYPES)}) "
    "ON CONFLICT (project_id, session_id) DO UPDATE SET "
    "first_seen = least(s.first_seen, excluded.first_seen), "
    "last_seen = greatest(s.last_seen, excluded.last_seen), "
    "user_id = coalesce(excluded.user_id, s.user_id), "
    "service_name = coalesce(s.service_name, excluded.service_name), "
    "touched_at = greatest(s.touched_at, excluded.touched_at)"
).encode()

_SPAN_SERVICE: Final = SPAN_COLUMNS.index("service_name")
_SPAN_NAME: Final = SPAN_COLUMNS.index("name")
_SPAN_KIND: Final = SPAN_COLUMNS.index("kind")
_SPAN_TIME: Final = SPAN_COLUMNS.index("time")
_LOG_SERVICE: Final = LOG_COLUMNS.index("service_name")
_LOG_TIME: Final = LOG_COLUMNS.index("time")
_POINT_SERVICE: Final = POINT_COLUMNS.index("service_name")

# Sorted input, one lock order: concurrent writers cannot deadlock on the catalog.
# last_seen is when a write last wrote the entry (statement_timestamp(), after the COPY:
# pruning's touch time) and last_record the newest record time of such writes (0010).
_UPSERT_SERVICES: Final = (
    b"INSERT INTO services AS c (project_id, service_name, first_seen, last_seen, last_record) "
    b"SELECT p, s, now(), statement_timestamp(), %s::timestamptz "
    b"FROM unnest(%s::text[], %s::text[]) AS u(p, s) "
    b"ON CONFLICT (project_id, service_name) DO UPDATE SET "
    b"last_seen = greatest(c.last_seen, excluded.last_seen), "
    b"last_record = greatest(c.last_record, excluded.last_record)"
)
_UPSERT_OPERATIONS: Final = (
    b"INSERT INTO operations AS c "
    b"(project_id, service_name, span_name, span_kind, first_seen, last_seen, last_record) "
    b"SELECT p, s, n, k, now(), statement_timestamp(), %s::timestamptz "
    b"FROM unnest(%s::text[], %s::text[], %s::text[], %s::int2[]) AS u(p, s, n, k) "
    b"ON CONFLICT (project_id, service_name, span_name, span_kind) DO UPDATE SET "
    b"last_seen = greatest(c.last_seen, excluded.last_seen), "
    b"last_record = greatest(c.last_record, excluded.last_record)"
)

# Live tail (query.tail) learns of committed log rows from this notification, delivered
# at commit to every listener on the database: which transaction (xmin of its rows, the
# 32-bit form txid_current() extends) and, per project, the time range and count of its
# records; never the rows (a payload is limited to 8000 bytes).
LOGS_CHANNEL: Final = "otlpd_logs"
_NOTIFY_PROJECTS_MAX: Final = 64
# The minutes whose request spans this write changes, for the rollup job (0005).
_MARK_ROLLUPS: Final = (
    b"INSERT INTO span_rollup_dirty (project_id, minute) "
    b"SELECT p, to_timestamp(m * 60) FROM unnest(%s::text[], %s::bigint[]) AS u(p, m)"
)
# The minutes whose metric points this write changes, for the metric rollups (0009).
_MARK_METRIC_ROLLUPS: Final = (
    b"INSERT INTO metric_rollup_dirty (project_id, minute) "
    b"SELECT p, to_timestamp(m * 60) FROM unnest(%s::text[], %s::bigint[]) AS u(p, m)"
)
_MINUTE_NS: Final = 60 * 10**9
_MARK_SPAN_MINUTES: Final = 10  # a batch spanning more is marked minute by minute

_NOTIFY_LOGS: Final = (
    b"SELECT pg_notify('" + LOGS_CHANNEL.encode() + b"', "
    b"json_build_object('x', txid_current() %% 4294967296, 'p', %s::json)::text)"
)


# --- The writer ----------------------------------------------------------------------

# Pruning (storage.postgres.prune) removes a resource, series, session or catalog entry
# once no hot partition needs it, on two conditions that the caches below keep true: the
# newest record that refers to a row is at most one touch interval newer than the row's
# last_seen (last_record for the catalog), and no writer trusts its cache of a row for
# more than a touch interval after it last wrote it (touched_at; the catalog's last_seen).
# So an entry vouches for its row only for records at most ``ttl`` newer than the newest
# record of the write that taught it, and for ``ttl`` seconds after that write looked at
# its caches; past either, the row is written again, which moves both times. Entries learn
# what was *sent*, not the most they ever knew: after a prune the row may be back with
# less.
_JITTER_SPAN: Final = 2048  # an entry's ttl is cut by up to 256/2048 = 1/8, by its key


def _vouched(key: Any, newest_ns: int, since: float, ttl_ns: int) -> tuple[int, float]:
    """``(newest record time, monotonic expiry)`` an entry learned at ``since`` vouches
    for. Shortened by up to an eighth, depending on the key, so that the rows one write
    taught do not all fall due together (a burst of upserts a touch interval later)."""
    cut = ttl_ns - ttl_ns * (hash(key) & 0xFF) // _JITTER_SPAN
    return newest_ns + cut, since + cut / 1e9


class KeyCache:
    """The ``(project_id, id)`` keys of rows this writer wrote recently, at most
    ``max_size`` (LRU), each vouching for its row for a while (see above).

    Lets a write skip the series and resources it has written before, which is nearly
    all of them. A key is learned only after the transaction that wrote it committed, so
    a rolled-back write cannot make a later one skip a row that is not there.
    """

    def __init__(self, max_size: int, ttl: float = 3600.0) -> None:
        if max_size <= 0:
            raise ValueError(f"cache size must be > 0, got {max_size}")
        self.max_size = max_size
        self._ttl_ns = int(ttl * 1e9)
        # key -> (newest record time vouched for, monotonic expiry)
        self._keys: OrderedDict[tuple[str, int], tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._keys)

    def unknown(
        self, rows: dict[tuple[str, int], Row], newest_ns: int, now: float
    ) -> dict[tuple[str, int], Row]:
        """The entries of ``rows`` whose key does not vouch for records up to
        ``newest_ns`` at monotonic time ``now``; refreshes the ones that do."""
        unknown: dict[tuple[str, int], Row] = {}
        keys = self._keys
        with self._lock:
            for key, row in rows.items():
                entry = keys.get(key)
                if entry is not None and newest_ns <= entry[0] and now < entry[1]:
                    keys.move_to_end(key)
                else:
                    unknown[key] = row
        return unknown

    def learn(self, keys: Iterable[tuple[str, int]], newest_ns: int, since: float) -> None:
        """Remember ``keys`` as written with records up to ``newest_ns`` by a write that
        looked at this cache at ``since``; evicts the least recently used beyond the bound."""
        ttl_ns = self._ttl_ns
        with self._lock:
            for key in keys:
                self._keys[key] = _vouched(key, newest_ns, since, ttl_ns)
                self._keys.move_to_end(key)
            while len(self._keys) > self.max_size:
                self._keys.popitem(last=False)


class SessionLedger:
    """What this writer last stored of each session, at most ``max_size`` (LRU).

    Every record of a session is a sighting, but the sessions table only needs to learn
    something new: a session, its first user or service, an earlier first_seen, or a
    last_seen more than ``resolution_ns`` past the stored one. Upserting every session of
    every batch cost a third of the writer's time and a new row version per session per
    commit (bench, logs with 1000 live sessions); with this, a live session is written
    about once per resolution. So ``last_seen`` lags by at most ``resolution_ns``, and so
    does a change of user (the upsert that moves last_seen carries the latest one): a
    session whose user changes from record to record (bench "spans, user churn") cost a
    quarter of the writer's time when each change was written at once. An entry also
    expires ``ttl`` seconds after the write that taught it (pruning, above); the
    resolution must not exceed ``ttl``. Learned only after commit, like KeyCache.
    """

    def __init__(self, max_size: int, resolution_ns: int, ttl: float = 3600.0) -> None:
        if max_size <= 0:
            raise ValueError(f"cache size must be > 0, got {max_size}")
        self.max_size = max_size
        self._resolution = resolution_ns
        self._ttl_ns = int(ttl * 1e9)
        self._stored: OrderedDict[tuple[str, str], tuple[SessionSighting, float]] = OrderedDict()
        self._lock = threading.Lock()

    def news(
        self, sessions: dict[tuple[str, str], SessionSighting], now: float
    ) -> dict[tuple[str, str], SessionSighting]:
        """The sightings that would tell the table something it does not know yet, or
        whose entry expired by monotonic time ``now``."""
        news: dict[tuple[str, str], SessionSighting] = {}
        stored = self._stored
        resolution = self._resolution
        with self._lock:
            for key, seen in sessions.items():
                entry = stored.get(key)
                if entry is None:
                    news[key] = seen
                    continue
                known, expires = entry
                if (
                    now >= expires
                    or seen.first_seen < known.first_seen
                    or seen.last_seen > known.last_seen + resolution
                    or (seen.user_id is not None and known.user_id is None)
                    or (known.service_name is None and seen.service_name is not None)
                ):
                    news[key] = seen
                else:
                    stored.move_to_end(key)
        return news

    def learn(self, sessions: dict[tuple[str, str], SessionSighting], since: float) -> None:
        """Records what the committed upsert of ``sessions`` left in the table, by a write
        that looked at the ledger at monotonic time ``since``. ``last_seen`` is the one
        sent (see above), the rest merges with what was known."""
        stored = self._stored
        ttl_ns = self._ttl_ns
        with self._lock:
            for key, seen in sessions.items():
                entry = stored.get(key)
                known = None if entry is None else entry[0]
                merged = (
                    seen
                    if known is None
                    else SessionSighting(
                        seen.user_id if seen.user_id is not None else known.user_id,
                        known.service_name or seen.service_name,
                        min(seen.first_seen, known.first_seen),
                        seen.last_seen,
                    )
                )
                stored[key] = (merged, _vouched(key, 0, since, ttl_ns)[1])
                stored.move_to_end(key)
            while len(stored) > self.max_size:
                stored.popitem(last=False)


class IdTable:
    """A table of rows that records refer to by a 63-bit hash id: metric series, resources.

    Each ``(project_id, id)`` row is inserted once, and written again only to move its
    ``last_seen`` (the newest record time of the write) and ``touched_at`` (pruning,
    above). A write takes the rows of its batches (``rows``) that ``cache`` does not vouch
    for, upserts them (``insert``) and, once committed, ``learn``s their keys.
    """

    def __init__(
        self,
        table: str,
        columns: Sequence[str],
        types: Sequence[str],
        rows_of: Callable[[RowBatch], dict[tuple[str, int], Row]],
        cache_size: int,
        *,
        ttl: float = 3600.0,
    ) -> None:
        if columns[0] != "project_id":
            raise ValueError(f"{table}: the key is (project_id, id), got {columns[:2]}")
        self.cache = KeyCache(cache_size, ttl)
        self._rows_of = rows_of
        self._first_seen = columns.index("first_seen")
        # Sorted input (see insert): concurrent writers upserting the same rows wait for
        # each other in the same order, so they cannot deadlock. The update keeps every
        # column but the two times; it also locks the row until commit, so a concurrent
        # prune waits and then sees the new times (its DELETE checks them again).
        self._insert = (
            f"INSERT INTO {table} AS t ({_column_list(columns)}, last_seen, touched_at) "
            f"SELECT u.*, %s::timestamptz, statement_timestamp() "
            f"FROM unnest({_unnest(types)}) AS u "
            f'ON CONFLICT ("project_id", "{columns[1]}") DO UPDATE SET '
            "last_seen = greatest(t.last_seen, excluded.last_seen), "
            "touched_at = greatest(t.touched_at, excluded.touched_at)"
        ).encode()

    def rows(self, batches: Sequence[RowBatch]) -> dict[tuple[str, int], Row]:
        """The rows of ``batches``, one per key."""
        merged: dict[tuple[str, int], Row] = {}
        first_seen = self._first_seen
        for batch in batches:
            for key, row in self._rows_of(batch).items():
                known = merged.get(key)
                if known is None or row[first_seen] < known[first_seen]:
                    merged[key] = row  # the earliest sighting describes first_seen best
        return merged

    def insert(
        self, cursor: psycopg.Cursor[TupleRow], rows: dict[tuple[str, int], Row], newest_ns: int
    ) -> int:
        """Upserts ``rows`` in key order, with ``newest_ns`` as their newest record time;
        returns how many were written (new or touched again)."""
        if not rows:
            return 0
        try:
            ordered = [rows[key] for key in sorted(rows)]
            columns: list[list[Any]] = [list(column) for column in zip(*ordered, strict=True)]
            columns[self._first_seen] = [datetime_from_ns(ns) for ns in columns[self._first_seen]]
            newest = datetime_from_ns(newest_ns)
        except ENCODING_ERRORS as exc:
            raise translate_encoding(exc) from exc
        cursor.execute(self._insert, [newest, *columns])
        return max(cursor.rowcount, 0)

    def learn(self, rows: dict[tuple[str, int], Row], newest_ns: int, since: float) -> None:
        """Remembers the keys of ``rows``; call it only after their upsert committed."""
        self.cache.learn(rows, newest_ns, since)


class Catalog:
    """Services and operations seen, upserted into ``services`` and ``operations``.

    An entry is written when this process first sees it, then again only once
    ``resolution_ns`` has passed since, or its records are that much newer than the ones
    it was written with (pruning, above), so a steady stream of known services costs a
    dict lookup per distinct key per batch, not a write. ``max_size`` bounds what is
    remembered; a forgotten entry is simply written again.
    """

    def __init__(self, max_size: int, resolution_ns: int) -> None:
        self._services = _Recency(max_size, resolution_ns)
        self._operations = _Recency(max_size, resolution_ns)

    @staticmethod
    def entries(
        spans: list[list[Row]], logs: list[list[Row]], points: list[list[Row]]
    ) -> tuple[set[tuple[str, str]], set[tuple[str, str, str, int]]]:
        """The services and operations these rows name."""
        operations = {
            (row[0], row[_SPAN_SERVICE] or "", row[_SPAN_NAME], row[_SPAN_KIND] or 0)
            for rows in spans
            for row in rows
        }
        services = {(project, service) for project, service, _, _ in operations if service}
        for rows in logs:
            services.update((row[0], row[_LOG_SERVICE]) for row in rows if row[_LOG_SERVICE])
        for rows in points:
            services.update((row[0], row[_POINT_SERVICE]) for row in rows if row[_POINT_SERVICE])
        return services, operations

    def news(
        self,
        entries: tuple[set[tuple[str, str]], set[tuple[str, str, str, int]]],
        newest_ns: int,
        now: float,
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, int]]]:
        """The ``entries`` due to be written by a write with records up to ``newest_ns``
        at monotonic time ``now``, each sorted."""
        services, operations = entries
        return (
            self._services.due(services, newest_ns, now),
            self._operations.due(operations, newest_ns, now),
        )

    def learn(
        self,
        services: list[tuple[str, str]],
        operations: list[tuple[str, str, str, int]],
        newest_ns: int,
        since: float,
    ) -> None:
        """Remembers what was written; only after its transaction committed."""
        self._services.learn(services, newest_ns, since)
        self._operations.learn(operations, newest_ns, since)


class _Recency:
    """Keys and what their last write vouches for (``_vouched``), LRU-bounded."""

    def __init__(self, max_size: int, resolution_ns: int) -> None:
        self._written: OrderedDict[Any, tuple[int, float]] = OrderedDict()
        self._max = max_size
        self._resolution = resolution_ns
        self._lock = threading.Lock()

    def due(self, keys: Iterable[Any], newest_ns: int, now: float) -> list[Any]:
        written = self._written
        due = []
        with self._lock:
            for key in keys:
                entry = written.get(key)
                if entry is None or newest_ns > entry[0] or now >= entry[1]:
                    due.append(key)
        return sorted(due)

    def learn(self, keys: Iterable[Any], newest_ns: int, since: float) -> None:
        with self._lock:
            for key in keys:
                self._written[key] = _vouched(key, newest_ns, since, self._resolution)
                self._written.move_to_end(key)
            while len(self._written) > self._max:
                self._written.popitem(last=False)


class PostgresWriter:
    """``storage.api.Writer`` for PostgreSQL: binary COPY, one transaction per ``write``.

    The pool (``pool_size`` connections, one per writer thread) reconnects by itself
    when PostgreSQL comes back; meanwhile ``write`` fails within about
    ``pool_timeout`` seconds with ``StorageUnavailable`` instead of hanging.
    ``statement_timeout`` bounds a write stuck in the server. ``reconnect_timeout`` is
    how long the pool retries a lost connection with growing delays before giving up
    and starting afresh on the next ``write``; keeping it short keeps the delay between
    PostgreSQL's return and the first successful write short. ``touch_interval`` is
    ``OTLPD_TOUCH_INTERVAL``: how long the caches vouch for a row (pruning, above); the
    session and catalog resolutions are capped to it.
    """

    def __init__(
        self,
        conninfo: str,
        partitions: PartitionManager | None = None,
        *,
        pool_size: int = 2,
        pool_timeout: float = 3.0,
        connect_timeout: float = 3.0,
        statement_timeout: float = 60.0,
        reconnect_timeout: float = 20.0,
        max_lifetime: float = 3600.0,
        series_cache_size: int = 100_000,
        resource_cache_size: int = 10_000,
        session_cache_size: int = 100_000,
        session_resolution: float = 60.0,
        catalog_cache_size: int = 100_000,
        catalog_resolution: float = 300.0,
        touch_interval: float = 3600.0,
    ) -> None:
        if pool_size <= 0:
            raise ValueError(f"pool_size must be > 0, got {pool_size}")
        if touch_interval <= 0:
            raise ValueError(f"touch_interval must be > 0, got {touch_interval}")
        if partitions is None:
            partitions = PartitionManager(conninfo, connect_timeout=connect_timeout)
        self.partitions = partitions
        self.series = IdTable(
            "metric_series",
            SERIES_COLUMNS,
            SERIES_TYPES,
            lambda batch: batch.series,
            series_cache_size,
            ttl=touch_interval,
        )
        self.resources = IdTable(
            "resources",
            RESOURCE_COLUMNS,
            RESOURCE_TYPES,
            lambda batch: batch.resources,
            resource_cache_size,
            ttl=touch_interval,
        )
        self.sessions = SessionLedger(
            session_cache_size, int(min(session_resolution, touch_interval) * 1e9), touch_interval
        )
        self.catalog = Catalog(
            catalog_cache_size, int(min(catalog_resolution, touch_interval) * 1e9)
        )
        self.reconnect_failures = 0
        self._statement_timeout_ms = max(1, int(statement_timeout * 1000))
        self._pool: ConnectionPool[psycopg.Connection[TupleRow]] = ConnectionPool(
            conninfo,
            min_size=pool_size,
            max_size=pool_size,
            name="otlpd-writer",
            open=True,  # connects in the background: a database down at start is no error
            configure=self._configure,
            # No check= on borrow: it costs a round trip per write (~3% of a worker's
            # time in the metrics benchmark). A connection broken by a restart fails one
            # write (UNAVAILABLE, retried by the client) and the pool replaces it.
            reconnect_failed=self._reconnect_failed,
            timeout=pool_timeout,
            reconnect_timeout=reconnect_timeout,
            max_lifetime=max_lifetime,
            kwargs=connection_kwargs("otlpd-writer", connect_timeout),
        )

    def ready(self, batch: RowBatch) -> bool:
        """True when every time partition ``batch``'s rows need is known to exist."""
        return not self._missing(batch)

    def prepare(self, batch: RowBatch) -> None:
        """Makes the time partitions ``batch`` needs (``storage.api.Writer``)."""
        try:
            for table, starts in self._missing(batch).items():
                self.partitions.ensure(table, starts)
        except psycopg.Error as exc:  # ensure translates its own; this is belt and braces
            raise translate(exc) from exc

    def _missing(self, batch: RowBatch) -> dict[str, list[int]]:
        """The bucket starts of ``batch``'s rows that are not known to exist, per table."""
        width = self.partitions.interval_ns
        missing: dict[str, list[int]] = {}
        for table, rows in (
            ("spans", batch.spans),
            ("logs", batch.logs),
            ("metric_points", batch.points),
        ):
            if rows:
                unknown = self.partitions.unknown(table, _buckets([rows], width))
                if unknown:
                    missing[table] = unknown
        return missing

    def write(self, batches: Sequence[RowBatch]) -> WriteStats:
        """Stores every row of ``batches`` in one transaction; see ``storage.api.Writer``.

        Raises ``StorageDataError`` when the rows themselves are refused and
        ``StorageUnavailable`` otherwise; either way nothing was kept.
        """
        spans = [b.spans for b in batches if b.spans]
        logs = [b.logs for b in batches if b.logs]
        points = [b.points for b in batches if b.points]
        try:
            series = self.series.rows(batches)
            resources = self.resources.rows(batches)
            sessions = _merge_sessions(batches)
            catalog = self.catalog.entries(spans, logs, points)
            notice = _logs_notice(logs)
            rollups = _request_minutes(spans)
            ranges = {
                table: _time_range(row_lists)
                for table, row_lists in (
                    ("spans", spans),
                    ("logs", logs),
                    ("metric_points", points),
                )
                if row_lists
            }
            metric_minutes = _point_minutes(points)
        except ENCODING_ERRORS as exc:  # e.g. a first_seen that is not an int
            raise translate_encoding(exc) from exc
        if not (spans or logs or points or series or resources or sessions):
            return WriteStats(0, 0, 0, 0, 0, 0, 0.0, 0.0)
        # The newest record of the write: the record time its series, resources and
        # catalog entries are written with (coarse, and never too old: pruning, above).
        newest = max((high for _, high in ranges.values()), default=0)
        attempt = functools.partial(
            self._write_once,
            spans,
            logs,
            points,
            ranges=ranges,
            newest=newest,
            series=series,
            resources=resources,
            sessions=sessions,
            catalog=catalog,
            notice=notice,
            rollups=rollups,
            metric_minutes=metric_minutes,
        )
        try:
            try:
                try:
                    stats, wrote = attempt()
                except psycopg.OperationalError as exc:
                    if not _lost_connection(exc):
                        raise
                    # A pooled connection that PostgreSQL closed (a restart, a failover,
                    # an administrator) fails on its next use; the pool drops it. Once
                    # more on a fresh one, rather than failing the write and flipping
                    # every request to UNAVAILABLE until the probe sees PostgreSQL again.
                    logger.info("a pooled connection was lost (%s); writing again", exc)
                    stats, wrote = attempt()
            except psycopg.errors.CheckViolation as exc:
                if not _is_missing_partition(exc):
                    raise
                # A partition this process knew of was dropped behind its back (by
                # retention, or by hand): learn the catalog afresh and try once more.
                logger.warning("%s; reloading the partition catalog", exc.diag.message_primary)
                self.partitions.forget()  # _write_once makes the missing ones again
                stats, wrote = attempt()
        except psycopg.Error as exc:
            raise translate(exc) from exc
        self.series.learn(wrote.series, newest, wrote.checked)
        self.resources.learn(wrote.resources, newest, wrote.checked)
        self.sessions.learn(wrote.sessions, wrote.checked)
        self.catalog.learn(wrote.services, wrote.operations, newest, wrote.checked)
        return stats

    def _write_once(
        self,
        spans: list[list[Row]],
        logs: list[list[Row]],
        points: list[list[Row]],
        *,
        ranges: dict[str, tuple[int, int]],
        newest: int,
        series: dict[tuple[str, int], Row],
        resources: dict[tuple[str, int], Row],
        sessions: dict[tuple[str, str], SessionSighting],
        catalog: tuple[set[tuple[str, str]], set[tuple[str, str, str, int]]],
        notice: str | None,
        rollups: set[tuple[str, int]],
        metric_minutes: set[tuple[str, int]],
    ) -> tuple[WriteStats, _Wrote]:
        # What prepare() made sure of, normally: cheap when every bucket is known.
        width = self.partitions.interval_ns
        for table, (low, high) in ranges.items():
            self.partitions.ensure(table, range(low // width * width, high + 1, width))
        with self._pool.connection() as conn:
            started = perf_counter()
            with conn.cursor() as cursor:
                n_spans = _copy(cursor, _COPY_SPANS, SPAN_TYPES, spans)
                n_logs = _copy(cursor, _COPY_LOGS, LOG_TYPES, logs)
                n_points = _copy(cursor, _COPY_POINTS, POINT_TYPES, points)
                # The caches are asked only now, once every partition this transaction's
                # records went to exists and is locked by it until it ends (the COPY
                # holds it): the pruning job can then see those partitions, which is
                # what keeps it from removing a row these records refer to
                # (storage.postgres.prune). Asked before the COPY, a partition dropped and
                # made again in between would be invisible to a prune that ran meanwhile.
                checked = monotonic()
                series = self.series.cache.unknown(series, newest, checked)
                resources = self.resources.cache.unknown(resources, newest, checked)
                sessions = self.sessions.news(sessions, checked)
                services, operations = self.catalog.news(catalog, newest, checked)
                # Always series, then resources, each in key order: one lock order.
                n_series = self.series.insert(cursor, series, newest)
                n_resources = self.resources.insert(cursor, resources, newest)
                n_sessions = _upsert_sessions(cursor, sessions)
                _upsert_catalog(cursor, services, operations, newest)
                if rollups:
                    cursor.execute(_MARK_ROLLUPS, [list(c) for c in zip(*rollups, strict=True)])
                if metric_minutes:
                    cursor.execute(
                        _MARK_METRIC_ROLLUPS, [list(c) for c in zip(*metric_minutes, strict=True)]
                    )
                if notice is not None:
                    cursor.execute(_NOTIFY_LOGS, (notice,))
            copied = perf_counter()
            conn.commit()
            committed = perf_counter()
        stats = WriteStats(
            spans=n_spans,
            logs=n_logs,
            points=n_points,
            series=n_series,
            resources=n_resources,
            sessions=n_sessions,
            copy_seconds=copied - started,
            commit_seconds=committed - copied,
        )
        return stats, _Wrote(series, resources, sessions, services, operations, checked)

    def close(self) -> None:
        """Closes the pool; a ``write`` still running finishes on its connection first."""
        self._pool.close()

    def _configure(self, conn: psycopg.Connection[TupleRow]) -> None:
        configure_connection(conn)
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)",
            (str(self._statement_timeout_ms),),
        )
        # Acknowledged means durable: a commit must return only once its WAL is flushed.
        # Every synchronous_commit level but off does that locally (the stronger ones
        # also wait for standbys, as the operator chose); a database or role configured
        # with off would turn every acknowledgement into a maybe, so off becomes on.
        conn.execute(
            "SELECT set_config('synchronous_commit', 'on', false) "
            "WHERE current_setting('synchronous_commit') = 'off'"
        )
        conn.commit()  # the pool wants configured connections idle

    def _reconnect_failed(self, pool: ConnectionPool[Any]) -> None:
        # The pool gave up on one connection after reconnect_timeout; the next write
        # starts a new attempt. Logged once per give-up, not per write.
        self.reconnect_failures += 1
        logger.error("%s: cannot reconnect to PostgreSQL; retrying on the next write", pool.name)


@dataclass(frozen=True, slots=True)
class _Wrote:
    """What a committed transaction wrote of the cached tables, for the caches to learn,
    and when it looked at them (monotonic)."""

    series: dict[tuple[str, int], Row]
    resources: dict[tuple[str, int], Row]
    sessions: dict[tuple[str, str], SessionSighting]
    services: list[tuple[str, str]]
    operations: list[tuple[str, str, str, int]]
    checked: float


def _time_range(row_lists: list[list[Row]]) -> tuple[int, int]:
    """The earliest and latest ``time`` of the rows (rows carry it second): two C-level
    passes over the rows instead of a Python step per row. Raises TypeError or
    ValueError (data errors) for a time that is not an int, or no rows."""
    first = last = None
    for rows in row_lists:
        times = list(map(_TIME, rows))  # in C: no Python frame per row
        low, high = min(times), max(times)
        first = low if first is None or low < first else first
        last = high if last is None or high > last else last
    if first is None or last is None:
        raise ValueError("no rows")
    return first, last


def _buckets(row_lists: list[list[Row]], width: int) -> range:
    """Every bucket start from the earliest row's to the latest's, nearly always one or
    two buckets. Raises a data error for a time that is not an int."""
    try:
        first, last = _time_range(row_lists)
    except ENCODING_ERRORS as exc:
        raise translate_encoding(exc) from exc
    return range(first // width * width, last // width * width + width, width)


def _lost_connection(exc: psycopg.OperationalError) -> bool:
    """True if ``exc`` says the connection is gone (not that the server is unreachable).

    Class 08 is a connection exception, 57P01-57P03 a server or administrator shutdown
    of this backend; no SQLSTATE at all is libpq's own "server closed the connection".
    A pool timeout is not: no connection was had at all.
    """
    if isinstance(exc, PoolTimeout):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _is_missing_partition(exc: psycopg.errors.CheckViolation) -> bool:
    # PostgreSQL reports a row without a partition as a check violation (23514), which
    # would otherwise read as the data's fault.
    return (exc.diag.message_primary or "").startswith("no partition of relation")


def _merge_sessions(batches: Sequence[RowBatch]) -> dict[tuple[str, str], SessionSighting]:
    """One sighting per session across ``batches``, merged as the upsert merges with the table.

    Needed because one INSERT ... ON CONFLICT DO UPDATE may not touch a row twice.
    """
    merged: dict[tuple[str, str], SessionSighting] = {}
    for batch in batches:
        for key, seen in batch.sessions.items():
            known = merged.get(key)
            if known is None:
                merged[key] = SessionSighting(
                    seen.user_id, seen.service_name, seen.first_seen, seen.last_seen
                )
                continue
            known.first_seen = min(known.first_seen, seen.first_seen)
            known.last_seen = max(known.last_seen, seen.last_seen)
            known.user_id = seen.user_id if seen.user_id is not None else known.user_id
            if known.service_name is None:
                known.service_name = seen.service_name
    return merged


def _copy(
    cursor: psycopg.Cursor[TupleRow],
    statement: bytes,
    types: Sequence[str],
    row_lists: list[list[Row]],
) -> int:
    if not row_lists:
        return 0
    try:
        ranges = _RANGES[statement]
        for rows in row_lists:
            _check_ranges(rows, ranges)
    except ENCODING_ERRORS as exc:  # e.g. a str where an int belongs
        raise translate_encoding(exc) from exc
    count = 0
    with cursor.copy(statement) as copy:
        copy.set_types(types)
        write_row = copy.write_row
        try:
            for rows in row_lists:
                for row in rows:
                    write_row(row)
                count += len(rows)
        except ENCODING_ERRORS as exc:
            # Leaving the block with an exception makes psycopg abort the COPY, and the
            # pool's connection context rolls the transaction back.
            raise translate_encoding(exc) from exc
    return count


def _upsert_sessions(
    cursor: psycopg.Cursor[TupleRow], sessions: dict[tuple[str, str], SessionSighting]
) -> int:
    if not sessions:
        return 0
    try:
        keys = sorted(sessions)  # one lock order for every writer: no deadlocks
        params = (
            [project_id for project_id, _ in keys],
            [session_id for _, session_id in keys],
            [sessions[key].user_id for key in keys],
            [sessions[key].service_name for key in keys],
            [datetime_from_ns(sessions[key].first_seen) for key in keys],
            [datetime_from_ns(sessions[key].last_seen) for key in keys],
        )
    except ENCODING_ERRORS as exc:
        raise translate_encoding(exc) from exc
    cursor.execute(_UPSERT_SESSIONS, params)
    return len(keys)


def _upsert_catalog(
    cursor: psycopg.Cursor[TupleRow],
    services: list[tuple[str, str]],
    operations: list[tuple[str, str, str, int]],
    newest_ns: int,
) -> None:
    newest = datetime_from_ns(newest_ns)
    if services:
        cursor.execute(
            _UPSERT_SERVICES, [newest, *(list(column) for column in zip(*services, strict=True))]
        )
    if operations:
        cursor.execute(
            _UPSERT_OPERATIONS,
            [newest, *(list(column) for column in zip(*operations, strict=True))],
        )


def _request_minutes(spans: list[list[Row]]) -> set[tuple[str, int]]:
    """(project, minute since the epoch) of every request span (server or consumer):
    what the rollups of 0005 must recompute once this write commits."""
    return {
        (row[0], row[_SPAN_TIME] // _MINUTE_NS)
        for rows in spans
        for row in rows
        if row[_SPAN_KIND] in REQUEST_KINDS
    }


def _point_minutes(points: list[list[Row]]) -> set[tuple[str, int]]:
    """(project, minute since the epoch) of every point: what the metric rollups (0009)
    must recompute once this write commits. A batch is nearly always one project's
    points of a minute or two: then the minutes from its earliest to its latest point,
    in a few C-level passes over the rows (~0.15 us a point, where ``_buckets``' one pass
    took ~0.11 and a set of (project, minute) built per point ~0.9: docs/benchmarks.md).
    Other batches are marked point by point; a minute marked without points is
    recomputed to nothing, harmlessly."""
    minutes: set[tuple[str, int]] = set()
    for rows in points:
        projects = set(map(_PROJECT, rows))
        if len(projects) == 1:
            times = list(map(_TIME, rows))
            first, last = min(times) // _MINUTE_NS, max(times) // _MINUTE_NS
            if last - first < _MARK_SPAN_MINUTES:
                (project,) = projects
                minutes.update(zip(itertools.repeat(project), range(first, last + 1)))
                continue
        minutes.update(
            zip(map(_PROJECT, rows), (t // _MINUTE_NS for t in map(_TIME, rows)), strict=True)
        )
    return minutes


def _logs_notice(logs: list[list[Row]]) -> str | None:
    """The per-project part of the live-tail notification: ``{project: [min_us, max_us,
    count]}``, or null for "every project" when there are too many to fit a payload."""
    if not logs:
        return None
    spans: dict[str, list[int]] = {}
    for rows in logs:
        for row in rows:
            moment = row[_LOG_TIME]
            seen = spans.get(row[0])
            if seen is None:
                spans[row[0]] = [moment, moment, 1]
            else:
                if moment < seen[0]:
                    seen[0] = moment
                elif moment > seen[1]:
                    seen[1] = moment
                seen[2] += 1
    if len(spans) > _NOTIFY_PROJECTS_MAX or sum(len(p) for p in spans) > 4000:
        return "null"
    return json.dumps(
        {project: [lo // 1000, hi // 1000 + 1, n] for project, (lo, hi, n) in spans.items()}
    )
