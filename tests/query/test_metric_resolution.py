"""QueryMetrics over seven days answers from the rollups, and agrees with the raw points.

Seven days of every kind of metric, counters with resets included, sent through the real
OTLP receiver (which accepts eight days back here, in daily partitions), rolled up by
the real job. Two otlpd serve the same database: one with the default rollup retentions,
which answers from the rollups, and one whose rollup retentions (1 s) cannot cover the
range, which must answer from the raw points: the answers are compared while both exist,
then again once the raw points have been tiered away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from otlpd.scheduler import Scheduler
from query.proto import pb, pb_grpc
from storage.objectstore import open_store
from storage.postgres.metric_rollups import MetricRollupJob, final_until
from storage.postgres.partitions import PartitionManager
from storage.postgres.tiering import TierJob
from tests.conftest import RunningOtlpd, start_otlpd_thread
from tests.query.test_metrics import CUMULATIVE, DELTA, S, _attrs, _dur, _gauge, _send, _sum, _ts

MINUTE, HOUR, DAY = 60 * S, 3600 * S, 86400 * S
NOW = time.time_ns()
END = NOW // HOUR * HOUR + HOUR  # the range ends with the current hour
START = END - 7 * DAY
STEP = 5 * MINUTE  # one point every five minutes, up to two minutes ago
TIMES = list(range(START, NOW - 2 * MINUTE, STEP))
BOUNDS = [5.0, 10.0, 25.0, 50.0, 100.0]


def metrics() -> list[list[metrics_pb2.Metric]]:
    """The week, in requests of a day: two counters that reset (one at an hour's first
    point), two gauges, a delta sum, a cumulative histogram that restarts with a new
    start time, and an exponential histogram whose scale drops."""
    rng = np.random.default_rng(11)
    value = {"a": 0.0, "b": 0.0}
    resets = {"a": START + 2 * DAY + 17 * MINUTE, "b": START + 5 * DAY}
    counts, start = np.zeros(len(BOUNDS) + 1, dtype=np.int64), START - MINUTE
    pos = np.zeros(16, dtype=np.int64)
    days: list[list[metrics_pb2.Metric]] = []
    for day in range(8):
        mine = [t for t in TIMES if START + day * DAY <= t < START + (day + 1) * DAY]
        if not mine:
            continue
        counter_points: dict[str, list[tuple[int, float]]] = {"a": [], "b": []}
        gauge, deltas = [], []
        histogram = metrics_pb2.Metric(name="latency", unit="ms")
        histogram.histogram.aggregation_temporality = CUMULATIVE
        exponential = metrics_pb2.Metric(name="payload", unit="By")
        exponential.exponential_histogram.aggregation_temporality = CUMULATIVE
        for t in mine:
            for host in ("a", "b"):
                value[host] = 4.0 if t == resets[host] else value[host] + float(rng.integers(0, 50))
                counter_points[host].append((t, value[host]))
                gauge.append((t, float(rng.normal(20, 5)), {"host": host}))
            deltas.append((t, float(rng.integers(0, 9))))
            if t == START + 3 * DAY + 40 * MINUTE:  # a restart: new start time, from zero
                counts, start = np.zeros(len(BOUNDS) + 1, dtype=np.int64), t - MINUTE
            counts = counts + rng.integers(0, 30, len(BOUNDS) + 1)
            histogram.histogram.data_points.add(
                time_unix_nano=t,
                start_time_unix_nano=start,
                count=int(counts.sum()),
                bucket_counts=counts.tolist(),
                explicit_bounds=BOUNDS,
            )
            pos = pos + rng.integers(0, 9, 16)
            scale, offset, buckets = 4, 32, pos
            if t >= START + 4 * DAY + 30 * MINUTE:  # downscaled by the SDK
                scale, offset, buckets = 3, 16, pos[0::2] + pos[1::2]
            exponential.exponential_histogram.data_points.add(
                time_unix_nano=t,
                start_time_unix_nano=START - MINUTE,
                count=int(pos.sum()),
                scale=scale,
                positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(
                    offset=offset, bucket_counts=buckets.tolist()
                ),
            )
        counters = []
        for host in ("a", "b"):
            metric = _sum("requests", counter_points[host], CUMULATIVE, START - MINUTE)
            for point in metric.sum.data_points:
                point.attributes.extend(_attrs({"host": host}))
            counters.append(metric)
        days.append(
            [
                *counters,
                _gauge("temp", gauge),
                _sum("jobs", deltas, DELTA, START),
                histogram,
                exponential,
            ]
        )
    return days


def serve(url: str, **settings: str) -> RunningOtlpd:
    return start_otlpd_thread(
        url,
        scheduler="false",
        accept_past="8d",
        partition_interval="1d",
        max_loop_lag="10s",
        **settings,
    )


def stub(server: RunningOtlpd) -> Any:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}")
    return pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def servers(
    shared_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    cold = tmp_path_factory.mktemp("cold")
    rollups = serve(shared_database, cold_url=cold.as_uri())
    raw = serve(
        shared_database, cold_url=cold.as_uri(), rollup_retention_1m="1s", rollup_retention_1h="1s"
    )
    try:
        for day in metrics():
            _send(rollups, day)
        yield {
            "url": shared_database,
            "rollups": stub(rollups),
            "raw": stub(raw),
            "cold": cold,
        }
    finally:
        raw.stop()
        rollups.stop()


def ask(query: Any, name: str, step: int, aggregation: int, **fields: Any) -> pb.MetricResult:
    q = pb.MetricQuery(
        metric_name=name,
        start_time=_ts(START),
        end_time=_ts(END),
        step=_dur(step // S),
        aggregation=aggregation,
        **fields,
    )
    (result,) = query.QueryMetrics(pb.QueryMetricsRequest(queries=[q])).results
    return result  # type: ignore[no-any-return]


def samples(result: pb.MetricResult) -> dict[tuple[tuple[str, str], ...], dict[int, float]]:
    return {
        tuple(sorted(s.labels.items())): {x.time.seconds: x.value for x in s.samples}
        for s in result.series
    }


QUERIES = [
    ("temp", pb.AGGREGATION_AVG, {}),
    ("temp", pb.AGGREGATION_SUM, {"group_by": ["service.name"]}),
    ("temp", pb.AGGREGATION_MIN, {}),
    ("temp", pb.AGGREGATION_MAX, {}),
    ("temp", pb.AGGREGATION_COUNT, {}),
    ("temp", pb.AGGREGATION_LAST, {"group_by": ["host"]}),
    ("requests", pb.AGGREGATION_RATE, {}),
    ("requests", pb.AGGREGATION_INCREASE, {"group_by": ["service.name"]}),
    ("requests", pb.AGGREGATION_INCREASE, {"range": _dur(3 * 3600)}),
    ("jobs", pb.AGGREGATION_INCREASE, {}),
    ("latency", pb.AGGREGATION_RATE, {}),
    ("latency", pb.AGGREGATION_AVG, {}),
    ("latency", pb.AGGREGATION_P50, {}),
    ("latency", pb.AGGREGATION_P99, {}),
    ("payload", pb.AGGREGATION_P95, {}),
]


def compare(servers: dict[str, Any], step: int, expected: int) -> dict[Any, Any]:
    """Every query at ``step`` from both servers: the rollups' server says ``expected``,
    the other RAW, and their answers agree."""
    answers = {}
    for name, aggregation, fields in QUERIES:
        raw = ask(servers["raw"], name, step, aggregation, **fields)
        rolled = ask(servers["rollups"], name, step, aggregation, **fields)
        assert raw.resolution == pb.RESOLUTION_RAW
        assert rolled.resolution == expected, (name, aggregation)
        want, got = samples(raw), samples(rolled)
        assert want, (name, aggregation)
        assert got.keys() == want.keys(), (name, aggregation)
        for labels, values in want.items():
            assert got[labels].keys() == values.keys(), (name, aggregation, labels)
            for t, v in values.items():
                assert got[labels][t] == pytest.approx(v, rel=1e-9, abs=1e-9), (
                    name,
                    aggregation,
                    t,
                )
        answers[name, aggregation, str(fields)] = got
    return answers


def test_seven_days_from_the_rollups_agree_with_the_points_then_outlive_them(
    servers: dict[str, Any],
) -> None:
    url = servers["url"]
    # Before the job's first round: the resolution is the step's all the same, and every
    # part of the range is read from the points.
    compare(servers, HOUR, pb.RESOLUTION_1H)

    job = MetricRollupJob(url, PartitionManager(url), delay=0, chunks_per_round=1000)
    assert asyncio.run(Scheduler(url, [job]).run_once(job))
    assert not job.last.more and job.last.hours >= 7 * 24
    # From 1-hour rows for the week, 1-minute rows for this hour, then the points.
    before = compare(servers, HOUR, pb.RESOLUTION_1H)
    increases = before["requests", pb.AGGREGATION_INCREASE, str({"group_by": ["service.name"]})]
    (per_hour,) = increases.values()
    assert len(per_hour) >= 7 * 24 - 1  # every hour of the week, resets included
    # Five-minute steps over the last two hours: the 1-minute rollups.
    compare_recent(servers, 5 * MINUTE, pb.RESOLUTION_1M)

    # Tier the week's points (their rollups are final), as OTLPD_HOT_RETENTION_METRICS
    # would: the rollups alone give the same answers.
    tier = TierJob(
        url,
        lambda: open_store(Path(servers["cold"]).as_uri()),
        {"metric_points": 2 * 3600.0},
        final_until=final_until,
    )
    assert asyncio.run(Scheduler(url, [tier]).run_once(tier))
    assert tier.last.partitions >= 6  # every day but today's
    for name, aggregation, fields in QUERIES:
        after = ask(servers["rollups"], name, HOUR, aggregation, **fields)
        assert after.resolution == pb.RESOLUTION_1H
        want = before[name, aggregation, str(fields)]
        got = samples(after)
        assert got.keys() == want.keys()
        for labels, values in want.items():
            assert got[labels] == pytest.approx(values, rel=1e-9, abs=1e-9), (name, aggregation)
    # The other server reads the points, now mostly Parquet: the same answers.
    compare(servers, HOUR, pb.RESOLUTION_1H)
    # The rollups' server reads no object: the raw part of its answers is hot.
    q = pb.MetricQuery(
        metric_name="temp", start_time=_ts(START), end_time=_ts(END), step=_dur(HOUR // S)
    )
    for server, read_cold in (("raw", True), ("rollups", False)):
        answer = servers[server].QueryMetrics(pb.QueryMetricsRequest(queries=[q]))
        assert answer.HasField("cold") == read_cold, server


def compare_recent(servers: dict[str, Any], step: int, expected: int) -> None:
    """The counters' increase in 10-minute windows over the last two hours, from both."""
    q = pb.MetricQuery(
        metric_name="requests",
        start_time=_ts(END - 2 * HOUR),
        end_time=_ts(END),
        step=_dur(step // S),
        aggregation=pb.AGGREGATION_INCREASE,
        range=_dur(600),
    )
    rolled = servers["rollups"].QueryMetrics(pb.QueryMetricsRequest(queries=[q])).results[0]
    raw = servers["raw"].QueryMetrics(pb.QueryMetricsRequest(queries=[q])).results[0]
    assert (rolled.resolution, raw.resolution) == (expected, pb.RESOLUTION_RAW)
    want, got = samples(raw), samples(rolled)
    assert want and got.keys() == want.keys()
    for labels, values in want.items():
        assert got[labels] == pytest.approx(values, rel=1e-9)


@pytest.mark.parametrize(
    ("step", "aggregation", "name"),
    [
        (30 * S, pb.AGGREGATION_AVG, "temp"),  # no rollup interval divides 30 s
        (90 * S, pb.AGGREGATION_INCREASE, "requests"),  # nor 90 s
        (HOUR, pb.AGGREGATION_P95, "temp"),  # percentiles of a gauge need its values
    ],
)
def test_what_no_rollup_serves_is_answered_from_the_points(
    servers: dict[str, Any], step: int, aggregation: int, name: str
) -> None:
    q = pb.MetricQuery(
        metric_name=name,
        start_time=_ts(NOW - 20 * MINUTE),
        end_time=_ts(NOW),
        step=_dur(step // S),
        aggregation=aggregation,
    )
    result = servers["rollups"].QueryMetrics(pb.QueryMetricsRequest(queries=[q])).results[0]
    assert result.resolution == pb.RESOLUTION_RAW
    assert result.series  # the last points are hot whatever else happened
