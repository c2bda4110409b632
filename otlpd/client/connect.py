"""Where the client talks to, as whom, and what it says when the talk fails.

The address and project come from flags or the environment (``OTLPD_QUERY_ENDPOINT``,
``OTLPD_PROJECT``) so a script can set them once; the project travels as the
``x-otlpd-project`` metadata the server's scope reads first (see ``query.scope``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import grpc

from otlpd.client import ENDPOINT_VARIABLE
from otlpd.errors import RETRY_INFO_KEY

PROJECT_HEADER = "x-otlpd-project"


@dataclass(frozen=True, slots=True)
class Target:
    """One query API endpoint and the project to ask it about (empty: the server's default)."""

    address: str
    project: str = ""
    timeout: float | None = 30.0

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((PROJECT_HEADER, self.project),) if self.project else ()


class ClientFailure(Exception):
    """A call that failed, said in one line for a human (``otlpd: <status>: <message>``)."""


@contextmanager
def query_stub(target: Target) -> Iterator[Any]:
    """A ``QueryServiceStub`` on an insecure channel to ``target``, closed afterwards."""
    from query.proto import pb_grpc

    with grpc.insecure_channel(target.address) as channel:
        yield pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]


def _unreachable(error: grpc.RpcError) -> bool:
    # otlpd's own UNAVAILABLE (its store is down) always carries RetryInfo (otlpd.errors);
    # an UNAVAILABLE without it was made by the client's channel: nothing answered.
    if error.code() is not grpc.StatusCode.UNAVAILABLE:
        return False
    # grpc-stubs types the trailers as one opaque Metadatum; at run time they are pairs.
    trailers = cast(Sequence[tuple[str, Any]], error.trailing_metadata() or ())
    return not any(key == RETRY_INFO_KEY for key, _ in trailers)


def failure(error: grpc.RpcError, target: Target) -> ClientFailure:
    """The one line that says what went wrong with a call to ``target``."""
    if _unreachable(error):
        return ClientFailure(
            f"cannot reach the query API at {target.address} (is `otlpd serve` running? "
            f"set --addr or {ENDPOINT_VARIABLE})"
        )
    code = error.code()
    name = code.name if code is not None else "UNKNOWN"
    details = error.details() or ""
    return ClientFailure(f"{name}: {details}" if details else name)


def report(problem: ClientFailure) -> int:
    """Prints ``problem`` to stderr as ``otlpd: ...``; the exit status of a failed call."""
    print(f"otlpd: {problem}", file=sys.stderr)
    return 1
