"""The client subcommands against a real otlpd, with data sent through its OTLP receiver.

Each test runs ``otlpd ...`` as ``main(argv)`` in this process (the same code as the
console script) and reads what it printed; flag parsing is tested on its own first.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from otlpd.__main__ import main
from otlpd.client import commands
from tests.conftest import RunningOtlpd, free_port

MS = 10**6
SECOND = 10**9


# ---- flag values ---------------------------------------------------------------------


def test_times_are_now_a_duration_ago_or_rfc3339() -> None:
    now = 1_700_000_000 * SECOND
    assert commands.time_ns("now", now) == now
    assert commands.time_ns("15m", now) == now - 900 * SECOND
    assert commands.time_ns("-2h", now) == now - 7200 * SECOND
    assert commands.time_ns("2023-11-14T22:13:20Z", now) == now
    assert commands.time_ns("2023-11-14T23:13:20.5+01:00", now) == now + SECOND // 2
    assert commands.time_ns("2023-11-14T22:13:20", now) == now  # no offset: UTC
    with pytest.raises(argparse.ArgumentTypeError, match="RFC 3339"):
        commands.time_ns("yesterday", now)


def test_severities_by_name_or_number() -> None:
    assert [commands.severity(s) for s in ("warn", "WARNING", "Error", "fatal", "0", "17")] == [
        13,
        13,
        17,
        21,
        0,
        17,
    ]
    for bad in ("loud", "25", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            commands.severity(bad)


def test_ids_durations_attributes_and_matchers() -> None:
    assert commands.trace_id("0102030405060708090A0B0C0D0E0F10") == bytes(range(1, 17))
    assert commands.span_id("0102030405060708") == bytes(range(1, 9))
    for bad in ("0102", "zz" * 16, "01" * 17):
        with pytest.raises(argparse.ArgumentTypeError, match="hex digits"):
            commands.trace_id(bad)
    assert commands.duration_ns("100ms") == 100 * MS
    assert commands.duration_ns("1m") == 60 * SECOND
    with pytest.raises(argparse.ArgumentTypeError):
        commands.duration_ns("fast")
    assert commands.attribute("http.route=/a=b") == ("http.route", "/a=b")
    with pytest.raises(argparse.ArgumentTypeError):
        commands.attribute("no-equals")
    assert [commands.matcher(m) for m in ("a=1", "a!=1", "a=~x.*", "a!~x|y")] == [
        ("a", "OP_EQ", "1"),
        ("a", "OP_NEQ", "1"),
        ("a", "OP_RE", "x.*"),
        ("a", "OP_NRE", "x|y"),
    ]


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for name in ("serve", "migrate", "version", "traces", "trace", "logs", "metrics"):
        assert name in text
    for name in ("session", "services", "operations"):
        assert name in text
    for group, subcommands in (
        ("logs", ("search", "tail", "context", "volume")),
        ("metrics", ("query", "list")),
        ("traces", ("search",)),
    ):
        with pytest.raises(SystemExit):
            main([group, "--help"])
        text = capsys.readouterr().out
        assert all(sub in text for sub in subcommands), (group, text)


def test_a_bad_flag_value_is_refused_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["trace", "abc", "--addr", "127.0.0.1:1"])
    assert exited.value.code == 2
    assert "a trace id is 32 hex digits" in capsys.readouterr().err


def test_an_unreachable_server_gets_a_one_line_hint(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    assert main(["services", "--addr", address, "--timeout", "5s"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"otlpd: cannot reach the query API at {address} (is `otlpd serve` running? "
        "set --addr or OTLPD_QUERY_ENDPOINT)\n"
    )


# ---- against a running otlpd ---------------------------------------------------------


@pytest.fixture
def addr(otlpd: RunningOtlpd, monkeypatch: pytest.MonkeyPatch) -> str:
    """The running otlpd's query address, also as OTLPD_QUERY_ENDPOINT (no OTLPD_PROJECT)."""
    address = f"127.0.0.1:{otlpd.app.ports.query}"
    monkeypatch.setenv("OTLPD_QUERY_ENDPOINT", address)
    monkeypatch.delenv("OTLPD_PROJECT", raising=False)
    return address


@pytest.fixture
def ingest(otlpd: RunningOtlpd) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(otlpd.grpc_target) as channel:
        yield channel


def _attrs(**values: str) -> list[common_pb2.KeyValue]:
    return [
        common_pb2.KeyValue(key=k.replace("_", "."), value=common_pb2.AnyValue(string_value=v))
        for k, v in values.items()
    ]


def _resource(service: str, project: str | None) -> resource_pb2.Resource:
    values = {"service_name": service}
    if project is not None:
        values["project_id"] = project
    return resource_pb2.Resource(attributes=_attrs(**values))


def send_trace(
    channel: grpc.Channel, service: str = "checkout", project: str | None = None, **attrs: str
) -> bytes:
    """A root span (300 ms), a child in another service and a failed grandchild."""
    trace_id = os.urandom(16)
    root, child, grandchild = os.urandom(8), os.urandom(8), os.urandom(8)
    start = time.time_ns() - SECOND
    request = trace_service_pb2.ExportTraceServiceRequest()

    def add(svc: str, **fields: Any) -> None:
        scope = request.resource_spans.add(resource=_resource(svc, project)).scope_spans.add()
        scope.spans.add(trace_id=trace_id, kind=2, attributes=_attrs(**attrs), **fields)

    add(
        service,
        span_id=root,
        name="GET /cart",
        start_time_unix_nano=start,
        end_time_unix_nano=start + 300 * MS,
    )
    add(
        "payments",
        span_id=child,
        parent_span_id=root,
        name="charge",
        start_time_unix_nano=start + 100 * MS,
        end_time_unix_nano=start + 250 * MS,
    )
    add(
        "payments",
        span_id=grandchild,
        parent_span_id=child,
        name="card api",
        start_time_unix_nano=start + 150 * MS,
        end_time_unix_nano=start + 240 * MS,
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="declined"),
    )
    trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]
    return trace_id


def send_log(
    channel: grpc.Channel,
    body: str,
    *,
    severity: int = 9,
    service: str = "checkout",
    project: str | None = None,
    trace_id: bytes = b"",
    **attrs: str,
) -> None:
    request = logs_service_pb2.ExportLogsServiceRequest()
    scope = request.resource_logs.add(resource=_resource(service, project)).scope_logs.add()
    scope.log_records.add(
        time_unix_nano=time.time_ns(),
        severity_number=severity,
        body=common_pb2.AnyValue(string_value=body),
        trace_id=trace_id,
        span_id=os.urandom(8) if trace_id else b"",
        attributes=_attrs(**attrs),
    )
    logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_traces_search_and_trace_draw_what_was_sent(
    addr: str, ingest: grpc.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    trace_id = send_trace(ingest)
    code, out, err = run(capsys, "traces", "search", "--since", "15m")
    assert (code, err) == (0, "")
    header, row = out.splitlines()
    assert header.split()[:3] == ["TRACE", "START", "DURATION"]
    assert row.startswith(trace_id.hex())
    assert "300ms" in row and "checkout: GET /cart" in row and "checkout,payments" in row

    code, out, err = run(capsys, "trace", trace_id.hex())
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"trace {trace_id.hex()}  3 spans  300ms  1 error"
    root, child, grandchild = lines[2:]
    assert "GET /cart" in root and "checkout" in root and "+0 " in root
    assert child.index("charge") == root.index("GET /cart") + 2
    assert grandchild.index("card api") == root.index("GET /cart") + 4
    assert "+100ms" in child and "150ms" in child
    assert grandchild.startswith("!") and grandchild.endswith("error: declined")

    code, out, _ = run(capsys, "trace", trace_id.hex(), "--json")
    spans = json.loads(out)["spans"]
    assert [(s["name"], s.get("depth", 0)) for s in spans] == [
        ("GET /cart", 0),
        ("charge", 1),
        ("card api", 2),
    ]


def test_traces_search_filters_include_and_exclude(
    addr: str, ingest: grpc.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    trace_id = send_trace(ingest, **{"http_route": "/cart"})

    def found(*flags: str) -> bool:
        code, out, err = run(capsys, "traces", "search", "--since", "15m", "--json", *flags)
        assert (code, err) == (0, ""), err
        found = {base64.b64decode(t["traceId"]) for t in json.loads(out).get("traces", [])}
        return trace_id in found

    assert found("--service", "payments") and not found("--service", "nope")
    assert found("--min-duration", "200ms") and not found("--min-duration", "1s")
    assert found("--errors")
    assert found("--attr", "http.route=/cart") and not found("--attr", "http.route=/other")


def test_trace_of_an_unknown_id_is_not_found(addr: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "trace", "ab" * 16)
    assert code == 1 and out == ""
    assert err.startswith("otlpd: NOT_FOUND: ") and err.count("\n") == 1


def test_services_and_project_by_flag_or_environment(
    addr: str,
    ingest: grpc.Channel,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    send_trace(ingest, service="shop-default")
    send_trace(ingest, service="shop-p1", project="p1")

    def names(out: str) -> set[str]:
        return {line.split()[0] for line in out.splitlines()[1:]}

    code, out, _ = run(capsys, "services")
    assert code == 0 and names(out) == {"shop-default", "payments"}
    code, out, _ = run(capsys, "services", "--project", "p1")
    assert code == 0 and names(out) == {"shop-p1", "payments"}
    monkeypatch.setenv("OTLPD_PROJECT", "p1")
    code, out, _ = run(capsys, "services")
    assert code == 0 and names(out) == {"shop-p1", "payments"}
    code, out, _ = run(capsys, "services", "--project", "p2")
    assert code == 0 and out == "no services\n"
    code, out, _ = run(capsys, "operations", "payments")
    assert code == 0 and {line.split("  ")[0] for line in out.splitlines()[1:]} == {
        "charge",
        "card api",
    }


def test_a_server_error_is_one_line_with_its_status(
    addr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "services", "--project", "p" * 129)
    assert code == 1 and out == ""
    assert err.startswith("otlpd: INVALID_ARGUMENT: ") and "x-otlpd-project" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_logs_search_finds_text_and_honours_filters(
    addr: str, ingest: grpc.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    trace_id = os.urandom(16)
    send_log(ingest, "payment failed for order 7", severity=17, trace_id=trace_id, tier="gold")
    send_log(ingest, "payment accepted", severity=9, service="web")
    code, out, err = run(capsys, "logs", "search", "payment failed", "--since", "1h")
    assert (code, err) == (0, "")
    (line,) = out.splitlines()
    assert "ERROR  checkout  payment failed for order 7" in line
    assert line.endswith(f"trace={trace_id.hex()}")

    def bodies(*flags: str) -> set[str]:
        code, out, err = run(capsys, "logs", "search", "--json", *flags)
        assert (code, err) == (0, ""), err
        return {r["body"] for r in json.loads(out).get("records", [])}

    both = {"payment failed for order 7", "payment accepted"}
    assert bodies("payment") == both
    assert bodies("pay*", "--min-severity", "warn") == {"payment failed for order 7"}
    assert bodies("--service", "web") == {"payment accepted"}
    assert bodies("--trace-id", trace_id.hex()) == {"payment failed for order 7"}
    assert bodies("--trace-id", os.urandom(16).hex()) == set()
    assert bodies("--attr", "tier=gold") == {"payment failed for order 7"}
    assert bodies("--attr", "tier=silver") == set()
    assert bodies("--since", "1h", "--project", "p1") == set()


def test_logs_tail_prints_records_committed_while_it_runs(
    addr: str, ingest: grpc.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    def later() -> None:
        time.sleep(1.0)
        send_log(ingest, "tail me", service="web")
        send_log(ingest, "not me", service="other")

    sender = threading.Thread(target=later)
    sender.start()
    code, out, err = run(capsys, "logs", "tail", "--service", "web", "--for", "4s", "--json")
    sender.join()
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["body"] for r in records] == ["tail me"]


def test_ctrl_c_ends_a_live_logs_tail_with_130(addr: str, ingest: grpc.Channel) -> None:
    """Ctrl-C while records stream in ends `otlpd logs tail` at once, as a shell expects:
    status 130, nothing on stderr (no traceback)."""
    command = [sys.executable, "-m", "otlpd", "logs", "tail", "--service", "web", "--json"]
    code, out, err = interrupt_once_streaming(command, ingest, body="streamed", service="web")
    assert (code, err) == (130, "")
    assert [json.loads(line)["body"] for line in out.splitlines()][:1] == ["streamed"]


def interrupt_once_streaming(
    command: list[str], ingest: grpc.Channel, *, body: str, service: str, **popen: Any
) -> tuple[int, str, str]:
    """Runs a `logs tail` ``command``, sends it records (``body``, of ``service``) until it
    prints one (it is streaming then, however long it took to start), then stops it as a
    user would (Ctrl-C). Returns its exit status, all it printed and its stderr; a tail
    still running 60 s on is killed, so that a hang fails the caller, not the suite."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    sending = threading.Event()
    sending.set()

    def send() -> None:
        while sending.is_set():
            send_log(ingest, body, service=service)
            time.sleep(0.2)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert body in first, process.communicate()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        sending.clear()
        sender.join()
        watchdog.cancel()
        process.kill()
    return process.returncode, first + out, err


def test_session_prints_the_timeline(
    addr: str, ingest: grpc.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    send_log(ingest, "opened the cart", service="web", session_id="sess-1", user_id="u-7")
    code, out, err = run(capsys, "session", "sess-1")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "session sess-1  project default  user u-7"
    assert any("log" in line and "opened the cart" in line for line in lines[4:])
    code, _, err = run(capsys, "session", "sess-unknown")
    assert code == 1 and err.startswith("otlpd: NOT_FOUND")


def send_histogram(channel: grpc.Channel, name: str = "http.server.duration") -> None:
    """Two one-minute delta histograms (bounds 10, 100, 1000 ms) for one series."""
    now = time.time_ns()
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    scope = request.resource_metrics.add(resource=_resource("checkout", None)).scope_metrics.add()
    metric = scope.metrics.add(name=name, unit="ms", description="server latency")
    metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    for i, counts in enumerate(([5, 90, 5, 0], [0, 10, 80, 10])):
        end = now - (1 - i) * 60 * SECOND
        metric.histogram.data_points.add(
            start_time_unix_nano=end - 60 * SECOND,
            time_unix_nano=end,
            count=sum(counts),
            bucket_counts=counts,
            explicit_bounds=[10, 100, 1000],
            attributes=_attrs(http_route="/cart"),
        )
    metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(request, timeout=10)  # type: ignore[no-untyped-call]


def test_metrics_query_draws_a_chart_and_metrics_list_names_it(
    addr: str, ingest: grpc.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    send_histogram(ingest)
    code, out, err = run(
        capsys, "metrics", "query", "http.server.duration", "--agg", "p95", "--step", "1m",
        "--since", "15m",
    )  # fmt: skip
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "http.server.duration [ms]  step 1m"
    assert any("min " in line and "max " in line for line in lines)
    code, out, _ = run(capsys, "metrics", "query", "http.server.duration", "--json",
                       "--agg", "p95", "--step", "1m", "--since", "15m")  # fmt: skip
    values = [s["value"] for s in json.loads(out)["results"][0]["series"][0]["samples"]]
    assert len(values) >= 2 and max(values) > 100  # the second minute's p95 is in (100, 1000]
    code, out, _ = run(capsys, "metrics", "list")
    assert code == 0
    assert out.splitlines()[1].split()[:3] == ["http.server.duration", "histogram", "ms"]
    code, out, _ = run(capsys, "metrics", "list", "--prefix", "rpc.")
    assert code == 0 and out == "no metrics\n"


def test_pages_follow_the_printed_page_token(
    addr: str, ingest: grpc.Channel, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = {send_trace(ingest).hex(), send_trace(ingest).hex()}
    code, first, err = run(capsys, "traces", "search", "--since", "15m", "--limit", "1")
    # The hint repeats the range as sent (a second "--since 15m" would be another range).
    hint = err.split()
    assert code == 0 and hint[0] == "more:" and hint[1::2] == ["--start", "--end", "--page-token"]
    start, end, token = hint[2::2]
    assert commands.time_ns(end) - commands.time_ns(start) == 900 * SECOND
    code, second, err = run(capsys, "traces", "search", "--limit", "1", *hint[1:])
    assert (code, err) == (0, "")
    seen = {out.splitlines()[1].split()[0] for out in (first, second)}
    assert seen == sent
    # The token belongs to its request: with other filters it is refused, naming the field.
    code, _, err = run(
        capsys, "traces", "search", "--errors", "--limit", "1", "--page-token", token
    )
    assert code == 1 and err.startswith("otlpd: INVALID_ARGUMENT: ") and "page_token" in err


def test_since_and_start_together_are_refused(
    addr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "logs", "search", "--since", "1h", "--start", "2h")
    assert (code, out) == (1, "")
    assert err == "otlpd: --since and --start are the same thing: give one\n"
