"""``python -m bench.http``: OTLP/HTTP (protobuf and JSON) against OTLP/gRPC, same otlpd.

One otlpd (``--workers 1``, ``make run`` defaults, fresh database) takes the same
pre-built requests of a ``bench.workload`` case three ways, each a closed loop with
``--inflight`` calls outstanding for ``--duration`` seconds: OTLP/gRPC over one
connection (as a Collector sends), OTLP/HTTP protobuf and OTLP/HTTP JSON over
``--inflight`` keep-alive connections (HTTP/1.1 has one call in flight per
connection, which is how OTLP/HTTP exporters send). Printed per transport: records/s
acknowledged, otlpd's CPU per record (its process, user + system) and the latency
percentiles of the calls. The load generator runs in this process, on the same box.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
import grpc
import psutil
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from bench import workload
from bench.loadgen import EXPORT_PATHS
from bench.report import percentile
from bench.targets import OtlpdTarget, workdir
from otlpd.receiver.otlp_json import to_otlp_json

_REQUESTS: dict[str, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
}


@dataclass(frozen=True, slots=True)
class Run:
    transport: str
    records_per_second: float
    cpu_us_per_record: float
    p50_ms: float
    p99_ms: float


async def _closed_loop(
    send: Callable[[int], Awaitable[int]], inflight: int, duration: float
) -> tuple[int, list[float], float]:
    """Records acknowledged, call latencies (s) and elapsed seconds."""
    latencies: list[float] = []
    acked = 0
    end = time.monotonic() + duration

    async def caller(index: int) -> None:
        nonlocal acked
        i = index
        while time.monotonic() < end:
            started = time.perf_counter()
            records = await send(i)  # not `acked += await ...`: that reads acked first
            acked += records
            latencies.append(time.perf_counter() - started)
            i += inflight

    started = time.monotonic()
    await asyncio.gather(*(caller(i) for i in range(inflight)))
    return acked, latencies, time.monotonic() - started


async def _measure(
    transport: str,
    pid: int,
    send: Callable[[int], Awaitable[int]],
    args: argparse.Namespace,
) -> Run:
    inflight, duration = args.inflight, args.duration
    process = psutil.Process(pid)
    await _closed_loop(send, inflight, args.warmup)  # caches and connections
    before = process.cpu_times()
    acked, latencies, elapsed = await _closed_loop(send, inflight, duration)
    after = process.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    latencies.sort()
    return Run(
        transport,
        acked / elapsed,
        cpu / max(acked, 1) * 1e6,
        percentile(latencies, 50) * 1e3,
        percentile(latencies, 99) * 1e3,
    )


async def _run(args: argparse.Namespace, target: OtlpdTarget, pid: int) -> list[Run]:
    load = workload.build_case(args.case, args.pool, time.time_ns())
    signal = load.signal
    bodies = list(load.requests)
    counts = list(load.records)
    request_type = _REQUESTS[signal]
    documents = [
        json.dumps(to_otlp_json(request_type.FromString(body))).encode() for body in bodies
    ]
    n = len(bodies)
    runs: list[Run] = []

    async with grpc.aio.insecure_channel(target.grpc_addr) as channel:
        export = channel.unary_unary(
            EXPORT_PATHS[signal], request_serializer=None, response_deserializer=None
        )

        async def grpc_send(i: int) -> int:
            await export(bodies[i % n], timeout=30)
            return counts[i % n]

        runs.append(await _measure("OTLP/gRPC, 1 connection", pid, grpc_send, args))

    url = f"http://{target.http_addr}/v1/{signal}"
    connector = aiohttp.TCPConnector(limit=args.inflight)
    async with aiohttp.ClientSession(connector=connector) as session:

        def http_send(
            payloads: Sequence[bytes], content_type: str
        ) -> Callable[[int], Awaitable[int]]:
            async def send(i: int) -> int:
                async with session.post(
                    url, data=payloads[i % n], headers={"Content-Type": content_type}
                ) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}")
                return counts[i % n]

            return send

        connections = f"{args.inflight} connections"
        runs.append(
            await _measure(
                f"OTLP/HTTP protobuf, {connections}",
                pid,
                http_send(bodies, "application/x-protobuf"),
                args,
            )
        )
        runs.append(
            await _measure(
                f"OTLP/HTTP JSON, {connections}",
                pid,
                http_send(documents, "application/json"),
                args,
            )
        )
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.http", description=__doc__)
    p.add_argument("--case", default="spans-sessions", choices=sorted(workload.CASES))
    p.add_argument("--duration", type=float, default=8.0, help="seconds per closed loop")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each loop")
    p.add_argument("--inflight", type=int, default=16)
    p.add_argument("--pool", type=int, default=64, help="distinct requests")
    p.add_argument(
        "--pg",
        default=os.environ.get("OTLPD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"),
    )
    args = p.parse_args(argv)
    target = OtlpdTarget(workdir(), 1, args.pg)
    target.start()
    try:
        runs = asyncio.run(_run(args, target, target.pid))
    finally:
        target.stop()
    print(
        f"# bench.http: case {args.case}, {args.inflight} in flight, {args.duration:g} s each;"
        f" {platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {sys.version.split()[0]}"
    )
    print("| transport | records/s | otlpd CPU µs/record | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for run in runs:
        print(
            f"| {run.transport} | {run.records_per_second:,.0f} | {run.cpu_us_per_record:.1f}"
            f" | {run.p50_ms:.1f} | {run.p99_ms:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
