"""Query API answers as text for a terminal: tables, a waterfall, log lines, charts, histograms.

Every function takes the generated messages and returns a string, so what a human sees is
tested without a server (``tests/client/test_render.py``). Scripts use ``--json``
instead, which is the proto's own JSON mapping (``json_document``), not this.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from google.protobuf import json_format, struct_pb2

from otlpd.client import SEVERITIES

_SPARKS = "▁▂▃▄▅▆▇█"
_ERROR_STATUS = 2  # OTLP Status.StatusCode ERROR
BAR_WIDTH = 40


def json_document(message: Any, *, indent: int | None = 2) -> str:
    """The proto3 JSON mapping of ``message`` (bytes as base64, int64 as strings)."""
    return json.dumps(json_format.MessageToDict(message), indent=indent, ensure_ascii=False)


def hex_id(value: bytes) -> str:
    return value.hex()


def ns_of(ts: Any) -> int:
    """Nanoseconds since the epoch of a ``Timestamp`` (or of a ``Duration``)."""
    return int(ts.seconds) * 10**9 + int(ts.nanos)


def time_text(ts: Any) -> str:
    """RFC 3339 in UTC to the millisecond, ``-`` for an unset time."""
    ns = ns_of(ts)
    if ns == 0:
        return "-"
    moment = datetime.fromtimestamp(ns // 10**9, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ns % 10**9 // 10**6:03d}Z"


def duration_text(ns: int) -> str:
    """A duration in the unit a human reads it best in: ``850ns``, ``12.5ms``, ``3.20s``."""
    magnitude = abs(ns)
    if magnitude == 0:
        return "0"
    if magnitude < 1_000:
        return f"{ns}ns"
    if magnitude < 1_000_000:
        return f"{ns / 1e3:.3g}µs"
    if magnitude < 1_000_000_000:
        return f"{ns / 1e6:.3g}ms"
    if magnitude < 60 * 10**9:
        return f"{ns // 10**9}s" if magnitude % 10**9 == 0 else f"{ns / 1e9:.2f}s"
    hours, rest = divmod(magnitude // 10**9, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (seconds, "s")]
    text = "".join(f"{n}{unit}" for n, unit in parts if n)
    return f"{'-' if ns < 0 else ''}{text}"


def severity_text(number: int, text: str = "") -> str:
    """``text`` if the record has one, else the name of ``number``'s range (``WARN``)."""
    if text:
        return text
    name = "-"
    for candidate, lowest in SEVERITIES.items():
        if number >= lowest:
            name = candidate.upper()
    return name


def value_text(value: struct_pb2.Value) -> str:
    """A ``google.protobuf.Value`` as one line: strings bare, everything else as JSON."""
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return ""
    if kind == "string_value":
        return value.string_value
    return json.dumps(json_format.MessageToDict(value), ensure_ascii=False)


def _one_line(text: str) -> str:
    # A body with newlines or control characters must not break the layout (or the
    # terminal): they are shown escaped.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, the last one unpadded."""
    lines = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = []
    for line in lines:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(out)


def log_line(record: Any) -> str:
    """``time  SEVERITY  service  body`` and, when set, the trace it belongs to."""
    parts = [
        time_text(record.time),
        severity_text(record.severity_number, record.severity_text).ljust(5),
        record.service or "-",
        _one_line(value_text(record.body)),
    ]
    if record.trace_id:
        parts.append(f"trace={hex_id(record.trace_id)}")
    return "  ".join(parts)


def log_lines(records: Iterable[Any]) -> str:
    return "\n".join(log_line(record) for record in records)


def traces_table(traces: Sequence[Any]) -> str:
    """SearchTraces summaries, one row each."""
    if not traces:
        return "no traces"
    rows = [
        (
            hex_id(t.trace_id),
            time_text(t.start_time),
            duration_text(ns_of(t.duration)),
            str(t.span_count),
            str(t.error_count) if t.error_count else "-",
            f"{t.root_service}: {t.root_name}",
            ",".join(t.services),
        )
        for t in traces
    ]
    return table(("TRACE", "START", "DURATION", "SPANS", "ERRORS", "ROOT", "SERVICES"), rows)


def _bar(offset_ns: int, duration_ns: int, total_ns: int, width: int) -> str:
    """A span's place in the trace: blank up to its start, then at least one block."""
    if total_ns <= 0:
        return "█"
    start = min(width - 1, int(offset_ns * width / total_ns))
    length = max(1, round(duration_ns * width / total_ns))
    return " " * start + "█" * min(length, width - start)


def waterfall(spans: Sequence[Any], *, width: int = BAR_WIDTH) -> str:
    """GetTrace's spans as a waterfall: name (indented by depth), service, offset from the
    trace's start, duration, a bar on the trace's time line, and errors marked ``!``.

    The spans come in waterfall order from the server (parent before child, siblings by
    start); this only draws them.
    """
    if not spans:
        return "no spans"
    starts = [ns_of(s.start_time) for s in spans]
    ends = [max(ns_of(s.end_time), start) for s, start in zip(spans, starts, strict=True)]
    origin, total = min(starts), max(ends) - min(starts)
    rows = []
    errors = 0
    for s, start, end in zip(spans, starts, ends, strict=True):
        failed = s.status_code == _ERROR_STATUS
        errors += failed
        note = f"error: {_one_line(s.status_message)}".rstrip(": ") if failed else ""
        rows.append(
            (
                "!" if failed else " ",
                "  " * s.depth + s.name,
                s.service or "-",
                "+" + duration_text(start - origin),
                duration_text(end - start),
                f"|{_bar(start - origin, end - start, total, width).ljust(width)}|",
                note,
            )
        )
    header = (
        f"trace {hex_id(spans[0].trace_id)}  {len(spans)} spans  "
        f"{duration_text(total)}  {errors} error{'s' if errors != 1 else ''}"
    )
    body = table((" ", "SPAN", "SERVICE", "OFFSET", "DURATION", "TIMELINE", ""), rows)
    return f"{header}\n{body}"


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, scaled between the smallest and largest (NaN: space)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    scale = (len(_SPARKS) - 1) / (high - low) if high > low else 0.0
    return "".join(_SPARKS[round((v - low) * scale)] if math.isfinite(v) else " " for v in values)


def _number(value: float) -> str:
    return f"{value:.4g}"


def _labels(labels: Any) -> str:
    if not labels:
        return "{}"
    return "{" + ", ".join(f'{k}="{labels[k]}"' for k in sorted(labels)) + "}"


def metric_chart(result: Any) -> str:
    """One QueryMetrics result: a header, then per series its labels, a sparkline over the
    time range and the smallest, largest and last value."""
    unit = f" [{result.unit}]" if result.unit else ""
    header = f"{result.metric_name}{unit}  step {duration_text(ns_of(result.step))}"
    if not result.series:
        return f"{header}\n  no data"
    lines = [header]
    for series in result.series:
        values = [s.value for s in series.samples]
        finite = [v for v in values if math.isfinite(v)]
        lines.append(f"  {_labels(series.labels)}")
        if not series.samples:
            lines.append("    no samples")
            continue
        first, last = series.samples[0].time, series.samples[-1].time
        summary = (
            f"min {_number(min(finite))}  max {_number(max(finite))}  last {_number(values[-1])}"
            if finite
            else "no finite values"
        )
        lines.append(f"    {sparkline(values)}  {summary}")
        lines.append(f"    {time_text(first)} .. {time_text(last)}  ({len(values)} points)")
    return "\n".join(lines)


def metric_charts(results: Iterable[Any]) -> str:
    return "\n\n".join(metric_chart(result) for result in results)


_METRIC_TYPES = {1: "gauge", 2: "sum", 3: "histogram", 4: "exponential_histogram", 5: "summary"}


def metrics_table(metrics: Sequence[Any]) -> str:
    """ListMetrics: name, type, unit, label keys, description."""
    if not metrics:
        return "no metrics"
    rows = [
        (
            m.name,
            _METRIC_TYPES.get(m.type, "-"),
            m.unit or "-",
            ",".join(m.label_keys) or "-",
            m.description,
        )
        for m in metrics
    ]
    return table(("NAME", "TYPE", "UNIT", "LABELS", "DESCRIPTION"), rows)


def services_table(services: Sequence[Any]) -> str:
    """ListServices: name, first and last seen."""
    if not services:
        return "no services"
    rows = [(s.name, time_text(s.first_seen), time_text(s.last_seen)) for s in services]
    return table(("SERVICE", "FIRST SEEN", "LAST SEEN"), rows)


def operations_table(operations: Sequence[Any]) -> str:
    """ListOperations: span name and kind."""
    if not operations:
        return "no operations"
    kinds = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
    rows = [(o.name, kinds.get(o.span_kind, "-")) for o in operations]
    return table(("OPERATION", "KIND"), rows)


def _timeline_row(item: Any) -> tuple[str, str, str, str]:
    kind = item.WhichOneof("item")
    when = time_text(item.time)
    if kind == "span":
        s = item.span
        duration = duration_text(ns_of(s.duration))
        mark = "  !error" if s.status_code == _ERROR_STATUS else ""
        return when, "span", s.service or "-", f"{s.name} ({duration}){mark}"
    if kind == "log":
        r = item.log
        severity = severity_text(r.severity_number, r.severity_text)
        return when, "log", r.service or "-", f"{severity} {_one_line(value_text(r.body))}"
    if kind == "exemplar":
        e = item.exemplar
        return when, "exemplar", e.service or "-", f"{e.metric_name} = {_number(e.value)}"
    return when, "-", "-", ""


def session_timeline(response: Any) -> str:
    """GetSessionTimeline: who and when, then every item in time order."""
    s = response.session
    header = "\n".join(
        [
            f"session {s.session_id}  project {s.project_id or '-'}  user {s.user_id or '-'}",
            f"services {', '.join(s.services) or '-'}",
            f"first seen {time_text(s.first_seen)}  last seen {time_text(s.last_seen)}",
        ]
    )
    if not response.items:
        return f"{header}\n\nno items"
    rows = [_timeline_row(item) for item in response.items]
    return f"{header}\n\n{table(('TIME', 'KIND', 'SERVICE', 'WHAT'), rows)}"


def volume_table(response: Any) -> str:
    """GetLogVolume: per bucket, its total, a bar, and counts per severity."""
    if not response.buckets:
        return "no buckets"
    # Scaled from zero, not from the smallest total: an empty bucket stays blank.
    highest = max(b.total for b in response.buckets) or 1
    bars = [
        " " if not b.total else _SPARKS[(len(_SPARKS) - 1) * b.total // highest]
        for b in response.buckets
    ]
    rows = [
        (
            time_text(b.time),
            str(b.total),
            bar,
            " ".join(f"{c.severity or '-'}={c.count}" for c in b.counts if c.count),
        )
        for b, bar in zip(response.buckets, bars, strict=True)
    ]
    step = duration_text(ns_of(response.step))
    return f"step {step}\n{table(('TIME', 'TOTAL', '', 'BY SEVERITY'), rows)}"


# ---- insights ------------------------------------------------------------------------

_SPAN_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
EXAMPLE_WIDTH = 80


def percent_text(ratio: float) -> str:
    """A ratio as a percentage to three significant digits: ``25%``, ``0.123%``, ``0%``."""
    if not math.isfinite(ratio):
        return "-"
    return f"{ratio * 100:.3g}%"


def rate_text(per_second: float) -> str:
    """A rate per second: three significant digits, whole numbers from a thousand up (no
    exponent a human has to decode)."""
    return f"{per_second:.0f}" if per_second >= 1000 else f"{per_second:.3g}"


def _truncate(text: str, width: int = EXAMPLE_WIDTH) -> str:
    line = _one_line(text)
    return line if len(line) <= width else line[: width - 1] + "…"


def completeness(complete_until: Any, end_ns: int) -> str:
    """``rollups complete until HH:MM:SS UTC`` when the rollups stop short of the range's
    end (``end_ns``), else "": numbers past that time undercount, and a reader should know.

    The date is added when it is not the end's (a range reaching into yesterday). An unset
    time says nothing about completeness, so nothing is printed for it either.
    """
    until = ns_of(complete_until)
    if until == 0 or until >= end_ns:
        return ""
    moment = datetime.fromtimestamp(until // 10**9, UTC)
    if moment.date() == datetime.fromtimestamp(end_ns // 10**9, UTC).date():
        return f"rollups complete until {moment:%H:%M:%S} UTC"
    return f"rollups complete until {time_text(complete_until)}"


def _red_row(name: str, stats: Any, points: Sequence[Any], with_rate: bool) -> list[str]:
    # Percentiles of no requests are not 0: they are not there.
    def pct(d: Any) -> str:
        return duration_text(ns_of(d)) if stats.requests else "-"

    row = [
        name,
        str(stats.requests),
        rate_text(stats.request_rate),
        percent_text(stats.error_rate) if stats.requests else "-",
        pct(stats.p50),
        pct(stats.p95),
        pct(stats.p99),
    ]
    if with_rate:
        row.append(sparkline([p.stats.request_rate for p in points]))
    return row


def stats_table(response: Any, end_ns: int) -> str:
    """GetServiceStats: a row per service (requests, req/s, error %, p50, p95, p99), its
    operations indented under it, a sparkline of the request rate when the answer has
    steps, and the rollups' completeness when it falls short of ``end_ns``."""
    lines = []
    if not response.services:
        lines.append("no services")
    else:
        with_rate = any(s.points for s in response.services)
        headers = ["SERVICE", "REQUESTS", "REQ/S", "ERROR%", "P50", "P95", "P99"]
        if with_rate:
            headers.append(f"RATE (step {duration_text(ns_of(response.step))})")
        rows = []
        for service in response.services:
            rows.append(_red_row(service.service, service.stats, service.points, with_rate))
            for op in service.operations:
                kind = f" ({_SPAN_KINDS[op.span_kind]})" if op.span_kind == 5 else ""
                rows.append(_red_row(f"  {op.operation}{kind}", op.stats, op.points, with_rate))
        lines.append(table(headers, rows))
    note = completeness(response.complete_until, end_ns)
    if note:
        lines.append(note)
    return "\n".join(lines)


def edge_line(edge: Any, width: int = 0) -> str:
    """``caller -> callee  calls=N errors=N (x%) p95=12.3ms``, the pair padded to
    ``width`` so that the numbers of several edges line up."""
    pair = f"{edge.caller} -> {edge.callee}".ljust(width)
    ratio = edge.errors / edge.calls if edge.calls else 0.0
    return (
        f"{pair}  calls={edge.calls} errors={edge.errors} ({percent_text(ratio)}) "
        f"p95={duration_text(ns_of(edge.p95))}"
    )


def graph_lines(edges: Sequence[Any]) -> str:
    """GetServiceGraph's edges, one line each, the busiest first (the server pages them by
    name: this orders one page)."""
    if not edges:
        return "no edges"
    ordered = sorted(edges, key=lambda e: (-e.calls, e.caller, e.callee))
    width = max(len(f"{e.caller} -> {e.callee}") for e in ordered)
    return "\n".join(edge_line(edge, width) for edge in ordered)


def quantile_name(quantile: float) -> str:
    """``0.95`` as ``p95``, ``0.999`` as ``p99.9``."""
    return f"p{quantile * 100:g}"


def latency_histogram(response: Any, title: str = "", *, width: int = BAR_WIDTH) -> str:
    """GetLatencyHistogram: a bar per bin (``lower .. upper  count  ███``) with the
    percentiles written on the bins they fall in, then count, min, mean and max."""
    header = [title] if title else []
    if not response.count:
        return "\n".join([*header, "no spans"])
    marks: dict[int, list[str]] = {}
    for p in response.percentiles:
        name = f"{quantile_name(p.quantile)}={duration_text(ns_of(p.value))}"
        marks.setdefault(p.bin, []).append(name)
    lowers = [duration_text(ns_of(b.lower)) for b in response.bins]
    # The last bin may be open above (bounds were given): its upper bound is unset.
    uppers = [duration_text(ns_of(b.upper)) if b.HasField("upper") else "∞" for b in response.bins]
    counts = [str(b.count) for b in response.bins]
    highest = max((b.count for b in response.bins), default=0) or 1
    low_w = max(map(len, lowers), default=0)
    up_w = max(map(len, uppers), default=0)
    count_w = max(map(len, counts), default=0)
    lines = list(header)
    for i, b in enumerate(response.bins):
        length = max(1, round(b.count * width / highest)) if b.count else 0
        line = (
            f"{lowers[i].rjust(low_w)} .. {uppers[i].ljust(up_w)}  {counts[i].rjust(count_w)}  "
            f"{('█' * length).ljust(width)}  {' '.join(marks.get(i, []))}"
        )
        lines.append(line.rstrip())
    lines.append(
        f"count {response.count}  min {duration_text(ns_of(response.min))}  "
        f"mean {duration_text(ns_of(response.mean))}  max {duration_text(ns_of(response.max))}"
    )
    return "\n".join(lines)


def anomaly_report(response: Any) -> str:
    """DetectAnomalies: per series its labels, a sparkline of its values with the anomalous
    points marked ``^`` under it, and its anomalous intervals (or ``no anomalies``)."""
    lines = [f"step {duration_text(ns_of(response.step))}"]
    if not response.series:
        lines.append("  no data")
    for series in response.series:
        lines.append(f"  {_labels(series.labels)}")
        if not series.points:
            lines.append("    no points")
            continue
        values = [p.value for p in series.points]
        lines.append(f"    {sparkline(values)}")
        if any(p.anomalous for p in series.points):
            marks = "".join("^" if p.anomalous else " " for p in series.points)
            lines.append(f"    {marks}".rstrip())
        first, last = series.points[0].time, series.points[-1].time
        lines.append(f"    {time_text(first)} .. {time_text(last)}  ({len(values)} points)")
        if not series.intervals:
            lines.append("    no anomalies")
        for interval in series.intervals:
            lines.append(
                f"    anomaly {time_text(interval.start_time)} .. {time_text(interval.end_time)}"
                f"  max z {interval.max_zscore:.3g}  max robust {interval.max_robust_score:.3g}"
            )
    return "\n".join(lines)


def _spike_numbers(spike: Any) -> str:
    return (
        f"errors {spike.errors} of {spike.requests} ({percent_text(spike.error_rate)}), "
        f"baseline {percent_text(spike.baseline_error_rate)} "
        f"({spike.baseline_errors} of {spike.baseline_requests})  "
        f"excess {spike.excess_errors:.3g}  z {spike.zscore:.3g}"
    )


def spikes_report(response: Any, end_ns: int) -> str:
    """GetErrorSpikes, ranked: each spike's errors and rate now against its baseline and
    its excess errors; under it its top operations, then example error spans (with their
    trace, for ``otlpd trace``) and log bodies, truncated to a line."""
    lines = []
    if not response.spikes:
        lines.append("no error spikes")
    for rank, spike in enumerate(response.spikes, 1):
        name = f"{spike.service} {spike.operation}" if spike.operation else spike.service
        lines.append(f"{rank}. {name}  {_spike_numbers(spike)}")
        for op in spike.operations:
            lines.append(f"     {op.operation}  {_spike_numbers(op)}")
        for s in spike.example_spans:
            what = f"{s.name}: {s.status_message}" if s.status_message else s.name
            lines.append(f"     span  {_truncate(what)}  trace={hex_id(s.trace_id)}")
        for r in spike.example_logs:
            severity = severity_text(r.severity_number, r.severity_text)
            lines.append(f"     log   {severity} {_truncate(value_text(r.body))}")
    note = completeness(response.complete_until, end_ns)
    if note:
        lines.append(note)
    return "\n".join(lines)


def patterns_table(response: Any) -> str:
    """GetLogPatterns: how many records (and how many were mined, when sampled), then per
    template its count (``~`` when scaled from a sample) and ``NEW`` if the baseline had
    none of it."""
    if response.sampled:
        header = (
            f"sampled {response.sampled_records} of {response.total_records} records "
            f"({percent_text(response.sample_rate)})"
        )
    else:
        total = response.total_records
        header = f"{total} record{'' if total == 1 else 's'}"
    if not response.patterns:
        return f"{header}\nno patterns"
    approx = "~" if response.sampled else ""
    rows = [
        (f"{approx}{p.count}", "NEW" if p.new else "", _one_line(p.template))
        for p in response.patterns
    ]
    return f"{header}\n{table(('COUNT', 'NEW', 'TEMPLATE'), rows)}"


# ---- alerting ------------------------------------------------------------------------------

_ALERT_STATES = {1: "inactive", 2: "pending", 3: "firing"}
_COMPARATOR_TEXT = {1: ">", 2: ">=", 3: "<", 4: "<=", 5: "==", 6: "!=", 7: "absent"}


def _alert_labels(labels: Any) -> str:
    shown = {k: v for k, v in sorted(labels.items()) if k != "alertname"}
    return " ".join(f"{k}={v}" for k, v in shown.items())


def alerts_table(alerts: Sequence[Any]) -> str:
    """STATE, SINCE, VALUE, ALERTNAME, LABELS; flags for silenced, acknowledged, flapping."""
    if not alerts:
        return "no alerts firing or pending"
    rows = []
    for alert in alerts:
        marks = [
            name
            for name, on in (
                ("silenced", alert.silenced),
                ("acked", alert.HasField("acknowledgement")),
                ("flapping", alert.flapping),
            )
            if on
        ]
        state = _ALERT_STATES.get(alert.state, "?") + (f" ({', '.join(marks)})" if marks else "")
        rows.append(
            [state, time_text(alert.since), _number(alert.value), alert.rule_name,
             _alert_labels(alert.labels)]
        )  # fmt: skip
    return table(["STATE", "SINCE", "VALUE", "ALERTNAME", "LABELS"], rows)


def _condition_text(rule: Any) -> str:
    kind = rule.WhichOneof("condition")
    if kind == "metric":
        agg = json_format.MessageToDict(rule.metric).get("aggregation", "AGGREGATION_AVG")
        return f"{agg.removeprefix('AGGREGATION_').lower()}({rule.metric.metric_name})"
    if kind == "logs":
        q = rule.logs.filter.q
        return f"count(logs{' ' + repr(q) if q else ''})"
    if kind == "spans":
        measure = "error_ratio" if rule.spans.measure == 1 else f"p{rule.spans.quantile * 100:g}"
        return f"{measure}(spans {rule.spans.service or '*'})"
    if kind == "slo":
        return f"slo {rule.slo.objective:g}"
    return "?"


def rules_table(rules: Sequence[Any]) -> str:
    """NAME, CONDITION, INTERVAL, FOR, CHANNELS, VERSION, ID."""
    if not rules:
        return "no rules"
    rows = []
    for rule in rules:
        condition = _condition_text(rule)
        if rule.WhichOneof("condition") != "slo":
            op = _COMPARATOR_TEXT.get(rule.comparator, "?")
            condition += f" {op}" if op == "absent" else f" {op} {_number(rule.threshold)}"
        rows.append(
            [rule.name, condition, duration_text(ns_of(rule.interval)),
             duration_text(ns_of(getattr(rule, "for"))), str(len(rule.channel_ids)),
             str(rule.version), rule.id]
        )  # fmt: skip
    return table(["NAME", "CONDITION", "INTERVAL", "FOR", "CHANNELS", "VERSION", "ID"], rows)


_EVENT_KINDS: Final = {1: "pending", 2: "firing", 3: "resolved", 4: "cancelled", 6: "flapping",
                       7: "settled"}  # fmt: skip


def test_report(name: str, answer: Any, note: str | None = None) -> str:
    """A rule's backtest: evaluations, their step and errors (and ``note``, what the
    reader should know of how it ran), each series' values and final state, then the
    transitions, oldest first."""
    every = f" every {duration_text(ns_of(answer.step))}" if answer.HasField("step") else ""
    lines = [f"rule {name}: {answer.evaluations} evaluations{every}, {answer.errors} failed"]
    if note:
        lines.append(f"  {note}")
    if answer.first_error:
        lines.append(f"  first error: {answer.first_error}")
    rows = []
    for series in answer.series:
        values = [s.value for s in series.values]
        shown = (
            [_number(min(values)), _number(max(values)), _number(values[-1])]
            if values
            else ["-", "-", "-"]
        )
        rows.append([_ALERT_STATES.get(series.state, "?"), *shown, _alert_labels(series.labels)])
    lines.append(
        table(["STATE", "MIN", "MAX", "LAST", "LABELS"], rows) if rows else "no series answered"
    )
    if answer.events:
        events = [
            [time_text(e.time), _EVENT_KINDS.get(e.kind, "?"), _number(e.value),
             _alert_labels(e.labels)]
            for e in answer.events
        ]  # fmt: skip
        lines.append(table(["TIME", "TRANSITION", "VALUE", "LABELS"], events))
    else:
        lines.append("no transitions: it would not have fired")
    return "\n".join(lines)
