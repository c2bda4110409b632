"""GetServiceGraph: which service calls which, how often, how often failing, how fast.

Read from the spans of the range (``storage.postgres.graph_reader``), not from rollups:
an edge needs both spans of a call, which arrive from two services in two exports at
any time; joining them when asked is exact and needs no state. The p95 is the callee's
span duration (the server side of the call), computed exactly.

When cold objects overlap the range (and the ``PARENT_LEAD`` before it), the calls are
paired in both tiers: the cold spans of the range are read (``query.cold_spans``) and
joined here, a callee span with its parent, as the SQL joins them; a call with one span
in each tier is found through the hot spans of the traces the cold side names; the hot
calls come from PostgreSQL with their durations, and each edge's p95 is computed over
the calls of both tiers as ``percentile_cont`` computes it. With no cold object in
range, the one statement of the hot tier answers alone, as before.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from otlpd.errors import BadArgument
from query import arguments, cold_spans, tokens
from query.call import QueryCall
from query.cold_spans import SpanRange
from query.convert import set_duration
from query.proto import pb
from query.settings import QuerySettings
from storage.postgres import graph_reader
from storage.postgres.cold_manifest import ColdObject
from storage.postgres.graph_reader import CALLEE_KINDS, ERROR_STATUS, PARENT_LEAD
from storage.postgres.metric_reader import binary_array
from storage.postgres.partitions import datetime_from_ns, ns_from_datetime

EDGES_DEFAULT_LIMIT: Final = 1000
P95: Final = 0.95
_COLD_COLUMNS: Final = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "service_name",
    "kind",
    "status_code",
    "duration_ns",
)
# (caller, callee, calls, errors, p95 ns)
Edge = tuple[str, str, int, int, float]


def percentile_cont(values: np.ndarray, fraction: float) -> float | None:
    """PostgreSQL's ``percentile_cont(fraction)`` of ``values`` (None when empty), with its
    arithmetic (src/backend/utils/adt/orderedsetaggs.c): the values as float8, the rows at
    ``floor`` and ``ceil`` of ``fraction * (n - 1)``, ``lo + (hi - lo) * proportion``."""
    if not len(values):
        return None
    ordered = np.sort(values.astype(np.float64))
    position = fraction * (len(ordered) - 1)
    first, second = math.floor(position), math.ceil(position)
    low, high = float(ordered[first]), float(ordered[second])
    if first == second:
        return low
    return low + (position - first) * (high - low)


class ServiceGraphQueries:
    """GetServiceGraph over both tiers; stateless."""

    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def graph(
        self, call: QueryCall, request: pb.GetServiceGraphRequest
    ) -> pb.GetServiceGraphResponse:
        """The edges of the range, by (caller, callee), a page of them."""
        window = arguments.time_range(request)
        limit = arguments.limit(
            request.limit, default=EDGES_DEFAULT_LIMIT, maximum=self._settings.max_limit
        )
        service = arguments.text(request.service, "service") or None
        bound_to = tokens.fingerprint(call.project, request)
        cursor = tokens.decode(request.page_token, "graph", bound_to)
        after = None
        if cursor is not None:
            if len(cursor) != 2 or not all(isinstance(v, str) for v in cursor):
                raise BadArgument("page_token", "is not a token this server issued")
            after = (cursor[0], cursor[1])
        start = datetime_from_ns(window.start_ns)
        # spans.time is the start truncated to microseconds (see query.traces)
        end = datetime_from_ns(window.end_ns + 999)
        reach = SpanRange.between(start - PARENT_LEAD, end)
        objects = await cold_spans.objects_of(call, [reach])
        if objects:
            found = await _both_tiers(
                call,
                objects,
                reach,
                start=start,
                end=end,
                service=service,
                after=after,
                want=limit + 1,
            )
        else:
            rows = await call.fetch(
                *graph_reader.edges(
                    call.project,
                    start=start,
                    end=end,
                    service=service,
                    after=after,
                    limit=limit + 1,
                )
            )
            found = [
                (caller, callee, calls, errors, p95 or 0)
                for caller, callee, calls, errors, p95 in rows
            ]
        page = found[:limit]
        response = pb.GetServiceGraphResponse()
        names: set[str] = set()
        for caller, callee, calls, errors, p95 in page:
            edge = response.edges.add(caller=caller, callee=callee, calls=calls, errors=errors)
            set_duration(edge.p95, round(p95))
            names.update((caller, callee))
        response.services.extend(sorted(names))
        if len(found) > limit:
            response.next_page_token = tokens.encode("graph", bound_to, list(page[-1][:2]))
        return response


async def _both_tiers(
    call: QueryCall,
    objects: Sequence[ColdObject],
    reach: SpanRange,
    *,
    start: datetime,
    end: datetime,
    service: str | None,
    after: tuple[str, str] | None,
    want: int,
) -> list[Edge]:
    """The first ``want`` edges after ``after`` over the spans of both tiers."""
    (tables,) = await cold_spans.in_ranges(call, [reach], _COLD_COLUMNS, objects)
    # Joins and sorts of up to an hour of spans: off the event loop, which serves ingest.
    cold = await asyncio.to_thread(_cold_sides, tables, ns_from_datetime(start))
    statements = [
        graph_reader.edges(
            call.project,
            start=start,
            end=end,
            service=service,
            after=after,
            limit=want,
            durations=True,
        )
    ]
    if cold.parent_traces:  # hot callees under cold parents
        statements.append(
            graph_reader.callees(call.project, start=start, end=end, traces=cold.parent_traces)
        )
    if cold.callee_traces:  # cold callees under hot parents
        statements.append(
            graph_reader.parents(call.project, start=start, end=end, traces=cold.callee_traces)
        )
    hot_edges, *more = await call.fetch_many(statements, binary=True)
    hot_callees = more.pop(0) if cold.parent_traces else []
    hot_parents = more.pop(0) if cold.callee_traces else []
    return await asyncio.to_thread(
        _merge, hot_edges, cold, hot_callees, hot_parents, _Page(service, after, want)
    )


@dataclass(frozen=True, slots=True)
class _ColdSides:
    """The cold spans of the range as both sides of a call, and their traces."""

    parents: pa.Table  # _PARENT_SCHEMA
    callees: pa.Table  # _CALLEE_SCHEMA
    parent_traces: list[bytes]
    callee_traces: list[bytes]


@dataclass(frozen=True, slots=True)
class _Page:
    """Which edges a page holds: of ``service`` (None: all), after ``after``, ``want``."""

    service: str | None
    after: tuple[str, str] | None
    want: int


def _cold_sides(tables: Sequence[pa.Table], start_ns: int) -> _ColdSides:
    spans = pa.concat_tables(tables) if tables else None
    parents = _parents(spans)
    callees = _callees(spans, start_ns)
    return _ColdSides(
        parents,
        callees,
        pc.unique(parents.column("trace_id")).to_pylist(),
        pc.unique(callees.column("trace_id")).to_pylist(),
    )


def _merge(
    hot_edges: list[Any],
    cold: _ColdSides,
    hot_callees: list[Any],
    hot_parents: list[Any],
    page: _Page,
) -> list[Edge]:
    """The page's edges: the hot tier's calls (with their durations) and those paired
    here (both spans cold, or one in each tier), each edge's p95 over all of them."""
    pairs = [_pairs(cold.callees, cold.parents)]
    if hot_callees:
        pairs.append(_pairs(_rows(hot_callees, _CALLEE_SCHEMA), cold.parents))
    if hot_parents:
        pairs.append(_pairs(cold.callees, _rows(hot_parents, _PARENT_SCHEMA)))
    merged: dict[tuple[str, str], tuple[int, int, list[np.ndarray]]] = {}
    for caller, callee, calls, errors, durations in hot_edges:
        merged[(caller, callee)] = (calls, errors, [binary_array(durations)])
    found = _on_page(pa.concat_tables(pairs), page)
    grouped = found.group_by(["caller", "callee"]).aggregate(
        [
            ("failed", "count", pc.CountOptions(mode="all")),
            ("failed", "sum"),
            ("duration_ns", "list"),
        ]
    )
    lists = grouped.column("duration_ns_list").combine_chunks()
    offsets = lists.offsets.to_numpy()
    values = lists.flatten()  # nulls kept: offsets count them
    known = pc.is_valid(values).to_numpy(zero_copy_only=False)
    durations = pc.fill_null(values, 0).to_numpy(zero_copy_only=False)
    for i, (caller, callee, calls, errors) in enumerate(
        zip(
            grouped.column("caller").to_pylist(),
            grouped.column("callee").to_pylist(),
            grouped.column("failed_count").to_pylist(),
            grouped.column("failed_sum").to_pylist(),
            strict=True,
        )
    ):
        part = slice(offsets[i], offsets[i + 1])
        mine = durations[part][known[part]]
        old_calls, old_errors, old_durations = merged.get((caller, callee), (0, 0, []))
        merged[(caller, callee)] = (old_calls + calls, old_errors + errors, [*old_durations, mine])
    edges: list[Edge] = []
    for key in sorted(merged)[: page.want]:  # str order is byte order of UTF-8: COLLATE "C"
        calls, errors, parts = merged[key]
        p95 = percentile_cont(np.concatenate(parts), P95)
        edges.append((*key, calls, errors, p95 or 0))
    return edges


def _on_page(pairs: pa.Table, page: _Page) -> pa.Table:
    """The calls of ``pairs`` into or out of the page's service, after its cursor."""
    caller, callee = pairs.column("caller"), pairs.column("callee")
    conditions = []
    if page.service is not None:
        conditions.append(pc.or_(pc.equal(caller, page.service), pc.equal(callee, page.service)))
    if page.after is not None:  # (caller, callee) > after, strings in byte order
        first, second = page.after
        conditions.append(
            pc.or_(
                pc.greater(caller, first),
                pc.and_(pc.equal(caller, first), pc.greater(callee, second)),
            )
        )
    if not conditions:
        return pairs
    keep = conditions[0] if len(conditions) == 1 else pc.and_(*conditions)
    return pairs.filter(keep)


_CALLEE_SCHEMA: Final = pa.schema(
    [
        ("trace_id", pa.binary(16)),
        ("parent_span_id", pa.binary(8)),
        ("callee", pa.string()),
        ("callee_status", pa.int16()),
        ("duration_ns", pa.int64()),
    ]
)
_PARENT_SCHEMA: Final = pa.schema(
    [
        ("trace_id", pa.binary(16)),
        ("span_id", pa.binary(8)),
        ("caller", pa.string()),
        ("caller_status", pa.int16()),
    ]
)


def _rows(rows: list[Any], schema: pa.Schema) -> pa.Table:
    """PostgreSQL's rows as a table of ``schema``."""
    columns: list[Sequence[Any]] = [[] for _ in schema]
    if rows:
        columns = list(zip(*rows, strict=True))
    return pa.table(
        [pa.array(values, field.type) for values, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


def _service(spans: pa.Table) -> pa.ChunkedArray:
    """``coalesce(service_name, '')``."""
    return pc.fill_null(spans.column("service_name").cast(pa.string()), "")


def _parents(spans: pa.Table | None) -> pa.Table:
    """Every span, as the parent side of a call."""
    if spans is None:
        return _PARENT_SCHEMA.empty_table()
    return pa.table(
        [
            spans.column("trace_id"),
            spans.column("span_id"),
            _service(spans),
            spans.column("status_code"),
        ],
        schema=_PARENT_SCHEMA,
    )


def _callees(spans: pa.Table | None, start_ns: int) -> pa.Table:
    """The spans that may be the callee side of a call: server or consumer spans with a
    parent, starting in the range (at or after ``start_ns``)."""
    if spans is None:
        return _CALLEE_SCHEMA.empty_table()
    keep = pc.and_(
        pc.and_(
            pc.greater_equal(spans.column("time").cast(pa.int64()), start_ns),
            pc.is_valid(spans.column("parent_span_id")),
        ),
        pc.is_in(spans.column("kind"), pa.array(sorted(CALLEE_KINDS), pa.int16())),
    )
    chosen = spans.filter(pc.fill_null(keep, False))
    return pa.table(
        [
            chosen.column("trace_id"),
            chosen.column("parent_span_id"),
            _service(chosen),
            chosen.column("status_code"),
            chosen.column("duration_ns"),
        ],
        schema=_CALLEE_SCHEMA,
    )


def _pairs(callees: pa.Table, parents: pa.Table) -> pa.Table:
    """``(caller, callee, failed, duration_ns)`` of every call: a callee span joined with
    each stored copy of its parent, across services, as the SQL's join pairs them."""
    joined = callees.join(
        parents,
        keys=["trace_id", "parent_span_id"],
        right_keys=["trace_id", "span_id"],
        join_type="inner",
    )
    joined = joined.filter(pc.not_equal(joined.column("caller"), joined.column("callee")))
    failed = pc.or_(
        pc.fill_null(pc.equal(joined.column("callee_status"), ERROR_STATUS), False),
        pc.fill_null(pc.equal(joined.column("caller_status"), ERROR_STATUS), False),
    )
    return pa.table(
        {
            "caller": joined.column("caller"),
            "callee": joined.column("callee"),
            "failed": pc.cast(failed, pa.int64()),
            "duration_ns": joined.column("duration_ns"),
        }
    )
