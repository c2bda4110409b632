"""``--workers N``: N processes serve one gRPC port, so ingest uses every core.

Python decodes OTLP on one core per process (the GIL), so one box scales by processes.
Each worker binds the same address with SO_REUSEPORT and the kernel spreads connections
across them; PostgreSQL is the only thing they share, exactly as with replicas on other
hosts. The supervisor serves the ops port with every worker's metrics summed
(prometheus_client's multiprocess mode), restarts a worker that dies, and on SIGTERM
forwards it and waits for every worker to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from multiprocessing.process import BaseProcess

from prometheus_client import CollectorRegistry, multiprocess

from otlpd.config import Config
from otlpd.listening import CannotListen
from otlpd.ops import OpsServer
from otlpd.tls import server_ssl_context

log = logging.getLogger(__name__)

_RESTART_BACKOFF = 1.0
_POLL = 0.2


class Supervisor:
    """Owns the worker processes and the shared ops port."""

    def __init__(self, config: Config, database_url: str) -> None:
        self._config = config
        self._database_url = database_url
        self._context = multiprocessing.get_context("spawn")
        self._procs: list[BaseProcess] = []
        self._metrics_dir = ""

    def run(self) -> int:
        """Runs the workers until SIGTERM/SIGINT; returns the process exit code."""
        _check_port_free(self._config.grpc_addr, "OTLPD_GRPC_ADDR")
        _check_port_free(self._config.http_addr, "OTLPD_HTTP_ADDR")
        _check_port_free(self._config.query_addr, "OTLPD_QUERY_ADDR")
        self._metrics_dir = tempfile.mkdtemp(prefix="otlpd-metrics-")
        # Must be in the environment before a worker imports prometheus_client.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir
        try:
            return asyncio.run(self._supervise())
        finally:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    async def _supervise(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        ops = OpsServer(
            self._config.metrics_addr,
            self._registry,
            self._ready,
            ssl_context=server_ssl_context(self._config, client_auth=False),
        )
        await ops.start()  # before any worker: a taken port leaves none behind
        self._procs = [self._spawn(i) for i in range(self._config.workers)]
        try:
            while not stop.is_set():
                for i, proc in enumerate(self._procs):
                    if not proc.is_alive():
                        log.error("worker died; restarting", extra={"exitcode": proc.exitcode})
                        self._mark_dead(proc)
                        await asyncio.sleep(_RESTART_BACKOFF)
                        self._procs[i] = self._spawn(i)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _POLL)
            return await asyncio.to_thread(self._drain)
        finally:
            await ops.stop()

    def _spawn(self, index: int) -> BaseProcess:
        process = self._context.Process(
            target=_worker_main,
            args=(self._config, self._database_url),
            name=f"otlpd-worker-{index}",
        )
        process.start()
        log.info("worker started", extra={"worker": index, "pid": process.pid})
        return process

    def _drain(self) -> int:
        for proc in self._procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        loop_deadline = self._config.shutdown_grace + 5
        for proc in self._procs:
            proc.join(loop_deadline)
            if proc.is_alive():
                log.error("worker did not drain in time; killing", extra={"pid": proc.pid})
                proc.kill()
                proc.join()
            self._mark_dead(proc)
        return 0 if all(p.exitcode == 0 for p in self._procs) else 1

    def _registry(self) -> CollectorRegistry:
        """Every live and dead worker's metrics, summed as their gauge modes say."""
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self._metrics_dir)  # type: ignore[no-untyped-call]
        return registry

    def _ready(self) -> bool:
        """Ready when every worker is alive and reports itself ready (each adds 1 to
        otlpd_ready_workers; otlpd_ready is 1 as soon as the first one is)."""
        if not self._procs or not all(p.is_alive() for p in self._procs):
            return False
        ready = self._registry().get_sample_value("otlpd_ready_workers")
        return ready == float(len(self._procs))

    @staticmethod
    def _mark_dead(proc: BaseProcess) -> None:
        if proc.pid is not None:
            multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]


def _check_port_free(address: str, variable: str) -> None:
    """Fails if another process holds a port the workers share.

    The workers bind with SO_REUSEPORT, which would silently share the port with any
    other SO_REUSEPORT listener of the same user and split its traffic with it. A bind
    without the option fails on a taken port, so this one says so before we start.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            raise CannotListen(address, variable, exc) from exc


def _worker_main(config: Config, database_url: str) -> None:
    """Entry point of a worker process: one App, without an ops port of its own."""
    from otlpd.runner import run_app

    raise SystemExit(run_app(config, database_url, serve_ops=False))
