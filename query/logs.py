"""SearchLogs, GetLogContext and GetLogVolume."""

from __future__ import annotations

from query.call import QueryCall
from query.proto import pb
from query.settings import QuerySettings


class LogQueries:
    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def search(self, call: QueryCall, request: pb.SearchLogsRequest) -> pb.SearchLogsResponse:
        raise NotImplementedError

    async def context(
        self, call: QueryCall, request: pb.GetLogContextRequest
    ) -> pb.GetLogContextResponse:
        raise NotImplementedError

    async def volume(
        self, call: QueryCall, request: pb.GetLogVolumeRequest
    ) -> pb.GetLogVolumeResponse:
        raise NotImplementedError
