"""The benchmark's results and how they are printed: one Markdown table per target.

Markdown so that a run's output can be pasted into ``docs/benchmarks.md`` as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.loadgen import LoadResult
from bench.targets import Stored

_MIB = 1 << 20

LEGEND = """\
*case*: the workload (`bench/workload.py`, `CASES`); *conns*: TCP connections the load
is sent over (1: how an OTel Collector or rotel exporter sends, all calls multiplexed on one
HTTP/2 connection). Every case runs on a fresh server and database; its connection counts
run one after the other on that server (peak RSS and bytes/record of a later row include
the earlier ones).
*closed loop*: records acknowledged per second with a fixed number of calls in flight.
*server CPU*: user + system time of the server's process tree (not PostgreSQL's) per
record acknowledged in the closed loop. *PG CPU*: user + system time of the PostgreSQL
server's processes (postmaster tree, client backends of other databases left out) over
the closed loop, per record acknowledged. *refused*: retryable answers (resent later),
*failed*: permanent errors. *offered / achieved, p50 / p99 / max*: the open loop; each
latency runs from when the request was due, so a server that falls behind cannot hide
it; "never" is a request still refused 10 s after the run. *peak RSS*: the server's
process tree, sampled every 100 ms over both loops. *conns/process*: client connections
held by each process listening on the gRPC port (closed loop ; open loop). *bytes/record*:
heap, TOAST and indexes of every partition of the signal's tables per stored record.
*stored = acked*: PostgreSQL row count equals the records acknowledged (all runs).
*overload*: an open loop offering N x the closed-loop rate; refused requests are resent
after the server's RetryInfo delay until accepted or 60 s past the run ("never landed").
*achieved/s* there counts only what was acknowledged within the overload window; its
*p99* runs from when a request was due to when it was finally accepted (retries included),
*slowest accepted call* is the longest single attempt that the server answered OK.
*otlpd / rotel*: the server's figure divided by rotel's (receive, decode, discard) on the
same case and connection count in the same run; *(server + PG) / rotel* puts PostgreSQL's
CPU on otlpd's side."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """Everything measured for one signal against one target."""

    target: str
    signal: str
    closed: LoadResult
    open: LoadResult
    offered_rate: float
    peak_rss: int
    splits: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())  # closed, open
    cpu_per_record: float = 0.0  # server process tree, closed loop, seconds
    stored: Stored | None = None
    overload: LoadResult | None = None
    overload_rate: float = 0.0
    overload_rss: int = 0
    case: str = ""
    connections: int = 0
    pg_cpu_per_record: float | None = None  # PostgreSQL's processes, closed loop, seconds
    # Records acknowledged on the same server (and database) by earlier measurements.
    acked_before: int = 0

    @property
    def acked(self) -> int:
        """Records acknowledged over every run, warm-up included: what must be stored."""
        extra = self.overload.acked if self.overload else 0
        return self.closed.acked + self.open.acked + extra

    @property
    def expected_rows(self) -> int:
        """What the store must hold after this measurement: its records and the earlier."""
        return self.acked_before + self.acked

    @property
    def name(self) -> str:
        """The case, or the signal for a measurement without one."""
        return self.case or self.signal


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    # Infinite: a request that was never accepted (see loadgen.OpenLoop.give_up).
    return "never" if math.isinf(seconds) else f"{seconds * 1000:.1f}"


def _count(n: float) -> str:
    return f"{n:,.0f}"


def _split(split: tuple[int, ...]) -> str:
    return "+".join(str(n) for n in split) or "?"


def _store_check(m: Measurement) -> str:
    if m.stored is None:
        return "n/a"
    if m.stored.rows == m.expected_rows:
        return f"yes ({_count(m.expected_rows)})"
    return f"**NO**: {_count(m.stored.rows)} stored, {_count(m.expected_rows)} acked"


def _us(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e6:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b <= 0 else f"{a / b:.2f}"


def table(target: str, rows: Sequence[Measurement]) -> str:
    """The Markdown table of one target's measurements, one line per case and conns."""
    head = (
        "| case | conns | closed loop records/s | server CPU µs/record | PG CPU µs/record "
        "| refused / failed "
        "| offered/s | achieved/s "
        "| p50 ms | p99 ms | max ms | peak RSS MiB | conns/process | bytes/record "
        "| stored = acked |"
    )
    lines = [f"### {target}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for m in rows:
        lat = m.open.latencies
        refused = m.closed.refusals + m.open.refusals
        failed = m.closed.failures + m.open.failures
        lines.append(
            f"| {m.name} | {m.connections} | {_count(m.closed.records_per_second)} "
            f"| {m.cpu_per_record * 1e6:.1f} | {_us(m.pg_cpu_per_record)} "
            f"| {refused} / {failed} "
            f"| {_count(m.offered_rate)} | {_count(m.open.records_per_second)} "
            f"| {_ms(percentile(lat, 50))} | {_ms(percentile(lat, 99))} "
            f"| {_ms(max(lat, default=math.nan))} | {m.peak_rss / _MIB:,.0f} "
            f"| {_split(m.splits[0])} ; {_split(m.splits[1])} "
            f"| {f'{m.stored.bytes_per_row:,.0f}' if m.stored else 'n/a'} | {_store_check(m)} |"
        )
    overloaded = [m for m in rows if m.overload is not None]
    if overloaded:
        head = (
            "| case | conns | overload offered/s | achieved/s | refused "
            "| refused without RetryInfo "
            "| never landed | p99 ms | slowest accepted call ms | peak RSS MiB |"
        )
        lines += ["", head, "|" + "---|" * (head.count("|") - 1)]
        for m in overloaded:
            o = m.overload
            assert o is not None
            never = sum(1 for x in o.latencies if math.isinf(x))
            lines.append(
                f"| {m.name} | {m.connections} | {_count(m.overload_rate)} "
                f"| {_count(o.records_per_second)} "
                f"| {o.refusals} | {o.bare_refusals} | {never} "
                f"| {_ms(percentile(o.latencies, 99))} | {_ms(o.slowest_ok)} "
                f"| {m.overload_rss / _MIB:,.0f} |"
            )
    errors = [
        e
        for m in rows
        for e in (*m.closed.errors, *m.open.errors, *(m.overload.errors if m.overload else ()))
    ]
    if errors:
        lines += ["", "Errors seen (first few):", *(f"- `{e}`" for e in errors[:5])]
    return "\n".join(lines)


def compare(measurements: Sequence[Measurement], reference: str = "rotel") -> str:
    """otlpd against the reference target, case by case: throughput and CPU ratios."""
    ref = {(m.name, m.connections): m for m in measurements if m.target == reference}
    rows = [m for m in measurements if m.target != reference and (m.name, m.connections) in ref]
    if not rows:
        return ""
    head = (
        f"| target | case | conns | records/s | {reference} records/s | records/s otlpd / "
        f"{reference} | server CPU µs/record | {reference} CPU µs/record "
        f"| CPU otlpd / {reference} | PG CPU µs/record | (server + PG) / {reference} |"
    )
    lines = [
        f"### otlpd / {reference} (closed loop, same cases in the same run)",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for m in rows:
        r = ref[m.name, m.connections]
        total = None if m.pg_cpu_per_record is None else m.cpu_per_record + m.pg_cpu_per_record
        lines.append(
            f"| {m.target} | {m.name} | {m.connections} | {_count(m.closed.records_per_second)} "
            f"| {_count(r.closed.records_per_second)} "
            f"| {_ratio(m.closed.records_per_second, r.closed.records_per_second)} "
            f"| {_us(m.cpu_per_record)} | {_us(r.cpu_per_record)} "
            f"| {_ratio(m.cpu_per_record, r.cpu_per_record)} | {_us(m.pg_cpu_per_record)} "
            f"| {_ratio(total, r.cpu_per_record)} |"
        )
    return "\n".join(lines)


def latency_summary(measurements: Sequence[Measurement], connections: int = 1) -> str:
    """p99 of the open loop for the span cases over ``connections`` connections."""
    rows = [m for m in measurements if m.signal == "traces" and m.connections == connections]
    if not rows:
        return ""
    lines = [f"### p99 of Export at the offered rate, span cases over {connections} connection(s)"]
    lines.append("")
    for m in rows:
        lines.append(
            f"- {m.target}, {m.name}: p99 {_ms(percentile(m.open.latencies, 99))} ms "
            f"at {_count(m.offered_rate)} spans/s offered "
            f"({_count(m.open.records_per_second)} achieved)"
        )
    return "\n".join(lines)


def render(measurements: Sequence[Measurement], failed_targets: dict[str, str]) -> str:
    """All tables, in the order the targets ran, then the targets that did not run."""
    order: list[str] = []
    for m in measurements:
        if m.target not in order:
            order.append(m.target)
    parts = [table(t, [m for m in measurements if m.target == t]) for t in order]
    parts += [p for p in (compare(measurements), latency_summary(measurements)) if p]
    parts += [f"### {t}\n\ndid not run: {why}" for t, why in failed_targets.items()]
    parts.append(LEGEND)
    return "\n\n".join(parts)
