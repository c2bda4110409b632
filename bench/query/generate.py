"""The query benchmark's data: a day of spans, logs and metric points, made by PostgreSQL.

Building 20 million rows in Python and COPYing them would take longer than the
benchmark itself; instead every row is computed server-side by ``INSERT ... SELECT ...
FROM generate_series``, one statement per hour of data, on two connections at once (one
per core). Everything the load runner needs to ask for rows that exist is a pure function
of a row's index and of the :class:`Dataset` stored in the marker table, so nothing has to
be read back:

* trace ``t`` has ids ``md5('t' || t)``; its spans are indexes ``10 t .. 10 t + 9``, span
  ``g`` has id ``md5('s' || g)[:8]`` and parent ``(g mod 10 - 1) / 2`` in the same trace
  (a binary tree of ten spans), start ``trace start + 0.2 ms * (g mod 10)``;
* log record ``g`` is written 0.1 ms after span ``g``, by the same service and resource;
  one in ten (``g mod 10 = 0``) carries its trace and span ids;
* traces ``t`` with ``t mod 4 < 2`` belong to session ``sess-<t / 40>`` (20 traces, 200
  spans and 200 logs per session); :data:`SESSION_1000` has exactly 1,000 records;
* bodies are eight words of :func:`vocabulary` drawn with a skew (a few words are in
  most records, most are rare) plus, in about one record in 10,000, one of
  :func:`rare_words`;
* the metric series have a point a minute over the day, and 1-hour rollups
  (``metric_rollups_1h``) for the :data:`ROLLUP_DAYS` - 1 days before it, as the rollup
  job would have left them had the series been running then (each restarting at the
  start of the day of points); otlpd's rollup job makes the day's own rollups from its
  points when it starts.

The dataset is kept between runs (``DATABASE``) with a marker row saying what it holds,
so re-running the timing part does not reload; ``fresh=True`` rebuilds it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import itertools
import json
import math
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from storage.postgres.migrate import migrate
from storage.postgres.partitions import PartitionManager, datetime_from_ns

DATABASE: Final = "otlpd_bench_query"
PROJECT: Final = "default"
# Bump when the shape of the data changes: a marker of another version means reload.
VERSION: Final = 2  # 2: 1-hour metric rollups for the 29 days before the day of points

SPANS_PER_TRACE: Final = 10
TRACES_PER_SESSION: Final = 40  # of which half (t mod 4 < 2) carry the session
SESSION_1000: Final = "bench-session-1000"
SESSION_1000_SPANS: Final = 600
SESSION_1000_LOGS: Final = 400

SERVICES: Final = (
    "frontend", "checkout", "cart", "payment", "shipping", "currency", "email",
    "recommendation", "ad", "catalog", "quote", "fraud-detection", "accounting",
    "inventory", "auth", "search", "notification", "pricing", "gateway", "profile",
)  # fmt: skip
OPERATIONS_PER_SERVICE: Final = 10
# SpanKind of operation i of every service: mostly server, some client, one internal...
OPERATION_KINDS: Final = (2, 2, 2, 2, 2, 2, 3, 3, 1, 4)
HTTP_METHODS: Final = ("GET", "GET", "GET", "POST", "PUT", "DELETE")

HISTOGRAM_METRIC: Final = "http.server.duration"
COUNTER_METRIC: Final = "http.server.requests"
# Milliseconds, as OpenTelemetry's HTTP semantic conventions had them: 12 bounds, 13 buckets.
HISTOGRAM_BOUNDS: Final = (5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0,
                           2500.0, 5000.0)  # fmt: skip
REQUESTS_PER_MINUTE: Final = 60  # per series, on average
# Every tenth series restarts (a process restart) half-way: its cumulative counts fall to
# zero, the case rate() and increase() must see as a reset.
RESET_EVERY: Final = 10
# Days of metric rollups QueryMetrics can read: the day of points and the days before it.
ROLLUP_DAYS: Final = 30

_HOUR_NS: Final = 3600 * 1_000_000_000
_DAY_NS: Final = 24 * _HOUR_NS
_MINUTE_NS: Final = 60 * 1_000_000_000
_CONNECTIONS: Final = 2


@dataclass(frozen=True, slots=True)
class Dataset:
    """What the benchmark database holds; stored as JSON in the marker table."""

    version: int
    scale: float
    traces: int  # regular traces (SESSION_1000's come after them)
    spans: int  # every span row, SESSION_1000's included
    logs: int  # every log row, SESSION_1000's included
    sessions: int  # regular sessions sess-0 .. sess-(n-1)
    users: int
    series: int  # histogram series; as many counter series
    window_start_ns: int  # the day of data: [start, end)
    window_end_ns: int
    load_seconds: float = 0.0
    text_index: str = ""  # what indexed log bodies after the load, or why nothing did

    @property
    def session_1000_trace(self) -> int:
        """Index of the first of SESSION_1000's traces."""
        return self.traces


def trace_id(index: int) -> bytes:
    """The id of trace ``index``, as the generator's SQL makes it."""
    return hashlib.md5(f"t{index}".encode()).digest()


def span_id(index: int) -> bytes:
    """The id of span ``index`` (global), as the generator's SQL makes it."""
    return hashlib.md5(f"s{index}".encode()).digest()[:8]


def operation_name(service: int, operation: int) -> str:
    """Span name of operation ``operation`` of service ``service``."""
    verbs = ("GET", "POST", "GET", "PUT", "GET", "DELETE", "call", "call", "process", "publish")
    return f"{verbs[operation]} /{SERVICES[service]}/op{operation}"


def vocabulary() -> list[str]:
    """The words of log bodies, most frequent first (a fixed seed: the same every run)."""
    common = (
        "request", "user", "error", "failed", "completed", "connection", "timeout", "cache",
        "order", "payment", "session", "started", "retry", "database", "query", "response",
        "received", "sent", "invalid", "token", "login", "checkout", "item", "cart", "queue",
    )  # fmt: skip
    rng = random.Random(20240601)
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    words = list(common)
    seen = set(words)
    while len(words) < 3000:
        word = "".join(
            rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(2, 4))
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def rare_words() -> list[str]:
    """50 words of which one is in about one body in 10,000 (`RARE_FRACTION`)."""
    return [f"quux{i:02d}zz" for i in range(50)]


RARE_FRACTION: Final = 1e-4
WORDS_PER_BODY: Final = 8


# --- SQL ---------------------------------------------------------------------------------
# Every value comes in as a parameter; the statements are constants. Arrays are 1-based.

_LOGNORMAL = "exp(ln({median}) + {sigma} * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))"

_SPANS: Final = f"""
INSERT INTO spans (project_id, time, start_time_unix_nano, end_time_unix_nano, duration_ns,
    trace_id, span_id, parent_span_id, trace_state, flags, service_name, session_id, user_id,
    name, kind, status_code, status_message, attributes, events, links,
    dropped_attributes_count, dropped_events_count, dropped_links_count, resource_id,
    scope_name, scope_version, scope_attributes, scope_schema_url, scope_dropped_attributes_count)
SELECT %(project)s, 'epoch'::timestamptz + (x.start_ns / 1000) * interval '1 microsecond',
    x.start_ns, x.start_ns + x.dur_ns, x.dur_ns,
    decode(md5('t' || x.t), 'hex'), substr(decode(md5('s' || x.g), 'hex'), 1, 8),
    CASE WHEN x.k > 0
        THEN substr(decode(md5('s' || (x.t * 10 + (x.k - 1) / 2)), 'hex'), 1, 8) END,
    NULL, 1, (%(services)s::text[])[x.svc + 1], x.session_id,
    CASE WHEN x.session_id IS NOT NULL
        THEN coalesce(%(user)s, 'user-' || mod(x.t / 40, %(users)s)) END,
    (%(names)s::text[])[x.svc * 10 + x.op + 1], (%(kinds)s::int2[])[x.op + 1],
    CASE WHEN x.err THEN 2 ELSE 0 END, CASE WHEN x.err THEN 'upstream failed' END,
    jsonb_build_object('http.method', (%(methods)s::text[])[mod(x.g, 6) + 1],
        'http.route', '/' || (%(services)s::text[])[x.svc + 1] || '/op' || x.op,
        'http.status_code', CASE WHEN x.err THEN 500 ELSE 200 END,
        'net.peer.port', 1024 + mod(x.g, 50000)),
    NULL, NULL, 0, 0, 0, x.svc * 3 + mod(x.t, 3) + 1, 'bench.tracer', '1.0', NULL, NULL, 0
FROM (
    SELECT g, t, k, mod(t * 7 + k * 3, 20) AS svc, mod(t + k, 10) AS op,
        random() < 0.02 AS err,
        %(t0)s::bigint + (t - %(t_base)s) * %(step)s::bigint + k * 200000 AS start_ns,
        (CASE WHEN k = 0 THEN {_LOGNORMAL.format(median=50e6, sigma=1.0)}
              ELSE {_LOGNORMAL.format(median=8e6, sigma=1.0)} END)::bigint AS dur_ns,
        coalesce(%(session)s, CASE WHEN mod(t, 4) < 2 THEN 'sess-' || (t / 40) END)
            AS session_id
    FROM (SELECT g, g / 10 AS t, mod(g, 10) AS k
          FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS g) AS i
) AS x
"""

_WORD = "(%(vocab)s::text[])[1 + floor(power(random(), 3) * %(nvocab)s)::int]"
_BODY = " || ' ' || ".join([_WORD] * WORDS_PER_BODY)

_LOGS: Final = f"""
INSERT INTO logs (project_id, time, time_unix_nano, observed_time_unix_nano, trace_id, span_id,
    flags, service_name, session_id, user_id, severity_number, severity_text, body, attributes,
    event_name, dropped_attributes_count, resource_id, scope_name, scope_version,
    scope_attributes, scope_schema_url, scope_dropped_attributes_count)
SELECT %(project)s, 'epoch'::timestamptz + (x.ns / 1000) * interval '1 microsecond',
    x.ns, x.ns + 1000000,
    CASE WHEN x.k = 0 THEN decode(md5('t' || x.t), 'hex') END,
    CASE WHEN x.k = 0 THEN substr(decode(md5('s' || x.g), 'hex'), 1, 8) END,
    CASE WHEN x.k = 0 THEN 1 ELSE 0 END, (%(services)s::text[])[x.svc + 1], x.session_id,
    CASE WHEN x.session_id IS NOT NULL
        THEN coalesce(%(user)s, 'user-' || mod(x.t / 40, %(users)s)) END,
    x.sev, CASE x.sev WHEN 17 THEN 'ERROR' WHEN 13 THEN 'WARN' WHEN 5 THEN 'DEBUG'
        ELSE 'INFO' END,
    to_jsonb({_BODY} || ' id=' || x.g
        || CASE WHEN random() < %(rare_p)s
           THEN ' ' || (%(rare)s::text[])[1 + floor(random() * %(nrare)s)::int] ELSE '' END),
    jsonb_build_object('logger', 'app.' || (%(services)s::text[])[x.svc + 1],
        'thread', 'worker-' || mod(x.g, 8), 'http.method', (%(methods)s::text[])[mod(x.g, 6) + 1]),
    NULL, 0, x.svc * 3 + mod(x.t, 3) + 1, 'bench.logger', '1.0', NULL, NULL, 0
FROM (
    SELECT g, t, k, mod(t * 7 + k * 3, 20) AS svc,
        %(t0)s::bigint + (t - %(t_base)s) * %(step)s::bigint + k * 200000 + 100000 AS ns,
        CASE WHEN r < 0.05 THEN 17 WHEN r < 0.15 THEN 13 WHEN r < 0.30 THEN 5 ELSE 9 END AS sev,
        coalesce(%(session)s, CASE WHEN mod(t, 4) < 2 THEN 'sess-' || (t / 40) END)
            AS session_id
    FROM (SELECT g, g / 10 AS t, mod(g, 10) AS k, random() AS r
          FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS g) AS i
) AS x
"""

_RESOURCES: Final = """
INSERT INTO resources (project_id, resource_id, attributes, schema_url, dropped_attributes_count,
    first_seen)
SELECT %(project)s, s * 3 + i + 1,
    jsonb_build_object('service.name', (%(services)s::text[])[s + 1],
        'service.instance.id', (%(services)s::text[])[s + 1] || '-' || i,
        'host.name', 'node-' || mod(s * 3 + i, 7), 'deployment.environment', 'production'),
    NULL, 0, %(first)s
FROM generate_series(0, 19) AS s, generate_series(0, 2) AS i
"""

# What the writer upserts (storage/postgres/writer.py, Catalog): every service, and every
# (service, span name, kind), with the window as first and last seen.
_SERVICES: Final = """
INSERT INTO services (project_id, service_name, first_seen, last_seen)
SELECT %(project)s, s, %(first)s, %(last)s FROM unnest(%(services)s::text[]) AS s
"""
_OPERATIONS: Final = """
INSERT INTO operations (project_id, service_name, span_name, span_kind, first_seen, last_seen)
SELECT %(project)s, s, n, k, %(first)s, %(last)s
FROM unnest(%(svc)s::text[], %(names)s::text[], %(kinds)s::int2[]) AS u(s, n, k)
"""

_SESSIONS: Final = """
INSERT INTO sessions (project_id, session_id, user_id, service_name, first_seen, last_seen)
SELECT %(project)s, 'sess-' || s, 'user-' || mod(s, %(users)s),
    (%(services)s::text[])[mod(s * 40 * 7, 20) + 1],
    'epoch'::timestamptz + ((%(t0)s::bigint + s * 40 * %(step)s::bigint) / 1000)
        * interval '1 microsecond',
    'epoch'::timestamptz + ((%(t0)s::bigint + least(s * 40 + 39, %(traces)s - 1)
        * %(step)s::bigint + 2000000) / 1000) * interval '1 microsecond'
FROM generate_series(0, %(sessions)s - 1) AS s
UNION ALL
SELECT %(project)s, %(session)s, %(user)s, (%(services)s::text[])[1], %(s_first)s, %(s_last)s
"""

_SERIES: Final = """
INSERT INTO metric_series (project_id, series_id, metric_name, metric_type, unit, description,
    aggregation_temporality, is_monotonic, service_name, attributes, resource, scope_name,
    scope_version, metadata, first_seen)
SELECT %(project)s, %(id0)s + s, %(name)s, %(type)s, %(unit)s, %(description)s, 2,
    %(monotonic)s, (%(services)s::text[])[mod(s / 5, 20) + 1],
    jsonb_build_object('http.route', '/' || (%(services)s::text[])[mod(s / 5, 20) + 1]
        || '/op' || mod(s, 5), 'http.method', 'GET', 'instance', 'i-' || (s / 100)),
    jsonb_build_object('service.name', (%(services)s::text[])[mod(s / 5, 20) + 1]),
    'bench.meter', '1.0', NULL, %(first)s
FROM generate_series(0, %(series)s - 1) AS s
"""

# Per series, minute and bucket: a count drawn around the bucket's share of
# REQUESTS_PER_MINUTE, then summed over the minutes (cumulative temporality), restarting
# at RESET minute for every RESET_EVERY-th series.
_INCREMENTS: Final = """
CREATE TEMP TABLE bench_points ON COMMIT DROP AS
SELECT s, m, array_agg(c ORDER BY b) AS buckets, sum(c)::bigint AS count,
    sum(c * (%(mids)s::float8[])[b]) AS total,
    bool_or(restarted) AS restarted
FROM (
    SELECT s, m, b, restarted, (sum(n) OVER (PARTITION BY s, b, restarted ORDER BY m))::bigint AS c
    FROM (
        SELECT s, m, b, mod(s, %(reset_every)s) = 0 AND m >= %(reset)s AS restarted,
            round(%(rate)s * (%(shares)s::float8[])[b] * (0.5 + random()))::bigint AS n
        FROM generate_series(0, %(series)s - 1) AS s, generate_series(0, %(minutes)s - 1) AS m,
            generate_series(1, %(buckets)s) AS b
    ) AS increments
) AS cumulative
GROUP BY s, m
"""
_POINT_TIME = (
    "'epoch'::timestamptz + ((%(t0)s::bigint + (m + 1) * 60000000000) / 1000)"
    " * interval '1 microsecond'"
)
_POINT_START = (
    "CASE WHEN restarted THEN %(t0)s::bigint + %(reset)s * 60000000000 ELSE %(t0)s::bigint END"
)
_HISTOGRAM_POINTS: Final = f"""
INSERT INTO metric_points (project_id, time, time_unix_nano, start_time_unix_nano, series_id,
    service_name, flags, count, sum, bucket_counts, explicit_bounds)
SELECT %(project)s, {_POINT_TIME}, %(t0)s::bigint + (m + 1) * 60000000000, {_POINT_START},
    %(id0)s + s, (%(services)s::text[])[mod(s / 5, 20) + 1], 0, count, total, buckets,
    %(bounds)s::float8[]
FROM bench_points
"""
_COUNTER_POINTS: Final = f"""
INSERT INTO metric_points (project_id, time, time_unix_nano, start_time_unix_nano, series_id,
    service_name, flags, value, value_int)
SELECT %(project)s, {_POINT_TIME}, %(t0)s::bigint + (m + 1) * 60000000000, {_POINT_START},
    %(id0)s + s, (%(services)s::text[])[mod(s / 5, 20) + 1], 0, count, count
FROM bench_points
"""

# 1-hour rollup rows of the days before the day of points, as the job would make them
# from a point a minute: per series, hour and bucket a count of requests, summed over the
# hours (cumulative, from the first of those days); in each hour the first point has
# seen a sixtieth of the hour's increase, the last all of it. No reset inside an hour:
# bucket_increments stays NULL (it is last minus first, docs/storage.md). Counts are
# packed bytea (0009), and the rows are stored hour by hour, every series' row of an
# hour together, as the job writes them (a series' rows are not side by side).
_ROLLUP_HOURS: Final = """
CREATE TEMP TABLE bench_rollups ON COMMIT DROP AS
SELECT s, h, string_agg(int8send(last_c), ''::bytea ORDER BY b) AS last_buckets,
    string_agg(int8send(last_c - inc + (inc + 59) / 60), ''::bytea ORDER BY b) AS first_buckets,
    sum(last_c)::bigint AS last_count, sum(last_c - inc + (inc + 59) / 60)::bigint AS first_count
FROM (
    SELECT s, h, b, inc, (sum(inc) OVER (PARTITION BY s, b ORDER BY h))::bigint AS last_c
    FROM (
        SELECT s, h, b,
            round(60 * %(rate)s * (%(shares)s::float8[])[b] * (0.5 + random()))::bigint AS inc
        FROM generate_series(0, %(series)s - 1) AS s, generate_series(0, %(hours)s - 1) AS h,
            generate_series(1, %(buckets)s) AS b
    ) AS increments
) AS cumulative
GROUP BY s, h
"""
_ROLLUP_TIME = (
    "'epoch'::timestamptz + ((%(r0)s::bigint + h * 3600000000000) / 1000)"
    " * interval '1 microsecond'"
)
# The moments of the hour's sixty points, whose count rises evenly from first to last.
_ROLLUP_NUMBERS = (
    "60, 30 * (first_count + last_count)::float8, first_count, last_count, "
    "%(r0)s::bigint + h * 3600000000000 + 30000000000, first_count, "
    "%(r0)s::bigint + h * 3600000000000 + 3570000000000, last_count, "
    "(last_count - first_count)::float8"
)
_HISTOGRAM_ROLLUPS: Final = f"""
INSERT INTO metric_rollups_1h (project_id, time, series_id, part, samples, sum, min, max,
    first_time_unix_nano, first_value, last_time_unix_nano, last_value, increase,
    first_start_time_unix_nano, last_start_time_unix_nano, explicit_bounds,
    bucket_increments, first_bucket_counts, last_bucket_counts)
SELECT %(project)s, {_ROLLUP_TIME}, %(id0)s + s, 0, {_ROLLUP_NUMBERS}, %(r0)s, %(r0)s,
    %(bounds)s::float8[], NULL, first_buckets, last_buckets
FROM bench_rollups ORDER BY h, s
"""
_COUNTER_ROLLUPS: Final = f"""
INSERT INTO metric_rollups_1h (project_id, time, series_id, part, samples, sum, min, max,
    first_time_unix_nano, first_value, last_time_unix_nano, last_value, increase)
SELECT %(project)s, {_ROLLUP_TIME}, %(id0)s + s, 0, {_ROLLUP_NUMBERS}
FROM bench_rollups ORDER BY h, s
"""

_MARKER: Final = """
CREATE TABLE IF NOT EXISTS bench_query_dataset (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    dataset jsonb NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
)
"""


# --- loading -----------------------------------------------------------------------------


def server_url(pg: str, database: str) -> str:
    """``pg`` (a server URL, maybe with a database) with its database replaced."""
    base = pg.rstrip("/")
    scheme, sep, rest = base.partition("://")
    if "/" in rest:
        rest = rest[: rest.index("/")]
    return f"{scheme}{sep}{rest}/{database}"


def stored_dataset(url: str) -> Dataset | None:
    """The dataset the marker of ``url``'s database describes; None when there is none."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            found = conn.execute("SELECT to_regclass('bench_query_dataset')").fetchone()
            if found is None or found[0] is None:
                return None
            row = conn.execute("SELECT dataset FROM bench_query_dataset").fetchone()
    except psycopg.OperationalError:
        return None
    if row is None:
        return None
    data: dict[str, Any] = row[0]
    if data.get("version") != VERSION:
        return None
    return Dataset(**data)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _plan(scale: float, series: int, now_ns: int) -> Dataset:
    traces = max(40, round(10_000_000 * scale / SPANS_PER_TRACE))
    sessions = math.ceil(traces / TRACES_PER_SESSION)
    end = now_ns // 1_000_000_000 * 1_000_000_000
    return Dataset(
        version=VERSION,
        scale=scale,
        traces=traces,
        spans=traces * SPANS_PER_TRACE + SESSION_1000_SPANS,
        logs=traces * SPANS_PER_TRACE + SESSION_1000_LOGS,
        sessions=sessions,
        users=max(1, sessions // 5),
        series=series,
        window_start_ns=end - _DAY_NS,
        window_end_ns=end,
    )


def _chunks(total: int, parts: int) -> list[tuple[int, int]]:
    """``[0, total)`` as ``parts`` ranges, each a whole number of traces."""
    traces = total // SPANS_PER_TRACE
    bounds = [round(traces * i / parts) * SPANS_PER_TRACE for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]


def _common(ds: Dataset) -> dict[str, Any]:
    return {
        "project": PROJECT,
        "services": list(SERVICES),
        "names": [
            operation_name(s, o)
            for s in range(len(SERVICES))
            for o in range(OPERATIONS_PER_SERVICE)
        ],
        "kinds": list(OPERATION_KINDS),
        "methods": list(HTTP_METHODS),
        "users": ds.users,
        "t0": ds.window_start_ns,
        "step": _DAY_NS // ds.traces,
        "t_base": 0,
        "session": None,
        "user": None,
    }


def _session_1000_params(ds: Dataset) -> dict[str, Any]:
    # The last hour but ten minutes, one trace every 30 s: inside the "last hour".
    return {
        "t0": ds.window_end_ns - 50 * _MINUTE_NS,
        "step": 30 * 1_000_000_000,
        "t_base": ds.session_1000_trace,
        "session": SESSION_1000,
        "user": "user-1000",
    }


def _histogram_shares() -> tuple[list[float], list[float]]:
    """Share of requests per bucket (log-normal, median 40 ms) and each bucket's midpoint."""
    median, sigma = 40.0, 1.0

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf((math.log(x) - math.log(median)) / (sigma * math.sqrt(2))))

    edges = [0.0, *HISTOGRAM_BOUNDS, math.inf]
    shares = [
        (1.0 if hi == math.inf else cdf(hi)) - (0.0 if lo == 0 else cdf(lo))
        for lo, hi in itertools.pairwise(edges)
    ]
    mids = [(lo + hi) / 2 if hi != math.inf else lo * 1.5 for lo, hi in itertools.pairwise(edges)]
    return shares, mids


def _run_parallel(url: str, jobs: list[tuple[str, dict[str, Any]]]) -> None:
    """Runs the statements on ``_CONNECTIONS`` connections, each statement committed alone."""

    def run(job: tuple[str, dict[str, Any]]) -> None:
        statement, params = job
        with psycopg.connect(url, autocommit=True) as conn:
            # Loading, not ingest: nothing here needs to survive a crash before the
            # marker row is written, so commits need not wait for the WAL flush.
            conn.execute("SET synchronous_commit = off")
            conn.execute(statement, params)

    with ThreadPoolExecutor(_CONNECTIONS) as pool:
        for _ in pool.map(run, jobs):
            pass


def _load_metrics(conn: psycopg.Connection[Any], ds: Dataset, common: dict[str, Any]) -> None:
    shares, mids = _histogram_shares()
    minutes = _DAY_NS // _MINUTE_NS
    params = common | {
        "series": ds.series,
        "minutes": minutes,
        "buckets": len(shares),
        "shares": shares,
        "mids": mids,
        "rate": REQUESTS_PER_MINUTE,
        "reset": minutes // 2,
        "reset_every": RESET_EVERY,
        "bounds": list(HISTOGRAM_BOUNDS),
        "first": datetime_from_ns(ds.window_start_ns),
    }
    for metric_id0, name, type_, unit, description, monotonic in (
        (1, HISTOGRAM_METRIC, 3, "ms", "Duration of HTTP server requests.", None),
        (1_000_001, COUNTER_METRIC, 2, "{request}", "HTTP server requests.", True),
    ):
        conn.execute(
            _SERIES,
            params
            | {
                "id0": metric_id0,
                "name": name,
                "type": type_,
                "unit": unit,
                "description": description,
                "monotonic": monotonic,
            },
        )
    with conn.transaction():
        conn.execute(_INCREMENTS, params)
        conn.execute(_HISTOGRAM_POINTS, params | {"id0": 1})
        conn.execute(_COUNTER_POINTS, params | {"id0": 1_000_001})
    days = ROLLUP_DAYS - 1
    rollups = params | {
        "hours": days * 24,
        # Whole hours, up to the hour the points begin in (the job rolls up that one).
        "r0": ds.window_start_ns // _HOUR_NS * _HOUR_NS - days * _DAY_NS,
    }
    with conn.transaction():
        conn.execute(_ROLLUP_HOURS, rollups)
        conn.execute(_HISTOGRAM_ROLLUPS, rollups | {"id0": 1})
        conn.execute(_COUNTER_ROLLUPS, rollups | {"id0": 1_000_001})


def _text_index(url: str) -> str:
    """Runs the text index job over closed partitions if this tree has one; says what ran.

    ``storage.postgres.text_index.TextIndexJob`` indexes a log partition once it has
    closed; otlpd's scheduler runs it every minute. Running it here, before otlpd starts,
    means the timing does not race the job's index builds (and a reused dataset, whose
    newest partitions have closed since it was loaded, gets their indexes first). A tree
    without the job has searches scan every body.
    """
    try:
        module = importlib.import_module("storage.postgres.text_index")
    except ImportError:
        return "none: storage.postgres.text_index does not exist (searches scan bodies)"
    job_class: Any = getattr(module, "TextIndexJob", None)
    if job_class is None:
        return "none: storage.postgres.text_index has no TextIndexJob"

    async def run() -> list[str]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            indexed: list[str] = await job_class().index_closed(conn, time.time_ns())
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_class WHERE relname LIKE %s",
                ("logs\\_p%" + module.INDEX_SUFFIX,),
            )
            row = await cursor.fetchone()
        return [*indexed, f"{row[0] if row else 0} partitions indexed in all"]

    started = time.perf_counter()
    indexed = asyncio.run(run())
    took = time.perf_counter() - started
    return f"TextIndexJob built {len(indexed) - 1} in {took:.1f}s; {indexed[-1]}"


def ensure_dataset(
    pg: str,
    *,
    scale: float,
    series: int = 100,
    fresh: bool = False,
    database: str = DATABASE,
    ends_ns: int | None = None,
    text_index: bool = True,
) -> tuple[str, Dataset]:
    """The URL of the benchmark database and what it holds, loading it if needed.

    An existing database is reused when its marker says it holds this ``scale`` and
    ``series`` count (its day of data then ends when it was loaded, not now) and, with
    ``ends_ns``, when its day ends no later. The day of data ends at ``ends_ns`` (default:
    now). ``text_index``: build the full-text index of the closed log partitions.
    """
    url = server_url(pg, database)
    existing = None if fresh else stored_dataset(url)
    if (
        existing is not None
        and existing.scale == scale
        and existing.series == series
        and (ends_ns is None or existing.window_end_ns <= ends_ns)
    ):
        _log(f"reusing {database}: {existing.spans:,} spans, {existing.logs:,} logs")
        indexed = _text_index(url) if text_index else "not asked for"
        _log(f"  text index: {indexed}")
        return url, Dataset(**(asdict(existing) | {"text_index": indexed}))
    started = time.perf_counter()
    with psycopg.connect(server_url(pg, "postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    migrate(url)
    ds = _plan(scale, series, time.time_ns() if ends_ns is None else ends_ns)
    partitions = PartitionManager(url)
    partitions.maintain(ds.window_end_ns, past_ns=_DAY_NS + _HOUR_NS)
    week = partitions.width_ns("metric_rollups_1h")
    first_week = (ds.window_start_ns - ROLLUP_DAYS * _DAY_NS) // week * week
    partitions.ensure("metric_rollups_1h", range(first_week, ds.window_end_ns, week))
    common = _common(ds)
    first, last = datetime_from_ns(ds.window_start_ns), datetime_from_ns(ds.window_end_ns)
    spans = ds.traces * SPANS_PER_TRACE
    _log(f"loading {spans:,} spans and {spans:,} logs over 24 h into {database} ...")
    # Hour-sized statements, spans and logs interleaved, so both connections stay busy.
    parts = max(1, min(48, spans // 20_000))
    jobs: list[tuple[str, dict[str, Any]]] = []
    for lo, hi in _chunks(spans, parts):
        jobs.append((_SPANS, common | {"lo": lo, "hi": hi}))
        jobs.append((_LOGS, common | _log_params() | {"lo": lo, "hi": hi}))
    special = common | _session_1000_params(ds)
    base = ds.session_1000_trace * SPANS_PER_TRACE
    jobs.append((_SPANS, special | {"lo": base, "hi": base + SESSION_1000_SPANS}))
    jobs.append((_LOGS, special | _log_params() | {"lo": base, "hi": base + SESSION_1000_LOGS}))
    _run_parallel(url, jobs)
    loaded = time.perf_counter()
    _log(f"  records: {loaded - started:.1f}s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_RESOURCES, common | {"first": first})
        conn.execute(_SERVICES, common | {"first": first, "last": last})
        ops = [(s, o) for s in range(len(SERVICES)) for o in range(OPERATIONS_PER_SERVICE)]
        conn.execute(
            _OPERATIONS,
            common
            | {
                "svc": [SERVICES[s] for s, _ in ops],
                "names": [operation_name(s, o) for s, o in ops],
                "kinds": [OPERATION_KINDS[o] for _, o in ops],
                "first": first,
                "last": last,
            },
        )
        s_first = datetime_from_ns(_session_1000_params(ds)["t0"])
        s_last = datetime_from_ns(_session_1000_params(ds)["t0"] + 60 * 30 * 1_000_000_000)
        conn.execute(
            _SESSIONS,
            common
            | _session_1000_params(ds)
            | {
                "t0": ds.window_start_ns,
                "step": _DAY_NS // ds.traces,
                "traces": ds.traces,
                "sessions": ds.sessions,
                "s_first": s_first,
                "s_last": s_last,
            },
        )
        _load_metrics(conn, ds, common)
        metrics = time.perf_counter()
        _log(f"  catalog, sessions, metrics: {metrics - loaded:.1f}s")
        conn.execute("ANALYZE")
        _log(f"  ANALYZE: {time.perf_counter() - metrics:.1f}s")
    indexed = _text_index(url) if text_index else "not asked for"
    _log(f"  text index: {indexed}")
    ds = Dataset(
        **(asdict(ds) | {"load_seconds": time.perf_counter() - started, "text_index": indexed})
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_MARKER)
        conn.execute(
            "INSERT INTO bench_query_dataset (dataset) VALUES (%s::jsonb)",
            (json.dumps(asdict(ds)),),
        )
    _log(f"  loaded in {ds.load_seconds:.1f}s")
    return url, ds


def _log_params() -> dict[str, Any]:
    vocab, rare = vocabulary(), rare_words()
    return {
        "vocab": vocab,
        "nvocab": len(vocab),
        "rare": rare,
        "nrare": len(rare),
        "rare_p": RARE_FRACTION,
    }
