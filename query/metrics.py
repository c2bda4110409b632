"""QueryMetrics and ListMetrics."""

from __future__ import annotations

from query.call import QueryCall
from query.proto import pb
from query.settings import QuerySettings


class MetricQueries:
    def __init__(self, settings: QuerySettings) -> None:
        self._settings = settings

    async def query(
        self, call: QueryCall, request: pb.QueryMetricsRequest
    ) -> pb.QueryMetricsResponse:
        raise NotImplementedError

    async def list(self, call: QueryCall, request: pb.ListMetricsRequest) -> pb.ListMetricsResponse:
        raise NotImplementedError
