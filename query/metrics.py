"""QueryMetrics and ListMetrics: the series of a metric over time, and the metric catalog.

A query is read in two round trips for the whole call: first the series of every query
(``metric_series`` by name and matchers), then their points (one row per series, decoded
straight into numpy by ``storage.postgres.metric_reader``). The math is
``query.aggregate``; this module decides which of it a query needs and how the series
of a group combine: counts, sums, rates and increases add up; avg is the mean of all the
group's samples; min, max and last are those of the group; percentiles merge the group's
histogram buckets (or its raw samples) first and take the quantile of the merge.

Histogram and summary series answer avg/sum/min/max/count/last/rate/increase over their
observation ``count`` (``rate`` of a histogram is observations per second); percentiles
of a summary are refused, its quantiles having been computed by the client already.

A query whose step the metric rollups serve is read from them (``query.resolution``
decides which, and says so in ``MetricResult.resolution``); the same answers are then
computed from rows that summarize intervals (``aggregate.row_moments``, ``row_increase``,
``bucket_steps``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np

from otlpd.errors import BadArgument, QueryTooCostly
from query import aggregate, arguments, cold_metrics, resolution, tokens
from query.aggregate import Grid, Layout, Moments
from query.call import QueryCall
from query.convert import set_duration
from query.proto import pb
from query.resolution import Retention, Sources
from query.samples import add_samples
from query.settings import QuerySettings
from storage.model import MetricType
from storage.postgres import metric_reader as reader
from storage.postgres.cold_manifest import ColdObject
from storage.postgres.metric_reader import Matcher, SeriesRow
from storage.postgres.metric_rollups import COMPLETE_UNTIL
from storage.postgres.metric_rollups import JOB_NAME as ROLLUP_JOB
from storage.postgres.partitions import ns_from_datetime
from storage.rollup_rows import (
    Buckets,
    ExponentialRow,
    ExponentialState,
    Numbers,
    chain_time_order,
    exponential_buckets,
)

MAX_QUERIES: Final = 32
MAX_SERIES: Final = 10_000  # per query: more is a dashboard asking for a table
MAX_MATCHERS: Final = 32
MAX_NAME_CHARS: Final = 255  # the receiver's limit on metric names
LIST_DEFAULT_LIMIT: Final = 1000
# Points read before the first bucket, for the windows of rate/increase and for the
# previous point of a cumulative histogram, when no range was given.
MIN_LOOKBACK_NS: Final = 10 * 60 * 10**9
# A percentile read of at least this many histogram series is split in two reads run on
# two connections at once: 100 series over a day took 260 ms of PostgreSQL in one, 200 ms
# in two halves (docs/benchmarks.md).
SPLIT_MIN_SERIES: Final = 16
PARALLEL_READS: Final = 2

_OPS: Final[dict[int, str]] = {
    pb.LabelMatcher.OP_EQ: reader.EQ,
    pb.LabelMatcher.OP_NEQ: reader.NEQ,
    pb.LabelMatcher.OP_RE: reader.RE,
    pb.LabelMatcher.OP_NRE: reader.NRE,
}
_OVER_TIME: Final[dict[int, str]] = {
    pb.AGGREGATION_UNSPECIFIED: "avg",
    pb.AGGREGATION_AVG: "avg",
    pb.AGGREGATION_SUM: "sum",
    pb.AGGREGATION_MIN: "min",
    pb.AGGREGATION_MAX: "max",
    pb.AGGREGATION_COUNT: "count",
    pb.AGGREGATION_LAST: "last",
}
_QUANTILES: Final[dict[int, float]] = {
    pb.AGGREGATION_P50: 0.5,
    pb.AGGREGATION_P90: 0.9,
    pb.AGGREGATION_P95: 0.95,
    pb.AGGREGATION_P99: 0.99,
}
_RATES: Final[dict[int, bool]] = {pb.AGGREGATION_RATE: True, pb.AGGREGATION_INCREASE: False}
_DELTA: Final = 1
_HISTOGRAMS: Final = (MetricType.HISTOGRAM, MetricType.EXPONENTIAL_HISTOGRAM)


@dataclass(frozen=True, slots=True)
class _Plan:
    """One validated MetricQuery."""

    name: str
    matchers: tuple[Matcher, ...]
    window: arguments.TimeRange
    step_ns: int
    aggregation: int
    group_by: tuple[str, ...]
    range_ns: int | None
    field: str
    # False: one bucket that is exactly ``window`` (an alerting rule's evaluation, whose
    # window ends at the evaluation time), not buckets aligned on multiples of the step.
    aligned: bool = True

    @property
    def grid(self) -> Grid:
        if not self.aligned:
            return Grid(self.window.start_ns, self.step_ns, 1)
        return Grid.covering(self.window.start_ns, self.window.end_ns, self.step_ns)

    @property
    def lookback_ns(self) -> int:
        if self.aggregation in _OVER_TIME:
            return 0
        if self.range_ns is not None:
            return self.range_ns
        return max(2 * self.step_ns, MIN_LOOKBACK_NS)

    @property
    def read_from_ns(self) -> int:
        return max(0, self.grid.first_ns - self.lookback_ns)


def _prefixed(field: str, exc: BadArgument) -> BadArgument:
    problem = str(exc).split(": ", 1)[-1]
    return BadArgument(f"{field}.{exc.field}", problem)


def _plan(i: int, q: pb.MetricQuery) -> _Plan:
    field = f"queries[{i}]"
    if not q.metric_name:
        raise BadArgument(f"{field}.metric_name", "must not be empty")
    name = arguments.text(q.metric_name, f"{field}.metric_name", max_chars=MAX_NAME_CHARS)
    matchers = label_matchers(q.matchers, f"{field}.matchers")
    try:
        window = arguments.time_range(q)
        step = arguments.step_ns(q.step if q.HasField("step") else None, window)
        range_ns = arguments.duration_ns(q.range, "range") if q.HasField("range") else None
    except BadArgument as exc:
        raise _prefixed(field, exc) from exc
    if range_ns == 0:
        raise BadArgument(f"{field}.range", "must be > 0")
    if range_ns is not None and range_ns > 32 * 86400 * 10**9:
        raise BadArgument(f"{field}.range", "must be at most 32 days")
    check_aggregation(q.aggregation, f"{field}.aggregation")
    group_by = tuple(
        arguments.text(label, f"{field}.group_by[{k}]") for k, label in enumerate(q.group_by)
    )
    return _Plan(name, matchers, window, step, q.aggregation, group_by, range_ns, field)


def label_matchers(matchers: Sequence[pb.LabelMatcher], field: str) -> tuple[Matcher, ...]:
    """``matchers`` validated as QueryMetrics takes them (``BadArgument`` naming
    ``field[i].name``, ``.op`` or ``.value``); also the alerting API's (rules, silences)."""
    if len(matchers) > MAX_MATCHERS:
        raise BadArgument(field, f"at most {MAX_MATCHERS} matchers")
    found = []
    for j, m in enumerate(matchers):
        where = f"{field}[{j}]"
        if not m.name:
            raise BadArgument(f"{where}.name", "must not be empty")
        if m.op not in _OPS:
            raise BadArgument(f"{where}.op", f"unknown operator {m.op}")
        op = _OPS[m.op]
        label = arguments.text(m.name, f"{where}.name")
        value = arguments.text(m.value, f"{where}.value")
        if op in (reader.RE, reader.NRE):
            _check_regex(value, f"{where}.value")
        found.append(Matcher(label, op, value))
    return tuple(found)


def check_aggregation(value: int, field: str) -> int:
    """``value`` if it is one of QueryMetrics' aggregations, else ``BadArgument``."""
    if value not in set(_OVER_TIME) | set(_QUANTILES) | set(_RATES):
        raise BadArgument(field, f"unknown aggregation {value}")
    return value


def _check_regex(value: str, field: str) -> None:
    """Refuses a pattern neither RE2 nor PostgreSQL would take, naming the field. Python's
    ``re`` stands in for both: the three agree on the syntax dashboards use; a pattern
    PostgreSQL alone refuses is still answered INVALID_ARGUMENT (``QueryCall``)."""
    try:
        re.compile(value)
    except re.error as exc:
        raise BadArgument(field, f"is not a valid regular expression: {exc.msg}") from exc


def _label_text(value: Any) -> str:
    """An attribute value as the label string ``->>`` compares: strings as they are,
    anything else as its JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _labels(series: SeriesRow) -> dict[str, str]:
    labels = {k: _label_text(v) for k, v in (series.attributes or {}).items()}
    if series.service_name:
        labels[reader.SERVICE_LABEL] = series.service_name
    return labels


@dataclass(frozen=True, slots=True)
class _Rows:
    """A query's data read from the rollups (and the raw points after them), as rows:
    numbers of every series, explicit-histogram rows per bucket layout, exponential rows."""

    numbers: Numbers
    buckets: list[tuple[list[float], Buckets]]
    exponential: list[ExponentialRow]


# One read: a statement and how to decode its rows (rows, lo_ns, hi_ns).
_Read = tuple[tuple[Any, Any], Callable[[list[Any]], Any]]


class MetricQueries:
    """QueryMetrics and ListMetrics over ``metric_series``, ``metric_points`` and the
    metric rollups."""

    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings
        self._retention = Retention(settings.rollup_retention_1m_s, settings.rollup_retention_1h_s)

    async def query(
        self, call: QueryCall, request: pb.QueryMetricsRequest
    ) -> pb.QueryMetricsResponse:
        """Every query of the request, in order; two round trips whatever their number."""
        if len(request.queries) > MAX_QUERIES:
            raise BadArgument("queries", f"at most {MAX_QUERIES} queries per call")
        plans = [_plan(i, q) for i, q in enumerate(request.queries)]
        response = pb.QueryMetricsResponse()
        if not plans:
            return response
        found, complete = await self._series(call, plans)
        now = time.time_ns()
        # Only the raw points may be cold (tiering waits until the rollups of their range
        # are final), so only queries the rollups do not answer look in the cold tier; a
        # query with no series in metric_series may have them there (a pruned row).
        raw = [
            i
            for i, (plan, series) in enumerate(zip(plans, found, strict=True))
            if not series or self._sources(plan, _choose(plan, series)[0], now, complete) is None
        ]
        cold = await cold_metrics.objects(
            call,
            min((plans[i].read_from_ns for i in raw), default=0),
            max((plans[i].window.end_ns for i in raw), default=0),
        )
        for i in raw if cold else ():
            found[i] = await self._cold_series(call, plans[i], found[i], cold)
        chosen = [_choose(plan, series) for plan, series in zip(plans, found, strict=True)]
        sources = [
            self._sources(plan, kind, now, complete) if series else None
            for plan, (kind, series) in zip(plans, chosen, strict=True)
        ]
        points = await self._points(call, plans, chosen, sources, cold)
        for plan, (kind, series), data, source in zip(plans, chosen, points, sources, strict=True):
            result = response.results.add(metric_name=plan.name, type=kind)
            set_duration(result.step, plan.step_ns)
            result.resolution = pb.RESOLUTION_RAW if source is None else source.resolution
            if series:
                result.unit = series[0].unit or ""
                if source is None:
                    _answer(plan, kind, series, data, result)
                else:
                    _answer_rows(plan, kind, series, data, result, source=source)
        return response

    async def at(
        self, call: QueryCall, instants: Sequence[tuple[pb.MetricQuery, int, int]]
    ) -> list[list[tuple[dict[str, str], float]]]:
        """Each query's value per output series over ``[at_ns - window_ns, at_ns)``, for
        ``(query, at_ns, window_ns)`` instants: what an alerting rule compares (Prometheus
        evaluates ``avg_over_time(x[5m])`` over the window that ends at the evaluation).

        The query's aggregation, matchers and group_by are QueryMetrics'; its times, step
        and range are replaced by the instant's window (``rate`` and ``increase`` take it
        as their range). The same two round trips as ``query``, whatever the number of
        instants, so an evaluator can batch the rules of a round.
        """
        plans = []
        for i, (q, at_ns, window_ns) in enumerate(instants):
            plan = _plan(
                i,
                pb.MetricQuery(
                    metric_name=q.metric_name,
                    matchers=q.matchers,
                    aggregation=q.aggregation,
                    group_by=q.group_by,
                ),
            )
            window = arguments.TimeRange(max(0, at_ns - window_ns), at_ns)
            ranged = window_ns if plan.aggregation in _RATES else None
            plans.append(replace(plan, window=window, step_ns=window_ns, range_ns=ranged,
                                 aligned=False))  # fmt: skip
        if not plans:
            return []
        found, _ = await self._series(call, plans)
        chosen = [_choose(plan, series) for plan, series in zip(plans, found, strict=True)]
        # Raw points: an alert's window ends at its evaluation, never on a rollup boundary.
        points = await self._points(call, plans, chosen, [None] * len(plans))
        out: list[list[tuple[dict[str, str], float]]] = []
        for plan, (kind, series), data in zip(plans, chosen, points, strict=True):
            out.append(_values_at(plan, kind, series, data) if series else [])
        return out

    async def _cold_series(
        self, call: QueryCall, plan: _Plan, hot: list[SeriesRow], cold: Sequence[ColdObject]
    ) -> list[SeriesRow]:
        """``hot`` and the series of ``plan`` found in the cold objects, by series id."""
        found = await cold_metrics.series(
            call, cold, plan.name, plan.matchers, lo_ns=plan.read_from_ns, hi_ns=plan.window.end_ns
        )
        known = {s.series_id for s in hot}
        merged = sorted(
            [*hot, *(s for s in found if s.series_id not in known)], key=lambda s: s.series_id
        )
        if len(merged) > MAX_SERIES:
            raise QueryTooCostly(
                f"{plan.field} selects more than {MAX_SERIES} series; add a label matcher"
            )
        return merged

    def _sources(
        self, plan: _Plan, kind: int, now_ns: int, complete: tuple[int, int]
    ) -> Sources | None:
        """The rollup rows that answer ``plan``, or None: the raw points."""
        needs_raw = plan.aggregation in _QUANTILES and kind not in _HISTOGRAMS
        width = resolution.rollup_width(
            step_ns=plan.step_ns,
            range_ns=plan.range_ns,
            start_ns=plan.window.start_ns,
            now_ns=now_ns,
            needs_raw_values=needs_raw,
            retention=self._retention,
        )
        if width is None:
            return None
        return resolution.sources(
            width,
            read_from_ns=plan.read_from_ns,
            end_ns=plan.window.end_ns,
            complete_1m_ns=complete[0],
            complete_1h_ns=complete[1],
        )

    async def _series(
        self, call: QueryCall, plans: Sequence[_Plan]
    ) -> tuple[list[list[SeriesRow]], tuple[int, int]]:
        """The series of every query, and up to when the project's rollups are final."""
        statements: list[tuple[Any, Any]] = [
            reader.series_statement(call.project, p.name, p.matchers, MAX_SERIES + 1) for p in plans
        ]
        statements.append((COMPLETE_UNTIL, {"project": call.project, "name": ROLLUP_JOB}))
        try:
            batches = await call.fetch_many(statements)
        except BadArgument as exc:
            # PostgreSQL refused a pattern Python's re took: say which query had one.
            fields = [
                f"{p.field}.matchers[{j}].value"
                for p in plans
                for j, m in enumerate(p.matchers)
                if m.op in (reader.RE, reader.NRE)
            ]
            if exc.field == "request" and fields:
                raise BadArgument(
                    " or ".join(fields), "is not a regular expression PostgreSQL accepts"
                ) from exc
            raise
        found = []
        for plan, rows in zip(plans, batches, strict=False):
            if len(rows) > MAX_SERIES:
                raise QueryTooCostly(
                    f"{plan.field} selects more than {MAX_SERIES} series; add a label matcher"
                )
            found.append(reader.decode_series(rows))
        complete = (0, 0)
        if batches[-1]:
            minutes, hours = batches[-1][0]
            complete = (ns_from_datetime(minutes), ns_from_datetime(hours))
        return found, complete

    async def _points(
        self,
        call: QueryCall,
        plans: Sequence[_Plan],
        chosen: Sequence[tuple[int, list[SeriesRow]]],
        sources: Sequence[Sources | None],
        cold: Sequence[ColdObject] = (),
    ) -> list[Any]:
        """Each query's data: the raw points' (per series) or its rows (``_Rows``). Raw
        points come from both tiers (``cold``: the point objects of the call's range);
        the rollups' raw part is always hot (tiering waits until the rollups of a
        partition's range are final)."""
        parts: list[list[list[tuple[Any, Any]]]] = []  # per query: parts, each on one connection
        finishers: list[Callable[[list[list[Any]]], Any]] = []
        for plan, (kind, series), source in zip(plans, chosen, sources, strict=True):
            if not series:
                continue
            ids = [s.series_id for s in series]
            if source is not None:
                delta = {s.series_id for s in series if s.temporality == _DELTA}
                # As for the raw points: many series' buckets are read in two halves, on
                # two connections at once, so PostgreSQL aggregates on two cores.
                halves = [ids]
                if plan.aggregation in _QUANTILES and len(ids) >= SPLIT_MIN_SERIES:
                    halves = [ids[0::2], ids[1::2]]
                decoders: list[Callable[[list[Any]], _Rows]] = []
                query_parts = []
                for half in halves:
                    reads = _row_reads(call.project, plan, kind, half, delta=delta, source=source)
                    query_parts.append([statement for statement, _ in reads])
                    decoders += [decode for _, decode in reads]
                parts.append(query_parts)
                finishers.append(_rows_finisher(decoders))
            else:
                raw_parts, finish = _raw_reads(call, plan, kind, ids, cold)
                parts.append(raw_parts)
                finishers.append(finish)
        fetched = iter(await self._read(call, parts))
        finish_each = iter(finishers)
        out: list[Any] = []
        for _, series in chosen:
            if not series:
                out.append([])
                continue
            out.append(await next(finish_each)(next(fetched)))
        return out

    async def _read(
        self, call: QueryCall, queries: Sequence[Sequence[Sequence[tuple[Any, Any]]]]
    ) -> list[list[list[Any]]]:
        """The rows of each statement of each query (per query, a list per statement).
        When every query is one part, all statements go on one connection; a query read
        in several parts (a large histogram) has its parts on ``PARALLEL_READS``
        connections at once."""
        settings = reader.POINTS_SETTINGS
        if all(len(parts) == 1 for parts in queries):
            flat = [statement for parts in queries for statement in parts[0]]
            rows = iter(await call.fetch_many(flat, binary=True, settings=settings))
            return [[next(rows) for _ in parts[0]] for parts in queries]
        gate = asyncio.Semaphore(PARALLEL_READS)

        async def one(part: Sequence[tuple[Any, Any]]) -> list[list[Any]]:
            async with gate:
                return await call.fetch_many(part, binary=True, settings=settings)

        done = await asyncio.gather(*(one(part) for parts in queries for part in parts))
        out: list[list[list[Any]]] = []
        at = 0
        for parts in queries:
            out.append([rows for chunk in done[at : at + len(parts)] for rows in chunk])
            at += len(parts)
        return out

    async def list(self, call: QueryCall, request: pb.ListMetricsRequest) -> pb.ListMetricsResponse:
        """Metric names (with ``prefix``) in name order, keyset-paginated."""
        limit = arguments.limit(
            request.limit, default=LIST_DEFAULT_LIMIT, maximum=self._settings.max_limit
        )
        prefix = arguments.text(request.prefix, "prefix", max_chars=MAX_NAME_CHARS)
        bound_to = tokens.fingerprint(call.project, request)
        cursor = tokens.decode(request.page_token, "metrics", bound_to)
        after = ""
        if cursor is not None:
            if len(cursor) != 1 or not isinstance(cursor[0], str):
                raise BadArgument("page_token", "is not a token this server issued")
            after = cursor[0]
        rows = reader.decode_list(
            await call.fetch(*reader.list_statement(call.project, prefix, after, limit + 1))
        )
        response = pb.ListMetricsResponse()
        for row in rows[:limit]:
            keys = set(row.label_keys)
            if row.has_service:
                keys.add(reader.SERVICE_LABEL)
            response.metrics.add(
                name=row.name,
                type=row.metric_type,
                unit=row.unit or "",
                description=row.description or "",
                label_keys=sorted(keys),
            )
        if len(rows) > limit:
            response.next_page_token = tokens.encode("metrics", bound_to, [rows[limit - 1].name])
        return response


def _choose(plan: _Plan, series: list[SeriesRow]) -> tuple[int, list[SeriesRow]]:
    """The metric's type and the series of it: one name sent with two types (a client
    changed its instrument) answers with the type most of its series have."""
    if not series:
        return pb.METRIC_TYPE_UNSPECIFIED, []
    kind = Counter(s.metric_type for s in series).most_common(1)[0][0]
    if plan.aggregation in _QUANTILES and kind == MetricType.SUMMARY:
        raise BadArgument(
            f"{plan.field}.aggregation",
            "a summary metric carries quantiles its client computed; they cannot be merged",
        )
    return kind, [s for s in series if s.metric_type == kind]


def _groups(plan: _Plan, series: Sequence[SeriesRow]) -> dict[tuple[str, ...], list[int]]:
    """Positions of the series of each output series, by its labels (sorted pairs)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for position, s in enumerate(series):
        labels = _labels(s)
        if plan.group_by:
            pairs = [(k, labels.get(k, "")) for k in plan.group_by]
            key = tuple(x for k, v in sorted(pairs) if v for x in (k, v))
        elif plan.aggregation in _QUANTILES:
            key = ()
        else:
            key = tuple(x for k, v in sorted(labels.items()) for x in (k, v))
        groups.setdefault(key, []).append(position)
    return groups


def _answer(
    plan: _Plan, kind: int, series: Sequence[SeriesRow], data: Sequence[Any], result: Any
) -> None:
    grid = plan.grid
    by_id = {s.series_id: s for s in series}
    members: dict[int, list[Any]] = {}
    for item in data:
        members.setdefault(item.series_id, []).append(item)
    starts = grid.starts()
    for key, positions in sorted(_groups(plan, series).items()):
        group = [item for p in positions for item in members.get(series[p].series_id, [])]
        if not group:
            continue
        _add_series(result, key, starts, _group_values(plan, kind, grid, group, by_id))


def _add_series(
    result: Any, key: tuple[str, ...], starts_ns: np.ndarray, values: np.ndarray
) -> None:
    """A series of ``result`` labelled by ``key`` (label, value, ...), a sample per step
    with a value (none at all when no step has one)."""
    has = ~np.isnan(values)
    if not has.any():
        return
    out = result.series.add()
    out.labels.update(dict(zip(key[0::2], key[1::2], strict=True)))
    add_samples(out, starts_ns[has], values[has])


def _values_at(
    plan: _Plan, kind: int, series: Sequence[SeriesRow], data: Sequence[Any]
) -> list[tuple[dict[str, str], float]]:
    """The one-bucket answer of ``plan`` per output series (those with a value)."""
    grid = plan.grid
    by_id = {s.series_id: s for s in series}
    members: dict[int, list[Any]] = {}
    for item in data:
        members.setdefault(item.series_id, []).append(item)
    out = []
    for key, positions in sorted(_groups(plan, series).items()):
        group = [item for p in positions for item in members.get(series[p].series_id, [])]
        if not group:
            continue
        value = float(_group_values(plan, kind, grid, group, by_id)[0])
        if not np.isnan(value):  # the window held samples
            out.append((dict(zip(key[0::2], key[1::2], strict=True)), value))
    return out


def _group_values(
    plan: _Plan, kind: int, grid: Grid, group: Sequence[Any], by_id: dict[int, SeriesRow]
) -> np.ndarray:
    """The group's value per bucket (NaN: none)."""
    if plan.aggregation in _QUANTILES:
        q = _QUANTILES[plan.aggregation]
        if kind == MetricType.HISTOGRAM:
            return _explicit_quantile(plan, grid, group, by_id, q)
        if kind == MetricType.EXPONENTIAL_HISTOGRAM:
            return _exponential_quantile(plan, grid, group, by_id, q)
        times, values = _in_range(plan, group)
        return aggregate.raw_quantile(grid, times, values, q)
    if plan.aggregation in _RATES:
        total = np.full(grid.size, np.nan)
        for item in group:
            rate = _rate(plan, kind, grid, item, by_id[item.series_id])
            total = np.where(np.isnan(total), rate, total + np.nan_to_num(rate))
        return total
    how = _OVER_TIME[plan.aggregation]
    merged = Moments.empty(grid.size)
    for item in group:
        times, values = _deduplicated(item.times, item.values)
        inside = (times >= plan.window.start_ns) & (times < plan.window.end_ns)
        merged = merged.combine(aggregate.moments(grid, times[inside], values[inside]))
    return merged.result(how)


def _deduplicated(times: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    keep = aggregate.deduplicated(times)
    return (times[keep], *(c[keep] for c in columns))


def _in_range(plan: _Plan, group: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    parts = [_deduplicated(item.times, item.values) for item in group]
    times = np.concatenate([p[0] for p in parts])
    values = np.concatenate([p[1] for p in parts])
    inside = (times >= plan.window.start_ns) & (times < plan.window.end_ns)
    return times[inside], values[inside]


def _rate(plan: _Plan, kind: int, grid: Grid, item: Any, series: SeriesRow) -> np.ndarray:
    times, values = _deduplicated(item.times, item.values)
    range_ns = plan.range_ns or aggregate.default_range(times, plan.step_ns)
    per_second = _RATES[plan.aggregation]
    if series.temporality == _DELTA:
        return aggregate.delta_increase(grid, times, values, range_ns, per_second=per_second)
    counter = kind in _HISTOGRAMS or kind == MetricType.SUMMARY or bool(series.monotonic)
    return aggregate.extrapolated_rate(
        grid, times, values, range_ns, counter=counter, per_second=per_second
    )


def _increments(
    plan: _Plan, series: SeriesRow, times: np.ndarray, starts: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What each point adds to its buckets (delta points are increments already)."""
    times, starts, counts = _deduplicated(times, starts, counts)
    if series.temporality == _DELTA:
        increments = counts
    else:
        increments, keep = aggregate.cumulative_increments(
            starts, counts, since_ns=plan.read_from_ns
        )
        times, increments = times[keep], increments[keep]
    inside = (times >= plan.window.start_ns) & (times < plan.window.end_ns)
    return times[inside], increments[inside]


def _explicit_quantile(
    plan: _Plan, grid: Grid, group: Sequence[Any], by_id: dict[int, SeriesRow], q: float
) -> np.ndarray:
    union, columns = aggregate.merge_layouts([item.bounds for item in group])
    if group and all(len(item.bounds) == len(union) for item in group):
        # Every series has the union's layout (the common case): all of them at once.
        merged = _merged_increments(plan, grid, group, by_id)
        return aggregate.histogram_quantile(q, Layout.explicit(union), merged)
    merged = np.zeros((grid.size, len(union) + 1))
    for item, column in zip(group, columns, strict=True):
        times, increments = _increments(
            plan, by_id[item.series_id], item.times, item.starts, item.counts.astype(np.float64)
        )
        merged[:, column] += aggregate.bucket_sums(grid, times, increments)
    return aggregate.histogram_quantile(q, Layout.explicit(union), merged)


def _merged_increments(
    plan: _Plan, grid: Grid, group: Sequence[Any], by_id: dict[int, SeriesRow]
) -> np.ndarray:
    """Per grid bucket, the sum over ``group`` of what each point adds to its buckets:
    ``_increments`` and ``bucket_sums`` for every series of one layout, in a few array
    operations over all their points instead of a dozen per series (measured: 70 ms of
    numpy calls for 100 series over a day, one per series)."""
    lengths = np.array([item.times.shape[0] for item in group])
    times = np.concatenate([item.times for item in group])
    starts = np.concatenate([item.starts for item in group])
    counts = np.concatenate([item.counts for item in group]).astype(np.float64)
    series = np.repeat(np.arange(len(group)), lengths)
    delta = np.repeat(
        np.array([by_id[item.series_id].temporality == _DELTA for item in group]), lengths
    )
    # The first of each run of equal times within a series (aggregate.deduplicated).
    keep = np.ones(times.shape[0], dtype=bool)
    keep[1:] = (times[1:] != times[:-1]) | (series[1:] != series[:-1])
    times, starts, counts = times[keep], starts[keep], counts[keep]
    series, delta = series[keep], delta[keep]
    # Cumulative points add their difference to the previous point of their series, or
    # their own counts after a reset; a series' first point counts only when the series
    # started within what was read (aggregate.cumulative_increments).
    first = np.ones(times.shape[0], dtype=bool)
    first[1:] = series[1:] != series[:-1]
    increments = counts.copy()
    if times.shape[0] > 1:
        diff = counts[1:] - counts[:-1]
        reset = (diff < 0).any(axis=1) | (starts[1:] != starts[:-1])
        increments[1:] = np.where(reset[:, None], counts[1:], diff)
        increments[1:][first[1:]] = counts[1:][first[1:]]
    increments[delta] = counts[delta]  # delta points are increments already
    counted = delta | ~first | ((starts > 0) & (starts >= plan.read_from_ns))
    inside = counted & (times >= plan.window.start_ns) & (times < plan.window.end_ns)
    index = grid.index(times[inside])
    increments = increments[inside]
    on_grid = (index >= 0) & (index < grid.size)
    index, increments = index[on_grid], increments[on_grid]
    merged = np.zeros((grid.size, increments.shape[1] if increments.ndim == 2 else 0))
    for column in range(merged.shape[1]):
        merged[:, column] = np.bincount(index, weights=increments[:, column], minlength=grid.size)[
            : grid.size
        ]
    return merged


def _exponential_quantile(
    plan: _Plan, grid: Grid, group: Sequence[Any], by_id: dict[int, SeriesRow], q: float
) -> np.ndarray:
    """Exponential histograms merged at the lowest scale among their points (a bucket at
    scale s is exactly two at s + 1, so downscaling loses nothing but resolution)."""
    scale = min(p.scale for p in group)
    threshold = max(p.zero_threshold for p in group)

    def indexes(offset: int, counts: Sequence[int], shift: int) -> np.ndarray:
        return (offset + np.arange(len(counts), dtype=np.int64)) >> shift

    pos_lo = neg_lo = 2**62
    pos_hi = neg_hi = -(2**62)
    for p in group:
        shift = p.scale - scale
        if p.positive_counts:
            i = indexes(p.positive_offset, p.positive_counts, shift)
            pos_lo, pos_hi = min(pos_lo, int(i[0])), max(pos_hi, int(i[-1]) + 1)
        if p.negative_counts:
            i = indexes(p.negative_offset, p.negative_counts, shift)
            neg_lo, neg_hi = min(neg_lo, int(i[0])), max(neg_hi, int(i[-1]) + 1)
    positive = range(pos_lo, pos_hi) if pos_hi > pos_lo else range(0)
    negative = range(neg_lo, neg_hi) if neg_hi > neg_lo else range(0)
    layout = Layout.exponential(scale, threshold, negative, positive)
    zero_column = len(negative)
    merged = np.zeros((grid.size, len(layout.uppers)))
    by_series: dict[int, list[Any]] = {}
    for p in group:
        by_series.setdefault(p.series_id, []).append(p)
    for series_id, points in by_series.items():
        rows = np.zeros((len(points), len(layout.uppers)))
        for r, p in enumerate(points):
            shift = p.scale - scale
            if p.positive_counts:
                i = indexes(p.positive_offset, p.positive_counts, shift)
                np.add.at(rows[r], zero_column + 1 + (i - positive.start), p.positive_counts)
            if p.negative_counts:
                i = indexes(p.negative_offset, p.negative_counts, shift)
                np.add.at(rows[r], zero_column - 1 - (i - negative.start), p.negative_counts)
            rows[r, zero_column] = p.zero_count
        times = np.array([p.time_ns for p in points], dtype=np.int64)
        starts = np.array([p.start_ns for p in points], dtype=np.int64)
        times, increments = _increments(plan, by_id[series_id], times, starts, rows)
        merged += aggregate.bucket_sums(grid, times, increments)
    return aggregate.histogram_quantile(q, layout, merged)


# --- reading ------------------------------------------------------------------------------


def _raw_reads(
    call: QueryCall, plan: _Plan, kind: int, ids: list[int], cold: Sequence[ColdObject] = ()
) -> tuple[list[list[tuple[Any, Any]]], Callable[[list[list[Any]]], Any]]:
    """The raw points' reads of a query (in parts, each on a connection of its own) and
    the coroutine that decodes what they return, the cold tier's points (of ``cold``)
    merged in."""
    lo, hi = plan.read_from_ns, plan.window.end_ns
    function: Callable[[Any, int, int], Sequence[Any]]
    if plan.aggregation in _QUANTILES and kind == MetricType.HISTOGRAM:
        # The heaviest read (every bucket array of every point): in halves, on two
        # connections at once, so PostgreSQL aggregates on two cores.
        halves = [ids] if len(ids) < SPLIT_MIN_SERIES else [ids[0::2], ids[1::2]]
        parts = [[reader.histogram_points_statement(call.project, h, lo, hi)] for h in halves]
        function, what = reader.decode_histograms, "buckets"
    elif plan.aggregation in _QUANTILES and kind == MetricType.EXPONENTIAL_HISTOGRAM:
        parts = [[reader.exponential_points_statement(call.project, ids, lo, hi)]]
        function, what = reader.decode_exponential, "exponential"
    else:
        parts = [[reader.number_points_statement(call.project, ids, lo, hi)]]
        function, what = reader.decode_numbers, "numbers"

    async def finish(fetched: list[list[Any]]) -> list[Any]:
        rows = [row for chunk in fetched for row in chunk]
        try:
            hot = list(function(rows, lo, hi))
        except reader.MixedLayouts as mixed:
            # Rare: a series changed its bucket bounds within the range.
            again = reader.histogram_points_by_layout_statement(
                call.project, mixed.series_ids, lo, hi
            )
            mixed_rows = await call.fetch(*again, binary=True)
            kept = [row for row in rows if row[0] not in set(mixed.series_ids)]
            hot = list(function(kept + mixed_rows, lo, hi))
        if not cold:
            return hot
        found = await cold_metrics.points(call, cold, plan.name, what, ids, lo_ns=lo, hi_ns=hi)
        return cold_metrics.merged(what, hot, found)

    return parts, finish


def _row_reads(
    project: str, plan: _Plan, kind: int, ids: list[int], *, delta: set[int], source: Sources
) -> list[tuple[tuple[Any, Any], Callable[[list[Any]], _Rows]]]:
    """The reads of a query answered from rollups: 1-hour rows, 1-minute rows and raw
    points, each where ``source`` says, with how to turn what they return into rows
    (``delta``: the series of delta temporality, for the raw points' histograms)."""
    lo, hours, minutes = source.read_from_ns, source.hours_until_ns, source.minutes_until_ns
    end = plan.window.end_ns
    if plan.aggregation in _QUANTILES and kind == MetricType.HISTOGRAM:
        what, raw = "buckets", reader.histogram_points_by_layout_statement
    elif plan.aggregation in _QUANTILES and kind == MetricType.EXPONENTIAL_HISTOGRAM:
        what, raw = "exponential", reader.exponential_points_statement
    else:
        what, raw = "numbers", reader.number_points_statement
    reads: list[tuple[tuple[Any, Any], Callable[[list[Any]], _Rows]]] = []
    for table, start, stop in (
        (reader.ROLLUP_TABLES[resolution.HOUR_NS], lo, hours),
        (reader.ROLLUP_TABLES[resolution.MINUTE_NS], hours, minutes),
    ):
        if stop > start:
            scope = reader.series_scope(project, ids, start, stop)
            reads.append((reader.rollup_statement(what, table, scope), _rollup_decoder(what)))
    if end > minutes:
        reads.append((raw(project, ids, minutes, end), _raw_decoder(what, minutes, end, delta)))
    return reads


def _rollup_decoder(what: str) -> Callable[[list[Any]], _Rows]:
    def decode(rows: list[Any]) -> _Rows:
        if what == "numbers":
            # Unsorted: ``_rows_finisher`` sorts every part's rows together, once.
            numbers = reader.decode_rollup_numbers(rows, sort=False)
            return _Rows(Numbers.concat(list(numbers.values())), [], [])
        if what == "buckets":
            chains = reader.decode_rollup_buckets(rows, sort=False)
            return _Rows(Numbers.empty(), [(c.bounds, c.rows) for c in chains], [])
        found = reader.decode_rollup_exponential(rows)
        return _Rows(Numbers.empty(), [], [r for rows in found.values() for r in rows])

    return decode


def _raw_decoder(what: str, lo: int, hi: int, delta: set[int]) -> Callable[[list[Any]], _Rows]:
    """Raw points in ``[lo, hi)`` as one-point rows (``delta``: the series of delta
    temporality, whose histogram points are increments)."""

    def decode(rows: list[Any]) -> _Rows:
        if what == "numbers":
            points = reader.decode_numbers(rows, lo, hi)
            empty = np.empty(0, dtype=np.int64)
            numbers = Numbers.of_samples(
                np.concatenate(
                    [empty, *(np.full(p.times.shape[0], p.series_id) for p in points)]
                ).astype(np.int64),
                np.concatenate([empty, *(p.times for p in points)]).astype(np.int64),
                np.concatenate([empty, *(p.values for p in points)]).astype(np.float64),
            )
            return _Rows(numbers, [], [])
        if what == "buckets":
            chains = []
            for p in reader.decode_histograms(rows, lo, hi):
                n = p.times.shape[0]
                chains.append(
                    (
                        p.bounds,
                        Buckets.of_points(
                            np.full(n, p.series_id, dtype=np.int64),
                            p.times,
                            p.starts,
                            p.counts,
                            np.full(n, p.series_id in delta),
                        ),
                    )
                )
            return _Rows(Numbers.empty(), chains, [])
        return _Rows(
            Numbers.empty(),
            [],
            [
                ExponentialRow.of_point(
                    p.series_id,
                    p.time_ns,
                    p.start_ns,
                    p.scale,
                    p.zero_threshold,
                    _exp_state(p),
                    delta=p.series_id in delta,
                )
                for p in reader.decode_exponential(rows, lo, hi)
            ],
        )

    return decode


def _exp_state(p: reader.ExponentialPoint) -> ExponentialState:
    return ExponentialState(
        p.zero_count,
        p.positive_offset,
        np.asarray(p.positive_counts, dtype=np.int64),
        p.negative_offset,
        np.asarray(p.negative_counts, dtype=np.int64),
    )


def _rows_finisher(
    decoders: Sequence[Callable[[list[Any]], _Rows]],
) -> Callable[[list[list[Any]]], Any]:
    async def finish(fetched: list[list[Any]]) -> _Rows:
        parts = [decode(rows) for decode, rows in zip(decoders, fetched, strict=True)]
        numbers = Numbers.concat([p.numbers for p in parts])
        numbers = numbers.take(chain_time_order(numbers.series, numbers.time))
        layouts: dict[tuple[float, ...], list[Buckets]] = {}
        for p in parts:
            for bounds, rows in p.buckets:
                layouts.setdefault(tuple(bounds), []).append(rows)
        buckets = []
        for layout, chunks in layouts.items():
            buckets.append((list(layout), Buckets.sorted_union(chunks)))
        exponential = sorted(
            (r for p in parts for r in p.exponential), key=lambda r: (r.series, r.time)
        )
        return _Rows(numbers, buckets, exponential)

    return finish


# --- answers from rows --------------------------------------------------------------------


def _answer_rows(
    plan: _Plan,
    kind: int,
    series: Sequence[SeriesRow],
    data: _Rows,
    result: Any,
    *,
    source: Sources,
) -> None:
    """As ``_answer``, from rows: the same groups, the same samples out."""
    grid = plan.grid
    by_id = {s.series_id: s for s in series}
    numbers: dict[int, Numbers] = {}
    if len(data.numbers):
        ids = data.numbers.series
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        for lo, hi in zip(starts, [*starts[1:], ids.shape[0]], strict=True):
            numbers[int(ids[lo])] = data.numbers.take(np.arange(lo, hi))
    starts_ns = grid.starts()
    for key, positions in sorted(_groups(plan, series).items()):
        members = [series[p].series_id for p in positions]
        values = _row_group_values(
            plan, kind, members, data, numbers=numbers, by_id=by_id, source=source
        )
        _add_series(result, key, starts_ns, values)


def _row_group_values(
    plan: _Plan,
    kind: int,
    ids: Sequence[int],
    data: _Rows,
    *,
    numbers: dict[int, Numbers],
    by_id: dict[int, SeriesRow],
    source: Sources,
) -> np.ndarray:
    """The group's value per bucket from rows (NaN: none)."""
    grid = plan.grid
    window_start = resolution.align_down(plan.window.start_ns, source.width_ns)
    if plan.aggregation in _QUANTILES:
        q = _QUANTILES[plan.aggregation]
        if kind == MetricType.EXPONENTIAL_HISTOGRAM:
            return _exponential_rows_quantile(
                grid, ids, data, since=source.read_from_ns, window_start=window_start, q=q
            )
        return _explicit_rows_quantile(
            grid, ids, data, since=source.read_from_ns, window_start=window_start, q=q
        )
    if plan.aggregation in _RATES:
        total = np.full(grid.size, np.nan)
        for series_id in ids:
            rows = numbers.get(series_id)
            if rows is None:
                continue
            s = by_id[series_id]
            range_ns = plan.range_ns or aggregate.row_default_range(
                rows, plan.step_ns, source.width_ns
            )
            rate = aggregate.row_increase(
                grid,
                rows,
                range_ns,
                counter=kind in _HISTOGRAMS or kind == MetricType.SUMMARY or bool(s.monotonic),
                delta=s.temporality == _DELTA,
                per_second=_RATES[plan.aggregation],
            )
            total = np.where(np.isnan(total), rate, total + np.nan_to_num(rate))
        return total
    merged = Moments.empty(grid.size)
    for series_id in ids:
        rows = numbers.get(series_id)
        if rows is None:
            continue
        inside = (rows.time >= window_start) & (rows.time < plan.window.end_ns)
        merged = merged.combine(aggregate.row_moments(grid, rows.take(inside)))
    return merged.result(_OVER_TIME[plan.aggregation])


def _explicit_rows_quantile(
    grid: Grid, ids: Sequence[int], data: _Rows, *, since: int, window_start: int, q: float
) -> np.ndarray:
    """Each layout's rows of the group, stepped, merged into the union of their bounds
    (``aggregate.merge_layouts``), then the quantile, as ``_explicit_quantile`` does."""
    found: list[tuple[list[float], np.ndarray]] = []
    wanted = np.asarray(ids, dtype=np.int64)
    for bounds, rows in data.buckets:
        mine = np.isin(rows.chain, wanted)
        if mine.any():
            # (A take copies every bucket matrix: not when the group is every series.)
            steps = aggregate.bucket_steps(
                grid, rows if mine.all() else rows.take(mine), since, window_start
            )
            found.append((bounds, steps))
    if not found:
        return np.full(grid.size, np.nan)
    union, columns = aggregate.merge_layouts([bounds for bounds, _ in found])
    merged = np.zeros((grid.size, len(union) + 1))
    for (_, steps), column in zip(found, columns, strict=True):
        merged[:, column] += steps  # a layout's columns are distinct
    return aggregate.histogram_quantile(q, Layout.explicit(union), merged)


def _exponential_rows_quantile(
    grid: Grid, ids: Sequence[int], data: _Rows, *, since: int, window_start: int, q: float
) -> np.ndarray:
    """The group's rows at the lowest scale among them, stepped, then the quantile, as
    ``_exponential_quantile`` does with points."""
    wanted = set(ids)
    rows = [r for r in data.exponential if r.series in wanted]
    if not rows:
        return np.full(grid.size, np.nan)
    layout, buckets = exponential_buckets(rows)
    steps = aggregate.bucket_steps(grid, buckets, since, window_start)
    threshold = max(r.zero_threshold for r in rows)
    bounds = Layout.exponential(layout.scale, threshold, layout.negative, layout.positive)
    return aggregate.histogram_quantile(q, bounds, steps)
