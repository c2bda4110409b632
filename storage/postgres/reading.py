"""The query API's connections to PostgreSQL: a small async pool whose every statement
runs under a time limit.

Every statement runs under ``statement_timeout``, so PostgreSQL itself stops a query that
runs past its time (the client's deadline, or the server's query budget, whichever is
nearer) and frees the backend; a cancelled caller (the client went away) cancels its
statement through psycopg, which sends a cancel request when the awaiting task is
cancelled. Statements are always parameterized: request text never becomes SQL.

A read is as few round trips as it can be, because on the cheap calls (a trace, a
session's logs, the service list) the round trips were most of otlpd's CPU: measured
with one 20-row statement, 1.0 ms of Python per read as a checked borrow, ``BEGIN``,
``SET LOCAL statement_timeout``, the statement and ``COMMIT``, against 0.25 ms as the
statement alone (docs/benchmarks.md, "Query reads in fewer round trips"). So connections
are in autocommit (under READ COMMITTED each statement took its own snapshot inside the
transaction as well), the timeout is a session setting sent only when a read needs a
value other than the one its connection already has, and a borrowed connection is not
pinged first: a read that finds its connection broken (a restart, a killed backend)
runs once more on another. Only a read that needs settings of its own (``SET LOCAL``)
still opens a transaction for them.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, Final, LiteralString, NamedTuple

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg.types.json import set_json_loads

from storage.api import StorageTimeout
from storage.postgres.connect import PooledStore, async_pool
from storage.postgres.errors import translate

Query = LiteralString | sql.Composed | sql.SQL


# plan_cache_mode of a read (see ReadPool.fetch_many's generic_plan).
_GENERIC: Final = "force_generic_plan"
_AUTO: Final = "auto"
_ROUNDED_ABOVE_MS: Final = 1000
_SESSION_SETTINGS: Final = (
    "SELECT set_config('statement_timeout', %s, false), set_config('plan_cache_mode', %s, false)"
)


async def _configure(conn: psycopg.AsyncConnection[TupleRow]) -> None:
    # json and jsonb columns (attributes, bodies, events) parsed by orjson: ~0.4 us for a
    # span's attributes where the standard library's json takes ~2.6 us (measured), which
    # is a good part of reading 1,000 records.
    set_json_loads(orjson.loads, conn)
    # Timestamps in UTC whatever the server's default (Debian's is the system zone, often
    # "Etc/UTC"): psycopg then gives them datetime.timezone.utc rather than a ZoneInfo,
    # which made loading a timestamptz 0.77 us instead of 0.53 and turning it into
    # microseconds 0.53 us instead of 0.22 (measured on 20,000 span times); readers
    # convert every row's. Nothing here depends on the session's zone otherwise: times
    # travel as timestamptz or as integers.
    await conn.execute("SELECT set_config('TimeZone', 'UTC', false)")
    await conn.commit()


class ReadPool(PooledStore):
    """Read-only statements with a time limit each. ``open`` before use, ``close`` after."""

    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int = 4,
        timeout: float = 3.0,
        connect_timeout: float = 3.0,
    ) -> None:
        self._pool = async_pool(
            conninfo,
            "otlpd-query",
            min_size=1,
            max_size=max_size,
            timeout=timeout,
            connect_timeout=connect_timeout,
            configure=_configure,
            check=False,
            autocommit=True,
            # A query that only reads never holds a write lock, and cannot be turned into
            # one that writes by anything a client sends.
            options="-c default_transaction_read_only=on",
        )
        # The statement_timeout (ms) and plan_cache_mode each connection has now; a
        # connection missing here has unknown ones (a set_config that failed or was
        # cancelled half way).
        self._sessions: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], tuple[int, str]] = (
            weakref.WeakKeyDictionary()
        )

    async def fetch(
        self, query: Query, params: Sequence[Any] | dict[str, Any], *, seconds: float
    ) -> list[TupleRow]:
        """The rows of one statement, which PostgreSQL stops after ``seconds``.

        Raises ``StorageTimeout`` when it did, ``StorageUnavailable`` when the database
        could not be reached or failed.
        """
        batches = await self.fetch_many([(query, params)], seconds=seconds)
        return batches[0]

    async def fetch_many(
        self,
        statements: Sequence[tuple[Query, Sequence[Any] | dict[str, Any]]],
        *,
        seconds: float,
        binary: bool = False,
        settings: Sequence[LiteralString] = (),
        prepare: bool | None = None,
        generic_plan: bool = False,
    ) -> list[list[TupleRow]]:
        """The rows of several statements, run in order on one connection (each with its
        own snapshot), each within ``seconds``.

        ``binary`` asks for results in PostgreSQL's binary format: a bytea arrives as its
        bytes rather than as hex text twice its size (metric point arrays are megabytes),
        and timestamps, integers and ids need no parsing: a span row read 6.2 µs of
        psycopg's CPU against 9.6 in text, so the reads that convert every row they return
        use it (docs/benchmarks.md, "Rows read in binary").
        ``settings`` are ``SET LOCAL`` statements for these statements only: they run in
        one transaction then. ``prepare``: psycopg's (None: prepared from a statement's
        fifth use on a connection, after which PostgreSQL may keep a generic plan;
        False: planned afresh for its values every time).

        ``generic_plan``: the statements are prepared at their first use and run with
        the plan made for no values in particular, kept by the connection. For a lookup
        by an id over every partition (a trace, a session) the plan is the same whatever
        the id, and making it is the larger cost: with the query benchmark's 52 hourly
        partitions, planning a session's logs took ~3 ms against ~1 ms to run them, and
        PostgreSQL's own choice kept planning them afresh (docs/benchmarks.md, "Lookups
        by id with generic plans"). Not for statements whose best plan depends on their
        values (a word search, a time window).
        """
        timeout_ms = max(1, int(seconds * 1000))
        if timeout_ms > _ROUNDED_ABOVE_MS:
            # Whole tenths of a second, rounded down: calls that start with their whole
            # budget then ask for the same limit, and a connection that has it already is
            # not sent it again. That round trip costs ~0.1 ms of otlpd's time, as much as
            # a whole read of "SELECT 1" (measured: 116-147 µs a read against 225-237 µs
            # when each read set its limit).
            timeout_ms -= timeout_ms % 100
        if generic_plan:
            read = _Read(statements, timeout_ms, binary, settings, True, _GENERIC)
        else:
            read = _Read(statements, timeout_ms, binary, settings, prepare, _AUTO)
        try:
            try:
                return await self._on_a_connection(read)
            except _Broken:
                # A connection that broke while idle in the pool (a restart, a killed
                # backend) fails its next statement: the read runs once more, on another
                # (the pool drops the broken one). Reads change nothing.
                return await self._on_a_connection(read)
        except _Broken as broken:
            raise translate(broken.error) from broken.error
        except psycopg.errors.QueryCanceled as exc:
            raise StorageTimeout(f"statement stopped after {timeout_ms} ms") from exc
        except psycopg.Error as exc:  # PoolTimeout included: no connection in time
            raise translate(exc) from exc

    async def _on_a_connection(self, read: _Read) -> list[list[TupleRow]]:
        """``_run`` on a connection of the pool; ``_Broken`` if that connection was."""
        async with self._pool.connection() as conn:
            try:
                return await self._run(conn, read)
            except psycopg.OperationalError as exc:
                if conn.broken and not isinstance(exc, psycopg.errors.QueryCanceled):
                    raise _Broken(exc) from exc
                raise

    async def _run(
        self, conn: psycopg.AsyncConnection[TupleRow], read: _Read
    ) -> list[list[TupleRow]]:
        cursor = conn.cursor(binary=read.binary)
        session = (read.timeout_ms, read.plan_mode)
        if self._sessions.get(conn) != session:
            # One round trip for both; the session's settings are unknown until it returns.
            self._sessions.pop(conn, None)
            await cursor.execute(_SESSION_SETTINGS, (str(read.timeout_ms), read.plan_mode))
            self._sessions[conn] = session
        if not read.settings:
            return await _rows(cursor, read)
        async with conn.transaction():
            for setting in read.settings:
                await cursor.execute(setting)
            return await _rows(cursor, read)


class _Read(NamedTuple):
    """One ``fetch_many``: what to run and how (see there)."""

    statements: Sequence[tuple[Query, Sequence[Any] | dict[str, Any]]]
    timeout_ms: int
    binary: bool
    settings: Sequence[LiteralString]
    prepare: bool | None
    plan_mode: str  # plan_cache_mode


class _Broken(Exception):
    """The connection a read was given turned out broken; ``error`` is how it failed."""

    def __init__(self, error: psycopg.OperationalError) -> None:
        super().__init__(str(error))
        self.error = error


async def _rows(cursor: psycopg.AsyncCursor[TupleRow], read: _Read) -> list[list[TupleRow]]:
    results: list[list[TupleRow]] = []
    for query, params in read.statements:
        await cursor.execute(query, params, prepare=read.prepare)
        results.append(await cursor.fetchall() if cursor.description else [])
    return results
