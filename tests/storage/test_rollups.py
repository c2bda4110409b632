"""The RED rollup job against a real PostgreSQL: backfill, late writes, exact counts."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import datetime
from functools import partial

import psycopg
import pytest

from otlpd.scheduler import JOB_LOCK_CLASS, Scheduler, hold_for_transaction
from storage.postgres.migrate import migrate
from storage.postgres.partitions import PartitionManager, datetime_from_ns
from storage.postgres.rollups import JOB_NAME, SpanRollupJob, TieredSpans

MINUTE = 60 * 10**9
T0 = (time.time_ns() - 3 * 3600 * 10**9) // (3600 * 10**9) * (3600 * 10**9)


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    migrate(database_url)
    PartitionManager(database_url).ensure("spans", [T0])
    yield database_url


def insert_span(
    conn: psycopg.Connection[tuple[object, ...]], at_ns: int, *, mark: bool, project: str = "p"
) -> None:
    """One SERVER span of "api" at ``at_ns``, marked for the rollups as the writer does
    (or not, as spans stored before the rollups existed)."""
    conn.execute(
        "INSERT INTO spans (project_id, time, trace_id, span_id, name, kind, status_code, "
        "duration_ns, service_name, resource_id) "
        "VALUES (%s, %s, %s, %s, 'GET /', 2, 0, 1000000, 'api', 0)",
        (project, datetime_from_ns(at_ns), os.urandom(16), os.urandom(8)),
    )
    if mark:
        conn.execute(
            "INSERT INTO span_rollup_dirty (project_id, minute) "
            "VALUES (%s, date_trunc('minute', %s::timestamptz))",
            (project, datetime_from_ns(at_ns)),
        )


def minute_of(when: datetime) -> int:
    """A rollup row's minute as its offset from T0, in minutes."""
    return int((when.timestamp() * 10**9 - T0) // MINUTE)


def requests(url: str) -> dict[int, int]:
    """Rolled-up requests per minute offset from T0, and (-1) per operation in total."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT minute, requests FROM service_rollups WHERE project_id = 'p' ORDER BY 1"
        ).fetchall()
        (ops,) = conn.execute("SELECT coalesce(sum(requests), 0) FROM operation_rollups").fetchone()  # type: ignore[misc]
    out = {minute_of(m): int(n) for m, n in rows}
    out[-1] = int(ops)  # type: ignore[call-overload]
    return out


async def run(url: str, job: SpanRollupJob) -> None:
    assert await Scheduler(url, [job]).run_once(job)


async def test_the_first_round_backfills_spans_stored_before_the_rollups(url: str) -> None:
    with psycopg.connect(url) as conn:
        for i in range(3):
            insert_span(conn, T0 + 5 * MINUTE + i, mark=False)
        insert_span(conn, T0 + 7 * MINUTE, mark=False)
    job = SpanRollupJob(delay=0)
    await run(url, job)
    assert requests(url) == {5: 3, 7: 1, -1: 4}
    await run(url, job)  # once only: no double counting
    assert requests(url) == {5: 3, 7: 1, -1: 4}


async def test_a_write_committed_during_a_round_is_rolled_up_by_the_next(url: str) -> None:
    job = SpanRollupJob(delay=0)
    await run(url, job)  # the backfill, out of the way
    with psycopg.connect(url, autocommit=True) as conn:
        insert_span(conn, T0 + 10 * MINUTE, mark=True)
    with psycopg.connect(url) as writer:
        # Holds the round inside its REPEATABLE READ transaction, after its snapshot
        # (taken by its first DELETE) and before it writes service_rollups.
        writer.execute("LOCK TABLE service_rollups IN SHARE MODE")
        round_ = asyncio.create_task(run(url, job))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with psycopg.connect(url) as probe:
                waiting = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%DELETE FROM \"service_rollups\"%'"
                ).fetchone()
            if waiting and waiting[0]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the round never reached the lock")
        insert_span(writer, T0 + 10 * MINUTE + 1, mark=True)  # a late span of that minute
        writer.commit()
    await round_
    assert requests(url)[10] == 1  # the round's snapshot predates the late span
    await run(url, job)
    assert requests(url) == {10: 2, -1: 2}
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM span_rollup_dirty").fetchone() == (0,)


async def test_only_minutes_older_than_the_delay_are_rolled_up(url: str) -> None:
    now = time.time_ns()
    PartitionManager(url).ensure("spans", [now // (3600 * 10**9) * (3600 * 10**9)])
    with psycopg.connect(url) as conn:
        insert_span(conn, T0 + MINUTE, mark=True)
        insert_span(conn, now, mark=True)
    await run(url, SpanRollupJob(delay=600))
    got = requests(url)
    assert got[1] == 1 and got[-1] == 1  # the current minute waits for the delay
    with psycopg.connect(url) as conn:
        (until,) = conn.execute("SELECT horizon FROM span_rollup_state").fetchone()  # type: ignore[misc]
        assert until.timestamp() * 1e9 < now - 590 * 10**9  # type: ignore[attr-defined]


# --- before tiering drops a spans partition (TieredSpans, seal) ---------------------------

HOUR = 3600 * 10**9


def tiered(url: str, project: str = "p") -> list[tuple[int, int]]:
    """span_rollups_tiered of ``project`` as (minute offset from T0, requests)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT minute, requests FROM span_rollups_tiered WHERE project_id = %s "
            "ORDER BY minute",
            (project,),
        ).fetchall()
    return [(minute_of(m), int(n)) for m, n in rows]


async def before_drop(url: str, accept_past: float, projects: tuple[str, ...] = ("p",)) -> bool:
    """What tiering runs in its DROP transaction for the spans partition of T0's hour,
    whose rows are of ``projects``."""
    hook = TieredSpans(accept_past, partial(hold_for_transaction, name=JOB_NAME))
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        return await hook(conn, "spans", T0, T0 + HOUR, projects)


async def test_a_drop_rolls_up_the_marked_minutes_and_keeps_them_while_late_spans_can_come(
    url: str,
) -> None:
    await run(url, SpanRollupJob(delay=0))  # the backfill, out of the way
    with psycopg.connect(url) as conn:
        for i in range(3):
            insert_span(conn, T0 + 5 * MINUTE + i, mark=True)
    assert await before_drop(url, accept_past=6 * 3600.0)  # T0 is 3 h back: reachable
    assert requests(url) == {5: 3, -1: 3}  # rolled up by the drop, not by a round
    assert tiered(url) == [(5, 3)]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM span_rollup_dirty").fetchone() == (0,)
        conn.execute("DELETE FROM spans")  # what the DROP does
        insert_span(conn, T0 + 5 * MINUTE + 9, mark=True)  # a late span, in a new partition
    await run(url, SpanRollupJob(delay=0))
    assert requests(url) == {5: 4, -1: 4}
    # Once no late span can reach the minute, the next drop forgets the kept rows.
    assert await before_drop(url, accept_past=3600.0)
    assert tiered(url) == []
    assert requests(url) == {5: 4, -1: 4}


async def test_a_drop_waits_while_a_round_holds_the_rollups_or_before_the_first(url: str) -> None:
    with psycopg.connect(url) as conn:
        insert_span(conn, T0 + 5 * MINUTE, mark=True)
    assert not await before_drop(url, accept_past=6 * 3600.0)  # the job never ran
    await run(url, SpanRollupJob(delay=0))
    with psycopg.connect(url) as conn:
        insert_span(conn, T0 + 6 * MINUTE, mark=True)
    with psycopg.connect(url, autocommit=True) as round_:
        round_.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (JOB_LOCK_CLASS, JOB_NAME))
        assert not await before_drop(url, accept_past=6 * 3600.0)
        assert requests(url) == {5: 1, -1: 1} and tiered(url) == []  # nothing done
    assert await before_drop(url, accept_past=6 * 3600.0)
    assert requests(url) == {5: 1, 6: 1, -1: 2}


async def test_a_later_generation_of_other_projects_keeps_the_first_one_s_rows(url: str) -> None:
    await run(url, SpanRollupJob(delay=0))
    with psycopg.connect(url) as conn:
        for i in range(3):
            insert_span(conn, T0 + 5 * MINUTE + i, mark=True)
    assert await before_drop(url, accept_past=6 * 3600.0)
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM spans")  # the DROP
        insert_span(conn, T0 + 5 * MINUTE, mark=True, project="q")  # the next generation
    await run(url, SpanRollupJob(delay=0))
    assert await before_drop(url, accept_past=6 * 3600.0, projects=("q",))
    assert tiered(url, "p") == [(5, 3)] and tiered(url, "q") == [(5, 1)]
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM spans")
        insert_span(conn, T0 + 5 * MINUTE + 7, mark=True)  # a late span of p's again
    await run(url, SpanRollupJob(delay=0))
    assert requests(url)[5] == 4  # p's three tiered spans and its late one
