"""TLS for every port, from ``OTLPD_TLS_CERT``, ``OTLPD_TLS_KEY`` and ``OTLPD_TLS_CLIENT_CA``.

One certificate serves all the ports (OTLP/gRPC, OTLP/HTTP, the query API, ops): they
are one server's names. With ``OTLPD_TLS_CLIENT_CA`` the data ports (OTLP/gRPC,
OTLP/HTTP, query) also require a client certificate signed by that CA (mTLS); the ops
port never does, so that kubelet and Prometheus probes, which present none, keep working
(it serves only metrics and health, no data).

Files are read once, when the server starts: a rotated certificate takes effect at the
next (rolling) restart. They are loaded into an ``ssl.SSLContext`` first even for gRPC,
so a key that does not match its certificate, or a file that is not PEM, fails start-up
with a ``ConfigError`` that names the variable, not later at the first handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from otlpd.config import Config, ConfigError
from otlpd.listening import CannotListen


def grpc_server_credentials(config: Config) -> grpc.ServerCredentials | None:
    """Credentials for a gRPC port (``add_secure_port``), or None without TLS.

    With a client CA, a client must present a certificate it signed (grpc refuses the
    handshake otherwise: the call fails UNAVAILABLE before any request is read).
    """
    if config.tls_cert is None or config.tls_key is None:
        return None
    _context(config.tls_cert, config.tls_key)  # fail now, naming the variable
    ca: bytes | None = None
    if config.tls_client_ca is not None:
        _verify_locations(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), config.tls_client_ca)
        ca = _read(config.tls_client_ca, "OTLPD_TLS_CLIENT_CA")
    return grpc.ssl_server_credentials(
        [(_read(config.tls_key, "OTLPD_TLS_KEY"), _read(config.tls_cert, "OTLPD_TLS_CERT"))],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def server_ssl_context(config: Config, *, client_auth: bool) -> ssl.SSLContext | None:
    """An ``SSLContext`` for an aiohttp port, or None without TLS.

    TLS 1.2 or later (what grpc core accepts as well). ``client_auth`` asks for client
    certificates when ``OTLPD_TLS_CLIENT_CA`` is set: True for OTLP/HTTP, False for the
    ops port.
    """
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = _context(config.tls_cert, config.tls_key)
    if client_auth and config.tls_client_ca is not None:
        _verify_locations(context, config.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [
                f"OTLPD_TLS_CERT, OTLPD_TLS_KEY: cannot load {cert} with {key} "
                f"(PEM certificate chain and its private key?): {exc}"
            ]
        ) from exc
    return context


def _verify_locations(context: ssl.SSLContext, ca: Path) -> None:
    try:
        context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [f"OTLPD_TLS_CLIENT_CA: cannot load {ca} (PEM CA certificates?): {exc}"]
        ) from exc


def _read(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{variable}: cannot read {path}: {exc}"]) from exc


def add_port(
    server: grpc.aio.Server,
    address: str,
    credentials: grpc.ServerCredentials | None,
    variable: str,
) -> int:
    """Binds ``address`` (the setting ``variable``) on ``server``, with TLS when there are
    ``credentials``; the port. A port that cannot be bound is ``CannotListen``."""
    try:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)
    except RuntimeError as exc:  # grpcio's "Failed to bind to address ..."
        raise CannotListen(address, variable, exc) from exc
