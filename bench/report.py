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
*closed loop*: records acknowledged per second with a fixed number of calls in flight.
*server CPU*: user + system time of the server's process tree (not PostgreSQL's) per
record acknowledged in the closed loop. *refused*: retryable answers (resent later),
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
*slowest accepted call* is the longest single attempt that the server answered OK."""


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

    @property
    def acked(self) -> int:
        """Records acknowledged over every run, warm-up included: what must be stored."""
        extra = self.overload.acked if self.overload else 0
        return self.closed.acked + self.open.acked + extra


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
    if m.stored.rows == m.acked:
        return f"yes ({_count(m.acked)})"
    return f"**NO**: {_count(m.stored.rows)} stored, {_count(m.acked)} acked"


def table(target: str, rows: Sequence[Measurement]) -> str:
    """The Markdown table of one target's measurements, one line per signal."""
    head = (
        "| signal | closed loop records/s | server CPU µs/record | refused / failed "
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
            f"| {m.signal} | {_count(m.closed.records_per_second)} "
            f"| {m.cpu_per_record * 1e6:.1f} | {refused} / {failed} "
            f"| {_count(m.offered_rate)} | {_count(m.open.records_per_second)} "
            f"| {_ms(percentile(lat, 50))} | {_ms(percentile(lat, 99))} "
            f"| {_ms(max(lat, default=math.nan))} | {m.peak_rss / _MIB:,.0f} "
            f"| {_split(m.splits[0])} ; {_split(m.splits[1])} "
            f"| {f'{m.stored.bytes_per_row:,.0f}' if m.stored else 'n/a'} | {_store_check(m)} |"
        )
    overloaded = [m for m in rows if m.overload is not None]
    if overloaded:
        head = (
            "| signal | overload offered/s | achieved/s | refused | refused without RetryInfo "
            "| never landed | p99 ms | slowest accepted call ms | peak RSS MiB |"
        )
        lines += ["", head, "|" + "---|" * (head.count("|") - 1)]
        for m in overloaded:
            o = m.overload
            assert o is not None
            never = sum(1 for x in o.latencies if math.isinf(x))
            lines.append(
                f"| {m.signal} | {_count(m.overload_rate)} | {_count(o.records_per_second)} "
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


def render(measurements: Sequence[Measurement], failed_targets: dict[str, str]) -> str:
    """All tables, in the order the targets ran, then the targets that did not run."""
    order: list[str] = []
    for m in measurements:
        if m.target not in order:
            order.append(m.target)
    parts = [table(t, [m for m in measurements if m.target == t]) for t in order]
    parts += [f"### {t}\n\ndid not run: {why}" for t, why in failed_targets.items()]
    parts.append(LEGEND)
    return "\n\n".join(parts)
