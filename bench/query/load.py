"""The RPC mix: each case timed with several clients calling in parallel, closed loop.

A case is one RPC with one shape of request (a word search over the last hour, a trace by
id, ...) whose parameters vary call by call, drawn from what ``bench.query.generate`` is
known to have stored (trace ids that exist, words of the vocabulary, a session with 1,000
records), so every call does real work. Each client is a process of its own with its own
channel (its own HTTP/2 connection), calling one request after another for the case's
duration; latency is measured around each blocking call, so it includes the client's
protobuf parsing, as an application's would.

An RPC that answers UNIMPLEMENTED is reported as "not built", not as a failure: the
query service is built RPC by RPC, and the benchmark must run on any stage of it.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
from google.protobuf import duration_pb2, message, timestamp_pb2

from bench.query import generate
from bench.query.generate import Dataset
from query.proto import pb, pb_grpc

_HOUR_NS: Final = 3600 * 10**9
_MINUTE_NS: Final = 60 * 10**9
CALL_TIMEOUT: Final = 30.0
WARMUP_CALLS: Final = 2
METADATA: Final = (("x-otlpd-project", generate.PROJECT),)


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    """``ns`` since the epoch as a protobuf Timestamp."""
    return timestamp_pb2.Timestamp(seconds=ns // 10**9, nanos=ns % 10**9)


def duration(ns: int) -> duration_pb2.Duration:
    """``ns`` as a protobuf Duration."""
    return duration_pb2.Duration(seconds=ns // 10**9, nanos=ns % 10**9)


@dataclass(frozen=True, slots=True)
class Case:
    """One RPC with one request shape; ``target_ms`` applies to percentile ``stat``."""

    name: str
    rpc: str
    build: Callable[[random.Random], message.Message]
    about: str
    target_ms: float | None = None
    stat: int = 99
    # How many things the answer holds (records, spans, series points), for the report.
    size: Callable[[Any], int] = lambda _: 0
    # Built from what another case answered (GetLogContext needs record ids).
    needs: str = ""


@dataclass(slots=True)
class CaseResult:
    """What one case measured; latencies in seconds, of successful calls only."""

    case: Case
    latencies: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    not_built: str = ""
    # perf_counter at the end of the clients' warm-up and at their last answer.
    started: float = 0.0
    ended: float = 0.0

    @property
    def seconds(self) -> float:
        """How long the timed calls ran, over all clients."""
        return self.ended - self.started

    @property
    def calls(self) -> int:
        """Successful calls (warm-up excluded)."""
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        """Successful calls per second over all clients."""
        return self.calls / self.seconds if self.seconds > 0 else 0.0


def words(ds: Dataset) -> Callable[[random.Random], str]:
    """A word to search for: common half the time, any of the vocabulary, sometimes rare."""
    vocab, rare = generate.vocabulary(), generate.rare_words()

    def pick(rng: random.Random) -> str:
        roll = rng.random()
        if roll < 0.5:
            return rng.choice(vocab[:200])
        if roll < 0.9:
            return rng.choice(vocab)
        return rng.choice(rare)

    return pick


def cases(ds: Dataset) -> list[Case]:
    """Every case, those with a target from the issue first."""
    end, start = ds.window_end_ns, ds.window_start_ns
    hour = (timestamp(end - _HOUR_NS), timestamp(end))
    day = (timestamp(start), timestamp(end))
    month = (timestamp(end - generate.ROLLUP_DAYS * 24 * _HOUR_NS), timestamp(end))
    word = words(ds)
    # The newest million log records (the dataset spreads its records evenly over the day).
    patterns_window = (
        timestamp(end - int((end - start) * min(1.0, 1_000_000 / max(1, ds.logs)))),
        timestamp(end),
    )
    services = generate.SERVICES

    def any_trace(rng: random.Random) -> int:
        return rng.randrange(ds.traces)

    def sessions(rng: random.Random) -> str:
        return f"sess-{rng.randrange(ds.sessions)}"

    def search_logs(window: tuple[Any, Any]) -> Callable[[random.Random], message.Message]:
        return lambda rng: pb.SearchLogsRequest(
            start_time=window[0], end_time=window[1], filter=pb.LogFilter(q=word(rng))
        )

    def records(answer: Any) -> int:
        return len(answer.records)

    return [
        Case(
            "GetTrace",
            "GetTrace",
            lambda rng: pb.GetTraceRequest(trace_id=generate.trace_id(any_trace(rng))),
            "a random trace of 10 spans, anywhere in the day",
            20,
            size=lambda a: len(a.spans),
        ),
        Case(
            "ListServices",
            "ListServices",
            lambda rng: pb.ListServicesRequest(),
            "the catalog: 20 services",
            20,
            size=lambda a: len(a.services),
        ),
        Case(
            "SearchLogs word 1h",
            "SearchLogs",
            search_logs(hour),
            "one word (common, any, or rare) over the last hour",
            100,
            size=records,
        ),
        Case(
            "SearchLogs word 24h",
            "SearchLogs",
            search_logs(day),
            "one word over the whole day",
            500,
            size=records,
        ),
        Case(
            "SearchLogs trace_id",
            "SearchLogs",
            lambda rng: pb.SearchLogsRequest(
                filter=pb.LogFilter(trace_id=generate.trace_id(any_trace(rng)))
            ),
            "the logs of a random trace, no time range",
            20,
            size=records,
        ),
        Case(
            "SearchLogs session_id",
            "SearchLogs",
            lambda rng: pb.SearchLogsRequest(filter=pb.LogFilter(session_id=sessions(rng))),
            "the logs of a random session (200 records), no time range",
            20,
            size=records,
        ),
        Case(
            "SearchTraces service+min_duration 1h",
            "SearchTraces",
            lambda rng: pb.SearchTracesRequest(
                start_time=hour[0],
                end_time=hour[1],
                service=rng.choice(services),
                min_duration=duration(rng.choice((50, 100, 200)) * 10**6),
            ),
            "a random service, spans of at least 50/100/200 ms, last hour",
            200,
            size=lambda a: len(a.traces),
        ),
        Case(
            "QueryMetrics histogram p95 24h 1m",
            "QueryMetrics",
            lambda rng: pb.QueryMetricsRequest(
                queries=[
                    pb.MetricQuery(
                        metric_name=generate.HISTOGRAM_METRIC,
                        start_time=day[0],
                        end_time=day[1],
                        step=duration(_MINUTE_NS),
                        aggregation=pb.AGGREGATION_P95,
                    )
                ]
            ),
            f"p95 from the buckets of {ds.series} histogram series, 1,440 steps",
            300,
            size=lambda a: sum(len(s.samples) for r in a.results for s in r.series),
        ),
        Case(
            "QueryMetrics histogram p95 30d 1h",
            "QueryMetrics",
            lambda rng: pb.QueryMetricsRequest(
                queries=[
                    pb.MetricQuery(
                        metric_name=generate.HISTOGRAM_METRIC,
                        start_time=month[0],
                        end_time=month[1],
                        step=duration(_HOUR_NS),
                        aggregation=pb.AGGREGATION_P95,
                    )
                ]
            ),
            f"p95 of {ds.series} histogram series over 30 days, 720 steps, from 1-hour rollups",
            500,
            size=lambda a: sum(len(s.samples) for r in a.results for s in r.series),
        ),
        Case(
            "QueryMetrics counter rate 30d 1h",
            "QueryMetrics",
            lambda rng: pb.QueryMetricsRequest(
                queries=[
                    pb.MetricQuery(
                        metric_name=generate.COUNTER_METRIC,
                        start_time=month[0],
                        end_time=month[1],
                        step=duration(_HOUR_NS),
                        aggregation=pb.AGGREGATION_RATE,
                    )
                ]
            ),
            f"rate of {ds.series} counter series over 30 days, 720 steps each, from 1-hour rollups",
            500,
            size=lambda a: sum(len(s.samples) for r in a.results for s in r.series),
        ),
        Case(
            "GetSessionTimeline 1,000 records",
            "GetSessionTimeline",
            lambda rng: pb.GetSessionTimelineRequest(session_id=generate.SESSION_1000, limit=1000),
            "600 spans and 400 logs of one session, one page",
            50,
            size=lambda a: len(a.items),
        ),
        # No target in the issue: timed for the record.
        Case(
            "ListOperations",
            "ListOperations",
            lambda rng: pb.ListOperationsRequest(service=rng.choice(services)),
            "the 10 operations of a random service",
            size=lambda a: len(a.operations),
        ),
        Case(
            "GetLogContext",
            "GetLogContext",
            lambda rng: pb.GetLogContextRequest(),  # ids filled in by the runner
            "10 records before and after a record found by SearchLogs",
            size=lambda a: len(a.before) + len(a.after),
            needs="record ids",
        ),
        Case(
            "GetLogVolume 24h",
            "GetLogVolume",
            lambda rng: pb.GetLogVolumeRequest(start_time=day[0], end_time=day[1]),
            "counts per bucket and severity over the day, default step",
            size=lambda a: len(a.buckets),
        ),
        Case(
            "GetLogVolume word 1h",
            "GetLogVolume",
            lambda rng: pb.GetLogVolumeRequest(
                start_time=hour[0], end_time=hour[1], filter=pb.LogFilter(q=word(rng))
            ),
            "the sparkline of a one-word search over the last hour",
            size=lambda a: len(a.buckets),
        ),
        Case(
            "SearchTraces errors 1h",
            "SearchTraces",
            lambda rng: pb.SearchTracesRequest(
                start_time=hour[0], end_time=hour[1], errors_only=True
            ),
            "traces with an error span, last hour",
            size=lambda a: len(a.traces),
        ),
        Case(
            "QueryMetrics counter rate 24h 1m",
            "QueryMetrics",
            lambda rng: pb.QueryMetricsRequest(
                queries=[
                    pb.MetricQuery(
                        metric_name=generate.COUNTER_METRIC,
                        start_time=day[0],
                        end_time=day[1],
                        step=duration(_MINUTE_NS),
                        aggregation=pb.AGGREGATION_RATE,
                        range=duration(5 * _MINUTE_NS),
                    )
                ]
            ),
            f"rate over 5 min of {ds.series} counter series (some reset), 1,440 steps each",
            size=lambda a: sum(len(s.samples) for r in a.results for s in r.series),
        ),
        Case(
            "GetServiceStats 24h 5m",
            "GetServiceStats",
            lambda rng: pb.GetServiceStatsRequest(
                start_time=day[0], end_time=day[1], step=duration(5 * _MINUTE_NS)
            ),
            f"RED of all {len(services)} services over the day in 5-minute steps (rollups)",
            500,
            stat=50,
            size=lambda a: sum(len(s.points) for s in a.services),
        ),
        Case(
            "GetServiceGraph 1h",
            "GetServiceGraph",
            lambda rng: pb.GetServiceGraphRequest(start_time=hour[0], end_time=hour[1]),
            "caller -> callee edges of the last hour, from the spans",
            500,
            stat=50,
            size=lambda a: len(a.edges),
        ),
        Case(
            "GetLogPatterns 1M records",
            "GetLogPatterns",
            lambda rng: pb.GetLogPatternsRequest(
                start_time=patterns_window[0], end_time=patterns_window[1]
            ),
            "templates of the newest 1M records (the last ~2.4 h), against the window before",
            3000,
            stat=50,
            size=lambda a: len(a.patterns),
        ),
        Case(
            "GetServiceStats 1h ops",
            "GetServiceStats",
            lambda rng: pb.GetServiceStatsRequest(
                start_time=hour[0],
                end_time=hour[1],
                operations=True,
                step=duration(_MINUTE_NS),
            ),
            "RED of every service and operation over the last hour, 1-minute steps",
            size=lambda a: sum(len(s.points) for s in a.services),
        ),
        Case(
            "GetLatencyHistogram 1h",
            "GetLatencyHistogram",
            lambda rng: pb.GetLatencyHistogramRequest(
                start_time=hour[0], end_time=hour[1], service=rng.choice(services)
            ),
            "duration histogram and exact percentiles of one service, last hour (raw spans)",
            size=lambda a: a.count,
        ),
        Case(
            "GetErrorSpikes 15m",
            "GetErrorSpikes",
            lambda rng: pb.GetErrorSpikesRequest(
                start_time=timestamp(end - 15 * _MINUTE_NS), end_time=timestamp(end)
            ),
            "ranked error rises of the last 15 minutes against the hour before, with examples",
            size=lambda a: len(a.spikes),
        ),
        Case(
            "DetectAnomalies RED p95 6h",
            "DetectAnomalies",
            lambda rng: pb.DetectAnomaliesRequest(
                red=pb.RedSeriesQuery(
                    service=rng.choice(services),
                    signal=pb.RedSeriesQuery.SIGNAL_P95,
                    start_time=timestamp(end - 6 * _HOUR_NS),
                    end_time=timestamp(end),
                    step=duration(_MINUTE_NS),
                )
            ),
            "scores of one service's p95 per minute over 6 h against a 30-minute window",
            size=lambda a: sum(len(s.points) for s in a.series),
        ),
        Case(
            "ListMetrics",
            "ListMetrics",
            lambda rng: pb.ListMetricsRequest(prefix="http."),
            "metric names with prefix http.",
            size=lambda a: len(a.metrics),
        ),
    ]


class Runner:
    """One client: its own channel, calling one case's requests one after another."""

    def __init__(self, addr: str, index: int, *, seconds: float, calls: int = 0) -> None:
        self._index = index
        self._seconds = seconds
        self._calls = calls
        options = [("grpc.max_receive_message_length", 1 << 28)]
        self._channel = grpc.insecure_channel(addr, options=options)
        self._stub = pb_grpc.QueryServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._record_ids: list[str] = []

    def close(self) -> None:
        self._channel.close()

    def run(self, case: Case) -> CaseResult:
        """Times ``case``: a few warm-up calls, then the closed loop."""
        result = CaseResult(case)
        build = case.build
        if case.needs == "record ids":
            if not self._record_ids:
                result.not_built = "no record ids (SearchLogs answered none)"
                return result
            ids = self._record_ids
            build = lambda rng: pb.GetLogContextRequest(id=rng.choice(ids))  # noqa: E731
        method = getattr(self._stub, case.rpc)
        rng = random.Random(f"{case.name}/{self._index}")
        done = warm = 0
        deadline: float | None = None
        while True:
            request = build(rng)
            began = time.perf_counter()
            try:
                answer = method(request, timeout=CALL_TIMEOUT, metadata=METADATA)
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    result.not_built = exc.details() or "UNIMPLEMENTED"
                    return result
                result.errors[code.name] = result.errors.get(code.name, 0) + 1
                if not result.first_error:
                    result.first_error = f"{code.name}: {exc.details()}"
                answer = None
            elapsed = time.perf_counter() - began
            if warm < WARMUP_CALLS:
                warm += 1
                if warm == WARMUP_CALLS:
                    result.started = result.ended = time.perf_counter()
                    deadline = result.started + self._seconds
                continue
            if answer is not None:
                result.latencies.append(elapsed)
                result.sizes.append(case.size(answer))
                if case.rpc == "SearchLogs" and len(self._record_ids) < 1000:
                    self._record_ids.extend(r.id for r in answer.records[:5])
            done += 1
            result.ended = time.perf_counter()
            if deadline is None or result.ended >= deadline:
                return result
            if self._calls and done >= self._calls:
                return result


@dataclass(frozen=True, slots=True)
class _Plan:
    """What every client process is given (picklable)."""

    addr: str
    catalogue: Callable[[], list[Case]]
    seconds: float
    calls: int


def _client(plan: _Plan, index: int, orders: Any, answers: Any) -> None:
    """A client process: runs each case ``orders`` names, and puts what it measured on
    ``answers`` (a case's functions do not cross processes; its name does)."""
    by_name = {case.name: case for case in plan.catalogue()}
    runner = Runner(plan.addr, index, seconds=plan.seconds, calls=plan.calls)
    try:
        while (name := orders.get()) is not None:
            try:
                r = runner.run(by_name[name])
            except Exception as exc:  # reported as an error, so the parent never waits on it
                r = CaseResult(by_name[name], errors={"CLIENT": 1}, first_error=f"client: {exc!r}")
            answers.put(
                (index, r.started, r.ended, r.latencies, r.sizes, r.errors, r.first_error,
                 r.not_built)
            )  # fmt: skip
    finally:
        runner.close()


def run_all(addr: str, selected: Sequence[Case], clients: int, *, seconds: float, calls: int = 0,
            catalogue: Callable[[], list[Case]],
            on_result: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:  # fmt: skip
    """Every case in turn, each on ``clients`` client processes at once.

    ``catalogue`` (picklable: a module's function, or a ``functools.partial`` of one)
    gives the cases ``selected`` is taken from, by name. Clients are processes, spawned,
    not threads: threads of one process share one interpreter lock, and four clients
    parsing large answers then wait for it in turn, a wait the latencies would count
    against the server. Separate services do not share one; the ingest benchmark's
    load generator is processes for the same reason. Each client has its own
    connection, as separate services would: by default grpc shares one connection among
    a process's channels to the same target, and the kernel spreads connections, not
    calls, over the workers of ``otlpd serve --workers N``."""
    context = multiprocessing.get_context("spawn")
    plan = _Plan(addr, catalogue, seconds, calls)
    answers = context.Queue()
    orders = [context.Queue() for _ in range(clients)]
    processes = [
        context.Process(
            target=_client,
            args=(plan, i, orders[i], answers),
            name=f"query-client-{i}",
            daemon=True,
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    results: list[CaseResult] = []
    try:
        for case in selected:
            for queue in orders:
                queue.put(case.name)
            result = CaseResult(case)
            windows: list[tuple[float, float]] = []
            for _ in range(clients):
                _, started, ended, latencies, sizes, errors, first_error, not_built = answers.get(
                    timeout=seconds + 20 * CALL_TIMEOUT
                )
                if started:
                    windows.append((started, ended))
                result.latencies += latencies
                result.sizes += sizes
                for code, count in errors.items():
                    result.errors[code] = result.errors.get(code, 0) + count
                result.first_error = result.first_error or first_error
                result.not_built = result.not_built or not_built
            # From the first client's end of warm-up to the last client's last answer
            # (perf_counter is CLOCK_MONOTONIC, one clock for every process of the box).
            if windows:
                result.started = min(w[0] for w in windows)
                result.ended = max(w[1] for w in windows)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        for queue in orders:
            queue.put(None)
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
    return results
