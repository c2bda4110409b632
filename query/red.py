"""GetServiceStats: RED (rate, errors, duration) per service and operation, from rollups.

Requests are server and consumer spans, errors those with status ERROR (the RED
convention of Tempo's span metrics and Jaeger's SPM). Everything is read from the
per-minute rollups (``storage.postgres.rollups``), never from the spans, so a day of a
busy project costs a day of minutes; the range is widened to whole minutes, steps are
whole minutes, and percentiles carry the buckets' precision (``query.buckets``). The
rollups lag the spans by ``OTLPD_ROLLUP_DELAY``; ``complete_until`` says how far they are
final.

``series`` gives the same numbers as arrays, for DetectAnomalies and GetErrorSpikes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from otlpd.errors import BadArgument
from query import arguments, buckets, tokens
from query.call import QueryCall
from query.convert import set_duration, set_timestamp
from query.proto import pb
from query.settings import QuerySettings
from storage.postgres import red_reader
from storage.postgres.partitions import datetime_from_ns, ns_from_datetime
from storage.postgres.red_reader import Minutes

MINUTE_NS: Final = 60 * 10**9
SERVICES_DEFAULT_LIMIT: Final = 100

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class RedSeries:
    """One service's (or operation's) RED per step: every step of the range, oldest first."""

    step_ns: int
    times_ns: Ints  # start of each step
    requests: Ints
    errors: Ints
    p50_ns: Floats  # nan where a step has no requests
    p95_ns: Floats
    p99_ns: Floats
    # The rollups hold every span before this; a step ending later is not final (it
    # would read as a drop in traffic), so scorers leave it out.
    complete_until_ns: int

    def final(self) -> npt.NDArray[np.bool_]:
        """Per step: whether the rollups were complete for all of it."""
        return self.times_ns + self.step_ns <= self.complete_until_ns


@dataclass(frozen=True, slots=True)
class Grid:
    """Whole minutes ``[start_ns, end_ns)`` cut into ``n`` steps of ``step_ns`` (the last
    one may be shorter)."""

    start_ns: int
    end_ns: int
    step_ns: int

    @property
    def n(self) -> int:
        return -(-(self.end_ns - self.start_ns) // self.step_ns)

    def times(self) -> Ints:
        return self.start_ns + self.step_ns * np.arange(self.n, dtype=np.int64)

    def seconds(self) -> Floats:
        """The width of every step in seconds."""
        starts = self.times()
        return (np.minimum(starts + self.step_ns, self.end_ns) - starts) / 1e9


@dataclass(frozen=True, slots=True)
class Red:
    """Sums per step of one group, and its merged histogram per step."""

    requests: Ints
    errors: Ints
    duration_sum_ns: Floats
    histograms: Ints  # (steps, buckets.N_BUCKETS)


def minute_grid(start_ns: int, end_ns: int, step_ns: int | None) -> Grid:
    """The range widened to whole minutes; no step: one step over all of it."""
    start = start_ns // MINUTE_NS * MINUTE_NS
    end = -(-end_ns // MINUTE_NS) * MINUTE_NS
    if step_ns is None:
        return Grid(start, end, end - start)
    return Grid(start, end, max(MINUTE_NS, -(-step_ns // MINUTE_NS) * MINUTE_NS))


def aggregate(minutes: Minutes, grid: Grid) -> Red:
    """``minutes`` summed into the steps of ``grid``."""
    n = grid.n
    index = (minutes.minutes_s * 10**9 - grid.start_ns) // grid.step_ns
    keep = (index >= 0) & (index < n)
    index = np.where(keep, index, 0)

    def per_step(values: Ints) -> Floats:
        return np.bincount(index, weights=np.where(keep, values, 0), minlength=n)[:n].astype(
            np.float64
        )

    entry_step = np.repeat(index, minutes.lengths)
    entry_keep = np.repeat(keep, minutes.lengths)
    histograms = buckets.merge(
        entry_step, minutes.buckets, np.where(entry_keep, minutes.counts, 0), n
    )
    return Red(
        requests=per_step(minutes.requests).astype(np.int64),
        errors=per_step(minutes.errors).astype(np.int64),
        duration_sum_ns=per_step(minutes.duration_sum_ns),
        histograms=histograms,
    )


def red_stats(red: Red, seconds: Floats) -> list[pb.RedStats]:
    """Every step of ``red`` as a RedStats, step ``i`` over ``seconds[i]``."""
    quantiles = buckets.percentiles(red.histograms)
    out = []
    for i in range(len(red.requests)):
        requests, errors = int(red.requests[i]), int(red.errors[i])
        width = float(seconds[i])
        stats = pb.RedStats(
            requests=requests,
            errors=errors,
            request_rate=requests / width if width > 0 else 0.0,
            error_rate=errors / requests if requests else 0.0,
        )
        if requests:
            p50, p95, p99 = quantiles[i]
            set_duration(stats.p50, round(p50))
            set_duration(stats.p95, round(p95))
            set_duration(stats.p99, round(p99))
            set_duration(stats.mean, round(red.duration_sum_ns[i] / requests))
        out.append(stats)
    return out


def _points(red: Red, grid: Grid) -> list[pb.RedPoint]:
    points = []
    for start, stats in zip(grid.times(), red_stats(red, grid.seconds()), strict=True):
        point = pb.RedPoint(stats=stats)
        set_timestamp(point.time, int(start))
        points.append(point)
    return points


def _total(red: Red, grid: Grid) -> pb.RedStats:
    """All steps of ``red`` as one interval."""
    whole = Red(
        requests=red.requests.sum(keepdims=True),
        errors=red.errors.sum(keepdims=True),
        duration_sum_ns=red.duration_sum_ns.sum(keepdims=True),
        histograms=red.histograms.sum(axis=0, keepdims=True),
    )
    return red_stats(whole, np.array([(grid.end_ns - grid.start_ns) / 1e9]))[0]


class ServiceStatsQueries:
    """GetServiceStats, and the RED series other insights score."""

    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def stats(
        self, call: QueryCall, request: pb.GetServiceStatsRequest
    ) -> pb.GetServiceStatsResponse:
        """Every service's RED over the range (and per step), by name, a page of them."""
        window = arguments.time_range(request)
        step = None
        if request.HasField("step"):
            step = arguments.step_ns(request.step, window)
        grid = minute_grid(window.start_ns, window.end_ns, step)
        if grid.n > arguments.MAX_BUCKETS:
            raise BadArgument("step", "gives too many steps over the range; use a larger step")
        limit = arguments.limit(
            request.limit, default=SERVICES_DEFAULT_LIMIT, maximum=self._settings.max_limit
        )
        service = arguments.text(request.service, "service") or None
        bound_to = tokens.fingerprint(call.project, request)
        cursor = tokens.decode(request.page_token, "service_stats", bound_to)
        after = None
        if cursor is not None:
            if len(cursor) != 1 or not isinstance(cursor[0], str):
                raise BadArgument("page_token", "is not a token this server issued")
            after = cursor[0]
        start, end = datetime_from_ns(grid.start_ns), datetime_from_ns(grid.end_ns)
        rows, (until,) = await call.fetch_many(
            [
                red_reader.services(
                    call.project, start, end, service=service, after=after, limit=limit + 1
                ),
                red_reader.complete_until(call.project),
            ],
            binary=True,
        )
        page = rows[:limit]
        operations: dict[str, list[Any]] = {}
        if request.operations and page:
            found = await call.fetch(
                *red_reader.operations(call.project, start, end, [row[0] for row in page]),
                binary=True,
            )
            for row in found:
                operations.setdefault(row[0], []).append(row)
        response = pb.GetServiceStatsResponse(percentile_relative_error=buckets.RELATIVE_ERROR)
        if step is not None:
            set_duration(response.step, grid.step_ns)
        if until[0] is not None:
            set_timestamp(response.complete_until, ns_from_datetime(until[0]))
        for row in page:
            red = aggregate(red_reader.decode(row), grid)
            out = response.services.add(service=row[0], stats=_total(red, grid))
            if step is not None:
                out.points.extend(_points(red, grid))
            for op in operations.get(row[0], ()):
                op_red = aggregate(red_reader.decode(op), grid)
                entry = out.operations.add(
                    operation=op[1], span_kind=op[2], stats=_total(op_red, grid)
                )
                if step is not None:
                    entry.points.extend(_points(op_red, grid))
        if len(rows) > limit:
            response.next_page_token = tokens.encode("service_stats", bound_to, [page[-1][0]])
        return response

    async def series(
        self,
        call: QueryCall,
        service: str,
        operation: str,
        *,
        start_ns: int,
        end_ns: int,
        step_ns: int,
    ) -> RedSeries:
        """The RED series of ``service`` (``operation`` "": all its requests) over
        ``[start_ns, end_ns)`` widened to whole minutes, in steps of ``step_ns`` rounded
        up to whole minutes."""
        grid = minute_grid(start_ns, end_ns, step_ns)
        start, end = datetime_from_ns(grid.start_ns), datetime_from_ns(grid.end_ns)
        if operation:
            read = red_reader.operations(call.project, start, end, [service], operation)
        else:
            read = red_reader.services(call.project, start, end, service=service, limit=1)
        rows, ((until,),) = await call.fetch_many(
            [read, red_reader.complete_until(call.project)], binary=True
        )
        n = grid.n
        total = Red(
            np.zeros(n, np.int64),
            np.zeros(n, np.int64),
            np.zeros(n),
            np.zeros((n, buckets.N_BUCKETS), np.int64),
        )
        for row in rows:  # an operation's kinds (server, consumer) add up
            red = aggregate(red_reader.decode(row), grid)
            total = Red(
                total.requests + red.requests,
                total.errors + red.errors,
                total.duration_sum_ns + red.duration_sum_ns,
                total.histograms + red.histograms,
            )
        quantiles = buckets.percentiles(total.histograms)
        return RedSeries(
            step_ns=grid.step_ns,
            times_ns=grid.times(),
            requests=total.requests,
            errors=total.errors,
            p50_ns=quantiles[:, 0],
            p95_ns=quantiles[:, 1],
            p99_ns=quantiles[:, 2],
            complete_until_ns=0 if until is None else ns_from_datetime(until),
        )
