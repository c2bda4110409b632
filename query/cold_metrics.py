"""Raw metric points of the cold tier, for QueryMetrics, in the shapes the hot ones take.

Raw points stay hot for ``OTLPD_HOT_RETENTION_METRICS`` (2 h) and the rollups answer most
longer ranges (``query.resolution``), but a step no rollup interval divides, a gauge's
percentiles, and ranges older than the rollups are kept need the raw points, which are
then Parquet objects. Each object carries its series' identity and labels with every point
(docs/storage.md), so the series of a query are found in the objects themselves: a series
whose ``metric_series`` row was pruned with its last hot partition is found all the same.

* ``series``: the series of one metric, with the labels ``storage.postgres.metric_reader``
  matches (``service.name``, else the attribute's text, "" when absent), the matchers
  applied as the SQL applies them (regular expressions anchored, as in Prometheus).
* ``points``: their points in a range, as ``NumberPoints``, ``HistogramPoints`` (one per
  series and bucket layout) or ``ExponentialPoint``s, with the conditions of the SQL (a
  number is the value, else the count; staleness markers have neither and are no
  sample).
* ``merged``: hot and cold points of a series as one, in time order, so that what is
  computed over consecutive points (a counter's increase, a cumulative histogram's) is
  computed across the tiers' boundary too.

Each object is read once per call and query part, only its row groups whose time
statistics overlap, only the columns needed, and only the rows of the metric (kept on
the reading thread).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from query.call import QueryCall
from query.cold_logs import attribute_text
from query.coldtier import Read
from storage.cold_reader import overlapping
from storage.postgres import metric_reader as reader
from storage.postgres.cold_manifest import ColdObject
from storage.postgres.metric_reader import (
    ExponentialPoint,
    HistogramPoints,
    Matcher,
    NumberPoints,
    SeriesRow,
)

SIGNAL: Final = "metric_points"
_SERIES: Final = (
    "series_id",
    "metric_name",
    "metric_type",
    "unit",
    "aggregation_temporality",
    "is_monotonic",
    "service_name",
    "attributes",
)
_POINTS: Final = {
    "numbers": ("series_id", "time_unix_nano", "value", "count"),
    "buckets": (
        "series_id",
        "time_unix_nano",
        "start_time_unix_nano",
        "bucket_counts",
        "explicit_bounds",
    ),
    "exponential": (
        "series_id",
        "time_unix_nano",
        "start_time_unix_nano",
        "scale",
        "zero_count",
        "zero_threshold",
        "positive_offset",
        "positive_bucket_counts",
        "negative_offset",
        "negative_bucket_counts",
    ),
}


async def objects(call: QueryCall, lo_ns: int, hi_ns: int) -> list[ColdObject]:
    """The point objects with rows in ``[lo_ns, hi_ns)``; none without a cold tier."""
    if call.cold is None or hi_ns <= lo_ns:
        return []
    return await call.cold.objects(call, SIGNAL, lo_ns, hi_ns)


def _of_metric(name: str, lo_ns: int, hi_ns: int) -> Callable[[pa.Table], pa.Table]:
    """What ``Read.keep`` keeps of a row group: the metric's points in the range."""

    def keep(table: pa.Table) -> pa.Table:
        times = table.column("time").cast(pa.int64())
        mask = pc.and_(
            pc.equal(table.column("metric_name").cast(pa.string()), name),
            pc.and_(pc.greater_equal(times, lo_ns), pc.less(times, hi_ns)),
        )
        return table.filter(pc.fill_null(mask, False))

    return keep


def _reads(
    found: Sequence[ColdObject], name: str, lo_ns: int, hi_ns: int, columns: Sequence[str]
) -> list[Read]:
    """Reads of ``columns`` of the metric's points in ``[lo_ns, hi_ns)``: ``time`` is the
    point's time truncated to microseconds, so the range is widened to whole ones (as the
    SQL's window is) and applied exactly to ``time_unix_nano`` after."""
    low, high = lo_ns // 1000 * 1000, -(-hi_ns // 1000) * 1000

    def choose(metadata: pq.FileMetaData) -> list[int]:
        return overlapping(metadata, low_ns=low, high_ns=high)

    wanted = tuple(dict.fromkeys(("time", "metric_name", *columns)))
    return [
        Read(obj, wanted, choose=choose, keep=_of_metric(name, low, high))
        for obj in found
        if obj.max_ns >= low and obj.min_ns < high
    ]


def _label(row: dict[str, Any], name: str) -> str:
    """A label's value as the SQL reads it: "" when the series lacks it."""
    if name == reader.SERVICE_LABEL:
        return str(row["service_name"] or "")
    attributes = row["attributes"]
    value = attribute_text(attributes.get(name)) if isinstance(attributes, dict) else None
    return value or ""


def _matches(row: dict[str, Any], matchers: Sequence[Matcher]) -> bool:
    for m in matchers:
        value = _label(row, m.name)
        if m.op == reader.EQ and value != m.value:
            return False
        if m.op == reader.NEQ and value == m.value:
            return False
        if m.op in (reader.RE, reader.NRE):
            hit = re.fullmatch(f"(?:{m.value})", value) is not None
            if hit != (m.op == reader.RE):
                return False
    return True


async def series(
    call: QueryCall,
    found: Sequence[ColdObject],
    name: str,
    matchers: Sequence[Matcher],
    *,
    lo_ns: int,
    hi_ns: int,
) -> list[SeriesRow]:
    """The series of metric ``name`` with points in ``[lo_ns, hi_ns)`` in the objects
    ``found`` whose labels satisfy every matcher, by series id."""
    if call.cold is None:
        return []
    reads = _reads(found, name, lo_ns, hi_ns, _SERIES)
    rows: dict[int, dict[str, Any]] = {}
    for table in await call.cold.read(call, reads):
        if not table.num_rows:
            continue
        # A series' identity and labels are the same on each of its points: one row each.
        _, first = np.unique(table.column("series_id").to_numpy(), return_index=True)
        for row in table.take(pa.array(first)).select(list(_SERIES)).to_pylist():
            rows.setdefault(row["series_id"], row)
    out = []
    for series_id in sorted(rows):
        row = rows[series_id]
        row["attributes"] = _json(row["attributes"])
        if not _matches(row, matchers):
            continue
        out.append(
            SeriesRow(
                series_id,
                row["metric_type"],
                row["unit"],
                row["aggregation_temporality"],
                row["is_monotonic"],
                row["service_name"],
                row["attributes"],
            )
        )
    return out


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


async def points(
    call: QueryCall,
    found: Sequence[ColdObject],
    name: str,
    what: str,
    series_ids: Sequence[int],
    *,
    lo_ns: int,
    hi_ns: int,
) -> list[Any]:
    """The points of ``series_ids`` (of metric ``name``) in ``[lo_ns, hi_ns)``: ``what`` is
    "numbers", "buckets" or "exponential", as the hot readers give them."""
    if call.cold is None or not series_ids:
        return []
    wanted = pa.array(list(series_ids), pa.int64())
    tables = []
    for table in await call.cold.read(call, _reads(found, name, lo_ns, hi_ns, _POINTS[what])):
        if table.num_rows:
            mine = pc.fill_null(pc.is_in(table.column("series_id"), wanted), False)
            tables.append(table.select(list(_POINTS[what])).filter(mine))
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return []
    table = pa.concat_tables(tables)
    times = table.column("time_unix_nano").to_numpy(zero_copy_only=False)
    inside = (times >= lo_ns) & (times < hi_ns)
    table = table.filter(pa.array(inside))
    if what == "numbers":
        return _numbers(table)
    if what == "buckets":
        return _histograms(table)
    return _exponential(table)


def _numbers(table: pa.Table) -> list[NumberPoints]:
    values = pc.coalesce(table.column("value"), table.column("count").cast(pa.float64()))
    table = table.append_column("v", values).filter(pc.is_valid(values))
    ids = table.column("series_id").to_numpy()
    times = table.column("time_unix_nano").to_numpy()
    v = table.column("v").to_numpy()
    out = []
    for series_id in np.unique(ids):
        mine = ids == series_id
        out.append(NumberPoints(int(series_id), times[mine], v[mine]))
    return out


def _histograms(table: pa.Table) -> list[HistogramPoints]:
    """One ``HistogramPoints`` per series and bucket layout, as the SQL reads by layout."""
    layouts: dict[tuple[int, tuple[float, ...]], list[int]] = {}
    bounds = table.column("explicit_bounds").to_pylist()
    counts = table.column("bucket_counts").to_pylist()
    ids = table.column("series_id").to_pylist()
    for i, (series_id, layout, buckets) in enumerate(zip(ids, bounds, counts, strict=True)):
        if layout and buckets:  # cardinality(...) > 0 in the SQL
            layouts.setdefault((series_id, tuple(layout)), []).append(i)
    times = table.column("time_unix_nano").to_numpy()
    starts = pc.fill_null(table.column("start_time_unix_nano"), 0).to_numpy()
    out = []
    for (series_id, layout), rows in layouts.items():
        at = np.array(rows, dtype=np.int64)
        out.append(
            HistogramPoints(
                series_id,
                list(layout),
                times[at],
                starts[at],
                np.array([counts[i] for i in rows], dtype=np.int64).reshape(len(rows), -1),
            )
        )
    return out


def _exponential(table: pa.Table) -> list[ExponentialPoint]:
    out = []
    for row in table.to_pylist():
        if row["scale"] is None:
            continue
        out.append(
            ExponentialPoint(
                row["series_id"],
                row["time_unix_nano"],
                row["start_time_unix_nano"] or 0,
                row["scale"],
                row["zero_count"] or 0,
                row["zero_threshold"] or 0.0,
                row["positive_offset"] or 0,
                row["positive_bucket_counts"] or [],
                row["negative_offset"] or 0,
                row["negative_bucket_counts"] or [],
            )
        )
    return out


def merged(what: str, hot: Sequence[Any], cold: Sequence[Any]) -> list[Any]:
    """Hot and cold points as one list in the readers' shapes: a series' numbers (and a
    series' histogram points of one layout) as one item in time order."""
    if not cold:
        return list(hot)
    if what == "exponential":
        return sorted([*hot, *cold], key=lambda p: (p.series_id, p.time_ns))
    if what == "numbers":
        return _merged_numbers([*cold, *hot])
    return _merged_histograms([*cold, *hot])


def _merged_numbers(items: Sequence[NumberPoints]) -> list[Any]:
    by_series: dict[int, list[NumberPoints]] = {}
    for item in items:
        by_series.setdefault(item.series_id, []).append(item)
    out: list[Any] = []
    for series_id, parts in by_series.items():
        times = np.concatenate([p.times for p in parts])
        values = np.concatenate([p.values for p in parts])
        order = np.lexsort((values, times))  # as decode_numbers orders them
        out.append(NumberPoints(series_id, times[order], values[order]))
    return out


def _merged_histograms(items: Sequence[HistogramPoints]) -> list[Any]:
    by_layout: dict[tuple[int, tuple[float, ...]], list[HistogramPoints]] = {}
    for item in items:
        by_layout.setdefault((item.series_id, tuple(item.bounds)), []).append(item)
    out: list[Any] = []
    for (series_id, layout), parts in by_layout.items():
        times = np.concatenate([p.times for p in parts])
        order = np.argsort(times, kind="stable")
        out.append(
            HistogramPoints(
                series_id,
                list(layout),
                times[order],
                np.concatenate([p.starts for p in parts])[order],
                np.concatenate([p.counts for p in parts])[order],
            )
        )
    return out
