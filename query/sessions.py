"""GetSessionTimeline: everything one session produced, spans, logs and exemplars merged
oldest first, one keyset page at a time.

Each kind is read after the page's position (``storage.postgres.session_reader`` defines
the shared order) up to ``limit + 1`` rows, and the three are merged here. A kind that
had more rows than it returned bounds the page: nothing past its last row may be listed,
since rows of that kind further on were not read. Copies of a retried span share their
sort key exactly, so they collapse to one item, also across a page boundary (the next
page starts strictly after the key).
"""

from __future__ import annotations

from typing import Any

from otlpd.errors import BadArgument, NotFound
from query import arguments, convert, tokens
from query.call import QueryCall
from query.proto import pb
from query.settings import QuerySettings
from storage.postgres import session_reader
from storage.postgres.partitions import datetime_from_ns
from storage.postgres.records import LogRow, SpanRow, micros

DEFAULT_LIMIT = 1000

# (time µs, kind, tiebreak): the order of session_reader, comparable in Python (a ctid
# as (block, offset) numbers, as PostgreSQL orders tids).
SortKey = tuple[int, int, tuple[Any, ...]]


def _ctid(text: str) -> tuple[int, int]:
    block, offset = text.strip("()").split(",")
    return int(block), int(offset)


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
        found, spans, logs, exemplars = await call.fetch_many(
            [
                session_reader.session(project, session_id),
                session_reader.spans(project, session_id, position, limit + 1),
                session_reader.logs(project, session_id, position, limit + 1),
                session_reader.exemplars(project, session_id, position, limit + 1),
            ]
        )
        if not found:
            raise NotFound("no session with this session_id in the project")
        user_id, session_service, first_seen, last_seen = found[0]

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
            entries.append(((log.time_us, session_reader.LOG, _ctid(log.place)), log))
        if len(logs) > limit:
            bounds.append(entries[-1][0])
        for row in exemplars:
            entries.append(((micros(row[0]), session_reader.EXEMPLAR, _ctid(row[1])), row))
        if len(exemplars) > limit:
            bounds.append(entries[-1][0])

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
                item.span.CopyFrom(convert.span(span))
                item.time.CopyFrom(item.span.start_time)
                services.add(span.service_name or "")
            elif kind == session_reader.LOG:
                item.log.CopyFrom(convert.log_record(row))
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
        convert.set_timestamp(response.session.first_seen, micros(first_seen) * 1000)
        convert.set_timestamp(response.session.last_seen, micros(last_seen) * 1000)
        if more and page:
            response.next_page_token = tokens.encode("timeline", bound_to, _cursor(page[-1][0]))
        return response


def _cursor(key: SortKey) -> list[Any]:
    time_us, kind, tiebreak = key
    if kind == session_reader.SPAN:
        return [time_us, kind, tiebreak[0].hex(), tiebreak[1].hex()]
    return [time_us, kind, f"({tiebreak[0]},{tiebreak[1]})"]


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
        _, _, ctid = cursor
        block, offset = _ctid(ctid)
        return session_reader.Position(when, kind, (f"({block},{offset})",))
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise BadArgument("page_token", "is not a token this server issued") from exc
