"""OTLP/gRPC: TraceService, LogsService and MetricsService ``Export`` on grpc.aio.

The handlers take the raw request bytes (no deserializer): grpcio would answer a body
it cannot parse with INTERNAL, which OTLP clients do not understand, while we must say
INVALID_ARGUMENT, or store the valid part of a request that is only partly broken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from otlpd.errors import OtlpdError, grpc_status, internal_fault
from otlpd.instruments import Instruments
from otlpd.receiver.ingest import Ingest, Outcome
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


Handler = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


class OtlpGrpcReceiver:
    """Builds the three OTLP services' handlers around one Ingest."""

    def __init__(self, ingest: Ingest, instruments: Instruments) -> None:
        self._ingest = ingest
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
                {"Export": grpc.unary_unary_rpc_method_handler(self._export(signal, respond))},
            )
            for service, signal, respond in table
        ]

    def _export(self, signal: str, respond: Callable[[Outcome], bytes]) -> Handler:
        ingest = self._ingest
        requests = self._metrics.requests
        latency = self._metrics.request_seconds.labels(signal)
        sizes = self._metrics.request_bytes.labels(signal)

        async def export(payload: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            started = time.perf_counter()
            sizes.observe(len(payload))
            try:
                outcome = await ingest.export(signal, payload)
            except OtlpdError as exc:
                code, message, trailers = grpc_status(exc)
                requests.labels(signal, code.name).inc()
                latency.observe(time.perf_counter() - started)
                await context.abort(code, message, trailing_metadata=trailers)
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
                code, message, trailers = grpc_status(internal_fault(1.0))
                requests.labels(signal, code.name).inc()
                latency.observe(time.perf_counter() - started)
                await context.abort(code, message, trailing_metadata=trailers)
            requests.labels(signal, "OK").inc()
            latency.observe(time.perf_counter() - started)
            return respond(outcome)

        return export
