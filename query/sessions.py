"""GetSessionTimeline."""

from __future__ import annotations

from query.call import QueryCall
from query.proto import pb
from query.settings import QuerySettings


class SessionQueries:
    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def timeline(
        self, call: QueryCall, request: pb.GetSessionTimelineRequest
    ) -> pb.GetSessionTimelineResponse:
        raise NotImplementedError
