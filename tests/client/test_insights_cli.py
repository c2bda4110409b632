"""``otlpd stats``, ``graph``, ``latency``, ``anomalies``, ``spikes`` and ``patterns``.

The renderers first, from hand-made messages (no server); then every command as
``main(argv)`` in this process against one real otlpd per module, whose data is sent
through its OTLP gRPC receiver once, before the first test: three services calling each
other in the last ten minutes (payments failing half the time) against a quiet baseline
of payments half an hour earlier, log records of a few templates, and a gauge with one
spike.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from otlpd.__main__ import main
from otlpd.client import render
from query.proto import pb, pb_grpc
from tests.conftest import RunningOtlpd, start_otlpd_thread

MS = 10**6
SECOND = 10**9
MINUTE = 60 * SECOND
T0 = 1_700_000_000 * SECOND  # 2023-11-14T22:13:20Z
COLUMNS = re.compile(r"\s{2,}")


def cells(line: str) -> list[str]:
    """A table row's cells (columns are two or more spaces apart)."""
    return COLUMNS.split(line.strip())


# ---- renderers -----------------------------------------------------------------------


def test_percentages_rates_and_quantiles_read_in_human_units() -> None:
    assert [render.percent_text(r) for r in (0, 0.5, 1 / 3, 0.001234, 1)] == [
        "0%",
        "50%",
        "33.3%",
        "0.123%",
        "100%",
    ]
    assert [render.rate_text(r) for r in (0, 16 / 900, 2.5, 12_345.6)] == [
        "0",
        "0.0178",
        "2.5",
        "12346",
    ]
    assert [render.quantile_name(q) for q in (0.5, 0.9, 0.95, 0.99, 0.999)] == [
        "p50",
        "p90",
        "p95",
        "p99",
        "p99.9",
    ]


def test_edges_are_one_line_each_busiest_first_numbers_aligned() -> None:
    edge = pb.ServiceEdge(caller="checkout", callee="payments", calls=16, errors=8)
    edge.p95.FromNanoseconds(12_300_000)
    assert render.edge_line(edge) == "checkout -> payments  calls=16 errors=8 (50%) p95=12.3ms"
    busy = pb.ServiceEdge(caller="web", callee="checkout", calls=24)
    busy.p95.FromNanoseconds(2 * SECOND)
    assert render.graph_lines([edge, busy]).splitlines() == [
        "web -> checkout       calls=24 errors=0 (0%) p95=2s",
        "checkout -> payments  calls=16 errors=8 (50%) p95=12.3ms",
    ]
    assert render.graph_lines([]) == "no edges"


def test_latency_histogram_draws_bars_and_marks_percentiles_on_their_bins() -> None:
    response = pb.GetLatencyHistogramResponse(count=11)
    for lower, upper, count in ((1, 2, 2), (2, 4, 8), (4, 8, 0), (8, 0, 1)):
        b = response.bins.add(count=count)
        b.lower.FromNanoseconds(lower * MS)
        if upper:
            b.upper.FromNanoseconds(upper * MS)
    for quantile, value_ms, index in ((0.5, 3, 1), (0.95, 3.5, 1), (0.99, 9, 3)):
        p = response.percentiles.add(quantile=quantile, bin=index)
        p.value.FromNanoseconds(round(value_ms * MS))
    response.min.FromNanoseconds(1 * MS)
    response.mean.FromNanoseconds(3 * MS)
    response.max.FromNanoseconds(9 * MS)
    assert render.latency_histogram(response, "payments charge", width=8).splitlines() == [
        "payments charge",
        "1ms .. 2ms  2  ██",
        "2ms .. 4ms  8  ████████  p50=3ms p95=3.5ms",
        "4ms .. 8ms  0",
        "8ms .. ∞    1  █         p99=9ms",
        "count 11  min 1ms  mean 3ms  max 9ms",
    ]
    assert render.latency_histogram(pb.GetLatencyHistogramResponse(), "idle") == "idle\nno spans"


def _stats(requests: int, errors: int, *, p50_ms: float = 0, rate: float = 0) -> pb.RedStats:
    stats = pb.RedStats(
        requests=requests,
        errors=errors,
        request_rate=rate,
        error_rate=errors / requests if requests else 0,
    )
    for name, factor in (("p50", 1), ("p95", 2), ("p99", 3)):
        getattr(stats, name).FromNanoseconds(round(p50_ms * factor * MS))
    return stats


def test_stats_table_indents_operations_and_draws_the_rate() -> None:
    response = pb.GetServiceStatsResponse()
    response.step.FromSeconds(60)
    payments = response.services.add(
        service="payments", stats=_stats(16, 8, p50_ms=10, rate=16 / 900)
    )
    charge = payments.operations.add(
        operation="charge", span_kind=2, stats=_stats(16, 8, p50_ms=10, rate=16 / 900)
    )
    payments.operations.add(operation="refunds", span_kind=5, stats=_stats(0, 0))
    for i, rate in enumerate((0.0, 0.5, 1.0)):
        for target in (payments.points, charge.points):
            point = target.add(stats=_stats(1, 0, rate=rate))
            point.time.FromNanoseconds(T0 + i * MINUTE)
    idle = response.services.add(service="idle", stats=_stats(0, 0))
    idle.points.add(stats=_stats(0, 0))
    lines = render.stats_table(response, T0).splitlines()
    assert cells(lines[0]) == [
        "SERVICE", "REQUESTS", "REQ/S", "ERROR%", "P50", "P95", "P99", "RATE (step 1m)"
    ]  # fmt: skip
    assert cells(lines[1]) == ["payments", "16", "0.0178", "50%", "10ms", "20ms", "30ms", "▁▅█"]
    assert lines[2].startswith("  charge ") and cells(lines[2])[1:] == cells(lines[1])[1:]
    # No requests: no percentiles, not zero ones; a consumer operation says so.
    assert cells(lines[3]) == ["refunds (consumer)", "0", "0", "-", "-", "-", "-"]
    assert cells(lines[4])[:2] == ["idle", "0"]
    assert len(lines) == 5  # the rollups are complete: nothing said about them
    assert render.stats_table(pb.GetServiceStatsResponse(), T0) == "no services"


def test_completeness_is_said_only_when_the_rollups_stop_short() -> None:
    until = pb.GetServiceStatsResponse().complete_until
    assert render.completeness(until, T0) == ""  # unset: nothing known
    until.FromNanoseconds(T0 - 20 * SECOND)
    assert render.completeness(until, T0) == "rollups complete until 22:13:00 UTC"
    assert render.completeness(until, T0 - 20 * SECOND) == ""
    until.FromNanoseconds(T0 - 23 * 3600 * SECOND)  # the day before the end's
    assert render.completeness(until, T0) == "rollups complete until 2023-11-13T23:13:20.000Z"
    response = pb.GetErrorSpikesResponse(complete_until=until)
    assert render.spikes_report(response, T0).splitlines() == [
        "no error spikes",
        "rollups complete until 2023-11-13T23:13:20.000Z",
    ]


def test_anomaly_report_marks_the_anomalous_points_and_lists_the_intervals() -> None:
    response = pb.DetectAnomaliesResponse()
    response.step.FromSeconds(60)
    spiky = response.series.add()
    spiky.labels["service.name"] = "worker"
    for i, value in enumerate((1.0, 1.0, 9.0, 1.0)):
        point = spiky.points.add(value=value, scored=True, anomalous=i == 2)
        point.time.FromNanoseconds(T0 + i * MINUTE)
    interval = spiky.intervals.add(max_zscore=12.25, max_robust_score=40)
    interval.start_time.FromNanoseconds(T0 + 2 * MINUTE)
    interval.end_time.FromNanoseconds(T0 + 3 * MINUTE)
    flat = response.series.add()
    flat.points.add(value=1.0).time.FromNanoseconds(T0)
    assert render.anomaly_report(response).splitlines() == [
        "step 1m",
        '  {service.name="worker"}',
        "    ▁▁█▁",
        "      ^",
        "    2023-11-14T22:13:20.000Z .. 2023-11-14T22:16:20.000Z  (4 points)",
        "    anomaly 2023-11-14T22:15:20.000Z .. 2023-11-14T22:16:20.000Z"
        "  max z 12.2  max robust 40",
        "  {}",
        "    ▁",
        "    2023-11-14T22:13:20.000Z .. 2023-11-14T22:13:20.000Z  (1 points)",
        "    no anomalies",
    ]
    assert render.anomaly_report(pb.DetectAnomaliesResponse()).splitlines()[1] == "  no data"


def test_spikes_report_ranks_spikes_with_operations_and_truncated_examples() -> None:
    spike = pb.ErrorSpike(
        service="payments", requests=16, errors=8, error_rate=0.5, baseline_requests=30,
        baseline_errors=1, baseline_error_rate=1 / 30, excess_errors=7.47, zscore=4.5,
    )  # fmt: skip
    spike.operations.add(operation="charge", requests=16, errors=8, error_rate=0.5)
    spike.example_spans.add(name="charge", status_message="declined", trace_id=bytes(16))
    log = spike.example_logs.add(severity_number=17)
    log.body.string_value = "card declined\n" + "x" * 200
    response = pb.GetErrorSpikesResponse(spikes=[spike, pb.ErrorSpike(service="web")])
    lines = render.spikes_report(response, T0).splitlines()
    assert lines[0] == (
        "1. payments  errors 8 of 16 (50%), baseline 3.33% (1 of 30)  excess 7.47  z 4.5"
    )
    assert lines[1].startswith("     charge  errors 8 of 16 (50%), baseline 0% (0 of 0)")
    assert lines[2] == f"     span  charge: declined  trace={'00' * 16}"
    assert lines[3].startswith("     log   ERROR card declined\\n")
    assert lines[3].endswith("x…") and len(lines[3]) == len("     log   ERROR ") + 80
    assert lines[4].startswith("2. web  errors 0 of 0")


def test_patterns_table_says_when_it_sampled_and_marks_new_templates() -> None:
    response = pb.GetLogPatternsResponse(total_records=7)
    response.patterns.add(template="user <NUM> logged in", count=3, new=True)
    response.patterns.add(template="payment declined for order <NUM>", count=2)
    lines = render.patterns_table(response).splitlines()
    assert lines[0] == "7 records"
    assert [cells(line) for line in lines[1:]] == [
        ["COUNT", "NEW", "TEMPLATE"],
        ["3", "NEW", "user <NUM> logged in"],
        ["2", "payment declined for order <NUM>"],
    ]
    assert lines[3].index("payment") == lines[1].index("TEMPLATE")
    sampled = pb.GetLogPatternsResponse(
        total_records=2000, sampled_records=500, sampled=True, sample_rate=0.25
    )
    sampled.patterns.add(template="GET <*>", count=2000)
    lines = render.patterns_table(sampled).splitlines()
    assert lines[0] == "sampled 500 of 2000 records (25%)"
    assert cells(lines[2]) == ["~2000", "GET <*>"]
    assert render.patterns_table(pb.GetLogPatternsResponse()) == "0 records\nno patterns"


# ---- flags ---------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


INSIGHTS = ("stats", "graph", "latency", "anomalies", "spikes", "patterns")


def test_help_lists_the_insights_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    listed = {
        line.split()[0] for line in capsys.readouterr().out.splitlines() if line[:4] == " " * 4
    }
    assert set(INSIGHTS) <= listed
    for name in INSIGHTS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert "--json" in text and "--addr" in text, name


def test_flags_that_cannot_make_a_request_are_refused_before_any_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    nowhere = ("--addr", "127.0.0.1:1", "--timeout", "1s")
    for argv, message in (
        (["latency"], "the following arguments are required: --service"),
        (["anomalies"], "one of the arguments --metric --service is required"),
        (["anomalies", "--metric", "m", "--service", "s"], "not allowed with argument"),
        (["anomalies", "--service", "s", "--signal", "p42"], "invalid choice: 'p42'"),
    ):
        with pytest.raises(SystemExit) as exited:
            main([*argv, *nowhere])
        assert exited.value.code == 2
        assert message in capsys.readouterr().err, argv
    # Flags of the other source are refused, not dropped from the request unsaid.
    code, out, err = run(capsys, "anomalies", "--service", "s", "--agg", "p95", *nowhere)
    assert (code, out) == (1, "")
    assert err == "otlpd: --agg, --match and --by go with --metric, not --service\n"
    code, out, err = run(capsys, "anomalies", "--metric", "m", "--signal", "errors", *nowhere)
    assert (code, out) == (1, "")
    assert err == "otlpd: --operation and --signal go with --service, not --metric\n"


# ---- against a running otlpd ---------------------------------------------------------


def _attrs(**values: str) -> list[common_pb2.KeyValue]:
    return [
        common_pb2.KeyValue(key=k.replace("_", "."), value=common_pb2.AnyValue(string_value=v))
        for k, v in values.items()
    ]


def _resource(service: str) -> resource_pb2.Resource:
    return resource_pb2.Resource(attributes=_attrs(service_name=service))


@dataclass
class Sent:
    """What the module's server was sent, to compare its answers with."""

    minute: int  # the start of the minute the data was sent in
    payments_ms: list[int] = field(default_factory=list)  # charge spans of the window
    payments_errors: int = 0
    failed_trace: bytes = b""
    spike_ns: int = 0


def _span(
    trace_id: bytes, name: str, start: int, duration_ms: float, parent: bytes = b"", *,
    error: bool = False,
) -> trace_pb2.Span:  # fmt: skip
    status = (
        trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="declined")
        if error
        else trace_pb2.Status()
    )
    return trace_pb2.Span(
        trace_id=trace_id,
        span_id=os.urandom(8),
        parent_span_id=parent,
        name=name,
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=start + round(duration_ms * MS),
        status=status,
    )


def send_spans(channel: grpc.Channel, sent: Sent) -> None:
    """24 traces web -> checkout (-> payments in 16 of them, half failing) in the eight
    closed minutes ending two minutes ago; 30 payments requests (one failing) half an hour
    before them, as its baseline."""
    by_service: dict[str, list[trace_pb2.Span]] = {"web": [], "checkout": [], "payments": []}
    for j in range(24):
        start = sent.minute - 9 * MINUTE + (j // 3) * MINUTE + (5 + 15 * (j % 3)) * SECOND
        trace_id = os.urandom(16)
        root = _span(trace_id, "GET /cart", start, 300)
        checkout = _span(trace_id, "POST /checkout", start + 10 * MS, 200, root.span_id)
        by_service["web"].append(root)
        by_service["checkout"].append(checkout)
        if j % 3 != 2:
            failed = j % 2 == 0
            charge = _span(
                trace_id, "charge", start + 20 * MS, 10 + j, checkout.span_id, error=failed
            )
            by_service["payments"].append(charge)
            sent.payments_ms.append(10 + j)
            sent.payments_errors += failed
            if failed:
                sent.failed_trace = trace_id
    for k in range(30):
        start = sent.minute - 50 * MINUTE + k * MINUTE + 30 * SECOND
        by_service["payments"].append(_span(os.urandom(16), "charge", start, 20, error=k == 0))
    request = trace_service_pb2.ExportTraceServiceRequest()
    for service, spans in by_service.items():
        request.resource_spans.add(resource=_resource(service)).scope_spans.add(spans=spans)
    trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]


def send_logs(channel: grpc.Channel, sent: Sent) -> None:
    """Seven records of the last few minutes in four templates, and one of them (payment
    declined) also 90 minutes ago, in the baseline of a one-hour range."""
    now = time.time_ns()
    records = [
        ("web", 9, "user 42 logged in", now - 5 * MINUTE, b""),
        ("web", 9, "user 7 logged in", now - 4 * MINUTE, b""),
        ("web", 9, "user 1001 logged in", now - 3 * MINUTE, b""),
        ("payments", 13, "payment declined for order 17", now - 90 * MINUTE, b""),
        ("payments", 13, "payment declined for order 17", now - 4 * MINUTE, b""),
        ("payments", 13, "payment declined for order 923", now - 3 * MINUTE, b""),
        ("checkout", 13, "disk almost full on /dev/sda1", now - 2 * MINUTE, b""),
        ("payments", 17, "card declined by issuer", now - 3 * MINUTE, sent.failed_trace),
    ]
    request = logs_service_pb2.ExportLogsServiceRequest()
    for service, severity, body, at, trace_id in records:
        scope = request.resource_logs.add(resource=_resource(service)).scope_logs.add()
        scope.log_records.add(
            time_unix_nano=at,
            severity_number=severity,
            body=common_pb2.AnyValue(string_value=body),
            trace_id=trace_id,
            span_id=os.urandom(8) if trace_id else b"",
        )
    logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]


def send_gauge(channel: grpc.Channel, sent: Sent) -> None:
    """``queue.depth`` of worker once a minute for an hour, 10 to 11.5, and 100 once, ten
    minutes ago."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    scope = request.resource_metrics.add(resource=_resource("worker")).scope_metrics.add()
    metric = scope.metrics.add(name="queue.depth", unit="1")
    for i in range(60):
        at = sent.minute - (60 - i) * MINUTE + 30 * SECOND
        value = 100.0 if i == 50 else 10 + (i % 4) * 0.5
        if i == 50:
            sent.spike_ns = at
        metric.gauge.data_points.add(time_unix_nano=at, as_double=value)
    metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def server(shared_database: str) -> Iterator[tuple[RunningOtlpd, Sent]]:
    """One otlpd that rolls up every closed minute at once, with the module's data."""
    running = start_otlpd_thread(shared_database, rollup_delay="0", rollup_interval="0.2")
    try:
        sent = Sent(minute=time.time_ns() // MINUTE * MINUTE)
        with grpc.insecure_channel(running.grpc_target) as channel:
            send_spans(channel, sent)
            send_logs(channel, sent)
            send_gauge(channel, sent)
        yield running, sent
    finally:
        running.stop()


@pytest.fixture
def sent(server: tuple[RunningOtlpd, Sent]) -> Sent:
    return server[1]


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(
    server: tuple[RunningOtlpd, Sent],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    """``cli("stats", ...)``: runs ``otlpd stats ...`` against the module's server; its
    exit status, stdout and stderr."""
    for variable in ("OTLPD_PROJECT", "OTLPD_TOKEN", "OTLPD_QUERY_CA"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OTLPD_QUERY_ENDPOINT", f"127.0.0.1:{server[0].app.ports.query}")

    def call(*argv: str) -> tuple[int, str, str]:
        return run(capsys, *argv)

    return call


def cli_json(cli: Cli, *argv: str) -> Any:
    code, out, err = cli(*argv, "--json")
    assert (code, err) == (0, ""), err
    return json.loads(out)


@pytest.fixture
def rolled_up(server: tuple[RunningOtlpd, Sent]) -> None:
    """Waits until the rollups hold every request sent and are complete up to the minute
    the data was sent in (the job runs every 0.2 s)."""
    running, sent = server
    expected = {"web": 24, "checkout": 24, "payments": 46}
    deadline = time.monotonic() + 15
    with grpc.insecure_channel(f"127.0.0.1:{running.app.ports.query}") as channel:
        stub = pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
        while True:
            request = pb.GetServiceStatsRequest()
            request.start_time.FromNanoseconds(time.time_ns() - 2 * 3600 * SECOND)
            response = stub.GetServiceStats(request, timeout=10)
            counts = {s.service: s.stats.requests for s in response.services}
            complete = response.complete_until.ToNanoseconds()
            if counts == expected and complete >= sent.minute:
                return
            assert time.monotonic() < deadline, f"rollups hold {counts} until {complete}"
            time.sleep(0.2)


def _rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / SECOND, UTC).isoformat()


def _ms(text: str) -> float:
    """A proto3 JSON Duration (``"0.021s"``) in milliseconds."""
    return float(text.removesuffix("s")) * 1000


@pytest.mark.usefixtures("rolled_up")
def test_stats_tabulates_each_service_and_its_operations(cli: Cli, sent: Sent) -> None:
    code, out, err = cli("stats", "--since", "15m")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert cells(lines[0]) == ["SERVICE", "REQUESTS", "REQ/S", "ERROR%", "P50", "P95", "P99"]
    rows = {cells(line)[0]: cells(line) for line in lines[1:] if not line.startswith("rollups")}
    assert set(rows) == {"web", "checkout", "payments"}
    # The range is rounded to whole minutes (the rollups' grain): 15 or 16 of them.
    assert rows["payments"][1] == "16" and rows["payments"][3] == "50%"
    assert rows["payments"][2] in {render.rate_text(16 / 900), render.rate_text(16 / 960)}
    assert rows["web"][1:4:2] == ["24", "0%"]
    for line in lines[4:]:
        # (with the date when that is another day than the end's: just after midnight)
        assert re.fullmatch(r"rollups complete until (\d\d:\d\d:\d\d UTC|\S+Z)", line), line

    answer = cli_json(cli, "stats", "--since", "15m", "--service", "payments")
    (payments,) = answer["services"]
    stats = payments["stats"]
    assert (stats["requests"], stats["errors"]) == ("16", str(sent.payments_errors))
    assert stats["requestRate"] == pytest.approx(16 / 900, rel=0.07)
    error = answer.get("percentileRelativeError", 0) + 0.01
    p50, p95, p99 = (_ms(stats[name]) for name in ("p50", "p95", "p99"))
    assert min(sent.payments_ms) * (1 - error) <= p50 <= p95 <= p99
    assert p99 <= max(sent.payments_ms) * (1 + error)
    assert p50 == pytest.approx(np.percentile(sent.payments_ms, 50), rel=error + 0.1)


@pytest.mark.usefixtures("rolled_up")
def test_stats_with_operations_and_a_step_draw_a_rate_per_row(cli: Cli) -> None:
    code, out, err = cli(
        "stats", "--service", "payments", "--operations", "--step", "1m", "--since", "15m"
    )
    assert (code, err) == (0, "")
    header, service, operation, *rest = out.splitlines()
    assert cells(header)[-1] == "RATE (step 1m)"
    assert cells(service)[:4:3] == ["payments", "50%"] and cells(service)[1] == "16"
    assert operation.startswith("  charge ") and cells(operation)[1:4] == cells(service)[1:4]
    # A block per step: a quarter hour of one-minute steps, the busy ones the tallest.
    spark = cells(service)[-1]
    assert 15 <= len(spark) <= 16 and set(spark) <= set("▁▂▃▄▅▆▇█") and "█" in spark
    assert all(line.startswith("rollups complete until") for line in rest)
    answer = cli_json(
        cli, "stats", "--service", "payments", "--operations", "--step", "1m", "--since", "15m"
    )
    (payments,) = answer["services"]
    assert answer["step"] == "60s"
    assert [op["operation"] for op in payments["operations"]] == ["charge"]
    assert sum(int(p["stats"].get("requests", 0)) for p in payments["points"]) == 16


def test_graph_prints_an_edge_per_line_busiest_first(cli: Cli, sent: Sent) -> None:
    code, out, err = cli("graph", "--since", "15m")
    assert (code, err) == (0, "")
    first, second = out.splitlines()
    assert first.startswith("web -> checkout  ")
    assert first.endswith("calls=24 errors=0 (0%) p95=200ms")
    assert second.startswith("checkout -> payments  ")
    assert "calls=16 errors=8 (50%) p95=" in second
    answer = cli_json(cli, "graph", "--since", "15m", "--service", "payments")
    (edge,) = answer["edges"]
    assert (edge["caller"], edge["callee"], edge["calls"], edge["errors"]) == (
        "checkout",
        "payments",
        "16",
        str(sent.payments_errors),
    )
    assert _ms(edge["p95"]) == pytest.approx(np.percentile(sent.payments_ms, 95), rel=0.1)
    assert answer["services"] == ["checkout", "payments"]
    code, out, _ = cli("graph", "--since", "15m", "--service", "nobody")
    assert (code, out) == (0, "no edges\n")


def test_latency_draws_a_histogram_with_its_percentiles(cli: Cli, sent: Sent) -> None:
    code, out, err = cli(
        "latency", "--service", "payments", "--operation", "charge", "--bins", "8",
        "--since", "15m",
    )  # fmt: skip
    assert (code, err) == (0, "")
    title, *bins, summary = out.splitlines()
    assert title == "payments charge"
    assert summary == "count 16  min 10ms  mean 21ms  max 32ms"
    assert len(bins) == 8
    assert sum(int(cells(line)[1]) for line in bins) == 16
    for name in ("p50", "p90", "p95", "p99"):
        (marked,) = [line for line in bins if f" {name}=" in line]
        assert "█" in marked, name  # a percentile falls in a bin that has durations
    median = np.percentile(sent.payments_ms, 50)
    assert f"p50={render.duration_text(round(median * MS))}" in out
    answer = cli_json(
        cli, "latency", "--service", "payments", "--operation", "charge", "--since", "15m"
    )
    assert (answer["count"], _ms(answer["min"]), _ms(answer["max"])) == ("16", 10, 32)
    assert [p["quantile"] for p in answer["percentiles"]] == [0.5, 0.9, 0.95, 0.99]
    code, out, _ = cli("latency", "--service", "nobody", "--since", "15m")
    assert (code, out) == (0, "nobody\nno spans\n")


def test_anomalies_finds_the_spike_of_a_metric(cli: Cli, sent: Sent) -> None:
    flags = ("--metric", "queue.depth", "--step", "1m", "--window", "30m", "--since", "1h")
    code, out, err = cli("anomalies", *flags)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "step 1m"
    assert lines[1].startswith("  {")
    assert lines[3].strip() == "^"  # one anomalous point, marked under the sparkline
    (interval,) = [line for line in lines if line.startswith("    anomaly ")]
    assert "max z " in interval and "max robust " in interval
    answer = cli_json(cli, "anomalies", *flags, "--agg", "max", "--threshold", "3.5")
    (series,) = answer["series"]
    (found,) = series["intervals"]
    start, end = (
        datetime.fromisoformat(found[name]).timestamp() * SECOND
        for name in ("startTime", "endTime")
    )
    assert start <= sent.spike_ns < end
    assert [p["value"] for p in series["points"] if p.get("anomalous")] == [100.0]


@pytest.mark.usefixtures("rolled_up")
def test_anomalies_scores_a_red_series_of_a_service(cli: Cli, sent: Sent) -> None:
    code, out, err = cli(
        "anomalies", "--service", "payments", "--signal", "errors", "--step", "1m",
        "--since", "15m", "--window", "10m",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith("step 1m\n")
    # A range of whole minutes the rollups hold complete (`rolled_up`): one point each.
    # ("--since 15m" would also count the steps the rollups have not closed yet.)
    start, end = (_rfc3339(sent.minute - 15 * MINUTE), _rfc3339(sent.minute))
    answer = cli_json(
        cli, "anomalies", "--service", "payments", "--step", "1m", "--start", start, "--end", end
    )
    (series,) = answer["series"]
    assert len(series["points"]) == 15
    assert sum(p.get("value", 0) for p in series["points"]) > 0  # requests per second


@pytest.mark.usefixtures("rolled_up")
def test_spikes_ranks_payments_with_its_operation_and_examples(cli: Cli, sent: Sent) -> None:
    code, out, err = cli("spikes", "--since", "15m", "--baseline", "1h")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("1. payments  errors 8 of 16 (50%), baseline 3.33% (1 of 30)")
    details = [line.strip() for line in lines[1:] if line.startswith("     ")]
    assert any(line.startswith("charge  errors 8 of 16 (50%)") for line in details)
    assert f"span  charge: declined  trace={sent.failed_trace.hex()}" in details
    assert "log   ERROR card declined by issuer" in details
    answer = cli_json(cli, "spikes", "--since", "15m", "--baseline", "1h", "--examples", "2")
    top = answer["spikes"][0]
    assert (top["service"], top["errors"], top["baselineErrors"]) == ("payments", "8", "1")
    assert top["excessErrors"] == pytest.approx(8 - 16 / 30, rel=0.01)
    assert len(top.get("exampleSpans", [])) <= 2


def test_patterns_count_templates_and_mark_new_ones(cli: Cli) -> None:
    code, out, err = cli("patterns", "--since", "1h")
    assert (code, err) == (0, "")
    header, columns, *rows = out.splitlines()
    assert header == "7 records"
    assert cells(columns) == ["COUNT", "NEW", "TEMPLATE"]
    found = {cells(row)[-1]: cells(row)[:-1] for row in rows}
    (logged_in,) = [t for t in found if "logged in" in t]
    (declined,) = [t for t in found if t.startswith("payment declined")]
    assert found[logged_in] == ["3", "NEW"]
    assert found[declined] == ["2"]  # the baseline hour before had one: not new
    code, out, err = cli("patterns", "--since", "1h", "--min-severity", "warn", "--limit", "2")
    assert (code, err.startswith("more: ")) == (0, True)  # three templates, two per page
    assert out.splitlines()[0] == "4 records"
    answer = cli_json(cli, "patterns", "--since", "1h", "--service", "web", "--baseline", "0")
    (pattern,) = answer["patterns"]
    assert (pattern["count"], answer["totalRecords"]) == ("3", "3")
    assert pattern["template"].endswith("logged in")


def test_an_insight_the_server_refuses_is_one_line_with_its_status(
    cli: Cli, server: tuple[RunningOtlpd, Sent]
) -> None:
    code, out, err = cli("stats", "--project", "p" * 129)
    assert (code, out) == (1, "")
    assert err.startswith("otlpd: INVALID_ARGUMENT: ") and err.count("\n") == 1
    assert "Traceback" not in err
