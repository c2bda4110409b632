"""Spans of the cold tier: a trace by id, traces by search, summaries, and the spans of a
range for the insight RPCs.

* A trace by id (``GetTrace``, and the summaries of ``SearchTraces``) needs no time range:
  the manifest's key blooms (``storage.keybloom``) name the objects and row groups that
  may hold its spans, and only those are read.
* ``SearchTraces`` reads the objects of its time range newest first, matching spans as
  ``storage.postgres.trace_reader.matching_traces`` does in SQL, keeping each trace's
  latest matching span, and stops at the first object whose rows are all older than the
  page's last trace.
* The spans of a range (``SpanRange``: a time range, optionally one service, name, kind,
  errors only), as the insight RPCs read them (GetServiceGraph, GetLatencyHistogram,
  GetErrorSpikes): the objects of the range, in each only the row groups whose ``time``
  and ``service_name`` statistics overlap (the files sort by service then time), only
  the columns asked for.
* A summary over spans in both tiers is computed here, as the SQL computes it
  (``storage.postgres.trace_reader.trace_summaries``): each span id once, root by the same
  ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from query.call import QueryCall
from query.coldtier import Choose, Read, all_true, true
from storage import keybloom
from storage.cold_reader import overlapping
from storage.postgres.cold_manifest import ColdObject
from storage.postgres.partitions import ns_from_datetime
from storage.postgres.records import COLD, SpanRow
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


# Per key, the objects that may hold it (``query.coldtier.Lookup.answer``).
Where = dict[bytes, list[tuple[ColdObject, list[int] | None]]]


def _of_signal(where: Where, signal: str) -> Where:
    return {key: [p for p in places if p[0].signal == signal] for key, places in where.items()}


def _held(
    where: dict[bytes, list[tuple[ColdObject, list[int] | None]]],
) -> list[tuple[ColdObject, list[bytes]]]:
    """Per object the key blooms named, the trace ids they may hold there."""
    held: dict[int, tuple[ColdObject, list[bytes]]] = {}
    for trace_id, places in where.items():
        for obj, _ in places:
            held.setdefault(obj.object_id, (obj, []))[1].append(trace_id)
    return list(held.values())


async def spans_of(
    call: QueryCall,
    trace_ids: Sequence[bytes],
    start_ns: int | None = None,
    end_ns: int | None = None,
    *,
    where: Where | None = None,
) -> dict[bytes, list[SpanRow]]:
    """Every cold copy of every span of each trace of ``trace_ids``, in no order; only
    from objects with rows in ``[start_ns, end_ns)`` (None: open). ``where``: the answer
    of the key blooms (``query.coldtier.Lookup``) when the caller read it already."""
    found: dict[bytes, list[SpanRow]] = {t: [] for t in trace_ids}
    if call.cold is None or not trace_ids:
        return found
    if where is None:
        where = await call.cold.holding_any(
            call, keybloom.TRACE, list(trace_ids), (SIGNAL,), start_ns=start_ns, end_ns=end_ns
        )
    where = _of_signal(where, SIGNAL)
    reads = [
        Read(obj, COLUMNS, keys=("trace_id", ids), keep=_of_traces(ids))
        for obj, ids in _held(where)
    ]
    for table in await call.cold.read(call, reads):
        for span in span_rows(table):
            found[span.trace_id].append(span)
    return found


async def logs_of(
    call: QueryCall,
    trace_ids: Sequence[bytes],
    limit: int,
    *,
    newest_first: bool = False,
    where: Where | None = None,
) -> list[Any]:
    """The first ``limit`` cold log records of the traces ``trace_ids``, oldest (or
    newest) first (``LogRow``s), wherever they lie in time; ``where`` as for
    ``spans_of``."""
    found = await logs_of_each(call, [trace_ids], limit, newest_first=newest_first, where=where)
    return found[0]


async def logs_of_each(
    call: QueryCall,
    trace_sets: Sequence[Sequence[bytes]],
    limit: int,
    *,
    newest_first: bool = False,
    start_ns: int | None = None,
    end_ns: int | None = None,
    where: Where | None = None,
) -> list[list[Any]]:
    """``logs_of`` for several sets of traces at once: one read of the key blooms (they
    name the objects that may hold the traces' records, the files' own bloom filters the
    row groups) and of each object; only objects with records in ``[start_ns, end_ns)``
    (None: open)."""
    from query import cold_logs  # the trace RPCs need the log reader only with logs

    found: list[list[Any]] = [[] for _ in trace_sets]
    union = sorted({trace for traces in trace_sets for trace in traces})
    if call.cold is None or not union or limit <= 0:
        return found
    if where is None:
        where = await call.cold.holding_any(
            call, keybloom.TRACE, union, (cold_logs.SIGNAL,), start_ns=start_ns, end_ns=end_ns
        )
    where = _of_signal(where, cold_logs.SIGNAL)
    reads = [
        Read(obj, cold_logs.COLUMNS, keys=("trace_id", ids), keep=_of_traces(ids))
        for obj, ids in _held(where)
    ]
    tables = await call.cold.read(call, reads)
    for i, traces in enumerate(trace_sets):
        # Each record's key first; records are made of the first ``limit`` only.
        keyed: list[tuple[tuple[int, int, int, int], int, int]] = []  # key, read, position
        wanted = pa.array(list(traces), pa.binary(16))
        for r, (read, table) in enumerate(zip(reads, tables, strict=True)):
            if not table.num_rows or not traces:
                continue
            mine = pc.fill_null(pc.is_in(table.column("trace_id"), wanted), False)
            positions = np.flatnonzero(np.asarray(mine))
            times, rows = cold_logs.keys(table, read.obj)
            for position in positions.tolist():
                key = (int(times[position]), COLD, read.obj.object_id, int(rows[position]))
                keyed.append((key, r, position))
        keyed.sort(key=lambda item: item[0], reverse=newest_first)
        picked: dict[int, list[int]] = {}
        for _, r, position in keyed[:limit]:
            picked.setdefault(r, []).append(position)
        records = [
            record
            for r, positions in picked.items()
            for record in cold_logs.rows(tables[r], positions, reads[r].obj)
        ]
        records.sort(key=lambda record: record.key, reverse=newest_first)
        found[i] = records
    return found


# --- spans of a range -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpanRange:
    """Spans whose ``time`` lies in ``[low_ns, high_ns)`` and, where given, of one service,
    one name, one kind, with status ERROR: the conditions the span reads of the SQL share
    (``spans.time`` is the start truncated to microseconds, like the column here)."""

    low_ns: int
    high_ns: int  # exclusive
    service: str | None = None
    name: str | None = None
    kind: int | None = None
    errors_only: bool = False

    @classmethod
    def between(cls, start: datetime, end: datetime, **conditions: Any) -> SpanRange:
        """The range ``time >= start AND time < end`` of a statement."""
        return cls(ns_from_datetime(start), ns_from_datetime(end), **conditions)

    def columns(self) -> tuple[str, ...]:
        """The columns its conditions read."""
        named = (
            ("service_name", self.service is not None),
            ("name", self.name is not None),
            ("kind", self.kind is not None),
            ("status_code", self.errors_only),
        )
        return ("time", *(column for column, used in named if used))

    def choose(self, metadata: pq.FileMetaData) -> list[int]:
        """The row groups whose statistics overlap the range (and hold the service)."""
        return overlapping(metadata, low_ns=self.low_ns, high_ns=self.high_ns, service=self.service)

    def mask(self, table: pa.Table) -> np.ndarray:
        """Which rows of ``table`` (read with ``columns()``) are in the range, as SQL's
        WHERE takes them (NULL is not a match)."""
        times = table.column("time").cast(pa.int64())
        conditions = [pc.greater_equal(times, self.low_ns), pc.less(times, self.high_ns)]
        if self.service is not None:
            column = table.column("service_name").cast(pa.string())
            conditions.append(pc.equal(column, self.service))
        if self.name is not None:
            conditions.append(pc.equal(table.column("name").cast(pa.string()), self.name))
        if self.kind is not None:
            conditions.append(pc.equal(table.column("kind"), self.kind))
        if self.errors_only:
            conditions.append(pc.equal(table.column("status_code"), ERROR_STATUS))
        return all_true(table.num_rows, conditions)


async def objects_of(call: QueryCall, ranges: Sequence[SpanRange]) -> list[ColdObject]:
    """The span objects that may hold spans of any of ``ranges`` (one manifest read), newest
    first; none without a cold tier."""
    if call.cold is None or not ranges:
        return []
    low = min(r.low_ns for r in ranges)
    high = max(r.high_ns for r in ranges)
    return await call.cold.objects(call, SIGNAL, low, high)


async def in_ranges(
    call: QueryCall,
    ranges: Sequence[SpanRange],
    columns: Sequence[str],
    objects: Sequence[ColdObject] | None = None,
) -> list[list[pa.Table]]:
    """Per range, ``columns`` of its cold spans: one table per object, only the rows of
    the range (``ROW`` as well). Each object is read once for all the ranges (the row
    groups any of them may hold by the statistics), all objects at once. ``objects``:
    those ``objects_of`` gave, if known."""
    if call.cold is None or not ranges:
        return [[] for _ in ranges]
    if objects is None:
        objects = await objects_of(call, ranges)
    needed = tuple(dict.fromkeys([c for r in ranges for c in r.columns()] + list(columns)))
    reads: list[Read] = []
    owners: list[list[int]] = []  # per read, the ranges its object may hold spans of
    for obj in objects:
        mine = [
            i
            for i, where in enumerate(ranges)
            if obj.max_ns >= where.low_ns and obj.min_ns < where.high_ns
        ]
        if mine:
            reads.append(
                Read(
                    obj,
                    needed,
                    choose=_groups_of([ranges[i] for i in mine]),
                    keep=_in_any([ranges[i] for i in mine]),
                )
            )
            owners.append(mine)
    found: list[list[pa.Table]] = [[] for _ in ranges]
    for mine, table in zip(owners, await call.cold.read(call, reads), strict=True):
        for i in mine if table.num_rows else ():
            kept = table.filter(pa.array(ranges[i].mask(table)))
            if kept.num_rows:
                found[i].append(kept)
    return found


def _in_any(ranges: Sequence[SpanRange]) -> Callable[[pa.Table], pa.Table]:
    """What ``Read.keep`` keeps of a row group: the spans of any of ``ranges``."""

    def keep(table: pa.Table) -> pa.Table:
        mask = np.zeros(table.num_rows, dtype=bool)
        for where in ranges:
            mask |= where.mask(table)
        return table if mask.all() else table.filter(pa.array(mask))

    return keep


def _groups_of(ranges: Sequence[SpanRange]) -> Choose:
    """The row groups that may hold spans of any of ``ranges``."""

    def choose(metadata: pq.FileMetaData) -> list[int]:
        return sorted({g for where in ranges for g in where.choose(metadata)})

    return choose


# --- SearchTraces -----------------------------------------------------------------------


def _match_columns(match: SpanMatch) -> list[str]:
    columns = ["trace_id"]
    if match.attributes:
        columns.append("attributes")
    if match.min_duration_ns is not None or match.max_duration_ns is not None:
        columns.append("duration_ns")
    return columns


def _range_of(match: SpanMatch) -> SpanRange:
    return SpanRange.between(
        match.start,
        match.end,
        service=match.service,
        name=match.name,
        errors_only=match.errors_only,
    )


def _matching(table: pa.Table, match: SpanMatch, where: SpanRange) -> np.ndarray:
    """Positions of the spans of ``table`` that match, as the SQL's WHERE."""
    keep = where.mask(table)
    durations = table.column("duration_ns") if "duration_ns" in table.column_names else None
    if match.min_duration_ns is not None:
        keep &= true(pc.greater_equal(durations, match.min_duration_ns))
    if match.max_duration_ns is not None:
        keep &= true(pc.less_equal(durations, match.max_duration_ns))
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
    where = _range_of(match)
    objects = await cold.objects(call, SIGNAL, where.low_ns, where.high_ns)
    latest: dict[bytes, int] = {}
    columns = tuple(dict.fromkeys((*where.columns(), *_match_columns(match))))

    def keep(table: pa.Table) -> pa.Table:
        return table.take(pa.array(_matching(table, match, where), pa.int64()))

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
            wave.append(Read(obj, columns, choose=where.choose, keep=keep))
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
