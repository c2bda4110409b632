"""OTLP/gRPC: TraceService, LogsService and MetricsService ``Export`` on grpc.aio.

The handlers take the raw request bytes (no deserializer): grpcio would answer a body
it cannot parse with INTERNAL, which OTLP clients do not understand, while we must say
INVALID_ARGUMENT, or store the valid part of a request that is only partly broken.

``Export`` is unary, but it is served by a *stream-unary* handler (the two are the same
on the wire) that reads its one message itself, through ``context.read()``, when
``Ingest`` asks for it (``_Body``). A unary handler is given a request that grpc.aio
has already read, and grpc.aio keeps it referenced in its own frame until the handler
returns, that is until the commit: an Export would hold its request bytes next to its
rows, and every call that arrives would be read at once, before any admission.
Reading on demand leaves the body in the client (HTTP/2 flow control; see
``app._grpc_options``) until the decode budget has room for it, and lets ``Ingest`` drop
it as soon as its rows are built.

The caller is authenticated from the ``authorization`` metadata (``Bearer <token>``)
before anything is read: a refused call costs a dictionary lookup and a hash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from otlpd.access import Authenticator, Scope
from otlpd.errors import OtlpdError, grpc_status, internal_fault
from otlpd.instruments import Instruments
from otlpd.receiver.ingest import CallEnded, Ingest, Outcome
from storage.model import Signal

log = logging.getLogger(__name__)

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
SERVICE_NAMES = (TRACE_SERVICE, LOGS_SERVICE, METRICS_SERVICE)


def _responder(response_type: type[Message], rejected_field: str) -> Callable[[Outcome], bytes]:
    """Serializes an Outcome as ``response_type``, with partial success when there is any."""

    def respond(outcome: Outcome) -> bytes:
        response = response_type()
        if outcome.rejected or outcome.error_message:
            partial = response.partial_success  # type: ignore[attr-defined]
            setattr(partial, rejected_field, outcome.rejected)
            partial.error_message = outcome.error_message
        return response.SerializeToString()

    return respond


Context = grpc.aio.ServicerContext[bytes, bytes]
Handler = Callable[[AsyncIterator[bytes], Context], Awaitable[bytes]]
# How a failed Export is answered: code (None: answered already, not counted), message,
# trailing metadata.
Failure = tuple[grpc.StatusCode | None, str, tuple[tuple[str, bytes], ...]]


class _Body:
    """The request of one Export call, read from the call when Ingest asks for it."""

    __slots__ = ("_context", "_observe")

    def __init__(self, context: Context, observe: Callable[[float], None]) -> None:
        self._context = context
        self._observe = observe

    async def read(self) -> bytes:
        """The one message of the call (after gunzip); CallEnded if there is none: the
        call is over (grpc answered RESOURCE_EXHAUSTED to a request over the limit, or
        the client went away)."""
        message = await self._context.read()
        if not isinstance(message, bytes):  # grpc.aio.EOF
            raise CallEnded("the call ended before its request arrived")
        self._observe(len(message))
        return message


def _authorization(context: Context) -> str | bytes | None:
    """The call's ``authorization`` metadata value (gRPC keys are lowercase)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value
    return None


class OtlpGrpcReceiver:
    """Builds the three OTLP services' handlers around one Ingest."""

    def __init__(self, ingest: Ingest, access: Authenticator, instruments: Instruments) -> None:
        self._ingest = ingest
        self._access = access
        self._metrics = instruments

    def handlers(self) -> list[grpc.GenericRpcHandler[bytes, bytes]]:
        """Generic handlers for ``server.add_generic_rpc_handlers``."""
        table = (
            (
                TRACE_SERVICE,
                Signal.TRACES,
                _responder(trace_service_pb2.ExportTraceServiceResponse, "rejected_spans"),
            ),
            (
                LOGS_SERVICE,
                Signal.LOGS,
                _responder(logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records"),
            ),
            (
                METRICS_SERVICE,
                Signal.METRICS,
                _responder(
                    metrics_service_pb2.ExportMetricsServiceResponse, "rejected_data_points"
                ),
            ),
        )
        return [
            grpc.method_handlers_generic_handler(
                service,
                {"Export": grpc.stream_unary_rpc_method_handler(self._export(signal, respond))},
            )
            for service, signal, respond in table
        ]

    def _export(self, signal: str, respond: Callable[[Outcome], bytes]) -> Handler:
        ingest = self._ingest
        authorize = self._access.authorize
        requests = self._metrics.requests
        latency = self._metrics.request_seconds.labels(signal)
        sizes = self._metrics.request_bytes.labels(signal)
        active = self._metrics.exports_active

        async def export(_: AsyncIterator[bytes], context: Context) -> bytes:
            started = time.perf_counter()
            active.inc()
            try:
                failure = await attempt(context, started)
            finally:
                active.dec()
            if isinstance(failure, bytes):
                return failure
            # Answered here, out of the except clauses of ``attempt``: the exception (and
            # its traceback, whose frames held the request) is gone before the answer.
            code, message, trailers = failure
            if code is not None:
                requests.labels(signal, code.name).inc()
                latency.observe(time.perf_counter() - started)
            await context.abort(
                code or grpc.StatusCode.INVALID_ARGUMENT, message, trailing_metadata=trailers
            )
            raise AssertionError("unreachable: abort raises")

        async def attempt(context: Context, started: float) -> bytes | Failure:
            """The response, or the status to answer with (no code: do not count it)."""
            try:
                principal = await authorize(_authorization(context), Scope.INGEST)
                outcome = await ingest.export(signal, _Body(context, sizes.observe), principal)
            except CallEnded:
                # Nothing to answer: grpc has (a request over the limit), or nobody
                # listens. grpc.aio never calls a unary handler then: not counted either.
                log.debug("export call ended before its request arrived")
                return None, "no request message", ()
            except OtlpdError as exc:
                return grpc_status(exc)
            except asyncio.CancelledError:
                # The client cancelled, or its deadline passed, while the Export waited
                # (for decoding or its commit); the rows may still commit (at-least-once).
                requests.labels(signal, "CANCELLED").inc()
                log.debug("export cancelled while waiting", extra={"signal": signal})
                raise
            except Exception:
                # Input must never crash the server; a bug still answers, retryably (the
                # fault is ours, and a permanent code makes clients drop the data).
                log.exception("export failed unexpectedly", extra={"signal": signal})
                return grpc_status(internal_fault(1.0))
            requests.labels(signal, "OK").inc()
            latency.observe(time.perf_counter() - started)
            return respond(outcome)

        return export
