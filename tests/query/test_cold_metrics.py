"""QueryMetrics over the cold tier: raw points sent through the OTLP receiver 50 h ago and
3 h ago, tiered to Parquet, answer as they did from PostgreSQL; a counter whose points lie
in both tiers is computed across the boundary; a series whose ``metric_series`` row was
pruned is still found in the objects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psycopg
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from query.proto import pb, pb_grpc
from tests.conftest import RunningOtlpd, start_otlpd_thread
from tests.query.conftest import HOUR_NS, OLD_HOUR_NS, ColdTierServer, without_ids
from tests.query.test_metrics import (
    BOUNDS,
    CUMULATIVE,
    DELTA,
    S,
    _dur,
    _gauge,
    _send,
    _sum,
    _ts,
)
from tests.storage.test_prune import wait_untouched

Op = pb.LabelMatcher
TOUCH = 1.0  # the server's OTLPD_TOUCH_INTERVAL: pruning waits twice this
# The hour that starts 2 h before the current one is always past the 2 h hot retention of
# points (its end is at most now - 2 h); the next one never is.
BOUNDARY_NS = time.time_ns() // HOUR_NS * HOUR_NS - 2 * HOUR_NS


@pytest.fixture
def cold_metrics(database_url: str, tmp_path: Path) -> Iterator[ColdTierServer]:
    """otlpd taking points 53 h old with its jobs off (no rollups: every answer here is
    the raw points'), its cold tier a directory; tiering and pruning run by hand."""
    store_url = (tmp_path / "cold").as_uri()
    server = start_otlpd_thread(
        database_url,
        accept_past="53h",
        cold_url=store_url,
        scheduler="false",
        touch_interval=f"{TOUCH}s",
    )
    deadline = time.monotonic() + 30
    while server.metric("otlpd_partitions_missing") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as channel:
            yield ColdTierServer(server, store_url, pb_grpc.QueryServiceStub(channel))  # type: ignore[no-untyped-call]
    finally:
        server.stop()


def _histogram(name: str, at: int, samples: np.ndarray, host: str) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit="ms")
    metric.histogram.aggregation_temporality = DELTA
    counts = np.bincount(np.searchsorted(BOUNDS, samples, side="left"), minlength=len(BOUNDS) + 1)
    point = metric.histogram.data_points.add(
        time_unix_nano=at,
        start_time_unix_nano=at - 10 * S,
        count=len(samples),
        sum=float(samples.sum()),
        bucket_counts=counts.tolist(),
        explicit_bounds=BOUNDS,
    )
    point.attributes.add(key="host").value.string_value = host
    return metric


def _exponential(name: str, at: int, samples: np.ndarray) -> metrics_pb2.Metric:
    scale = 3
    index = np.ceil(np.log2(samples) * 2**scale).astype(np.int64) - 1
    offset = int(index.min())
    metric = metrics_pb2.Metric(name=name)
    metric.exponential_histogram.aggregation_temporality = DELTA
    metric.exponential_histogram.data_points.add(
        time_unix_nano=at,
        start_time_unix_nano=at - 10 * S,
        count=len(samples),
        scale=scale,
        positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(
            offset=offset, bucket_counts=np.bincount(index - offset).tolist()
        ),
    )
    return metric


def _send_all(server: RunningOtlpd) -> None:
    """Ten minutes of every kind of point in the old hour, and a counter around the
    boundary of the tiers (with a reset 5 s after it)."""
    rng = np.random.default_rng(11)
    old = OLD_HOUR_NS + 60 * S
    for k in range(60):
        at = old + k * 10 * S
        _send(
            server,
            [
                _gauge(
                    "temperature", [(at, 20 + k % 7 + i, {"host": h}) for i, h in enumerate("abc")]
                ),
                _sum("requests", [(at, 5.0 * k)], CUMULATIVE, old - 10 * S),
                _histogram("latency", at, rng.lognormal(3, 1, 50), host="ab"[k % 2]),
                _exponential("size", at, rng.lognormal(2, 1, 50)),
            ],
            service="api" if k % 3 else "worker",
        )
    around = [(BOUNDARY_NS + k * 10 * S, float(k + 60 if k < 1 else k)) for k in range(-30, 30)]
    _send(server, [_sum("jobs", around, CUMULATIVE, BOUNDARY_NS - HOUR_NS)], service="batch")


def _query(name: str, start: int, end: int, **fields: Any) -> pb.MetricQuery:
    # A 20 s step, which no rollup interval divides: the raw points answer.
    return pb.MetricQuery(
        metric_name=name, start_time=_ts(start), end_time=_ts(end), step=_dur(20), **fields
    )


OLD = (OLD_HOUR_NS + 60 * S, OLD_HOUR_NS + 11 * 60 * S)
QUERIES = [
    _query("temperature", *OLD, aggregation=pb.AGGREGATION_AVG, group_by=["host"]),
    _query(
        "temperature",
        *OLD,
        aggregation=pb.AGGREGATION_MAX,
        matchers=[Op(name="host", op=Op.OP_RE, value="a|c")],
    ),
    _query(
        "temperature",
        *OLD,
        aggregation=pb.AGGREGATION_P50,
        range=_dur(60),
        matchers=[Op(name="service.name", op=Op.OP_NEQ, value="worker")],
    ),
    _query("requests", *OLD, aggregation=pb.AGGREGATION_RATE, range=_dur(60)),
    _query("latency", *OLD, aggregation=pb.AGGREGATION_P95, range=_dur(60), group_by=["host"]),
    _query("size", *OLD, aggregation=pb.AGGREGATION_P50, range=_dur(60)),
    _query(
        "jobs",
        BOUNDARY_NS - 4 * 60 * S,
        BOUNDARY_NS + 4 * 60 * S,
        aggregation=pb.AGGREGATION_INCREASE,
        range=_dur(60),
    ),
]


def _ask(server: ColdTierServer, project: str = "default") -> pb.QueryMetricsResponse:
    answer: pb.QueryMetricsResponse = server.query.QueryMetrics(
        pb.QueryMetricsRequest(queries=QUERIES), metadata=(("x-otlpd-project", project),)
    )
    return answer


def _tier(server: ColdTierServer) -> Any:
    moved = server.tier()
    assert moved.partitions >= 2  # the old hour's points, the hour before the boundary's
    return moved


def test_raw_answers_are_the_same_after_tiering(cold_metrics: ColdTierServer) -> None:
    _send_all(cold_metrics.server)
    before = _ask(cold_metrics)
    for result in before.results:
        assert result.resolution == pb.RESOLUTION_RAW
        assert result.series and all(s.samples for s in result.series), result.metric_name
    assert [len(r.series) for r in before.results] == [3, 4, 1, 2, 2, 1, 1]
    assert not before.HasField("cold")

    _tier(cold_metrics)
    after = _ask(cold_metrics)
    assert after.cold.objects >= 2
    assert without_ids(after) == without_ids(before)
    # The counter grows by 1 every 10 s, a reset to 1 just past the tiers' boundary
    # included: 6 a minute in every window, those that hold points of both tiers too.
    jobs = after.results[-1].series[0]
    assert [s.value for s in jobs.samples] == pytest.approx([6.0] * 24)


def test_a_series_pruned_from_postgresql_is_found_in_the_objects(
    cold_metrics: ColdTierServer,
) -> None:
    _send_all(cold_metrics.server)
    before = _ask(cold_metrics)
    _tier(cold_metrics)
    url = cold_metrics.server.database_url
    wait_untouched(url, TOUCH)
    _prune(url)
    with psycopg.connect(url) as conn:
        (left,) = conn.execute(
            "SELECT count(*) FROM metric_series WHERE metric_name = 'temperature'"
        ).fetchone() or (None,)
    assert left == 0  # no hot partition holds its points any more
    assert without_ids(_ask(cold_metrics)) == without_ids(before)


def test_other_projects_see_none_of_the_cold_points(cold_metrics: ColdTierServer) -> None:
    _send_all(cold_metrics.server)
    _tier(cold_metrics)
    other = _ask(cold_metrics, project="elsewhere")
    assert [len(r.series) for r in other.results] == [0] * len(QUERIES)


def _prune(url: str) -> None:
    from otlpd.scheduler import Scheduler
    from storage.postgres.prune import PruneJob

    job = PruneJob(touch_interval=TOUCH)
    assert asyncio.run(Scheduler(url, [job]).run_once(job))
