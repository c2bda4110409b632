"""QueryMetrics and ListMetrics end to end: metrics sent as raw OTLP Export requests (with
explicit timestamps) through the real receiver, read back over the query port."""

from __future__ import annotations

import math
import time
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from query import arguments
from query.proto import pb
from tests.conftest import RunningOtlpd

S = 10**9
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
Op = pb.LabelMatcher


def _t0() -> int:
    """A 10-minute boundary (so steps up to 10 min align with it) half an hour or more
    ago: well inside what the receiver accepts."""
    return (time.time_ns() - 1800 * S) // (600 * S) * (600 * S)


def _attrs(labels: dict[str, str]) -> list[common_pb2.KeyValue]:
    return [
        common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
        for k, v in labels.items()
    ]


def _send(
    otlpd: RunningOtlpd, metrics: list[metrics_pb2.Metric], service: str = "svc", project: str = ""
) -> None:
    resource = {"service.name": service, **({"project.id": project} if project else {})}
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    scope = request.resource_metrics.add(
        resource=resource_pb2.Resource(attributes=_attrs(resource))
    ).scope_metrics.add()
    scope.metrics.extend(metrics)
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        answer = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(request, timeout=10)
    assert answer.partial_success.rejected_data_points == 0, answer.partial_success


def _gauge(name: str, points: list[tuple[int, float, dict[str, str]]]) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit="1")
    for t, value, labels in points:
        metric.gauge.data_points.add(time_unix_nano=t, as_double=value, attributes=_attrs(labels))
    return metric


def _sum(
    name: str, points: list[tuple[int, float]], temporality: int, start: int
) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name)
    metric.sum.aggregation_temporality = temporality
    metric.sum.is_monotonic = True
    for t, value in points:
        metric.sum.data_points.add(time_unix_nano=t, start_time_unix_nano=start, as_double=value)
    return metric


def _ts(ns: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ns // S, nanos=ns % S)


def _dur(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)


def _query(name: str, start: int, end: int, step_s: int = 60, **fields: Any) -> pb.MetricQuery:
    return pb.MetricQuery(
        metric_name=name, start_time=_ts(start), end_time=_ts(end), step=_dur(step_s), **fields
    )


def _one(query: Any, q: pb.MetricQuery, project: str = "default") -> pb.MetricResult:
    answer = query.QueryMetrics(
        pb.QueryMetricsRequest(queries=[q]), metadata=(("x-otlpd-project", project),)
    )
    assert len(answer.results) == 1
    result: pb.MetricResult = answer.results[0]
    return result


def _values(series: pb.Series) -> list[float]:
    return [s.value for s in series.samples]


def _refused(query: Any, q: pb.MetricQuery) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        query.QueryMetrics(pb.QueryMetricsRequest(queries=[q]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details: str = caught.value.details()
    return details


BOUNDS = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]


def _bucket_of(value: float, bounds: list[float]) -> tuple[float, float]:
    """The (lower, upper] of the explicit bucket holding ``value``."""
    i = int(np.searchsorted(bounds, value, side="left"))
    lower = bounds[i - 1] if i > 0 else 0.0
    upper = bounds[i] if i < len(bounds) else bounds[-1]
    return lower, upper


def test_histogram_percentiles_agree_with_numpy_within_the_bucket(
    otlpd: RunningOtlpd, query: Any
) -> None:
    rng = np.random.default_rng(3)
    t0 = _t0()
    raw = rng.lognormal(3, 1.2, 3000)
    chunks = np.array_split(raw, 6)  # 3 cumulative points of 2 series, 500 values each
    metric = metrics_pb2.Metric(name="latency", unit="ms")
    metric.histogram.aggregation_temporality = CUMULATIVE
    for s, host in enumerate(("a", "b")):
        counts = np.zeros(len(BOUNDS) + 1, dtype=np.int64)
        for k in range(3):
            chunk = chunks[s * 3 + k]
            counts += np.bincount(
                np.searchsorted(BOUNDS, chunk, side="left"), minlength=len(BOUNDS) + 1
            )
            metric.histogram.data_points.add(
                time_unix_nano=t0 + (10 + 10 * k) * S,
                start_time_unix_nano=t0,
                count=int(counts.sum()),
                bucket_counts=counts.tolist(),
                explicit_bounds=BOUNDS,
                attributes=_attrs({"host": host}),
            )
    _send(otlpd, [metric])
    for aggregation, q in [(pb.AGGREGATION_P50, 50), (pb.AGGREGATION_P90, 90)]:
        result = _one(query, _query("latency", t0, t0 + 60 * S, aggregation=aggregation))
        assert result.type == pb.METRIC_TYPE_HISTOGRAM and result.unit == "ms"
        assert len(result.series) == 1  # percentiles merge all series without group_by
        (value,) = _values(result.series[0])
        lower, upper = _bucket_of(float(np.percentile(raw, q)), BOUNDS)
        assert lower <= value <= upper, (q, value, np.percentile(raw, q))
    # By host: each host's own values.
    result = _one(
        query, _query("latency", t0, t0 + 60 * S, aggregation=pb.AGGREGATION_P99, group_by=["host"])
    )
    by_host = {s.labels["host"]: _values(s)[0] for s in result.series}
    for s, host in enumerate(("a", "b")):
        mine = np.concatenate(chunks[s * 3 : s * 3 + 3])
        lower, upper = _bucket_of(float(np.percentile(mine, 99)), BOUNDS)
        assert lower <= by_host[host] <= upper
    # Observations per second from the histogram's count: 1000 per host over the window.
    rate = _one(
        query,
        _query("latency", t0, t0 + 60 * S, aggregation=pb.AGGREGATION_INCREASE, range=_dur(60)),
    )
    assert len(rate.series) == 2


def test_exponential_histogram_percentiles_agree_with_numpy(
    otlpd: RunningOtlpd, query: Any
) -> None:
    rng = np.random.default_rng(5)
    t0 = _t0()
    raw = rng.lognormal(2, 1, 2000)
    scale = 3
    base = 2 ** (2**-scale)
    index = np.ceil(np.log2(raw) * 2**scale).astype(np.int64) - 1  # (base^i, base^(i+1)]
    offset = int(index.min())
    counts = np.bincount(index - offset)
    metric = metrics_pb2.Metric(name="size")
    metric.exponential_histogram.aggregation_temporality = DELTA
    metric.exponential_histogram.data_points.add(
        time_unix_nano=t0 + 30 * S,
        start_time_unix_nano=t0,
        count=len(raw),
        scale=scale,
        positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(
            offset=offset, bucket_counts=counts.tolist()
        ),
    )
    _send(otlpd, [metric])
    for aggregation, q in [(pb.AGGREGATION_P50, 50), (pb.AGGREGATION_P95, 95)]:
        result = _one(query, _query("size", t0, t0 + 60 * S, aggregation=aggregation))
        assert result.type == pb.METRIC_TYPE_EXPONENTIAL_HISTOGRAM
        (value,) = _values(result.series[0])
        expected = float(np.percentile(raw, q))
        i = math.ceil(math.log2(expected) * 2**scale) - 1
        assert base**i * (1 - 1e-9) <= value <= base ** (i + 1) * (1 + 1e-9), (value, expected)


def test_rate_and_increase_over_a_counter_reset_match_prometheus(
    otlpd: RunningOtlpd, query: Any
) -> None:
    t0 = _t0()
    samples = [
        (t0 + k * S, v)
        for k, v in zip((5, 15, 25, 35, 45, 55), (10, 20, 30, 5, 15, 25), strict=True)
    ]
    _send(otlpd, [_sum("requests", samples, CUMULATIVE, t0)])
    # A 20 s step, which no rollup interval divides: the raw points answer, and the one
    # step [t0 + 40 s, t0 + 60 s) has the window [t0, t0 + 60 s).
    window = {"range": _dur(60), "step_s": 20}
    increase = _one(
        query,
        _query("requests", t0 + 40 * S, t0 + 60 * S, aggregation=pb.AGGREGATION_INCREASE, **window),
    )
    assert increase.resolution == pb.RESOLUTION_RAW
    # Prometheus extrapolatedRate by hand: 25 - 10, plus 30 for the reset = 45 over the 50 s
    # between first and last sample; both are 5 s from the window's edges (< 1.1 x the 10 s
    # interval), so it extrapolates to 60 s: 45 x 60 / 50 = 54; the zero point (50 x 10/45
    # = 11.1 s before the first sample) lies beyond the window's start.
    assert _values(increase.series[0]) == pytest.approx([54.0])
    rate = _one(
        query,
        _query("requests", t0 + 40 * S, t0 + 60 * S, aggregation=pb.AGGREGATION_RATE, **window),
    )
    assert _values(rate.series[0]) == pytest.approx([54.0 / 60])
    assert rate.series[0].samples[0].time.seconds == t0 // S + 40
    # A 1-minute step is served at the rollups' resolution: the same answer.
    minute = _one(
        query,
        _query("requests", t0, t0 + 60 * S, aggregation=pb.AGGREGATION_INCREASE, range=_dur(60)),
    )
    assert minute.resolution == pb.RESOLUTION_1M
    assert _values(minute.series[0]) == pytest.approx([54.0])


def test_delta_sums_are_summed(otlpd: RunningOtlpd, query: Any) -> None:
    t0 = _t0()
    points = [(t0 + 10 * S, 3.0), (t0 + 20 * S, 4.0), (t0 + 70 * S, 5.0)]
    _send(otlpd, [_sum("jobs", points, DELTA, t0)])
    increase = _one(
        query, _query("jobs", t0, t0 + 120 * S, aggregation=pb.AGGREGATION_INCREASE, range=_dur(60))
    )
    assert _values(increase.series[0]) == [7.0, 5.0]
    rate = _one(
        query, _query("jobs", t0, t0 + 120 * S, aggregation=pb.AGGREGATION_RATE, range=_dur(60))
    )
    assert _values(rate.series[0]) == pytest.approx([7 / 60, 5 / 60])
    total = _one(
        query, _query("jobs", t0, t0 + 120 * S, step_s=120, aggregation=pb.AGGREGATION_SUM)
    )
    assert _values(total.series[0]) == [12.0]


def _gauges(otlpd: RunningOtlpd, t0: int) -> None:
    points = []
    for host, region, value in [("a", "eu", 1.0), ("b", "eu", 2.0), ("c", "us", 4.0)]:
        labels = {"host": host, "region": region}
        points += [(t0 + 10 * S, value, labels), (t0 + 20 * S, value * 3, labels)]
    _send(otlpd, [_gauge("cpu", points)])


@pytest.mark.parametrize(
    ("op", "value", "hosts"),
    [
        (Op.OP_EQ, "a", {"a"}),
        (Op.OP_EQ, "z", set()),
        (Op.OP_NEQ, "a", {"b", "c"}),
        (Op.OP_NEQ, "z", {"a", "b", "c"}),
        (Op.OP_RE, "a|b", {"a", "b"}),
        (Op.OP_RE, "a.", set()),  # anchored: "a." does not match "a"
        (Op.OP_NRE, "a|b", {"c"}),
        (Op.OP_NRE, ".*", set()),
    ],
)
def test_each_matcher_op_includes_and_excludes(
    otlpd: RunningOtlpd, query: Any, op: int, value: str, hosts: set[str]
) -> None:
    t0 = _t0()
    _gauges(otlpd, t0)
    matcher = pb.LabelMatcher(name="host", op=op, value=value)
    result = _one(query, _query("cpu", t0, t0 + 60 * S, matchers=[matcher]))
    assert {s.labels["host"] for s in result.series} == hosts


def test_aggregations_group_by_service_label_and_several_queries(
    otlpd: RunningOtlpd, query: Any
) -> None:
    t0 = _t0()
    _gauges(otlpd, t0)
    _send(otlpd, [_gauge("cpu", [(t0 + 15 * S, 100.0, {"host": "d", "region": "us"})])], "other")
    window = (t0, t0 + 60 * S)
    answer = query.QueryMetrics(
        pb.QueryMetricsRequest(
            queries=[
                _query("cpu", *window, aggregation=pb.AGGREGATION_AVG),
                _query("cpu", *window, aggregation=pb.AGGREGATION_SUM, group_by=["region"]),
                _query("cpu", *window, aggregation=pb.AGGREGATION_MAX, group_by=["service.name"]),
                _query("cpu", *window, aggregation=pb.AGGREGATION_COUNT, group_by=["region"]),
                _query("cpu", *window, aggregation=pb.AGGREGATION_LAST, group_by=["region"]),
                _query("cpu", *window, aggregation=pb.AGGREGATION_MIN),
                _query("no_such_metric", *window),
                _query(
                    "cpu",
                    *window,
                    matchers=[pb.LabelMatcher(name="service.name", value="other")],
                ),
            ]
        )
    )
    avg, by_region, by_service, count, last, low, unknown, other = answer.results
    assert {s.labels["host"]: _values(s) for s in avg.series} == {
        "a": [2.0],
        "b": [4.0],
        "c": [8.0],
        "d": [100.0],
    }
    assert avg.series[0].labels["service.name"] in {"svc", "other"}
    assert {s.labels["region"]: _values(s) for s in by_region.series} == {
        "eu": [1 + 3 + 2 + 6.0],
        "us": [4 + 12 + 100.0],
    }
    assert all(set(s.labels) == {"region"} for s in by_region.series)
    assert {s.labels["service.name"]: _values(s) for s in by_service.series} == {
        "svc": [12.0],
        "other": [100.0],
    }
    assert {s.labels["region"]: _values(s) for s in count.series} == {"eu": [4.0], "us": [3.0]}
    # us: c's 12 at t0+20 s is later than d's 100 at t0+15 s; eu: a and b tie at t0+20 s.
    latest = {s.labels["region"]: _values(s) for s in last.series}
    assert latest["us"] == [12.0] and latest["eu"] in ([3.0], [6.0])
    assert sorted(_values(s)[0] for s in low.series) == [1.0, 2.0, 4.0, 100.0]
    assert unknown.metric_name == "no_such_metric" and not unknown.series
    assert [s.labels["host"] for s in other.series] == ["d"]
    assert avg.step.seconds == 60


def test_percentiles_of_a_gauge_are_numpy_percentiles_of_its_samples(
    otlpd: RunningOtlpd, query: Any
) -> None:
    t0 = _t0()
    values = [float(v) for v in np.random.default_rng(1).normal(50, 10, 40)]
    _send(otlpd, [_gauge("temp", [(t0 + (k + 1) * S, v, {}) for k, v in enumerate(values)])])
    result = _one(query, _query("temp", t0, t0 + 60 * S, aggregation=pb.AGGREGATION_P90))
    assert _values(result.series[0]) == pytest.approx([np.percentile(values, 90)])


def test_projects_are_isolated(otlpd: RunningOtlpd, query: Any) -> None:
    t0 = _t0()
    _send(otlpd, [_gauge("cpu", [(t0 + 10 * S, 1.0, {"host": "a"})])], project="p1")
    _send(otlpd, [_gauge("mem", [(t0 + 10 * S, 2.0, {"host": "b"})])], project="p2")
    assert [_values(s) for s in _one(query, _query("cpu", t0, t0 + 60 * S), "p1").series] == [[1.0]]
    assert not _one(query, _query("cpu", t0, t0 + 60 * S), "p2").series
    assert not _one(query, _query("cpu", t0, t0 + 60 * S)).series  # default project
    listed = query.ListMetrics(pb.ListMetricsRequest(), metadata=(("x-otlpd-project", "p2"),))
    assert [m.name for m in listed.metrics] == ["mem"]


def test_list_metrics_with_prefix_and_pages(otlpd: RunningOtlpd, query: Any) -> None:
    t0 = _t0()
    _send(
        otlpd,
        [
            _gauge("http.server.duration", [(t0 + S, 1.0, {"route": "/"})]),
            _gauge("http.client.duration", [(t0 + S, 1.0, {"peer": "x"})]),
            _gauge("http_%_odd", [(t0 + S, 1.0, {})]),
            _sum("jobs", [(t0 + S, 1.0)], DELTA, t0),
        ],
    )
    everything = query.ListMetrics(pb.ListMetricsRequest())
    assert [m.name for m in everything.metrics] == sorted(
        ["http.server.duration", "http.client.duration", "http_%_odd", "jobs"]
    )
    jobs = next(m for m in everything.metrics if m.name == "jobs")
    assert jobs.type == pb.METRIC_TYPE_SUM
    server = next(m for m in everything.metrics if m.name == "http.server.duration")
    assert server.type == pb.METRIC_TYPE_GAUGE and server.unit == "1"
    assert list(server.label_keys) == ["route", "service.name"]
    http = query.ListMetrics(pb.ListMetricsRequest(prefix="http."))
    assert [m.name for m in http.metrics] == ["http.client.duration", "http.server.duration"]
    # "%" and "_" are no wildcards in a prefix.
    assert [m.name for m in query.ListMetrics(pb.ListMetricsRequest(prefix="http_%")).metrics] == [
        "http_%_odd"
    ]
    assert not query.ListMetrics(pb.ListMetricsRequest(prefix="nope")).metrics
    pages, token = [], ""
    while True:
        page = query.ListMetrics(pb.ListMetricsRequest(limit=1, page_token=token))
        pages += [m.name for m in page.metrics]
        token = page.next_page_token
        if not token:
            break
    assert pages == [m.name for m in everything.metrics]
    with pytest.raises(grpc.RpcError) as caught:
        query.ListMetrics(
            pb.ListMetricsRequest(limit=1, prefix="http.", page_token=page_one(query))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def page_one(query: Any) -> str:
    token: str = query.ListMetrics(pb.ListMetricsRequest(limit=1)).next_page_token
    return token


def test_hostile_input_is_refused_naming_the_field(otlpd: RunningOtlpd, query: Any) -> None:
    t0 = _t0()
    _gauges(otlpd, t0)
    negative = _query("cpu", t0, t0 + 60 * S)
    negative.step.seconds = -60
    assert "queries[0].step" in _refused(query, negative)
    assert "queries[0].end_time" in _refused(query, _query("cpu", t0 + 60 * S, t0))
    assert "queries[0].step" in _refused(query, _query("cpu", t0 - 86400 * S, t0, step_s=1))
    bad_regex = _query(
        "cpu", t0, t0 + 60 * S, matchers=[pb.LabelMatcher(op=Op.OP_RE, name="h", value="(")]
    )
    assert "queries[0].matchers[0].value" in _refused(query, bad_regex)
    assert "queries[0].metric_name" in _refused(query, _query("", t0, t0 + 60 * S))
    assert "queries[0].metric_name" in _refused(query, _query("x" * 256, t0, t0 + 60 * S))
    zero_range = _query("cpu", t0, t0 + 60 * S, aggregation=pb.AGGREGATION_RATE, range=_dur(0))
    assert "queries[0].range" in _refused(query, zero_range)
    hostile = _query(
        "cpu' OR 1=1 --",
        t0,
        t0 + 60 * S,
        matchers=[pb.LabelMatcher(name="host'); DROP TABLE metric_series; --", value="%_\\")],
    )
    assert not _one(query, hostile).series
    sql_in_value = _query(
        "cpu", t0, t0 + 60 * S, matchers=[pb.LabelMatcher(name="host", value="a' OR '1'='1")]
    )
    assert not _one(query, sql_in_value).series
    assert len(_one(query, _query("cpu", t0, t0 + 60 * S)).series) == 3  # still there
    with pytest.raises(grpc.RpcError) as caught:
        query.ListMetrics(pb.ListMetricsRequest(limit=10**9))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_series_that_changes_its_bucket_bounds_is_read_per_layout(
    otlpd: RunningOtlpd, query: Any
) -> None:
    """The same series, three layouts (two of the same bucket count): each step's
    percentile comes from the bounds its own points had."""
    t0 = _t0()
    metric = metrics_pb2.Metric(name="relaid", unit="ms")
    metric.histogram.aggregation_temporality = DELTA
    layouts = [([1.0, 2.0, 3.0], [0, 10, 0, 0]), ([10.0, 20.0, 30.0], [0, 10, 0, 0])]
    layouts.append(([5.0, 50.0], [0, 10, 0]))
    for k, (bounds, counts) in enumerate(layouts):
        metric.histogram.data_points.add(
            time_unix_nano=t0 + (60 * k + 30) * S,
            start_time_unix_nano=t0 + 60 * k * S,
            count=sum(counts),
            bucket_counts=counts,
            explicit_bounds=bounds,
        )
    _send(otlpd, [metric])
    result = _one(query, _query("relaid", t0, t0 + 180 * S, aggregation=pb.AGGREGATION_P50))
    (series,) = result.series
    values = _values(series)
    assert len(values) == 3, values
    assert 1.0 <= values[0] <= 2.0
    assert 10.0 <= values[1] <= 20.0
    assert 5.0 <= values[2] <= 50.0


@pytest.mark.parametrize("seed", range(8))
def test_histogram_increments_of_many_series_at_once_equal_series_by_series(seed: int) -> None:
    """The vectorized merge (every series of one layout at once) against the per-series
    path it replaces, on random cumulative and delta series with resets, restarts,
    duplicate points and points outside the window."""
    from query import metrics as m
    from query.aggregate import bucket_sums
    from storage.postgres.metric_reader import HistogramPoints, SeriesRow

    rng = np.random.default_rng(seed)
    step = 60 * S
    start, end = 1_000 * step, 1_100 * step
    plan = m._Plan(
        name="h",
        matchers=(),
        window=arguments.TimeRange(start, end),
        step_ns=step,
        aggregation=pb.AGGREGATION_P95,
        group_by=(),
        range_ns=None,
        field="queries[0]",
    )
    grid = plan.grid
    group, by_id = [], {}
    for series_id in range(12):
        n = int(rng.integers(0, 150))
        times = np.sort(rng.integers(plan.read_from_ns - 5 * step, end + 5 * step, n))
        if n > 3:
            times[2] = times[1]  # a point stored twice
        starts = np.full(n, plan.read_from_ns - 7 * step if series_id % 3 else start + step)
        counts = np.cumsum(rng.integers(0, 5, (n, 5)), axis=0)
        if n > 10:
            counts[n // 2 :] -= counts[n // 2]  # a reset half-way
            starts[n // 2 :] += 1
        group.append(HistogramPoints(series_id, [1.0, 2.0, 4.0, 8.0], times, starts, counts))
        temporality = 1 if series_id % 4 == 0 else 2
        by_id[series_id] = SeriesRow(series_id, 3, "ms", temporality, None, "svc", {})
    expected = np.zeros((grid.size, 5))
    for item in group:
        times, increments = m._increments(
            plan, by_id[item.series_id], item.times, item.starts, item.counts.astype(np.float64)
        )
        expected += bucket_sums(grid, times, increments)
    np.testing.assert_allclose(m._merged_increments(plan, grid, group, by_id), expected)
