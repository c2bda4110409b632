"""The composition root: builds every part from Config and owns their start and stop order.

Start inner to outer (schema, store, batcher, then the ports that let traffic in); stop
outer to inner (readiness off, stop accepting, finish in-flight Exports, flush and commit
what is queued, close the pools). Nothing acknowledged is ever lost on the way down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from functools import partial

import grpc
import psycopg
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from alerting.grpc import AlertServicer
from alerting.proto import SERVICE_NAME as ALERT_SERVICE_NAME
from alerting.proto import pb_grpc as alert_grpc
from alerting.service import handlers as alert_handlers
from otlpd import jobs
from otlpd.access import Access, AuthMode, ProjectSettings, RateLimit
from otlpd.config import Config
from otlpd.envelope import EnvelopeKeys, SessionCache
from otlpd.instruments import REDACTIONS, TRUNCATIONS, Instruments
from otlpd.listening import bind_hosts
from otlpd.ops import OpsServer
from otlpd.pipeline.batcher import Batcher, BatcherSettings
from otlpd.pipeline.budget import DecodeBudget
from otlpd.pipeline.looplag import LoopLag
from otlpd.ratelimit import RateLimiter
from otlpd.receiver.decode import DecodeLimits, Decoder
from otlpd.receiver.grpc import SERVICE_NAMES, OtlpGrpcReceiver
from otlpd.receiver.http import OtlpHttpReceiver
from otlpd.receiver.ingest import Ingest, Shedding
from otlpd.receiver.redaction import Redaction
from otlpd.tls import add_port, grpc_server_credentials, server_ssl_context
from otlpd.usage import UsageMeter
from query.coldtier import ColdTier
from query.grpc import QueryServicer
from query.proto import SERVICE_NAME as QUERY_SERVICE_NAME
from query.proto import pb_grpc as query_grpc
from query.scope import TokenScope
from query.settings import QuerySettings
from query.tail import LogTail
from storage.postgres.alert_store import AlertStore
from storage.postgres.migrate import migrate
from storage.postgres.partitions import PARTITIONED_TABLES, PartitionManager
from storage.postgres.reading import ReadPool
from storage.postgres.sessions import PostgresSessionDirectory
from storage.postgres.tenants import PostgresTenants
from storage.postgres.usage import PostgresUsage
from storage.postgres.writer import PostgresWriter

log = logging.getLogger(__name__)

_PROBE_SECONDS = 2.0
_SETTLE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Ports:
    """The ports actually bound (differs from the config when it asked for port 0)."""

    grpc: int
    ops: int | None
    query: int = 0
    http: int = 0


def _batcher_settings(config: Config) -> BatcherSettings:
    return BatcherSettings(
        max_rows=config.batch_max_rows,
        max_delay=config.batch_max_delay,
        queue_max_rows=config.queue_max_rows,
        queue_max_bytes=config.queue_max_bytes,
        flushers=config.writers,
        retry_after=config.retry_after,
    )


def _grpc_options(config: Config) -> list[tuple[str, int]]:
    """The OTLP/gRPC server's channel arguments: its part of the memory bound.

    grpcio offers Python no memory quota (``grpc.resource_quota`` takes a pointer to a
    C object that grpcio cannot make), so what grpc holds is bounded by how many calls it
    lets in and how much of an unread call's body it accepts.
    """
    options = [
        ("grpc.max_receive_message_length", config.max_request_bytes),
        ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
        # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: Exports beyond this many on one
        # connection wait in the client (grpc clients queue them) instead of failing.
        ("grpc.max_concurrent_streams", config.grpc_max_streams),
        # grpc core's "overload protection" (on by default) counts a stream until
        # grpc.aio has freed its call, not until HTTP/2 closes it, and refuses the
        # client's next stream with RST_STREAM(REFUSED_STREAM): UNAVAILABLE without
        # RetryInfo. Counting as HTTP/2 does keeps the excess waiting in the client.
        ("grpc.http.overload_protection", 0),
        # With bandwidth-delay probing, grpc raises the initial stream window until a
        # stream may send its whole request before anything reads it (measured: 128
        # unread 8 MiB Exports held 1 GiB). Without, a stream whose body is not read yet
        # holds its initial window (64 KiB; measured ~0.1 MiB); a read still opens the
        # window to the whole message at once (one round trip).
        ("grpc.http2.bdp_probe", 0),
    ]
    if config.grpc_max_connections:
        # Connections beyond are closed at once: the client sees UNAVAILABLE (retryable
        # in OTLP) without RetryInfo, which a socket cannot carry. Off by default.
        options.append(("grpc.max_allowed_incoming_connections", config.grpc_max_connections))
    return options


def _decoder(config: Config, sessions: SessionCache, metrics: Instruments | None = None) -> Decoder:
    keys = EnvelopeKeys(
        service=config.service_keys,
        session=config.session_keys,
        user=config.user_keys,
        project=config.project_keys,
    )
    limits = DecodeLimits(
        max_attribute_value_bytes=config.max_attribute_value_bytes,
        max_body_bytes=config.max_body_bytes,
        max_attributes=config.max_attributes,
        max_attribute_depth=config.max_attribute_depth,
        accept_past_ns=int(config.accept_past * 1e9),
        accept_future_ns=int(config.accept_future * 1e9),
    )
    redaction = Redaction(
        enabled=config.redact,
        keys=config.redact_keys,
        patterns=config.redact_patterns,
        regex=config.redact_regex,
        anonymize_ip=config.anonymize_ip,
        ip_keys=config.ip_keys,
    )
    if metrics is None:  # nothing counted
        return Decoder(keys, limits, config.default_project, sessions, redaction=redaction)
    # The decoder counts through plain callables: it knows nothing of Prometheus.
    truncated = {w: metrics.truncated_values.labels(w).inc for w in TRUNCATIONS}
    redacted = {w: metrics.redacted_values.labels(w).inc for w in REDACTIONS}
    return Decoder(
        keys,
        limits,
        config.default_project,
        sessions,
        redaction=redaction,
        on_truncated=lambda what: truncated[what](),
        on_redacted=lambda what: redacted[what](),
    )


def _access(config: Config, tenants: PostgresTenants, metrics: Instruments) -> Access:
    """Token checks, with the server's defaults for projects that set nothing themselves."""
    defaults = ProjectSettings(
        allowed_origins=frozenset(config.cors_origins),
        anonymize_ip=config.anonymize_ip,
        rate_limit=RateLimit(config.rate_limit_records, config.rate_limit_bytes),
    )
    return Access(
        tenants,
        mode=AuthMode(config.auth),
        default_project=config.default_project,
        defaults=defaults,
        refresh=config.auth_refresh,
        instruments=metrics,
        retry_after=config.retry_after,
    )


def _query_settings(config: Config) -> QuerySettings:
    return QuerySettings(
        budget=config.query_budget,
        max_limit=config.query_max_limit,
        retry_after=config.retry_after,
        partition_interval_s=int(config.partition_interval),
        tail_max_streams=config.tail_max_streams,
        tail_buffer=config.tail_buffer,
        rollup_retention_1m_s=config.rollup_retention_1m,
        rollup_retention_1h_s=config.rollup_retention_1h,
    )


def _health_and_reflection(
    server: grpc.aio.Server, services: tuple[str, ...]
) -> health_aio.HealthServicer:
    """gRPC health and reflection on a port, listing ``services``."""
    servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection(
        (*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return servicer


def _missing_partitions(partitions: PartitionManager, config: Config, now: int) -> int:
    """Partitions of the accepted window, in every table, not known to exist."""
    past, future = int(config.accept_past * 1e9), int(config.accept_future * 1e9)
    window = partitions.window(now, past, future, config.partitions_ahead)
    return sum(len(partitions.unknown(table, window)) for table in PARTITIONED_TABLES)


class App:
    """One otlpd process: the OTLP/gRPC receiver, its pipeline and its store."""

    def __init__(
        self,
        config: Config,
        database_url: str,
        *,
        instruments: Instruments | None = None,
        serve_ops: bool = True,
    ) -> None:
        self.config = config
        self.database_url = database_url
        self.instruments = instruments or Instruments()
        self._serve_ops = serve_ops
        self._draining = False
        self._migrated = False
        self._store_up = False
        self.started = asyncio.Event()
        self.ports = Ports(0, None)

    @property
    def ready(self) -> bool:
        """Migrated, PostgreSQL reachable, and not draining."""
        return self._migrated and self._store_up and not self._draining

    async def serve(self, stop: asyncio.Event) -> None:
        """Runs until ``stop`` is set, then shuts down in order within the grace period."""
        config = self.config
        metrics = self.instruments
        await asyncio.to_thread(migrate, self.database_url)
        self._migrated = True
        # Who may call: tokens and project settings, known before any port opens.
        tenants = PostgresTenants(self.database_url, connect_timeout=config.store_timeout)
        await tenants.open()
        access = _access(config, tenants, metrics)
        server = grpc.aio.server(options=_grpc_options(config))
        query_server = grpc.aio.server(
            options=[("grpc.so_reuseport", 1 if config.workers > 1 else 0)]
        )
        # TLS on every port when OTLPD_TLS_CERT is set (otlpd.tls); mTLS on the data ports.
        credentials = grpc_server_credentials(config)
        try:
            await access.load()
            self.config = config = bind_hosts(config, access.required)
            # Both gRPC ports are bound before any pool opens: a taken port fails start-up
            # with nothing else to close (an open pool's tasks would keep the process up).
            grpc_port = add_port(server, config.grpc_addr, credentials, "OTLPD_GRPC_ADDR")
            query_port = add_port(query_server, config.query_addr, credentials, "OTLPD_QUERY_ADDR")
        except BaseException:
            await tenants.close()
            raise
        partitions = PartitionManager(
            self.database_url,
            interval_seconds=int(config.partition_interval),
            lock_timeout=config.partition_lock_timeout,
            on_created=lambda names: metrics.partitions_created.inc(len(names)),
        )
        # The partitions needed soonest before the port opens; the rest of the accepted
        # window in the background (_maintain), newest first, within a second or so.
        await asyncio.to_thread(partitions.maintain, time.time_ns(), 0, 0, config.partitions_ahead)
        metrics.partitions_missing.set(_missing_partitions(partitions, config, time.time_ns()))
        writer = PostgresWriter(
            self.database_url,
            partitions,
            pool_size=config.writers,
            connect_timeout=config.store_timeout,
            touch_interval=config.touch_interval,
        )
        directory = PostgresSessionDirectory(self.database_url)
        await directory.open()
        self._store_up = True
        batcher = Batcher(writer, _batcher_settings(config), metrics)
        sessions = SessionCache(
            config.session_cache_size,
            ttl=config.session_cache_ttl,
            negative_ttl=config.session_negative_ttl,
        )
        lag = LoopLag(on_tick=metrics.loop_lag.set)
        shedding = Shedding(lag, config.max_loop_lag, config.retry_after)
        decoder = _decoder(config, sessions, metrics)
        budget = DecodeBudget(
            config.decode_budget,
            config.max_request_bytes,
            config.decode_wait,
            config.retry_after,
            metrics,
        )
        usage_store = PostgresUsage(self.database_url, connect_timeout=config.store_timeout)
        await usage_store.open()
        usage = UsageMeter(usage_store, flush_every=config.usage_flush, instruments=metrics)
        ingest = Ingest(
            decoder,
            sessions,
            directory,
            batcher,
            metrics,
            shedding=shedding,
            budget=budget,
            receive_timeout=config.receive_timeout,
            default_project=config.default_project,
            rate_gate=RateLimiter(config.rate_limit_burst),
            usage=usage,
        )

        server.add_generic_rpc_handlers(OtlpGrpcReceiver(ingest, access, metrics).handlers())
        health_servicer = _health_and_reflection(server, SERVICE_NAMES)
        http = OtlpHttpReceiver(
            ingest,
            access,
            metrics,
            address=config.http_addr,
            max_request_bytes=config.max_request_bytes,
            ssl_context=server_ssl_context(config, client_auth=True),
            reuse_port=config.workers > 1,
        )

        # The query API has a port, a pool and a health service of its own: a heavy query
        # never takes a connection or a stream from ingest.
        query_settings = _query_settings(config)
        read_pool = ReadPool(
            self.database_url,
            max_size=config.query_connections,
            connect_timeout=config.store_timeout,
        )
        await read_pool.open()
        cold = ColdTier(
            partial(jobs.cold_store, config, create_bucket=False),
            cache_bytes=config.cold_cache_bytes,
            threads=config.cold_read_threads,
        )
        tail = LogTail(self.database_url, query_settings, metrics)
        scope = TokenScope(access, config.default_project)
        query_grpc.add_QueryServiceServicer_to_server(  # type: ignore[no-untyped-call]
            QueryServicer(read_pool, scope, query_settings, tail, metrics, cold=cold),
            query_server,
        )
        # The alerting API shares the query port, its scope and its tokens; its changes go
        # through a small pool of its own (the query pool is read-only).
        alert_store = AlertStore(
            self.database_url,
            connect_timeout=config.store_timeout,
            statement_timeout=config.query_budget,
        )
        await alert_store.open()
        alert_grpc.add_AlertServiceServicer_to_server(  # type: ignore[no-untyped-call]
            AlertServicer(
                scope,
                alert_handlers(
                    alert_store,
                    max_limit=config.query_max_limit,
                    pool=read_pool,
                    settings=jobs.evaluator_settings(config),
                ),
                metrics,
                retry_after=config.retry_after,
            ),
            query_server,
        )
        query_health = _health_and_reflection(
            query_server, (QUERY_SERVICE_NAME, ALERT_SERVICE_NAME)
        )
        ops = OpsServer(
            config.metrics_addr,
            lambda: metrics.registry,
            lambda: self.ready,
            ssl_context=server_ssl_context(config, client_auth=False),  # probes have no cert
        )
        try:
            async with asyncio.TaskGroup() as group:
                flushing = group.create_task(batcher.run())
                ticking = group.create_task(lag.run())
                tailing = group.create_task(tail.run())
                refreshing = group.create_task(access.run())
                metering = group.create_task(usage.run())
                await server.start()
                await query_server.start()
                await http.start()
                if self._serve_ops:
                    await ops.start()
                self.ports = Ports(
                    grpc_port, ops.port if self._serve_ops else None, query_port, http.port
                )
                await self._set_serving(health_servicer, True)
                await self._set_query_serving(query_health, True)
                probing = group.create_task(self._probe(batcher))
                maintaining = group.create_task(self._maintain(partitions))
                scheduling = group.create_task(self._run_jobs())
                self.started.set()
                log.info(
                    "otlpd serving",
                    extra={
                        "grpc_port": grpc_port,
                        "http_port": http.port,
                        "ops_port": self.ports.ops,
                    },
                )
                await stop.wait()

                log.info("draining", extra={"grace_seconds": config.shutdown_grace})
                self._draining = True
                await self._set_serving(health_servicer, False)
                await self._set_query_serving(query_health, False)
                # Refuse new Exports ourselves (UNAVAILABLE + RetryInfo) while the queued
                # ones commit, and keep dispatching for a moment: grpc.aio's stop() would
                # answer calls it has received but not yet handed over with CANCELLED.
                await batcher.close()
                settle = min(_SETTLE_SECONDS, config.shutdown_grace / 4)
                await asyncio.sleep(settle)
                drained_by = time.monotonic() + config.shutdown_grace - settle
                await server.stop(config.shutdown_grace - settle)  # in-flight Exports finish
                await http.stop(max(0.0, drained_by - time.monotonic()))  # and its own
                await flushing
                metering.cancel()
                await asyncio.gather(metering, return_exceptions=True)
                await usage.flush()  # what the last commits counted
                tailing.cancel()
                await query_server.stop(1.0)
                probing.cancel()
                maintaining.cancel()
                scheduling.cancel()
                ticking.cancel()
                refreshing.cancel()
        finally:
            self._draining = True
            with contextlib.suppress(Exception):
                await server.stop(0)
            with contextlib.suppress(Exception):
                await http.stop(0)
            with contextlib.suppress(Exception):
                await query_server.stop(0)
            await ops.stop()
            await read_pool.close()
            await asyncio.to_thread(cold.close)
            await alert_store.close()
            await directory.close()
            await usage_store.close()
            await tenants.close()
            await asyncio.to_thread(writer.close)
            log.info("otlpd stopped")

    async def _set_serving(self, servicer: health_aio.HealthServicer, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await servicer.set(name, status)
        self.instruments.ready.set(1 if serving else 0)
        self.instruments.ready_workers.set(1 if serving else 0)

    async def _set_query_serving(self, servicer: health_aio.HealthServicer, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", QUERY_SERVICE_NAME, ALERT_SERVICE_NAME):
            await servicer.set(name, status)

    async def _probe(self, batcher: Batcher) -> None:
        """Keeps readiness and admission in step with PostgreSQL's reachability."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.database_url, connect_timeout=max(1, round(self.config.store_timeout))
                )
                async with conn:
                    await conn.execute("SELECT 1")
                up = True
            except psycopg.Error:
                up = False
            if up != self._store_up:
                log.warning("PostgreSQL %s", "reachable again" if up else "unreachable")
            self._store_up = up
            batcher.store_up = up
            self.instruments.store_up.set(1 if up else 0)
            self.instruments.ready.set(1 if self.ready else 0)
            self.instruments.ready_workers.set(1 if self.ready else 0)
            await asyncio.sleep(_PROBE_SECONDS)

    async def _run_jobs(self) -> None:
        """The background jobs over the shared database (``otlpd.jobs``), each on one
        replica at a time; none with OTLPD_SCHEDULER=off. The rules' queries have a small
        read pool of their own, so evaluation never waits on the query API's clients."""
        if not self.config.scheduler:
            log.info("background jobs are off on this replica (OTLPD_SCHEDULER=off)")
            return
        alert_pool = ReadPool(
            self.database_url,
            max_size=self.config.alert_connections,
            connect_timeout=self.config.store_timeout,
        )
        await alert_pool.open()
        try:
            await jobs.scheduler(self.config, self.database_url, self.instruments, alert_pool).run()
        finally:
            await alert_pool.close()

    async def _maintain(self, partitions: PartitionManager) -> None:
        """Keeps every partition of the accepted window made ahead of time, so the ingest
        path never has to make one (it can: see Batcher._prepare)."""
        config = self.config
        period = min(300.0, config.partition_interval / 4)
        retry = min(period, 5.0)
        past, future = int(config.accept_past * 1e9), int(config.accept_future * 1e9)
        missing = self.instruments.partitions_missing
        while True:
            now = time.time_ns()
            missing.set(_missing_partitions(partitions, config, now))
            try:
                await asyncio.to_thread(
                    partitions.maintain, now, past, future, config.partitions_ahead
                )
            except Exception:
                log.exception("partition maintenance failed; will retry")
                missing.set(_missing_partitions(partitions, config, now))
                await asyncio.sleep(retry)
                continue
            missing.set(0)
            await asyncio.sleep(period)
