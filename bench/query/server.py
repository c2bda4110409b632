"""otlpd under the query benchmark: ``python -m otlpd serve`` on the benchmark's database.

Unlike the ingest benchmark's ``bench.targets.OtlpdTarget``, which makes a database of
its own and drops it at the end, this one serves a database that is loaded once and kept
(``bench.query.generate``), so the process plumbing is shared but the lifecycle is not.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc

from bench.targets import ServerProcess, TargetError, free_port, wait_until


class QueryServer:
    """One otlpd process serving ``database_url``; ``query_addr`` is its query API."""

    def __init__(
        self,
        workdir: Path,
        database_url: str,
        workers: int = 1,
        environment: dict[str, str] | None = None,
    ) -> None:
        """``environment``: settings of otlpd's beyond the ports and database."""
        self.database_url = database_url
        self.workers = workers
        self._environment = dict(environment or {})
        self._grpc_port = free_port()
        self._metrics_port = free_port()
        self._query_port = free_port()
        self._http_port = free_port()
        self._process = ServerProcess(f"otlpd-query-w{workers}", workdir)

    @property
    def query_addr(self) -> str:
        """``host:port`` of the query API."""
        return f"127.0.0.1:{self._query_port}"

    @property
    def query_port(self) -> int:
        """The query API's port."""
        return self._query_port

    @property
    def grpc_port(self) -> int:
        """The OTLP ingest port (the sampler counts connections on it)."""
        return self._grpc_port

    @property
    def pid(self) -> int:
        """The server's main process."""
        return self._process.pid

    @property
    def log_path(self) -> Path:
        """Where the server's output goes."""
        return self._process.log_path

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self._metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if int(resp.status) != 200:
                    return False
        except (urllib.error.URLError, OSError):
            return False
        with grpc.insecure_channel(self.query_addr) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1.0)
            except grpc.FutureTimeoutError:
                return False
        return True

    def start(self) -> None:
        """Starts otlpd; returns once it is ready and its query port accepts calls."""
        env = (
            dict(os.environ)
            | {
                "OTLPD_DATABASE_URL": self.database_url,
                "OTLPD_GRPC_ADDR": f"127.0.0.1:{self._grpc_port}",
                "OTLPD_METRICS_ADDR": f"127.0.0.1:{self._metrics_port}",
                "OTLPD_QUERY_ADDR": self.query_addr,
                "OTLPD_HTTP_ADDR": f"127.0.0.1:{self._http_port}",
                # The data is a day old at most when loaded; a day more lets a kept database
                # be served the next day without otlpd refusing its partitions' window.
                "OTLPD_ACCEPT_PAST": "48h",
                # The loader writes a day at once, so a tiering pass right after start
                # would export every raw metric point older than OTLPD_HOT_RETENTION_METRICS
                # (2h) while the cases are timed: a burst a live server spreads over the
                # day. The benchmarks time queries, not that burst (make bench-cold tiers
                # its data itself, before it starts otlpd).
                "OTLPD_TIERING": "false",
            }
            | self._environment
        )
        self._process.spawn(
            [sys.executable, "-m", "otlpd", "serve", "--workers", str(self.workers)], env=env
        )
        wait_until(self._ready, self._process, "/readyz 200 and the query port")

    def wait_rolled_up(self, until_ns: int, timeout: float = 600.0) -> float:
        """Waits until the RED rollups hold every span before ``until_ns`` (a database
        loaded by INSERT has none until the job's first round backfills them); returns
        the seconds waited."""
        from query.proto import pb, pb_grpc

        started = time.monotonic()
        with grpc.insecure_channel(self.query_addr) as channel:
            stub = pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
            while time.monotonic() - started < timeout:
                self._process.check_alive()
                answer = stub.GetServiceStats(pb.GetServiceStatsRequest(limit=1), timeout=30)
                until = answer.complete_until
                if until.seconds * 10**9 + until.nanos >= until_ns:
                    return time.monotonic() - started
                time.sleep(1.0)
        raise TargetError(f"the rollups were not complete after {timeout:g}s")

    def wait_metric_rollups(self, until_ns: int, timeout: float = 600.0) -> float:
        """Waits until the metric rollup job has rolled up every point before ``until_ns``
        (its first round backfills the day of points, loaded by INSERT): every minute, and
        every hour but the one ``until_ns`` is in, which is rolled up once it has ended;
        returns the seconds waited."""
        import psycopg

        hour = until_ns // (3600 * 10**9) * 3600
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self._process.check_alive()
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT (SELECT extract(epoch FROM horizon) FROM metric_rollup_state "
                    "WHERE name = 'metric_rollups'), "
                    "(SELECT count(*) FROM metric_rollup_dirty), "
                    "(SELECT count(*) FROM metric_rollup_dirty_hours "
                    " WHERE hour < to_timestamp(%s))",
                    (hour,),
                ).fetchone()
            done = row is not None and row[0] is not None and not row[1] and not row[2]
            if done and row is not None and float(row[0]) * 1e9 >= until_ns:
                # Statistics for the partitions the job has just filled, as autovacuum
                # would gather them soon after: the timing is not of a table never analyzed.
                with psycopg.connect(self.database_url, autocommit=True) as conn:
                    conn.execute("ANALYZE metric_rollups_1m, metric_rollups_1h")
                return time.monotonic() - started
            time.sleep(1.0)
        raise TargetError(f"the metric rollups were not complete after {timeout:g}s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period; warns on a bad exit code."""
        code = self._process.terminate()
        if code not in (0, None):
            print(f"warning: otlpd exited with {code}", file=sys.stderr)

    def check_alive(self) -> None:
        """Raises ``TargetError`` with the log's tail if otlpd has exited."""
        self._process.check_alive()


__all__ = ["QueryServer", "TargetError"]
