"""Fixtures that start real components: a PostgreSQL database per test, dropped after.

The machine's PostgreSQL (``OTLPD_TEST_PG``, default ``postgresql://postgres@127.0.0.1:5432``)
is the server; every test that asks for ``database_url`` gets a database of its own, so
tests never see each other's rows and can run in any order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from otlpd.app import App
from otlpd.config import load

PG_SERVER = os.environ.get("OTLPD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True)


def terminate_backends(database_url: str, application_name: str) -> int:
    """Kills the connections named ``application_name`` to this test's database (as a
    restart or a failover would), and says how many there were."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


@contextlib.contextmanager
def _fresh_database() -> Iterator[str]:
    """A fresh, empty database on the real server; dropped (with its sessions) after."""
    name = f"otlpd_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh, empty database for one test."""
    with _fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def shared_database() -> Iterator[str]:
    """A fresh database for a whole module, for servers that its tests share."""
    with _fresh_database() as url:
        yield url


# --- a running otlpd -------------------------------------------------------------------


@dataclass
class RunningOtlpd:
    """An App serving on free loopback ports in a thread of its own (own event loop)."""

    app: App
    database_url: str
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    stop_event: asyncio.Event

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.app.ports.grpc}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.app.ports.ops}"

    @property
    def http_port(self) -> int:
        """The OTLP/HTTP port."""
        return self.app.ports.http

    @property
    def http_url(self) -> str:
        """The OTLP/HTTP base URL (``{http_url}/v1/traces``)."""
        return f"http://127.0.0.1:{self.app.ports.http}"

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample of the server's own Prometheus registry (0 when absent)."""
        value = self.app.instruments.registry.get_sample_value(name, labels or {})
        return value or 0.0

    def stop(self, timeout: float = 30) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self.thread.join(timeout)
        assert not self.thread.is_alive(), "otlpd did not stop"


def start_otlpd_thread(database_url: str, **settings: str) -> RunningOtlpd:
    """Starts otlpd with ``settings`` (Config field names) on port 0, ready to serve."""
    overrides = {
        "grpc_addr": "127.0.0.1:0",
        "metrics_addr": "127.0.0.1:0",
        "query_addr": "127.0.0.1:0",
        "http_addr": "127.0.0.1:0",
        # Tests that tier run a pass by hand: a server's own pass (one at start) would
        # race them for the job's lock and move data under the other tests' feet.
        "tiering": "false",
        # The server shares its process (and the GIL) with the test's clients, on a box
        # running the suite's workers: its loop often lags past the production default
        # (0.25 s), which would shed Exports no test expects. Shedding tests set their own.
        "max_loop_lag": "5s",
        **settings,
    }
    config = load({}, overrides)
    app = App(config, database_url)
    started = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            box["loop"], box["stop"] = asyncio.get_running_loop(), stop
            waiter = asyncio.ensure_future(app.started.wait())
            waiter.add_done_callback(lambda _: started.set())
            try:
                await app.serve(stop)
            except BaseException as exc:
                box["error"] = exc
                started.set()
                raise

        asyncio.run(main())

    thread = threading.Thread(target=run, name="otlpd-under-test", daemon=True)
    thread.start()
    if not started.wait(60) or "error" in box:
        raise RuntimeError(f"otlpd did not start: {box.get('error')!r}")
    return RunningOtlpd(app, database_url, thread, box["loop"], box["stop"])  # type: ignore[arg-type]


@pytest.fixture
def start_otlpd(database_url: str) -> Iterator[Callable[..., RunningOtlpd]]:
    """Factory: ``start_otlpd(batch_max_rows="10", ...)`` runs a real otlpd on free ports."""
    running: list[RunningOtlpd] = []

    def start(**settings: str) -> RunningOtlpd:
        server = start_otlpd_thread(database_url, **settings)
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


@pytest.fixture
def otlpd(start_otlpd: Callable[..., RunningOtlpd]) -> RunningOtlpd:
    """A running otlpd with default settings over a fresh database."""
    return start_otlpd()


# --- shared builders --------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Polls ``condition`` every 50 ms until it holds; fails naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(0.05)


def free_port() -> int:
    """A free port below the kernel's ephemeral range, so no bind to port 0 (other tests,
    benchmarks) can take it before our server does. otlpd's gRPC listener sets
    SO_REUSEPORT with workers: a port taken by another such server would silently share
    our traffic with it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    # Each pytest-xdist worker draws from a slice of its own: two workers checking the
    # same port before either server binds it would otherwise both get it (seen in CI).
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    first = max(1024, low - 16000)
    width = (low - first) // max(1, workers)
    first += width * (worker % max(1, workers))
    for _ in range(100):
        port = random.randrange(first, first + width)
        if port in _HANDED_OUT:  # free now, but a server of this process may bind it soon
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port below the ephemeral range")


_HANDED_OUT: set[int] = set()


def trace_request(
    names: list[str], service: str = "raw"
) -> trace_service_pb2.ExportTraceServiceRequest:
    """One valid span per name, timed now, with random ids, under one ``service``."""
    now = time.time_ns()
    request = trace_service_pb2.ExportTraceServiceRequest()
    service_name = common_pb2.KeyValue(
        key="service.name", value=common_pb2.AnyValue(string_value=service)
    )
    scope = request.resource_spans.add(
        resource=resource_pb2.Resource(attributes=[service_name])
    ).scope_spans.add()
    for name in names:
        scope.spans.add(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name=name,
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1000,
            kind=1,
        )
    return request


# --- the query API ----------------------------------------------------------------------


@pytest.fixture
def query(otlpd: RunningOtlpd) -> Iterator[Any]:
    """A QueryService stub on the running otlpd's query port (a sync gRPC channel)."""
    import grpc

    from query.proto import pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{otlpd.app.ports.query}") as channel:
        yield pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]


# --- a real S3-protocol server ------------------------------------------------------------


def start_moto(port: int = 0) -> tuple[Any, str]:
    """moto's S3 server on loopback (port 0: the kernel's choice, in the ephemeral range,
    where ``free_port`` never looks); (server, "host:port"). It forgets everything when
    stopped."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    return server, f"{host}:{bound}"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """One S3 server for the module; credentials are anything (moto checks none)."""
    server, endpoint = start_moto()
    yield endpoint
    server.stop()


class CuttingProxy:
    """A TCP proxy on loopback in front of ``target`` ("host:port") that can cut its
    connections in the middle of a request: a network fault between otlpd and a server we
    do not own (an S3 server), made on the wire rather than by faking either side.

    ``cut_after(n)``: once more than ``n`` bytes have gone upstream in all, every
    connection is closed at once and new ones are refused; ``heal()`` forwards again.
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._budget: int | None = None
        self.upstream_bytes = 0
        self.cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, n: int) -> None:
        with self._lock:
            self._budget, self.upstream_bytes = n, 0
            self.cut.clear()

    def heal(self) -> None:
        with self._lock:
            self._budget = None
            self.cut.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while data := source.recv(16384):
                if up:
                    with self._lock:
                        self.upstream_bytes += len(data)
                        over = self._budget is not None and self.upstream_bytes > self._budget
                    if over:
                        self._cut()
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _cut(self) -> None:
        self.cut.set()
        with self._lock:
            doomed, self._open = self._open, []
        for s in doomed:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._listener.close()
        self._cut()
