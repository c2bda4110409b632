"""otlpd.usage over storage.postgres.usage: counts per project, UTC day and signal add up in
``usage_daily`` across flushes and replicas, and survive a failing PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import psycopg
import pytest

from otlpd.instruments import Instruments
from otlpd.usage import OTHER_LABEL, OTHER_PROJECT, UsageMeter
from storage.postgres.migrate import migrate
from storage.postgres.usage import DailyUsage, PostgresUsage, usage_report


@pytest.fixture
def db(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
async def store(db: str) -> AsyncIterator[PostgresUsage]:
    async with PostgresUsage(db) as store:
        yield store


def _stored(db: str) -> dict[tuple[str, date, str], tuple[int, int]]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT project_id, day, signal, records, bytes FROM usage_daily"
        ).fetchall()
    return {(p, d, s): (r, b) for p, d, s, r, b in rows}


def _rename(db: str, old: str, new: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


async def test_counts_add_up_across_flushes_and_two_replicas(db: str) -> None:
    instruments = Instruments()
    today = datetime.now(UTC).date()
    async with PostgresUsage(db) as one, PostgresUsage(db) as two:
        first, second = UsageMeter(one, instruments=instruments), UsageMeter(two)
        first.add("acme", "traces", 10, 1000)
        first.add("acme", "traces", 5, 500)
        first.add("acme", "logs", 1, 10)
        second.add("acme", "traces", 7, 700)
        second.add("globex", "metrics", 3, 30)
        assert await first.flush() and await second.flush()
        assert first.pending == second.pending == 0
        first.add("acme", "traces", 1, 1)
        second.add("acme", "traces", 2, 2)
        await asyncio.gather(first.flush(), second.flush())
        assert await first.flush()  # nothing left: nothing written
    assert _stored(db) == {
        ("acme", today, "traces"): (25, 2203),
        ("acme", today, "logs"): (1, 10),
        ("globex", today, "metrics"): (3, 30),
    }
    assert usage_report(db, "acme", 30) == [
        DailyUsage(today, "logs", 1, 10),
        DailyUsage(today, "traces", 25, 2203),
    ]
    sample = instruments.registry.get_sample_value
    labels = {"project": "acme", "signal": "traces"}
    assert sample("otlpd_usage_records_total", labels) == 16
    assert sample("otlpd_usage_bytes_total", labels) == 1501


async def test_days_are_utc_days(db: str, store: PostgresUsage) -> None:
    now = [_at("2024-05-01T23:59:59")]
    meter = UsageMeter(store, clock=lambda: now[0])
    meter.add("acme", "logs", 1, 100)
    now[0] = _at("2024-05-02T00:00:00")
    meter.add("acme", "logs", 2, 200)
    await meter.flush()
    assert _stored(db) == {
        ("acme", date(2024, 5, 1), "logs"): (1, 100),
        ("acme", date(2024, 5, 2), "logs"): (2, 200),
    }
    assert usage_report(db, "acme", 30) == []  # long ago
    assert usage_report(db, "nobody", 1) == []


async def test_counts_that_fail_to_be_written_are_kept_and_written_later(
    db: str, store: PostgresUsage
) -> None:
    meter = UsageMeter(store, max_keys=4)
    today = datetime.now(UTC).date()
    _rename(db, "usage_daily", "usage_away")
    try:
        meter.add("acme", "traces", 1, 10)
        assert not await meter.flush()
        assert meter.pending == 1
        meter.add("acme", "traces", 2, 20)
        # More keys than the meter keeps: the excess is folded into one "other" key.
        for i in range(10):
            meter.add(f"p{i}", "logs", 1, 1)
        assert not await meter.flush()
        assert meter.pending == 5  # 4 kept + the fold
    finally:
        _rename(db, "usage_away", "usage_daily")
    assert await meter.flush()
    stored = _stored(db)
    assert stored[("acme", today, "traces")] == (3, 30)
    assert sum(records for records, _ in stored.values()) == 13  # none lost
    assert stored[(OTHER_PROJECT, today, "logs")] == (7, 7)


async def test_run_writes_periodically_early_when_full_and_finishes_on_cancel(
    db: str, store: PostgresUsage
) -> None:
    today = datetime.now(UTC).date()
    meter = UsageMeter(store, flush_every=0.2)
    runner = asyncio.create_task(meter.run())
    try:
        meter.add("acme", "traces", 4, 40)
        for _ in range(60):
            if _stored(db):
                break
            await asyncio.sleep(0.05)
        assert _stored(db) == {("acme", today, "traces"): (4, 40)}
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    meter.add("acme", "traces", 1, 1)
    assert await meter.flush()  # at shutdown, after run
    assert _stored(db) == {("acme", today, "traces"): (5, 41)}

    # Half of max_keys held: written now, not at the period.
    early = UsageMeter(store, flush_every=60, max_keys=4)
    runner = asyncio.create_task(early.run())
    try:
        early.add("a", "logs", 1, 1)
        early.add("b", "logs", 1, 1)
        for _ in range(60):
            if len(_stored(db)) == 3:
                break
            await asyncio.sleep(0.05)
        assert len(_stored(db)) == 3
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_prometheus_labels_are_bounded(store: PostgresUsage) -> None:
    instruments = Instruments()
    meter = UsageMeter(store, instruments=instruments, max_labelled=2)
    for project in ("a", "b", "c", "d"):
        meter.add(project, "logs", 1, 10)
    sample = instruments.registry.get_sample_value
    assert sample("otlpd_usage_records_total", {"project": "a", "signal": "logs"}) == 1
    assert sample("otlpd_usage_records_total", {"project": "c", "signal": "logs"}) is None
    other = {"project": OTHER_LABEL, "signal": "logs"}
    assert sample("otlpd_usage_records_total", other) == 2
    assert sample("otlpd_usage_bytes_total", other) == 20
