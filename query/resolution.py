"""Which stored resolution answers a metric query, and where each part of its range is read.

The rollups (``storage.postgres.metric_rollups``) hold every series per minute and per
hour. A query is answered from the coarsest of them whose interval divides its step (and
its ``range``, when it has one), and which is kept for the whole range
(``OTLPD_ROLLUP_RETENTION_1M`` / ``_1H``); percentiles of gauges and sums need the raw
values and come from the raw points, as does a step no rollup interval divides.

The rollups trail the points by ``OTLPD_ROLLUP_DELAY`` (and 1-hour rows by the rest of the
hour), so a range reaching towards now is read in up to three parts that meet exactly,
each from the finest data that is final there: 1-hour rows up to where they are complete,
1-minute rows up to where those are, then the raw points. Rows and points merge exactly
(``storage.rollup_rows``), so the parts add up to what one source would give, and the
answer is the same whatever the rollup job has done so far (before its first round, all
of it comes from the points). The resolution depends on the step alone.

Rollup rows are whole intervals: the range's start is widened down to one (as the RED
rollups widen to whole minutes); with the step a multiple of the interval, every step
holds whole intervals anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from query.proto import pb

MINUTE_NS: Final = 60 * 10**9
HOUR_NS: Final = 3600 * 10**9

_RESOLUTIONS: Final = ((HOUR_NS, pb.RESOLUTION_1H), (MINUTE_NS, pb.RESOLUTION_1M))


@dataclass(frozen=True, slots=True)
class Retention:
    """How long each rollup resolution is kept hot (seconds)."""

    minute_s: float = 7 * 86400.0  # OTLPD_ROLLUP_RETENTION_1M
    hour_s: float = 400 * 86400.0  # OTLPD_ROLLUP_RETENTION_1H

    def of(self, width_ns: int) -> int:
        return int((self.hour_s if width_ns == HOUR_NS else self.minute_s) * 1e9)


@dataclass(frozen=True, slots=True)
class Sources:
    """Where one query's rows come from: 1-hour rows for ``[read_from_ns, hours_until_ns)``,
    1-minute rows for ``[hours_until_ns, minutes_until_ns)``, raw points from
    ``minutes_until_ns`` to the end of the range."""

    resolution: pb.Resolution  # the one the step chose
    width_ns: int  # its interval
    read_from_ns: int
    hours_until_ns: int
    minutes_until_ns: int


def align_down(ns: int, width_ns: int) -> int:
    return ns // width_ns * width_ns


def rollup_width(
    *,
    step_ns: int,
    range_ns: int | None,
    start_ns: int,
    now_ns: int,
    needs_raw_values: bool,
    retention: Retention,
) -> int | None:
    """The interval of the coarsest rollup that serves the query, or None (raw points):
    it divides the step and the range, and its retention covers the range's start."""
    if needs_raw_values:
        return None
    for width, _ in _RESOLUTIONS:
        if step_ns % width or (range_ns is not None and range_ns % width):
            continue
        if start_ns < now_ns - retention.of(width):
            continue
        return width
    return None


def sources(
    width_ns: int,
    *,
    read_from_ns: int,
    end_ns: int,
    complete_1m_ns: int,
    complete_1h_ns: int,
) -> Sources:
    """The parts of ``[read_from_ns, end_ns)`` for rollups of ``width_ns``, given up to when
    the project's 1-minute and 1-hour rollups are final."""
    lo = align_down(read_from_ns, width_ns)
    hours = lo
    if width_ns == HOUR_NS:
        hours = min(max(align_down(complete_1h_ns, HOUR_NS), lo), end_ns)
    minutes = min(max(align_down(complete_1m_ns, MINUTE_NS), hours), end_ns)
    resolution = pb.RESOLUTION_1H if width_ns == HOUR_NS else pb.RESOLUTION_1M
    return Sources(resolution, width_ns, lo, hours, minutes)
