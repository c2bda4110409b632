"""The metric rollup job against a real PostgreSQL, with points sent through the real OTLP
receiver: 1-minute and 1-hour rows equal what numpy computes from the raw points, late
points re-roll their minute, points stored before the rollups are backfilled, and
tiering of the points waits until their rollups are final."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from otlpd.scheduler import Scheduler
from storage.objectstore import open_store
from storage.postgres.metric_reader import decode_rollup_numbers, rollup_statement, series_scope
from storage.postgres.metric_rollups import MetricRollupJob, complete_until, final_until
from storage.postgres.partitions import PartitionManager, datetime_from_ns
from storage.postgres.tiering import TierJob
from tests.conftest import RunningOtlpd, start_otlpd_thread
from tests.query.test_metrics import CUMULATIVE, DELTA, S, _gauge, _send, _sum

MINUTE, HOUR = 60 * S, 3600 * S
# Two whole hours of points, ending an hour ago: both hours are past any delay.
T0 = (time.time_ns() // HOUR - 3) * HOUR
BOUNDS = [1.0, 5.0, 25.0]
OTHER_BOUNDS = [2.0, 10.0, 50.0, 250.0]


def _histogram(name: str, temporality: int) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit="ms")
    metric.histogram.aggregation_temporality = temporality
    return metric


def send_everything(otlpd: RunningOtlpd) -> None:
    """Every kind, every 15 s for two hours: gauges, a counter that resets, a delta sum, a
    cumulative histogram that resets, restarts and changes its bounds mid-minute, a delta
    histogram, and a cumulative exponential histogram whose scale drops."""
    rng = np.random.default_rng(7)
    times = [T0 + k * 15 * S for k in range(480)]
    gauge = [(t, float(rng.normal(50, 10)), {"host": h}) for t in times for h in ("a", "b")]
    counter, value = [], 0.0
    for k, t in enumerate(times):
        value = 3.0 if k == 300 else value + float(rng.integers(0, 20))  # a reset at k = 300
        counter.append((t, value))
    counter.append(counter[100])  # a retried export: stored twice
    deltas = [(t, float(rng.integers(0, 5))) for t in times[::2]]
    cumulative = _histogram("latency", CUMULATIVE)
    counts, start, bounds = np.zeros(4, dtype=np.int64), T0, BOUNDS
    for k, t in enumerate(times):
        if k == 200:  # the process restarted: a new start time, counts from zero
            counts, start = np.zeros(len(bounds) + 1, dtype=np.int64), t - S
        if k == 402:  # new bounds, half-way through a minute
            bounds, counts = OTHER_BOUNDS, np.zeros(len(OTHER_BOUNDS) + 1, dtype=np.int64)
        counts = counts + rng.integers(0, 6, len(bounds) + 1)
        cumulative.histogram.data_points.add(
            time_unix_nano=t,
            start_time_unix_nano=start,
            count=int(counts.sum()),
            bucket_counts=counts.tolist(),
            explicit_bounds=bounds,
        )
    delta = _histogram("sizes", DELTA)
    for t in times:
        c = rng.integers(0, 4, len(BOUNDS) + 1)
        delta.histogram.data_points.add(
            time_unix_nano=t,
            start_time_unix_nano=t - 15 * S,
            count=int(c.sum()),
            bucket_counts=c.tolist(),
            explicit_bounds=BOUNDS,
        )
    exponential = metrics_pb2.Metric(name="payload", unit="By")
    exponential.exponential_histogram.aggregation_temporality = CUMULATIVE
    pos = np.zeros(8, dtype=np.int64)
    for k, t in enumerate(times):
        pos = pos + rng.integers(0, 3, 8)
        scale, offset, buckets = 3, 16, pos
        if k >= 250:  # the SDK downscaled: pairs of buckets merged
            scale, offset, buckets = 2, 8, pos[0::2] + pos[1::2]
        exponential.exponential_histogram.data_points.add(
            time_unix_nano=t,
            start_time_unix_nano=T0,
            count=int(pos.sum()) + k,
            scale=scale,
            zero_count=k,
            positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(
                offset=offset, bucket_counts=buckets.tolist()
            ),
        )
    _send(otlpd, [_gauge("temp", gauge)])
    _send(otlpd, [_sum("requests", counter, CUMULATIVE, T0)])
    _send(otlpd, [_sum("jobs", deltas, DELTA, T0)])
    _send(otlpd, [cumulative, delta, exponential])


def receiver(url: str) -> RunningOtlpd:
    """A real otlpd whose own jobs are off (the tests run them), accepting points six
    hours back (T0 is three to four hours back when the module is imported, and the suite
    may reach a test an hour later); its loop-lag refusal is relaxed: this machine is
    shared and the points come in large requests."""
    return start_otlpd_thread(url, scheduler="false", accept_past="6h", max_loop_lag="10s")


def rollup_job(url: str) -> MetricRollupJob:
    return MetricRollupJob(url, PartitionManager(url), delay=0, chunks_per_round=1000)


async def run(url: str, job: MetricRollupJob) -> None:
    assert await Scheduler(url, [job]).run_once(job)


@pytest.fixture(scope="module")
def url(shared_database: str) -> Iterator[str]:
    """The module's database: every kind sent through a real otlpd (whose own jobs are
    off), then rolled up."""
    server = receiver(shared_database)
    try:
        send_everything(server)
    finally:
        server.stop()
    job = rollup_job(shared_database)
    asyncio.run(run(shared_database, job))
    assert not job.last.more and job.last.minutes and job.last.hours
    yield shared_database


def fetch(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(statement, params).fetchall()


def series_of(url: str, name: str) -> list[int]:
    return [
        int(s)
        for (s,) in fetch(
            url, "SELECT series_id FROM metric_series WHERE metric_name = %s ORDER BY 1", name
        )
    ]


def rows_of(url: str, table: str, series: int) -> dict[tuple[int, int], dict[str, Any]]:
    """``{(interval start ns, part): columns}`` of one series' rollup rows."""
    with psycopg.connect(url) as conn:
        cursor = conn.execute(
            f"SELECT * FROM {table} WHERE series_id = %s ORDER BY time, part",
            (series,),
        )
        names = [c.name for c in cursor.description or []]
        found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in found:  # explicit bucket counts are stored packed: 8 bytes each, big-endian
        for name in ("bucket_increments", "first_bucket_counts", "last_bucket_counts"):
            if row[name] is not None:
                row[name] = np.frombuffer(row[name], dtype=">i8").tolist()
    return {(int(r["time"].timestamp()) * S, r["part"]): r for r in found}


def raw_points(url: str, series: int) -> list[dict[str, Any]]:
    """The series' stored points, in time order, a retried duplicate kept once (the
    lowest value), as every reader of the points keeps it."""
    with psycopg.connect(url) as conn:
        cursor = conn.execute(
            "SELECT DISTINCT ON (time_unix_nano) time_unix_nano AS t, start_time_unix_nano AS "
            "start, coalesce(value, count::float8) AS v, bucket_counts, explicit_bounds, scale, "
            "zero_count, positive_offset, positive_bucket_counts FROM metric_points "
            "WHERE series_id = %s ORDER BY time_unix_nano, v",
            (series,),
        )
        names = [c.name for c in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def expected_numbers(points: list[dict[str, Any]], width: int) -> dict[int, dict[str, Any]]:
    """Per interval: the samples' moments and the counter increase between consecutive
    samples inside it (a drop is a reset: the sample after it is the increase)."""
    out: dict[int, dict[str, Any]] = {}
    for i, p in enumerate(points):
        start = p["t"] // width * width
        values = out.setdefault(start, {"v": [], "t": [], "inc": 0.0})
        if values["v"]:
            before = points[i - 1]["v"]
            values["inc"] += p["v"] - before if p["v"] >= before else p["v"]
        values["v"].append(p["v"])
        values["t"].append(p["t"])
    return out


@pytest.mark.parametrize(
    ("table", "width"), [("metric_rollups_1m", MINUTE), ("metric_rollups_1h", HOUR)]
)
@pytest.mark.parametrize("name", ["temp", "requests", "jobs", "latency", "sizes", "payload"])
def test_number_columns_equal_numpy_over_the_raw_points(
    url: str, table: str, width: int, name: str
) -> None:
    for series in series_of(url, name):
        points = raw_points(url, series)
        expected = expected_numbers(points, width)
        found = {
            start: row for (start, part), row in rows_of(url, table, series).items() if part == 0
        }
        assert sorted(found) == sorted(expected)
        for start, want in expected.items():
            row, values = found[start], np.array(want["v"])
            assert row["samples"] == len(values)
            assert row["sum"] == pytest.approx(values.sum(), rel=1e-12)
            assert (row["min"], row["max"]) == (values.min(), values.max())
            assert (row["first_time_unix_nano"], row["first_value"]) == (want["t"][0], values[0])
            assert (row["last_time_unix_nano"], row["last_value"]) == (want["t"][-1], values[-1])
            assert row["increase"] == pytest.approx(want["inc"], rel=1e-12)


def expected_buckets(points: list[dict[str, Any]], width: int, *, delta: bool) -> dict:
    """Per interval and bucket layout: what the points added to each bucket inside the
    interval (a cumulative point adds its difference to the previous point of its layout,
    or its own counts after a reset: a bucket down or a new start time), and the counts
    of its first and last point."""
    out: dict = {}
    previous: dict[tuple[float, ...], dict[str, Any]] = {}
    for p in points:
        layout = tuple(p["explicit_bounds"])
        counts = np.array(p["bucket_counts"])
        key = (p["t"] // width * width, layout)
        row = out.get(key)
        if row is None:
            row = out[key] = {
                "inc": np.zeros_like(counts),
                "first": counts,
                "first_start": p["start"],
            }
            if delta:
                row["inc"] = counts.copy()
        elif delta:
            row["inc"] = row["inc"] + counts
        else:
            before = previous[layout]
            reset = (counts < before["counts"]).any() or p["start"] != before["start"]
            row["inc"] = row["inc"] + (counts if reset else counts - before["counts"])
        row["last"], row["last_start"] = counts, p["start"]
        previous[layout] = {"counts": counts, "start": p["start"]}
    return out


@pytest.mark.parametrize(
    ("table", "width"), [("metric_rollups_1m", MINUTE), ("metric_rollups_1h", HOUR)]
)
@pytest.mark.parametrize(("name", "delta"), [("latency", False), ("sizes", True)])
def test_histogram_columns_equal_numpy_over_the_raw_points(
    url: str, table: str, width: int, name: str, delta: bool
) -> None:
    (series,) = series_of(url, name)
    expected = expected_buckets(raw_points(url, series), width, delta=delta)
    found: dict = {}
    for (start, part), row in rows_of(url, table, series).items():
        layout = tuple(row["explicit_bounds"])
        found[start, layout] = (part, row)
    assert sorted(found) == sorted(expected)
    parts = sorted(part for part, _ in found.values())
    # latency changed its bounds half-way through a minute (and an hour): there, the later
    # layout is part 1.
    assert parts.count(1) == (0 if delta else 1)
    for key, want in expected.items():
        part, row = found[key]
        if part:
            assert row["samples"] == 0 and row["sum"] is None
        if delta:
            assert row["last_bucket_counts"] is None and row["first_bucket_counts"] is None
            assert row["bucket_increments"] == want["inc"].tolist()
            continue
        last = np.array(row["last_bucket_counts"])
        first = last if row["first_bucket_counts"] is None else np.array(row["first_bucket_counts"])
        increments = (
            last - first if row["bucket_increments"] is None else np.array(row["bucket_increments"])
        )
        assert last.tolist() == want["last"].tolist()
        assert first.tolist() == want["first"].tolist()
        assert increments.tolist() == want["inc"].tolist(), key
        assert (row["first_start_time_unix_nano"], row["last_start_time_unix_nano"]) == (
            want["first_start"],
            want["last_start"],
        )
    # The NULLs stand in for what they equal: a one-point minute stores its last counts
    # only, an hour without a reset inside no increments.
    stored = [row for _, row in found.values()]
    if not delta:
        assert any(r["bucket_increments"] is None for r in stored)


def dense_at(point: dict[str, Any], scale: int) -> dict[int, int]:
    """An exponential point's positive counts by bucket index at a lower ``scale``."""
    out: dict[int, int] = {}
    for i, c in enumerate(point["positive_bucket_counts"]):
        index = (point["positive_offset"] + i) >> (point["scale"] - scale)
        out[index] = out.get(index, 0) + c
    return {k: v for k, v in out.items() if v}


def test_exponential_hours_hold_the_points_at_their_lowest_scale(url: str) -> None:
    (series,) = series_of(url, "payload")
    points = raw_points(url, series)
    for (start, _), row in rows_of(url, "metric_rollups_1h", series).items():
        mine = [p for p in points if start <= p["t"] < start + HOUR]
        scale = min(p["scale"] for p in mine)
        assert row["scale"] == scale
        offset = row["positive_offset"]
        last = {offset + i: c for i, c in enumerate(row["last_positive_counts"]) if c}
        assert row["last_zero_count"] == mine[-1]["zero_count"]
        assert last == dense_at(mine[-1], scale)
        if row["first_positive_counts"] is not None:
            first = {offset + i: c for i, c in enumerate(row["first_positive_counts"]) if c}
            assert first == dense_at(mine[0], scale)
        # No reset: what the points added inside the hour is last minus first, per bucket.
        expected = {
            k: v - dense_at(mine[0], scale).get(k, 0) for k, v in dense_at(mine[-1], scale).items()
        }
        increments = row["positive_increments"]
        if increments is None:  # stored NULL: it equals last minus first
            assert row["zero_increment"] is None
        else:
            assert {offset + i: c for i, c in enumerate(increments) if c} == {
                k: v for k, v in expected.items() if v
            }


async def test_late_points_re_roll_their_minute_and_hour(url: str) -> None:
    (series,) = [s for s in series_of(url, "temp")][:1]
    minute = T0 + 37 * MINUTE
    before_minute = rows_of(url, "metric_rollups_1m", series)[minute, 0]
    before_hour = rows_of(url, "metric_rollups_1h", series)[T0, 0]
    host = "a" if series == series_of(url, "temp")[0] else "b"
    (labels,) = fetch(
        url, "SELECT attributes ->> 'host' FROM metric_series WHERE series_id = %s", series
    )
    server = receiver(url)
    try:
        _send(server, [_gauge("temp", [(minute + 7 * S, 1000.0, {"host": labels[0]})])])
    finally:
        server.stop()
    del host
    (marked,) = fetch(url, "SELECT count(*) FROM metric_rollup_dirty")
    assert marked == (1,)
    job = rollup_job(url)
    await run(url, job)
    assert (job.last.minutes, job.last.hours) == (1, 1)
    after_minute = rows_of(url, "metric_rollups_1m", series)[minute, 0]
    after_hour = rows_of(url, "metric_rollups_1h", series)[T0, 0]
    assert after_minute["samples"] == before_minute["samples"] + 1
    assert after_minute["max"] == after_hour["max"] == 1000.0
    assert after_minute["sum"] == pytest.approx(before_minute["sum"] + 1000.0)
    assert after_hour["sum"] == pytest.approx(before_hour["sum"] + 1000.0)
    assert after_hour["samples"] == before_hour["samples"] + 1
    other = rows_of(url, "metric_rollups_1m", series)[minute + MINUTE, 0]
    assert other["samples"] == 4  # its neighbours are as they were
    async with await psycopg.AsyncConnection.connect(url) as conn:
        minutes, hours = await complete_until(conn, "default")
    assert minutes > time.time_ns() - 60 * S and hours == time.time_ns() // HOUR * HOUR


async def test_minutes_and_hours_read_in_groups_of_series_give_the_same_rows(url: str) -> None:
    """A busy minute is read a group of series at a time (``group_rows``), to bound the
    job's memory: every minute and hour recomputed that way is what it was."""
    everything = "SELECT * FROM {} ORDER BY project_id, series_id, time, part"
    before = [fetch(url, everything.format(t)) for t in ("metric_rollups_1m", "metric_rollups_1h")]
    fetch(
        url,
        "INSERT INTO metric_rollup_dirty (project_id, minute) "
        "SELECT DISTINCT NULL::text, date_trunc('minute', time) FROM metric_points RETURNING 1",
    )
    job = MetricRollupJob(url, PartitionManager(url), delay=0, chunks_per_round=1000, group_rows=5)
    await run(url, job)
    assert job.last.minutes >= 120 and job.last.hours >= 2
    after = [fetch(url, everything.format(t)) for t in ("metric_rollups_1m", "metric_rollups_1h")]
    assert after == before


async def test_the_first_round_backfills_points_stored_before_the_rollups(
    database_url: str,
) -> None:
    server = receiver(database_url)
    try:
        _send(server, [_gauge("cpu", [(T0 + 5 * S, 1.0, {}), (T0 + 65 * S, 2.0, {})])])
    finally:
        server.stop()
    fetch(database_url, "DELETE FROM metric_rollup_dirty RETURNING 1")  # as if written before 0009
    job = rollup_job(database_url)
    await run(database_url, job)
    found = fetch(database_url, "SELECT time, samples, sum FROM metric_rollups_1m ORDER BY time")
    assert [(int(t.timestamp()) * S, n, v) for t, n, v in found] == [
        (T0, 1, 1.0),
        (T0 + MINUTE, 1, 2.0),
    ]
    assert fetch(database_url, "SELECT samples, sum FROM metric_rollups_1h") == [(2, 3.0)]
    await run(database_url, job)  # once only
    assert fetch(database_url, "SELECT count(*) FROM metric_rollups_1m") == [(2,)]


async def test_minutes_wait_for_the_delay(database_url: str) -> None:
    now = time.time_ns()
    server = receiver(database_url)
    try:
        _send(server, [_gauge("cpu", [(T0 + 5 * S, 1.0, {}), (now, 2.0, {})])])
    finally:
        server.stop()
    await run(
        database_url, MetricRollupJob(database_url, PartitionManager(database_url), delay=600)
    )
    found = fetch(database_url, "SELECT time FROM metric_rollups_1m")
    assert [int(t.timestamp()) * S for (t,) in found] == [T0]  # now's minute waits
    assert fetch(database_url, "SELECT count(*) FROM metric_rollup_dirty") == [(1,)]


@pytest.fixture
def store(tmp_path: Path) -> Callable[[], Any]:
    return lambda: open_store((tmp_path / "cold").as_uri())


async def test_tiering_of_points_waits_for_their_rollups(
    database_url: str, store: Callable[[], Any]
) -> None:
    """Points past their retention stay hot until their minutes are rolled up; then they
    go, and a point that arrives for one of those minutes later leaves its rollup as it
    was (the minute's other points are cold)."""
    server = receiver(database_url)
    try:
        _send(server, [_gauge("cpu", [(T0 + k * 15 * S, float(k), {}) for k in range(8)])])
    finally:
        server.stop()
    tier = TierJob(database_url, store, {"metric_points": 3600.0}, final_until=final_until)

    def partitions() -> list[str]:
        return [
            str(name)
            for (name,) in fetch(
                database_url,
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'metric_points'::regclass AND c.relname = %s",
                f"metric_points_p{datetime_from_ns(T0):%Y%m%dt%H%M}",
            )
        ]

    assert await Scheduler(database_url, [tier]).run_once(tier)
    assert partitions() and tier.last.partitions == 0  # no rollups yet: it waits
    job = rollup_job(database_url)
    await run(database_url, job)
    assert await Scheduler(database_url, [tier]).run_once(tier)
    assert not partitions() and tier.last.rows == 8  # rolled up: tiered
    before = fetch(database_url, "SELECT time, samples, sum FROM metric_rollups_1m ORDER BY time")
    assert [n for _, n, _ in before] == [4, 4]
    server = receiver(database_url)
    try:
        _send(server, [_gauge("cpu", [(T0 + 20 * S, 99.0, {})])])  # its partition made again
    finally:
        server.stop()
    assert partitions()
    await run(database_url, job)
    assert job.last.sealed == 1 and job.last.minutes == 0
    assert (
        fetch(database_url, "SELECT time, samples, sum FROM metric_rollups_1m ORDER BY time")
        == before
    )


def test_otlpd_serve_keeps_the_rollups_and_counts_them(database_url: str) -> None:
    """The job as otlpd serve runs it: on the scheduler, its rounds in the metrics."""
    server = start_otlpd_thread(
        database_url, accept_past="6h", rollup_delay="0", rollup_interval="0.2", max_loop_lag="10s"
    )
    try:
        _send(server, [_gauge("cpu", [(T0 + k * 15 * S, float(k), {}) for k in range(8)])])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = fetch(database_url, "SELECT count(*) FROM metric_rollups_1h")[0][0]
            if done and server.metric("otlpd_metric_rollup_hours_total"):
                break
            time.sleep(0.2)
        assert fetch(database_url, "SELECT samples, sum FROM metric_rollups_1h") == [(8, 28.0)]
        assert server.metric("otlpd_metric_rollup_minutes_total") >= 2
        assert server.metric("otlpd_metric_rollup_round_seconds_count") >= 1
        assert server.metric("otlpd_job_runs_total", {"job": "metric_rollups", "outcome": "ok"})
    finally:
        server.stop()


def test_otlpd_tier_once_rolls_points_up_before_it_tiers_them(
    database_url: str, tmp_path: Path
) -> None:
    """One full pass: the rollups of points past their hot retention, then the points go."""
    from tests.test_main import base_env, run_otlpd

    server = receiver(database_url)
    try:
        _send(server, [_gauge("cpu", [(T0 + k * 15 * S, float(k), {}) for k in range(8)])])
    finally:
        server.stop()
    cold = tmp_path / "cold"
    env = base_env(
        OTLPD_DATABASE_URL=database_url,
        OTLPD_COLD_URL=cold.as_uri(),
        OTLPD_ACCEPT_PAST="6h",
        OTLPD_ROLLUP_DELAY="0",
    )
    done = run_otlpd(["tier", "--once"], env)
    assert done.returncode == 0, done.stderr
    assert fetch(database_url, "SELECT samples, sum FROM metric_rollups_1h") == [(8, 28.0)]
    objects = list(open_store(cold.as_uri()).list("metric_points/"))
    assert len(objects) == 1
    assert fetch(
        database_url,
        "SELECT count(*) FROM metric_points WHERE time < %s",
        datetime_from_ns(T0 + HOUR),
    ) == [(0,)]


async def test_rollups_past_their_retention_are_tiered_like_points(
    database_url: str, store: Callable[[], Any]
) -> None:
    """A day of 1-minute rows past OTLPD_ROLLUP_RETENTION_1M goes to Parquet under the
    documented key, read back with plain pyarrow, once the hours made from it are final."""
    import io

    import pyarrow.parquet as pq

    day = (time.time_ns() - 50 * HOUR) // (24 * HOUR) * (24 * HOUR)
    at = day + 13 * HOUR
    server = start_otlpd_thread(
        database_url, scheduler="false", accept_past="3d", max_loop_lag="10s"
    )
    try:
        _send(server, [_gauge("cpu", [(at + k * 20 * S, float(k), {}) for k in range(9)])])
    finally:
        server.stop()
    tier = TierJob(
        database_url,
        store,
        {"metric_rollups_1m": 3600.0, "metric_rollups_1h": 400 * 86400.0},
        final_until=final_until,
    )
    await run(database_url, rollup_job(database_url))
    assert await Scheduler(database_url, [tier]).run_once(tier)
    assert tier.last.partitions == 1 and tier.last.rows == 3  # three minutes of points
    name = f"metric_rollups_1m_p{datetime_from_ns(day):%Y%m%d}t0000"
    date = f"{datetime_from_ns(day):%Y-%m-%d}"
    key = f"metric_rollups_1m/project=default/date={date}/hour=00/{name}-0.parquet"
    table = pq.read_table(io.BytesIO(tier.store().get(key)))
    assert sorted(table.column("samples").to_pylist()) == [3, 3, 3]
    assert table.column("metric_name").to_pylist() == ["cpu"] * 3
    assert not fetch(database_url, "SELECT to_regclass(%s)", name)[0][0]
    # The hour they made stays hot (400 days).
    assert fetch(database_url, "SELECT samples FROM metric_rollups_1h") == [(9,)]


@pytest.mark.parametrize("column", ["sum", "first_time_unix_nano"])
def test_a_null_in_a_packed_column_fails_the_read_rather_than_dropping_the_row(
    url: str, column: str
) -> None:
    """Rollup reads pack each row's columns into one bytea and ``string_agg`` them; a NULL
    among them would make the row's bytea NULL, which string_agg skips. The decoder counts
    the rows, so such a row fails the read instead of vanishing from the answer. (The
    bucket read's packed columns are NOT NULL or coalesced.)"""
    series = series_of(url, "requests")[0]
    scope = series_scope("default", [series], T0, T0 + 2 * HOUR)
    statement, params = rollup_statement("numbers", "metric_rollups_1m", scope)
    with psycopg.connect(url) as conn:
        with conn.cursor(binary=True) as cursor:
            whole = decode_rollup_numbers(cursor.execute(statement, params).fetchall())
            assert len(whole["default"]) == 120  # the read works on the stored rows
            cursor.execute(
                f"UPDATE metric_rollups_1m SET {column} = NULL WHERE series_id = %s "
                "AND part = 0 AND time = (SELECT min(time) FROM metric_rollups_1m "
                "WHERE series_id = %s AND samples > 0)",
                (series, series),
            )
            with pytest.raises(ValueError, match="packed bytes for 120 rows"):
                decode_rollup_numbers(cursor.execute(statement, params).fetchall())
        conn.rollback()
