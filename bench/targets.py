"""The servers under test: otlpd and the rotel-agent reference, each a child process.

Each target has the same small lifecycle: ``start`` returns once the server accepts
Export calls, ``stop`` ends it and cleans up what ``start`` made (otlpd's database).
``pid`` is the process whose memory, with its children's, :class:`ServerSampler` watches.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import psutil
import psycopg

START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 30.0

# What otlpd stores each signal in, the record table first; bytes on disk count every
# partition of these. Spans and logs share `resources` (small: counted with both).
OTLPD_TABLES: Final = {
    "traces": ("spans", "resources"),
    "logs": ("logs", "resources"),
    "metrics": ("metric_points", "metric_series"),
}


class Target(Protocol):
    """A server to load: started once, loaded with every signal, then stopped."""

    name: str

    @property
    def grpc_addr(self) -> str:
        """``host:port`` of its OTLP/gRPC endpoint."""
        ...

    @property
    def grpc_port(self) -> int:
        """The port of ``grpc_addr``."""
        ...

    @property
    def pid(self) -> int:
        """The server's main process."""
        ...

    def start(self) -> None:
        """Starts the server; returns when it accepts Export calls."""
        ...

    def stop(self) -> None:
        """Stops the server and removes what ``start`` created; safe after a failed start."""
        ...


class TargetError(RuntimeError):
    """A target did not start, or did not stop cleanly."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServerProcess:
    """A child process with its output in a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise TargetError(f"{self.name} is not running")
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise TargetError(
                f"{self.name} exited with {self.proc.returncode}:\n{_log_tail(self.log_path)}"
            )

    def terminate(self) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return None
        return proc.returncode


def wait_until(ready: Callable[[], bool], process: ServerProcess, what: str) -> None:
    """Polls ``ready`` until it holds; fails early if the process dies."""
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        process.check_alive()
        if time.monotonic() > deadline:
            raise TargetError(
                f"{process.name}: {what} not within {START_TIMEOUT:.0f}s:\n"
                f"{_log_tail(process.log_path)}"
            )
        time.sleep(0.05)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def rotel_binary() -> Path:
    """The ``rotel-agent`` executable that the ``rotel`` wheel ships."""
    spec = importlib.util.find_spec("rotel")
    if spec is None or not spec.submodule_search_locations:
        raise TargetError("the rotel package is not installed (pip install rotel)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "rotel-agent"
    if not binary.exists():
        raise TargetError(f"rotel-agent not found at {binary}")
    return binary


class RotelTarget:
    """rotel-agent with the blackhole exporter: receive, decode, discard.

    It does nothing with the data, so its throughput is the ceiling the load generator
    and the machine allow, the yardstick for otlpd's figures.
    """

    def __init__(self, workdir: Path) -> None:
        self.name = "rotel"
        self._workdir = workdir
        self._port = 0
        self._process = ServerProcess("rotel", workdir)

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def grpc_port(self) -> int:
        return self._port

    @property
    def pid(self) -> int:
        return self._process.pid

    def start(self) -> None:
        self._port = free_port()
        self._process.spawn(
            [
                str(rotel_binary()),
                "start",
                "--otlp-grpc-endpoint",
                self.grpc_addr,
                "--otlp-http-endpoint",
                f"127.0.0.1:{free_port()}",
                "--exporter",
                "blackhole",
                "--otlp-grpc-max-recv-msg-size-mib",
                "64",
                "--pid-file",
                str(self._workdir / "rotel.pid"),
                "--log-file",
                str(self._workdir / "rotel-agent.log"),
            ]
        )
        wait_until(lambda: _accepts(self._port), self._process, "port open")

    def stop(self) -> None:
        self._process.terminate()


@dataclass(frozen=True, slots=True)
class Stored:
    """What otlpd's database holds for one signal."""

    rows: int
    bytes: int

    @property
    def bytes_per_row(self) -> float:
        """Bytes on disk (heap, TOAST and indexes) per stored record."""
        return self.bytes / self.rows if self.rows else 0.0


class OtlpdTarget:
    """``python -m otlpd serve --workers N`` on a database of its own, created and dropped.

    Acknowledgement in otlpd means committed, so once the load has been answered the
    row counts must equal what the load generator saw acknowledged.
    """

    def __init__(self, workdir: Path, workers: int, pg_server: str) -> None:
        self.name = f"otlpd --workers {workers}"
        self.workers = workers
        self._pg_server = pg_server.rstrip("/")
        self._db = f"otlpd_bench_{uuid.uuid4().hex[:10]}"
        self._grpc_port = 0
        self._metrics_port = 0
        self._query_port = 0
        self._http_port = 0
        self._process = ServerProcess(f"otlpd-w{workers}", workdir)

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self._grpc_port}"

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def http_addr(self) -> str:
        """OTLP/HTTP's address (``bench.http``)."""
        return f"127.0.0.1:{self._http_port}"

    @property
    def database_url(self) -> str:
        """The database this run writes to."""
        return f"{self._pg_server}/{self._db}"

    @property
    def database(self) -> str:
        """The name of the database this run writes to."""
        return self._db

    @property
    def pid(self) -> int:
        return self._process.pid

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(f"{self._pg_server}/postgres", autocommit=True)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env |= {
            "OTLPD_DATABASE_URL": self.database_url,
            "OTLPD_GRPC_ADDR": self.grpc_addr,
            "OTLPD_METRICS_ADDR": f"127.0.0.1:{self._metrics_port}",
            "OTLPD_QUERY_ADDR": f"127.0.0.1:{self._query_port}",
            "OTLPD_HTTP_ADDR": f"127.0.0.1:{self._http_port}",
        }
        return env

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self._metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return int(resp.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> None:
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{self._db}"')
        self._grpc_port = free_port()
        self._metrics_port = free_port()
        self._query_port = free_port()
        self._http_port = free_port()
        migrate = subprocess.run(
            [sys.executable, "-m", "otlpd", "migrate"],
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if migrate.returncode != 0:
            raise TargetError(
                f"otlpd migrate exited with {migrate.returncode}:\n{migrate.stderr[-3000:]}"
            )
        self._process.spawn(
            [sys.executable, "-m", "otlpd", "serve", "--workers", str(self.workers)],
            env=self._env(),
        )
        wait_until(self._ready, self._process, "/readyz 200")

    def stored(self, signal_name: str) -> Stored:
        """Rows of the signal's record table, and bytes of all its tables' partitions."""
        record_table, *_ = OTLPD_TABLES[signal_name]
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(f"SELECT count(*) FROM {record_table}").fetchone()
            rows = int(row[0]) if row else 0
            size = 0
            for table in OTLPD_TABLES[signal_name]:
                # pg_partition_tree lists a partitioned table and its partitions, but
                # nothing for a plain table, hence the UNION; pg_total_relation_size
                # counts heap, TOAST and indexes.
                got = conn.execute(
                    "SELECT coalesce(sum(pg_total_relation_size(rel)), 0) FROM ("
                    " SELECT relid AS rel FROM pg_partition_tree(to_regclass(%(t)s))"
                    " UNION SELECT to_regclass(%(t)s)) AS rels WHERE rel IS NOT NULL",
                    {"t": table},
                ).fetchone()
                size += int(got[0]) if got else 0
        return Stored(rows, size)

    def stop(self) -> None:
        try:
            code = self._process.terminate()
            if code not in (0, None):
                print(
                    f"warning: {self._process.name} exited with {code}",
                    file=sys.stderr,
                )
        finally:
            with self._admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._db}" WITH (FORCE)')


def connection_split(root: psutil.Process, port: int) -> tuple[int, ...]:
    """Established client connections per process listening on ``port``, largest first.

    otlpd's workers share the port with SO_REUSEPORT and the kernel hashes each
    connection to one of them, so a few connections can load one worker far more than
    the other; the split explains much of the run-to-run spread with ``--workers 2``.
    """
    counts: list[int] = []
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return ()
    for proc in procs:
        try:
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        mine = [c for c in conns if c.laddr and c.laddr.port == port]
        if any(c.status == psutil.CONN_LISTEN for c in mine):
            counts.append(sum(c.status == psutil.CONN_ESTABLISHED for c in mine))
    return tuple(sorted(counts, reverse=True))


class ServerSampler:
    """Watches a server's process tree while it is loaded, from a background thread.

    Every ``interval`` s it sums RSS over the process and its children (shared pages
    count once per process, as ``ps`` shows them); ``peak`` is the maximum since
    ``reset_peak``. About once a second it also takes the :func:`connection_split` on
    ``port``; ``split`` is the one with the most connections since ``reset_split``.
    """

    def __init__(self, pid: int, port: int, interval: float = 0.1) -> None:
        self._root = psutil.Process(pid)
        self._port = port
        self._interval = interval
        self._peak = 0
        self._split: tuple[int, ...] = ()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-sampler", daemon=True)

    def __enter__(self) -> ServerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _rss(self) -> int:
        total = 0
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += int(proc.memory_info().rss)
        return total

    def _run(self) -> None:
        every = max(1, round(1.0 / self._interval))
        n = 0
        while not self._stop.is_set():
            rss = self._rss()
            split = connection_split(self._root, self._port) if n % every == 0 else ()
            n += 1
            with self._lock:
                self._peak = max(self._peak, rss)
                if sum(split) > sum(self._split):
                    self._split = split
            self._stop.wait(self._interval)

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far by the process and its live children."""
        total = 0.0
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += float(times.user + times.system)
        return total

    def reset_peak(self) -> None:
        """Starts a new peak from the current RSS."""
        rss = self._rss()
        with self._lock:
            self._peak = rss

    def reset_split(self) -> None:
        """Forgets the connection split seen so far."""
        with self._lock:
            self._split = ()

    @property
    def peak(self) -> int:
        """Highest RSS sum seen since the last ``reset_peak``, in bytes."""
        with self._lock:
            return self._peak

    @property
    def split(self) -> tuple[int, ...]:
        """Connections per listening process, the fullest sample since ``reset_split``."""
        with self._lock:
            return self._split


class PostgresCpu:
    """CPU time of the PostgreSQL server processes that work for one database.

    The postmaster is found as the parent of a backend (``pg_backend_pid()``); a sample
    maps each process of its tree (the postmaster, checkpointer, WAL writer, background
    writer, autovacuum, the backends) to its user + system CPU seconds, leaving out client
    backends of other databases (``pg_stat_activity``), so that a test suite using the same
    server does not land in the figure. Processes that exit between two samples lose
    their time (short-lived autovacuum workers). Samples are None when the server does not
    run on this machine.
    """

    def __init__(self, pg_server: str, database: str) -> None:
        self._admin_url = f"{pg_server.rstrip('/')}/postgres"
        self._database = database

    def sample(self) -> dict[int, float] | None:
        """CPU seconds so far per counted PostgreSQL process; None if they cannot be seen."""
        try:
            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                others = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname IS NOT NULL AND datname <> %s",
                    (self._database,),
                ).fetchall()
                if row is None:
                    return None
                me = int(row[0])
                # Our own backend: its parent is the postmaster (if the server is local).
                try:
                    postmaster = psutil.Process(me).parent()
                    if postmaster is None or not postmaster.name().startswith("postgres"):
                        return None
                    procs = [postmaster, *postmaster.children(recursive=True)]
                except psutil.Error:
                    return None
        except psycopg.Error:
            return None
        skip = {int(pid) for (pid,) in others} | {me}
        cpu: dict[int, float] = {}
        for proc in procs:
            if proc.pid in skip:
                continue
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                cpu[proc.pid] = float(times.user + times.system)
        return cpu

    @staticmethod
    def used(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
        """CPU seconds between two samples: processes alive at ``after``, new ones in full."""
        if before is None or after is None:
            return None
        return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def workdir() -> Path:
    """A fresh temporary directory for pid and log files."""
    return Path(tempfile.mkdtemp(prefix="otlpd-bench-"))
