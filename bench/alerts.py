"""``make bench-alerts``: 1,000 alerting rules over 10 million metric points, evaluated
within one 30 s interval on at most one core.

The data is made by PostgreSQL (``INSERT ... SELECT generate_series``, as
``bench.query.generate`` makes its own): ``--series`` gauge series (2,000) of
``--metrics`` metric names (50), one point every ``--every`` seconds over the last two
hours: 10M points. The database (``otlpd_bench_alerts``) is kept between runs and
reloaded when it is missing, of another shape, or older than an hour (``--fresh``
forces it).

The rules (``--rules``, 1,000; interval 30 s, window 5 min) are metric rules as users
write them: a metric, a matcher on ``instance`` (a tenth of the metric's series), one of
avg, max, min, last, sum, count, rate, p95 grouped by ``http.route`` or not, compared with
a threshold some cross. Every rule is made due, then the evaluator job
(``alerting.evaluator.AlertEvaluator``, as ``otlpd serve`` runs it, with its own read pool
and the scheduler's lock) runs rounds in this process until every rule has been
evaluated once. Printed: the wall time of that, rules per second, p50/p99 of the rules'
evaluation times (``alert_rule_schedule.last_eval_seconds``: query and transaction), this
process's CPU time (user + system) and peak RSS, and PostgreSQL's CPU time over the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import resource
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import psutil
import psycopg
from google.protobuf import duration_pb2
from psycopg import sql
from psycopg.types.json import Jsonb

from alerting import rules
from alerting.evaluator import AlertEvaluator, EvaluatorSettings
from alerting.proto import pb
from otlpd.instruments import Instruments
from otlpd.scheduler import Scheduler
from query.proto import pb as query_pb
from storage.postgres import alert_config
from storage.postgres.migrate import migrate
from storage.postgres.partitions import PartitionManager, datetime_from_ns
from storage.postgres.reading import ReadPool

DATABASE: Final = "otlpd_bench_alerts"
PROJECT: Final = "bench"
HOUR_NS: Final = 3600 * 10**9
SPAN_NS: Final = 2 * HOUR_NS
AGGREGATIONS: Final = (
    query_pb.AGGREGATION_AVG,
    query_pb.AGGREGATION_MAX,
    query_pb.AGGREGATION_MIN,
    query_pb.AGGREGATION_LAST,
    query_pb.AGGREGATION_SUM,
    query_pb.AGGREGATION_COUNT,
    query_pb.AGGREGATION_RATE,
    query_pb.AGGREGATION_P95,
)

_SERIES: Final = """
INSERT INTO metric_series (project_id, series_id, metric_name, metric_type, unit, description,
    aggregation_temporality, is_monotonic, service_name, attributes, resource, scope_name,
    scope_version, metadata, first_seen)
SELECT %(project)s, s + 1, 'bench.metric.' || mod(s, %(metrics)s), 1, '1', '', NULL, NULL,
    'svc-' || mod(s / %(metrics)s, 20),
    jsonb_build_object('instance', 'i-' || mod(s / %(metrics)s, 10),
                       'http.route', '/route/' || mod(s / (%(metrics)s * 10), 4)),
    jsonb_build_object('service.name', 'svc-' || mod(s / %(metrics)s, 20)),
    'bench', '1', NULL, %(first)s
FROM generate_series(0, %(series)s - 1) AS s
"""

# A slow sine per series plus noise: some series cross every threshold now and then.
_POINTS: Final = """
INSERT INTO metric_points (project_id, time, time_unix_nano, series_id, service_name, flags,
    value)
SELECT %(project)s, 'epoch'::timestamptz + (t / 1000) * interval '1 microsecond', t, s + 1,
    'svc-' || mod(s / %(metrics)s, 20), 0,
    50 + 40 * sin(t / 6e11 + s) + 10 * random()
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1, %(step)s::bigint) AS t,
     generate_series(0, %(series)s - 1) AS s
"""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _url(pg: str, database: str) -> str:
    return f"{pg.rstrip('/')}/{database}"


def _shape(args: argparse.Namespace) -> dict[str, Any]:
    return {"series": args.series, "metrics": args.metrics, "every": args.every, "version": 1}


def ensure_dataset(args: argparse.Namespace) -> str:
    """The benchmark database's URL, loaded with the points of the last two hours."""
    url = _url(args.pg, args.database)
    shape = _shape(args)
    if not args.fresh:
        try:
            with psycopg.connect(url) as conn:
                found = conn.execute(
                    "SELECT shape, extract(epoch FROM now() - loaded_at) FROM bench_alerts_dataset"
                ).fetchone()
            if found is not None and found[0] == shape and found[1] < 3600:
                _log(f"reusing {args.database} (loaded {found[1] / 60:.0f} min ago)")
                return url
        except psycopg.Error:
            pass
    with psycopg.connect(_url(args.pg, "postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.database))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.database)))
    migrate(url)
    now = time.time_ns()
    PartitionManager(url).maintain(now, past_ns=SPAN_NS + HOUR_NS)
    step = round(args.every * 1e9)
    points = args.series * (SPAN_NS // step)
    _log(f"loading {points:,} points of {args.series:,} series into {args.database} ...")
    started = time.perf_counter()
    common = {"project": PROJECT, "metrics": args.metrics, "series": args.series}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(_SERIES, {**common, "first": datetime_from_ns(now - SPAN_NS)})
        chunk = 10 * 60 * 10**9
        for lo in range(now - SPAN_NS, now, chunk):
            conn.execute(_POINTS, {**common, "lo": lo, "hi": min(lo + chunk, now), "step": step})
        conn.execute("ANALYZE")
        conn.execute(
            "CREATE TABLE bench_alerts_dataset (shape jsonb, loaded_at timestamptz DEFAULT now())"
        )
        conn.execute("INSERT INTO bench_alerts_dataset (shape) VALUES (%s)", (Jsonb(shape),))
    _log(f"  loaded in {time.perf_counter() - started:.0f}s")
    return url


def _rule(i: int, metrics: int, rng: random.Random) -> pb.Rule:
    aggregation = AGGREGATIONS[i % len(AGGREGATIONS)]
    threshold = {query_pb.AGGREGATION_COUNT: 100.0, query_pb.AGGREGATION_RATE: 0.0}.get(
        aggregation, rng.choice((60.0, 80.0, 95.0))
    )
    return pb.Rule(
        name=f"bench-{i:04d}",
        metric=pb.MetricCondition(
            metric_name=f"bench.metric.{i % metrics}",
            matchers=[
                query_pb.LabelMatcher(
                    name="instance", op=query_pb.LabelMatcher.OP_EQ, value=f"i-{i % 10}"
                )
            ],
            aggregation=aggregation,
            group_by=["http.route"] if i % 3 == 0 else [],
            window=duration_pb2.Duration(seconds=300),
        ),
        comparator=pb.Rule.GT,
        threshold=threshold,
        interval=duration_pb2.Duration(seconds=30),
        annotations={"summary": "{{ $labels.instance }} at {{ $value }}"},
    )


def make_rules(url: str, count: int, metrics: int) -> None:
    """``count`` rules in the project (replacing any), all due now."""
    rng = random.Random(7)

    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        async with conn:
            await conn.execute("DELETE FROM alert_rules WHERE project_id = %s", (PROJECT,))
            await conn.execute("DELETE FROM alert_incidents WHERE project_id = %s", (PROJECT,))
            await conn.execute("DELETE FROM alert_events WHERE project_id = %s", (PROJECT,))
            async with conn.transaction():
                for i in range(count):
                    record = rules.validate(_rule(i, metrics, rng), PROJECT, f"{i:016x}")
                    await alert_config.insert_rule(conn, PROJECT, record)

    asyncio.run(run())


class PostgresCpu:
    """CPU seconds PostgreSQL's processes used while it watched, sampled every 0.1 s
    from a thread: a backend that exits meanwhile counts up to its last sample (psutil
    cannot read a process that is gone), one that starts counts from 0. Other clients of
    the same server count too: on a shared machine, read it as an upper bound."""

    def __init__(self) -> None:
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, first: bool) -> None:
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] not in ("postgres", "postmaster"):
                continue
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            used = times.user + times.system
            self._first.setdefault(proc.pid, used if first else 0.0)
            self._last[proc.pid] = used

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample(False)

    def __enter__(self) -> PostgresCpu:
        self._sample(True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(False)

    @property
    def seconds(self) -> float:
        return sum(self._last[pid] - first for pid, first in self._first.items())


async def evaluate_all(url: str, args: argparse.Namespace) -> tuple[float, int]:
    """Runs evaluator rounds until every rule has been evaluated once: (seconds, rounds)."""
    pool = ReadPool(url, max_size=args.connections)
    await pool.open()
    try:
        settings = EvaluatorSettings(
            poll=0.05, lease=120.0, batch=args.batch, concurrency=args.concurrency
        )
        job = AlertEvaluator(pool, settings, Instruments())
        scheduler = Scheduler(url, [job])
        started = time.perf_counter()
        rounds = 0
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            while True:
                await scheduler.run_once(job)
                rounds += 1
                cursor = await conn.execute(
                    "SELECT count(*) FROM alert_rule_schedule WHERE project_id = %s"
                    " AND evaluations = 0",
                    (PROJECT,),
                )
                left = await cursor.fetchone()
                if left is None or left[0] == 0:
                    break
        return time.perf_counter() - started, rounds
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.alerts", description=__doc__)
    p.add_argument(
        "--pg", default=os.environ.get("OTLPD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
    )
    p.add_argument("--database", default=DATABASE)
    p.add_argument("--rules", type=int, default=1000)
    p.add_argument("--series", type=int, default=2000)
    p.add_argument("--metrics", type=int, default=50)
    p.add_argument("--every", type=float, default=1.44, help="seconds between a series' points")
    p.add_argument("--batch", type=int, default=100, help="OTLPD_ALERT_BATCH")
    p.add_argument("--concurrency", type=int, default=4, help="OTLPD_ALERT_CONCURRENCY")
    p.add_argument("--connections", type=int, default=2, help="OTLPD_ALERT_CONNECTIONS")
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--quick", action="store_true", help="100 rules over 200 series")
    args = p.parse_args(argv)
    if args.quick:
        args.rules, args.series, args.database = 100, 200, DATABASE + "_quick"
    url = ensure_dataset(args)
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM metric_points").fetchone()
    points = 0 if count is None else int(count[0])
    make_rules(url, args.rules, args.metrics)
    cpu0 = time.process_time()
    with PostgresCpu() as postgres:
        seconds, rounds = asyncio.run(evaluate_all(url, args))
    cpu, pg_cpu = time.process_time() - cpu0, postgres.seconds
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT last_eval_seconds FROM alert_rule_schedule WHERE project_id = %s",
            (PROJECT,),
        ).fetchall()
        states: dict[str, int] = dict(
            conn.execute(
                "SELECT state, count(*) FROM alert_state WHERE project_id = %s GROUP BY 1",
                (PROJECT,),
            ).fetchall()
        )
    latencies = np.array([r[0] for r in found if r[0] is not None])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"machine: {platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB; python {platform.python_version()}"
    )
    print(f"data: {points:,} points of {args.series:,} series; {args.rules:,} rules of 30 s")
    print(
        f"evaluated {len(latencies):,} rules in {seconds:.2f}s ({rounds} rounds):"
        f" {len(latencies) / seconds:.0f} rules/s"
    )
    print(
        f"evaluation latency: p50 {np.percentile(latencies, 50) * 1000:.1f} ms,"
        f" p99 {np.percentile(latencies, 99) * 1000:.1f} ms"
    )
    print(
        f"CPU: evaluator {cpu:.2f}s ({cpu / seconds:.2f} cores), PostgreSQL {pg_cpu:.2f}s"
        " (every client's);"
        f" peak RSS {rss:.0f} MiB"
    )
    print(f"alerts: {states}")
    within = seconds <= 30 and cpu / seconds <= 1.0
    print(f"target (1,000 rules within 30 s on <= 1 core): {'PASS' if within else 'FAIL'}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
