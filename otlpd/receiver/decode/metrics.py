"""Metrics to ``storage.model`` series and point rows, for all five kinds of data.

A point row carries no labels: it refers to its series by ``storage.ids.series_id``, and
the series row (name, type, unit, labels, resource, scope) is stored once per project.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from otlpd.receiver.anyvalue import AttributeEncoder, finite, json_text, scalar_text
from otlpd.receiver.decode.checks import (
    MAX_BIGINT,
    MAX_TEMPORALITY,
    ZERO_TRACE_ID,
    bad_enum,
    bad_id,
    hex_or_null,
    nul,
    too_big,
    too_long,
    utf8_size,
)
from otlpd.receiver.decode.state import Records, Run, Scope
from otlpd.receiver.rejections import RecordRejected
from storage.ids import series_id as hash_series_id
from storage.model import SERIES_COLUMNS, MetricType

METRIC_TYPES: Final = {
    "gauge": MetricType.GAUGE,
    "sum": MetricType.SUM,
    "histogram": MetricType.HISTOGRAM,
    "exponential_histogram": MetricType.EXPONENTIAL_HISTOGRAM,
    "summary": MetricType.SUMMARY,
}
_AGGREGATED: Final = frozenset(("sum", "histogram", "exponential_histogram"))
_SERIES_ID_CACHE: Final = 50_000
_FIRST_SEEN: Final = SERIES_COLUMNS.index("first_seen")
# DataPointFlags.FLAG_NO_RECORDED_VALUE: the point marks a series that stopped (a
# staleness marker, as Prometheus's stale NaN); its value fields mean nothing.
FLAG_NO_RECORDED_VALUE: Final = 1


@dataclass(frozen=True, slots=True)
class _Metric:
    """What the points of one metric share."""

    position: tuple[int, int, int, str]  # resource, scope and metric index, metric name
    identity: str  # the series identity but project and point attributes, as JSON text
    head: tuple[Any, ...]  # series row columns from metric_name to service_name
    tail: tuple[Any, ...]  # series row columns from resource to metadata
    extra: tuple[Any, ...]  # series row columns after first_seen
    values: Callable[[Any], tuple[Any, ...]]  # point row columns from value to quantiles
    with_exemplars: bool  # a summary's points have none


def metric_where(i: int, j: int, k: int, name: str) -> str:
    """Where a metric is in its request, for rejection messages."""
    return f"resource {i}, scope {j}, metric {k} ({name[:64]!r})"


def decode_metrics(run: Run, scope: Scope, i: int, j: int, metrics: Records) -> None:
    """Appends the series and point rows of one scope's metrics to ``run``."""
    shared = run.shared
    resource = scope.resource
    max_name = shared.limits.max_metric_name_bytes
    for k, metric in metrics:
        name = metric.name
        kind = metric.WhichOneof("data")
        if kind is None:
            where = metric_where(i, j, k, name)
            run.rejections.warn(f"metric has no data of a known kind ({where})")
            continue
        data = getattr(metric, kind)
        points = data.data_points
        if not points:
            continue
        try:
            unit = metric.unit
            description = metric.description
            if "\x00" in name or "\x00" in unit or "\x00" in description:
                raise nul("metric name, unit or description")
            size = utf8_size(name, max_name)
            if size:
                raise too_long("metric name", size, max_name)
            temporality = None
            if kind in _AGGREGATED:
                temporality = data.aggregation_temporality
                if not 0 <= temporality <= MAX_TEMPORALITY:
                    raise bad_enum("aggregation_temporality", temporality, MAX_TEMPORALITY)
            monotonic = data.is_monotonic if kind == "sum" else None
            metadata = None
            if metric.metadata:
                metadata = run.attributes.encode_sorted(metric.metadata)[0]
        except RecordRejected as e:
            run.rejections.add(e, metric_where(i, j, k, name), len(points))
            continue
        metric_type = METRIC_TYPES[kind]
        identity: list[Any] = [
            name,
            metric_type,
            unit,
            temporality,
            monotonic,
            resource.json,
            scope.name,
            scope.version,
        ]
        if scope.attributes or scope.schema_url or resource.schema_url:
            # Identifying (the OTel data model), appended only when present so that
            # series without them keep their ids (storage.ids).
            identity += [scope.attributes, scope.schema_url, resource.schema_url]
        info = _Metric(
            position=(i, j, k, name),
            # Interned so that the series id cache keeps one copy per metric.
            identity=sys.intern(json_text(identity)),
            head=(
                name,
                metric_type,
                unit or None,
                description or None,
                temporality,
                monotonic,
                resource.service,
            ),
            tail=(resource.json, scope.name, scope.version, metadata),
            extra=(
                resource.schema_url,
                resource.dropped_attributes_count,
                scope.attributes,
                scope.schema_url,
                scope.dropped_attributes_count,
            ),
            values=_POINT_VALUES[kind],
            with_exemplars=kind != "summary",
        )
        _points(run, scope, info, points)


def _points(run: Run, scope: Scope, metric: _Metric, points: Any) -> None:
    shared = run.shared
    identity = metric.identity
    head = metric.head
    tail = metric.tail
    extra = metric.extra
    values = metric.values
    with_exemplars = metric.with_exemplars
    append = run.batch.points.append
    series_rows = run.batch.series
    complete = run.completion.complete
    encode = run.attributes.encode_sorted
    series_ids = shared.series_ids
    lo = run.lo
    hi = run.hi
    service = scope.resource.service
    envelope = scope.envelope
    default_project = shared.default_project
    for p, point in enumerate(points):
        try:
            time = point.time_unix_nano
            if time < lo or time > hi:
                raise run.bad_time("time_unix_nano", time)
            start = point.start_time_unix_nano
            if start > time:
                raise RecordRejected(
                    "start after time",
                    f"start_time_unix_nano {start} is after time_unix_nano {time}",
                )
            attributes, found = encode(point.attributes)
            exemplars = point.exemplars if with_exemplars else None
            trace_id = span_id = exemplars_json = None
            if exemplars:
                exemplars_json, trace_id, span_id = _exemplars(run.attributes, exemplars)
            flags = point.flags
            kind_values = _BLANK if flags & FLAG_NO_RECORDED_VALUE else values(point)
            project, session, user = envelope(found, complete, time, default_project)
            series_id = series_ids.get((project, attributes, identity))
            if series_id is None:
                series_id = hash_series_id(project, attributes, identity)
                if len(series_ids) >= _SERIES_ID_CACHE:
                    series_ids.clear()
                series_ids[project, attributes, identity] = series_id
            key = (project, series_id)
            known = series_rows.get(key)
            if known is None or time < known[_FIRST_SEEN]:
                series_rows[key] = (project, series_id, *head, attributes, *tail, time, *extra)
            append(
                (
                    project,
                    time,
                    time,
                    start,
                    series_id,
                    service,
                    trace_id,
                    span_id,
                    session,
                    user,
                    flags,
                    *kind_values,
                    exemplars_json,
                )
            )
        except RecordRejected as e:
            run.rejections.add(e, f"{metric_where(*metric.position)}, point {p}")


def _exemplars(encoder: AttributeEncoder, exemplars: Any) -> tuple[str, bytes | None, bytes | None]:
    """The exemplars as JSON, and the ids of the first one that has a trace id."""
    encode = encoder.encode
    first_trace_id = first_span_id = None
    parts = []
    for exemplar in exemplars:
        trace_id = exemplar.trace_id
        if trace_id:
            if len(trace_id) != 16:
                raise bad_id("exemplar trace_id", trace_id, 16, optional=True)
            if trace_id == ZERO_TRACE_ID:
                trace_id = b""
        span_id = exemplar.span_id
        if span_id and len(span_id) != 8:
            raise bad_id("exemplar span_id", span_id, 8, optional=True)
        if trace_id and first_trace_id is None:
            first_trace_id = trace_id
            first_span_id = span_id or None
        which = exemplar.WhichOneof("value")
        if which == "as_int":
            value = str(exemplar.as_int)
        elif which == "as_double":
            value = scalar_text(finite(exemplar.as_double))
        else:
            value = "null"
        attributes = encode(exemplar.filtered_attributes)[0]
        parts.append(
            f'{{"time_unix_nano":{exemplar.time_unix_nano},"value":{value},'
            f'"trace_id":{hex_or_null(trace_id)},"span_id":{hex_or_null(span_id)},'
            f'"filtered_attributes":{attributes}}}'
        )
    return f"[{','.join(parts)}]", first_trace_id, first_span_id


# The kind-specific columns of a point row, from ``value`` to ``quantiles``.


def _number_values(point: Any) -> tuple[Any, ...]:
    which = point.WhichOneof("value")
    if which == "as_double":
        value, value_int = point.as_double, None
    elif which == "as_int":
        value_int = point.as_int
        value = float(value_int)
    else:
        value = value_int = None
    return (value, value_int, *_NONE_14)


def _histogram_values(point: Any) -> tuple[Any, ...]:
    bucket_counts = list(point.bucket_counts)
    bounds = list(point.explicit_bounds)
    if len(bucket_counts) != len(bounds) + 1 and (bucket_counts or bounds):
        raise RecordRejected(
            "invalid buckets",
            f"{len(bucket_counts)} bucket_counts for {len(bounds)} explicit_bounds "
            "(must be one more, or both empty)",
        )
    count = point.count
    if count > MAX_BIGINT:
        raise too_big("count", count)
    if bucket_counts and max(bucket_counts) > MAX_BIGINT:
        raise too_big("a bucket count", max(bucket_counts))
    return (
        None,
        None,
        count,
        point.sum if point.HasField("sum") else None,
        point.min if point.HasField("min") else None,
        point.max if point.HasField("max") else None,
        bucket_counts,
        bounds,
        *_NONE_8,
    )


def _exponential_values(point: Any) -> tuple[Any, ...]:
    positive = point.positive
    negative = point.negative
    count = point.count
    zero_count = point.zero_count
    positive_counts = list(positive.bucket_counts)
    negative_counts = list(negative.bucket_counts)
    if count | zero_count > MAX_BIGINT:
        raise too_big("count or zero_count", max(count, zero_count))
    largest = max(positive_counts + negative_counts, default=0)
    if largest > MAX_BIGINT:
        raise too_big("a bucket count", largest)
    return (
        None,
        None,
        count,
        point.sum if point.HasField("sum") else None,
        point.min if point.HasField("min") else None,
        point.max if point.HasField("max") else None,
        None,
        None,
        point.scale,
        zero_count,
        point.zero_threshold,
        positive.offset,
        positive_counts,
        negative.offset,
        negative_counts,
        None,
    )


def _summary_values(point: Any) -> tuple[Any, ...]:
    count = point.count
    if count > MAX_BIGINT:
        raise too_big("count", count)
    quantiles = json_text([[finite(q.quantile), finite(q.value)] for q in point.quantile_values])
    return (None, None, count, point.sum, *_NONE_11, quantiles)


_NONE_8: Final = (None,) * 8
_NONE_11: Final = (None,) * 11
_NONE_14: Final = (None,) * 14
_BLANK: Final = (None,) * 16  # value .. quantiles, all null: no recorded value
_POINT_VALUES: Final[dict[str, Callable[[Any], tuple[Any, ...]]]] = {
    "gauge": _number_values,
    "sum": _number_values,
    "histogram": _histogram_values,
    "exponential_histogram": _exponential_values,
    "summary": _summary_values,
}
