"""Pruning against a real PostgreSQL, with rows sent through the OTLP receiver: what the
partitions tiering dropped used goes, what a hot partition or a cached writer still
needs stays, and a writer stores a pruned row again when it uses it again."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from otlpd.config import load
from otlpd.instruments import Instruments
from otlpd.jobs import prune_job
from otlpd.scheduler import Scheduler
from storage.objectstore import open_store
from storage.postgres.partitions import partitions_of
from storage.postgres.prune import PRUNED, PruneJob, Referenced
from storage.postgres.sessions import PostgresSessionDirectory
from storage.postgres.tiering import TierJob
from tests.conftest import RunningOtlpd, start_otlpd_thread
from tests.query.test_sessions import send_gauge
from tests.query.test_traces import S, send_spans

HOUR = 3600 * 10**9
# An hour 3-4 h back: past a 2 h hot retention, inside the servers' accepted window (5 h,
# which leaves an hour for the tests to run in; a small window starts fast).
OLD = (time.time_ns() - 3 * HOUR) // HOUR * HOUR
RETENTION = {"spans": 2 * 3600.0, "logs": 2 * 3600.0, "metric_points": 2 * 3600.0}
TOUCH = 1.0  # OTLPD_TOUCH_INTERVAL of the servers here: pruning waits twice this


def start(url: str, touch: float = TOUCH) -> RunningOtlpd:
    """otlpd with its accepted window made whole (made in the background, oldest last: a
    partition tiered meanwhile would be made again)."""
    server = start_otlpd_thread(
        url, accept_past="5h", rollup_interval="1h", touch_interval=f"{touch}s"
    )
    deadline = time.monotonic() + 30
    while server.metric("otlpd_partitions_missing") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


@pytest.fixture
def server(database_url: str) -> Iterator[RunningOtlpd]:
    running = start(database_url)
    yield running
    running.stop()


def rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def hosts(url: str, project: str = "shop") -> set[str]:
    """The resources of ``project``, by their host.name."""
    found = rows(
        url, "SELECT attributes->>'host.name' FROM resources WHERE project_id = %s", project
    )
    return {str(h) for (h,) in found}


def catalog(url: str) -> dict[str, set[Any]]:
    """What the pruned tables hold besides resources, by name."""
    return {
        "series": {r[0] for r in rows(url, "SELECT metric_name FROM metric_series")},
        "sessions": {r[0] for r in rows(url, "SELECT session_id FROM sessions")},
        "services": {r[0] for r in rows(url, "SELECT service_name FROM services")},
        "operations": {
            (r[0], r[1]) for r in rows(url, "SELECT service_name, span_name FROM operations")
        },
    }


def send(
    server: RunningOtlpd,
    at: int,
    host: str,
    *,
    service: str = "api",
    name: str = "GET /",
    project: str = "shop",
    **attributes: Any,
) -> None:
    """One span at ``at`` from a resource of ``host``, in ``project`` (named by the span,
    so one resource of two projects has one id)."""
    span = S(os.urandom(16), name, at, attributes={"project.id": project, **attributes})
    send_spans(server, [span], service=service, resource={"host.name": host})


def tier(url: str, tmp_path: Path) -> None:
    """Every partition past 2 h goes to a local cold tier, and is dropped."""
    job = TierJob(url, lambda: open_store((tmp_path / "cold").as_uri()), RETENTION, interval=60)
    assert asyncio.run(Scheduler(url, [job]).run_once(job))


def prune(url: str, job: PruneJob | None = None) -> dict[str, int]:
    """One pass of ``job`` (one with this module's touch interval by default)."""
    job = job or PruneJob(touch_interval=TOUCH, batch=2)
    assert asyncio.run(Scheduler(url, [job]).run_once(job))
    return job.last


def wait_untouched(url: str, touch: float = TOUCH) -> None:
    """Until twice the touch interval has passed, on PostgreSQL's clock, since any
    pruned table was last written: condition (B) of storage.postgres.prune."""
    (newest,) = rows(
        url,
        "SELECT greatest((SELECT max(touched_at) FROM resources),"
        " (SELECT max(touched_at) FROM metric_series), (SELECT max(touched_at) FROM sessions),"
        " (SELECT max(last_seen) FROM services))"
        " + %s * interval '1 second' - statement_timestamp()",
        2 * touch + 0.05,
    )[0]
    time.sleep(max(0.0, newest.total_seconds()))


def drop_partitions(url: str, *, through: int) -> None:
    """Drops by hand every spans and logs partition that starts at or before ``through``."""

    async def drop() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for table in ("spans", "logs"):
                for p in await partitions_of(conn, table):
                    if p.low_ns <= through:
                        await conn.execute(f'DROP TABLE "{p.name}"')

    asyncio.run(drop())


def test_rows_go_once_the_partitions_that_used_them_are_dropped_and_come_back_when_used(
    server: RunningOtlpd, tmp_path: Path
) -> None:
    url = server.database_url
    now = time.time_ns()
    for i in range(5):  # five resources only old spans use: pruned two at a time
        send(
            server, OLD + i, f"old-{i}", service="old-api", name="old-op", **{"session.id": "s-old"}
        )
    send(server, OLD, "shared")
    send(server, now, "shared")  # a hot span still uses it
    send(server, now, "live", **{"session.id": "s-live", "user.id": "alice"})
    send(server, now, "live", project="blog")  # same resource id, another project
    send(server, OLD, "old-0", project="blog")  # blog's old-0 is used by an old span only
    send_gauge(server, "old.gauge", OLD, 1.0, {"service.name": "old-api", "host.name": "old-0"})
    send_gauge(server, "live.gauge", now, 1.0, {"service.name": "api", "host.name": "live"})
    olds = {f"old-{i}" for i in range(5)}
    assert hosts(url) == {*olds, "shared", "live"}
    wait_untouched(url)

    nothing = prune(url)  # every old partition is still hot
    assert set(nothing.values()) == {0}
    tier(url, tmp_path)
    patient = prune(url, PruneJob(touch_interval=3600))  # (B): writers may still trust them
    assert set(patient.values()) == {0}

    metrics = Instruments()
    job = prune_job(load({}, {"touch_interval": f"{TOUCH}s"}), metrics)
    with psycopg.connect(url) as writer:  # as a writer's upsert of blog's old-0 would
        writer.execute(
            "SELECT 1 FROM resources WHERE project_id = 'blog' "
            "AND attributes->>'host.name' = 'old-0' FOR UPDATE"
        )
        pruned = prune(url, job)  # does not wait for it: leaves that row
    assert pruned == {
        "resources": 5,  # shop's five old ones
        "metric_series": 1,
        "sessions": 1,
        "services": 0,  # the query API still answers for old-api from the cold tier
        "operations": 0,
    }
    assert hosts(url, "blog") == {"live", "old-0"}
    assert prune(url)["resources"] == 1  # the next pass takes it
    assert metrics.registry.get_sample_value("otlpd_pruned_rows_total", {"table": "resources"}) == 5
    assert hosts(url) == {"shared", "live"}
    assert hosts(url, "blog") == {"live"}
    assert "old-api" in catalog(url)["services"]
    rows(url, "DELETE FROM cold_objects RETURNING 1")  # as cold retention would, later
    gone = prune(url)
    assert (gone["services"], gone["operations"]) == (2, 1)  # old-api of shop and the gauges'
    assert catalog(url) == {
        "series": {"live.gauge"},
        "sessions": {"s-live"},
        "services": {"api"},
        "operations": {("api", "GET /")},
    }
    assert set(prune(url).values()) == {0}  # nothing left to do: a second pass is a no-op

    # The same otlpd, its caches warm, uses what was pruned again: stored again.
    send(server, now, "old-0", service="old-api", name="old-op", **{"session.id": "s-old"})
    send_gauge(server, "old.gauge", now, 2.0, {"service.name": "old-api", "host.name": "old-0"})
    assert "old-0" in hosts(url)
    assert catalog(url)["series"] == {"live.gauge", "old.gauge"}
    assert catalog(url)["sessions"] == {"s-live", "s-old"}
    assert ("old-api", "old-op") in catalog(url)["operations"]
    assert orphans(url) == (0, 0)
    # A record that names only a live session is completed from its row, as before.
    found = asyncio.run(lookup(url, ["s-live", "s-gone"]))
    assert found == {"s-live": ("shop", "alice")}


def orphans(url: str) -> tuple[int, int]:
    """Spans without their resource, points without their series."""
    ((spans, points),) = rows(
        url,
        "SELECT (SELECT count(*) FROM spans s WHERE NOT EXISTS (SELECT 1 FROM resources r "
        "WHERE r.project_id = s.project_id AND r.resource_id = s.resource_id)), "
        "(SELECT count(*) FROM metric_points p WHERE NOT EXISTS (SELECT 1 FROM metric_series m "
        "WHERE m.project_id = p.project_id AND m.series_id = p.series_id))",
    )
    return int(spans), int(points)


async def lookup(url: str, sessions: list[str]) -> dict[str, tuple[str, str | None]]:
    async with PostgresSessionDirectory(url) as directory:
        return await directory.lookup(sessions)


def test_a_series_a_rollup_row_still_refers_to_stays(server: RunningOtlpd, tmp_path: Path) -> None:
    """A referrer that is not partitioned keeps
    what it refers to, by key, and only that."""
    url = server.database_url
    send_gauge(server, "kept", OLD, 1.0, {"service.name": "svc"})
    send_gauge(server, "gone", OLD, 1.0, {"service.name": "svc"})
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE test_rollups (project_id text, series_id bigint, minute timestamptz,"
            " PRIMARY KEY (project_id, series_id, minute))"
        )
        conn.execute(
            "INSERT INTO test_rollups SELECT project_id, series_id, first_seen FROM metric_series "
            "WHERE metric_name = 'kept'"
        )
    tier(url, tmp_path)
    wait_untouched(url)
    series = next(t for t in PRUNED if t.table == "metric_series")
    rolled = Referenced(
        series.table, series.key, series.newest, series.touched, (*series.referrers, "test_rollups")
    )
    job = PruneJob(touch_interval=TOUCH, tables=[rolled])
    assert prune(url, job) == {"metric_series": 1}
    assert catalog(url)["series"] == {"kept"}
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM test_rollups")
    assert prune(url, job) == {"metric_series": 1}
    assert catalog(url)["series"] == set()


def test_a_cached_writer_committing_after_the_prune_s_check_keeps_its_resource(
    database_url: str,
) -> None:
    """The race of storage.postgres.prune: a writer whose cache vouches for a resource
    copies a late span into a partition made again (the old one was dropped), and holds
    its transaction open while a prune runs that would find no committed record and no
    older partition. The partition the writer holds is what keeps the resource."""
    touch = 2.0
    server = start(database_url, touch)
    url = database_url
    try:
        send(server, OLD, "x")
        (touched,) = rows(url, "SELECT touched_at FROM resources")[0]
        drop_partitions(url, through=OLD)  # as tiering would: nothing older remains
        with psycopg.connect(url) as holder:
            # Holds the writer after its COPY and its caches, at its rollup marks.
            holder.execute("LOCK TABLE span_rollup_dirty IN ACCESS EXCLUSIVE MODE")
            late = threading.Thread(target=send, args=(server, OLD + 1000, "x"))
            late.start()
            waiting_for_lock(url, "INSERT INTO span_rollup_dirty")
            wait_untouched(url, touch)
            kept = prune(url, PruneJob(touch_interval=touch))
            assert kept["resources"] == 0
            holder.rollback()
        late.join(30)
        assert not late.is_alive()
        # The writer did trust its cache: the resource was not written again.
        assert rows(url, "SELECT touched_at FROM resources") == [(touched,)]
        joined = rows(
            url, "SELECT count(*) FROM spans JOIN resources USING (project_id, resource_id)"
        )
        assert joined == [(1,)]
        # Once that partition is gone too, so is the resource.
        drop_partitions(url, through=OLD)
        assert prune(url, PruneJob(touch_interval=touch))["resources"] == 1
    finally:
        server.stop()


def waiting_for_lock(url: str, statement: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        waiting = rows(
            url,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s",
            statement + "%",
        )
        if waiting[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing waits at {statement}")


def test_two_replicas_share_the_rows_and_one_prune_at_a_time(
    database_url: str, tmp_path: Path
) -> None:
    first, second = start(database_url), start(database_url)
    url = database_url
    try:
        for replica in (first, second):
            send(replica, OLD, "x")
            send(replica, time.time_ns(), "y")
        tier(url, tmp_path)
        wait_untouched(url)
        jobs = [PruneJob(touch_interval=TOUCH), PruneJob(touch_interval=TOUCH)]

        async def both() -> list[bool]:
            return list(await asyncio.gather(*(Scheduler(url, [j]).run_once(j) for j in jobs)))

        ran = asyncio.run(both())
        assert True in ran
        assert sum(j.last.get("resources", 0) for j in jobs) == 1  # x once, by one of them
        assert hosts(url) == {"y"}
        touched = None
        for replica in (first, second):  # both caches knew x: neither trusts them now
            send(replica, time.time_ns(), "x")
            ((again,),) = rows(
                url, "SELECT touched_at FROM resources WHERE attributes->>'host.name' = 'x'"
            )
            assert touched is None or again > touched  # stored, then written again
            touched = again
        assert orphans(url) == (0, 0)
    finally:
        first.stop()
        second.stop()
