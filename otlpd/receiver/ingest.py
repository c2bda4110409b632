"""One Export, whatever the transport: admit, decode, complete sessions, store, count.

The OTLP/gRPC and OTLP/HTTP receivers only translate between their wire and this: they
authenticate the caller (``otlpd.access``), hand over the serialized request (or a
``PayloadReader`` that reads it when asked) with that ``Principal``, and get back the
partial-success counts, or an ``otlpd.errors`` exception that ``otlpd.errors`` maps to a
status. The principal confines the rows to its project (the decoder rejects a record
that claims another), sets the project's redaction policy, and is charged against its
rate limits (``RateGate``) before its request is decoded; what is committed is counted
per project and day (``UsageSink``).

Memory. What an Export holds is bounded at each stage, by a setting:

* its body before it is read: nothing of ours; a transport that reads lazily (gRPC, see
  ``receiver.grpc``) lets the client send no more than its flow-control window;
* its body while it is received and decoded: the ``DecodeBudget``
  (``OTLPD_DECODE_BUDGET``), which charges a body of unknown size at the request limit
  and refuses (UNAVAILABLE + RetryInfo) a request that finds no room within
  ``OTLPD_DECODE_WAIT``, before its body is read;
* its rows until they are committed: the batcher's queue (``OTLPD_QUEUE_MAX_BYTES``),
  charged with ``decoded_size`` of the rows, not the size of the request (rows take
  1 to 6 times the bytes of the protobuf they came from), plus the request bytes
  while a transport still holds them. The body is dropped as soon as its rows are built.

So, for one process (tests/test_memory_bound.py measures it)::

    peak RSS <= RSS when ready
              + connections x OTLPD_GRPC_MAX_STREAMS x 0.1 MiB   (calls let in, bodies unread)
              + 2 x OTLPD_DECODE_BUDGET                           (bodies being received)
              + 1.2 x OTLPD_QUEUE_MAX_BYTES                       (decoded rows until commit)
              + (1 + r) x OTLPD_MAX_REQUEST_BYTES                 (the one being decoded)
              + 8.5 x OTLPD_MAX_REQUEST_BYTES     (one OTLP/JSON body parsed, receiver.http)

r being what a request's rows take per byte of its protobuf: 1.0 for large string values,
2.2-2.7 for typical spans and logs, 5-6.1 for metrics. Gzip requests may add their
compressed bytes to the budget term (not measured). Connections are not limited unless
``OTLPD_GRPC_MAX_CONNECTIONS`` is set; with ``--workers N``, every worker has its own.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Final, Protocol

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlpd.access import Principal, Scope
from otlpd.envelope import SessionCache
from otlpd.errors import (
    InvalidRequest,
    OtlpdError,
    Overloaded,
    RetryableError,
    ShuttingDown,
    Throttled,
    from_storage,
    internal_fault,
)
from otlpd.instruments import Instruments
from otlpd.pipeline.budget import DecodeBudget
from otlpd.pipeline.looplag import LoopLag
from otlpd.receiver.decode import Decoded, DecodePolicy, Decoder
from storage.api import SessionDirectory, StorageError
from storage.model import (
    LOG_COLUMNS,
    POINT_COLUMNS,
    RESOURCE_COLUMNS,
    SERIES_COLUMNS,
    SPAN_COLUMNS,
    Row,
    RowBatch,
    Signal,
)

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
    """Where decoded rows go: returns once they are committed (see pipeline.batcher).

    ``size`` is the memory the request holds while it waits: ``decoded_size`` of its rows,
    plus its request bytes if a transport still holds them.
    """

    def admit(self, rows: int, size: int) -> None:
        """Raises a RetryableError if a request of this size would be refused now."""
        ...

    async def submit(self, batch: RowBatch, size: int) -> None:
        """Stores ``batch`` durably, or raises an OtlpdError and stores none of it."""
        ...


class RateGate(Protocol):
    """Rate limits per project and token (see ``otlpd.ratelimit``)."""

    def take(self, project: str, principal: Principal, records: int, nbytes: int) -> None:
        """Charges a request, or raises ``Throttled`` and charges nothing."""
        ...


class UsageSink(Protocol):
    """Where committed records are counted per project (see ``otlpd.usage``)."""

    def add(self, project: str, signal: str, records: int, nbytes: int) -> None:
        """Counts ``records`` committed records of ``nbytes`` request bytes."""
        ...


ANONYMOUS: Final = Principal(None, None, frozenset(Scope))
"""The caller when auth is off and no token was presented: the records name their project."""


class CallEnded(Exception):
    """The call ended before its request arrived: it was over the transport's size limit
    (gRPC answers RESOURCE_EXHAUSTED itself) or the client went away."""


class PayloadReader(Protocol):
    """A request body not read yet.

    A transport that can read lazily (gRPC can) hands ``Ingest.export`` one of these
    instead of bytes: the body is then read only once the decode budget has room for
    it, and Ingest holds the only reference to it, dropped as soon as its rows are built.
    """

    async def read(self) -> bytes:
        """The serialized request; raises ``CallEnded`` if the call ended without one."""
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
        budget: DecodeBudget,
        receive_timeout: float,
        default_project: str,
        rate_gate: RateGate | None = None,
        usage: UsageSink | None = None,
    ) -> None:
        self._default_project = default_project
        self._rate_gate = rate_gate
        self._usage = usage
        self._shedding = shedding
        self._receive_timeout = receive_timeout
        self._budget = budget
        self._sessions = sessions
        self._directory = directory
        self._sink = sink
        self._metrics = instruments
        self._decoders: dict[str, Callable[[bytes, int, DecodePolicy], Decoded]] = {
            Signal.TRACES: decoder.traces,
            Signal.LOGS: decoder.logs,
            Signal.METRICS: decoder.metrics,
        }

    async def export(
        self, signal: str, payload: bytes | PayloadReader, principal: Principal = ANONYMOUS
    ) -> Outcome:
        """Stores what is valid in ``payload`` for ``principal`` and says what was rejected.

        ``payload`` is the serialized request, or a ``PayloadReader`` that reads it once
        the decode budget has room for it; then this holds the only reference to the body
        and drops it as soon as its rows are built. Bytes stay referenced by the caller
        until this returns, so they are counted in the queue with the rows.

        Raises an ``OtlpdError`` only (or ``CallEnded`` if a reader's call ended without
        a request): a fault of the input is ``InvalidRequest`` or ``RejectedByStore``;
        every fault of ours (PostgreSQL, a bug) is retryable. Every record of a refused or
        failed request is counted in ``otlpd_records_total``, except those of a request
        refused before its body was read (``otlpd_refused_unread_total``).
        """
        records = self._metrics.records
        decoded, size = await self._read_and_decode(signal, payload, principal)
        if decoded.rejected:
            records.labels(signal, "rejected").inc(decoded.rejected)
        batch = decoded.batch
        count = batch.row_count
        if count:
            held = size if isinstance(payload, bytes) else 0
            try:
                await self._sink.submit(batch, decoded_size(batch) + held)
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
            if self._usage is not None:
                self._count_usage(signal, batch, size, principal)
        return Outcome(decoded.rejected, decoded.error_message)

    def _count_usage(self, signal: str, batch: RowBatch, size: int, principal: Principal) -> None:
        """Counts committed records per project; request bytes are shared out by records."""
        assert self._usage is not None
        count = batch.row_count
        if principal.project is not None:  # every row is the principal's (the decoder saw to it)
            self._usage.add(principal.project, signal, count, size)
            return
        column = _PROJECT_COLUMN[signal]
        rows = (
            batch.spans
            if signal == Signal.TRACES
            else (batch.logs if signal == Signal.LOGS else batch.points)
        )
        for project, n in Counter(map(itemgetter(column), rows)).items():
            self._usage.add(project, signal, n, size * n // count)

    async def _read_and_decode(
        self, signal: str, payload: bytes | PayloadReader, principal: Principal
    ) -> tuple[Decoded, int]:
        """The request's rows and its size in bytes, within the decode budget.

        A body is read only once the budget has room for it, and dropped when its rows
        are built (or refused), before the budget is given back.
        """
        records = self._metrics.records
        budget = self._budget
        body = payload if isinstance(payload, bytes) else None
        charge = budget.reservation if body is None else len(body)
        try:
            await budget.acquire(charge)
        except RetryableError:
            if body is None:  # unread: its records are unknown
                self._metrics.refused_unread.labels(signal).inc()
            else:
                records.labels(signal, "refused").inc(count_records(signal, body))
            raise
        try:
            if body is None:
                assert not isinstance(payload, bytes)
                body = await self._receive(signal, payload)
                budget.resize(charge, len(body))
                charge = len(body)
            try:
                # Refuse before decoding: an overloaded server must not spend CPU on work
                # it is about to throw away. (The rows may take several times the request
                # bytes: submit checks again with their real size.)
                self._shedding.check()
                self._sink.admit(1, len(body))
            except RetryableError:
                records.labels(signal, "refused").inc(count_records(signal, body))
                raise
            self._limit(signal, body, principal)
            try:
                decoded = await self._decode(signal, body, principal)
            except InvalidRequest:
                records.labels(signal, "rejected").inc()
                raise
            except RetryableError:
                records.labels(signal, "failed").inc(count_records(signal, body))
                raise
            return decoded, len(body)
        finally:
            # Not even a traceback of this frame keeps the request alive from here on.
            body = None
            budget.release(charge)

    async def _receive(self, signal: str, payload: PayloadReader) -> bytes:
        """Reads a body, within the receive timeout: a sender that stalls must not hold
        its share of the decode budget for ever (clients with a deadline are cancelled
        by grpc before that; OTLP exporters default to 10 s)."""
        try:
            async with asyncio.timeout(self._receive_timeout):
                return await payload.read()
        except TimeoutError:
            self._metrics.refused_unread.labels(signal).inc()
            raise Overloaded(
                f"the request did not arrive within {self._receive_timeout:g}s; retry later",
                self._shedding.retry_after,
            ) from None

    def _limit(self, signal: str, body: bytes, principal: Principal) -> None:
        """Charges the request to its project's and token's rate limits, before decoding:
        a throttled client must not cost the CPU of its rows (a parse to count them costs
        ~0.6 us a record against ~10 us for the decode)."""
        gate = self._rate_gate
        if gate is None or (
            principal.settings.rate_limit.unlimited and principal.token_rate_limit.unlimited
        ):
            return
        project = principal.project or self._default_project
        count = count_records(signal, body)
        try:
            gate.take(project, principal, count, len(body))
        except Throttled:
            self._metrics.throttled.labels(project, signal).inc(count)
            self._metrics.records.labels(signal, "refused").inc(count)
            raise

    async def _decode(self, signal: str, payload: bytes, principal: Principal) -> Decoded:
        """Decodes ``payload``, completing its sessions from the directory when needed."""
        decode = self._decoders[signal]
        now = time.time_ns()
        policy = DecodePolicy(principal.project, principal.settings.anonymize_ip)
        try:
            decoded = decode(payload, now, policy)
            if decoded.unresolved_sessions:
                # Records that name only a session: ask PostgreSQL once who owns those
                # sessions, then decode again with the cache warm (rare, so simple).
                asked = decoded.unresolved_sessions
                del decoded  # decoded again below: its rows are not held across the lookup
                found = await self._directory.lookup(asked)
                self._sessions.learn(found, asked)
                decoded = decode(payload, now, policy)
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


_PROJECT_COLUMN: Final = {
    Signal.TRACES: SPAN_COLUMNS.index("project_id"),
    Signal.LOGS: LOG_COLUMNS.index("project_id"),
    Signal.METRICS: POINT_COLUMNS.index("project_id"),
}


def _indices(columns: Sequence[str], names: Sequence[str]) -> tuple[int, ...]:
    return tuple(columns.index(name) for name in names)


# Columns whose values are made per record and are as long as the client likes; the
# others are ints, ids of a fixed length, values shared by the records of a resource or
# scope, or session and user ids (at most 256 bytes: counted in the fixed part below).
_SPAN_TEXT: Final = _indices(
    SPAN_COLUMNS, ("trace_state", "name", "status_message", "attributes", "events", "links")
)
_LOG_TEXT: Final = _indices(LOG_COLUMNS, ("severity_text", "body", "attributes", "event_name"))
_POINT_TEXT: Final = _indices(POINT_COLUMNS, ("quantiles", "exemplars"))
_POINT_ARRAYS: Final = _indices(
    POINT_COLUMNS,
    ("bucket_counts", "explicit_bounds", "positive_bucket_counts", "negative_bucket_counts"),
)
_SERIES_TEXT: Final = _indices(
    SERIES_COLUMNS,
    (
        "metric_name",
        "unit",
        "description",
        "attributes",
        "metadata",
    ),
)
_SERIES_SHARED: Final = _indices(SERIES_COLUMNS, ("resource", "scope_attributes"))
_RESOURCE_TEXT: Final = _indices(RESOURCE_COLUMNS, ("attributes", "schema_url"))

# The fixed part of each kind of row, in bytes: the tuple, its ints, its fixed-size ids and
# its session and user ids as the benchmark has them; for series, resources and sessions
# their dict entry and key.
_SPAN_ROW: Final = 520
_LOG_ROW: Final = 300
_POINT_ROW: Final = 160
_SERIES_ROW: Final = 360
_RESOURCE_ROW: Final = 250
_SESSION: Final = 300
_ARRAY_ITEM: Final = 32  # an int or float object, plus its slot in the list


def _text(rows: Sequence[Row], columns: tuple[int, ...]) -> int:
    size = sys.getsizeof
    return sum(sum(map(size, filter(None, map(itemgetter(i), rows)))) for i in columns)


def decoded_size(batch: RowBatch) -> int:
    """Estimated memory of ``batch``'s rows, in bytes: what admission charges the queue.

    Each row costs a fixed part (its tuple, ints and fixed-size ids: ``_SPAN_ROW`` ...)
    plus the real size (``sys.getsizeof``: non-ASCII text counted at its width) of every
    per-record text, JSON and array column; series, resources and sessions likewise.

    Measured with tracemalloc (what a decoded batch keeps allocated, session and
    attribute caches warm, as in a running server), per record, against the request's
    protobuf bytes, and what this estimates:

    ====================================  =========  ==========  =========
    requests                              measured   x protobuf  estimate
    ====================================  =========  ==========  =========
    bench spans (sessions, churn, plain)  970-1,060  2.2-2.4     0.98-1.00
    bench logs                            906        2.7         1.08
    bench metrics (sessions, scrape)      940-1,100  5.1-6.1     1.09-1.16
    spans, one 60 KiB ASCII attribute     62,000     1.0         1.00
    logs, non-ASCII 1.5 KB body           1,611      1.0         1.02
    ====================================  =========  ==========  =========

    (tests/receiver/test_budget.py keeps it within 0.9-1.5 times). It costs 0.2-0.6 us
    a record, against 5-8 us to decode one.
    """
    points = batch.points
    size = _SPAN_ROW * len(batch.spans) + _text(batch.spans, _SPAN_TEXT)
    size += _LOG_ROW * len(batch.logs) + _text(batch.logs, _LOG_TEXT)
    size += _POINT_ROW * len(points) + _text(points, _POINT_TEXT)
    if points:
        for i in _POINT_ARRAYS:
            for array in filter(None, map(itemgetter(i), points)):
                size += sys.getsizeof(array) + _ARRAY_ITEM * len(array)
    if batch.series:
        series = list(batch.series.values())
        size += _SERIES_ROW * len(series) + _text(series, _SERIES_TEXT)
        for i in _SERIES_SHARED:  # one text per resource or scope, shared by its series
            shared = {id(text): text for text in map(itemgetter(i), series) if text}
            size += sum(map(sys.getsizeof, shared.values()))
    if batch.resources:
        resources = list(batch.resources.values())
        size += _RESOURCE_ROW * len(resources) + _text(resources, _RESOURCE_TEXT)
    return size + _SESSION * len(batch.sessions)
