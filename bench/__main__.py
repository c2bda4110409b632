"""``python -m bench``: load otlpd and the rotel reference with realistic OTLP, print tables.

For each target (rotel-agent with a blackhole exporter, then otlpd with each worker count)
and each signal: a closed-loop run for maximum throughput, then an open-loop run at a
fixed offered rate for latency; the server's peak RSS over both; for otlpd, bytes on disk
per record and a check that PostgreSQL holds exactly what was acknowledged.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence

import psutil

from bench import workload
from bench.loadgen import ClosedLoop, LoadGenerator, OpenLoop
from bench.report import Measurement, percentile, render
from bench.targets import (
    OtlpdTarget,
    RotelTarget,
    ServerSampler,
    Target,
    TargetError,
    workdir,
)
from bench.workload import Workload


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    return [int(t) for t in _names(text)]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--target", choices=("otlpd", "rotel", "both"), default="both")
    p.add_argument("--signals", type=_names, default=list(workload.SIGNALS))
    p.add_argument("--workers", type=_ints, default=[1, 2], help="otlpd worker counts, e.g. 1,2")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per closed-loop run")
    p.add_argument("--latency-duration", type=float, default=6.0, help="seconds per open-loop run")
    p.add_argument("--inflight", type=int, default=16, help="closed-loop calls in flight")
    p.add_argument(
        "--rate", type=float, default=20_000.0, help="open-loop offered records/s per signal"
    )
    p.add_argument(
        "--overload",
        type=float,
        default=3.0,
        help="otlpd only: then offer this many times the closed-loop rate (0: skip)",
    )
    p.add_argument(
        "--overload-duration", type=float, default=4.0, help="seconds of overload per signal"
    )
    p.add_argument("--clients", type=int, default=1, help="load generator processes")
    p.add_argument(
        "--connections",
        type=int,
        default=16,
        help="TCP connections (total); many, so SO_REUSEPORT spreads them evenly",
    )
    p.add_argument("--pool", type=int, default=64, help="distinct requests per signal")
    p.add_argument(
        "--pg",
        default=os.environ.get("OTLPD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server for otlpd's throw-away databases",
    )
    args = p.parse_args(argv)
    unknown = [s for s in args.signals if s not in workload.SIGNALS]
    if unknown:
        p.error(f"--signals: unknown {', '.join(unknown)}; choose from {workload.SIGNALS}")
    if args.inflight < 1 or args.clients < 1 or args.connections < 1 or args.pool < 1:
        p.error("--inflight, --clients, --connections and --pool must be >= 1")
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_target(
    target: Target,
    workloads: dict[str, Workload],
    loadgen: LoadGenerator,
    args: argparse.Namespace,
) -> list[Measurement]:
    results: list[Measurement] = []
    try:
        # Inside the try: a target that fails half-way through starting still cleans up.
        target.start()
        with ServerSampler(target.pid, target.grpc_port) as sampler:
            for signal, wl in workloads.items():
                sampler.reset_peak()
                sampler.reset_split()
                cpu_before = sampler.cpu_seconds()
                closed = loadgen.closed_loop(
                    target.grpc_addr,
                    wl,
                    ClosedLoop(inflight=args.inflight, duration=args.duration),
                    args.connections,
                )
                _log(
                    f"  {signal}: closed loop {closed.records_per_second:,.0f} records/s "
                    f"({closed.refusals} refused, {closed.failures} failed"
                    f"{': ' + closed.errors[0] if closed.errors else ''})"
                )
                # Includes the warm-up calls: both count in ``acked``.
                cpu_per_record = (sampler.cpu_seconds() - cpu_before) / max(1, closed.acked)
                closed_split = sampler.split
                sampler.reset_split()
                opened = loadgen.open_loop(
                    target.grpc_addr,
                    wl,
                    OpenLoop(rate=args.rate, duration=args.latency_duration),
                    args.connections,
                )
                _log(
                    f"  {signal}: open loop at {args.rate:,.0f}/s: "
                    f"p50 {percentile(opened.latencies, 50) * 1000:.1f} ms, "
                    f"p99 {percentile(opened.latencies, 99) * 1000:.1f} ms"
                )
                overload = None
                overload_rss = 0
                if args.overload > 0 and isinstance(target, OtlpdTarget):
                    sampler.reset_peak()
                    rate = args.overload * closed.records_per_second
                    overload = loadgen.open_loop(
                        target.grpc_addr,
                        wl,
                        OpenLoop(rate=rate, duration=args.overload_duration, give_up=60.0),
                        args.connections,
                    )
                    overload_rss = sampler.peak
                    _log(
                        f"  {signal}: {args.overload:g}x overload at {rate:,.0f}/s: "
                        f"{overload.refusals} refused ({overload.bare_refusals} without "
                        f"RetryInfo), peak RSS {overload_rss / (1 << 20):,.0f} MiB"
                    )
                stored = target.stored(signal) if isinstance(target, OtlpdTarget) else None
                results.append(
                    Measurement(
                        target=target.name,
                        signal=signal,
                        closed=closed,
                        open=opened,
                        offered_rate=args.rate,
                        peak_rss=sampler.peak,
                        splits=(closed_split, sampler.split),
                        cpu_per_record=cpu_per_record,
                        stored=stored,
                        overload=overload,
                        overload_rate=args.overload * closed.records_per_second,
                        overload_rss=overload_rss,
                    )
                )
    finally:
        target.stop()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; returns 1 if a target failed or a store check did not hold."""
    args = _parse(argv)
    # Other work on the box skews every figure; say so rather than hide it.
    busy = psutil.cpu_percent(interval=1.0)
    if busy > 20:
        _log(f"warning: the machine is {busy:.0f}% busy before the benchmark starts")
    work = workdir()
    now_ns = time.time_ns()
    _log(f"building {args.pool} requests per signal ...")
    workloads = {s: workload.build(s, args.pool, now_ns) for s in args.signals}
    for wl in workloads.values():
        _log(
            f"  {wl.signal}: {wl.mean_records:.0f} records, {wl.mean_bytes / 1024:.0f} KiB "
            "per request"
        )

    targets: list[Target] = []
    if args.target in ("rotel", "both"):
        targets.append(RotelTarget(work))
    if args.target in ("otlpd", "both"):
        targets += [OtlpdTarget(work, w, args.pg) for w in args.workers]

    measurements: list[Measurement] = []
    failed: dict[str, str] = {}
    loadgen = LoadGenerator(args.clients)
    try:
        for target in targets:
            _log(f"{target.name}:")
            try:
                measurements += _run_target(target, workloads, loadgen, args)
            except TargetError as exc:
                failed[target.name] = str(exc).strip()
                _log(f"  failed: {str(exc).splitlines()[0]}")
    finally:
        loadgen.close()

    print()
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"CPU {busy:.0f}% busy before start, "
        f"{os.cpu_count()} CPUs; closed loop {args.inflight} in flight for {args.duration:g}s; "
        f"open loop {args.latency_duration:g}s; {args.clients} client process(es), "
        f"{args.connections} connections; logs in {work}"
    )
    print()
    print(render(measurements, failed))
    bad_store = any(m.stored is not None and m.stored.rows != m.acked for m in measurements)
    return 1 if failed or bad_store else 0


if __name__ == "__main__":
    sys.exit(main())
