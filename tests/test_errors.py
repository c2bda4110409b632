"""The gRPC and HTTP answers for each error, as OTLP clients read them."""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2

from otlpd.errors import (
    RETRY_INFO_KEY,
    STATUS_DETAILS_KEY,
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidRequest,
    Overloaded,
    RejectedByStore,
    StoreUnavailable,
    Unimplemented,
    grpc_status,
    http_status,
)


def test_retryable_errors_are_unavailable_with_retry_info_in_both_places() -> None:
    code, message, trailers = grpc_status(Overloaded("queue full", 1.5))
    assert code is grpc.StatusCode.UNAVAILABLE
    assert message == "queue full"
    metadata = dict(trailers)
    info = error_details_pb2.RetryInfo.FromString(metadata[RETRY_INFO_KEY])
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 500_000_000)
    status = status_pb2.Status.FromString(metadata[STATUS_DETAILS_KEY])
    assert status.code == code_pb2.UNAVAILABLE
    unpacked = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(unpacked)
    assert unpacked == info


def test_store_unavailable_is_retryable() -> None:
    code, _, trailers = grpc_status(StoreUnavailable("down", 2))
    assert code is grpc.StatusCode.UNAVAILABLE
    assert RETRY_INFO_KEY in dict(trailers)
    assert http_status(StoreUnavailable("down", 2)) == (503, {"Retry-After": "2"})


def test_permanent_errors_are_invalid_argument_without_retry_info() -> None:
    for error in (InvalidRequest("not OTLP"), RejectedByStore("constraint")):
        code, _, trailers = grpc_status(error)
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert trailers == ()
        assert http_status(error) == (400, {})


def test_the_alerting_apis_refusals_are_permanent_codes_of_their_own() -> None:
    for error, code, http in (
        (AlreadyExists("name taken"), grpc.StatusCode.ALREADY_EXISTS, 409),
        (Conflict("stale version"), grpc.StatusCode.ABORTED, 409),
        (FailedPrecondition("in use"), grpc.StatusCode.FAILED_PRECONDITION, 412),
        (Unimplemented("later"), grpc.StatusCode.UNIMPLEMENTED, 501),
    ):
        assert grpc_status(error) == (code, str(error), ())
        assert http_status(error) == (http, {})
