"""SearchTraces, GetTrace, ListServices and ListOperations."""

from __future__ import annotations

from query.call import QueryCall
from query.proto import pb
from query.settings import QuerySettings


class TraceQueries:
    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def search(
        self, call: QueryCall, request: pb.SearchTracesRequest
    ) -> pb.SearchTracesResponse:
        raise NotImplementedError

    async def get(self, call: QueryCall, request: pb.GetTraceRequest) -> pb.GetTraceResponse:
        raise NotImplementedError

    async def services(
        self, call: QueryCall, request: pb.ListServicesRequest
    ) -> pb.ListServicesResponse:
        raise NotImplementedError

    async def operations(
        self, call: QueryCall, request: pb.ListOperationsRequest
    ) -> pb.ListOperationsResponse:
        raise NotImplementedError
