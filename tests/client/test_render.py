"""What a human sees, drawn from hand-made query API messages (no server needed)."""

from __future__ import annotations

import json

from otlpd.client import render
from query.proto import pb

T0 = 1_700_000_000 * 10**9  # 2023-11-14T22:13:20Z
TRACE = bytes(range(16))


def span(
    name: str,
    service: str,
    start_ms: int,
    duration_ms: int,
    depth: int = 0,
    *,
    error: str | None = None,
) -> pb.Span:
    message = pb.Span(
        trace_id=TRACE,
        span_id=name.encode()[:8].ljust(8, b"_"),
        name=name,
        service=service,
        depth=depth,
        status_code=2 if error is not None else 0,
        status_message=error or "",
    )
    message.start_time.FromNanoseconds(T0 + start_ms * 10**6)
    message.end_time.FromNanoseconds(T0 + (start_ms + duration_ms) * 10**6)
    message.duration.FromNanoseconds(duration_ms * 10**6)
    return message


def bar_of(line: str) -> str:
    return line[line.index("|") + 1 : line.rindex("|")]


def test_waterfall_draws_offsets_durations_bars_and_marks_errors() -> None:
    spans = [
        span("GET /cart", "frontend", 0, 100),
        span("SELECT cart", "db", 0, 25, depth=1),
        span("charge", "payments", 50, 50, depth=1, error="card declined"),
    ]
    text = render.waterfall(spans, width=20)
    header, columns, root, select, charge = text.splitlines()
    assert header == f"trace {TRACE.hex()}  3 spans  100ms  1 error"
    assert columns.split() == ["SPAN", "SERVICE", "OFFSET", "DURATION", "TIMELINE"]
    # Children are indented under their parent by depth.
    assert root.index("GET /cart") + 2 == select.index("SELECT cart") == charge.index("charge")
    assert "frontend" in root and "+0 " in root and "100ms" in root
    assert "+50ms" in charge and "50ms" in charge
    # Bars on one time line: the root covers it all; the second child its second half.
    assert bar_of(root) == "█" * 20
    assert bar_of(select) == "█" * 5 + " " * 15
    assert bar_of(charge) == " " * 10 + "█" * 10
    # Errors: marked at the start of the line, with the status message.
    assert charge.startswith("!") and charge.endswith("error: card declined")
    assert not root.startswith("!") and "error" not in root


def test_waterfall_gives_a_tiny_span_at_least_one_block_and_an_empty_trace_a_line() -> None:
    text = render.waterfall([span("root", "a", 0, 1000), span("blip", "a", 999, 0, 1)], width=10)
    blip = text.splitlines()[-1]
    assert bar_of(blip) == " " * 9 + "█"
    assert render.waterfall([]) == "no spans"


def test_durations_and_times_read_in_human_units() -> None:
    assert [
        render.duration_text(ns)
        for ns in (0, 850, 12_500, 12_500_000, 3_200_000_000, 90 * 10**9, 3600 * 10**9)
    ] == ["0", "850ns", "12.5µs", "12.5ms", "3.20s", "1m30s", "1h"]
    assert render.duration_text(15 * 10**9) == "15s"
    ts = pb.Span().start_time
    assert render.time_text(ts) == "-"
    ts.FromNanoseconds(T0 + 123_456_789)
    assert render.time_text(ts) == "2023-11-14T22:13:20.123Z"


def test_a_log_line_has_time_severity_service_body_and_trace() -> None:
    record = pb.LogRecord(service="checkout", severity_number=17, trace_id=TRACE)
    record.time.FromNanoseconds(T0)
    record.body.string_value = "payment failed\nretrying\x1b[2J"
    line = render.log_line(record)
    assert line == (
        "2023-11-14T22:13:20.000Z  ERROR  checkout  "
        f"payment failed\\nretrying\\x1b[2J  trace={TRACE.hex()}"
    )
    # The record's own severity text wins; a structured body is shown as JSON.
    record = pb.LogRecord(severity_number=13, severity_text="Warning")
    record.body.struct_value.update({"order": 7})
    assert render.log_line(record).split("  ")[1:] == ["Warning", "-", '{"order": 7.0}']


def test_severity_names_follow_otlp_ranges() -> None:
    assert [render.severity_text(n) for n in (0, 1, 8, 9, 12, 13, 17, 21, 24)] == [
        "-",
        "TRACE",
        "DEBUG",
        "INFO",
        "INFO",
        "WARN",
        "ERROR",
        "FATAL",
        "FATAL",
    ]


def test_traces_table_lists_each_summary() -> None:
    summary = pb.TraceSummary(
        trace_id=TRACE,
        root_service="frontend",
        root_name="GET /cart",
        span_count=3,
        error_count=1,
        services=["frontend", "payments"],
    )
    summary.start_time.FromNanoseconds(T0)
    summary.duration.FromNanoseconds(100 * 10**6)
    header, row = render.traces_table([summary]).splitlines()
    assert header.split() == ["TRACE", "START", "DURATION", "SPANS", "ERRORS", "ROOT", "SERVICES"]
    assert [cell.strip() for cell in row.split("  ") if cell.strip()] == [
        TRACE.hex(),
        "2023-11-14T22:13:20.000Z",
        "100ms",
        "3",
        "1",
        "frontend: GET /cart",
        "frontend,payments",
    ]
    # Columns line up under their headers.
    assert row.index("frontend:") == header.index("ROOT")
    assert render.traces_table([]) == "no traces"


def test_sparkline_scales_between_min_and_max() -> None:
    assert render.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert render.sparkline([5, 5, 5]) == "▁▁▁"
    assert render.sparkline([1, float("nan"), 3]) == "▁ █"
    assert render.sparkline([]) == ""


def test_metric_chart_shows_each_series_labels_chart_and_extremes() -> None:
    result = pb.MetricResult(metric_name="http.server.duration", unit="ms")
    result.step.FromSeconds(60)
    series = result.series.add()
    series.labels.update({"service.name": "checkout", "route": "/cart"})
    for i, value in enumerate([1.0, 4.0, 8.0, 2.0]):
        sample = series.samples.add(value=value)
        sample.time.FromNanoseconds(T0 + i * 60 * 10**9)
    empty = result.series.add()
    empty.labels["service.name"] = "idle"
    lines = render.metric_chart(result).splitlines()
    assert lines == [
        "http.server.duration [ms]  step 1m",
        '  {route="/cart", service.name="checkout"}',
        "    ▁▄█▂  min 1  max 8  last 2",
        "    2023-11-14T22:13:20.000Z .. 2023-11-14T22:16:20.000Z  (4 points)",
        '  {service.name="idle"}',
        "    no samples",
    ]
    assert render.metric_chart(pb.MetricResult(metric_name="m")).endswith("no data")


def test_session_timeline_merges_spans_logs_and_exemplars() -> None:
    response = pb.GetSessionTimelineResponse(
        session=pb.Session(
            session_id="s-1", project_id="p1", user_id="u-7", services=["web", "api"]
        )
    )
    response.session.first_seen.FromNanoseconds(T0)
    response.session.last_seen.FromNanoseconds(T0 + 2 * 10**9)
    item = response.items.add(span=span("checkout", "api", 0, 10, error="boom"))
    item.time.FromNanoseconds(T0)
    item = response.items.add(log=pb.LogRecord(service="web", severity_number=9))
    item.log.body.string_value = "clicked pay"
    item.time.FromNanoseconds(T0 + 10**9)
    item = response.items.add(
        exemplar=pb.MetricExemplar(metric_name="latency", service="api", value=0.25)
    )
    item.time.FromNanoseconds(T0 + 2 * 10**9)
    lines = render.session_timeline(response).splitlines()
    assert lines[:3] == [
        "session s-1  project p1  user u-7",
        "services web, api",
        "first seen 2023-11-14T22:13:20.000Z  last seen 2023-11-14T22:13:22.000Z",
    ]
    rows = [line.split(None, 3) for line in lines[5:]]
    assert [row[1:] for row in rows] == [
        ["span", "api", "checkout (10ms)  !error"],
        ["log", "web", "INFO clicked pay"],
        ["exemplar", "api", "latency = 0.25"],
    ]


def test_catalog_tables() -> None:
    service = pb.Service(name="checkout")
    service.first_seen.FromNanoseconds(T0)
    assert render.services_table([service]).splitlines()[1].split() == [
        "checkout",
        "2023-11-14T22:13:20.000Z",
        "-",
    ]
    assert render.services_table([]) == "no services"
    metric = pb.MetricInfo(
        name="http.server.duration",
        type=pb.METRIC_TYPE_HISTOGRAM,
        unit="ms",
        label_keys=["route", "service.name"],
    )
    assert render.metrics_table([metric]).splitlines()[1].split() == [
        "http.server.duration",
        "histogram",
        "ms",
        "route,service.name",
    ]
    operation = pb.Operation(name="GET /cart", span_kind=2)
    assert render.operations_table([operation]).splitlines()[1].split() == [
        "GET",
        "/cart",
        "server",
    ]


def test_json_document_is_the_proto_json_mapping() -> None:
    response = pb.SearchTracesResponse(next_page_token="abc")
    response.traces.add(trace_id=TRACE, span_count=2)
    document = json.loads(render.json_document(response))
    assert document == {
        "traces": [{"traceId": "AAECAwQFBgcICQoLDA0ODw==", "spanCount": 2}],
        "nextPageToken": "abc",
    }
    assert "\n" not in render.json_document(response, indent=None)


def test_volume_table_scales_bars_from_zero_and_lists_severities() -> None:
    response = pb.GetLogVolumeResponse()
    response.step.FromSeconds(60)
    for i, (info, error) in enumerate(((0, 0), (6, 2), (2, 0))):
        bucket = response.buckets.add(total=info + error)
        bucket.time.FromNanoseconds(T0 + i * 60 * 10**9)
        bucket.counts.add(severity_number=9, severity="info", count=info)
        bucket.counts.add(severity_number=17, severity="error", count=error)
    lines = render.volume_table(response).splitlines()
    assert lines[0] == "step 1m"
    assert [line.split("  ", 1)[1].split() for line in lines[2:]] == [
        ["0"],
        ["8", "█", "info=6", "error=2"],
        ["2", "▂", "info=2"],
    ]
