"""The AlertService servicer: scope, errors and metrics for every RPC, in one place.

It serves on the query port (4319) next to QueryService, scoped exactly as the query API
is (``query.scope.TokenScope``: a ``query`` token reads and writes its own project, an
``admin`` token may name any). Each RPC resolves its caller (project and actor) and
hands over to the module of its kind: ``alerting.channels``, ``alerting.rules``,
``alerting.silences`` and ``alerting.activity`` (alerts, events, notifications,
incidents). Whatever they raise is answered here: ``otlpd.errors`` through
``grpc_status``; anything unexpected is logged with its traceback and answered
UNAVAILABLE, never INTERNAL, and never with our own words (tables, SQL) in the message.
An RPC of the contract that nothing serves yet answers UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from alerting.proto import pb, pb_grpc
from otlpd.errors import OtlpdError, Unimplemented, from_storage, grpc_status, internal_fault
from otlpd.instruments import Instruments
from query.scope import Caller, Metadata
from storage.api import StorageError

log = logging.getLogger(__name__)

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)
Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[Caller, Any], Awaitable[Any]]


class CallerScope(Protocol):
    """Who calls and for which project (``query.scope.TokenScope``)."""

    async def caller(self, metadata: Metadata, requested: str) -> Caller: ...


class AlertServicer(pb_grpc.AlertServiceServicer):
    """``otlpd.alerting.v1.AlertService``. ``handlers`` maps an RPC name to the coroutine
    that serves it; the others answer UNIMPLEMENTED."""

    def __init__(
        self,
        scope: CallerScope,
        handlers: dict[str, Handler],
        instruments: Instruments,
        *,
        retry_after: float = 1.0,
    ) -> None:
        self._scope = scope
        self._handlers = handlers
        self._metrics = instruments
        self._retry_after = retry_after

    async def _answer(self, rpc: str, request: Request, context: Context) -> Any:
        code = grpc.StatusCode.OK
        try:
            handler = self._handlers.get(rpc)
            caller = await self._scope.caller(
                tuple(context.invocation_metadata() or ()), getattr(request, "project_id", "")
            )
            if handler is None:
                raise Unimplemented(f"AlertService.{rpc} is not implemented by this server yet")
            return await handler(caller, request)
        except Exception as exc:
            code, message, trailers = self._failure(rpc, exc)
        finally:
            self._metrics.alert_requests.labels(rpc, code.name).inc()
        context.set_trailing_metadata(trailers)
        await context.abort(code, message)
        raise AssertionError("abort returns only by raising")

    def _failure(
        self, rpc: str, exc: Exception
    ) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
        if isinstance(exc, OtlpdError):
            return grpc_status(exc)
        if isinstance(exc, StorageError):  # logged under a reference; the client gets that
            return grpc_status(from_storage(exc, self._retry_after))
        log.error("alerting %s failed", rpc, exc_info=exc)
        return grpc_status(internal_fault(self._retry_after))

    async def CreateChannel(
        self, request: pb.CreateChannelRequest, context: Context
    ) -> pb.CreateChannelResponse:
        return await self._answer("CreateChannel", request, context)  # type: ignore[no-any-return]

    async def ListChannels(
        self, request: pb.ListChannelsRequest, context: Context
    ) -> pb.ListChannelsResponse:
        return await self._answer("ListChannels", request, context)  # type: ignore[no-any-return]

    async def UpdateChannel(
        self, request: pb.UpdateChannelRequest, context: Context
    ) -> pb.UpdateChannelResponse:
        return await self._answer("UpdateChannel", request, context)  # type: ignore[no-any-return]

    async def DeleteChannel(
        self, request: pb.DeleteChannelRequest, context: Context
    ) -> pb.DeleteChannelResponse:
        return await self._answer("DeleteChannel", request, context)  # type: ignore[no-any-return]

    async def CreateRule(
        self, request: pb.CreateRuleRequest, context: Context
    ) -> pb.CreateRuleResponse:
        return await self._answer("CreateRule", request, context)  # type: ignore[no-any-return]

    async def GetRule(self, request: pb.GetRuleRequest, context: Context) -> pb.GetRuleResponse:
        return await self._answer("GetRule", request, context)  # type: ignore[no-any-return]

    async def ListRules(
        self, request: pb.ListRulesRequest, context: Context
    ) -> pb.ListRulesResponse:
        return await self._answer("ListRules", request, context)  # type: ignore[no-any-return]

    async def UpdateRule(
        self, request: pb.UpdateRuleRequest, context: Context
    ) -> pb.UpdateRuleResponse:
        return await self._answer("UpdateRule", request, context)  # type: ignore[no-any-return]

    async def DeleteRule(
        self, request: pb.DeleteRuleRequest, context: Context
    ) -> pb.DeleteRuleResponse:
        return await self._answer("DeleteRule", request, context)  # type: ignore[no-any-return]

    async def TestRule(self, request: pb.TestRuleRequest, context: Context) -> pb.TestRuleResponse:
        return await self._answer("TestRule", request, context)  # type: ignore[no-any-return]

    async def ListAlerts(
        self, request: pb.ListAlertsRequest, context: Context
    ) -> pb.ListAlertsResponse:
        return await self._answer("ListAlerts", request, context)  # type: ignore[no-any-return]

    async def ListAlertEvents(
        self, request: pb.ListAlertEventsRequest, context: Context
    ) -> pb.ListAlertEventsResponse:
        return await self._answer("ListAlertEvents", request, context)  # type: ignore[no-any-return]

    async def AcknowledgeAlert(
        self, request: pb.AcknowledgeAlertRequest, context: Context
    ) -> pb.AcknowledgeAlertResponse:
        return await self._answer("AcknowledgeAlert", request, context)  # type: ignore[no-any-return]

    async def CreateSilence(
        self, request: pb.CreateSilenceRequest, context: Context
    ) -> pb.CreateSilenceResponse:
        return await self._answer("CreateSilence", request, context)  # type: ignore[no-any-return]

    async def ListSilences(
        self, request: pb.ListSilencesRequest, context: Context
    ) -> pb.ListSilencesResponse:
        return await self._answer("ListSilences", request, context)  # type: ignore[no-any-return]

    async def DeleteSilence(
        self, request: pb.DeleteSilenceRequest, context: Context
    ) -> pb.DeleteSilenceResponse:
        return await self._answer("DeleteSilence", request, context)  # type: ignore[no-any-return]

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        return await self._answer("ListNotifications", request, context)  # type: ignore[no-any-return]

    async def ListIncidents(
        self, request: pb.ListIncidentsRequest, context: Context
    ) -> pb.ListIncidentsResponse:
        return await self._answer("ListIncidents", request, context)  # type: ignore[no-any-return]

    async def GetIncident(
        self, request: pb.GetIncidentRequest, context: Context
    ) -> pb.GetIncidentResponse:
        return await self._answer("GetIncident", request, context)  # type: ignore[no-any-return]

    async def UpdateIncident(
        self, request: pb.UpdateIncidentRequest, context: Context
    ) -> pb.UpdateIncidentResponse:
        return await self._answer("UpdateIncident", request, context)  # type: ignore[no-any-return]
