"""OTLP/HTTP: ``POST /v1/traces``, ``/v1/logs``, ``/v1/metrics``, protobuf or JSON, on aiohttp.

The same pipeline as OTLP/gRPC (``receiver.grpc``): the caller is authenticated from its
``Authorization`` header, then ``Ingest.export`` gets a ``PayloadReader`` that reads the
body only once the decode budget has room for it. The reader inflates gzip or deflate
itself, bounded by ``OTLPD_MAX_REQUEST_BYTES`` (a zip bomb stops at the limit, it never
allocates its size) and, for JSON, turns it into the protobuf request (``otlp_json``,
in a thread past ``JSON_THREAD_BYTES``), so both encodings are decoded, limited and
stored by one decoder, and a JSON parse is CPU spent within the decode budget.

Answers follow the OTLP/HTTP spec ("OTLP/HTTP Response"), in the request's encoding
(protobuf unless it was JSON; a 415 answers protobuf): 200 with an
``Export*ServiceResponse`` (partial success when records were rejected); otherwise the
status of ``otlpd.errors.http_status`` with a ``google.rpc.Status`` body
(``otlpd.errors.rpc_status``): 400 for a body that is not OTLP, 401 and 403 from
``otlpd.access``, 404 for another path, 405 for another method on the three paths,
413 past the limit (before or after decompression), 415 for another content type or
encoding, and 429 or 503 with ``Retry-After``. Never 500: an exception nobody expected
answers 503 (the fault is ours, so retryable) and is logged with its traceback.

Browsers (RUM SDKs) get CORS (``receiver.cors``): preflights are answered for origins
that some project allows, and a POST that carries an ``Origin`` is refused (403, before
its body is read) unless the caller's project allows that origin.

``otlpd_requests_total`` counts the Exports of the three paths with ``code`` the HTTP
status ("200", "400", "503", ...), next to gRPC's code names ("OK", "UNAVAILABLE"), so
one metric shows both transports and neither is mistaken for the other; preflights and
other paths are not Exports and are not counted.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import zlib
from collections.abc import Callable
from typing import Final, Protocol

from aiohttp import web
from aiohttp.http_exceptions import ContentLengthError, HttpProcessingError
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from otlpd.access import Authenticator, Principal, Scope
from otlpd.errors import (
    InvalidRequest,
    NotFound,
    OtlpdError,
    PayloadTooLarge,
    PermissionDenied,
    UnsupportedMediaType,
    http_status,
    internal_fault,
    rpc_status,
)
from otlpd.instruments import Instruments
from otlpd.listening import CannotListen
from otlpd.receiver import cors
from otlpd.receiver.ingest import CallEnded, Ingest, Outcome
from otlpd.receiver.otlp_json import parse_request, to_json
from storage.model import Signal

log = logging.getLogger(__name__)

PATHS: Final = {"/v1/traces": Signal.TRACES, "/v1/logs": Signal.LOGS, "/v1/metrics": Signal.METRICS}
PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
# Media types taken as protobuf or JSON (parameters such as ``charset`` are ignored).
MEDIA_TYPES: Final = {PROTOBUF: PROTOBUF, "application/protobuf": PROTOBUF, JSON: JSON}
# Content codings read (RFC 9110 names; "none" is what OTLP exporters call identity).
CODINGS: Final = frozenset({"gzip", "x-gzip", "deflate", "identity", "none", ""})
ACCEPT_ENCODING: Final = "gzip, deflate, identity"
ALLOW: Final = "POST, OPTIONS"
# A JSON body larger than this is parsed in a thread. Measured here: 256 KiB of spans
# parse in ~10 ms, 1.2 MB in 50-100 ms, which inline would stall every other call on
# the event loop for as long (and read as loop lag, which sheds load); in a thread the
# loop runs between GIL switches. The move costs ~0.05 ms; below the threshold a parse
# blocks the loop no longer than decoding a request of 1,000 spans does anyway.
JSON_THREAD_BYTES: Final = 256 * 1024
_CHUNK: Final = 64 * 1024  # inflate output asked of zlib at once, at most
_MIN_GRACE: Final = 0.01  # seconds
# What an unexpected failure tells the client to wait; Ingest's own refusals carry
# OTLPD_RETRY_AFTER.
_FAULT_RETRY_AFTER: Final = 1.0


class HttpAccess(Authenticator, Protocol):
    """What this receiver asks of ``otlpd.access.Access``: the caller, and the browser
    origins it may send from."""

    def origin_allowed(self, origin: str, principal: Principal) -> bool:
        """Whether a page at ``origin`` may send on behalf of ``principal``'s project."""
        ...

    def preflight_allowed(self, origin: str) -> bool:
        """Whether any project allows ``origin`` (a preflight carries no token)."""
        ...


_RESPONSES: Final[dict[str, tuple[type[Message], str]]] = {
    Signal.TRACES: (trace_service_pb2.ExportTraceServiceResponse, "rejected_spans"),
    Signal.LOGS: (logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records"),
    Signal.METRICS: (metrics_service_pb2.ExportMetricsServiceResponse, "rejected_data_points"),
}


class _Inflater:
    """Inflates a gzip or deflate body as it arrives, never past ``limit`` bytes."""

    __slots__ = ("_coding", "_head", "_inflate", "_limit", "size")

    def __init__(self, coding: str, limit: int) -> None:
        self._coding = coding
        self._limit = limit
        self._inflate: zlib._Decompress | None = None
        self._head = b""
        self.size = 0  # bytes out so far

    def feed(self, data: bytes) -> list[bytes]:
        """The inflated bytes of ``data``; PayloadTooLarge as soon as they pass the limit,
        InvalidRequest if ``data`` is not what the coding says."""
        out: list[bytes] = []
        if self._inflate is None and self._coding == "deflate" and len(self._head + data) < 2:
            self._head += data  # the zlib header (2 bytes) tells wrapped from raw
            return out
        data, self._head = self._head + data, b""
        while data:
            inflate = self._inflate
            if inflate is None:
                inflate = self._inflate = zlib.decompressobj(self._wbits(data))
            elif inflate.eof:
                if self._coding == "deflate":
                    raise InvalidRequest("the deflate body has data past its end")
                inflate = self._inflate = zlib.decompressobj(self._wbits(data))  # next member
            try:
                while True:
                    # At most one byte more than the room left: enough to know it is over.
                    ask = min(self._limit - self.size + 1, _CHUNK)
                    chunk = inflate.decompress(data, ask)
                    self.size += len(chunk)
                    if self.size > self._limit:
                        raise PayloadTooLarge(
                            "the request inflates past the limit of"
                            f" {self._limit} bytes (OTLPD_MAX_REQUEST_BYTES)"
                        )
                    out.append(chunk)
                    data = inflate.unconsumed_tail
                    if inflate.eof:
                        data = inflate.unused_data
                        break
                    if not data and len(chunk) < ask:
                        break  # all in, all out (a full chunk may leave output pending)
            except zlib.error as exc:
                raise InvalidRequest(f"the body is not valid {self._coding}: {exc}") from None
        return out

    def finish(self) -> None:
        """Raises InvalidRequest if the stream stopped before its end."""
        if self._head or (self._inflate is not None and not self._inflate.eof):
            raise InvalidRequest(f"the {self._coding} body is truncated")

    def _wbits(self, data: bytes) -> int:
        if self._coding != "deflate":
            return 16 + zlib.MAX_WBITS  # a gzip member
        # HTTP's deflate is zlib-wrapped (RFC 9110 8.4.1.2), but some clients send it raw.
        if len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0:
            return zlib.MAX_WBITS
        return -zlib.MAX_WBITS


class _Body:
    """The body of one OTLP/HTTP Export, read when Ingest asks for it (``PayloadReader``)."""

    __slots__ = (
        "_coding",
        "_json",
        "_large_json",
        "_limit",
        "_observe",
        "_request",
        "_signal",
        "unparsable",
        "warning",
    )

    def __init__(
        self,
        request: web.Request,
        signal: str,
        *,
        coding: str,
        json: bool,
        limit: int,
        observe: Callable[[float], None],
        large_json: asyncio.Semaphore,
    ) -> None:
        self._large_json = large_json
        self._request = request
        self._signal = signal
        self._coding = coding
        self._json = json
        self._limit = limit
        self._observe = observe
        self.warning = ""  # for the partial success: what the JSON mapping had to say
        self.unparsable = False  # the body was read, and it is not OTLP/JSON

    async def read(self) -> bytes:
        """The serialized protobuf request (inflated; converted if it was JSON)."""
        body = await self._receive()
        self._observe(len(body))
        if not self._json or not body:  # an empty body is an empty request, either way
            return body
        try:
            if len(body) > JSON_THREAD_BYTES:
                async with self._large_json:
                    parsed = await asyncio.to_thread(parse_request, self._signal, body)
            else:
                parsed = parse_request(self._signal, body)
        except InvalidRequest:
            self.unparsable = True
            raise
        self.warning = parsed.warning
        return parsed.payload

    async def _receive(self) -> bytes:
        limit = self._limit
        coding = self._coding
        inflater = _Inflater(coding, limit) if coding in ("gzip", "x-gzip", "deflate") else None
        chunks: list[bytes] = []
        received = 0
        try:
            async for data in self._request.content.iter_any():
                received += len(data)
                if received > limit:
                    raise PayloadTooLarge(
                        f"the request is over the limit of {limit} bytes (OTLPD_MAX_REQUEST_BYTES)"
                    )
                if inflater is None:
                    chunks.append(data)
                else:
                    chunks.extend(inflater.feed(data))
        except (ConnectionError, ContentLengthError):
            # The client went away mid-body (aiohttp says so with either).
            raise CallEnded("the client closed the connection before its body arrived") from None
        except HttpProcessingError as exc:
            raise InvalidRequest(f"the body is malformed: {exc.message}") from None
        if inflater is not None and received:
            inflater.finish()
        return b"".join(chunks)


class OtlpHttpReceiver:
    """The OTLP/HTTP port: an aiohttp server around one Ingest; owned by the App."""

    def __init__(
        self,
        ingest: Ingest,
        access: HttpAccess,
        instruments: Instruments,
        *,
        address: str,
        max_request_bytes: int,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> None:
        host, _, port = address.rpartition(":")
        self._host = host.strip("[]") or "0.0.0.0"
        self._port = int(port)
        self._ingest = ingest
        self._access = access
        self._metrics = instruments
        self._limit = max_request_bytes
        # One large JSON parse at a time: it holds ~8.5x its body while it runs (measured,
        # see JSON_THREAD_BYTES), which the decode budget, charging the body once, does
        # not know; one at a time adds at most 8.5 x OTLPD_MAX_REQUEST_BYTES to the bound.
        self._large_json = asyncio.Semaphore(1)
        self._ssl_context = ssl_context
        self._reuse_port = reuse_port
        self._runner: web.AppRunner | None = None
        self.port = self._port

    async def start(self) -> None:
        """Binds the port (fails now, not later, if it is taken) and serves."""
        app = web.Application(client_max_size=self._limit)
        app.router.add_route("*", "/{path:.*}", self._handle)
        # The body is inflated by _Body, within the request limit: aiohttp's own inflation
        # would hand over a bomb's whole output.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(
            runner,
            self._host,
            self._port,
            ssl_context=self._ssl_context,
            reuse_port=self._reuse_port or None,
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise CannotListen(f"{self._host}:{self._port}", "OTLPD_HTTP_ADDR", exc) from exc
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = site.port

    async def stop(self, grace: float) -> None:
        """Stops accepting, lets in-flight Exports finish for up to ``grace`` seconds
        (then cancels them), and closes every connection."""
        runner = self._runner
        if runner is None:
            return
        self._runner = None
        for site in list(runner.sites):
            await site.stop()
        server = runner.server
        if server is not None:
            server.pre_shutdown()  # idle keep-alive connections close; busy ones after
            # aiohttp reads a timeout of 0 as none at all: never less than a moment.
            await server.shutdown(max(grace, _MIN_GRACE))
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Every request, whatever its path: never a 500 (aiohttp's answer to an exception
        a handler lets out, which OTLP clients must not retry)."""
        try:
            return await self._serve(request)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("OTLP/HTTP request failed unexpectedly", extra={"path": request.path})
            return _failure(internal_fault(_FAULT_RETRY_AFTER), json=False)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        signal = PATHS.get(request.path)
        json = _media_type(request) == JSON
        if signal is None:
            paths = ", ".join(PATHS)
            return _failure(NotFound(f"no such path; OTLP/HTTP serves {paths}"), json)
        if request.method == "OPTIONS":
            return self._options(request)
        if request.method != "POST":
            # Not an otlpd error: a fact of this transport's routes (RFC 9110 15.5.6).
            error = InvalidRequest(f"{request.method} is not allowed; OTLP/HTTP is {ALLOW}")
            response = _failure(error, json)
            response.set_status(405)
            response.headers["Allow"] = ALLOW
            return response
        started = time.perf_counter()
        active = self._metrics.exports_active
        active.inc()
        try:
            response = await self._export(request, signal, json)
        finally:
            active.dec()
        self._metrics.requests.labels(signal, str(response.status)).inc()
        self._metrics.request_seconds.labels(signal).observe(time.perf_counter() - started)
        return response

    def _options(self, request: web.Request) -> web.Response:
        """A CORS preflight, or a plain OPTIONS (which says what the path allows)."""
        origin = request.headers.get("Origin")
        if origin is None or "Access-Control-Request-Method" not in request.headers:
            return web.Response(status=204, headers={"Allow": ALLOW})
        try:
            allowed = self._access.preflight_allowed(origin)
        except Exception:
            log.exception("checking a preflight's origin failed unexpectedly")
            allowed = False
        if not allowed:
            return web.Response(status=403)
        requested = request.headers.get("Access-Control-Request-Headers")
        return web.Response(status=204, headers=cors.preflight_headers(origin, requested))

    async def _export(self, request: web.Request, signal: str, json: bool) -> web.Response:
        headers = request.headers
        origin = headers.get("Origin")
        readable: dict[str, str] = {}  # CORS headers, once the origin may read the answer
        try:
            try:
                if origin is not None and self._access.preflight_allowed(origin):
                    readable = cors.response_headers(origin)  # for a refusal of the token
                principal = await self._access.authorize(headers.get("Authorization"), Scope.INGEST)
                if origin is not None:
                    # Before the body is read: a page of another site stores nothing.
                    if not self._access.origin_allowed(origin, principal):
                        readable = {}
                        raise PermissionDenied(
                            f"origin {origin[:200]!r} may not send to this project"
                        )
                    readable = cors.response_headers(origin)
                coding = _content_coding(request)
                length = request.content_length
                if length is not None and length > self._limit:
                    raise PayloadTooLarge(
                        f"the request is {length} bytes, over the limit of {self._limit} bytes"
                        " (OTLPD_MAX_REQUEST_BYTES)"
                    )
                body = _Body(
                    request,
                    signal,
                    coding=coding,
                    json=json,
                    limit=self._limit,
                    observe=self._metrics.request_bytes.labels(signal).observe,
                    large_json=self._large_json,
                )
                try:
                    outcome = await self._ingest.export(signal, body, principal)
                except InvalidRequest:
                    if body.unparsable:  # counted as Ingest counts a protobuf it cannot parse
                        self._metrics.records.labels(signal, "rejected").inc()
                    raise
            except CallEnded:
                # Nobody is listening any more; answered for aiohttp's sake, not counted.
                log.debug("export ended before its body arrived", extra={"signal": signal})
                return web.Response(status=400)
            except OtlpdError as exc:
                return _failure(exc, json and not isinstance(exc, UnsupportedMediaType), readable)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Input must never crash the server; a bug still answers, retryably (the
            # fault is ours, and a permanent code makes clients drop the data).
            log.exception("OTLP/HTTP export failed unexpectedly", extra={"signal": signal})
            return _failure(internal_fault(_FAULT_RETRY_AFTER), json, readable)
        return _success(signal, outcome, body.warning, json, readable)


def _media_type(request: web.Request) -> str | None:
    """PROTOBUF, JSON, or None for any other (or no) content type."""
    raw = request.headers.get("Content-Type", "")
    return MEDIA_TYPES.get(raw.partition(";")[0].strip().lower())


def _content_coding(request: web.Request) -> str:
    """The body's coding, after checking the content type; UnsupportedMediaType if either
    is one this receiver does not read."""
    raw = request.headers.get("Content-Type")
    if _media_type(request) is None:
        shown = "none" if raw is None else repr(raw[:100])
        raise UnsupportedMediaType(f"content type {shown} is not OTLP; send {PROTOBUF} or {JSON}")
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in CODINGS:
        raise UnsupportedMediaType(
            f"content encoding {coding[:100]!r} is not supported; send {ACCEPT_ENCODING}"
        )
    return coding


def _encode(message: Message, json: bool) -> tuple[bytes, str]:
    return (to_json(message), JSON) if json else (message.SerializeToString(), PROTOBUF)


def _success(
    signal: str, outcome: Outcome, warning: str, json: bool, extra: dict[str, str]
) -> web.Response:
    """200 with the Export response; partial success when anything was rejected or said."""
    response_type, rejected_field = _RESPONSES[signal]
    response = response_type()
    message = "; ".join(text for text in (warning, outcome.error_message) if text)
    if outcome.rejected or message:
        partial = response.partial_success  # type: ignore[attr-defined]
        setattr(partial, rejected_field, outcome.rejected)
        partial.error_message = message
    body, content_type = _encode(response, json)
    return web.Response(body=body, headers={"Content-Type": content_type, **extra})


def _failure(error: OtlpdError, json: bool, extra: dict[str, str] | None = None) -> web.Response:
    """The status and ``google.rpc.Status`` body that answer ``error``."""
    status, headers = http_status(error)
    if isinstance(error, UnsupportedMediaType):
        headers = {**headers, "Accept-Encoding": ACCEPT_ENCODING}
    body, content_type = _encode(rpc_status(error), json)
    return web.Response(
        status=status,
        body=body,
        headers={"Content-Type": content_type, **headers, **(extra or {})},
    )
