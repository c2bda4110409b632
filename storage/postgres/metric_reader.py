"""How the query side reads metrics: series by name and label matchers, their points as
numpy arrays, and the catalog of metric names.

Points come back one row per series, not per point: each column aggregated in time
order with ``array_agg`` and sent as ``array_send`` bytes (PostgreSQL's binary array
format), which ``binary_array`` turns into a numpy array with one ``np.frombuffer``.
psycopg's own int8[]/float8[] loaders build a Python list per array, a Python object
per element: 100 series x 1,440 points x 12 buckets is 1.7M objects. Sending bytea
needs no change to the read pool's connections or loaders.

Statements are built from fixed fragments; every value a request carries (names, label
values, regular expressions, times) is a parameter.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

import numpy as np
from psycopg import sql

from storage.postgres.partitions import datetime_from_ns, ns_from_datetime
from storage.rollup_rows import (
    Buckets,
    ExponentialRow,
    ExponentialState,
    Numbers,
    chain_time_order,
)

# Label matcher operators, as Prometheus writes them.
EQ: Final = "="
NEQ: Final = "!="
RE: Final = "=~"
NRE: Final = "!~"

SERVICE_LABEL: Final = "service.name"


class Matcher(NamedTuple):
    name: str
    op: str
    value: str


class SeriesRow(NamedTuple):
    """One row of ``series_statement``."""

    series_id: int
    metric_type: int
    unit: str | None
    temporality: int | None  # 1 delta, 2 cumulative
    monotonic: bool | None
    service_name: str | None
    attributes: dict[str, Any] | None


class NumberPoints(NamedTuple):
    """One series' samples: ascending nanosecond times and their float values."""

    series_id: int
    times: np.ndarray
    values: np.ndarray


class HistogramPoints(NamedTuple):
    """One series' explicit-bucket histogram points of one bucket layout."""

    series_id: int
    bounds: list[float]
    times: np.ndarray
    starts: np.ndarray
    counts: np.ndarray  # (points, len(bounds) + 1)


class ExponentialPoint(NamedTuple):
    series_id: int
    time_ns: int
    start_ns: int
    scale: int
    zero_count: int
    zero_threshold: float
    positive_offset: int
    positive_counts: list[int]
    negative_offset: int
    negative_counts: list[int]


def _label(name: str) -> tuple[sql.Composable, list[Any]]:
    """A label's value as SQL, "" when the series lacks it (as in Prometheus)."""
    if name == SERVICE_LABEL:
        return sql.SQL("coalesce(service_name, '')"), []
    return sql.SQL("coalesce(attributes ->> %s, '')"), [name]


_OPS: Final = {
    EQ: sql.SQL("{} = %s"),
    NEQ: sql.SQL("{} <> %s"),
    # Anchored at both ends, as Prometheus anchors its matchers.
    RE: sql.SQL("{} ~ ('^(?:' || %s || ')$')"),
    NRE: sql.SQL("{} !~ ('^(?:' || %s || ')$')"),
}


def series_statement(
    project: str, metric_name: str, matchers: Sequence[Matcher], limit: int
) -> tuple[sql.Composed, list[Any]]:
    """The series of one metric whose labels satisfy every matcher, at most ``limit``."""
    conditions: list[sql.Composable] = [sql.SQL("project_id = %s AND metric_name = %s")]
    params: list[Any] = [project, metric_name]
    for matcher in matchers:
        label, label_params = _label(matcher.name)
        conditions.append(_OPS[matcher.op].format(label))
        params += [*label_params, matcher.value]
    params.append(limit)
    query = sql.SQL(
        "SELECT series_id, metric_type, unit, aggregation_temporality, is_monotonic, "
        "service_name, attributes FROM metric_series WHERE {} ORDER BY series_id LIMIT %s"
    ).format(sql.SQL(" AND ").join(conditions))
    return query, params


def decode_series(rows: Sequence[Any]) -> list[SeriesRow]:
    return [SeriesRow(*row) for row in rows]


def _window(lo_ns: int, hi_ns: int) -> list[datetime]:
    # ``time`` is time_unix_nano truncated to microseconds: the bounds are widened to
    # whole microseconds here and the nanosecond bounds applied to the arrays after.
    return [datetime_from_ns(lo_ns), datetime_from_ns(-(-hi_ns // 1000) * 1000)]


# A point whose flags have bit 1 set (FLAG_NO_RECORDED_VALUE, a staleness marker) has
# null value columns; it is no sample, so the IS NOT NULL conditions skip it.
#
# No ORDER BY inside the aggregates: PostgreSQL sorts each ordered aggregate's input on
# its own, and sorting 144k rows of bucket arrays per aggregate was most of the cost of a
# 24-hour query (measured: ~400 ms of ~550 ms for 100 series at one point per minute).
# The decoders sort each series by time with numpy instead, and POINTS_SETTINGS has the
# planner hash the groups rather than sort the rows (its row estimate over many
# partitions is far too low, so it picks a sort that spills to disk). Parallel workers
# (forced with parallel_setup_cost = 0 and friends) were tried: with one client a day of
# 100 histogram series took 314-351 ms against 344-357 ms without, with four clients in
# parallel 4.5 calls/s against 4.9 (two cores, shared with the clients): not kept.
POINTS_SETTINGS: Final = ("SET LOCAL enable_sort = off",)

_NUMBERS: Final = (
    "SELECT series_id, array_send(array_agg(time_unix_nano)), array_send(array_agg(v)) "
    "FROM (SELECT series_id, time_unix_nano, coalesce(value, count::float8) AS v "
    "FROM metric_points WHERE project_id = %s AND series_id = ANY(%s) "
    "AND time >= %s AND time < %s) p "
    "WHERE v IS NOT NULL GROUP BY series_id"
)

# One row per series and bucket count; ``min = max`` of the bounds tells whether the
# series kept one bucket layout over the range (nearly always). A series that changed its
# bounds is read again by layout (_HISTOGRAMS_BY_LAYOUT), which costs a sort.
_HISTOGRAMS: Final = (
    "SELECT series_id, min(explicit_bounds) = max(explicit_bounds), max(explicit_bounds), "
    "array_send(array_agg(time_unix_nano)), "
    "array_send(array_agg(coalesce(start_time_unix_nano, 0))), "
    "array_send(array_agg(bucket_counts)) "
    "FROM metric_points WHERE project_id = %s AND series_id = ANY(%s) "
    "AND time >= %s AND time < %s "
    "AND cardinality(bucket_counts) > 0 AND cardinality(explicit_bounds) > 0 "
    "GROUP BY series_id, cardinality(bucket_counts)"
)

_HISTOGRAMS_BY_LAYOUT: Final = (
    "SELECT series_id, true, explicit_bounds, "
    "array_send(array_agg(time_unix_nano)), "
    "array_send(array_agg(coalesce(start_time_unix_nano, 0))), "
    "array_send(array_agg(bucket_counts)) "
    "FROM metric_points WHERE project_id = %s AND series_id = ANY(%s) "
    "AND time >= %s AND time < %s "
    "AND cardinality(bucket_counts) > 0 AND cardinality(explicit_bounds) > 0 "
    "GROUP BY series_id, explicit_bounds"
)

_EXPONENTIAL: Final = (
    "SELECT series_id, time_unix_nano, coalesce(start_time_unix_nano, 0), scale, "
    "coalesce(zero_count, 0), coalesce(zero_threshold, 0), coalesce(positive_offset, 0), "
    "coalesce(positive_bucket_counts, '{}'), coalesce(negative_offset, 0), "
    "coalesce(negative_bucket_counts, '{}') "
    "FROM metric_points WHERE project_id = %s AND series_id = ANY(%s) "
    "AND time >= %s AND time < %s AND scale IS NOT NULL "
    "ORDER BY series_id, time_unix_nano"
)


def number_points_statement(
    project: str, series_ids: Sequence[int], lo_ns: int, hi_ns: int
) -> tuple[str, list[Any]]:
    """Gauge and sum values (a histogram's or summary's count) of the series in
    ``[lo_ns, hi_ns)``, one row per series."""
    return _NUMBERS, [project, list(series_ids), *_window(lo_ns, hi_ns)]


def histogram_points_statement(
    project: str, series_ids: Sequence[int], lo_ns: int, hi_ns: int
) -> tuple[str, list[Any]]:
    """Explicit-bucket histogram points, one row per series and bucket count; a row
    whose layout flag is false must be read again with ``by_layout``."""
    return _HISTOGRAMS, [project, list(series_ids), *_window(lo_ns, hi_ns)]


def histogram_points_by_layout_statement(
    project: str, series_ids: Sequence[int], lo_ns: int, hi_ns: int
) -> tuple[str, list[Any]]:
    """Like ``histogram_points_statement``, one row per series and exact bucket layout."""
    return _HISTOGRAMS_BY_LAYOUT, [project, list(series_ids), *_window(lo_ns, hi_ns)]


def exponential_points_statement(
    project: str, series_ids: Sequence[int], lo_ns: int, hi_ns: int
) -> tuple[str, list[Any]]:
    """Exponential histogram points, one row per point: their bucket arrays differ in
    length from point to point, so they do not stack into one 2-D array."""
    return _EXPONENTIAL, [project, list(series_ids), *_window(lo_ns, hi_ns)]


_HEADER = struct.Struct(">iiI")
_INT8_OID: Final = 20
_FLOAT8_OID: Final = 701
_TIMESTAMPTZ_OID: Final = 1184
_ELEMENT = {
    _INT8_OID: np.dtype([("length", ">i4"), ("value", ">i8")]),
    _FLOAT8_OID: np.dtype([("length", ">i4"), ("value", ">f8")]),
    # Binary timestamptz is int8 microseconds since 2000-01-01 UTC.
    _TIMESTAMPTZ_OID: np.dtype([("length", ">i4"), ("value", ">i8")]),
}
_PG_EPOCH_NS: Final = 946_684_800 * 10**9


def _unix_ns(pg_us: np.ndarray) -> np.ndarray:
    """Binary timestamptz values (int8 microseconds since 2000-01-01 UTC) as int64
    nanoseconds since the Unix epoch."""
    return pg_us * 1000 + _PG_EPOCH_NS


def binary_array(data: bytes | None) -> np.ndarray:
    """An int8[], float8[] or timestamptz[] in PostgreSQL's binary format (``array_send``)
    as a numpy array of its shape; timestamps become int64 nanoseconds since the Unix
    epoch, and a NULL (an aggregate over no rows) an empty int64 array.

    The format (src/backend/utils/adt/arrayfuncs.c, array_send): int4 ndim, int4 has-null
    flag, int4 element type oid, then per dimension int4 size and int4 lower bound, then
    each element as int4 length and its big-endian bytes. Without nulls every element is
    the same 12 bytes, so the elements are one structured array.
    """
    if data is None:
        return np.empty(0, dtype=np.int64)
    ndim, has_null, oid = _HEADER.unpack_from(data)
    if ndim == 0:
        return np.empty(0, dtype=np.float64 if oid == _FLOAT8_OID else np.int64)
    if has_null or oid not in _ELEMENT:
        raise ValueError(f"not a null-free int8[]/float8[] (oid {oid}, nulls {has_null})")
    dims = struct.unpack_from(f">{2 * ndim}i", data, _HEADER.size)
    shape = tuple(dims[0::2])
    elements = np.frombuffer(
        data, dtype=_ELEMENT[oid], count=int(np.prod(shape)), offset=_HEADER.size + 8 * ndim
    )
    values = elements["value"].astype(elements["value"].dtype.newbyteorder("="))
    if oid == _TIMESTAMPTZ_OID:
        values = _unix_ns(values)
    return values.reshape(shape)


def _in_window(times: np.ndarray, lo_ns: int, hi_ns: int) -> np.ndarray:
    return (times >= lo_ns) & (times < hi_ns)


def decode_numbers(rows: Sequence[Any], lo_ns: int, hi_ns: int) -> list[NumberPoints]:
    out = []
    for series_id, times_bytes, values_bytes in rows:
        times = binary_array(times_bytes)
        values = binary_array(values_bytes)
        order = np.lexsort((values, times))  # by time, then value: deterministic ties
        times, values = times[order], values[order]
        keep = _in_window(times, lo_ns, hi_ns)
        out.append(NumberPoints(series_id, times[keep], values[keep]))
    return out


class MixedLayouts(Exception):
    """Some series changed bucket layout in the range: read them by layout."""

    def __init__(self, series_ids: list[int]) -> None:
        super().__init__(f"{len(series_ids)} series changed bucket layout")
        self.series_ids = series_ids


def decode_histograms(rows: Sequence[Any], lo_ns: int, hi_ns: int) -> list[HistogramPoints]:
    """Raises ``MixedLayouts`` for rows of series whose bounds changed within a row."""
    mixed = sorted({row[0] for row in rows if not row[1]})
    if mixed:
        raise MixedLayouts(mixed)
    out = []
    for series_id, _, bounds, times_bytes, starts_bytes, counts_bytes in rows:
        times = binary_array(times_bytes)
        order = np.argsort(times, kind="stable")
        times = times[order]
        keep = _in_window(times, lo_ns, hi_ns)
        counts = binary_array(counts_bytes).reshape(times.shape[0], len(bounds) + 1)[order]
        starts = binary_array(starts_bytes)[order]
        out.append(
            HistogramPoints(series_id, list(bounds), times[keep], starts[keep], counts[keep])
        )
    return out


def decode_exponential(rows: Sequence[Any], lo_ns: int, hi_ns: int) -> list[ExponentialPoint]:
    return [ExponentialPoint(*row) for row in rows if lo_ns <= row[1] < hi_ns]


class MetricInfoRow(NamedTuple):
    """One row of ``list_statement``."""

    name: str
    metric_type: int
    unit: str | None
    description: str | None
    label_keys: list[str]
    has_service: bool


_LIST: Final = (
    "SELECT m.metric_name, min(m.metric_type), max(m.unit), max(m.description), "
    "array_remove(array_agg(DISTINCT k.key ORDER BY k.key), NULL), "
    "bool_or(m.service_name IS NOT NULL) "
    "FROM metric_series m "
    "LEFT JOIN LATERAL jsonb_object_keys("
    "CASE jsonb_typeof(m.attributes) WHEN 'object' THEN m.attributes END) AS k(key) ON true "
    "WHERE m.project_id = %s AND starts_with(m.metric_name, %s) AND m.metric_name > %s "
    "GROUP BY m.metric_name ORDER BY m.metric_name LIMIT %s"
)


def list_statement(project: str, prefix: str, after: str, limit: int) -> tuple[str, list[Any]]:
    """Metric names starting with ``prefix`` after ``after`` (keyset), in name order."""
    return _LIST, [project, prefix, after, limit]


def decode_list(rows: Sequence[Any]) -> list[MetricInfoRow]:
    return [MetricInfoRow(*row) for row in rows]


# --- rollup rows (0009) ----------------------------------------------------------------
#
# The rows of metric_rollups_1m or metric_rollups_1h, as ``storage.rollup_rows`` types, read
# one result row per group, each row's fixed-width columns packed (below). A query
# groups by series; the rollup job, which reads whole hours of a project, by a sixty-fourth
# of the series ids (a few dozen large arrays instead of a row per series). A histogram
# state stored NULL because it equals what it stands for (docs/storage.md) is read as a
# mask and the arrays of the rows that have one.

ROLLUP_TABLES: Final = {60 * 10**9: "metric_rollups_1m", 3600 * 10**9: "metric_rollups_1h"}

# Each row's fixed-width columns travel as one packed bytea value (the ``*send``
# functions' big-endian bytes, concatenated), and the groups' rows as one ``string_agg``
# of those: PostgreSQL keeps one aggregate state per group for them and calls no send
# function per element on the way out. A day of 50 series' 1-minute bucket rows (72,000)
# took 150 ms as five ``array_agg`` columns (two of them 2-D) and 125 ms packed; 72,000
# 1-hour number rows 108 and 86 ms (docs/benchmarks.md, "QueryMetrics: rollup rows read
# packed"). ``string_agg`` skips a NULL, so a NULL in any packed column would drop its
# row unseen: every packed column is NOT NULL or coalesced, and the decoders check the
# packed length against ``count(*)`` all the same. Bucket counts are stored packed
# (0009); the rows whose state is NULL are told by a flag.
_ROLLUP_NUMBERS: Final = (
    "SELECT project_id, count(*), string_agg(int8send(series_id) || timestamptz_send(time) "
    "|| int8send(samples) || int8send(first_time_unix_nano) || int8send(last_time_unix_nano) "
    "|| float8send(sum) || float8send(min) || float8send(max) || float8send(first_value) "
    "|| float8send(last_value) || float8send(increase), ''::bytea) "
    "FROM {table} WHERE {where} AND samples > 0 GROUP BY project_id{group}"
)

# Flags: 1 no last counts (a delta row), 2 first counts stored, 4 increments stored.
_ROLLUP_BUCKETS: Final = (
    "SELECT project_id, explicit_bounds, count(*), string_agg(int8send(series_id) "
    "|| timestamptz_send(time) || int8send(coalesce(first_time_unix_nano, 0)) "
    "|| int8send(coalesce(first_start_time_unix_nano, 0)) "
    "|| int8send(coalesce(last_start_time_unix_nano, 0)) "
    "|| int4send((last_bucket_counts IS NULL)::int + 2 * (first_bucket_counts IS NOT NULL)::int "
    "+ 4 * (bucket_increments IS NOT NULL)::int), ''::bytea), "
    "string_agg(last_bucket_counts, ''::bytea), string_agg(first_bucket_counts, ''::bytea), "
    "string_agg(bucket_increments, ''::bytea) "
    "FROM {table} WHERE {where} AND explicit_bounds IS NOT NULL "
    "GROUP BY project_id, explicit_bounds{group}"
)

# The packed rows of _ROLLUP_NUMBERS and _ROLLUP_BUCKETS (the numbers' fields named as
# Numbers' are); ``time`` is timestamptz_send's int8 microseconds since 2000-01-01 UTC.
_NUMBER_ROW: Final = np.dtype(
    [("series", ">i8"), ("time", ">i8"), ("samples", ">i8"), ("first_ns", ">i8"),
     ("last_ns", ">i8"), ("total", ">f8"), ("low", ">f8"), ("high", ">f8"), ("first", ">f8"),
     ("last", ">f8"), ("increase", ">f8")]
)  # fmt: skip
_BUCKET_ROW: Final = np.dtype(
    [("series", ">i8"), ("time", ">i8"), ("first_ns", ">i8"), ("first_start", ">i8"),
     ("last_start", ">i8"), ("flags", ">i4")]
)  # fmt: skip
_NO_LAST, _HAS_FIRST, _HAS_INCREMENTS = 1, 2, 4


def packed_rows(data: bytes | None, count: int, dtype: np.dtype[Any]) -> np.ndarray:
    """``count`` packed rows of ``dtype``; raises ValueError if the bytes do not hold
    exactly that many (a NULL column would have dropped a row)."""
    size = len(data or b"")
    if size != count * dtype.itemsize:
        raise ValueError(f"{size} packed bytes for {count} rows of {dtype.itemsize}")
    return np.frombuffer(data or b"", dtype=dtype, count=count)


def _native(column: np.ndarray) -> np.ndarray:
    """A big-endian field of packed rows as a contiguous native array (a copy)."""
    return column.astype(column.dtype.newbyteorder("="))


_ROLLUP_EXPONENTIAL: Final = (
    "SELECT project_id, series_id, time, coalesce(first_time_unix_nano, 0), scale, "
    "coalesce(zero_threshold, 0), coalesce(first_start_time_unix_nano, 0), "
    "coalesce(last_start_time_unix_nano, 0), coalesce(positive_offset, 0), "
    "coalesce(negative_offset, 0), zero_increment, positive_increments, negative_increments, "
    "first_zero_count, first_positive_counts, first_negative_counts, "
    "last_zero_count, last_positive_counts, last_negative_counts "
    "FROM {table} WHERE {where} AND scale IS NOT NULL "
    "ORDER BY project_id, series_id, time, part"
)


class RollupScope(NamedTuple):
    """Which rollup rows to read: ``where`` over the table's columns, its parameters, and
    how to group them into result rows beyond project (and layout): empty, or
    ``, expression``."""

    where: sql.Composable
    params: list[Any]
    group: sql.Composable


def series_scope(project: str, series_ids: Sequence[int], lo_ns: int, hi_ns: int) -> RollupScope:
    """The rows of these series of ``project`` whose interval starts in ``[lo_ns, hi_ns)``,
    one result row in all (a query's read; the decoders sort)."""
    return RollupScope(
        sql.SQL("project_id = %s AND series_id = ANY(%s) AND time >= %s AND time < %s"),
        [project, list(series_ids), datetime_from_ns(lo_ns), datetime_from_ns(hi_ns)],
        sql.SQL(""),
    )


def rollup_statement(kind: str, table: str, scope: RollupScope) -> tuple[sql.Composed, list[Any]]:
    """The statement reading ``kind`` (numbers, buckets, exponential) rows of ``table``."""
    template = {
        "numbers": _ROLLUP_NUMBERS,
        "buckets": _ROLLUP_BUCKETS,
        "exponential": _ROLLUP_EXPONENTIAL,
    }[kind]
    query = sql.SQL(template).format(
        table=sql.Identifier(table), where=scope.where, group=scope.group
    )
    return query, scope.params


def decode_rollup_numbers(rows: Sequence[Any], *, sort: bool = True) -> dict[str, Numbers]:
    """Rows of ``rollup_statement("numbers")`` per project, sorted by series and time
    (``sort=False``: in no order, for a caller that sorts them with others)."""
    parts: dict[str, list[Numbers]] = {}
    for project, count, packed in rows:
        r = packed_rows(packed, count, _NUMBER_ROW)
        # _NUMBER_ROW's fields are named as Numbers' are: a field missing on either side
        # fails here, not as a column silently in the wrong place.
        columns = {name: _native(r[name]) for name in _NUMBER_ROW.names or ()}
        columns["time"] = _unix_ns(columns["time"])
        parts.setdefault(project, []).append(Numbers(**columns))
    if not sort:
        return {project: Numbers.concat(p) for project, p in parts.items()}
    return {project: _sorted_numbers(Numbers.concat(p)) for project, p in parts.items()}


def _sorted_numbers(rows: Numbers) -> Numbers:
    return rows.take(chain_time_order(rows.series, rows.time))


def packed_counts(data: bytes | None, width: int) -> np.ndarray:
    """Bucket counts stored packed (8-byte big-endian integers, 0009), ``width`` a row."""
    if not data:
        return np.empty((0, width), dtype=np.int64)
    return np.frombuffer(data, dtype=">i8").astype(np.int64).reshape(-1, width)


def _filled(base: np.ndarray, present: np.ndarray, data: bytes | None, width: int) -> np.ndarray:
    """``base`` with the rows flagged ``present`` replaced by ``data``'s packed counts (in
    order); ``data``'s matrix itself when every row is present."""
    if present.all():
        return packed_counts(data, width)
    if present.any():
        base[present] = packed_counts(data, width)
    return base


class ChainBuckets(NamedTuple):
    """Explicit-histogram rollup rows of one project and bucket layout; the chain of a
    row is its series."""

    project: str
    bounds: list[float]
    rows: Buckets


def decode_rollup_buckets(rows: Sequence[Any], *, sort: bool = True) -> list[ChainBuckets]:
    """Rows of ``rollup_statement("buckets")``, one ``ChainBuckets`` per project and
    layout, sorted by series and time (``sort=False``: in no order, for a caller that
    sorts them with others: each sort copies every bucket matrix); NULL states rebuilt
    from what they stand for."""
    merged: dict[tuple[str, tuple[float, ...]], list[Buckets]] = {}
    for project, bounds, count, packed, last_b, first_b, increments_b in rows:
        r = packed_rows(packed, count, _BUCKET_ROW)
        n, width = count, len(bounds) + 1
        flags = _native(r["flags"])
        delta, has_first, has_increments = (
            (flags & bit).astype(bool) for bit in (_NO_LAST, _HAS_FIRST, _HAS_INCREMENTS)
        )
        # Matrices are shared or left unfilled where a whole column of flags allows (a
        # row per series and minute, one point each: no delta rows, first = last,
        # increments zero): each full pass over a day's matrices costs milliseconds.
        # Nothing writes into a Buckets' matrices once it is built.
        last = _filled(np.zeros((n, width), dtype=np.int64), ~delta, last_b, width)
        first = last if not has_first.any() else _filled(last.copy(), has_first, first_b, width)
        base = np.zeros((n, width), dtype=np.int64) if first is last else last - first
        increments = _filled(base, has_increments, increments_b, width)
        chunk = Buckets(
            _native(r["series"]),
            _unix_ns(_native(r["time"])),
            _native(r["first_ns"]),
            delta,
            _native(r["first_start"]),
            _native(r["last_start"]),
            increments,
            first,
            last,
        )
        merged.setdefault((project, tuple(float(b) for b in bounds)), []).append(chunk)
    out = []
    for (project, bounds), chunks in merged.items():
        together = Buckets.sorted_union(chunks) if sort else Buckets.concat(chunks)
        out.append(ChainBuckets(project, list(bounds), together))
    return out


def _state(zero: int | None, pos_off: int, pos: Any, neg_off: int, neg: Any) -> ExponentialState:
    return ExponentialState(
        int(zero or 0),
        pos_off,
        np.asarray(pos or [], dtype=np.int64),
        neg_off,
        np.asarray(neg or [], dtype=np.int64),
    )


def _difference(a: ExponentialState, b: ExponentialState) -> ExponentialState:
    """``a - b`` of two states stored with the same offsets and lengths (one row's)."""
    return ExponentialState(
        a.zero - b.zero,
        a.positive_offset,
        a.positive - b.positive,
        a.negative_offset,
        a.negative - b.negative,
    )


def decode_rollup_exponential(rows: Sequence[Any]) -> dict[str, list[ExponentialRow]]:
    """Rows of ``rollup_statement("exponential")`` per project, in series and time order."""
    out: dict[str, list[ExponentialRow]] = {}
    for (
        project,
        series_id,
        time,
        first_ns,
        scale,
        threshold,
        first_start,
        last_start,
        pos_off,
        neg_off,
        inc_zero,
        inc_pos,
        inc_neg,
        first_zero,
        first_pos,
        first_neg,
        last_zero,
        last_pos,
        last_neg,
    ) in rows:
        delta = last_zero is None
        last = None if delta else _state(last_zero, pos_off, last_pos, neg_off, last_neg)
        first = last
        if not delta and first_zero is not None:
            first = _state(first_zero, pos_off, first_pos, neg_off, first_neg)
        if inc_zero is not None:
            increments = _state(inc_zero, pos_off, inc_pos, neg_off, inc_neg)
        else:
            assert last is not None and first is not None, "a delta row stores its increments"
            increments = _difference(last, first)
        out.setdefault(project, []).append(
            ExponentialRow(
                series_id,
                ns_from_datetime(time),
                first_ns,
                delta,
                scale,
                threshold,
                first_start,
                last_start,
                increments,
                first,
                last,
            )
        )
    return out
