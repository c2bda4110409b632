"""SearchLogs, GetLogContext and GetLogVolume: validation, paging, and the newest-first walk.

SearchLogs walks its time range newest first in growing windows (one minute, then four
times the previous window each round) and stops as soon as the page is full, so a
common word over 24 hours reads only the newest minutes: the hot tier keeps no btree on
``logs.time`` (it costs ingest), and without one "the newest N of a day" would sort a
whole day of matches. The BRIN on ``(project_id, time)`` makes each window read only its
blocks. A filter with its own index (trace_id, session_id) is one statement instead:
that index finds the few rows however long the range.

Pages are keyset pages over ``(time, ctid)`` (``storage.postgres.records``): the token
holds the last record's key and the range's start, so records committed while a client
pages neither shift nor repeat a page, and a defaulted start ("an hour ago") does not
move between pages.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any

from otlpd.errors import BadArgument, NotFound
from query import arguments, cold_logs, convert, fulltext, tokens
from query.call import QueryCall
from query.cold_logs import Scope
from query.proto import pb
from query.settings import QuerySettings
from storage.postgres import log_reader, text_index
from storage.postgres.log_reader import LogFilter
from storage.postgres.records import COLD, LogRow, parse_record_id, place_order

DEFAULT_LIMIT = 100
DEFAULT_CONTEXT = 10
_TOKEN_KIND = "logs"
_FIRST_WINDOW_US = 60 * 1_000_000
_GROWTH = 4
# GetLogContext looks this far either side of the record for its neighbours: a resource
# silent for a day has no useful context, and the bound keeps the scan finite.
_CONTEXT_REACH_US = 24 * 3600 * 1_000_000
_MAX_SEVERITY = 24
# A volume over at least this long is read in two halves split on a bucket boundary, on
# two connections at once, so that PostgreSQL counts on two cores: a day of 10M records
# took 3.3 s in one statement, 1.75 s in two (docs/benchmarks.md).
SPLIT_VOLUME_US = 2 * 3600 * 1_000_000
_PLACE = re.compile(r"\(\d{1,10},\d{1,5}\)|c\d{1,18}\.\d{1,10}")
SEVERITY_RANGES = (
    (0, "UNSPECIFIED"),
    (1, "TRACE"),
    (5, "DEBUG"),
    (9, "INFO"),
    (13, "WARN"),
    (17, "ERROR"),
    (21, "FATAL"),
)


def log_filter(project: str, f: pb.LogFilter) -> LogFilter:
    """``f`` validated (``BadArgument`` naming ``filter.<field>``) as the reader's filter.

    Shared by every RPC that takes a ``LogFilter`` (SearchLogs, GetLogVolume, TailLogs).
    """
    terms = fulltext.parse(f.q)
    if not 0 <= f.min_severity <= _MAX_SEVERITY:
        raise BadArgument("filter.min_severity", f"must be 0 to {_MAX_SEVERITY}")
    return LogFilter(
        project=project,
        regexes=tuple(term.regex for term in terms),
        likes=tuple(pattern for term in terms for pattern in term.like_patterns),
        patterns=tuple(term.pattern for term in terms),
        words=tuple(word for term in terms for word in term.words),
        whole_words=tuple(word for term in terms for word in term.whole_words),
        service=_optional_text(f.service, "filter.service"),
        min_severity=f.min_severity,
        trace_id=arguments.trace_id(f.trace_id, "filter.trace_id") if f.trace_id else None,
        span_id=arguments.span_id(f.span_id, "filter.span_id") if f.span_id else None,
        session_id=_optional_text(f.session_id, "filter.session_id"),
        user_id=_optional_text(f.user_id, "filter.user_id"),
        attributes=arguments.attribute_filters(f.attributes, "filter.attributes"),
    )


def _optional_text(value: str, field: str) -> str | None:
    return arguments.text(value, field) if value else None


def _us_range(window: arguments.TimeRange) -> tuple[int, int]:
    """``[start, end)`` in ns as the microseconds stored times are truncated to."""
    return window.start_ns // 1000, -(-window.end_ns // 1000)


def _records(rows: list[Any]) -> list[LogRow]:
    return [LogRow(*row) for row in rows]


def _newest_first(*parts: list[LogRow], limit: int) -> list[LogRow]:
    """The first ``limit`` records of hot and cold parts, newest first."""
    merged = [row for part in parts for row in part]
    merged.sort(key=lambda row: row.key, reverse=True)
    return merged[:limit]


def _oldest_first(*parts: list[LogRow], limit: int) -> list[LogRow]:
    """The first ``limit`` records of hot and cold parts, oldest first."""
    merged = [row for part in parts for row in part]
    merged.sort(key=lambda row: row.key)
    return merged[:limit]


def _prepare(flt: LogFilter) -> bool | None:
    """False (plan for the values, every time) for a statement that matches words.

    psycopg prepares a statement from its fifth use on a connection, and PostgreSQL then
    keeps a generic plan once its estimate looks no worse than the custom ones'. For a
    word search that plan does not know which partitions the window keeps, nor how rare
    the word is: over the last 64 minutes of the query benchmark it took 240-620 ms
    where a plan for the values took 140-250 ms (docs/benchmarks.md, "Word searches
    planned for their values"). With the window's bounds as values (``log_reader.moment``)
    such a plan costs ~0.4 ms to make. The other searches (a trace id, a session) keep
    their prepared plans, which the indexes make cheap whatever the values.
    """
    return False if flt.regexes else None


def volume_parts(start_us: int, end_us: int, step_us: int) -> list[tuple[int, int]]:
    """``[start_us, end_us)`` whole, or when it spans ``SPLIT_VOLUME_US`` or more, in two
    parts split on the bucket boundary nearest its middle (a bucket counted whole in
    one part; none when no boundary lies inside)."""
    if end_us - start_us < SPLIT_VOLUME_US:
        return [(start_us, end_us)]
    middle = ((start_us + end_us) // 2 + step_us // 2) // step_us * step_us
    if not start_us < middle < end_us:
        return [(start_us, end_us)]
    return [(start_us, middle), (middle, end_us)]


class _Slices:
    """The starts (µs) of the open log partitions' indexed slices (``text_index``), read
    from the catalog at most once per ``ttl`` seconds.

    A slice appears every ``SLICE_SECONDS``; one seen a few seconds late is scanned as
    before it was indexed, and one dropped meanwhile (its partition indexed whole) is
    read by that partition's whole index instead: a stale list costs time, never rows.
    """

    def __init__(self, ttl: float = 5.0) -> None:
        self._ttl = ttl
        self._read_at = -math.inf
        self._starts: tuple[int, ...] = ()

    async def starts(self, call: QueryCall) -> tuple[int, ...]:
        now = time.monotonic()
        if now - self._read_at >= self._ttl:
            rows = await call.fetch(*text_index.slices_statement())
            found = (text_index.slice_start(str(name)) for _, name, valid in rows if valid)
            self._starts = tuple(sorted({ns // 1000 for ns in found if ns is not None}))
            self._read_at = now
        return self._starts


class LogQueries:
    """The log RPCs of QueryService over the hot tier."""

    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings
        self._slices = _Slices()

    async def search(self, call: QueryCall, request: pb.SearchLogsRequest) -> pb.SearchLogsResponse:
        """Records matching the filter, newest first, one keyset page."""
        limit = arguments.limit(
            request.limit, default=DEFAULT_LIMIT, maximum=self._settings.max_limit
        )
        flt = log_filter(call.project, request.filter)
        indexed = flt.trace_id is not None or flt.session_id is not None
        selective = indexed or flt.span_id is not None
        window = arguments.time_range(request, unbounded_start=selective)
        bound_to = tokens.fingerprint(call.project, request)
        cursor = tokens.decode(request.page_token, _TOKEN_KIND, bound_to)
        start_us, end_us = _us_range(window)
        after: tuple[int, int, int, int] | None = None  # the last record of the last page
        hot_end_us, before = end_us, None
        if cursor is not None:
            try:
                time_us, place, start_us = int(cursor[0]), str(cursor[1]), int(cursor[2])
            except (IndexError, ValueError, TypeError) as exc:
                raise BadArgument("page_token", "is not a token this server issued") from exc
            if not _PLACE.fullmatch(place) or not 0 <= time_us < 2**62:
                raise BadArgument("page_token", "is not a token this server issued")
            after = (time_us, *place_order(place))
            if after[1] == COLD:  # the hot rows of its microsecond were listed before it
                hot_end_us = min(end_us, time_us)
            else:
                before, hot_end_us = (time_us, place), min(end_us, time_us + 1)
        # One more than the page: whether it exists decides the next token.
        want = limit + 1
        scope = Scope(flt, start_us or None, end_us)
        objects = None
        if indexed:
            # The hot rows and the cold manifest in one round trip: a trace's or a
            # session's records are a few milliseconds of PostgreSQL, and the manifest's
            # own round trip was 16% of otlpd's busy time in a session search (py-spy,
            # docs/benchmarks.md, "SearchLogs by trace or session in one round trip").
            statement = log_reader.search(
                flt, start_us=start_us or None, end_us=hot_end_us, before=before, limit=want
            )
            manifest = cold_logs.manifest_read(call, scope)
            if manifest is None:
                rows = await call.fetch(*statement, generic_plan=True, binary=True)
            else:
                rows, found = await call.fetch_many(
                    [statement, manifest], generic_plan=True, binary=True
                )
                objects = cold_logs.objects_of(found)
        else:
            rows = await self._walk(call, flt, start_us, hot_end_us, before=before, want=want)
        hot = _records(rows)
        cold = await cold_logs.scan(
            call,
            scope,
            newest_first=True,
            after=after,
            want=want,
            rival=hot[want - 1].key if len(hot) >= want else None,
            objects=objects,
        )
        # The hot rows come newest first (log_reader.search orders them by time and
        # ctid, LogRow.key's order): alone, they need no sort, whose key converts the time
        # and the place of every record.
        records = _newest_first(hot, cold, limit=want) if cold else hot[:want]
        response = pb.SearchLogsResponse()
        add = response.records.add
        for r in records[:limit]:
            convert.fill_log_record(add(), r)
        if len(records) > limit:
            last = records[limit - 1]
            response.next_page_token = tokens.encode(
                _TOKEN_KIND, bound_to, [last.time_us, last.place, start_us]
            )
        return response

    async def _walk(
        self,
        call: QueryCall,
        flt: LogFilter,
        start_us: int,
        end_us: int,
        *,
        before: tuple[int, str] | None,
        want: int,
    ) -> list[Any]:
        """Up to ``want`` rows, newest first, reading growing windows back from ``end_us``."""
        rows: list[Any] = []
        high, width = end_us, _FIRST_WINDOW_US
        prepare = _prepare(flt)
        slices = await self._slices.starts(call) if flt.regexes else ()
        while len(rows) < want and high > start_us:
            low = max(start_us, high - width)
            rows += await call.fetch(
                *log_reader.search(
                    flt,
                    start_us=low,
                    end_us=high,
                    before=before,
                    limit=want - len(rows),
                    slices=slices,
                ),
                prepare=prepare,
                binary=True,
            )
            high, width = low, width * _GROWTH
        return rows

    async def context(
        self, call: QueryCall, request: pb.GetLogContextRequest
    ) -> pb.GetLogContextResponse:
        """The record ``id`` and its neighbours from the same service and resource."""
        maximum = self._settings.max_limit
        n_before = arguments.limit(
            request.before, default=DEFAULT_CONTEXT, maximum=maximum, field="before"
        )
        n_after = arguments.limit(
            request.after, default=DEFAULT_CONTEXT, maximum=maximum, field="after"
        )
        key = parse_record_id(request.id) if request.id else None
        if key is None:
            raise NotFound(f"no log record with id {request.id!r}")
        middle = await self._record(call, *key)
        if middle is None:
            raise NotFound(f"no log record with id {request.id!r}")
        hot_place = None if middle.key[1] == COLD else middle.place
        around = (middle.time_us, hot_place)
        older, newer = await call.fetch_many(
            [
                log_reader.neighbours(
                    call.project,
                    middle.service_name,
                    middle.resource_id,
                    around,
                    older=True,
                    limit=n_before,
                    reach_us=_CONTEXT_REACH_US,
                ),
                log_reader.neighbours(
                    call.project,
                    middle.service_name,
                    middle.resource_id,
                    around,
                    older=False,
                    limit=n_after,
                    reach_us=_CONTEXT_REACH_US,
                ),
            ]
        )
        scope = Scope(
            LogFilter(call.project, service=middle.service_name),
            middle.time_us - _CONTEXT_REACH_US,
            middle.time_us + _CONTEXT_REACH_US,
            resource_id=middle.resource_id,
            no_service=middle.service_name is None,
        )
        cold_older = await cold_logs.scan(
            call, scope, newest_first=True, after=middle.key, want=n_before
        )
        cold_newer = await cold_logs.scan(
            call, scope, newest_first=False, after=middle.key, want=n_after
        )
        before = _newest_first(_records(older), cold_older, limit=n_before)
        return pb.GetLogContextResponse(
            before=[convert.log_record(r) for r in reversed(before)],
            record=convert.log_record(middle),
            after=[
                convert.log_record(r)
                for r in _oldest_first(_records(newer), cold_newer, limit=n_after)
            ],
        )

    async def _record(self, call: QueryCall, time_us: int, place: str) -> LogRow | None:
        """The record at ``(time_us, place)`` in whichever tier holds it."""
        tier, a, b = place_order(place)
        if tier == COLD:
            found = await cold_logs.record(call, a, b)
            return found if found is not None and found.time_us == time_us else None
        rows = await call.fetch(*log_reader.record(call.project, time_us, place))
        return LogRow(*rows[0]) if rows else None

    async def volume(
        self, call: QueryCall, request: pb.GetLogVolumeRequest
    ) -> pb.GetLogVolumeResponse:
        """Counts per bucket and severity range, every bucket of the range present.

        The range defaults to the last hour even with a trace or session filter: buckets
        since 1970 would say nothing.
        """
        flt = log_filter(call.project, request.filter)
        window = arguments.time_range(request)
        step = arguments.step_ns(request.step if request.HasField("step") else None, window)
        if step < 1000:
            raise BadArgument("step", "must be at least 1 microsecond")
        step_us = step // 1000
        start_us, end_us = _us_range(window)
        slices = await self._slices.starts(call) if flt.regexes else ()
        halves = await asyncio.gather(
            *(
                call.fetch(
                    *log_reader.volume(flt, start_us=lo, end_us=hi, step_us=step_us, slices=slices),
                    prepare=_prepare(flt),
                )
                for lo, hi in volume_parts(start_us, end_us, step_us)
            )
        )
        rows = [row for half in halves for row in half]
        counts = await cold_logs.volume(call, Scope(flt, start_us, end_us), step_us)
        for bucket, severity, n in rows:
            counts[(int(bucket), int(severity))] = counts.get((int(bucket), int(severity)), 0) + n
        response = pb.GetLogVolumeResponse()
        convert.set_duration(response.step, step_us * 1000)
        for bucket in range(start_us // step_us, (end_us - 1) // step_us + 1):
            item = response.buckets.add()
            convert.set_timestamp(item.time, bucket * step_us * 1000)
            for number, name in SEVERITY_RANGES:
                n = counts.get((bucket, number), 0)
                item.counts.add(severity_number=number, severity=name, count=n)
                item.total += n
        return response
