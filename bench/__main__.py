"""``python -m bench``: load otlpd and the rotel reference with realistic OTLP, print tables.

For each target (rotel-agent with a blackhole exporter, then otlpd with each worker count)
and each case (a signal and a workload variant, see ``bench.workload.CASES``), on a fresh
server, for each connection count: a closed-loop run for maximum throughput (server and
PostgreSQL CPU per record), then an open-loop run at a fixed offered rate for latency; the
server's peak RSS over both; for otlpd, bytes on disk per record and a check that
PostgreSQL holds exactly what was acknowledged. Then otlpd against rotel, case by case.
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
    PostgresCpu,
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
    p.add_argument(
        "--cases",
        type=_names,
        default=list(workload.DEFAULT_CASES),
        help=f"workload cases, from {', '.join(workload.CASES)} (default: "
        f"{','.join(workload.DEFAULT_CASES)}; 'all' for every one)",
    )
    p.add_argument(
        "--signals",
        type=_names,
        default=None,
        help="keep only the cases of these signals (traces, logs, metrics)",
    )
    p.add_argument("--workers", type=_ints, default=[1, 2], help="otlpd worker counts, e.g. 1,2")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 3 s closed loop, 3 s open loop, 2 s overload, pool of 16 (unless set)",
    )
    p.add_argument("--duration", type=float, default=None, help="seconds per closed-loop run (8)")
    p.add_argument(
        "--latency-duration", type=float, default=None, help="seconds per open-loop run (6)"
    )
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
        "--overload-duration", type=float, default=None, help="seconds of overload per case (4)"
    )
    p.add_argument("--clients", type=int, default=1, help="load generator processes")
    p.add_argument(
        "--connections",
        type=_ints,
        default=[1, 16],
        help="TCP connection counts (total) to run each case with, e.g. 1,16: one is how a "
        "collector sends; many, so SO_REUSEPORT spreads them over otlpd's workers",
    )
    p.add_argument("--pool", type=int, default=None, help="distinct requests per case (64)")
    p.add_argument(
        "--pg",
        default=os.environ.get("OTLPD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server for otlpd's throw-away databases",
    )
    args = p.parse_args(argv)
    quick = args.quick
    for name, normal, short in (
        ("duration", 8.0, 3.0),
        ("latency_duration", 6.0, 3.0),
        ("overload_duration", 4.0, 2.0),
        ("pool", 64, 16),
    ):
        if getattr(args, name) is None:
            setattr(args, name, short if quick else normal)
    if args.cases == ["all"]:
        args.cases = list(workload.CASES)
    unknown = [c for c in args.cases if c not in workload.CASES]
    if unknown:
        p.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(workload.CASES)}")
    if args.signals is not None:
        unknown = [s for s in args.signals if s not in workload.SIGNALS]
        if unknown:
            p.error(f"--signals: unknown {', '.join(unknown)}; choose from {workload.SIGNALS}")
        args.cases = [c for c in args.cases if workload.CASES[c].signal in args.signals]
    if not args.cases:
        p.error("no case left to run")
    if args.inflight < 1 or args.clients < 1 or args.pool < 1:
        p.error("--inflight, --clients and --pool must be >= 1")
    if not args.connections or min(args.connections) < args.clients:
        p.error("--connections: every count must be >= --clients (each client has its own)")
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _measure(
    target: Target,
    case: str,
    wl: Workload,
    *,
    connections: int,
    sampler: ServerSampler,
    pg: PostgresCpu | None,
    loadgen: LoadGenerator,
    args: argparse.Namespace,
    acked_before: int,
) -> Measurement:
    """One case over ``connections`` connections: closed loop, open loop, overload."""
    label = f"{case} x{connections}"
    sampler.reset_peak()
    sampler.reset_split()
    pg_before = pg.sample() if pg else None
    cpu_before = sampler.cpu_seconds()
    closed = loadgen.closed_loop(
        target.grpc_addr,
        wl,
        ClosedLoop(inflight=args.inflight, duration=args.duration),
        connections,
    )
    # Includes the warm-up calls: both count in ``acked``.
    cpu_per_record = (sampler.cpu_seconds() - cpu_before) / max(1, closed.acked)
    pg_used = PostgresCpu.used(pg_before, pg.sample() if pg else None)
    pg_per_record = None if pg_used is None else pg_used / max(1, closed.acked)
    pg_text = "n/a" if pg_per_record is None else f"{pg_per_record * 1e6:.1f}"
    _log(
        f"  {label}: closed loop {closed.records_per_second:,.0f} records/s, "
        f"{cpu_per_record * 1e6:.1f} µs server CPU + {pg_text} µs PG CPU per record "
        f"({closed.refusals} refused, {closed.failures} failed"
        f"{': ' + closed.errors[0] if closed.errors else ''})"
    )
    closed_split = sampler.split
    sampler.reset_split()
    opened = loadgen.open_loop(
        target.grpc_addr,
        wl,
        OpenLoop(rate=args.rate, duration=args.latency_duration),
        connections,
    )
    _log(
        f"  {label}: open loop at {args.rate:,.0f}/s: "
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
            connections,
        )
        overload_rss = sampler.peak
        _log(
            f"  {label}: {args.overload:g}x overload at {rate:,.0f}/s: "
            f"{overload.refusals} refused ({overload.bare_refusals} without "
            f"RetryInfo), peak RSS {overload_rss / (1 << 20):,.0f} MiB"
        )
    stored = target.stored(wl.signal) if isinstance(target, OtlpdTarget) else None
    return Measurement(
        target=target.name,
        signal=wl.signal,
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
        case=case,
        connections=connections,
        pg_cpu_per_record=pg_per_record,
        acked_before=acked_before,
    )


def _run_case(
    target: Target,
    case: str,
    wl: Workload,
    loadgen: LoadGenerator,
    args: argparse.Namespace,
) -> list[Measurement]:
    """``case`` on a fresh start of ``target``, each connection count in turn."""
    results: list[Measurement] = []
    try:
        # Inside the try: a target that fails half-way through starting still cleans up.
        target.start()
        pg = PostgresCpu(args.pg, target.database) if isinstance(target, OtlpdTarget) else None
        acked = 0
        with ServerSampler(target.pid, target.grpc_port) as sampler:
            for connections in args.connections:
                m = _measure(
                    target,
                    case,
                    wl,
                    connections=connections,
                    sampler=sampler,
                    pg=pg,
                    loadgen=loadgen,
                    args=args,
                    acked_before=acked,
                )
                acked += m.acked
                results.append(m)
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

    targets: list[Target] = []
    if args.target in ("rotel", "both"):
        targets.append(RotelTarget(work))
    if args.target in ("otlpd", "both"):
        targets += [OtlpdTarget(work, w, args.pg) for w in args.workers]

    measurements: list[Measurement] = []
    failed: dict[str, str] = {}
    loadgen = LoadGenerator(args.clients)
    try:
        # Case by case, each target in turn, so that a case's figures for rotel and otlpd
        # are taken a minute apart, not a whole run of the other target apart: in long
        # runs the later cases cost up to a third more CPU than the same cases run alone
        # (docs/benchmarks.md, Run 8), and the ratios compare the two.
        for case in args.cases:
            # Built just before the case, once for every target (they get the same
            # requests), so that its records are of the last minute. Built once at the
            # start of a run of several minutes, the logs case's records fell in a
            # ten-minute slice that had closed meanwhile, which the text index job of the
            # case's server then indexed at start: every record paid for a trigram index
            # too, as only late records do in production (docs/benchmarks.md, Run 6).
            wl = workload.build_case(case, args.pool, time.time_ns())
            _log(
                f"{case}: {args.pool} requests of {wl.mean_records:.0f} records, "
                f"{wl.mean_bytes / 1024:.0f} KiB each; {workload.CASES[case].about}"
            )
            for target in targets:
                if target.name in failed:
                    continue
                _log(f"{target.name}:")
                try:
                    measurements += _run_case(target, case, wl, loadgen, args)
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
        f"{'/'.join(str(c) for c in args.connections)} connections; logs in {work}"
    )
    print()
    for case in args.cases:
        c = workload.CASES[case]
        print(f"- {case} ({c.signal}): {c.about}")
    print()
    print(render(measurements, failed))
    bad_store = any(m.stored is not None and m.stored.rows != m.expected_rows for m in measurements)
    return 1 if failed or bad_store else 0


if __name__ == "__main__":
    sys.exit(main())
