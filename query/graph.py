"""GetServiceGraph: which service calls which, how often, how often failing, how fast.

Read from the spans of the range (``storage.postgres.graph_reader``), not from rollups:
an edge needs both spans of a call, which arrive from two services in two exports at
any time; joining them when asked is exact and needs no state. The p95 is the callee's
span duration (the server side of the call), computed exactly.
"""

from __future__ import annotations

from typing import Final

from otlpd.errors import BadArgument
from query import arguments, tokens
from query.call import QueryCall
from query.convert import set_duration
from query.proto import pb
from query.settings import QuerySettings
from storage.postgres import graph_reader
from storage.postgres.partitions import datetime_from_ns

EDGES_DEFAULT_LIMIT: Final = 1000


class ServiceGraphQueries:
    """GetServiceGraph over the hot tier; stateless."""

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
        rows = await call.fetch(
            *graph_reader.edges(
                call.project,
                start=datetime_from_ns(window.start_ns),
                # spans.time is the start truncated to microseconds (see query.traces)
                end=datetime_from_ns(window.end_ns + 999),
                service=service,
                after=after,
                limit=limit + 1,
            )
        )
        page = rows[:limit]
        response = pb.GetServiceGraphResponse()
        names: set[str] = set()
        for caller, callee, calls, errors, p95 in page:
            edge = response.edges.add(caller=caller, callee=callee, calls=calls, errors=errors)
            set_duration(edge.p95, round(p95 or 0))
            names.update((caller, callee))
        response.services.extend(sorted(names))
        if len(rows) > limit:
            response.next_page_token = tokens.encode("graph", bound_to, list(page[-1][:2]))
        return response
