"""The operations surface on the metrics port: ``/metrics``, ``/healthz``, ``/readyz``.

``/healthz`` answers while the process can serve HTTP at all (liveness: restart me if
not); ``/readyz`` only while otlpd should receive traffic: migrated, PostgreSQL
reachable, not draining. Orchestrators route on the second and restart on the first.

With ``OTLPD_TLS_CERT`` the port speaks HTTPS, but never asks for a client certificate,
even with ``OTLPD_TLS_CLIENT_CA``: kubelet's probes and most Prometheus scrapes present
none, and nothing here is data (``otlpd.tls``).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from otlpd.listening import CannotListen


class OpsServer:
    """aiohttp server for metrics and health; owned and stopped by the App."""

    def __init__(
        self,
        address: str,
        registry: Callable[[], CollectorRegistry],
        ready: Callable[[], bool],
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._host, _, port = address.rpartition(":")
        self._port = int(port)
        self._registry = registry
        self._ready = ready
        self._ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self.port = self._port

    async def start(self) -> None:
        """Binds the port; fails at start-up (not later) if it is taken."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self._host or "0.0.0.0", self._port, ssl_context=self._ssl_context
        )
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise CannotListen(f"{self._host}:{self._port}", "OTLPD_METRICS_ADDR", exc) from exc
        server = site._server
        if server is not None and self._port == 0:
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Closes the listener and open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._registry())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")
