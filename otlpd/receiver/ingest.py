"""One Export, whatever the transport: admit, decode, complete sessions, store, count.

The gRPC receiver (and the OTLP/HTTP one to come) only translate between their wire and
this: they hand over the serialized request and get back the partial-success counts, or
an ``otlpd.errors`` exception that ``otlpd.errors`` maps to a status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlpd.envelope import SessionCache
from otlpd.errors import (
    InvalidRequest,
    OtlpdError,
    Overloaded,
    RetryableError,
    ShuttingDown,
    from_storage,
    internal_fault,
)
from otlpd.instruments import Instruments
from otlpd.pipeline.looplag import LoopLag
from otlpd.receiver.decode import Decoded, Decoder
from storage.api import SessionDirectory, StorageError
from storage.model import RowBatch, Signal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Shedding:
    """Refuses new Exports while the event loop lags (see pipeline.looplag)."""

    lag: LoopLag
    max_lag: float
    retry_after: float

    def check(self) -> None:
        """Raises Overloaded if decoding is more than ``max_lag`` seconds behind."""
        lag = self.lag.seconds
        if lag > self.max_lag:
            raise Overloaded(
                f"otlpd is {lag:.2f}s behind on decoding (limit {self.max_lag:g}s); retry later",
                self.retry_after,
            )


class RowSink(Protocol):
    """Where decoded rows go: returns once they are committed (see pipeline.batcher)."""

    def admit(self, rows: int, size: int) -> None:
        """Raises a RetryableError if a request of this size would be refused now."""
        ...

    async def submit(self, batch: RowBatch, size: int) -> None:
        """Stores ``batch`` durably, or raises an OtlpdError and stores none of it."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a successful Export reports back: the OTLP partial success."""

    rejected: int
    error_message: str


class Ingest:
    """The receiver-side pipeline shared by every transport."""

    def __init__(
        self,
        decoder: Decoder,
        sessions: SessionCache,
        directory: SessionDirectory,
        sink: RowSink,
        instruments: Instruments,
        *,
        shedding: Shedding,
    ) -> None:
        self._shedding = shedding
        self._sessions = sessions
        self._directory = directory
        self._sink = sink
        self._metrics = instruments
        self._decoders: dict[str, Callable[[bytes, int], Decoded]] = {
            Signal.TRACES: decoder.traces,
            Signal.LOGS: decoder.logs,
            Signal.METRICS: decoder.metrics,
        }

    async def export(self, signal: str, payload: bytes) -> Outcome:
        """Stores what is valid in ``payload`` and says what was rejected and why.

        Raises an ``OtlpdError`` only: a fault of the input is ``InvalidRequest`` or
        ``RejectedByStore``; every fault of ours (PostgreSQL, a bug) is retryable. Every
        record of a refused or failed request is counted in ``otlpd_records_total``.
        """
        records = self._metrics.records
        try:
            # Refuse before decoding: an overloaded server must not spend CPU on work it
            # is about to throw away.
            self._shedding.check()
            self._sink.admit(1, len(payload))
        except RetryableError:
            records.labels(signal, "refused").inc(count_records(signal, payload))
            raise
        try:
            decoded = await self._decode(signal, payload)
        except InvalidRequest:
            records.labels(signal, "rejected").inc()
            raise
        except RetryableError:
            records.labels(signal, "failed").inc(count_records(signal, payload))
            raise
        if decoded.rejected:
            records.labels(signal, "rejected").inc(decoded.rejected)
        batch = decoded.batch
        count = batch.row_count
        if count:
            try:
                await self._sink.submit(batch, len(payload))
            except (Overloaded, ShuttingDown):
                records.labels(signal, "refused").inc(count)
                raise
            except OtlpdError:
                records.labels(signal, "failed").inc(count)
                raise
            except Exception as exc:  # a bug must answer retryably, never strand the call
                log.exception("storing an export failed unexpectedly", extra={"signal": signal})
                records.labels(signal, "failed").inc(count)
                raise internal_fault(self._shedding.retry_after) from exc
            records.labels(signal, "accepted").inc(count)
        return Outcome(decoded.rejected, decoded.error_message)

    async def _decode(self, signal: str, payload: bytes) -> Decoded:
        """Decodes ``payload``, completing its sessions from the directory when needed."""
        decode = self._decoders[signal]
        now = time.time_ns()
        try:
            decoded = decode(payload, now)
            if decoded.unresolved_sessions:
                # Records that name only a session: ask PostgreSQL once who owns those
                # sessions, then decode again with the cache warm (rare, so simple).
                asked = decoded.unresolved_sessions
                found = await self._directory.lookup(asked)
                self._sessions.learn(found, asked)
                decoded = decode(payload, now)
        except StorageError as exc:
            raise from_storage(exc, self._shedding.retry_after) from exc
        except OtlpdError:
            raise
        except Exception as exc:  # input must never crash us, and a bug is ours: retryable
            log.exception("decoding an export failed unexpectedly", extra={"signal": signal})
            raise internal_fault(self._shedding.retry_after) from exc
        return decoded


def count_records(signal: str, payload: bytes) -> int:
    """Records in a request we refuse undecoded, so the refusal metric counts records.

    A parse costs ~0.6 µs a span against ~10 µs for the full decode (docs/benchmarks.md,
    "Reference measurements"), so an overloaded server can afford it; an unparsable
    payload counts as zero.
    """
    request: Message
    try:
        if signal == Signal.TRACES:
            request = ExportTraceServiceRequest.FromString(payload)
            return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        if signal == Signal.LOGS:
            request = ExportLogsServiceRequest.FromString(payload)
            return sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
        request = ExportMetricsServiceRequest.FromString(payload)
        return sum(
            _points(m) for r in request.resource_metrics for s in r.scope_metrics for m in s.metrics
        )
    except DecodeError:
        return 0


def _points(metric: Message) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0
