"""GetSessionTimeline: everything one session produced, spans, logs and exemplars merged
oldest first, one keyset page at a time.

Each kind is read after the page's position (``storage.postgres.session_reader`` defines
the shared order) up to ``limit + 1`` rows, and the three are merged here. A kind that
had more rows than it returned bounds the page: nothing past its last row may be listed,
since rows of that kind further on were not read. Copies of a retried span share their
sort key exactly, so they collapse to one item, also across a page boundary (the next
page starts strictly after the key), and across tiers.

The cold tier's items of the session (``query.cold_sessions``) are all read and merged
in the same order; a log record or exemplar sorts by its place (``storage.postgres.
records``), cold before hot at the same microsecond. A session whose ``sessions`` row
was pruned with its last hot partition is described from its cold items.
"""

from __future__ import annotations

import re
from typing import Any

from otlpd.errors import BadArgument, NotFound
from query import arguments, cold_sessions, convert, tokens
from query.call import QueryCall
from query.proto import pb
from query.settings import QuerySettings
from storage.postgres import session_reader
from storage.postgres.partitions import datetime_from_ns
from storage.postgres.records import COLD, LogRow, SpanRow, micros, place_order

DEFAULT_LIMIT = 1000

# (time µs, kind, tiebreak): the order of session_reader, comparable in Python: a span by
# its ids, a log record or exemplar by ``place_order`` of its place (a ctid as (block,
# offset) numbers, as PostgreSQL orders tids, after any cold row).
SortKey = tuple[int, int, tuple[Any, ...]]
_PLACE = re.compile(r"\(\d{1,10},\d{1,5}\)|c\d{1,18}\.\d{1,10}")


class SessionQueries:
    """GetSessionTimeline over the hot tier; stateless, one instance per server."""

    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def timeline(
        self, call: QueryCall, request: pb.GetSessionTimelineRequest
    ) -> pb.GetSessionTimelineResponse:
        """The session and a page of its items, oldest first; NOT_FOUND for a session the
        project has not seen."""
        session_id = arguments.text(request.session_id, "session_id")
        if not session_id:
            raise BadArgument("session_id", "is required")
        limit = arguments.limit(
            request.limit, default=DEFAULT_LIMIT, maximum=self._settings.max_limit
        )
        bound_to = tokens.fingerprint(call.project, request)
        position = _position(tokens.decode(request.page_token, "timeline", bound_to))
        project = call.project
        found, spans, logs, exemplars, in_cold = await call.fetch_many(
            [
                session_reader.session(project, session_id),
                session_reader.spans(project, session_id, position, limit + 1),
                session_reader.logs(project, session_id, position, limit + 1),
                session_reader.exemplars(project, session_id, position, limit + 1),
                cold_sessions.lookup(session_id).statement(project),
            ],
            generic_plan=True,
            binary=True,
        )
        cold = await cold_sessions.items(call, session_id, in_cold)
        if found:
            user_id, session_service, first_seen, last_seen = found[0]
        elif cold.first_ns is not None and cold.last_ns is not None:
            user_id, session_service = cold.user_id, cold.service
            first_seen, last_seen = datetime_from_ns(cold.first_ns), datetime_from_ns(cold.last_ns)
        else:
            raise NotFound("no session with this session_id in the project")

        # Rows are sorted and cut first and converted after: only the page's items are
        # built, each in place in the response (a message passed to a constructor is
        # copied).
        entries: list[tuple[SortKey, Any]] = []
        bounds: list[SortKey] = []  # the last key of each kind that has more rows
        for row in spans:
            # row[4], row[5]: SPAN_COLUMNS' trace_id and span_id, after the leading time
            entries.append(((micros(row[0]), session_reader.SPAN, (row[4], row[5])), row))
        if len(spans) > limit:
            bounds.append(entries[-1][0])
        for row in logs:
            log = LogRow(*row)
            entries.append(((log.time_us, session_reader.LOG, place_order(log.place)), log))
        if len(logs) > limit:
            bounds.append(entries[-1][0])
        for row in exemplars:
            entries.append(((micros(row[0]), session_reader.EXEMPLAR, place_order(row[1])), row))
        if len(exemplars) > limit:
            bounds.append(entries[-1][0])
        after = _key(position)
        key: SortKey
        for row in cold.spans:
            key = (micros(row[0]), session_reader.SPAN, (row[4], row[5]))
            if after is None or key > after:
                entries.append((key, row))
        for log in cold.logs:
            key = (log.time_us, session_reader.LOG, place_order(log.place))
            if after is None or key > after:
                entries.append((key, log))
        for row in cold.exemplars:
            key = (micros(row[0]), session_reader.EXEMPLAR, place_order(row[1]))
            if after is None or key > after:
                entries.append((key, row))

        entries.sort(key=lambda entry: entry[0])
        bound = min(bounds) if bounds else None
        page: list[tuple[SortKey, Any]] = []
        more = bound is not None
        for entry in entries:
            if page and page[-1][0] == entry[0]:
                continue  # another copy of the same span
            if (bound is not None and entry[0] > bound) or len(page) == limit:
                more = True
                break
            page.append(entry)

        response = pb.GetSessionTimelineResponse()
        services = {session_service} if session_service else set()
        for (_, kind, _), row in page:
            item = response.items.add()
            if kind == session_reader.SPAN:
                span = SpanRow(*row[1:])
                convert.fill_span(item.span, span)
                item.time.CopyFrom(item.span.start_time)
                services.add(span.service_name or "")
            elif kind == session_reader.LOG:
                convert.fill_log_record(item.log, row)
                item.time.CopyFrom(item.log.time)
                services.add(row.service_name or "")
            else:
                when, _, time_ns, metric, service, value, trace_id, span_id = row
                exemplar = item.exemplar
                exemplar.metric_name = metric
                exemplar.service = service or ""
                exemplar.value = value if value is not None else 0.0
                exemplar.trace_id = trace_id or b""
                exemplar.span_id = span_id or b""
                convert.set_timestamp(item.time, time_ns or micros(when) * 1000)
                services.add(service or "")
        services.discard("")
        session = response.session
        session.session_id = session_id
        session.project_id = project
        session.user_id = user_id or ""
        session.services.extend(sorted(services))
        first_us, last_us = micros(first_seen), micros(last_seen)
        if page:
            # The sessions row keeps last_seen to within a minute (the writer's
            # SessionLedger writes a sighting only when it is that much newer): the items
            # shown were seen when they happened, so the answer never ends before them.
            first_us = min(first_us, page[0][0][0])
            last_us = max(last_us, page[-1][0][0])
        convert.set_timestamp(session.first_seen, first_us * 1000)
        convert.set_timestamp(session.last_seen, last_us * 1000)
        if more and page:
            response.next_page_token = tokens.encode("timeline", bound_to, _cursor(page[-1][0]))
        return response


def _cursor(key: SortKey) -> list[Any]:
    time_us, kind, tiebreak = key
    if kind == session_reader.SPAN:
        return [time_us, kind, tiebreak[0].hex(), tiebreak[1].hex()]
    tier, a, b = tiebreak
    return [time_us, kind, f"c{a}.{b}" if tier == COLD else f"({a},{b})"]


def _key(position: session_reader.Position | None) -> SortKey | None:
    """The sort key of the item a position names."""
    if position is None:
        return None
    time_us = micros(position.time)
    if position.kind == session_reader.SPAN:
        return (time_us, position.kind, tuple(position.key))
    return (time_us, position.kind, place_order(position.place))


def _position(cursor: list[Any] | None) -> session_reader.Position | None:
    """The position a timeline token holds; ``BadArgument`` for one that is not ours."""
    if cursor is None:
        return None
    try:
        time_us, kind = cursor[0], cursor[1]
        if not isinstance(time_us, int) or kind not in (0, 1, 2) or isinstance(kind, bool):
            raise TypeError
        when = datetime_from_ns(time_us * 1000)
        if kind == session_reader.SPAN:
            _, _, trace_hex, span_hex = cursor
            return session_reader.Position(
                when, kind, (bytes.fromhex(trace_hex), bytes.fromhex(span_hex))
            )
        _, _, place = cursor
        if not isinstance(place, str) or not _PLACE.fullmatch(place):
            raise TypeError
        # A cold place sorts before every hot row of its microsecond: the hot rows of the
        # kind from that time on come after it (session_reader reads them from ``time``).
        hot = () if place_order(place)[0] == COLD else (place,)
        return session_reader.Position(when, kind, hot, place)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise BadArgument("page_token", "is not a token this server issued") from exc
