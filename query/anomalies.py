"""DetectAnomalies: every point of a metric query or a RED series, scored against its
trailing window (``query.scoring`` holds the math; this module reads and answers).

Reads. A metric source goes through QueryMetrics' own engine, so its aggregation,
group_by and matchers mean what they mean there, as up to four queries of one
QueryMetrics call (two round trips whatever the options): the range asked, the window
before it, and with seasonality the same two one period earlier. Reading the window
before the range means its first points are scored against a full window instead of
warming up inside it. A RED source reads ``ServiceStatsQueries.series`` the same way.
Every part has the same explicit step, so their grids (multiples of the step since the
epoch, ``query.aggregate.Grid``) line up, and one period earlier lands on the same
grid when the step divides the period; a step that does not is refused.

Answer. The points of the range that have a value, oldest first, one ``AnomalySeries``
per series of the source (metric series keep their labels; a RED series is labelled
``service.name`` and, when given, ``operation``), matched with their earlier selves by
identical labels. RED values: requests per second, errors / requests (no value without
requests), durations in seconds. Interval maxima keep their sign (see
``scoring.Interval``).

Cost. Scoring sorts every window, so what it may do is bounded (series, points, and
points x window) and refused as QUERY_TOO_COSTLY beyond; the numpy work then runs in a
worker thread (the event loop's default executor, bounded by its worker count) so
ingest and other queries keep being served meanwhile.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from otlpd.errors import BadArgument, QueryTooCostly
from query import arguments, scoring
from query.call import QueryCall
from query.convert import set_duration, set_timestamp
from query.metrics import MetricQueries
from query.proto import pb
from query.red import RedSeries, ServiceStatsQueries
from query.settings import QuerySettings

MINUTE_NS: Final = 60 * 10**9
DAY_NS: Final = 86_400 * 10**9
DEFAULT_WINDOW_STEPS: Final = 30
DEFAULT_THRESHOLD: Final = 3.5
# A window's mean, spread and median mean little below this many values; the window
# must be able to hold them, and a point is scored once its window does.
MIN_POINTS: Final = 8
MAX_WINDOW_STEPS: Final = arguments.MAX_BUCKETS  # the window is read as one more query
MAX_SERIES: Final = 1_000
MAX_POINTS: Final = 200_000  # in the answer, over all series
MAX_CELLS: Final = 20_000_000  # window values sorted, over all series: about a second

_PERIODS: Final[dict[int, int]] = {
    pb.DetectAnomaliesRequest.SEASONALITY_NONE: 0,
    pb.DetectAnomaliesRequest.SEASONALITY_DAY: DAY_NS,
    pb.DetectAnomaliesRequest.SEASONALITY_WEEK: 7 * DAY_NS,
}
_SIGNALS: Final = frozenset(pb.RedSeriesQuery.Signal.values())
_QUERY_FIELD: Final = re.compile(r"queries\[\d+\]")
MAX_NAME_CHARS: Final = 1000
SERVICE_LABEL: Final = "service.name"  # as QueryMetrics labels a series' service
OPERATION_LABEL: Final = "operation"


@dataclass(frozen=True, slots=True)
class _Plan:
    """The validated request: the range's steps ``[first_ns, end_ns)`` and what to read
    before them."""

    start_ns: int  # the range as asked
    end_ns: int
    first_ns: int  # start of the range's first step (a multiple of the step)
    step_ns: int
    window_ns: int
    threshold: float
    period_ns: int  # 0: no seasonality

    @property
    def read_from_ns(self) -> int:
        """Start of the window of the range's first point."""
        return max(0, self.first_ns - (self.window_ns // self.step_ns) * self.step_ns)

    @property
    def window_steps(self) -> int:
        return -(-self.window_ns // self.step_ns)


@dataclass(frozen=True, slots=True)
class _Series:
    """A source series over what was read (the window before the range included)."""

    labels: dict[str, str]
    times: scoring.Ints
    values: scoring.Floats


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class AnomalyQueries:
    """DetectAnomalies over QueryMetrics' engine and the RED series of GetServiceStats."""

    def __init__(
        self, settings: QuerySettings, metrics: MetricQueries, stats: ServiceStatsQueries
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._stats = stats

    async def detect(
        self, call: QueryCall, request: pb.DetectAnomaliesRequest
    ) -> pb.DetectAnomaliesResponse:
        """The source's series scored point by point, with their anomalous intervals."""
        source = request.WhichOneof("source")
        threshold = _threshold(request.threshold)
        if request.seasonality not in _PERIODS:
            raise BadArgument("seasonality", f"unknown seasonality {request.seasonality}")
        period = _PERIODS[request.seasonality]
        if source == "metric":
            window, step = _metric_range(request.metric)
        elif source == "red":
            window, step = _red_range(request.red)
        else:
            raise BadArgument("source", "set metric or red")
        plan = _plan(request, window, step, threshold, period)
        if source == "metric":
            now, then = await self._metric_series(call, request.metric, plan)
        else:
            now, then = await self._red_series(call, request.red, plan)
        _check_cost(plan, now)
        return await asyncio.to_thread(_answer, plan, now, then)

    async def _metric_series(
        self, call: QueryCall, metric: pb.MetricQuery, plan: _Plan
    ) -> tuple[list[_Series], list[_Series]]:
        """The series now and one period earlier (empty without seasonality), each the
        window before the range then the range, in one QueryMetrics call."""
        parts: list[tuple[bool, pb.MetricQuery]] = []
        shifts = [(False, 0)] + ([(True, plan.period_ns)] if plan.period_ns else [])
        for earlier, shift in shifts:
            if plan.read_from_ns < plan.first_ns:
                lookback = (plan.read_from_ns - shift, plan.first_ns - shift)
                parts.append((earlier, _part(metric, *lookback, plan.step_ns)))
            asked = (plan.start_ns - shift, plan.end_ns - shift)
            parts.append((earlier, _part(metric, *asked, plan.step_ns)))
        try:
            answer = await self._metrics.query(
                call, pb.QueryMetricsRequest(queries=[q for _, q in parts])
            )
        except BadArgument as exc:
            raise _as_metric_field(exc) from exc
        except QueryTooCostly as exc:
            raise QueryTooCostly(_QUERY_FIELD.sub("metric", str(exc))) from exc
        now: dict[tuple[tuple[str, str], ...], list[pb.Series]] = {}
        then: dict[tuple[tuple[str, str], ...], list[pb.Series]] = {}
        for (earlier, _), result in zip(parts, answer.results, strict=True):
            for series in result.series:
                (then if earlier else now).setdefault(_key(dict(series.labels)), []).append(series)
        return _from_samples(now), _from_samples(then)

    async def _red_series(
        self, call: QueryCall, red: pb.RedSeriesQuery, plan: _Plan
    ) -> tuple[list[_Series], list[_Series]]:
        """The RED series now and one period earlier (empty without seasonality)."""
        labels = {SERVICE_LABEL: red.service}
        if red.operation:
            labels[OPERATION_LABEL] = red.operation
        end = -(-plan.end_ns // plan.step_ns) * plan.step_ns

        async def read(shift: int) -> list[_Series]:
            found = await self._stats.series(
                call,
                red.service,
                red.operation,
                start_ns=plan.read_from_ns - shift,
                end_ns=end - shift,
                step_ns=plan.step_ns,
            )
            return [_Series(labels, found.times_ns, _signal(found, red.signal))]

        return await read(0), await read(plan.period_ns) if plan.period_ns else []


def _threshold(value: float) -> float:
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise BadArgument("threshold", f"must be a finite number >= 0, got {value}")
    return value or DEFAULT_THRESHOLD


def _prefixed(field: str, exc: BadArgument) -> BadArgument:
    problem = str(exc).split(": ", 1)[-1]
    return BadArgument(f"{field}.{exc.field}", problem)


def _metric_range(metric: pb.MetricQuery) -> tuple[arguments.TimeRange, int]:
    """The range and step QueryMetrics would use for ``metric`` (its defaults)."""
    try:
        window = arguments.time_range(metric)
        step = arguments.step_ns(metric.step if metric.HasField("step") else None, window)
    except BadArgument as exc:
        raise _prefixed("metric", exc) from exc
    return window, step


def _red_range(red: pb.RedSeriesQuery) -> tuple[arguments.TimeRange, int]:
    """The range and step of a RED series: the step rounded up to whole minutes (the
    rollups' grain), about 60 of them when none is given."""
    if not red.service:
        raise BadArgument("red.service", "must not be empty")
    arguments.text(red.service, "red.service", max_chars=MAX_NAME_CHARS)
    arguments.text(red.operation, "red.operation", max_chars=MAX_NAME_CHARS)
    if red.signal not in _SIGNALS:
        raise BadArgument("red.signal", f"unknown signal {red.signal}")
    try:
        window = arguments.time_range(red)
        step = arguments.step_ns(red.step if red.HasField("step") else None, window)
    except BadArgument as exc:
        raise _prefixed("red", exc) from exc
    return window, -(-step // MINUTE_NS) * MINUTE_NS


def _plan(
    request: pb.DetectAnomaliesRequest,
    window: arguments.TimeRange,
    step: int,
    threshold: float,
    period: int,
) -> _Plan:
    if request.HasField("window"):
        window_ns = arguments.duration_ns(request.window, "window")
        if window_ns < MIN_POINTS * step:
            raise BadArgument(
                "window",
                f"must hold at least {MIN_POINTS} steps ({MIN_POINTS * step / 1e9:g}s at a "
                f"step of {step / 1e9:g}s), got {window_ns / 1e9:g}s",
            )
        if window_ns // step > MAX_WINDOW_STEPS:
            raise BadArgument("window", f"must hold at most {MAX_WINDOW_STEPS} steps")
    else:
        window_ns = DEFAULT_WINDOW_STEPS * step
    if period % step:
        raise BadArgument(
            "seasonality",
            f"the step ({step / 1e9:g}s) must divide the period ({period / 1e9:g}s), so "
            "that points one period apart meet",
        )
    first = window.start_ns // step * step
    plan = _Plan(window.start_ns, window.end_ns, first, step, window_ns, threshold, period)
    if plan.read_from_ns - period < 0:
        raise BadArgument("seasonality", "one period earlier is before 1970")
    return plan


def _part(metric: pb.MetricQuery, start_ns: int, end_ns: int, step_ns: int) -> pb.MetricQuery:
    """``metric`` over ``[start_ns, end_ns)`` at an explicit ``step_ns``."""
    part = pb.MetricQuery()
    part.CopyFrom(metric)
    set_timestamp(part.start_time, start_ns)
    set_timestamp(part.end_time, end_ns)
    set_duration(part.step, step_ns)
    return part


def _as_metric_field(exc: BadArgument) -> BadArgument:
    """QueryMetrics names ``queries[i].field``; the client sent ``metric.field``."""
    fields = dict.fromkeys(_QUERY_FIELD.sub("metric", f) for f in exc.field.split(" or "))
    return BadArgument(" or ".join(fields), str(exc).split(": ", 1)[-1])


def _from_samples(found: dict[tuple[tuple[str, str], ...], list[pb.Series]]) -> list[_Series]:
    """Each labels' parts (ordered by time, disjoint) as one series of arrays."""
    out = []
    for key, parts in sorted(found.items()):
        samples = [s for part in parts for s in part.samples]
        times = np.array([s.time.seconds * 10**9 + s.time.nanos for s in samples], np.int64)
        values = np.array([s.value for s in samples], np.float64)
        out.append(_Series(dict(key), times, values))
    return out


def _signal(series: RedSeries, signal: int) -> scoring.Floats:
    """The RED array ``signal`` names: per second, a ratio, or seconds; no value for the
    steps the rollups do not hold whole yet (``RedSeries.final``)."""
    values: scoring.Floats
    if signal == pb.RedSeriesQuery.SIGNAL_REQUEST_RATE:
        values = series.requests / (series.step_ns / 1e9)
    elif signal == pb.RedSeriesQuery.SIGNAL_ERROR_RATE:
        requests = series.requests.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(requests > 0, series.errors / requests, np.nan)
    else:
        durations: dict[int, scoring.Floats] = {
            pb.RedSeriesQuery.SIGNAL_P50: series.p50_ns,
            pb.RedSeriesQuery.SIGNAL_P95: series.p95_ns,
            pb.RedSeriesQuery.SIGNAL_P99: series.p99_ns,
        }
        values = durations[signal] / 1e9
    return np.where(series.final(), values, np.nan)


def _reported(plan: _Plan, series: _Series) -> scoring.Bools:
    """The points the answer holds: the range's, with a value."""
    return (
        (series.times >= plan.first_ns) & (series.times < plan.end_ns) & np.isfinite(series.values)
    )


def _check_cost(plan: _Plan, now: Sequence[_Series]) -> None:
    if len(now) > MAX_SERIES:
        raise QueryTooCostly(
            f"the source has more than {MAX_SERIES} series to score; add a label matcher "
            "or a group_by"
        )
    points = sum(int(_reported(plan, s).sum()) for s in now)
    if points > MAX_POINTS:
        raise QueryTooCostly(
            f"the answer would hold more than {MAX_POINTS} points; use a larger step or a "
            "shorter range"
        )
    cells = sum(s.times.shape[0] * min(s.times.shape[0], plan.window_steps) for s in now)
    if cells > MAX_CELLS:
        raise QueryTooCostly(
            "scoring needs more than the server allows; use a shorter window, a larger "
            "step or fewer series"
        )


def _answer(
    plan: _Plan, now: Sequence[_Series], then: Sequence[_Series]
) -> pb.DetectAnomaliesResponse:
    """Scores every series and builds the answer (run in a worker thread)."""
    earlier = {_key(s.labels): s for s in then}
    response = pb.DetectAnomaliesResponse()
    set_duration(response.step, plan.step_ns)
    for series in now:
        keep = _reported(plan, series)
        if not keep.any():
            continue
        scored = series.values
        if plan.period_ns:
            before = earlier.get(_key(series.labels))
            scored = scoring.seasonal_difference(
                series.times,
                series.values,
                before.times if before else np.empty(0, np.int64),
                before.values if before else np.empty(0),
                plan.period_ns,
            )
        scores = scoring.score(
            series.times,
            scored,
            window_ns=plan.window_ns,
            threshold=plan.threshold,
            min_points=MIN_POINTS,
        ).subset(keep)
        times = series.times[keep]
        out = response.series.add()
        out.labels.update(series.labels)
        columns = zip(
            times.tolist(),
            series.values[keep].tolist(),
            scored[keep].tolist(),
            scores.mean.tolist(),
            scores.median.tolist(),
            scores.zscore.tolist(),
            scores.robust.tolist(),
            scores.scored.tolist(),
            scores.anomalous.tolist(),
            strict=True,
        )
        for t, value, x, mean, median, z, robust, ok, anomalous in columns:
            point = out.points.add(
                value=value,
                scored_value=x,
                mean=mean,
                median=median,
                zscore=z,
                robust_score=robust,
                scored=ok,
                anomalous=anomalous,
            )
            set_timestamp(point.time, t)
        for run in scoring.intervals(times, scores, plan.step_ns):
            interval = out.intervals.add(max_zscore=run.max_zscore, max_robust_score=run.max_robust)
            set_timestamp(interval.start_time, run.start_ns)
            set_timestamp(interval.end_time, run.end_ns)
    return response
