"""SearchTraces, GetTrace, ListServices and ListOperations.

SearchTraces is two reads: the traces that have a matching span in the time range (newest
first by their latest matching span, a keyset page of them), then summaries of exactly
those traces over all of their spans, wherever they lie in time. Keeping the second read
to one page of trace ids is what bounds its cost (``trace_id = ANY(...)`` on
``spans_trace_idx``).

A SearchTraces page token pins the time range of the first page (an unset end is "now" of
the first page, not of each page), so spans that arrive while a client pages neither
shift a trace it has not seen yet past its cursor nor bring back one it has seen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from otlpd.errors import BadArgument, NotFound
from query import arguments, cold_spans, convert, tokens
from query.call import QueryCall
from query.coldtier import Lookup
from query.proto import pb
from query.settings import QuerySettings
from query.waterfall import waterfall
from storage import keybloom
from storage.postgres import trace_reader
from storage.postgres.partitions import datetime_from_ns
from storage.postgres.records import LogRow, SpanRow, micros

SEARCH_DEFAULT_LIMIT = 20
CATALOG_DEFAULT_LIMIT = 1000
# A trace found by SearchTraces is summarized over its spans within this far of the
# search window in the cold tier (all of them in the hot tier): the cold tier has no index
# of a trace's time, and a summary must not open a month of objects.
SUMMARY_REACH_NS = 3600 * 10**9


def _text_or_none(value: str, field: str) -> str | None:
    return arguments.text(value, field) or None


def _bad_token() -> BadArgument:
    return BadArgument("page_token", "is not a token this server issued")


class TraceQueries:
    """The trace RPCs over the hot tier; stateless, one instance per server."""

    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def search(
        self, call: QueryCall, request: pb.SearchTracesRequest
    ) -> pb.SearchTracesResponse:
        """Summaries of the traces with a span matching every filter, newest first."""
        limit = arguments.limit(
            request.limit, default=SEARCH_DEFAULT_LIMIT, maximum=self._settings.max_limit
        )
        bound_to = tokens.fingerprint(call.project, request)
        cursor = tokens.decode(request.page_token, "traces", bound_to)
        window = arguments.time_range(request)
        after: tuple[datetime, bytes] | None = None
        if cursor is not None:
            start_ns, end_ns, after = _search_cursor(cursor)
            window = arguments.TimeRange(start_ns, end_ns)
        min_duration = max_duration = None
        if request.HasField("min_duration"):
            min_duration = arguments.duration_ns(request.min_duration, "min_duration")
        if request.HasField("max_duration"):
            max_duration = arguments.duration_ns(request.max_duration, "max_duration")
            if min_duration is not None and max_duration < min_duration:
                raise BadArgument("max_duration", "must not be less than min_duration")
        match = trace_reader.SpanMatch(
            # spans.time is the start truncated to microseconds: round the start down and
            # the end up so that no span of [start, end) is missed.
            start=datetime_from_ns(window.start_ns),
            end=datetime_from_ns(window.end_ns + 999),
            service=_text_or_none(request.service, "service"),
            name=_text_or_none(request.span_name, "span_name"),
            attributes=arguments.attribute_filters(request.attributes),
            min_duration_ns=min_duration,
            max_duration_ns=max_duration,
            errors_only=request.errors_only,
        )
        found = await self._matching(call, match, after, limit + 1)
        page = found[:limit]
        response = pb.SearchTracesResponse()
        if not page:
            return response
        ids = [trace_id for trace_id, _ in page]
        rows = await call.fetch(*trace_reader.trace_summaries(call.project, ids))
        summaries = {row[0]: row for row in rows}
        cold = await cold_spans.spans_of(
            call, ids, window.start_ns - SUMMARY_REACH_NS, window.end_ns + SUMMARY_REACH_NS
        )
        both = [trace_id for trace_id in ids if cold[trace_id]]
        if both:  # summarized over the spans of both tiers
            hot: dict[bytes, list[SpanRow]] = {trace_id: [] for trace_id in both}
            for row in await call.fetch(*trace_reader.spans_of(call.project, both)):
                hot[row[3]].append(SpanRow(*row))
            for trace_id in both:
                summaries[trace_id] = cold_spans.summary(trace_id, hot[trace_id] + cold[trace_id])
        for trace_id in ids:
            row = summaries.get(trace_id)
            if row is not None:  # gone only if its partitions were dropped meanwhile
                response.traces.append(_summary(row))
        if len(found) > limit:
            last_trace, last_us = page[-1]
            response.next_page_token = tokens.encode(
                "traces", bound_to, [window.start_ns, window.end_ns, last_us, last_trace.hex()]
            )
        return response

    async def _matching(
        self,
        call: QueryCall,
        match: trace_reader.SpanMatch,
        after: tuple[datetime, bytes] | None,
        want: int,
    ) -> list[tuple[bytes, int]]:
        """``(trace_id, latest matching span µs)`` of the first ``want`` traces in both
        tiers, newest first: a trace's latest matching span decides, whichever tier holds
        it (a trace whose spans cross the tiers is found in both)."""
        rows = await call.fetch(*trace_reader.matching_traces(call.project, match, after, want))
        latest = {trace_id: micros(time) for trace_id, time in rows}
        cursor = None if after is None else (micros(after[0]), after[1])
        rival = (rows[-1][1], rows[-1][0]) if len(rows) >= want else None
        cold = await cold_spans.matching_traces(
            call, match, cursor, want, None if rival is None else (micros(rival[0]), rival[1])
        )
        unseen = [trace_id for trace_id, _ in cold if trace_id not in latest]
        hot_latest: dict[bytes, int] = {}
        if unseen:  # its hot spans may be newer than its cold ones, and list it earlier
            statement = trace_reader.latest_matching(call.project, match, unseen)
            hot_latest = {t: micros(time) for t, time in await call.fetch(*statement)}
        for trace_id, time_us in cold:
            overall = max(time_us, hot_latest.get(trace_id, -1), latest.get(trace_id, -1))
            if cursor is None or (overall, trace_id) < cursor:
                latest[trace_id] = overall
        ranked = sorted(((t, trace_id) for trace_id, t in latest.items()), reverse=True)
        return [(trace_id, t) for t, trace_id in ranked[:want]]

    async def get(self, call: QueryCall, request: pb.GetTraceRequest) -> pb.GetTraceResponse:
        """Every span of one trace once, in waterfall order; NOT_FOUND when it has none."""
        trace_id = arguments.trace_id(request.trace_id)
        statements = [trace_reader.trace_spans(call.project, trace_id)]
        if request.include_logs:
            statements.append(
                trace_reader.trace_logs(call.project, trace_id, self._settings.max_limit)
            )
        signals = ("spans", "logs") if request.include_logs else ("spans",)
        lookup = Lookup(keybloom.TRACE, (trace_id,), signals)
        statements.append(lookup.statement(call.project))  # one round trip for both tiers
        results = await call.fetch_many(statements, generic_plan=True, binary=True)
        where = lookup.answer(results[-1])
        spans = [SpanRow(*row) for row in results[0]]
        spans += (await cold_spans.spans_of(call, [trace_id], where=where))[trace_id]
        if not spans:
            raise NotFound("no trace with this trace_id in the project")
        response = pb.GetTraceResponse()
        add_span = response.spans.add
        for span, depth in waterfall(spans):
            convert.fill_span(add_span(), span, depth)
        if request.include_logs:
            limit = self._settings.max_limit
            logs = [LogRow(*row) for row in results[1]]
            logs += await cold_spans.logs_of(call, [trace_id], limit, where=where)
            logs.sort(key=lambda record: record.key)
            add_log = response.logs.add
            for record in logs[:limit]:
                convert.fill_log_record(add_log(), record)
        return response

    async def services(
        self, call: QueryCall, request: pb.ListServicesRequest
    ) -> pb.ListServicesResponse:
        """The project's services from the catalog, by name."""
        limit = arguments.limit(
            request.limit, default=CATALOG_DEFAULT_LIMIT, maximum=self._settings.max_limit
        )
        bound_to = tokens.fingerprint(call.project, request)
        cursor = tokens.decode(request.page_token, "services", bound_to)
        after = None
        if cursor is not None:
            if len(cursor) != 1 or not isinstance(cursor[0], str):
                raise _bad_token()
            after = cursor[0]
        rows = await call.fetch(*trace_reader.services(call.project, after, limit + 1))
        response = pb.ListServicesResponse()
        for name, first_seen, last_seen in rows[:limit]:
            service = response.services.add(name=name)
            convert.set_timestamp(service.first_seen, micros(first_seen) * 1000)
            convert.set_timestamp(service.last_seen, micros(last_seen) * 1000)
        if len(rows) > limit:
            response.next_page_token = tokens.encode("services", bound_to, [rows[limit - 1][0]])
        return response

    async def operations(
        self, call: QueryCall, request: pb.ListOperationsRequest
    ) -> pb.ListOperationsResponse:
        """One service's span names and kinds from the catalog, by name then kind."""
        if not request.service:
            raise BadArgument("service", "is required")
        service = arguments.text(request.service, "service")
        limit = arguments.limit(
            request.limit, default=CATALOG_DEFAULT_LIMIT, maximum=self._settings.max_limit
        )
        bound_to = tokens.fingerprint(call.project, request)
        cursor = tokens.decode(request.page_token, "operations", bound_to)
        after = None
        if cursor is not None:
            if len(cursor) != 2 or not isinstance(cursor[0], str) or not isinstance(cursor[1], int):
                raise _bad_token()
            after = (cursor[0], cursor[1])
        rows = await call.fetch(*trace_reader.operations(call.project, service, after, limit + 1))
        response = pb.ListOperationsResponse()
        for name, kind in rows[:limit]:
            response.operations.add(name=name, span_kind=kind)
        if len(rows) > limit:
            name, kind = rows[limit - 1]
            response.next_page_token = tokens.encode("operations", bound_to, [name, kind])
        return response


def _search_cursor(cursor: list[Any]) -> tuple[int, int, tuple[datetime, bytes]]:
    """(window start ns, window end ns, (latest time, trace id)) of a SearchTraces token."""
    try:
        start_ns, end_ns, latest_us, trace_hex = cursor
        if not all(isinstance(v, int) for v in (start_ns, end_ns, latest_us)):
            raise TypeError
        trace_id = bytes.fromhex(trace_hex)
        return start_ns, end_ns, (datetime_from_ns(latest_us * 1000), trace_id)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _bad_token() from exc


def _summary(row: tuple[Any, ...]) -> pb.TraceSummary:
    trace_id, start, end, count, errors, services, root_service, root_name = row
    summary = pb.TraceSummary(
        trace_id=trace_id,
        root_service=root_service or "",
        root_name=root_name or "",
        span_count=count,
        error_count=errors,
        services=services,
    )
    start = start or 0
    convert.set_timestamp(summary.start_time, start)
    convert.set_duration(summary.duration, max(0, (end or start) - start))
    return summary
