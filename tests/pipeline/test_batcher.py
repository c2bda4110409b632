"""The batcher against the real PostgreSQL writer: group commit, acknowledgement only after
commit, bounded admission, and what a failing store does to waiting requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from otlpd.errors import Overloaded, RejectedByStore, ShuttingDown, StoreUnavailable
from otlpd.instruments import Instruments
from otlpd.pipeline.batcher import Batcher, BatcherSettings
from storage.model import SPAN_COLUMNS, RowBatch
from storage.postgres.migrate import migrate
from storage.postgres.partitions import PartitionManager
from storage.postgres.writer import PostgresWriter
from tests.conftest import wait_until

# Fails the COMMIT itself (a deferred constraint trigger runs at commit time), the way a
# real commit can fail after every COPY succeeded: 'poison' with a data error (permanent),
# 'flaky' with a serialization failure (transient).
FAIL_AT_COMMIT = """
CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name = 'poison' THEN
    RAISE EXCEPTION 'poisoned span' USING ERRCODE = 'P0001';
  ELSIF NEW.name = 'flaky' THEN
    RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON spans
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit();
"""


def span_row(name: str, time_ns: int | None = None) -> tuple[object, ...]:
    start = time_ns or time.time_ns()
    values: dict[str, object] = {
        "project_id": "p",
        "time": start,
        "start_time_unix_nano": start,
        "end_time_unix_nano": start + 1000,
        "duration_ns": 1000,
        "trace_id": b"\x01" * 16,
        "span_id": b"\x02" * 8,
        "flags": 0,
        "name": name,
        "kind": 1,
        "status_code": 0,
        "attributes": '{"k":"v"}',
        "dropped_attributes_count": 0,
        "dropped_events_count": 0,
        "dropped_links_count": 0,
        "resource_id": 1,
    }
    return tuple(values.get(column) for column in SPAN_COLUMNS)


def batch_of(*names: str) -> RowBatch:
    return RowBatch(spans=[span_row(n) for n in names])


def span_names(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM spans ORDER BY name")]


@pytest.fixture
def migrated(database_url: str) -> Iterator[str]:
    migrate(database_url)
    yield database_url


@pytest.fixture
async def writer(migrated: str) -> AsyncIterator[PostgresWriter]:
    partitions = PartitionManager(migrated)
    partitions.maintain(time.time_ns(), 1)
    w = PostgresWriter(migrated, partitions, pool_size=2)
    yield w
    w.close()


async def running(batcher: Batcher) -> asyncio.Task[None]:
    task = asyncio.create_task(batcher.run())
    await asyncio.sleep(0)
    return task


async def test_concurrent_requests_share_commits(writer: PostgresWriter, migrated: str) -> None:
    metrics = Instruments()
    batcher = Batcher(writer, BatcherSettings(flushers=1), metrics)
    task = await running(batcher)
    await asyncio.gather(*(batcher.submit(batch_of(f"s{i:02}"), 100) for i in range(40)))
    await batcher.close()
    await task

    assert span_names(migrated) == [f"s{i:02}" for i in range(40)]
    commits = metrics.registry.get_sample_value("otlpd_commits_total")
    assert commits is not None and 1 <= commits < 40
    assert metrics.registry.get_sample_value("otlpd_batch_requests_sum") == 40
    assert batcher.depth == (0, 0)


async def test_no_request_is_acknowledged_before_its_commit(
    writer: PostgresWriter, migrated: str
) -> None:
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute(FAIL_AT_COMMIT)
    batcher = Batcher(writer, BatcherSettings(flushers=1), Instruments())
    task = await running(batcher)
    results = await asyncio.gather(
        batcher.submit(batch_of("good-1"), 10),
        batcher.submit(batch_of("poison", "innocent-neighbour"), 10),
        batcher.submit(batch_of("good-2"), 10),
        return_exceptions=True,
    )
    # The poisoned request is refused for good and none of its rows exist; the requests
    # that shared its transaction were retried alone and committed.
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], RejectedByStore)
    # What PostgreSQL said goes to the log, not to the client (it names our objects).
    assert "poisoned span" not in str(results[1]) and "reference" in str(results[1])
    assert span_names(migrated) == ["good-1", "good-2"]

    # A transient failure at commit fails every request of that transaction, retryably.
    flaky = await asyncio.gather(
        batcher.submit(batch_of("flaky"), 10),
        batcher.submit(batch_of("bystander"), 10),
        return_exceptions=True,
    )
    assert any(isinstance(r, StoreUnavailable) for r in flaky)
    assert all(r is None or isinstance(r, StoreUnavailable) for r in flaky)
    stored = span_names(migrated)
    assert "flaky" not in stored
    assert ("bystander" in stored) == (flaky[1] is None)
    await batcher.close()
    await task


async def test_full_queue_refuses_with_retry_and_recovers(
    writer: PostgresWriter, migrated: str
) -> None:
    settings = BatcherSettings(flushers=1, queue_max_rows=3, max_rows=1, retry_after=0.5)
    batcher = Batcher(writer, settings, Instruments())
    task = await running(batcher)
    with psycopg.connect(migrated) as blocker:
        # Holding this lock stalls the writer's COPY, as a slow disk would.
        blocker.execute("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE")
        admitted = [asyncio.create_task(batcher.submit(batch_of(f"a{i}"), 10)) for i in range(3)]
        await asyncio.sleep(0.2)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(batch_of("one-too-many"), 10)
        assert refused.value.retry_after == 0.5
        assert batcher.depth[0] == 3
        assert not any(t.done() for t in admitted)  # nothing acknowledged while stalled
        blocker.rollback()
    await asyncio.gather(*admitted)
    await batcher.submit(batch_of("after"), 10)  # room again
    await batcher.close()
    await task
    assert span_names(migrated) == ["a0", "a1", "a2", "after"]


def _backends(admin: psycopg.Connection[Any], database: str) -> int:
    """How many backends of ``database`` are past their start."""
    statement = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
    row = admin.execute(statement, (database,)).fetchone()
    return 0 if row is None else int(row[0])


async def test_unreachable_store_fails_fast_until_it_is_back(
    writer: PostgresWriter, migrated: str
) -> None:
    name = migrated.rsplit("/", 1)[1]
    batcher = Batcher(writer, BatcherSettings(flushers=1), Instruments())
    task = await running(batcher)
    with psycopg.connect(migrated.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        # The writer's pool connects in the background: a connection still starting when
        # the backends are terminated below would pass the database's check before the
        # ALTER and show in pg_stat_activity only after, survive, and take the write.
        wait_until(lambda: _backends(admin, name) >= 2, "the writer's two connections")
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        try:
            with pytest.raises(StoreUnavailable):
                await batcher.submit(batch_of("lost?"), 10)
            assert batcher.store_up is False
            with pytest.raises(StoreUnavailable):  # refused at admission, no timeout
                batcher.admit(1, 10)
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    batcher.store_up = True  # what the App's probe does once PostgreSQL answers
    for _ in range(50):
        try:
            await batcher.submit(batch_of("retried"), 10)
            break
        except StoreUnavailable:
            batcher.store_up = True
            await asyncio.sleep(0.2)
    await batcher.close()
    await task
    assert span_names(migrated) == ["retried"]


async def test_close_drains_the_queue_then_refuses(writer: PostgresWriter, migrated: str) -> None:
    batcher = Batcher(writer, BatcherSettings(flushers=2), Instruments())
    task = await running(batcher)
    pending = [asyncio.create_task(batcher.submit(batch_of(f"d{i}"), 10)) for i in range(10)]
    await asyncio.sleep(0)
    await batcher.close()
    await asyncio.gather(*pending)
    await task
    with pytest.raises(ShuttingDown):
        await batcher.submit(batch_of("late"), 10)
    assert len(span_names(migrated)) == 10


async def test_max_delay_lingers_to_fill_a_batch(writer: PostgresWriter, migrated: str) -> None:
    metrics = Instruments()
    batcher = Batcher(writer, BatcherSettings(flushers=1, max_delay=0.3), metrics)
    task = await running(batcher)
    first = asyncio.create_task(batcher.submit(batch_of("early"), 10))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(batcher.submit(batch_of("late"), 10))
    await asyncio.gather(first, second)
    await batcher.close()
    await task
    assert metrics.registry.get_sample_value("otlpd_commits_total") == 1
