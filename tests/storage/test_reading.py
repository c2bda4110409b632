"""The query pool's reads: each statement under the time its read was given (a value its
connection kept from an earlier read neither cuts a later read short nor lets it run
long), ``SET LOCAL`` settings for one read only, statements left unprepared when asked
or planned for no values when asked, read-only whatever the statement, and a connection
broken while idle costs the caller nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from storage.api import StorageError, StorageTimeout
from storage.postgres.reading import ReadPool
from tests.conftest import terminate_backends


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[ReadPool]:
    # One connection: every read below lands on the connection the one before it used.
    reads = ReadPool(database_url, max_size=1)
    await reads.open()
    yield reads
    await reads.close()


async def _slept(pool: ReadPool, sleep_s: float, *, seconds: float) -> float:
    started = time.monotonic()
    await pool.fetch("SELECT pg_sleep(%s)", [sleep_s], seconds=seconds)
    return time.monotonic() - started


async def test_each_read_runs_under_its_own_time_limit(pool: ReadPool) -> None:
    with pytest.raises(StorageTimeout):
        await _slept(pool, 2.0, seconds=0.2)
    # The same connection, a longer limit: the 0.2 s of the read before does not hold.
    assert await _slept(pool, 0.5, seconds=5) >= 0.5
    # And a short limit again is applied again, not the 5 s the connection last had.
    started = time.monotonic()
    with pytest.raises(StorageTimeout):
        await _slept(pool, 2.0, seconds=0.2)
    assert time.monotonic() - started < 1.5
    assert await pool.fetch("SHOW statement_timeout", [], seconds=0.25) == [("250ms",)]


async def test_settings_hold_for_their_read_only(pool: ReadPool) -> None:
    first, second = await pool.fetch_many(
        [("SHOW enable_sort", []), ("SELECT 1", [])],
        seconds=5,
        settings=("SET LOCAL enable_sort = off",),
    )
    assert (first, second) == ([("off",)], [(1,)])
    assert await pool.fetch("SHOW enable_sort", [], seconds=5) == [("on",)]


async def test_a_read_asked_not_to_prepare_is_planned_for_its_values(pool: ReadPool) -> None:
    """psycopg prepares a statement from its fifth use on a connection, and PostgreSQL may
    then keep a generic plan; ``prepare=False`` (word searches) never prepares."""
    statement = "SELECT %s::int + 1"
    prepared = "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%%::int + 1'"
    for n in range(8):
        assert await pool.fetch_many([(statement, [n])], seconds=5, prepare=False) == [[(n + 1,)]]
    assert await pool.fetch(prepared, [], seconds=5) == [(0,)]
    for n in range(8):
        assert await pool.fetch(statement, [n], seconds=5) == [(n + 1,)]
    assert await pool.fetch(prepared, [], seconds=5) == [(1,)]


async def test_a_generic_plan_read_is_prepared_at_once_and_planned_for_no_values(
    pool: ReadPool,
) -> None:
    statement = "SELECT %s::bigint * 2"
    plans = (
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE '%%::bigint * 2'"
    )
    for n in range(3):
        rows, found = await pool.fetch_many(
            [(statement, [n]), (plans, [])], seconds=5, generic_plan=True
        )
        assert rows == [(n * 2,)]
        assert found == [(n + 1, 0)]  # prepared at its first use, never planned for a value
    assert await pool.fetch("SHOW plan_cache_mode", [], seconds=5) == [("auto",)]
    # The same statement in a read that does not ask: PostgreSQL's own choice again.
    assert await pool.fetch(statement, [7], seconds=5) == [(14,)]
    assert await pool.fetch(plans, [], seconds=5) == [(3, 1)]


async def test_a_limit_above_a_second_is_rounded_down_to_a_tenth(pool: ReadPool) -> None:
    assert await pool.fetch("SHOW statement_timeout", [], seconds=5.0599) == [("5s",)]
    assert await pool.fetch("SHOW statement_timeout", [], seconds=0.9999) == [("999ms",)]


async def test_a_read_cannot_write(pool: ReadPool, database_url: str) -> None:
    with pytest.raises(StorageError):
        await pool.fetch("CREATE TABLE written_by_a_read (x int)", [], seconds=5)
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT to_regclass('written_by_a_read')").fetchone()
    assert found == (None,)


async def test_a_connection_killed_while_idle_is_replaced_within_the_read(
    pool: ReadPool, database_url: str
) -> None:
    assert await pool.fetch("SELECT 1", [], seconds=5) == [(1,)]
    assert terminate_backends(database_url, "otlpd-query") == 1
    assert await pool.fetch("SELECT 2", [], seconds=5) == [(2,)]
