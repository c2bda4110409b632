"""``python -m bench.cold``: a day of telemetry in the cold tier, on a real S3 server, and
every RPC that reads it timed against issue 8's targets.

1. The query benchmark's day (``bench.query.generate``: 10M spans, 10M log records at
   scale 1) is loaded into its own database, ending three days ago, past the 48 h hot
   retention of spans and logs.
2. One tiering pass (``storage.postgres.tiering``, unthrottled) moves it to Parquet in a
   local directory (``--objects``), which is kept with the database: a later run at the
   same scale reuses both and skips steps 1 and 2 (``--fresh`` redoes them).
3. moto's S3 server starts in a process of its own, and the objects are uploaded to it,
   under the keys the manifest names (``--store file`` serves the directory instead).
4. otlpd serves the database with its cold tier on that server; each case runs
   ``--clients`` parallel clients for ``--seconds`` (``bench.query.load``), and the table
   prints p50/p95/p99 against the targets, with otlpd's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import psutil
import psycopg

from bench.query import generate, load, report
from bench.query.load import Case, timestamp
from bench.query.server import QueryServer
from bench.targets import ServerSampler, TargetError, free_port, workdir
from query.proto import pb

DATABASE: Final = "otlpd_bench_cold"
BUCKET: Final = "otlpd-bench-cold"
DAY_NS: Final = 24 * 3600 * 10**9
# Where the day of data ends: three days back, past the 48 h hot retention, inside
# nothing any retention would delete.
ENDS_AGO_NS: Final = 3 * DAY_NS
RETENTION: Final = {"spans": 48 * 3600.0, "logs": 48 * 3600.0, "metric_points": 2 * 3600.0}
_TIERED: Final = """
CREATE TABLE IF NOT EXISTS bench_cold_tiered (
    objects integer, rows bigint, bytes bigint, seconds double precision, directory text
)
"""


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.cold", description=__doc__)
    p.add_argument(
        "--pg",
        default=os.environ.get("OTLPD_TEST_PG", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server that holds the benchmark database",
    )
    p.add_argument("--database", default=DATABASE, help="benchmark database name")
    p.add_argument("--objects", default="var/bench-cold", help="directory of the tiered objects")
    p.add_argument(
        "--scale", type=float, default=None, help="1.0: 10M spans + 10M logs (0.01 with --quick)"
    )
    p.add_argument("--store", choices=("s3", "file"), default="s3", help="where otlpd reads")
    p.add_argument("--fresh", action="store_true", help="load and tier again")
    p.add_argument("--clients", type=int, default=4, help="parallel clients per case")
    p.add_argument("--seconds", type=float, default=None, help="per case (10; 2 with --quick)")
    p.add_argument("--cases", default="", help="comma-separated case names (substring match)")
    p.add_argument("--quick", action="store_true", help="--scale 0.01 --seconds 2 unless set")
    args = p.parse_args(argv)
    if args.scale is None:
        args.scale = 0.01 if args.quick else 1.0
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 10.0
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tiered(url: str) -> tuple[Any, ...] | None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_TIERED)
        return conn.execute(
            "SELECT objects, rows, bytes, seconds, directory FROM bench_cold_tiered"
        ).fetchone()


def _tier(url: str, directory: Path) -> tuple[Any, ...]:
    """One unthrottled tiering pass into ``directory``; what it moved, and how fast."""
    from otlpd.scheduler import Scheduler
    from storage.objectstore import open_store
    from storage.postgres.tiering import TierJob

    store_url = directory.resolve().as_uri()
    job = TierJob(url, lambda: open_store(store_url), RETENTION, max_rows_per_second=0)
    started = time.perf_counter()
    if not asyncio.run(Scheduler(url, [job]).run_once(job)):
        raise RuntimeError("another tiering job holds the lock")
    took = time.perf_counter() - started
    moved = job.last
    row = (moved.objects, moved.rows, moved.bytes, took, str(directory.resolve()))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_TIERED)
        conn.execute("DELETE FROM bench_cold_tiered")
        conn.execute("INSERT INTO bench_cold_tiered VALUES (%s, %s, %s, %s, %s)", row)
    return row


class MotoServer:
    """moto's S3 server in a process of its own (the benchmark's clients must not share a
    GIL with it), on a free loopback port."""

    def __init__(self) -> None:
        self.endpoint = f"127.0.0.1:{free_port()}"
        host, port = self.endpoint.split(":")
        code = (
            "import time\n"
            "from moto.server import ThreadedMotoServer\n"
            f"ThreadedMotoServer(ip_address={host!r}, port={port}, verbose=False).start()\n"
            "while True: time.sleep(3600)\n"
        )
        self._process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def store(self) -> Any:
        from storage.objectstore import open_store

        return open_store(
            f"s3://{BUCKET}/otlpd",
            endpoint=self.endpoint,
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            secure=False,
        )

    def environment(self) -> dict[str, str]:
        return {
            "OTLPD_COLD_URL": f"s3://{BUCKET}/otlpd",
            "OTLPD_S3_ENDPOINT": self.endpoint,
            "OTLPD_S3_ACCESS_KEY": "testing",
            "OTLPD_S3_SECRET_KEY": "testing",
            "OTLPD_S3_REGION": "us-east-1",
            "OTLPD_S3_SECURE": "false",
        }

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)


def _upload(directory: Path, moto: MotoServer) -> tuple[int, int, float]:
    """Every object of ``directory`` into the bucket under its key: (objects, bytes, s)."""
    from storage.api import StorageUnavailable
    from storage.objectstore import open_store

    deadline = time.monotonic() + 60
    while True:
        try:
            moto.store()
            break
        except StorageUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    started = time.perf_counter()
    source, target = open_store(directory.resolve().as_uri()), moto.store()
    objects = size = 0
    for info in source.list(""):
        target.put_file(info.key, directory / info.key)
        objects, size = objects + 1, size + info.size
    return objects, size, time.perf_counter() - started


def cases(ds: generate.Dataset) -> list[Case]:
    """The cold cases; the first two have issue 8's targets."""
    start, end = ds.window_start_ns, ds.window_end_ns
    day = (timestamp(start), timestamp(end))
    hour = (timestamp(end - 3600 * 10**9), timestamp(end))
    word = load.words(ds)  # the query benchmark's mix: common, any, rare

    def records(answer: Any) -> int:
        return len(answer.records)

    return [
        Case(
            "GetTrace cold",
            "GetTrace",
            lambda rng: pb.GetTraceRequest(trace_id=generate.trace_id(rng.randrange(ds.traces))),
            "a random trace of 10 spans, anywhere in the cold day, no time range",
            300,
            size=lambda a: len(a.spans),
        ),
        Case(
            "SearchLogs word 1d cold",
            "SearchLogs",
            lambda rng: pb.SearchLogsRequest(
                start_time=day[0], end_time=day[1], filter=pb.LogFilter(q=word(rng))
            ),
            "one word (common, any, or rare) over the cold day",
            2000,
            size=records,
        ),
        Case(
            "SearchLogs trace_id cold",
            "SearchLogs",
            lambda rng: pb.SearchLogsRequest(
                filter=pb.LogFilter(trace_id=generate.trace_id(rng.randrange(ds.traces)))
            ),
            "the logs of a random trace, no time range",
            size=records,
        ),
        Case(
            "SearchTraces service+min_duration 1h cold",
            "SearchTraces",
            lambda rng: pb.SearchTracesRequest(
                start_time=hour[0],
                end_time=hour[1],
                service=rng.choice(generate.SERVICES),
                min_duration=load.duration(rng.choice((50, 100, 200)) * 10**6),
            ),
            "a random service, spans of at least 50/100/200 ms, the day's last hour",
            size=lambda a: len(a.traces),
        ),
        Case(
            "GetSessionTimeline 1000 cold",
            "GetSessionTimeline",
            lambda rng: pb.GetSessionTimelineRequest(session_id=generate.SESSION_1000),
            "the session of 1,000 records",
            size=lambda a: len(a.items),
        ),
        Case(
            "GetLogVolume 1d cold",
            "GetLogVolume",
            lambda rng: pb.GetLogVolumeRequest(start_time=day[0], end_time=day[1]),
            "the day's records counted per bucket and severity, no filter",
            size=lambda a: len(a.buckets),
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Loads, tiers, uploads and times; 1 when a target FAILs or otlpd does not start."""
    args = _parse(argv)
    busy = psutil.cpu_percent(interval=1.0)
    if busy > 20:
        _log(f"warning: the machine is {busy:.0f}% busy before the benchmark starts")
    directory = Path(args.objects)
    ends = (time.time_ns() - ENDS_AGO_NS) // 10**9 * 10**9
    url = generate.server_url(args.pg, args.database)
    tiered = None if args.fresh else _tiered_if_exists(url)
    if tiered is None or not directory.is_dir() or tiered[4] != str(directory.resolve()):
        url, ds = generate.ensure_dataset(
            args.pg,
            scale=args.scale,
            fresh=True,
            database=args.database,
            ends_ns=ends,
            text_index=False,
        )
        _log(f"tiering {ds.spans:,} spans and {ds.logs:,} logs into {directory} ...")
        tiered = _tier(url, directory)
    else:
        stored = generate.stored_dataset(url)
        assert stored is not None
        ds = stored
        _log(f"reusing {args.database} and {directory}")
    objects, rows, size, took, _ = tiered
    print(
        f"cold day: {ds.spans:,} spans, {ds.logs:,} logs, {ds.traces:,} traces; tiered to "
        f"{objects} objects, {rows:,} rows, {size / 2**20:.0f} MiB in {took:.0f}s "
        f"({rows / took:,.0f} rows/s, {size / rows:.1f} B/row)"
    )
    wanted = [w.strip().lower() for w in args.cases.split(",") if w.strip()]
    selected = [c for c in cases(ds) if not wanted or any(w in c.name.lower() for w in wanted)]
    moto = None
    environment = {"OTLPD_SCHEDULER": "off"}
    if args.store == "s3":
        moto = MotoServer()
        uploaded, sent, seconds = _upload(directory, moto)
        _log(f"uploaded {uploaded} objects, {sent / 2**20:.0f} MiB to moto in {seconds:.0f}s")
        environment |= moto.environment()
    else:
        environment["OTLPD_COLD_URL"] = directory.resolve().as_uri()
    server = QueryServer(workdir(), url, 1, environment)
    try:
        server.start()
        with ServerSampler(server.pid, server.grpc_port) as sampler:
            sampler.reset_peak()
            results = load.run_all(
                server.query_addr,
                selected,
                args.clients,
                catalogue=functools.partial(cases, ds),
                seconds=args.seconds,
                on_result=lambda r: _log(f"  {r.case.name}: {r.calls} calls"),
            )
            peak = sampler.peak
        server.check_alive()
    except TargetError as exc:
        _log(f"otlpd failed: {exc}")
        return 1
    finally:
        server.stop()
        if moto is not None:
            moto.stop()
    return report.print_run(
        results,
        peak_rss=peak,
        busy=busy,
        setup=f"{args.clients} clients x {args.seconds:g}s per case; cold tier: {args.store}; "
        f"otlpd's log: {server.log_path}",
    )


def _tiered_if_exists(url: str) -> tuple[Any, ...] | None:
    try:
        return _tiered(url)
    except psycopg.OperationalError:
        return None  # no database yet


if __name__ == "__main__":
    sys.exit(main())
