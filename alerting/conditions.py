"""A rule's query, run at evaluation times: one value per series per evaluation.

Each kind of condition is a query-service query, run in-process through a ``QueryCall``
on a read pool, built from the rule's structured fields (no rule text becomes SQL):

* ``metric``: ``MetricQueries.at`` (QueryMetrics' own reads and arithmetic) over the
  window that ends at the evaluation time, one series per ``group_by`` combination.
* ``logs``: the number of records the SearchLogs filter matches in the window (the
  conditions SearchLogs and GetLogVolume use), per group; without ``group_by`` one series
  whose count may be 0, so ``< 1`` alerts on silence.
* ``spans``: error ratio or latency quantile of requests over the window, from the RED
  rollups for whole minutes they hold and from the spans for the rest
  (``storage.postgres.alert_reader``).
* ``slo``: the SRE workbook's multiwindow, multi-burn-rate alerts; each burn-rate alert
  is a series of its own, labelled ``severity`` (page, ticket) and ``window`` (its long
  window: 1h, 6h, 3d), valued by its long window's burn rate, holding when both of its
  windows burn faster than its factor.

``Condition.at(call, times)`` answers several evaluation times at once (a backtest) with
the same reads a live evaluation makes for one, so the two cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

import numpy as np

from alerting import convert
from alerting.proto import pb
from query import buckets
from query.call import QueryCall
from query.logs import SEVERITY_RANGES, log_filter
from query.metrics import MetricQueries
from query.proto import pb as query_pb
from query.settings import QuerySettings
from storage.postgres import alert_reader
from storage.postgres.alert_reader import SpanSelection, Window
from storage.postgres.partitions import micros_from_datetime, ns_from_datetime
from storage.postgres.rollups import SUB_BUCKETS

DAY_S: Final = 86400.0
# SRE workbook, "Alerting on SLOs", table 5-8: (severity, long, short, budget fraction
# spent in the long window). With a 30-day period the factors are 14.4, 6 and 1.
BURN_ALERTS: Final = (
    ("page", 3600.0, 300.0, 0.02),
    ("page", 6 * 3600.0, 1800.0, 0.05),
    ("ticket", 3 * DAY_S, 6 * 3600.0, 0.10),
)
_SEVERITY_NAMES: Final = dict(SEVERITY_RANGES)
_METRICS: Final = MetricQueries(QuerySettings())


@dataclass(frozen=True, slots=True)
class Sample:
    """One series' value at one evaluation. ``holds`` is set by conditions that decide
    for themselves (SLO burn rates); None: compare ``value`` with the rule's threshold."""

    labels: dict[str, str]
    value: float
    holds: bool | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """The query's answer at one evaluation time."""

    samples: list[Sample] = field(default_factory=list)
    error: str | None = None


class Condition(Protocol):
    """A rule's query."""

    @property
    def window_s(self) -> float:
        """The longest window it reads back from an evaluation time."""
        ...

    async def at(self, call: QueryCall, times: Sequence[datetime]) -> list[Answer]:
        """The answer at each of ``times`` (aware, UTC), in order."""
        ...

    def absent_labels(self) -> dict[str, str]:
        """The labels of ``ABSENT``'s one series when nothing at all is answered: the
        query's equalities (as Prometheus' ``absent()`` takes them from its selector)."""
        ...


@dataclass(frozen=True, slots=True)
class MetricRule:
    condition: pb.MetricCondition

    @property
    def window_s(self) -> float:
        return convert.seconds(self.condition.window)

    def query(self) -> query_pb.MetricQuery:
        c = self.condition
        return query_pb.MetricQuery(
            metric_name=c.metric_name,
            matchers=c.matchers,
            aggregation=c.aggregation,
            group_by=c.group_by,
        )

    async def at(self, call: QueryCall, times: Sequence[datetime]) -> list[Answer]:
        window_ns = round(self.window_s * 1e9)
        query = self.query()
        found = await _METRICS.at(call, [(query, ns_from_datetime(t), window_ns) for t in times])
        return [Answer([Sample(labels, value) for labels, value in series]) for series in found]

    def absent_labels(self) -> dict[str, str]:
        return {
            m.name: m.value
            for m in self.condition.matchers
            if m.op == query_pb.LabelMatcher.OP_EQ and m.value
        }


async def metric_answers(
    call: QueryCall, asked: Sequence[tuple[MetricRule, datetime]]
) -> list[Answer]:
    """Several metric rules of one project, each at its time, in one QueryMetrics read
    (two round trips): what the evaluator does with the metric rules of a round."""
    instants = [
        (rule.query(), ns_from_datetime(t), round(rule.window_s * 1e9)) for rule, t in asked
    ]
    found = await _METRICS.at(call, instants)
    return [Answer([Sample(labels, value) for labels, value in series]) for series in found]


@dataclass(frozen=True, slots=True)
class LogRule:
    condition: pb.LogCondition
    project: str

    @property
    def window_s(self) -> float:
        return convert.seconds(self.condition.window)

    def _window_us(self, t: datetime) -> tuple[int, int]:
        end = micros_from_datetime(t)
        return end - round(self.window_s * 1e6), end

    async def at(self, call: QueryCall, times: Sequence[datetime]) -> list[Answer]:
        flt = log_filter(self.project, self.condition.filter)
        group_by = list(self.condition.group_by)
        statements = []
        for t in times:
            start, end = self._window_us(t)
            statements.append(
                alert_reader.log_counts(flt, start_us=start, end_us=end, group_by=group_by)
            )
        answers = []
        for rows in await call.fetch_many(statements):
            samples = []
            for row in rows:
                count = int(row[-1])
                if group_by and count == 0:
                    continue
                labels = {
                    label: _group_label(label, str(value))
                    for label, value in zip(group_by, row[:-1], strict=True)
                }
                samples.append(Sample({k: v for k, v in labels.items() if v}, float(count)))
            answers.append(Answer(samples))
        return answers

    async def examples(
        self, call: QueryCall, t: datetime, labels: Mapping[str, str]
    ) -> list[dict[str, str]]:
        """The newest matching records of the series ``labels`` (an alert's labels) in
        the window that ends at ``t``: what a notification quotes."""
        flt = log_filter(self.project, self.condition.filter)
        group = [(g, _group_value(g, labels.get(g, ""))) for g in self.condition.group_by]
        start, end = self._window_us(t)
        rows = await call.fetch(
            *alert_reader.log_examples(
                flt, start_us=start, end_us=end, group=group, limit=self.condition.examples
            )
        )
        return [
            {
                "time": moment.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "severity": severity,
                "service": service,
                "body": body or "",
            }
            for moment, severity, service, body in rows
        ]

    def absent_labels(self) -> dict[str, str]:
        service = self.condition.filter.service
        return {alert_reader.SERVICE_LABEL: service} if service else {}


def _group_label(label: str, value: str) -> str:
    """A group's value as its label shows it: a severity range by its name."""
    if label == alert_reader.SEVERITY_LABEL:
        return _SEVERITY_NAMES.get(int(value), value)
    return value


def _group_value(label: str, shown: str) -> str:
    """``_group_label`` backwards: the value SQL compares."""
    if label == alert_reader.SEVERITY_LABEL:
        for number, name in SEVERITY_RANGES:
            if name == shown:
                return str(number)
    return shown


def _span_labels(group_by: Sequence[str], service: str, operation: str) -> tuple[str, ...]:
    values = {alert_reader.SERVICE_LABEL: service, alert_reader.SPAN_NAME_LABEL: operation}
    return tuple(values[g] for g in group_by)


@dataclass(frozen=True, slots=True)
class SpanRule:
    condition: pb.SpanCondition
    project: str

    @property
    def window_s(self) -> float:
        return convert.seconds(self.condition.window)

    def selection(self) -> SpanSelection:
        c = self.condition
        kinds = (c.span_kind,) if c.span_kind else ()
        return SpanSelection(self.project, c.service, c.operation, kinds)

    async def at(self, call: QueryCall, times: Sequence[datetime]) -> list[Answer]:
        c = self.condition
        window = timedelta(seconds=self.window_s)
        windows = [Window(i, t - window, t) for i, t in enumerate(times)]
        group_by = list(c.group_by)
        per: list[dict[tuple[str, ...], Any]] = [{} for _ in times]
        if c.measure == pb.SpanCondition.LATENCY:
            rows = await call.fetch(*alert_reader.span_buckets(self.selection(), windows))
            for key, service, operation, bucket, n in rows:
                group = _span_labels(group_by, service, operation)
                histogram = per[key].setdefault(group, np.zeros(buckets.N_BUCKETS, np.int64))
                histogram[min(max(int(bucket), 0), buckets.N_BUCKETS - 1)] += int(n)
        else:
            rows = await call.fetch(*alert_reader.span_counts(self.selection(), windows))
            for key, service, operation, requests, errors, _ in rows:
                group = _span_labels(group_by, service, operation)
                totals = per[key].setdefault(group, [0, 0])
                totals[0] += int(requests)
                totals[1] += int(errors)
        answers = []
        for groups in per:
            samples = []
            for group, found in sorted(groups.items()):
                labels = {k: v for k, v in zip(group_by, group, strict=True) if v}
                if c.measure == pb.SpanCondition.LATENCY:
                    if found.sum() == 0:
                        continue
                    ns = buckets.percentiles(found[None, :], (c.quantile,))[0, 0]
                    samples.append(Sample(labels, float(ns) / 1e9))
                elif found[0] > 0:
                    samples.append(Sample(labels, found[1] / found[0]))
            answers.append(Answer(samples))
        return answers

    def absent_labels(self) -> dict[str, str]:
        c = self.condition
        labels = {}
        if c.service:
            labels[alert_reader.SERVICE_LABEL] = c.service
        if c.operation:
            labels[alert_reader.SPAN_NAME_LABEL] = c.operation
        return labels


def _slow_bucket(threshold_s: float) -> int:
    """The first duration bucket wholly above ``threshold_s``: requests from it on are
    slow. The bucket that holds the threshold counts as fast (at most 9% off, the
    rollups' precision)."""
    ns = max(threshold_s * 1e9, 1.0)
    return math.floor(math.log2(ns) * SUB_BUCKETS) + 1


def _windows_s() -> list[float]:
    return sorted({w for _, long, short, _ in BURN_ALERTS for w in (long, short)})


@dataclass(frozen=True, slots=True)
class SloRule:
    condition: pb.SloCondition
    project: str

    @property
    def window_s(self) -> float:
        return max(_windows_s())

    @property
    def budget(self) -> float:
        return 1.0 - self.condition.objective

    def factor(self, long_s: float, fraction: float) -> float:
        """The burn rate that spends ``fraction`` of the period's budget in ``long_s``:
        14.4 for 2% in 1 h of 30 days (SRE workbook)."""
        return fraction * convert.seconds(self.condition.period) / long_s

    async def _bad_and_total(
        self, call: QueryCall, times: Sequence[datetime]
    ) -> list[dict[float, tuple[float, float]]]:
        """Per time, per window (seconds): (bad events, events)."""
        sizes = _windows_s()
        out: list[dict[float, tuple[float, float]]] = [{} for _ in times]
        if self.condition.WhichOneof("events") == "spans":
            spans = self.condition.spans
            selection = SpanSelection(self.project, spans.service, spans.operation)
            windows = [
                Window(i * len(sizes) + j, t - timedelta(seconds=w), t)
                for i, t in enumerate(times)
                for j, w in enumerate(sizes)
            ]
            slow = None
            if spans.HasField("latency_threshold"):
                slow = _slow_bucket(convert.seconds(spans.latency_threshold))
            totals: dict[int, list[int]] = {}
            rows = await call.fetch(*alert_reader.span_counts(selection, windows, slow_bucket=slow))
            for key, _, _, requests, errors, slow_requests in rows:
                found = totals.setdefault(key, [0, 0, 0])
                found[0] += int(requests)
                found[1] += int(errors)
                found[2] += int(slow_requests)
            for i in range(len(times)):
                for j, w in enumerate(sizes):
                    requests, errors, slow_requests = totals.get(i * len(sizes) + j, [0, 0, 0])
                    # The rollups do not say which slow requests failed: one that did
                    # counts once, as bad, however it was bad (capped at the requests).
                    out[i][w] = (float(min(requests, errors + slow_requests)), float(requests))
            return out
        metrics = self.condition.metrics
        instants = []
        for t in times:
            for w in sizes:
                for q in (metrics.good, metrics.total):
                    increase = query_pb.MetricQuery(
                        metric_name=q.metric_name,
                        matchers=q.matchers,
                        aggregation=query_pb.AGGREGATION_INCREASE,
                    )
                    instants.append((increase, ns_from_datetime(t), round(w * 1e9)))
        values = iter(await _METRICS.at(call, instants))
        for i in range(len(times)):
            for w in sizes:
                good = sum(v for _, v in next(values))
                total = sum(v for _, v in next(values))
                out[i][w] = (max(0.0, total - good), total)
        return out

    async def at(self, call: QueryCall, times: Sequence[datetime]) -> list[Answer]:
        answers = []
        for counts in await self._bad_and_total(call, times):

            def burn(w: float, counts: dict[float, tuple[float, float]] = counts) -> float:
                bad, total = counts[w]
                return (bad / total) / self.budget if total > 0 else 0.0

            samples = []
            for severity, long_s, short_s, fraction in BURN_ALERTS:
                factor = self.factor(long_s, fraction)
                long_burn, short_burn = burn(long_s), burn(short_s)
                labels = {"severity": severity, "window": _window_name(long_s)}
                holds = long_burn > factor and short_burn > factor
                samples.append(Sample(labels, long_burn, holds))
            answers.append(Answer(samples))
        return answers

    def absent_labels(self) -> dict[str, str]:
        return {}


def _window_name(seconds: float) -> str:
    if seconds % DAY_S == 0:
        return f"{int(seconds // DAY_S)}d"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 60)}m"


def of(rule: pb.Rule, project: str) -> Condition:
    """The condition of a stored (validated, defaults filled in) rule."""
    kind = rule.WhichOneof("condition")
    if kind == "metric":
        return MetricRule(rule.metric)
    if kind == "logs":
        return LogRule(rule.logs, project)
    if kind == "spans":
        return SpanRule(rule.spans, project)
    return SloRule(rule.slo, project)
