"""The query benchmark's results as one Markdown table, each figure against its target.

Markdown, like the ingest benchmark's (``bench.report``), so a run pastes into
``docs/benchmarks.md`` as is; percentiles are the same nearest-rank ones.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence

from bench.query.load import CaseResult
from bench.report import percentile

_MIB = 1 << 20


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def verdict(result: CaseResult) -> str:
    """PASS or FAIL against the case's target; why there is no verdict otherwise."""
    case = result.case
    if result.not_built:
        return "not built"
    if not result.latencies:
        return "no answer"
    if case.target_ms is None:
        return ""
    measured = percentile(result.latencies, case.stat) * 1000
    return "PASS" if measured <= case.target_ms and not result.errors else "FAIL"


def render(results: Sequence[CaseResult], *, peak_rss: int) -> str:
    """The table of every case, then the notes (not built, errors) and the peak RSS."""
    lines = [
        "| case | target | calls/s | p50 ms | p95 ms | p99 ms | items/call | errors | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes: list[str] = []
    for r in results:
        case = r.case
        target = f"p{case.stat} ≤ {case.target_ms:g} ms" if case.target_ms is not None else ""
        if r.not_built:
            lines.append(f"| {case.name} | {target} | | | | | | | not built |")
            notes.append(f"- {case.name}: {r.not_built}")
            continue
        items = sum(r.sizes) / len(r.sizes) if r.sizes else math.nan
        errors = sum(r.errors.values())
        lines.append(
            f"| {case.name} | {target} | {r.throughput:,.1f} "
            f"| {_ms(percentile(r.latencies, 50))} | {_ms(percentile(r.latencies, 95))} "
            f"| {_ms(percentile(r.latencies, 99))} "
            f"| {'n/a' if math.isnan(items) else f'{items:,.0f}'} | {errors} | {verdict(r)} |"
        )
        if r.errors:
            counts = ", ".join(f"{n} {code}" for code, n in sorted(r.errors.items()))
            notes.append(f"- {case.name}: {counts}; first: {r.first_error}")
    lines.append("")
    lines.append(f"Peak RSS of the otlpd process tree over all cases: {peak_rss / _MIB:,.0f} MiB.")
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)


def summary(results: Sequence[CaseResult]) -> str:
    """One line: how many targets passed, failed, or could not be measured."""
    verdicts = [verdict(r) for r in results if r.case.target_ms is not None]
    return (
        f"targets: {verdicts.count('PASS')} PASS, {verdicts.count('FAIL')} FAIL, "
        f"{len(verdicts) - verdicts.count('PASS') - verdicts.count('FAIL')} not measured"
    )


def print_run(results: Sequence[CaseResult], *, peak_rss: int, busy: float, setup: str) -> int:
    """Prints the run's machine line (with ``setup``), its table and its verdicts; the
    exit status: 1 when a case missed its target."""
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"CPU {busy:.0f}% busy before start; {setup}"
    )
    print()
    print(render(results, peak_rss=peak_rss))
    print()
    print(summary(results))
    return 1 if any(verdict(r) == "FAIL" for r in results) else 0
