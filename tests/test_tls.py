"""TLS on every port (``otlpd.tls``), with certificates made at test time.

A CA signs a server certificate for 127.0.0.1 and localhost and a client certificate; a
second CA signs a client certificate the server must not accept. Two servers share one
database: ``tls`` (server certificate only) and ``mtls`` (``OTLPD_TLS_CLIENT_CA`` too).
Clients are the OpenTelemetry SDK's exporters, plain grpc channels, ``otlpd``'s own query
client and urllib.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otlpd.__main__ import main
from otlpd.config import ConfigError, load
from otlpd.tls import grpc_server_credentials, server_ssl_context
from tests.conftest import RunningOtlpd, start_otlpd_thread, trace_request

CALL_TIMEOUT = 5.0


# --- certificates --------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """PEM files: ``ca`` signs ``server`` and ``client``; ``stranger`` is another CA's."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path

    def read(self, name: str) -> bytes:
        path: Path = getattr(self, name)
        return path.read_bytes()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # fast to make, and every TLS stack has it


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
    san: list[x509.GeneralName],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    ca_cert, ca_key = ca
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write(directory: Path, stem: str, cert: x509.Certificate, key: Any = None) -> None:
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (directory / f"{stem}.key").write_bytes(pem)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _ca("otlpd test CA")
    server = _leaf(
        "otlpd",
        ca,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = _leaf("collector", ca, ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("collector")])
    stranger = _leaf(
        "stranger", _ca("another CA"), ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("x")]
    )
    _write(directory, "ca", ca[0])
    _write(directory, "server", *server)
    _write(directory, "client", *client)
    _write(directory, "stranger", *stranger)
    return Pki(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        stranger_cert=directory / "stranger.crt",
        stranger_key=directory / "stranger.key",
    )


# --- servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(shared_database: str, pki: Pki) -> Iterator[RunningOtlpd]:
    """otlpd with a server certificate on every port, no client certificates asked."""
    running = start_otlpd_thread(
        shared_database, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def mtls(shared_database: str, pki: Pki, tls: RunningOtlpd) -> Iterator[RunningOtlpd]:
    """otlpd that also requires client certificates signed by the CA (not on ops).

    Started after ``tls`` (which it asks for): both migrate the same database."""
    running = start_otlpd_thread(
        shared_database,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca),
    )
    try:
        yield running
    finally:
        running.stop()


def stored(server: RunningOtlpd, service: str) -> int:
    with psycopg.connect(server.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM spans WHERE service_name = %s", (service,))
        return int(row.fetchone()[0])  # type: ignore[index]


def spans(service: str, count: int) -> list[ReadableSpan]:
    """``count`` finished SDK spans of ``service``, to hand an exporter directly."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.test_tls")
    for i in range(count):
        with tracer.start_as_current_span(f"op-{i}"):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def sdk_export(server: RunningOtlpd, credentials: grpc.ChannelCredentials, service: str) -> Any:
    exporter = OTLPSpanExporter(
        endpoint=server.grpc_target, insecure=False, credentials=credentials, timeout=5
    )
    try:
        return exporter.export(spans(service, 3))
    finally:
        exporter.shutdown()


def raw_export(channel: grpc.Channel, service: str) -> None:
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
    stub.Export(trace_request(["a", "b"], service=service), timeout=CALL_TIMEOUT)


def export_code(channel: grpc.Channel, service: str) -> grpc.StatusCode:
    """The status of one Export of two spans on ``channel``."""
    try:
        raw_export(channel, service)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def secure(pki: Pki, *, client: str | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(pki.read("ca"))
    return grpc.ssl_channel_credentials(
        pki.read("ca"), pki.read(f"{client}_key"), pki.read(f"{client}_cert")
    )


def https_get(url: str, pki: Pki) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(pki.ca))
    with urllib.request.urlopen(url, context=context, timeout=CALL_TIMEOUT) as response:
        return response.status, response.read().decode()


# --- TLS, server certificate only ----------------------------------------------------


def test_the_sdk_exporter_sends_over_tls(tls: RunningOtlpd, pki: Pki) -> None:
    assert sdk_export(tls, secure(pki), "tls-sdk") is SpanExportResult.SUCCESS
    assert stored(tls, "tls-sdk") == 3


def test_a_plaintext_client_is_refused_on_the_tls_port(tls: RunningOtlpd) -> None:
    with grpc.insecure_channel(tls.grpc_target) as channel:
        assert export_code(channel, "tls-plaintext") is grpc.StatusCode.UNAVAILABLE
    assert stored(tls, "tls-plaintext") == 0


def test_a_client_that_does_not_trust_the_ca_is_refused(tls: RunningOtlpd) -> None:
    # grpc's bundled public roots: our test CA is not among them.
    with grpc.secure_channel(tls.grpc_target, grpc.ssl_channel_credentials()) as channel:
        assert export_code(channel, "tls-untrusted") is grpc.StatusCode.UNAVAILABLE
    assert stored(tls, "tls-untrusted") == 0


def test_the_query_port_answers_over_tls(
    tls: RunningOtlpd, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{tls.app.ports.query}"
    with grpc.secure_channel(address, secure(pki)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    # otlpd's own client, with --ca.
    raw_export_secure(tls, pki, "tls-query")
    assert main(["services", "--addr", address, "--ca", str(pki.ca), "--json"]) == 0
    assert "tls-query" in capsys.readouterr().out
    # Without --ca it talks plaintext, which the port refuses: one line saying so.
    assert main(["services", "--addr", address, "--timeout", "5s"]) == 1
    assert "cannot reach the query API" in capsys.readouterr().err


def raw_export_secure(server: RunningOtlpd, pki: Pki, service: str) -> None:
    with grpc.secure_channel(server.grpc_target, secure(pki)) as channel:
        raw_export(channel, service)


def test_the_query_client_reads_its_tls_files_from_the_environment(
    tls: RunningOtlpd, pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTLPD_QUERY_ENDPOINT", f"localhost:{tls.app.ports.query}")
    monkeypatch.setenv("OTLPD_QUERY_CA", str(pki.ca))
    assert main(["services"]) == 0  # localhost is in the certificate too
    capsys.readouterr()
    monkeypatch.setenv("OTLPD_QUERY_CA", str(pki.ca.with_name("missing.crt")))
    assert main(["services"]) == 1
    assert capsys.readouterr().err.startswith("otlpd: --ca: cannot read ")


def test_the_ops_port_answers_over_https(tls: RunningOtlpd, pki: Pki) -> None:
    assert https_get(f"https://127.0.0.1:{tls.app.ports.ops}/healthz", pki) == (200, "ok\n")
    assert https_get(f"https://localhost:{tls.app.ports.ops}/readyz", pki) == (200, "ready\n")
    with pytest.raises(OSError):  # plain http on the TLS port: the connection is closed
        urllib.request.urlopen(f"http://127.0.0.1:{tls.app.ports.ops}/healthz", timeout=5)


def test_the_sdk_http_exporter_sends_over_tls(
    tls: RunningOtlpd, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets these variables override a session's CA file (psf/requests#3829):
    # set, they would make the exporter ignore certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    port = tls.http_port
    exporter = HttpSpanExporter(
        endpoint=f"https://127.0.0.1:{port}/v1/traces", certificate_file=str(pki.ca), timeout=5
    )
    try:
        assert exporter.export(spans("tls-http", 3)) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert stored(tls, "tls-http") == 3


# --- mTLS ----------------------------------------------------------------------------


def test_mtls_admits_a_client_with_a_certificate_from_the_ca(mtls: RunningOtlpd, pki: Pki) -> None:
    assert sdk_export(mtls, secure(pki, client="client"), "mtls-sdk") is SpanExportResult.SUCCESS
    assert stored(mtls, "mtls-sdk") == 3


@pytest.mark.parametrize("client", [None, "stranger"])
def test_mtls_refuses_a_client_without_a_certificate_from_the_ca(
    mtls: RunningOtlpd, pki: Pki, client: str | None
) -> None:
    service = f"mtls-refused-{client}"
    with grpc.secure_channel(mtls.grpc_target, secure(pki, client=client)) as channel:
        assert export_code(channel, service) is grpc.StatusCode.UNAVAILABLE
    assert stored(mtls, service) == 0


def test_mtls_on_the_query_port(
    mtls: RunningOtlpd, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{mtls.app.ports.query}"
    tls_flags = ["--addr", address, "--ca", str(pki.ca), "--timeout", "5s"]
    assert main(["services", *tls_flags]) == 1
    assert "over TLS" in capsys.readouterr().err
    client = ["--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    assert main(["services", *tls_flags, *client]) == 0
    capsys.readouterr()
    assert main(["services", *tls_flags, "--cert", str(pki.client_cert)]) == 1
    assert "--cert and --key go together" in capsys.readouterr().err


def test_mtls_on_the_http_port(
    mtls: RunningOtlpd, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # see the test above
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    url = f"https://127.0.0.1:{mtls.http_port}/v1/traces"
    body = trace_request(["x"], service="mtls-http-refused").SerializeToString()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/x-protobuf"}
    )
    context = ssl.create_default_context(cafile=str(pki.ca))
    with pytest.raises(OSError):  # no client certificate: the handshake fails
        urllib.request.urlopen(request, context=context, timeout=CALL_TIMEOUT).read()
    assert stored(mtls, "mtls-http-refused") == 0
    exporter = HttpSpanExporter(
        endpoint=url,
        certificate_file=str(pki.ca),
        client_certificate_file=str(pki.client_cert),
        client_key_file=str(pki.client_key),
        timeout=5,
    )
    try:
        assert exporter.export(spans("mtls-http", 3)) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert stored(mtls, "mtls-http") == 3


def test_the_ops_port_asks_no_client_certificate(mtls: RunningOtlpd, pki: Pki) -> None:
    assert https_get(f"https://127.0.0.1:{mtls.app.ports.ops}/healthz", pki) == (200, "ok\n")


# --- configuration -------------------------------------------------------------------


def test_no_tls_without_a_certificate() -> None:
    config = load({})
    assert grpc_server_credentials(config) is None
    assert server_ssl_context(config, client_auth=True) is None


def test_client_certificates_are_asked_only_where_told(pki: Pki) -> None:
    config = load(
        {
            "OTLPD_TLS_CERT": str(pki.server_cert),
            "OTLPD_TLS_KEY": str(pki.server_key),
            "OTLPD_TLS_CLIENT_CA": str(pki.ca),
        }
    )
    data = server_ssl_context(config, client_auth=True)
    ops = server_ssl_context(config, client_auth=False)
    assert data is not None and ops is not None
    assert data.verify_mode is ssl.CERT_REQUIRED
    assert ops.verify_mode is ssl.CERT_NONE
    assert data.minimum_version is ssl.TLSVersion.TLSv1_2


def test_a_key_that_is_not_the_certificates_fails_naming_the_variables(pki: Pki) -> None:
    config = load({"OTLPD_TLS_CERT": str(pki.server_cert), "OTLPD_TLS_KEY": str(pki.client_key)})
    with pytest.raises(ConfigError, match="OTLPD_TLS_CERT, OTLPD_TLS_KEY: cannot load"):
        grpc_server_credentials(config)
    with pytest.raises(ConfigError, match="OTLPD_TLS_CERT, OTLPD_TLS_KEY: cannot load"):
        server_ssl_context(config, client_auth=False)


def test_a_client_ca_that_is_not_pem_fails_naming_the_variable(pki: Pki) -> None:
    config = load(
        {
            "OTLPD_TLS_CERT": str(pki.server_cert),
            "OTLPD_TLS_KEY": str(pki.server_key),
            "OTLPD_TLS_CLIENT_CA": str(pki.server_key),  # a key, not a certificate
        }
    )
    with pytest.raises(ConfigError, match="OTLPD_TLS_CLIENT_CA: cannot load"):
        grpc_server_credentials(config)
