"""The text index: built whole on closed log partitions only, rebuilt when a build failed,
in slices on open ones (dropped once the whole one exists), used by the search
statement, and invisible in search results."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
import psycopg
from google.protobuf import timestamp_pb2
from psycopg import sql

from query.logs import log_filter
from query.proto import pb, pb_grpc
from storage.postgres import log_reader
from storage.postgres.partitions import PartitionManager, datetime_from_ns
from storage.postgres.text_index import (
    TextIndexJob,
    index_name,
    index_partition,
    slice_name,
    slice_start,
)
from tests.conftest import RunningOtlpd
from tests.query.test_logs import export

HOUR_NS = 3600 * 10**9


def _indexes(database_url: str) -> dict[str, tuple[bool, str]]:
    """Every text index: name -> (valid, definition)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT c.relname, x.indisvalid, pg_get_indexdef(x.indexrelid) FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid WHERE c.relname LIKE %s",
            ("%\\_body\\_trgm",),
        ).fetchall()
    return {name: (valid, definition) for name, valid, definition in rows}


def _partition(database_url: str, time_ns: int) -> str:
    """The name of the log partition holding ``time_ns``."""
    partitions = PartitionManager(database_url)
    return partitions.partition_name("logs", partitions.bucket_start(time_ns))


async def _run_job(database_url: str, job: TextIndexJob | None = None) -> list[str]:
    job = job or TextIndexJob()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await job.index_closed(conn, time.time_ns())


def _search(server: RunningOtlpd, q: str) -> Any:
    """SearchLogs for ``q`` over the last four hours: the records, newest first."""
    start = timestamp_pb2.Timestamp(seconds=int(time.time()) - 4 * 3600)
    request = pb.SearchLogsRequest(start_time=start, filter=pb.LogFilter(q=q), limit=1000)
    with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as channel:
        stub: Any = pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        return stub.SearchLogs(request, timeout=10).records


def _search_ids(server: RunningOtlpd, q: str) -> list[str]:
    return [r.id for r in _search(server, q)]


async def test_closed_partitions_are_indexed_and_search_answers_the_same(
    start_otlpd: Callable[..., RunningOtlpd], database_url: str
) -> None:
    server = start_otlpd(text_index="false")
    now = time.time_ns()
    two_hours_ago = now - 2 * HOUR_NS
    bodies = ["disk full on /var", "disk fine", "Disks spinning", "network down"]
    export(server, [{"body": b, "time_ns": two_hours_ago + i} for i, b in enumerate(bodies)])
    export(server, [{"body": "disk full again"}])
    closed = _partition(database_url, two_hours_ago)
    current = _partition(database_url, now)
    queries = ["disk", "disk*", '"disk full"', "network", "full"]
    before = {q: _search_ids(server, q) for q in queries}
    assert len(before["disk*"]) == 4

    indexed = await _run_job(database_url)
    assert closed in indexed
    assert current not in indexed
    found = _indexes(database_url)
    assert found[index_name(closed)][0] is True
    assert "gin_trgm_ops" in found[index_name(closed)][1]
    assert index_name(current) not in found
    assert {q: _search_ids(server, q) for q in queries} == before
    # The open partition gets no text index, but its BRIN summaries are brought up to
    # date: its full block ranges (128 pages) filled by inserts were unsummarized.
    export(server, [{"body": f"filler {i:05d} " + "x" * 200} for i in range(8000)])
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        job = TextIndexJob()
        assert await job.summarize_open(conn, time.time_ns()) >= 1
        assert await job.summarize_open(conn, time.time_ns()) == 0
    # Once built, never again (the partitions the server made meanwhile may be new).
    assert closed not in await _run_job(database_url)

    # The search's text conditions are on the indexed expression (the planner uses an
    # expression index only for the identical expression); scans are made costly so that
    # the tiny table does not tempt it.
    with psycopg.connect(database_url) as conn:
        conn.execute("SET enable_seqscan = off")
        for condition, value in (("ILIKE %s", "%disk%"), ("~* %s", r"\mdisk\M")):
            statement = f"EXPLAIN SELECT 1 FROM logs l WHERE {log_reader.BODY_TEXT} {condition}"
            plan = "\n".join(str(r[0]) for r in conn.execute(statement, (value,)).fetchall())
            assert index_name(closed) in plan, plan


async def test_an_invalid_index_left_by_a_failed_build_is_rebuilt(
    start_otlpd: Callable[..., RunningOtlpd], database_url: str
) -> None:
    server = start_otlpd(text_index="false")
    two_hours_ago = time.time_ns() - 2 * HOUR_NS
    export(server, [{"body": f"dup {i}", "time_ns": two_hours_ago + i} for i in range(3)])
    closed = _partition(database_url, two_hours_ago)
    # A concurrent build that fails (here: not unique) leaves an INVALID index behind
    # under the job's name, as a cancelled build would.
    build = sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} (project_id)").format(
        sql.Identifier(index_name(closed)), sql.Identifier(closed)
    )
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.UniqueViolation),
    ):
        conn.execute(build)
    assert _indexes(database_url)[index_name(closed)][0] is False
    assert closed in await _run_job(database_url)
    valid, definition = _indexes(database_url)[index_name(closed)]
    assert valid is True and "gin_trgm_ops" in definition
    assert len(_search_ids(server, "dup")) == 3


def _estimated_rows(database_url: str, partition: str, word: str) -> float:
    """The planner's estimate of the rows of ``partition`` whose body holds ``word``."""
    body = log_reader.BODY_TEXT.replace("{", "{{").replace("}", "}}")  # not a placeholder
    statement = sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} l WHERE " + body + " ~* %s").format(
        sql.Identifier(partition)
    )
    with psycopg.connect(database_url) as conn:
        plan = conn.execute(statement, (rf"\m{word}\M",)).fetchone()
    assert plan is not None
    return float(plan[0][0]["Plan"]["Plan Rows"])


async def test_an_indexed_partition_is_analyzed_so_the_planner_knows_common_words(
    start_otlpd: Callable[..., RunningOtlpd], database_url: str
) -> None:
    server = start_otlpd(text_index="false")
    two_hours_ago = time.time_ns() - 2 * HOUR_NS
    # Half the bodies hold "common"; "rare" is in one.
    bodies = [f"{'common' if i % 2 else 'other'} record {i}" for i in range(4000)] + ["rare"]
    for first in range(0, len(bodies), 1000):
        chunk = enumerate(bodies[first : first + 1000], start=first)
        export(server, [{"body": b, "time_ns": two_hours_ago + i} for i, b in chunk])
    closed = _partition(database_url, two_hours_ago)

    assert closed in await _run_job(database_url)
    # Without statistics on the indexed expression the planner guesses a handful of rows
    # for any word; analyzed, it sees that "common" is in about half.
    assert _estimated_rows(database_url, closed, "common") > 1000
    assert _estimated_rows(database_url, closed, "rare") < 100
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        assert await TextIndexJob().analyze_indexed(conn) == []  # once is enough


async def test_a_partition_indexed_before_it_was_analyzed_is_analyzed_by_the_next_round(
    start_otlpd: Callable[..., RunningOtlpd], database_url: str
) -> None:
    server = start_otlpd(text_index="false")
    two_hours_ago = time.time_ns() - 2 * HOUR_NS
    export(server, [{"body": f"word {i}", "time_ns": two_hours_ago + i} for i in range(50)])
    closed = _partition(database_url, two_hours_ago)
    # Built as the job builds it, without the ANALYZE after: as a server before the job
    # analyzed did, or one that stopped between the two steps.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        await index_partition(conn, closed, invalid=False)
    assert closed not in await _run_job(database_url)  # not built again, but analyzed
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stats WHERE tablename = %s", (index_name(closed),)
        ).fetchone()
    assert row == (1,)


def test_otlpd_runs_the_job_and_counts_what_it_indexed(
    start_otlpd: Callable[..., RunningOtlpd], database_url: str
) -> None:
    first = start_otlpd(text_index="false")
    two_hours_ago = time.time_ns() - 2 * HOUR_NS
    export(first, [{"body": "old", "time_ns": two_hours_ago}])
    first.stop()
    assert _indexes(database_url) == {}
    server = start_otlpd()  # OTLPD_TEXT_INDEX defaults to on; its first round is at start
    deadline = time.monotonic() + 30
    metric = "otlpd_text_indexed_partitions_total"
    while server.metric(metric) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.metric(metric) >= 1
    current = _partition(database_url, time.time_ns())
    found = _indexes(database_url)
    closed = _partition(database_url, two_hours_ago)
    assert found[index_name(closed)][0] is True
    assert index_name(current) not in found


async def test_a_closed_partition_still_taking_writes_waits_for_them_to_stop(
    start_otlpd: Callable[..., RunningOtlpd], database_url: str
) -> None:
    server = start_otlpd(text_index="false")
    two_hours_ago = time.time_ns() - 2 * HOUR_NS
    closed = _partition(database_url, two_hours_ago)
    stop = threading.Event()

    def backfill() -> None:
        while not stop.is_set():
            export(server, [{"body": "late", "time_ns": two_hours_ago + i} for i in range(200)])

    writer = threading.Thread(target=backfill)
    writer.start()
    try:
        await asyncio.sleep(1.5)
        indexed = await _run_job(database_url, TextIndexJob(busy_rows=100))
    finally:
        stop.set()
        writer.join()
    assert closed not in indexed
    assert index_name(closed) not in _indexes(database_url)
    # Once the writers' statistics have caught up with what they committed, it is quiet.
    deadline = time.monotonic() + 20
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            query = sql.SQL(
                "SELECT (SELECT count(*) FROM {}) = "
                "(SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = %s)"
            ).format(sql.Identifier(closed))
            row = conn.execute(query, (closed,)).fetchone()
            if row is not None and row[0]:
                break
            await asyncio.sleep(0.5)
    assert closed in await _run_job(database_url, TextIndexJob(busy_rows=100))


MINUTE_NS = 60 * 10**9


def _slice_indexes(database_url: str) -> dict[str, str]:
    """Every valid slice index: name -> its predicate."""
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        rows = conn.execute(
            "SELECT c.relname, pg_get_expr(x.indpred, x.indrelid) FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indexrelid WHERE c.relname LIKE %s AND x.indisvalid",
            ("%\\_body\\_trgm\\_s%",),
        ).fetchall()
    return {str(name): str(predicate) for name, predicate in rows}


def _bodies(server: RunningOtlpd, q: str) -> list[str]:
    return sorted(r.body.string_value for r in _search(server, q))


async def test_an_open_partition_is_indexed_in_slices_that_search_reads(
    start_otlpd: Callable[..., RunningOtlpd], database_url: str
) -> None:
    server = start_otlpd(text_index="false")
    partitions = PartitionManager(database_url)
    low = partitions.bucket_start(time.time_ns() - 2 * HOUR_NS)
    partition = partitions.partition_name("logs", low)
    # Records in the first four 10-minute slices of the partition.
    sent = {f"disk full {m}": low + m * MINUTE_NS for m in (1, 12, 25, 38)}
    sent |= {f"network {m}": low + m * MINUTE_NS + 1 for m in (2, 13, 26)}
    export(server, [{"body": body, "time_ns": t} for body, t in sent.items()])
    job = TextIndexJob(quiet_seconds=0)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        unsliced = TextIndexJob(quiet_seconds=0, slices=False)
        assert await unsliced.index_slices(conn, low + 31 * MINUTE_NS) == []
        # 31 minutes into the partition: three slices are over and settled (60 s), the
        # fourth is not; the partition is open at that time, so it has no whole index.
        built = await job.index_slices(conn, low + 31 * MINUTE_NS)
        assert await job.index_slices(conn, low + 31 * MINUTE_NS) == []  # built once
    starts = [low + 20 * MINUTE_NS, low + 10 * MINUTE_NS, low]
    assert built == [slice_name(partition, s) for s in starts]
    found = _slice_indexes(database_url)
    assert set(found) == set(built)
    first = datetime_from_ns(low)
    upto = first + timedelta(minutes=10)
    assert found[slice_name(partition, low)] == (
        f"((\"time\" >= '{first:%Y-%m-%d %H:%M:%S}+00'::timestamp with time zone) AND "
        f"(\"time\" < '{upto:%Y-%m-%d %H:%M:%S}+00'::timestamp with time zone))"
    )
    assert [slice_start(name) for name in built] == starts

    # A record written into an indexed slice afterwards is indexed as it is written.
    export(server, [{"body": "disk full late", "time_ns": low + 5 * MINUTE_NS}])
    disks = sorted([*[b for b in sent if b.startswith("disk")], "disk full late"])
    assert _bodies(server, "disk") == disks
    assert _bodies(server, '"network 13"') == ["network 13"]

    # The statement reads each slice by its index, and finds what the statement without
    # slices finds. 20,000 other bodies in the slices, and each body's test made dearer:
    # the planner then weighs reading them as it does an open hour of production size
    # (the query benchmark's held 290,000 bodies; it took the slices there unprompted).
    for batch in range(4):
        filler = [
            {"body": f"filler {batch} {i}", "time_ns": low + (batch * 5000 + i) * 10**8}
            for i in range(5000)
        ]
        export(server, filler)
    flt = log_filter("default", pb.LogFilter(q="disk"))
    slices = [s // 1000 for s in starts]
    start_us, end_us = low // 1000, (low + HOUR_NS) // 1000
    with psycopg.connect(database_url) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(partition)))
        conn.execute("SET cpu_operator_cost = 0.05")
        query, params = log_reader.search(
            flt, start_us=start_us, end_us=end_us, before=None, limit=100, slices=slices
        )
        plan = "\n".join(str(r[0]) for r in conn.execute("EXPLAIN " + query, params, prepare=False))
        assert all(name in plan for name in built), plan
        rows = conn.execute(query, params, prepare=False).fetchall()
        plain = conn.execute(
            *log_reader.search(flt, start_us=start_us, end_us=end_us, before=None, limit=100)
        ).fetchall()
        assert len(rows) == len(disks) and rows == plain

    # A slice gone (a gap) or a list read before it went: the rows are the same.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP INDEX {}").format(
                sql.Identifier(slice_name(partition, low + 10 * MINUTE_NS))
            )
        )
    assert _bodies(server, "disk") == disks

    # Once the partition has its whole index, its slices go.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        assert partition in await job.index_closed(conn, time.time_ns())
        # (It makes the slices of the partition open now, whose first may be over.)
        built = await job.index_slices(conn, time.time_ns())
        assert not [name for name in built if name.startswith(partition)]
    assert not [name for name in _slice_indexes(database_url) if name.startswith(partition)]
    assert _bodies(server, "disk") == disks
