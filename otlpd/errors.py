"""Typed errors, and the one place that knows what gRPC and HTTP make of them.

Domain code raises these; the receivers turn them into statuses through ``grpc_status``
and ``http_status`` only, so the OTLP retry rules (which codes a client retries, when
``RetryInfo`` must be attached) are kept in one module.
"""

from __future__ import annotations

import logging
import math
import secrets

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from storage.api import StorageDataError, StorageError

log = logging.getLogger(__name__)

# The OTLP spec has clients read the throttle delay from google.rpc.RetryInfo; the Python
# SDK's gRPC exporter reads it from this trailing metadata key, other clients from the
# rich status in grpc-status-details-bin. We send both.
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

# The codes an OTLP client retries (OTLP specification, "OTLP/gRPC Throttling" and
# "Failures"); RESOURCE_EXHAUSTED only when the status carries RetryInfo. Every other
# code makes the client drop the data: a fault of ours must answer one of these.
OTLP_RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class OtlpdError(Exception):
    """Base of otlpd's own errors."""


class InvalidRequest(OtlpdError):
    """The request is not OTLP at all, or breaks a rule that no record could satisfy.

    Permanent: the client must not retry it.
    """


class RetryableError(OtlpdError):
    """A refusal the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(RetryableError):
    """The batcher is full: the writer is not keeping up with the offered load."""


class StoreUnavailable(RetryableError):
    """PostgreSQL is unreachable or failing; nothing of the request was kept."""


class InternalFault(RetryableError):
    """Our own trouble (a bug, an exception nobody expected): nothing of the request was kept.

    Retryable like every fault of ours: the OTLP spec has clients drop data answered with a
    permanent code, and the data was not at fault.
    """


class Throttled(RetryableError):
    """The caller's project or token is over its rate limit (OTLPD_RATE_LIMIT_*).

    gRPC answers UNAVAILABLE with RetryInfo, like every retryable refusal; OTLP/HTTP
    answers 429 with ``Retry-After``, the spec's code for throttling.
    """


class ShuttingDown(RetryableError):
    """The server is draining; another replica (or this one, restarted) will take it."""


class RejectedByStore(OtlpdError):
    """PostgreSQL refused this request's rows themselves; retrying would fail again."""


class Unauthenticated(OtlpdError):
    """No token, or one that is malformed, unknown or revoked. Permanent until fixed."""


class PermissionDenied(OtlpdError):
    """The token is valid but may not do this (its scope, its project, a CORS origin)."""


class PayloadTooLarge(InvalidRequest):
    """The request (after decompression) is over OTLPD_MAX_REQUEST_BYTES."""


class UnsupportedMediaType(InvalidRequest):
    """An OTLP/HTTP request in a content type other than protobuf or JSON."""


class BadArgument(OtlpdError):
    """A query request field is invalid; the message names the field. Permanent."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(OtlpdError):
    """A query named an id (a trace, a record, a session) the project does not have."""


class QueryTooCostly(OtlpdError):
    """A query ran past the server's budget (OTLPD_QUERY_BUDGET); the message says how
    to narrow it. Retrying the same query would fail again."""


class QueryDeadline(OtlpdError):
    """The client's deadline passed before the query finished; its SQL was cancelled."""


class AlreadyExists(OtlpdError):
    """A create named something (a rule's or a channel's name) the project already has."""


class Conflict(OtlpdError):
    """A write carried a ``version`` that is no longer the current one: someone changed the
    object since the caller read it. Read again, then write (etcd's and Kubernetes'
    compare-and-swap; gRPC ABORTED, as Google's API design guide answers a stale etag)."""


class FailedPrecondition(OtlpdError):
    """The change is refused by the state of other objects (a channel that rules still
    use, a resolved incident); the message says which."""


class Unimplemented(OtlpdError):
    """An RPC of the contract this server does not do yet."""


def from_storage(exc: StorageError, retry_after: float) -> OtlpdError:
    """The one seam where a store's error (``storage.api``) becomes otlpd's.

    A store's own words name tables, partitions, indexes and SQLSTATEs: they go to the
    server log under a short reference, and the client is told the reference only.
    Anything that is not demonstrably the data's fault is retryable.
    """
    reference = secrets.token_hex(4)
    if isinstance(exc, StorageDataError):
        log.warning("the store refused records [%s]: %s", reference, exc)
        return RejectedByStore(f"the store refused these records (reference {reference})")
    log.warning("the store is unavailable [%s]: %s", reference, exc)
    return StoreUnavailable(
        f"storage is unavailable; retry later (reference {reference})", retry_after
    )


def internal_fault(retry_after: float) -> InternalFault:
    """The answer to an exception nobody expected; the caller logs it with its traceback."""
    return InternalFault("otlpd could not process the request; retry later", retry_after)


def _retry_info(retry_after: float) -> error_details_pb2.RetryInfo:
    seconds = max(0.0, retry_after)
    delay = duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def grpc_status(error: OtlpdError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """The gRPC code, message and trailing metadata that answer ``error``.

    Retryable errors are UNAVAILABLE (retryable per the OTLP spec whatever the details)
    and carry RetryInfo both as the rich status and as the trailer the Python SDK reads.
    """
    message = str(error)
    if isinstance(error, RetryableError):
        info = _retry_info(error.retry_after)
        status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
        status.details.add().Pack(info)
        trailers = (
            (RETRY_INFO_KEY, info.SerializeToString()),
            (STATUS_DETAILS_KEY, status.SerializeToString()),
        )
        return grpc.StatusCode.UNAVAILABLE, message, trailers
    if isinstance(error, PayloadTooLarge):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, message, ()
    if isinstance(error, InvalidRequest | RejectedByStore | BadArgument):
        return grpc.StatusCode.INVALID_ARGUMENT, message, ()
    if isinstance(error, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, message, ()
    if isinstance(error, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED, message, ()
    if isinstance(error, NotFound):
        return grpc.StatusCode.NOT_FOUND, message, ()
    if isinstance(error, QueryTooCostly):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, message, ()
    if isinstance(error, QueryDeadline):
        return grpc.StatusCode.DEADLINE_EXCEEDED, message, ()
    if isinstance(error, AlreadyExists):
        return grpc.StatusCode.ALREADY_EXISTS, message, ()
    if isinstance(error, Conflict):
        return grpc.StatusCode.ABORTED, message, ()
    if isinstance(error, FailedPrecondition):
        return grpc.StatusCode.FAILED_PRECONDITION, message, ()
    if isinstance(error, Unimplemented):
        return grpc.StatusCode.UNIMPLEMENTED, message, ()
    # An OtlpdError of a kind this function does not know yet: ours, so retryable.
    return grpc_status(RetryableError(message, 1.0))


def http_status(error: OtlpdError) -> tuple[int, dict[str, str]]:
    """The OTLP/HTTP status and headers for ``error``.

    Per the OTLP/HTTP spec ("Failures", "Throttling"): 429 for throttling and 503 for
    every other retryable refusal, both with ``Retry-After`` (whole seconds, at least 1);
    400 for a bad payload, which the client must not retry.
    """
    if isinstance(error, RetryableError):
        retry = {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
        return (429 if isinstance(error, Throttled) else 503), retry
    if isinstance(error, PayloadTooLarge):
        return 413, {}
    if isinstance(error, UnsupportedMediaType):
        return 415, {}
    if isinstance(error, InvalidRequest | RejectedByStore | BadArgument):
        return 400, {}
    if isinstance(error, Unauthenticated):
        return 401, {"WWW-Authenticate": 'Bearer realm="otlpd"'}
    if isinstance(error, PermissionDenied):
        return 403, {}
    if isinstance(error, NotFound):
        return 404, {}
    if isinstance(error, AlreadyExists | Conflict):
        return 409, {}
    if isinstance(error, FailedPrecondition):
        return 412, {}
    if isinstance(error, Unimplemented):
        return 501, {}
    return 503, {"Retry-After": "1"}


def rpc_status(error: OtlpdError) -> status_pb2.Status:
    """The ``google.rpc.Status`` an OTLP/HTTP error body carries (with RetryInfo when
    the refusal is retryable), code and message as gRPC would answer them."""
    code, message, _ = grpc_status(error)
    status = status_pb2.Status(code=code.value[0], message=message)
    if isinstance(error, RetryableError):
        status.details.add().Pack(_retry_info(error.retry_after))
    return status
