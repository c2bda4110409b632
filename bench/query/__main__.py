"""``python -m bench.query``: load (or reuse) a day of telemetry, then time every query RPC.

The database (``otlpd_bench_query`` on ``--pg``) is kept between runs and reused when it
holds the requested scale, so timing again costs only the timing; ``--fresh`` reloads.
One otlpd process serves it; each case runs ``--clients`` parallel clients for
``--seconds``, and the table prints p50/p95/p99 per case against the issue's targets.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence

import psutil

from bench.query import generate, load, report
from bench.query.server import QueryServer, TargetError
from bench.targets import ServerSampler, connection_split, workdir


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.query", description=__doc__)
    p.add_argument(
        "--pg",
        default=os.environ.get("OTLPD_TEST_PG", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server that holds the benchmark database",
    )
    p.add_argument("--database", default=generate.DATABASE, help="benchmark database name")
    p.add_argument(
        "--scale", type=float, default=None, help="1.0: 10M spans + 10M logs (0.01 with --quick)"
    )
    p.add_argument("--series", type=int, default=100, help="histogram (and counter) series")
    p.add_argument("--fresh", action="store_true", help="reload even if the data is there")
    p.add_argument("--load-only", action="store_true", help="load, then stop before timing")
    p.add_argument("--clients", type=int, default=4, help="parallel clients per case")
    p.add_argument("--seconds", type=float, default=None, help="per case (10; 2 with --quick)")
    p.add_argument("--calls", type=int, default=0, help="stop a client after this many calls")
    p.add_argument("--workers", type=int, default=1, help="otlpd worker processes")
    p.add_argument(
        "--cases", default="", help="comma-separated case names (substring match); default all"
    )
    p.add_argument("--quick", action="store_true", help="--scale 0.01 --seconds 2 unless set")
    args = p.parse_args(argv)
    if args.scale is None:
        args.scale = 0.01 if args.quick else 1.0
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 10.0
    if args.scale <= 0 or args.series < 1 or args.clients < 1 or args.seconds <= 0:
        p.error("--scale, --series, --clients and --seconds must be positive")
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Loads and times; returns 1 when a target FAILs or otlpd does not start, else 0."""
    args = _parse(argv)
    busy = psutil.cpu_percent(interval=1.0)
    if busy > 20:
        _log(f"warning: the machine is {busy:.0f}% busy before the benchmark starts")
    url, ds = generate.ensure_dataset(
        args.pg, scale=args.scale, series=args.series, fresh=args.fresh, database=args.database
    )
    print(
        f"dataset {args.database}: {ds.spans:,} spans, {ds.logs:,} logs, {ds.traces:,} traces, "
        f"{ds.sessions:,} sessions, {ds.series} histogram + {ds.series} counter series "
        f"(1 point/min over 24 h, 1-hour rollups over the {generate.ROLLUP_DAYS - 1} days "
        f"before); loaded in {ds.load_seconds:.0f}s; text index: {ds.text_index}"
    )
    if args.load_only:
        return 0
    wanted = [w.strip().lower() for w in args.cases.split(",") if w.strip()]
    selected = [c for c in load.cases(ds) if not wanted or any(w in c.name.lower() for w in wanted)]
    if not selected:
        _log("no case matches --cases")
        return 2
    server = QueryServer(workdir(), url, args.workers)
    try:
        server.start()
        waited = server.wait_rolled_up(ds.window_end_ns)
        waited += server.wait_metric_rollups(ds.window_end_ns)
        _log(f"rollups complete after {waited:.0f}s")
        spreads: set[tuple[int, ...]] = set()

        def done(r: load.CaseResult) -> None:
            spread = connection_split(psutil.Process(server.pid), server.query_port)
            spreads.add(spread)
            calls = "not built" if r.not_built else f"{r.calls} calls"
            _log(f"  {r.case.name}: {calls}; client connections per otlpd process {list(spread)}")

        with ServerSampler(server.pid, server.grpc_port) as sampler:
            sampler.reset_peak()
            results = load.run_all(
                server.query_addr,
                selected,
                args.clients,
                catalogue=functools.partial(load.cases, ds),
                seconds=args.seconds,
                calls=args.calls,
                on_result=done,
            )
            peak = sampler.peak
        server.check_alive()
    except TargetError as exc:
        _log(f"otlpd failed: {exc}")
        return 1
    finally:
        server.stop()
    return report.print_run(
        results,
        peak_rss=peak,
        busy=busy,
        setup=f"{args.clients} client process{'es' if args.clients > 1 else ''} x "
        f"{args.seconds:g}s per case; "
        f"otlpd --workers {args.workers}, client connections per process "
        f"{' or '.join(str(list(s)) for s in sorted(spreads))}; its log: {server.log_path}",
    )


if __name__ == "__main__":
    sys.exit(main())
