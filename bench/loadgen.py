"""The load generator: OTLP/gRPC clients in processes of their own.

Two ways to load a server:

* **closed loop** (:func:`closed_loop`): each client process keeps ``inflight`` Export
  calls outstanding for ``duration`` seconds; the figure is records acknowledged per
  second, the server's maximum sustained throughput.
* **open loop** (:func:`open_loop`): requests leave on a wall-clock schedule at a fixed
  offered rate whether or not earlier ones have been answered, and each latency is taken
  from the moment the request was *due*, not from when it was sent. A closed-loop client
  waits for a slow server and so hides its slowness ("coordinated omission"); this one
  does not.

Requests are pre-serialized bytes (:mod:`bench.workload`) handed to grpc as is, so the
client's CPU goes to gRPC and not to protobuf. The clients never share the server's
process, and they are spawned (not forked) so grpc's threads start clean.

Counting follows the OTLP retry rules (spec "OTLP/gRPC Throttling"): an OK answer
acknowledges its records minus ``partial_success.rejected_*``; a retryable status
(UNAVAILABLE, and RESOURCE_EXHAUSTED, ...) is a *refusal*: the request is resent after
the server's ``RetryInfo`` delay (or a short default pause) and counts as done only when
accepted; any other status is a permanent *failure* and the records are lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import grpc.aio
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from bench.workload import Workload

EXPORT_PATHS: Final = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}

# The spec's retryable codes. RESOURCE_EXHAUSTED is retryable only with RetryInfo; a
# benchmark that dropped those requests would under-count, so it is retried in any case
# and the refusal is counted.
RETRYABLE: Final = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
RETRY_INFO_KEY: Final = "google.rpc.retryinfo-bin"
DEFAULT_RETRY_PAUSE: Final = 0.05
MAX_RETRY_PAUSE: Final = 1.0
CALL_TIMEOUT: Final = 30.0
CONNECT_TIMEOUT: Final = 30.0
_MAX_ERROR_SAMPLES: Final = 5

_CHANNEL_OPTIONS: Final = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
    # Each channel gets a TCP connection of its own, so several connections spread over
    # the worker processes of a server that shares its port with SO_REUSEPORT.
    ("grpc.use_local_subchannel_pool", 1),
]


def _rejected_of(signal: str) -> Callable[[bytes], int]:
    """Parses an Export response and returns its ``partial_success.rejected_*`` count."""

    def traces(data: bytes) -> int:
        resp = trace_service_pb2.ExportTraceServiceResponse.FromString(data)
        return int(resp.partial_success.rejected_spans)

    def logs(data: bytes) -> int:
        resp = logs_service_pb2.ExportLogsServiceResponse.FromString(data)
        return int(resp.partial_success.rejected_log_records)

    def metrics(data: bytes) -> int:
        resp = metrics_service_pb2.ExportMetricsServiceResponse.FromString(data)
        return int(resp.partial_success.rejected_data_points)

    return {"traces": traces, "logs": logs, "metrics": metrics}[signal]


@dataclass(slots=True)
class LoadResult:
    """What one client (or, merged, all of them) saw.

    ``acked`` counts every record the server acknowledged, including the warm-up
    requests, so it is what the store must hold afterwards; ``window_acked`` and
    ``window_seconds`` cover only the measured interval.
    """

    requests_ok: int = 0
    acked: int = 0
    rejected: int = 0
    refusals: int = 0
    # Refusals that were not UNAVAILABLE with a RetryInfo trailer: the OTLP throttling
    # contract otlpd promises (a client cannot tell how long to back off without it).
    bare_refusals: int = 0
    # The longest single accepted call (one attempt, not the retries before it): how
    # long the server held a request it went on to store.
    slowest_ok: float = 0.0
    failures: int = 0
    window_acked: int = 0
    window_seconds: float = 0.0
    due: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def records_per_second(self) -> float:
        """Records acknowledged per second over the measured interval."""
        return self.window_acked / self.window_seconds if self.window_seconds else 0.0

    def merge(self, other: LoadResult) -> None:
        """Adds another client's counts; the interval is the longest of the two."""
        self.requests_ok += other.requests_ok
        self.acked += other.acked
        self.rejected += other.rejected
        self.refusals += other.refusals
        self.bare_refusals += other.bare_refusals
        self.slowest_ok = max(self.slowest_ok, other.slowest_ok)
        self.failures += other.failures
        self.window_acked += other.window_acked
        self.window_seconds = max(self.window_seconds, other.window_seconds)
        self.due += other.due
        self.latencies.extend(other.latencies)
        room = _MAX_ERROR_SAMPLES - len(self.errors)
        self.errors.extend(other.errors[: max(0, room)])


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """Keep ``inflight`` calls outstanding per client process for ``duration`` seconds."""

    inflight: int = 16
    duration: float = 10.0


@dataclass(frozen=True, slots=True)
class OpenLoop:
    """Offer ``rate`` records per second (as whole requests) for ``duration`` seconds."""

    rate: float = 20_000.0
    duration: float = 10.0
    # How long after the run a refused request is still retried before it is abandoned
    # (reported as "never"): an overload run leaves a backlog that needs longer.
    give_up: float = 10.0


class _Client:
    """Channels to one server and the Export call, with the retry and counting rules."""

    def __init__(self, addr: str, workload: Workload, connections: int) -> None:
        self.workload = workload
        self.channels = [
            grpc.aio.insecure_channel(addr, options=_CHANNEL_OPTIONS)
            for _ in range(max(1, connections))
        ]
        path = EXPORT_PATHS[workload.signal]
        # No serializer: the request is already bytes. No deserializer: the response is
        # parsed only when it is not empty (an empty response means no partial success).
        self.calls = [
            ch.unary_unary(path, request_serializer=None, response_deserializer=None)
            for ch in self.channels
        ]
        self.rejected_of = _rejected_of(workload.signal)
        self.result = LoadResult()

    async def connect(self) -> None:
        """Connects every channel and sends one warm-up call on each.

        Set-up is thus not measured, and the server's code paths are warm. The warm-up
        calls are acknowledged, so they count in ``acked`` (the store holds them) but
        fall outside any measured window.
        """
        ready = asyncio.gather(*(ch.channel_ready() for ch in self.channels))
        await asyncio.wait_for(ready, CONNECT_TIMEOUT)
        give_up = time.monotonic() + CONNECT_TIMEOUT
        await asyncio.gather(
            *(self.export(i, stop_retrying_at=give_up) for i in range(len(self.calls)))
        )

    async def close(self) -> None:
        """Closes every channel."""
        await asyncio.gather(*(ch.close(None) for ch in self.channels))

    async def export(self, index: int, stop_retrying_at: float | None = None) -> bool:
        """Sends request ``index`` until it is accepted, fails for good, or time is up.

        Returns whether the server acknowledged it; the counts land in ``self.result``.
        """
        pool = self.workload
        n = index % len(pool.requests)
        call = self.calls[index % len(self.calls)]
        result = self.result
        while True:
            sent = time.monotonic()
            try:
                response: Any = await call(pool.requests[n], timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code not in RETRYABLE:
                    result.failures += 1
                    if len(result.errors) < _MAX_ERROR_SAMPLES:
                        result.errors.append(f"{code.name}: {exc.details()}")
                    return False
                result.refusals += 1
                trailers = exc.trailing_metadata()
                pause = _retry_pause(trailers)
                if code != grpc.StatusCode.UNAVAILABLE or not _has_retry_info(trailers):
                    result.bare_refusals += 1
                    if len(result.errors) < _MAX_ERROR_SAMPLES:
                        result.errors.append(
                            f"refused without RetryInfo: {code.name}: {exc.details()}"
                        )
                if stop_retrying_at is not None and time.monotonic() >= stop_retrying_at:
                    return False
                await asyncio.sleep(pause)
                continue
            rejected = self.rejected_of(response) if response else 0
            result.slowest_ok = max(result.slowest_ok, time.monotonic() - sent)
            result.requests_ok += 1
            result.acked += pool.records[n] - rejected
            result.rejected += rejected
            return True


def _has_retry_info(trailers: Iterable[object] | None) -> bool:
    return any(
        isinstance(item, tuple) and len(item) == 2 and item[0] == RETRY_INFO_KEY
        for item in trailers or ()
    )


def _retry_pause(trailers: Iterable[object] | None) -> float:
    """The server's RetryInfo delay, capped; a short default pause without one."""
    # grpc.aio yields trailing metadata as (key, value) pairs.
    for item in trailers or ():
        if isinstance(item, tuple) and len(item) == 2 and item[0] == RETRY_INFO_KEY:
            value = item[1]
            if isinstance(value, bytes):
                info = error_details_pb2.RetryInfo.FromString(value)
                delay = float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
                return min(max(delay, 0.0), MAX_RETRY_PAUSE)
    return DEFAULT_RETRY_PAUSE


@dataclass(frozen=True, slots=True)
class _Job:
    """What one client process needs: where, what, over how many connections, when."""

    addr: str
    workload: Workload
    connections: int
    start_at: float  # wall clock, so that every process starts together
    seed: int = 0


async def _closed(job: _Job, spec: ClosedLoop) -> LoadResult:
    client = _Client(job.addr, job.workload, job.connections)
    await client.connect()
    await _sleep_until(job.start_at)
    result = client.result
    acked_before = result.acked
    begin = time.monotonic()
    end = begin + spec.duration
    counter = iter(range(job.seed * 7919, 1 << 62))

    async def worker() -> None:
        while time.monotonic() < end:
            await client.export(next(counter), stop_retrying_at=end)

    async with asyncio.TaskGroup() as tg:
        for _ in range(spec.inflight):
            tg.create_task(worker())
    # Calls still outstanding at ``end`` were awaited; the window runs to the last answer.
    result.window_seconds = time.monotonic() - begin
    result.window_acked = result.acked - acked_before
    await client.close()
    return result


async def _open(job: _Job, spec: OpenLoop) -> LoadResult:
    client = _Client(job.addr, job.workload, job.connections)
    await client.connect()
    await _sleep_until(job.start_at)
    result = client.result
    acked_before = result.acked
    interval = job.workload.mean_records / spec.rate
    total = max(1, int(spec.duration / interval))
    begin = time.monotonic()

    give_up = begin + spec.duration + spec.give_up

    async def timed(i: int, due: float) -> None:
        if await client.export(i, stop_retrying_at=give_up):
            # From when the request was due: a late scheduler or a full connection
            # counts against the server, as it would for a real client.
            result.latencies.append(time.monotonic() - due)
        else:
            # Never accepted: leaving it out would flatter the percentiles.
            result.latencies.append(math.inf)

    async with asyncio.TaskGroup() as tg:
        for i in range(total):
            due = begin + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            result.due += 1
            tg.create_task(timed(i, due))
    result.window_seconds = time.monotonic() - begin
    result.window_acked = result.acked - acked_before
    await client.close()
    return result


async def _sleep_until(wall_time: float) -> None:
    delay = wall_time - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


def _run_closed(job: _Job, spec: ClosedLoop) -> LoadResult:
    return asyncio.run(_closed(job, spec))


def _run_open(job: _Job, spec: OpenLoop) -> LoadResult:
    return asyncio.run(_open(job, spec))


class LoadGenerator:
    """A pool of spawned client processes, reused across runs (spawning costs ~1 s)."""

    def __init__(self, processes: int) -> None:
        self.processes = max(1, processes)
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.processes, mp_context=multiprocessing.get_context("spawn")
        )

    def close(self) -> None:
        """Stops the client processes."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def closed_loop(
        self, addr: str, workload: Workload, spec: ClosedLoop, connections: int
    ) -> LoadResult:
        """Runs ``spec`` in every client process at once; returns the merged counts.

        ``spec.inflight`` and ``connections`` are totals, split over the processes.
        """
        start_at = time.time() + 1.0 + 0.2 * self.processes
        shares = _split(spec.inflight, self.processes)
        conns = _split(max(connections, self.processes), self.processes)
        futures = [
            self._pool.submit(
                _run_closed,
                _Job(addr, workload, conns[p], start_at, seed=p * 1000),
                ClosedLoop(inflight=share, duration=spec.duration),
            )
            for p, share in enumerate(shares)
            if share > 0
        ]
        return _merge([f.result() for f in futures])

    def open_loop(
        self, addr: str, workload: Workload, spec: OpenLoop, connections: int
    ) -> LoadResult:
        """Runs ``spec`` from one client process (the offered rates are modest)."""
        start_at = time.time() + 1.0
        future = self._pool.submit(_run_open, _Job(addr, workload, connections, start_at), spec)
        return future.result()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if p < total % parts else 0) for p in range(parts)]


def _merge(results: Sequence[LoadResult]) -> LoadResult:
    merged = LoadResult()
    for r in results:
        merged.merge(r)
    return merged
