"""Where the client talks to, as whom, and what it says when the talk fails.

The address and project come from flags or the environment (``OTLPD_QUERY_ENDPOINT``,
``OTLPD_PROJECT``) so a script can set them once; the project travels as the
``x-otlpd-project`` metadata the server's scope reads first (see ``query.scope``).

As whom: a token (``--token`` / ``OTLPD_TOKEN``) travels as ``authorization: Bearer
<token>`` metadata, which the query API requires once tokens exist. The channel is TLS
when a CA (``--ca`` / ``OTLPD_QUERY_CA``: the server's is self-signed or private) or a
client certificate (``--cert`` and ``--key``, for a server with ``OTLPD_TLS_CLIENT_CA``)
is given; without a CA the server is checked against grpc's bundled public roots. With
neither the channel is plaintext, token included: give a CA to a server that has TLS.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc

from otlpd.client import ENDPOINT_VARIABLE
from otlpd.client.commands import TOKEN_VARIABLE
from otlpd.errors import RETRY_INFO_KEY

PROJECT_HEADER = "x-otlpd-project"
AUTHORIZATION_HEADER = "authorization"


@dataclass(frozen=True, slots=True)
class Target:
    """One query API endpoint and the project to ask it about (empty: the server's default),
    with the token and the TLS files to do it with (none: plaintext, no token)."""

    address: str
    project: str = ""
    timeout: float | None = 30.0
    token: str = ""
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def tls(self) -> bool:
        return self.ca is not None or self.cert is not None or self.key is not None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        metadata: tuple[tuple[str, str], ...] = (
            ((PROJECT_HEADER, self.project),) if self.project else ()
        )
        if self.token:
            metadata += ((AUTHORIZATION_HEADER, f"Bearer {self.token}"),)
        return metadata


class ClientFailure(Exception):
    """A call that failed, said in one line for a human (``otlpd: <status>: <message>``)."""


@contextmanager
def query_stub(target: Target) -> Iterator[Any]:
    """A ``QueryServiceStub`` on a channel to ``target`` (TLS if it has TLS files, else
    plaintext), closed afterwards. Raises ``ClientFailure`` if a file cannot be read."""
    from query.proto import pb_grpc

    channel = (
        grpc.secure_channel(target.address, channel_credentials(target))
        if target.tls
        else grpc.insecure_channel(target.address)
    )
    with channel:
        yield pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]


@contextmanager
def alert_stub(target: Target) -> Iterator[Any]:
    """An ``AlertServiceStub`` on a channel to ``target``, as ``query_stub`` makes one (the
    alerting API shares the query port)."""
    from alerting.proto import pb_grpc

    channel = (
        grpc.secure_channel(target.address, channel_credentials(target))
        if target.tls
        else grpc.insecure_channel(target.address)
    )
    with channel:
        yield pb_grpc.AlertServiceStub(channel)  # type: ignore[no-untyped-call]


def channel_credentials(target: Target) -> grpc.ChannelCredentials:
    """TLS credentials from ``target``'s files (no CA: grpc's bundled public roots)."""
    if (target.cert is None) != (target.key is None):
        raise ClientFailure("--cert and --key go together (a client certificate and its key)")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(target.ca, "--ca"),
        private_key=_read(target.key, "--key"),
        certificate_chain=_read(target.cert, "--cert"),
    )


def _read(path: Path | None, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClientFailure(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


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
    details = error.details() or ""
    if _unreachable(error):
        if target.tls:  # most often the handshake: say what grpc said about it
            return ClientFailure(
                f"cannot reach the query API at {target.address} over TLS ({details}; "
                "check --ca, --cert and --key, and that `otlpd serve` is running there)"
            )
        return ClientFailure(
            f"cannot reach the query API at {target.address} (is `otlpd serve` running? "
            f"set --addr or {ENDPOINT_VARIABLE})"
        )
    code = error.code()
    name = code.name if code is not None else "UNKNOWN"
    if code is grpc.StatusCode.UNAUTHENTICATED and not target.token:
        hint = f"set --token or {TOKEN_VARIABLE}"
        details = f"{details} ({hint})" if details else hint
    return ClientFailure(f"{name}: {details}" if details else name)


def report(problem: ClientFailure) -> int:
    """Prints ``problem`` to stderr as ``otlpd: ...``; the exit status of a failed call."""
    print(f"otlpd: {problem}", file=sys.stderr)
    return 1
