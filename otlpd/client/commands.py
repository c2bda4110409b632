"""The client subcommands of ``otlpd``: argparse wiring, flags to requests, answers to text.

Flags mirror the proto's fields (``--service``, ``--min-severity``, ``--trace-id``, ...)
so docs/query.md describes both. Values are checked here only as far as turning them into
a request needs (hex ids, durations, times, ``key=value``); everything else is the
server's to judge, and its INVALID_ARGUMENT reaches the user as ``otlpd: <status>:
<message>``. This module imports only argparse at load time: ``otlpd serve`` parses the
same command line and must not pay for the gRPC stubs.

Every connection flag has a variable, so a shell sets them once: ``--token``
(``OTLPD_TOKEN``, sent as ``authorization: Bearer``), and for a server with TLS ``--ca``
(``OTLPD_QUERY_CA``) and, for mTLS, ``--cert`` and ``--key`` (``OTLPD_QUERY_CERT``,
``OTLPD_QUERY_KEY``); see ``otlpd.client.connect``. A token is better in the variable
than on the command line, where other users of the machine can read it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from otlpd.client import DEFAULT_ENDPOINT, ENDPOINT_VARIABLE, PROJECT_VARIABLE, SEVERITIES
from otlpd.config import parse_duration

AGGREGATIONS = (
    "avg",
    "sum",
    "min",
    "max",
    "count",
    "last",
    "rate",
    "increase",
    "p50",
    "p90",
    "p95",
    "p99",
)
TOKEN_VARIABLE = "OTLPD_TOKEN"
CA_VARIABLE = "OTLPD_QUERY_CA"
CERT_VARIABLE = "OTLPD_QUERY_CERT"
KEY_VARIABLE = "OTLPD_QUERY_KEY"
_MATCHER = re.compile(r"^([^=!~]+)(=~|!~|!=|=)(.*)$", re.DOTALL)
_MATCH_OPS = {"=": "OP_EQ", "!=": "OP_NEQ", "=~": "OP_RE", "!~": "OP_NRE"}
# anomalies --signal: the RED series of RedSeriesQuery.Signal.
SIGNALS = {
    "rate": "SIGNAL_REQUEST_RATE",
    "errors": "SIGNAL_ERROR_RATE",
    "p50": "SIGNAL_P50",
    "p95": "SIGNAL_P95",
    "p99": "SIGNAL_P99",
}

Handler = Callable[[argparse.Namespace, Any], int]


# ---- flag values ---------------------------------------------------------------------


def duration_ns(text: str) -> int:
    """``100ms``, ``1m``, ``2h`` (or bare seconds) in nanoseconds, never negative."""
    try:
        seconds = parse_duration(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return round(seconds * 1e9)


def time_ns(text: str, now_ns: int | None = None) -> int:
    """A point in time: ``now``, a duration ago (``15m``), or RFC 3339
    (``2024-05-01T12:00:00Z``; without an offset, UTC)."""
    now = time.time_ns() if now_ns is None else now_ns
    value = text.strip()
    if value == "now":
        return now
    try:
        return now - duration_ns(value.removeprefix("-"))
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected RFC 3339 (2024-05-01T12:00:00Z), 'now' or a duration ago (15m), got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    whole = int(moment.timestamp())
    return whole * 10**9 + moment.microsecond * 1000


def severity(text: str) -> int:
    """A minimum severity: a name (``warn``, ``error``, any case) or an OTLP number 0-24."""
    value = text.strip().lower()
    if value == "warning":
        value = "warn"
    if value in SEVERITIES:
        return SEVERITIES[value]
    if value.isdigit() and 0 <= int(value) <= 24:
        return int(value)
    names = ", ".join(sorted(SEVERITIES, key=SEVERITIES.__getitem__))
    raise argparse.ArgumentTypeError(f"expected {names} or a number 0-24, got {text!r}")


def _hex_id(text: str, size: int, what: str) -> bytes:
    value = text.strip().lower()
    if len(value) != size * 2 or not all(c in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError(f"a {what} is {size * 2} hex digits, got {text!r}")
    return bytes.fromhex(value)


def trace_id(text: str) -> bytes:
    return _hex_id(text, 16, "trace id")


def span_id(text: str) -> bytes:
    return _hex_id(text, 8, "span id")


def attribute(text: str) -> tuple[str, str]:
    """``key=value`` (the value may itself contain ``=``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def matcher(text: str) -> tuple[str, str, str]:
    """A label matcher as Prometheus writes it: ``k=v``, ``k!=v``, ``k=~re``, ``k!~re``."""
    found = _MATCHER.match(text)
    if not found:
        raise argparse.ArgumentTypeError(f"expected k=v, k!=v, k=~regex or k!~regex, got {text!r}")
    return found.group(1), _MATCH_OPS[found.group(2)], found.group(3)


# ---- argparse wiring -----------------------------------------------------------------


def _connection_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("connection")
    group.add_argument(
        "--addr",
        default=None,
        help=f"query API address [{ENDPOINT_VARIABLE}, default {DEFAULT_ENDPOINT}]",
    )
    group.add_argument(
        "--project",
        default=None,
        help=f"project to query [{PROJECT_VARIABLE}, default: the server's OTLPD_DEFAULT_PROJECT]",
    )
    group.add_argument(
        "--timeout", type=duration_ns, default=30 * 10**9, help="deadline of the call (30s)"
    )
    group.add_argument(
        "--token", default=None, help=f"API token with the query scope [{TOKEN_VARIABLE}]"
    )
    group.add_argument(
        "--ca",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"PEM CA that signed the server's certificate: connect with TLS [{CA_VARIABLE}]",
    )
    group.add_argument(
        "--cert",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"PEM client certificate, for a server that requires one [{CERT_VARIABLE}]",
    )
    group.add_argument(
        "--key",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"PEM private key of --cert [{KEY_VARIABLE}]",
    )
    group.add_argument("--json", action="store_true", help="print the answer as JSON")
    return flags


def _time_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("time range (default: the server's, the last hour for most)")
    group.add_argument("--since", type=duration_ns, help="from this long ago until now (15m, 1h)")
    group.add_argument("--start", type=time_ns, help="RFC 3339, 'now' or a duration ago")
    group.add_argument("--end", type=time_ns, help="RFC 3339, 'now' or a duration ago")


def _page_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=0, help="at most this many (0: default)")
    parser.add_argument("--page-token", default="", help="the next page of an earlier answer")


def _log_filter_flags(parser: argparse.ArgumentParser, *, query: bool = True) -> None:
    if query:
        parser.add_argument(
            "q", nargs="?", default="", help='words, "a phrase", or a prefix* in the body'
        )
    group = parser.add_argument_group("filters")
    group.add_argument("--service")
    group.add_argument("--min-severity", type=severity, help="trace|debug|info|warn|error|fatal|N")
    group.add_argument("--trace-id", type=trace_id, help="32 hex digits")
    group.add_argument("--span-id", type=span_id, help="16 hex digits")
    group.add_argument("--session", help="session id")
    group.add_argument("--user", help="user id")
    group.add_argument("--attr", type=attribute, action="append", default=[], help="key=value")


def add_commands(commands: Any) -> None:
    """Adds the client subcommands to ``otlpd``'s subparsers (``commands``)."""
    flags = [_connection_flags()]

    def command(name: str, handler: Handler, help_text: str, target: Any = commands) -> Any:
        parser = target.add_parser(name, help=help_text, description=help_text, parents=flags)
        parser.set_defaults(client=handler)
        return parser

    def group(name: str, help_text: str) -> Any:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")

    traces = group("traces", "search traces (query API)")
    search = command("search", _traces_search, "traces with a span matching filters", traces)
    _time_flags(search)
    filters = search.add_argument_group("filters")
    filters.add_argument("--service")
    filters.add_argument("--name", help="span name")
    filters.add_argument("--attr", type=attribute, action="append", default=[], help="key=value")
    filters.add_argument("--min-duration", type=duration_ns, help="e.g. 100ms")
    filters.add_argument("--max-duration", type=duration_ns, help="e.g. 2s")
    filters.add_argument("--errors", action="store_true", help="only spans with status ERROR")
    _page_flags(search)

    trace = command("trace", _trace, "one trace as a waterfall (query API)")
    trace.add_argument("trace_id", type=trace_id, metavar="TRACE_ID", help="32 hex digits")
    trace.add_argument("--logs", action="store_true", help="also print the trace's logs")

    logs = group("logs", "search, tail and count log records (query API)")
    search = command("search", _logs_search, "log records matching text and filters", logs)
    _log_filter_flags(search)
    _time_flags(search)
    _page_flags(search)
    tail = command("tail", _logs_tail, "follow log records as they are committed", logs)
    _log_filter_flags(tail)
    tail.add_argument("--for", dest="duration", type=duration_ns, help="stop after this long")
    context = command("context", _logs_context, "the records around one record", logs)
    context.add_argument("id", metavar="ID", help="a record id from logs search --json")
    context.add_argument("--before", type=int, default=0, help="records before (10)")
    context.add_argument("--after", type=int, default=0, help="records after (10)")
    volume = command("volume", _logs_volume, "record counts per time bucket and severity", logs)
    _log_filter_flags(volume)
    _time_flags(volume)
    volume.add_argument("--step", type=duration_ns, help="bucket width (default: ~60 buckets)")

    metrics = group("metrics", "query and list metrics (query API)")
    query = command("query", _metrics_query, "one metric over time, as a text chart", metrics)
    query.add_argument("name", metavar="NAME", help="metric name")
    query.add_argument("--agg", choices=AGGREGATIONS, default="avg", help="aggregation (avg)")
    query.add_argument("--step", type=duration_ns, help="bucket width (default: ~60 buckets)")
    query.add_argument("--range", type=duration_ns, help="window of rate and increase")
    query.add_argument(
        "--match", type=matcher, action="append", default=[], help="k=v, k!=v, k=~re, k!~re"
    )
    query.add_argument("--by", action="append", default=[], help="label to group by")
    _time_flags(query)
    listing = command("list", _metrics_list, "metric names, types, units and labels", metrics)
    listing.add_argument("--prefix", default="", help="only names starting with this")
    _page_flags(listing)

    session = command("session", _session, "everything one session produced (query API)")
    session.add_argument("session_id", metavar="SESSION_ID")
    _page_flags(session)

    services = command("services", _services, "services that sent data (query API)")
    _page_flags(services)
    operations = command("operations", _operations, "span names of one service (query API)")
    operations.add_argument("service", metavar="SERVICE")
    _page_flags(operations)

    _insight_commands(command)
    from otlpd.client.alerts import add_commands as add_alert_commands

    add_alert_commands(command, group)


def _insight_commands(command: Callable[..., Any]) -> None:
    """``stats``, ``graph``, ``latency``, ``anomalies``, ``spikes``, ``patterns``: the
    insights RPCs (docs/insights.md), one subcommand each."""
    stats = command("stats", _stats, "requests, errors and latency per service (query API)")
    stats.add_argument("--service", help="only this service (default: every service)")
    stats.add_argument("--operations", action="store_true", help="also each operation")
    stats.add_argument("--step", type=duration_ns, help="a request rate sparkline per step")
    _time_flags(stats)
    _page_flags(stats)

    graph = command("graph", _graph, "which service calls which, as text (query API)")
    graph.add_argument("--service", help="only the edges into or out of this service")
    _time_flags(graph)
    _page_flags(graph)

    latency = command("latency", _latency, "a service's span durations as a histogram (query API)")
    latency.add_argument("--service", required=True)
    latency.add_argument("--operation", help="span name (default: every span of the service)")
    latency.add_argument("--bins", type=int, default=0, help="log-scaled bins (40)")
    _time_flags(latency)

    anomalies = command(
        "anomalies", _anomalies, "unusual points of a metric or of a service's RED (query API)"
    )
    source = anomalies.add_mutually_exclusive_group(required=True)
    source.add_argument("--metric", metavar="NAME", help="score a metric query")
    source.add_argument("--service", help="score a RED series of this service")
    of_metric = anomalies.add_argument_group("with --metric")
    of_metric.add_argument("--agg", choices=AGGREGATIONS, help="aggregation (avg)")
    of_metric.add_argument(
        "--match", type=matcher, action="append", default=[], help="k=v, k!=v, k=~re, k!~re"
    )
    of_metric.add_argument("--by", action="append", default=[], help="label to group by")
    of_service = anomalies.add_argument_group("with --service")
    of_service.add_argument("--operation", help="span name (default: all the service's)")
    of_service.add_argument("--signal", choices=tuple(SIGNALS), help="series to score (rate)")
    scoring = anomalies.add_argument_group("scoring")
    scoring.add_argument("--step", type=duration_ns, help="bucket width (default: ~60 buckets)")
    scoring.add_argument("--window", type=duration_ns, help="trailing window (30 steps)")
    scoring.add_argument("--threshold", type=float, default=0.0, help="|score| flagged (3.5)")
    scoring.add_argument(
        "--seasonality", choices=("none", "day", "week"), default="none",
        help="score the change from one day or week earlier (none)",
    )  # fmt: skip
    _time_flags(anomalies)

    spikes = command("spikes", _spikes, "services whose error rate rose, ranked (query API)")
    spikes.add_argument("--baseline", type=duration_ns, help="compared with (4 x the window)")
    spikes.add_argument("--examples", type=int, default=0, help="example errors per spike (5)")
    _time_flags(spikes)
    _page_flags(spikes)

    patterns = command("patterns", _patterns, "log templates and their counts (query API)")
    _log_filter_flags(patterns)
    patterns.add_argument(
        "--baseline", type=duration_ns, help="new if not seen in this before (the range; 0: none)"
    )
    _time_flags(patterns)
    _page_flags(patterns)


# ---- running a command ---------------------------------------------------------------


def _target(args: argparse.Namespace) -> Any:
    from otlpd.client.connect import Target

    address = args.addr or os.environ.get(ENDPOINT_VARIABLE) or DEFAULT_ENDPOINT
    project = args.project if args.project is not None else os.environ.get(PROJECT_VARIABLE, "")
    return Target(
        address,
        project,
        args.timeout / 1e9 if args.timeout else None,
        token=args.token or os.environ.get(TOKEN_VARIABLE, ""),
        ca=_path(args.ca, CA_VARIABLE),
        cert=_path(args.cert, CERT_VARIABLE),
        key=_path(args.key, KEY_VARIABLE),
    )


def _path(flag: Path | None, variable: str) -> Path | None:
    """A file from its flag, else from its variable (unset or empty: none)."""
    if flag is not None:
        return flag
    value = os.environ.get(variable, "")
    return Path(value) if value else None


def run(args: argparse.Namespace) -> int:
    """Runs the client subcommand ``args`` names; its exit status (1: the call failed)."""
    import grpc

    from otlpd.client.connect import ClientFailure, alert_stub, failure, query_stub, report

    target = _target(args)
    args.target = target
    stub_for = alert_stub if getattr(args, "service", "query") == "alerting" else query_stub
    try:
        with stub_for(target) as stub:
            handler: Handler = args.client
            return handler(args, stub)
    except grpc.RpcError as error:
        return report(failure(error, target))
    except ClientFailure as problem:
        return report(problem)
    except KeyboardInterrupt:
        return 130


def _call(args: argparse.Namespace, method: Any, request: Any) -> Any:
    target = args.target
    return method(request, metadata=target.metadata, timeout=target.timeout)


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _answer(args: argparse.Namespace, response: Any, human: Callable[[Any], str]) -> int:
    from otlpd.client.render import json_document

    if args.json:
        _print(json_document(response))
        return 0
    _print(human(response))
    token = getattr(response, "next_page_token", "")
    if token:
        # A token is valid only with the request that made it (query.tokens), and "--since
        # 15m" is another start a second later: the hint repeats the range as it was sent.
        times = getattr(args, "sent_range", {})
        flags = "".join(f"--{name} {rfc3339(ns)} " for name, ns in times.items())
        print(f"more: {flags}--page-token {token}", file=sys.stderr)
    return 0


def rfc3339(ns: int) -> str:
    """``ns`` as RFC 3339 in UTC to the microsecond (what ``time_ns`` reads back exactly)."""
    moment = datetime.fromtimestamp(ns // 10**9, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ns % 10**9 // 1000:06d}Z"


def _set_range(request: Any, args: argparse.Namespace) -> None:
    from otlpd.client.connect import ClientFailure

    if args.since is not None and args.start is not None:
        raise ClientFailure("--since and --start are the same thing: give one")
    # Whole microseconds, so that the range printed with a page token is the range sent.
    now = time.time_ns() // 1000 * 1000
    start = now - args.since if args.since is not None else args.start
    end = args.end
    if start is not None and end is None:
        end = now  # explicit, so that the next page's request can repeat it
    args.sent_range = {}
    for name, ns in (("start", start), ("end", end)):
        if ns is not None:
            whole_us = ns // 1000 * 1000
            getattr(request, f"{name}_time").FromNanoseconds(whole_us)
            args.sent_range[name] = whole_us


def _log_filter(target: Any, args: argparse.Namespace) -> None:
    from query.proto import pb

    target.q = args.q
    target.service = args.service or ""
    target.min_severity = args.min_severity or 0
    target.trace_id = args.trace_id or b""
    target.span_id = args.span_id or b""
    target.session_id = args.session or ""
    target.user_id = args.user or ""
    target.attributes.extend(pb.AttributeFilter(key=k, value=v) for k, v in args.attr)


def _traces_search(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import traces_table
    from query.proto import pb

    request = pb.SearchTracesRequest(
        service=args.service or "",
        span_name=args.name or "",
        errors_only=args.errors,
        limit=args.limit,
        page_token=args.page_token,
    )
    _set_range(request, args)
    request.attributes.extend(pb.AttributeFilter(key=k, value=v) for k, v in args.attr)
    if args.min_duration is not None:
        request.min_duration.FromNanoseconds(args.min_duration)
    if args.max_duration is not None:
        request.max_duration.FromNanoseconds(args.max_duration)
    response = _call(args, stub.SearchTraces, request)
    return _answer(args, response, lambda r: traces_table(r.traces))


def _trace(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import log_lines, waterfall
    from query.proto import pb

    request = pb.GetTraceRequest(trace_id=args.trace_id, include_logs=args.logs)
    response = _call(args, stub.GetTrace, request)

    def human(r: Any) -> str:
        text = waterfall(r.spans)
        return f"{text}\n\nlogs\n{log_lines(r.logs) or 'no logs'}" if args.logs else text

    return _answer(args, response, human)


def _logs_search(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import log_lines
    from query.proto import pb

    request = pb.SearchLogsRequest(limit=args.limit, page_token=args.page_token)
    _log_filter(request.filter, args)
    _set_range(request, args)
    response = _call(args, stub.SearchLogs, request)
    return _answer(args, response, lambda r: log_lines(r.records) or "no log records")


def _logs_tail(args: argparse.Namespace, stub: Any) -> int:
    import grpc

    from otlpd.client.render import json_document, log_line
    from query.proto import pb

    request = pb.TailLogsRequest()
    _log_filter(request.filter, args)
    timeout = args.duration / 1e9 if args.duration else None
    stream = stub.TailLogs(request, metadata=args.target.metadata, timeout=timeout)
    with _cancel_on_interrupt(stream) as interrupted:
        try:
            for response in stream:
                if response.HasField("lagged"):
                    skipped = response.lagged.skipped_records
                    if args.json:
                        lagged = pb.TailLogsResponse(lagged=response.lagged)
                        _print(json_document(lagged, indent=None))
                    else:
                        # 0 is the server's "lagged by an unknown amount" (query.tail).
                        amount = f"{skipped} records" if skipped else "an unknown number of records"
                        print(f"otlpd: lagged: skipped {amount}", file=sys.stderr)
                for record in response.records:
                    _print(json_document(record, indent=None) if args.json else log_line(record))
        except grpc.RpcError as error:
            if interrupted.is_set():
                return 130  # Ctrl-C, as a shell reports it
            # --for ends the stream by its deadline: the end asked for, not a failure.
            if timeout is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                return 0
            raise
        return 130 if interrupted.is_set() else 0


@contextmanager
def _cancel_on_interrupt(stream: Any) -> Iterator[threading.Event]:
    """While open, Ctrl-C (SIGINT) cancels ``stream`` instead of raising
    KeyboardInterrupt; the event yielded tells that it happened.

    A KeyboardInterrupt raised wherever the main thread is inside grpc's iteration of a
    stream can leave the channel unable to close (grpc/grpc#19973: an exception from a
    signal handler during a call deadlocks ``Channel.close``), and ``otlpd logs tail``
    then never exits: it ran on after Ctrl-C until killed once in this project's test
    suite. The cancel runs on a thread of its own, so the handler never re-enters grpc's
    locks on the thread that may hold them; the iteration then ends with CANCELLED.
    Signal handlers belong to the main thread: elsewhere, nothing is installed.
    """
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_interrupt(signum: int, frame: object) -> None:
        interrupted.set()
        threading.Thread(target=stream.cancel, name="tail-cancel", daemon=True).start()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _logs_context(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import log_line, log_lines
    from query.proto import pb

    request = pb.GetLogContextRequest(id=args.id, before=args.before, after=args.after)
    response = _call(args, stub.GetLogContext, request)

    def human(r: Any) -> str:
        middle = f"> {log_line(r.record)}"
        return "\n".join(x for x in (log_lines(r.before), middle, log_lines(r.after)) if x)

    return _answer(args, response, human)


def _logs_volume(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import volume_table
    from query.proto import pb

    request = pb.GetLogVolumeRequest()
    _log_filter(request.filter, args)
    _set_range(request, args)
    if args.step is not None:
        request.step.FromNanoseconds(args.step)
    response = _call(args, stub.GetLogVolume, request)
    return _answer(args, response, volume_table)


def _metrics_query(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import metric_charts
    from query.proto import pb

    query = pb.MetricQuery(
        metric_name=args.name,
        aggregation=f"AGGREGATION_{args.agg.upper()}",
        group_by=args.by,
    )
    _set_range(query, args)
    if args.step is not None:
        query.step.FromNanoseconds(args.step)
    if args.range is not None:
        query.range.FromNanoseconds(args.range)
    for name, op, value in args.match:
        query.matchers.add(name=name, op=op, value=value)
    response = _call(args, stub.QueryMetrics, pb.QueryMetricsRequest(queries=[query]))
    return _answer(args, response, lambda r: metric_charts(r.results))


def _metrics_list(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import metrics_table
    from query.proto import pb

    request = pb.ListMetricsRequest(
        prefix=args.prefix, limit=args.limit, page_token=args.page_token
    )
    response = _call(args, stub.ListMetrics, request)
    return _answer(args, response, lambda r: metrics_table(r.metrics))


def _session(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import session_timeline
    from query.proto import pb

    request = pb.GetSessionTimelineRequest(
        session_id=args.session_id, limit=args.limit, page_token=args.page_token
    )
    response = _call(args, stub.GetSessionTimeline, request)
    return _answer(args, response, session_timeline)


def _services(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import services_table
    from query.proto import pb

    request = pb.ListServicesRequest(limit=args.limit, page_token=args.page_token)
    response = _call(args, stub.ListServices, request)
    return _answer(args, response, lambda r: services_table(r.services))


def _operations(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import operations_table
    from query.proto import pb

    request = pb.ListOperationsRequest(
        service=args.service, limit=args.limit, page_token=args.page_token
    )
    response = _call(args, stub.ListOperations, request)
    return _answer(args, response, lambda r: operations_table(r.operations))


def _range_end(args: argparse.Namespace) -> int:
    """The end of the range sent, or now for a range the server ends (its default)."""
    end: int = args.sent_range.get("end", time.time_ns())
    return end


def _stats(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import stats_table
    from query.proto import pb

    request = pb.GetServiceStatsRequest(
        service=args.service or "",
        operations=args.operations,
        limit=args.limit,
        page_token=args.page_token,
    )
    _set_range(request, args)
    if args.step is not None:
        request.step.FromNanoseconds(args.step)
    response = _call(args, stub.GetServiceStats, request)
    end = _range_end(args)
    return _answer(args, response, lambda r: stats_table(r, end))


def _graph(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import graph_lines
    from query.proto import pb

    request = pb.GetServiceGraphRequest(
        service=args.service or "", limit=args.limit, page_token=args.page_token
    )
    _set_range(request, args)
    response = _call(args, stub.GetServiceGraph, request)
    return _answer(args, response, lambda r: graph_lines(r.edges))


def _latency(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import latency_histogram
    from query.proto import pb

    request = pb.GetLatencyHistogramRequest(
        service=args.service, operation=args.operation or "", bins=args.bins
    )
    _set_range(request, args)
    response = _call(args, stub.GetLatencyHistogram, request)
    title = f"{args.service} {args.operation}" if args.operation else args.service
    return _answer(args, response, lambda r: latency_histogram(r, title))


def _anomaly_source(args: argparse.Namespace) -> dict[str, Any]:
    """The ``metric`` or ``red`` field of a DetectAnomaliesRequest, from the flags; flags of
    the other source are refused rather than silently ignored."""
    from otlpd.client.connect import ClientFailure
    from query.proto import pb

    if args.metric is not None:
        if args.operation is not None or args.signal is not None:
            raise ClientFailure("--operation and --signal go with --service, not --metric")
        metric = pb.MetricQuery(
            metric_name=args.metric,
            aggregation=f"AGGREGATION_{(args.agg or 'avg').upper()}",
            group_by=args.by,
        )
        for name, op, value in args.match:
            metric.matchers.add(name=name, op=op, value=value)
        source: Any = metric
        field = "metric"
    else:
        if args.agg is not None or args.match or args.by:
            raise ClientFailure("--agg, --match and --by go with --metric, not --service")
        source = pb.RedSeriesQuery(
            service=args.service,
            operation=args.operation or "",
            signal=SIGNALS[args.signal or "rate"],
        )
        field = "red"
    _set_range(source, args)
    if args.step is not None:
        source.step.FromNanoseconds(args.step)
    return {field: source}


def _anomalies(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import anomaly_report
    from query.proto import pb

    request = pb.DetectAnomaliesRequest(
        threshold=args.threshold,
        seasonality=f"SEASONALITY_{args.seasonality.upper()}",
        **_anomaly_source(args),
    )
    if args.window is not None:
        request.window.FromNanoseconds(args.window)
    response = _call(args, stub.DetectAnomalies, request)
    return _answer(args, response, anomaly_report)


def _spikes(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import spikes_report
    from query.proto import pb

    request = pb.GetErrorSpikesRequest(
        limit=args.limit, examples=args.examples, page_token=args.page_token
    )
    _set_range(request, args)
    if args.baseline is not None:
        request.baseline.FromNanoseconds(args.baseline)
    response = _call(args, stub.GetErrorSpikes, request)
    end = _range_end(args)
    return _answer(args, response, lambda r: spikes_report(r, end))


def _patterns(args: argparse.Namespace, stub: Any) -> int:
    from otlpd.client.render import patterns_table
    from query.proto import pb

    request = pb.GetLogPatternsRequest(limit=args.limit, page_token=args.page_token)
    _log_filter(request.filter, args)
    _set_range(request, args)
    if args.baseline is not None:
        # Set even when zero: a zero baseline ("no baseline") differs from an unset one.
        request.baseline.SetInParent()
        request.baseline.FromNanoseconds(args.baseline)
    response = _call(args, stub.GetLogPatterns, request)
    return _answer(args, response, patterns_table)


def is_client(args: argparse.Namespace) -> bool:
    """Whether ``args`` names a client subcommand (rather than serve, migrate, version)."""
    return getattr(args, "client", None) is not None


__all__: Sequence[str] = ("add_commands", "is_client", "run")
