"""The QueryService servicer: scope, deadline and errors for every RPC, in one place.

Each RPC resolves its project (``query.scope``), builds a ``QueryCall`` carrying the
client's deadline, and hands over to the query module of its kind (``query.logs``,
``query.traces``, ``query.metrics``, ``query.sessions``, ``query.tail``, and the
insights: ``query.red``, ``query.graph``, ``query.latency``, ``query.anomalies``,
``query.spikes``, ``query.patterns``). Whatever they raise is answered here:
``otlpd.errors`` through ``grpc_status``; anything unexpected is logged with its
traceback and answered UNAVAILABLE, never INTERNAL, and never with our own words
(tables, SQL) in the message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from otlpd.errors import OtlpdError, grpc_status, internal_fault
from otlpd.instruments import Instruments
from query.anomalies import AnomalyQueries
from query.call import QueryCall
from query.coldtier import ColdTier
from query.graph import ServiceGraphQueries
from query.latency import LatencyQueries
from query.logs import LogQueries
from query.metrics import MetricQueries
from query.patterns import LogPatternQueries
from query.proto import pb, pb_grpc
from query.red import ServiceStatsQueries
from query.scope import ProjectScope
from query.sessions import SessionQueries
from query.settings import QuerySettings
from query.spikes import ErrorSpikeQueries
from query.tail import LogTail
from query.traces import TraceQueries
from storage.postgres.reading import ReadPool

log = logging.getLogger(__name__)

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)
Context = grpc.aio.ServicerContext[Any, Any]


def _report_cold(response: Message, call: QueryCall) -> None:
    """Fills the answer's ``ColdRead`` (where it has one) with what the call read cold."""
    stats = call.cold_stats
    if stats.objects and "cold" in response.DESCRIPTOR.fields_by_name:
        report = response.cold  # type: ignore[attr-defined]
        report.objects, report.row_groups, report.bytes = (
            stats.objects,
            stats.row_groups,
            stats.bytes,
        )


class QueryServicer(pb_grpc.QueryServiceServicer):
    """``otlpd.query.v1.QueryService`` over the hot tier and, with ``cold``, the cold one."""

    def __init__(
        self,
        pool: ReadPool,
        scope: ProjectScope,
        settings: QuerySettings,
        tail: LogTail,
        instruments: Instruments,
        *,
        cold: ColdTier | None = None,
    ) -> None:
        self._pool = pool
        self._cold = cold
        self._scope = scope
        self._settings = settings
        self._metrics = instruments
        self.logs = LogQueries(settings)
        self.traces = TraceQueries(settings)
        self.metrics = MetricQueries(settings)
        self.sessions = SessionQueries(settings)
        self.tail = tail
        self.stats = ServiceStatsQueries(settings)
        self.graph = ServiceGraphQueries(settings)
        self.latency = LatencyQueries(settings)
        self.anomalies = AnomalyQueries(settings, self.metrics, self.stats)
        self.spikes = ErrorSpikeQueries(settings)
        self.patterns = LogPatternQueries(settings)

    async def _call(self, context: Context, request: Message) -> QueryCall:
        requested = getattr(request, "project_id", "")
        project = await self._scope.project(tuple(context.invocation_metadata() or ()), requested)
        remaining = context.time_remaining()
        return QueryCall(
            project=project,
            pool=self._pool,
            budget=self._settings.budget,
            retry_after=self._settings.retry_after,
            deadline=None if remaining is None else time.monotonic() + remaining,
            cold=self._cold,
        )

    def _failure(
        self, rpc: str, exc: Exception
    ) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
        """The status that answers ``exc``: ours through ``grpc_status``; anything else is
        logged with its traceback and answered as our fault (UNAVAILABLE, retryable)."""
        if isinstance(exc, OtlpdError):
            return grpc_status(exc)
        log.error("query %s failed", rpc, exc_info=exc)
        return grpc_status(internal_fault(self._settings.retry_after))

    async def _answer(
        self,
        rpc: str,
        request: Request,
        context: Context,
        handler: Callable[[QueryCall, Request], Awaitable[Response]],
    ) -> Response:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            call = await self._call(context, request)
            response = await handler(call, request)
            _report_cold(response, call)
            return response
        except Exception as exc:
            code, message, trailers = self._failure(rpc, exc)
        finally:
            self._metrics.query_requests.labels(rpc, code.name).inc()
            self._metrics.query_seconds.labels(rpc).observe(time.perf_counter() - started)
        context.set_trailing_metadata(trailers)
        await context.abort(code, message)
        raise AssertionError("abort returns only by raising")

    async def SearchLogs(
        self, request: pb.SearchLogsRequest, context: Context
    ) -> pb.SearchLogsResponse:
        return await self._answer("SearchLogs", request, context, self.logs.search)

    async def GetLogContext(
        self, request: pb.GetLogContextRequest, context: Context
    ) -> pb.GetLogContextResponse:
        return await self._answer("GetLogContext", request, context, self.logs.context)

    async def GetLogVolume(
        self, request: pb.GetLogVolumeRequest, context: Context
    ) -> pb.GetLogVolumeResponse:
        return await self._answer("GetLogVolume", request, context, self.logs.volume)

    async def SearchTraces(
        self, request: pb.SearchTracesRequest, context: Context
    ) -> pb.SearchTracesResponse:
        return await self._answer("SearchTraces", request, context, self.traces.search)

    async def GetTrace(self, request: pb.GetTraceRequest, context: Context) -> pb.GetTraceResponse:
        return await self._answer("GetTrace", request, context, self.traces.get)

    async def ListServices(
        self, request: pb.ListServicesRequest, context: Context
    ) -> pb.ListServicesResponse:
        return await self._answer("ListServices", request, context, self.traces.services)

    async def ListOperations(
        self, request: pb.ListOperationsRequest, context: Context
    ) -> pb.ListOperationsResponse:
        return await self._answer("ListOperations", request, context, self.traces.operations)

    async def QueryMetrics(
        self, request: pb.QueryMetricsRequest, context: Context
    ) -> pb.QueryMetricsResponse:
        return await self._answer("QueryMetrics", request, context, self.metrics.query)

    async def ListMetrics(
        self, request: pb.ListMetricsRequest, context: Context
    ) -> pb.ListMetricsResponse:
        return await self._answer("ListMetrics", request, context, self.metrics.list)

    async def GetSessionTimeline(
        self, request: pb.GetSessionTimelineRequest, context: Context
    ) -> pb.GetSessionTimelineResponse:
        return await self._answer("GetSessionTimeline", request, context, self.sessions.timeline)

    async def GetServiceStats(
        self, request: pb.GetServiceStatsRequest, context: Context
    ) -> pb.GetServiceStatsResponse:
        return await self._answer("GetServiceStats", request, context, self.stats.stats)

    async def GetServiceGraph(
        self, request: pb.GetServiceGraphRequest, context: Context
    ) -> pb.GetServiceGraphResponse:
        return await self._answer("GetServiceGraph", request, context, self.graph.graph)

    async def GetLatencyHistogram(
        self, request: pb.GetLatencyHistogramRequest, context: Context
    ) -> pb.GetLatencyHistogramResponse:
        return await self._answer("GetLatencyHistogram", request, context, self.latency.histogram)

    async def DetectAnomalies(
        self, request: pb.DetectAnomaliesRequest, context: Context
    ) -> pb.DetectAnomaliesResponse:
        return await self._answer("DetectAnomalies", request, context, self.anomalies.detect)

    async def GetErrorSpikes(
        self, request: pb.GetErrorSpikesRequest, context: Context
    ) -> pb.GetErrorSpikesResponse:
        return await self._answer("GetErrorSpikes", request, context, self.spikes.spikes)

    async def GetLogPatterns(
        self, request: pb.GetLogPatternsRequest, context: Context
    ) -> pb.GetLogPatternsResponse:
        return await self._answer("GetLogPatterns", request, context, self.patterns.patterns)

    async def TailLogs(
        self, request: pb.TailLogsRequest, context: Context
    ) -> AsyncIterator[pb.TailLogsResponse]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        trailers: tuple[tuple[str, bytes], ...] = ()
        message = ""
        try:
            call = await self._call(context, request)
            async for response in self.tail.stream(call, request):
                yield response
        except Exception as exc:
            code, message, trailers = self._failure("TailLogs", exc)
        finally:
            self._metrics.query_requests.labels("TailLogs", code.name).inc()
            self._metrics.query_seconds.labels("TailLogs").observe(time.perf_counter() - started)
        if code is not grpc.StatusCode.OK:
            context.set_trailing_metadata(trailers)
            await context.abort(code, message)
