"""Spans of the cold tier for the trace RPCs: a trace by id, traces by search, summaries.

* A trace by id (``GetTrace``, and the summaries of ``SearchTraces``) needs no time range:
  the manifest's key blooms (``storage.keybloom``) name the objects and row groups that
  may hold its spans, and only those are read.
* ``SearchTraces`` reads the objects of its time range newest first, matching spans as
  ``storage.postgres.trace_reader.matching_traces`` does in SQL, keeping each trace's
  latest matching span, and stops at the first object whose rows are all older than the
  page's last trace.
* A summary over spans in both tiers is computed here, as the SQL computes it
  (``storage.postgres.trace_reader.trace_summaries``): each span id once, root by the same
  ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from query.call import QueryCall
from query.coldtier import Read
from storage import keybloom
from storage.cold_reader import ranges
from storage.postgres.cold_manifest import ColdObject
from storage.postgres.partitions import ns_from_datetime
from storage.postgres.records import SpanRow
from storage.postgres.trace_reader import ERROR_STATUS, SpanMatch

SIGNAL: Final = "spans"
COLUMNS: Final = (
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration_ns",
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "service_name",
    "session_id",
    "user_id",
    "name",
    "kind",
    "status_code",
    "status_message",
    "attributes",
    "events",
    "links",
    "scope_name",
    "resource_attributes",
    "resource_id",
)
_JSON: Final = frozenset({"attributes", "events", "links"})


def span_rows(table: pa.Table, positions: Sequence[int] | None = None) -> list[SpanRow]:
    """``SpanRow``s of ``table`` (read with ``COLUMNS``), of ``positions`` or all rows."""
    if positions is not None:
        table = table.take(pa.array(positions, pa.int64()))
    if not table.num_rows:
        return []
    columns = []
    for name in COLUMNS:
        values = table.column(name).to_pylist()
        if name in _JSON:
            values = [None if v is None else orjson.loads(v) for v in values]
        columns.append(values)
    return [SpanRow(*row) for row in zip(*columns, strict=True)]


def _of_traces(trace_ids: Iterable[bytes]) -> Callable[[pa.Table], pa.Table]:
    """What ``Read.keep`` keeps of a row group: the rows of these traces."""
    wanted = pa.array(list(trace_ids), pa.binary(16))

    def keep(table: pa.Table) -> pa.Table:
        return table.filter(pc.fill_null(pc.is_in(table.column("trace_id"), wanted), False))

    return keep


async def spans_of(
    call: QueryCall,
    trace_ids: Sequence[bytes],
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> dict[bytes, list[SpanRow]]:
    """Every cold copy of every span of each trace of ``trace_ids``, in no order; only
    from objects with rows in ``[start_ns, end_ns)`` (None: open)."""
    found: dict[bytes, list[SpanRow]] = {t: [] for t in trace_ids}
    if call.cold is None or not trace_ids:
        return found
    where = await call.cold.holding_any(
        call, keybloom.TRACE, list(trace_ids), (SIGNAL,), start_ns=start_ns, end_ns=end_ns
    )
    held: dict[int, tuple[ColdObject, list[bytes]]] = {}
    for trace_id, places in where.items():
        for obj, _ in places:
            held.setdefault(obj.object_id, (obj, []))[1].append(trace_id)
    reads = [
        Read(obj, COLUMNS, keys=("trace_id", ids), keep=_of_traces(ids))
        for obj, ids in held.values()
    ]
    for table in await call.cold.read(call, reads):
        for span in span_rows(table):
            found[span.trace_id].append(span)
    return found


async def logs_of(call: QueryCall, trace_id: bytes, limit: int) -> list[Any]:
    """The first ``limit`` cold log records of one trace, oldest first (``LogRow``s)."""
    from query import cold_logs  # the trace RPCs need the log reader only with logs

    if call.cold is None:
        return []
    where = await call.cold.holding(call, keybloom.TRACE, trace_id, (cold_logs.SIGNAL,))
    keep = _of_traces([trace_id])
    reads = [
        Read(obj, cold_logs.COLUMNS, keys=("trace_id", [trace_id]), keep=keep) for obj, _ in where
    ]
    records = []
    for read, table in zip(reads, await call.cold.read(call, reads), strict=True):
        records += cold_logs.rows(table, range(table.num_rows), read.obj)
    records.sort(key=lambda r: r.key)
    return records[:limit]


# --- SearchTraces -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Window:
    low_ns: int
    high_ns: int  # exclusive


def _match_columns(match: SpanMatch) -> list[str]:
    columns = ["time", "trace_id"]
    if match.service is not None:
        columns.append("service_name")
    if match.name is not None:
        columns.append("name")
    if match.attributes:
        columns.append("attributes")
    if match.min_duration_ns is not None or match.max_duration_ns is not None:
        columns.append("duration_ns")
    if match.errors_only:
        columns.append("status_code")
    return columns


def _matching(table: pa.Table, match: SpanMatch, window: _Window) -> np.ndarray:
    """Positions of the spans of ``table`` that match, as the SQL's WHERE."""
    times = table.column("time").cast(pa.int64())
    conditions = [pc.greater_equal(times, window.low_ns), pc.less(times, window.high_ns)]
    if match.service is not None:
        conditions.append(pc.equal(table.column("service_name").cast(pa.string()), match.service))
    if match.name is not None:
        conditions.append(pc.equal(table.column("name").cast(pa.string()), match.name))
    if match.min_duration_ns is not None:
        conditions.append(pc.greater_equal(table.column("duration_ns"), match.min_duration_ns))
    if match.max_duration_ns is not None:
        conditions.append(pc.less_equal(table.column("duration_ns"), match.max_duration_ns))
    if match.errors_only:
        conditions.append(pc.equal(table.column("status_code"), ERROR_STATUS))
    keep = np.ones(table.num_rows, dtype=bool)
    for condition in conditions:
        keep &= np.asarray(pc.fill_null(condition, False), dtype=bool)
    positions = np.flatnonzero(keep)
    if match.attributes and len(positions):
        from query.cold_logs import attribute_text

        texts = table.column("attributes").take(pa.array(positions)).to_pylist()
        kept = []
        for position, text in zip(positions.tolist(), texts, strict=True):
            found = orjson.loads(text) if text else {}
            if isinstance(found, dict) and all(
                attribute_text(found.get(k)) == v for k, v in match.attributes
            ):
                kept.append(position)
        positions = np.array(kept, dtype=np.int64)
    return positions


def _groups_within(match: SpanMatch, window: _Window):  # type: ignore[no-untyped-def]
    def choose(metadata: pq.FileMetaData) -> list[int]:
        times = ranges(metadata, "time")
        services = ranges(metadata, "service_name") if match.service is not None else None
        kept = []
        for g in range(metadata.num_row_groups):
            span = times[g]
            if span is not None and (span[1] < window.low_ns or span[0] >= window.high_ns):
                continue
            named = None if services is None else services[g]
            if named and match.service is not None:
                low, high = (v.decode() if isinstance(v, bytes) else str(v) for v in named)
                if not low <= match.service <= high:
                    continue
            kept.append(g)
        return kept

    return choose


async def matching_traces(
    call: QueryCall,
    match: SpanMatch,
    after: tuple[int, bytes] | None,
    want: int,
    rival: tuple[int, bytes] | None,
) -> list[tuple[bytes, int]]:
    """``(trace_id, latest matching span time µs)`` of up to ``want`` traces with a
    matching cold span, newest first by that time then trace id, before ``after``.

    Every object from the window's end is read until the page is settled, whatever the
    cursor: a trace's latest span decides where it sorts, and a trace listed on an
    earlier page may have older spans further on. ``rival`` is the ``want``-th trace the
    hot tier has: no object all older than it is read."""
    cold = call.cold
    if cold is None or want <= 0:
        return []
    window = _Window(ns_from_datetime(match.start), ns_from_datetime(match.end))
    objects = await cold.objects(call, SIGNAL, window.low_ns, window.high_ns)
    latest: dict[bytes, int] = {}
    columns = _match_columns(match)
    choose = _groups_within(match, window)

    def keep(table: pa.Table) -> pa.Table:
        return table.take(pa.array(_matching(table, match, window), pa.int64()))

    def settled_above() -> int | None:
        """The time (µs) a trace must reach to make the page, once the page is full."""
        ranked = sorted(
            ((t, trace) for trace, t in latest.items() if after is None or (t, trace) < after),
            reverse=True,
        )
        bounds = [ranked[want - 1][0]] if len(ranked) >= want else []
        if rival is not None:
            bounds.append(rival[0])
        return max(bounds) if bounds else None

    at = 0
    while at < len(objects):
        floor = settled_above()
        wave: list[Read] = []
        while at < len(objects) and len(wave) < cold.threads:
            obj = objects[at]
            if floor is not None and obj.max_ns // 1000 < floor:
                at = len(objects)
                break
            at += 1
            wave.append(Read(obj, columns, choose=choose, keep=keep))
        for chosen in await cold.read(call, wave):
            if not chosen.num_rows:  # the reads kept only the matching spans
                continue
            grouped = (
                pa.table(
                    {
                        "trace_id": chosen.column("trace_id"),
                        "t": pc.divide(chosen.column("time").cast(pa.int64()), 1000),
                    }
                )
                .group_by("trace_id")
                .aggregate([("t", "max")])
            )
            for trace, t in zip(
                grouped.column("trace_id").to_pylist(),
                grouped.column("t_max").to_pylist(),
                strict=True,
            ):
                if t > latest.get(trace, -1):
                    latest[trace] = t
    ranked = sorted(
        ((t, trace) for trace, t in latest.items() if after is None or (t, trace) < after),
        reverse=True,
    )
    return [(trace, t) for t, trace in ranked[:want]]


# --- summaries --------------------------------------------------------------------------


def summary(trace_id: bytes, spans: Iterable[SpanRow]) -> tuple[Any, ...]:
    """The row ``trace_summaries`` would give for these spans: ``(trace_id, min start ns,
    max end ns, span count, error count, services, root service, root name)``."""
    unique: dict[bytes, SpanRow] = {}
    for span in spans:
        unique.setdefault(span.span_id, span)
    starts = [s.start_time_unix_nano for s in unique.values() if s.start_time_unix_nano is not None]
    ends = [
        end
        for s in unique.values()
        if (
            end := s.end_time_unix_nano
            if s.end_time_unix_nano is not None
            else s.start_time_unix_nano
        )
        is not None
    ]

    def rank(span: SpanRow) -> tuple[int, bool, int, bytes]:
        parent = span.parent_span_id
        kind = 0 if parent is None else (1 if parent not in unique else 2)
        start = span.start_time_unix_nano
        return kind, start is None, start or 0, span.span_id  # NULL starts last, as in SQL

    root = min(unique.values(), key=rank) if unique else None
    services = sorted({s.service_name for s in unique.values() if s.service_name})
    return (
        trace_id,
        min(starts) if starts else None,
        max(ends) if ends else None,
        len(unique),
        sum(1 for s in unique.values() if s.status_code == ERROR_STATUS),
        services,
        root.service_name if root else None,
        root.name if root else None,
    )
