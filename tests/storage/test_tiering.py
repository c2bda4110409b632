"""Tiering against a real PostgreSQL, a real S3-protocol server (moto) and a directory:
rows sent through the OTLP receiver move to Parquet exactly once, whatever fails."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from otlpd.scheduler import Scheduler
from storage.api import StorageUnavailable
from storage.objectstore import ObjectStore, open_store
from storage.postgres.partitions import Partition
from storage.postgres.tiering import TierJob, object_key, partitions_past
from tests.conftest import CuttingProxy, RunningOtlpd, start_moto, start_otlpd_thread
from tests.query.test_traces import S, send_spans

HOUR = 3600 * 10**9
# An hour 50-51 h back: past a 48 h retention, inside the server's accepted window (53 h).
OLD = (time.time_ns() - 50 * HOUR) // HOUR * HOUR
RETENTION = {"spans": 48 * 3600.0, "logs": 48 * 3600.0, "metric_points": 48 * 3600.0}


@pytest.fixture
def store_factory(tmp_path: Path) -> Callable[[], ObjectStore]:
    """The local-directory cold tier (the S3 store behaves alike: test_objectstore.py)."""
    return lambda: open_store((tmp_path / "cold").as_uri())


@pytest.fixture(params=["file", "s3"])
def any_store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str
) -> Callable[[], ObjectStore]:
    if request.param == "file":
        return lambda: open_store((tmp_path / "cold").as_uri())
    bucket = f"cold-{time.time_ns()}"
    return lambda: open_store(
        f"s3://{bucket}/otlpd",
        endpoint=s3_endpoint,
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        secure=False,
    )


@pytest.fixture
def server(database_url: str) -> Iterator[RunningOtlpd]:
    running = start_otlpd_thread(database_url, accept_past="53h", rollup_interval="1h")
    yield running
    running.stop()


def send_old(server: RunningOtlpd, n: int, project: str, *, at: int = OLD) -> None:
    spans = [S(os.urandom(16), f"op{i % 3}", at + i * 10**6) for i in range(n)]
    send_spans(server, spans, service="api", project=project)


def span_partitions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'spans'::regclass ORDER BY 1"
        ).fetchall()
    return [str(name) for (name,) in rows]


def manifest(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT project_id, signal, key, rows, bytes, created_at FROM cold_objects ORDER BY key"
        ).fetchall()


def cold_rows(store: ObjectStore, signal: str = "spans") -> dict[str, int]:
    """Rows per object key of ``signal`` in the store, read back with plain pyarrow."""
    return {
        info.key: pq.read_table(io.BytesIO(store.get(info.key))).num_rows
        for info in store.list(signal + "/")
    }


async def partition_of_old(url: str) -> Partition:
    """The spans partition of the hour ``OLD``, where ``send_old`` puts its spans."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        (partition,) = [
            p for p in await partitions_past(conn, "spans", OLD + HOUR) if p.low_ns == OLD
        ]
    return partition


def job(url: str, factory: Callable[[], ObjectStore]) -> TierJob:
    return TierJob(url, factory, RETENTION, interval=60)


async def run(url: str, tier: TierJob) -> bool:
    return await Scheduler(url, [tier]).run_once(tier)


async def test_past_retention_moves_to_documented_keys_and_the_partition_goes(
    server: RunningOtlpd, any_store: Callable[[], ObjectStore]
) -> None:
    url = server.database_url
    send_old(server, 30, "shop")
    send_old(server, 20, "blog")
    send_spans(server, [S(b"\x09" * 16, "now", time.time_ns())], service="api", project="shop")
    old_partition = f"spans_p{time.strftime('%Y%m%dt%H00', time.gmtime(OLD / 1e9))}"
    assert old_partition in span_partitions(url)
    tier = job(url, any_store)
    assert await run(url, tier)
    assert old_partition not in span_partitions(url)  # the hot copy is gone
    assert any(p for p in span_partitions(url))  # the current hour's is not
    day, hour = time.strftime("%Y-%m-%d", time.gmtime(OLD / 1e9)), time.gmtime(OLD / 1e9).tm_hour
    expected = {
        f"spans/project={p}/date={day}/hour={hour:02d}/{old_partition}-0.parquet": n
        for p, n in (("shop", 30), ("blog", 20))
    }
    store = tier.store()
    assert cold_rows(store) == expected
    rows = {key: (n, size) for _, signal, key, n, size, _ in manifest(url) if signal == "spans"}
    assert {key: n for key, (n, _) in rows.items()} == expected
    assert all(store.stat(key).size == size for key, (_, size) in rows.items())  # type: ignore[union-attr]
    assert tier.last.rows == 50 and tier.last.partitions >= 1


async def test_killed_between_upload_and_manifest_a_pass_finishes_without_duplicates(
    server: RunningOtlpd, any_store: Callable[[], ObjectStore]
) -> None:
    url = server.database_url
    send_old(server, 12, "shop")
    tier = job(url, any_store)
    partition = await partition_of_old(url)
    key = object_key(partition, "shop", 0)
    await asyncio.to_thread(tier.export_and_upload, partition, "shop", key)  # then "killed"
    assert manifest(url) == []
    assert await run(url, tier)
    assert cold_rows(tier.store()) == {key: 12}
    assert [(r[2], r[3]) for r in manifest(url)] == [(key, 12)]
    assert partition.name not in span_partitions(url)


async def test_killed_between_manifest_and_drop_a_pass_drops_without_exporting_again(
    server: RunningOtlpd, any_store: Callable[[], ObjectStore]
) -> None:
    url = server.database_url
    send_old(server, 7, "shop")
    tier = job(url, any_store)
    partition = await partition_of_old(url)
    with psycopg.connect(url) as reader:  # a long read holds the drop off: the round fails
        reader.execute(f'SELECT count(*) FROM "{partition.name}"')
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await run(url, tier)
    recorded = manifest(url)
    assert [r[3] for r in recorded] == [7]
    assert partition.name in span_partitions(url)
    assert await run(url, tier)
    assert manifest(url) == recorded  # same row, same created_at: not exported again
    assert partition.name not in span_partitions(url)
    assert list(cold_rows(tier.store()).values()) == [7]


async def test_a_late_record_after_the_export_is_exported_again_before_the_drop(
    server: RunningOtlpd, store_factory: Callable[[], ObjectStore]
) -> None:
    url = server.database_url
    send_old(server, 5, "shop")
    tier = job(url, store_factory)
    partition = await partition_of_old(url)
    key = object_key(partition, "shop", 0)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await tier.tier(conn, partition)  # exported and dropped...
    assert partition.name not in span_partitions(url)
    send_old(server, 3, "shop", at=OLD + 10 * 10**9)  # ...then a record that late arrives
    assert await run(url, tier)  # the partition made again is a second generation
    assert cold_rows(tier.store()) == {key: 5, object_key(partition, "shop", 1): 3}
    assert sorted(r[3] for r in manifest(url)) == [3, 5]


async def test_a_store_that_is_down_leaves_the_partition_hot(
    server: RunningOtlpd, tmp_path: Path
) -> None:
    url = server.database_url
    send_old(server, 4, "shop")
    s3, endpoint = start_moto()

    def factory() -> ObjectStore:
        return open_store(
            "s3://down/x",
            endpoint=endpoint,
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            secure=False,
        )

    tier = job(url, factory)
    tier.store()  # the bucket exists; then S3 goes away
    s3.stop()
    old = f"spans_p{time.strftime('%Y%m%dt%H00', time.gmtime(OLD / 1e9))}"
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        await run(url, tier)
    assert time.monotonic() - started < 30
    assert old in span_partitions(url) and manifest(url) == []
    assert tier.interval == 30.0  # backoff, not the 60 s interval
    s3, _ = start_moto(int(endpoint.rsplit(":", 1)[1]))  # back, on the same port
    try:
        again = job(url, factory)  # moto forgets its buckets when stopped
        assert await run(url, again)
        assert list(cold_rows(again.store()).values()) == [4]
        assert old not in span_partitions(url)
    finally:
        s3.stop()


async def test_s3_stopped_in_the_middle_of_an_upload_leaves_every_row_exactly_once(
    server: RunningOtlpd, s3_endpoint: str
) -> None:
    """The connection to S3 dies while the object is being sent: the partition stays hot,
    the manifest names nothing, and the next pass (S3 back) tiers every row once."""
    url = server.database_url
    send_old(server, 3000, "shop")  # ~150 KB of Parquet: several TCP segments upstream
    proxy = CuttingProxy(s3_endpoint)
    bucket = f"cut-{time.time_ns()}"

    def factory() -> ObjectStore:
        return open_store(
            f"s3://{bucket}/x",
            endpoint=proxy.endpoint,
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            secure=False,
        )

    try:
        tier = job(url, factory)
        tier.store()  # the bucket exists
        proxy.cut_after(60_000)  # past the request line and headers, inside the body
        with pytest.raises(StorageUnavailable):
            await run(url, tier)
        assert proxy.cut.is_set(), "the upload was not cut"
        partition = await partition_of_old(url)
        assert partition.name in span_partitions(url) and manifest(url) == []
        proxy.heal()
        assert await run(url, job(url, factory))
        assert list(cold_rows(factory()).values()) == [3000]
        assert [(r[0], r[3]) for r in manifest(url)] == [("shop", 3000)]
        assert partition.name not in span_partitions(url)
    finally:
        proxy.close()


async def test_two_replicas_never_export_a_partition_twice(
    server: RunningOtlpd, tmp_path: Path
) -> None:
    url = server.database_url
    send_old(server, 9, "shop")
    factory = lambda: open_store((tmp_path / "cold").as_uri())  # noqa: E731
    first, second = job(url, factory), job(url, factory)
    ran = await asyncio.gather(run(url, first), run(url, second))
    assert sorted(ran) == [False, True] or ran == [True, True]
    assert [(r[0], r[3]) for r in manifest(url)] == [("shop", 9)]
    assert list(cold_rows(first.store()).values()) == [9]


def test_otlpd_tier_once_moves_what_is_due_and_exits_0(
    server: RunningOtlpd, tmp_path: Path
) -> None:
    from tests.test_main import base_env, run_otlpd

    send_old(server, 6, "shop")
    cold = tmp_path / "cold"
    env = base_env(
        OTLPD_DATABASE_URL=server.database_url,
        OTLPD_COLD_URL=cold.as_uri(),
        OTLPD_ACCEPT_PAST="53h",
    )
    done = run_otlpd(["tier", "--once"], env)
    assert done.returncode == 0, done.stderr
    assert list(cold_rows(open_store(cold.as_uri())).values()) == [6]
    assert [r[3] for r in manifest(server.database_url)] == [6]


def test_otlpd_tier_once_keeps_the_red_rollups_of_the_spans_it_moves(
    server: RunningOtlpd, tmp_path: Path
) -> None:
    from tests.test_main import base_env, run_otlpd

    send_old(server, 6, "shop")
    env = base_env(
        OTLPD_DATABASE_URL=server.database_url,
        OTLPD_COLD_URL=(tmp_path / "cold").as_uri(),
        OTLPD_ACCEPT_PAST="53h",
    )
    done = run_otlpd(["tier", "--once"], env)
    assert done.returncode == 0, done.stderr
    send_old(server, 1, "shop", at=OLD + 500 * 10**6)  # late: the range's partition again
    done = run_otlpd(["tier", "--once"], env)  # rolls the late span up, then tiers it too
    assert done.returncode == 0, done.stderr
    assert [r[3] for r in manifest(server.database_url)] == [6, 1]
    with psycopg.connect(server.database_url) as conn:
        rows = conn.execute(
            "SELECT minute, requests FROM service_rollups WHERE project_id = 'shop'"
        ).fetchall()
    assert [(int(m.timestamp()) * 10**9, n) for m, n in rows] == [(OLD, 7)]


async def test_cold_retention_deletes_only_expired_objects_manifest_first(
    server: RunningOtlpd, any_store: Callable[[], ObjectStore]
) -> None:
    url = server.database_url
    send_old(server, 3, "shop")
    send_old(server, 2, "shop", at=OLD + HOUR)
    tier = job(url, any_store)
    assert await run(url, tier)
    assert sorted(cold_rows(tier.store()).values()) == [2, 3]
    # A cold retention that the older object (newest row in OLD's hour) is past.
    keep = (time.time_ns() - (OLD + HOUR)) / 1e9 + 60
    expiring = TierJob(url, any_store, RETENTION, cold_retention={"spans": keep})
    assert await run(url, expiring)
    assert expiring.last.expired == 1
    assert list(cold_rows(expiring.store()).values()) == [2]
    assert [r[3] for r in manifest(url)] == [2]


def test_the_pacer_holds_an_export_to_its_rate() -> None:
    from storage.postgres.tiering import Pacer

    pace = Pacer(2000)
    started = time.monotonic()
    for _ in range(4):
        pace(250)  # 1,000 rows at 2,000 rows/s: half a second at least
    assert time.monotonic() - started >= 0.45
    unlimited, started = Pacer(0), time.monotonic()
    unlimited(10**9)
    assert time.monotonic() - started < 0.1


async def test_a_project_s_own_retention_wins_in_both_tiers(
    server: RunningOtlpd, store_factory: Callable[[], ObjectStore]
) -> None:
    from storage.postgres.tenants import set_retention
    from tests.test_main import base_env, run_otlpd

    url = server.database_url
    send_old(server, 4, "shop")
    send_old(server, 3, "blog")
    recent = (time.time_ns() - 3 * HOUR) // HOUR * HOUR
    send_old(server, 2, "fast", at=recent)
    send_old(server, 1, "shop", at=recent)
    set_retention(url, "blog", "spans", hot_seconds=60 * 3600.0)  # longer than 48 h
    done = run_otlpd(
        ["projects", "set-retention", "fast", "--signal", "spans", "--hot", "1h"],
        base_env(OTLPD_DATABASE_URL=url),
    )
    assert done.returncode == 0, done.stderr
    tier = job(url, store_factory)
    assert await run(url, tier)
    old = f"spans_p{time.strftime('%Y%m%dt%H00', time.gmtime(OLD / 1e9))}"
    new = f"spans_p{time.strftime('%Y%m%dt%H00', time.gmtime(recent / 1e9))}"
    assert {(r[0], r[3]) for r in manifest(url)} == {("shop", 4), ("fast", 2)}
    assert old in span_partitions(url) and new in span_partitions(url)  # blog, shop: not yet
    set_retention(url, "blog", "spans", hot_seconds=None)  # back to the server's 48 h
    set_retention(url, "shop", "spans", cold_seconds=1.0)
    assert await run(url, tier)
    assert old not in span_partitions(url) and new in span_partitions(url)
    # shop's object went with its one-second cold retention; blog keeps the default.
    assert {(r[0], r[3]) for r in manifest(url)} == {("blog", 3), ("fast", 2)}
    assert sorted(cold_rows(tier.store()).values()) == [2, 3]


async def test_an_empty_partition_that_may_still_take_a_record_is_left(
    server: RunningOtlpd, store_factory: Callable[[], ObjectStore]
) -> None:
    """The partition manager makes every partition of the accepted window ahead of time:
    dropping an empty one inside it would only have it made again, pass after pass."""
    url = server.database_url
    # The server took 53 h, so OLD's partition will exist, empty; it makes the past part
    # of the window in the background after start, newest first, so wait for it.
    deadline = time.monotonic() + 60
    old_partitions: list[Partition] = []
    while time.monotonic() < deadline:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            old_partitions = await partitions_past(conn, "spans", OLD + HOUR)
        if any(p.low_ns == OLD for p in old_partitions):
            break
        await asyncio.sleep(0.1)
    assert any(p.low_ns == OLD for p in old_partitions)
    # Its jobs and partition upkeep read and lock `spans`; a drop waits for the parent's
    # lock only DROP_LOCK_TIMEOUT (and then fails the pass): off the busy suite's path.
    server.stop()
    within = TierJob(url, store_factory, RETENTION, interval=60, accept_past=53 * 3600.0)
    assert await run(url, within)
    # The window's old edge moves with the clock: a partition the server made at its start
    # may have left the window by the time the job ran (the server started at hh:59, the
    # job ran at hh:00), and dropping that one is right. Every partition still inside the
    # window now was inside it all along, so must have been kept.
    edge = time.time_ns() - 53 * HOUR
    inside = {p.name for p in old_partitions if p.high_ns > edge}
    assert any(p.low_ns == OLD for p in old_partitions if p.name in inside)
    assert inside <= set(span_partitions(url))
    beyond = TierJob(url, store_factory, RETENTION, interval=60, accept_past=3600.0)
    assert await run(url, beyond)
    assert not {p.name for p in old_partitions} & set(span_partitions(url))
    assert manifest(url) == []  # nothing to export: they were empty
