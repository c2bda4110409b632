"""The query benchmark at a tiny scale: the generator stores what the load runner asks
for, and one run of the CLI answers from a real otlpd, so the tool cannot rot."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from bench.query import generate
from bench.query.__main__ import main
from tests.conftest import PG_SERVER

SCALE = 0.0005  # 500 traces: 5,000 spans and 5,000 logs (plus SESSION_1000's)


def _name(database_url: str) -> str:
    return database_url.rsplit("/", 1)[1]


def _one(url: str, query: str, params: Any = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_the_generator_stores_what_the_dataset_describes(database_url: str) -> None:
    url, ds = generate.ensure_dataset(
        PG_SERVER, scale=SCALE, series=3, database=_name(database_url)
    )
    assert url == database_url
    assert (ds.traces, ds.spans, ds.logs) == (500, 5600, 5400)
    assert _one(url, "SELECT count(*) FROM spans") == ds.spans
    assert _one(url, "SELECT count(*) FROM logs") == ds.logs
    # Every row inside the day it says, in the project the runner asks for.
    assert (
        _one(
            url,
            "SELECT count(*) FROM (SELECT time, project_id FROM spans UNION ALL"
            " SELECT time, project_id FROM logs) r WHERE project_id <> %s"
            " OR time < to_timestamp(%s / 1e9) OR time >= to_timestamp(%s / 1e9)",
            (generate.PROJECT, ds.window_start_ns, ds.window_end_ns),
        )
        == 0
    )

    # A trace computed by id: ten spans, one root, every other span's parent in it.
    tid = generate.trace_id(123)
    assert _one(url, "SELECT count(*) FROM spans WHERE trace_id = %s", (tid,)) == 10
    assert (
        _one(
            url,
            "SELECT count(*) FROM spans c WHERE c.trace_id = %s AND (c.parent_span_id IS NULL OR"
            " EXISTS (SELECT 1 FROM spans p WHERE p.trace_id = c.trace_id"
            " AND p.span_id = c.parent_span_id))",
            (tid,),
        )
        == 10
    )
    assert _one(url, "SELECT span_id FROM spans WHERE trace_id = %s AND parent_span_id IS NULL",
                (tid,)) == generate.span_id(1230)  # fmt: skip
    # One log in ten carries the trace and span of an existing span of the same service.
    assert (
        _one(
            url,
            "SELECT count(*) FROM logs l JOIN spans s ON s.trace_id = l.trace_id"
            " AND s.span_id = l.span_id AND s.service_name = l.service_name",
        )
        == ds.logs // 10
    )

    # The session of exactly 1,000 records, known to the sessions table.
    assert (
        _one(
            url,
            "SELECT (SELECT count(*) FROM spans WHERE session_id = %(s)s)"
            " + (SELECT count(*) FROM logs WHERE session_id = %(s)s)",
            {"s": generate.SESSION_1000},
        )
        == 1000
    )
    assert _one(url, "SELECT count(*) FROM sessions") == ds.sessions + 1
    assert _one(url, "SELECT count(*) FROM services") == len(generate.SERVICES)
    assert _one(url, "SELECT count(*) FROM operations") == 200
    # Common words are in many bodies, rare ones in few.
    common = generate.vocabulary()[0]
    assert _one(url, "SELECT count(*) FROM logs WHERE body #>> '{}' LIKE %s", (f"%{common} %",)) \
        > ds.logs // 10  # fmt: skip

    # Metrics: a point per series per minute; every tenth series restarts (a reset).
    assert _one(url, "SELECT count(*) FROM metric_points") == 2 * 3 * 1440
    drops = _one(
        url,
        "SELECT count(*) FROM (SELECT count - lag(count) OVER (PARTITION BY series_id"
        " ORDER BY time) AS d FROM metric_points WHERE bucket_counts IS NOT NULL) x WHERE d < 0",
    )
    assert drops == 1  # series 0 only, once
    assert _one(url, "SELECT array_length(bucket_counts, 1) FROM metric_points LIMIT 1") == 13
    # And 1-hour rollups for the 29 days before the day of points, cumulative: every
    # hour's first counts at or above the hour before's last (no reset inside the month).
    hours = (generate.ROLLUP_DAYS - 1) * 24
    assert _one(url, "SELECT count(*) FROM metric_rollups_1h") == 2 * 3 * hours
    hour = 3600 * 10**9
    last_hour = ds.window_start_ns // hour * hour - hour
    assert _one(url, "SELECT extract(epoch FROM max(time))::bigint FROM metric_rollups_1h") == (
        last_hour // 10**9
    )
    assert (
        _one(url, "SELECT count(*) FROM metric_rollups_1h WHERE date_trunc('hour', time) <> time")
        == 0
    )
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT series_id, first_bucket_counts, last_bucket_counts FROM metric_rollups_1h"
            " WHERE last_bucket_counts IS NOT NULL ORDER BY series_id, time"
        ).fetchall()
    previous: dict[int, list[int]] = {}
    for series, first, last in rows:
        counts = [int.from_bytes(last[i : i + 8], "big") for i in range(0, len(last), 8)]
        starts = [int.from_bytes(first[i : i + 8], "big") for i in range(0, len(first), 8)]
        assert len(counts) == 13 and all(a <= b for a, b in zip(starts, counts, strict=True))
        assert all(a >= b for a, b in zip(starts, previous.get(series, [0] * 13), strict=True))
        previous[series] = counts

    # Reused, not reloaded, when asked again for the same scale.
    loaded_at = _one(url, "SELECT loaded_at FROM bench_query_dataset")
    started = time.perf_counter()
    _, again = generate.ensure_dataset(PG_SERVER, scale=SCALE, series=3, database=_name(url))
    assert again.traces == ds.traces
    assert _one(url, "SELECT loaded_at FROM bench_query_dataset") == loaded_at
    assert time.perf_counter() - started < 5


def test_a_run_times_each_case_against_a_real_otlpd(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run waits for the RED rollups to reach the newest span, which the default
    # rollup delay (60 s) holds back for a minute; the otlpd it starts inherits these.
    monkeypatch.setenv("OTLPD_ROLLUP_DELAY", "1s")
    monkeypatch.setenv("OTLPD_ROLLUP_INTERVAL", "1s")
    code = main(
        [
            "--pg", PG_SERVER, "--database", _name(database_url), "--scale", str(SCALE),
            "--series", "3", "--clients", "2", "--seconds", "0.2", "--calls", "5",
            "--cases", "GetTrace,ListServices,GetSessionTimeline,SearchLogs trace_id",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code in (0, 1)  # 1: a latency target missed on a busy box, not a broken tool
    rows = {
        cells[0]: cells
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| case")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert set(rows) == {
        "GetTrace",
        "ListServices",
        "GetSessionTimeline 1,000 records",
        "SearchLogs trace_id",
    }
    # items/call: what the answers held, so the calls did what they say.
    assert rows["GetTrace"][6] == "10"
    assert rows["ListServices"][6] == "20"
    assert rows["GetSessionTimeline 1,000 records"][6] == "1,000"
    assert rows["SearchLogs trace_id"][6] == "1"
    for cells in rows.values():
        assert cells[7] == "0"  # no errors
        assert cells[8] in ("PASS", "FAIL")
    assert "Peak RSS of the otlpd process tree" in out
    assert "targets:" in out
