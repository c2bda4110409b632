"""Fuzzing the OTLP/HTTP port: random bytes, random JSON-ish documents, mutated valid
requests (protobuf and JSON), random content types, encodings, paths and methods.

Whatever comes in, the answer is one the spec defines (never a 500, never our own
"could not process" fault), its body is a ``google.rpc.Status`` (or the Export response)
in the encoding it says, and the server keeps serving and storing afterwards.
"""

from __future__ import annotations

import gzip
import http.client
import json
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from otlpd.receiver.otlp_json import to_otlp_json
from tests.conftest import PG_SERVER, RunningOtlpd, start_otlpd_thread, trace_request

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_REQUEST = 256 * 1024
RUM = "https://rum.example"
# What an answer may be: the spec's statuses, and 204 for a plain OPTIONS or preflight.
ANSWERS = {200, 204, 400, 401, 403, 404, 405, 413, 415}
RESPONSES: dict[str, Any] = {
    "/v1/traces": trace_service_pb2.ExportTraceServiceResponse,
    "/v1/logs": logs_service_pb2.ExportLogsServiceResponse,
    "/v1/metrics": metrics_service_pb2.ExportMetricsServiceResponse,
}
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningOtlpd]:
    name = f"otlpd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    running = start_otlpd_thread(
        f"{PG_SERVER}/{name}",
        cors_origins=RUM,
        max_request_bytes=str(MAX_REQUEST),
        shutdown_grace="2s",
    )
    try:
        yield running
    finally:
        running.stop()
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Client:
    """One keep-alive connection, opened again whenever the server closed it."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._connection: http.client.HTTPConnection | None = None

    def send(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        for attempt in range(2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=20)
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                data = response.read()
                answer = response.status, dict(response.getheaders()), data
                if response.will_close:
                    self.close()
                return answer
            except (ConnectionError, http.client.HTTPException):
                # The server may close a connection after refusing a body it did not read.
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@pytest.fixture(scope="module")
def client(server: RunningOtlpd) -> Iterator[Client]:
    opened = Client(server.http_port)
    yield opened
    opened.close()


def check(method: str, path: str, answer: tuple[int, dict[str, str], bytes]) -> None:
    """The answer is one the spec defines, and its body is what its Content-Type says."""
    status, headers, body = answer
    assert status in ANSWERS, (status, body[:300])
    if status == 204 or (method == "OPTIONS" and status == 403):
        return
    content_type = headers.get("Content-Type")
    assert content_type in (PROTOBUF, JSON), headers
    if status == 200:
        response = RESPONSES[path]()
        if content_type == JSON:
            json_format.Parse(body, response)
        else:
            response.ParseFromString(body)
        return
    message = status_pb2.Status()
    if content_type == JSON:
        json_format.Parse(body, message)
    else:
        message.ParseFromString(body)
    assert message.message, body
    assert "could not process" not in message.message, message  # an unexpected exception


# --- strategies ------------------------------------------------------------------------

OTLP_KEYS = [
    "resourceSpans",
    "resourceLogs",
    "resourceMetrics",
    "resource",
    "scopeSpans",
    "scopeLogs",
    "scopeMetrics",
    "scope",
    "spans",
    "logRecords",
    "metrics",
    "traceId",
    "spanId",
    "parentSpanId",
    "name",
    "kind",
    "startTimeUnixNano",
    "endTimeUnixNano",
    "timeUnixNano",
    "attributes",
    "key",
    "value",
    "stringValue",
    "intValue",
    "doubleValue",
    "boolValue",
    "bytesValue",
    "arrayValue",
    "kvlistValue",
    "values",
    "body",
    "severityNumber",
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
    "dataPoints",
    "asInt",
    "asDouble",
    "exemplars",
    "bucketCounts",
    "explicitBounds",
    "positive",
    "status",
    "code",
    "links",
    "events",
    "resource_spans",
    "scope_spans",
    "trace_id",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["NaN", "Infinity", "5B8EFFF798038103D269B633813FC60C", "AAEC", "-1"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(OTLP_KEYS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)


def dumps(document: Any) -> bytes:
    """JSON text of ``document`` (the standard library's: integers of any size)."""
    return json.dumps(document).encode()


def _valid_requests() -> list[tuple[str, Any]]:
    now = time.time_ns()
    traces = trace_request(["a", "b"], "fuzz-valid")
    logs = logs_service_pb2.ExportLogsServiceRequest()
    record = logs.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=now)
    record.body.string_value = "hello"
    record.attributes.add(key="k", value=common_pb2.AnyValue(int_value=3))
    metrics = metrics_service_pb2.ExportMetricsServiceRequest()
    metric = metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="m")
    metric.gauge.data_points.add(time_unix_nano=now, as_double=1.5)
    return [("/v1/traces", traces), ("/v1/logs", logs), ("/v1/metrics", metrics)]


VALID = _valid_requests()


@st.composite
def mutated_protobuf(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid request's bytes with some flipped, cut or inserted."""
    path, message = draw(st.sampled_from(VALID))
    data = bytearray(message.SerializeToString())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "cut", "insert"]))
        if how == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return path, bytes(data)


def _leaves(document: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(document, dict):
        found = [(*path, key) for key in document]
        for key, value in document.items():
            found += _leaves(value, (*path, key))
        return found
    if isinstance(document, list):
        found = [(*path, i) for i in range(len(document))]
        for i, value in enumerate(document):
            found += _leaves(value, (*path, i))
        return found
    return []


@st.composite
def mutated_json(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid OTLP/JSON request with a few of its values replaced by anything."""
    path, message = draw(st.sampled_from(VALID))
    document = to_otlp_json(message)
    places = _leaves(document)
    for _ in range(draw(st.integers(1, 3))):
        place = draw(st.sampled_from(places))
        target = document
        try:
            for step in place[:-1]:
                target = target[step]
            target[place[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this place
    return path, dumps(document)


# Mostly the three paths; sometimes one that is not.
paths = st.sampled_from([*RESPONSES, *RESPONSES, *RESPONSES, "/", "/v1/trace", "/v1/traces/x"])
content_types = st.sampled_from(
    [
        PROTOBUF,
        JSON,
        "application/json; charset=utf-8",
        "APPLICATION/X-PROTOBUF",
        "text/plain",
        "",
        "application/x-protobuf;;=",
        "multipart/form-data; boundary=x",
    ]
) | st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t)
codings = st.sampled_from(["", "gzip", "deflate", "identity", "x-gzip", "br", "GZIP", "gzip, br"])


def encode(body: bytes, coding: str, compress: bool) -> bytes:
    if not compress:
        return body
    if coding.lower() in ("gzip", "x-gzip"):
        return gzip.compress(body)
    if coding == "deflate":
        return zlib.compress(body)
    return body


def _field_value(text: str) -> bool:
    """A value HTTP can carry at all (RFC 9110 5.5: visible ASCII, space and tab). Other
    bytes make the request malformed HTTP, which aiohttp's parser answers with a plain
    400 before any handler runs: not an OTLP request, so not what this test is about."""
    return all(c in "\t" or " " <= c <= "~" for c in text)


def headers_for(content_type: str, coding: str, extra: dict[str, str]) -> dict[str, str]:
    headers = {"Content-Type": content_type, **extra}
    if coding:
        headers["Content-Encoding"] = coding
    return {k: v for k, v in headers.items() if _field_value(v)}


extras = st.fixed_dictionaries(
    {},
    optional={
        "Origin": st.sampled_from([RUM, "https://evil.example", "null", ""]),
        "Authorization": st.sampled_from(["Bearer x", "Bearer otlpd_aaaaaaaaaaaa_b", "Basic a"]),
    },
)


# --- the fuzz ------------------------------------------------------------------------


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """Any body (bytes or JSON-ish), to any path, in any content type and coding."""
    body = draw(st.binary(max_size=4096) | json_values.map(dumps))
    coding = draw(codings)
    headers = headers_for(draw(content_types), coding, draw(extras))
    return draw(paths), encode(body, coding, draw(st.booleans())), headers


@FUZZ
@given(case=requests())
def test_random_bodies_headers_and_paths(
    client: Client, case: tuple[str, bytes, dict[str, str]]
) -> None:
    path, body, headers = case
    check("POST", path, client.send("POST", path, body, headers))


@FUZZ
@given(
    case=mutated_protobuf() | mutated_json(),
    content_type=st.sampled_from([PROTOBUF, JSON]),
    coding=st.sampled_from(["", "gzip", "deflate"]),
    compress=st.booleans(),
)
def test_mutated_valid_requests(
    client: Client, case: tuple[str, bytes], content_type: str, coding: str, compress: bool
) -> None:
    path, body = case
    headers = headers_for(content_type, coding, {})
    check("POST", path, client.send("POST", path, encode(body, coding, compress), headers))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=paths,
    extra=extras,
    preflight=st.booleans(),
)
def test_other_methods(
    client: Client, method: str, path: str, extra: dict[str, str], preflight: bool
) -> None:
    headers = {k: v for k, v in extra.items() if v}
    if preflight:
        headers["Access-Control-Request-Method"] = "POST"
    status, answer_headers, body = client.send(method, path, b"", headers)
    if method == "HEAD":  # no body to decode, by definition
        assert status in ANSWERS
        return
    check(method, path, (status, answer_headers, body))


def test_after_the_fuzz_the_server_still_stores(server: RunningOtlpd, client: Client) -> None:
    assert server.thread.is_alive()
    service = f"after-fuzz-{uuid.uuid4().hex[:6]}"
    body = trace_request(["still", "here"], service).SerializeToString()
    status, _, _ = client.send("POST", "/v1/traces", body, {"Content-Type": PROTOBUF})
    assert status == 200
    with psycopg.connect(server.database_url) as conn:
        stored = conn.execute(
            "SELECT name FROM spans WHERE service_name = %s ORDER BY name", (service,)
        ).fetchall()
    assert stored == [("here",), ("still",)]
