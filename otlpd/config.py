"""otlpd's configuration: frozen data, loaded once from the environment (and CLI flags).

Every setting has an ``OTLPD_*`` variable; the CLI can override any of them with a flag
of the same name (``--batch-max-rows`` for ``OTLPD_BATCH_MAX_ROWS``). Validation happens
before anything starts, and every problem is reported at once, each naming its variable,
so an operator fixes a bad deployment in one round.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from otlpd.envelope import key_safe_project
from otlpd.receiver.redaction import (
    DEFAULT_IP_KEYS,
    DEFAULT_KEYS,
    PATTERN_NAMES,
    compile_regex,
    normalized,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kib|mib|gib|k|m|g)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {"b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3}
_UNIT_BYTES["gib"] = 1024**3


class ConfigError(ValueError):
    """One or more settings are invalid; ``problems`` names each variable and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


def parse_duration(text: str) -> float:
    """Seconds from ``"250ms"``, ``"5s"``, ``"1h"``, ``"7d"`` or a bare number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration such as 500ms, 5s, 1h or 7d, got {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_size(text: str) -> int:
    """Bytes from ``"64MiB"``, ``"512k"`` or a bare number of bytes."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"expected a size such as 65536, 64KiB or 64MiB, got {text!r}")
    unit = (match.group(2) or "b").lower()
    return int(match.group(1)) * _UNIT_BYTES[unit]


def _keys(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise ValueError("expected a comma-separated list of attribute keys")
    return keys


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list, or ``none`` for an empty one."""
    if text.strip().lower() == "none":
        return ()
    return _keys(text)


def _patterns(text: str) -> tuple[str, ...]:
    names = tuple(n.lower() for n in _names(text))
    unknown = [n for n in names if n not in PATTERN_NAMES]
    if unknown:
        raise ValueError(f"unknown pattern {unknown[0]!r}; known: {', '.join(PATTERN_NAMES)}")
    return names


def _regex(text: str) -> str:
    compile_regex(text)
    return text


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _address(text: str) -> str:
    _, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {text!r}")
    return text


def _url(text: str) -> str:
    if not re.match(r"^https?://[^/\s]+", text.strip()):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text.strip().rstrip("/")


def _auth_mode(text: str) -> str:
    mode = text.strip().lower()
    if mode not in ("auto", "required", "off"):
        raise ValueError(f"expected auto, required or off, got {text!r}")
    return mode


def _setting(default: Any, env: str, parse: Callable[[str], Any], doc: str) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True, slots=True)
class Config:
    """Everything otlpd reads at start-up. Field metadata names the variable and its parser."""

    database_url: str | None = _setting(
        None, "OTLPD_DATABASE_URL", str, "PostgreSQL URL; unset: an embedded PostgreSQL"
    )
    data_dir: Path = _setting(
        Path("var"), "OTLPD_DATA_DIR", Path, "embedded PostgreSQL and local cold tier"
    )
    grpc_addr: str = _setting(":4317", "OTLPD_GRPC_ADDR", _address, "OTLP/gRPC address")
    metrics_addr: str = _setting(
        ":9464", "OTLPD_METRICS_ADDR", _address, "/metrics, /healthz, /readyz address"
    )
    workers: int = _setting(
        1,
        "OTLPD_WORKERS",
        int,
        "processes sharing the OTLP and query ports; the kernel spreads connections "
        "(not calls) over them",
    )
    default_project: str = _setting(
        "default", "OTLPD_DEFAULT_PROJECT", str, "project of data that names none"
    )
    service_keys: tuple[str, ...] = _setting(
        ("service.name",), "OTLPD_SERVICE_KEYS", _keys, "resource keys for service_name"
    )
    session_keys: tuple[str, ...] = _setting(
        ("session.id",), "OTLPD_SESSION_KEYS", _keys, "attribute keys for session_id"
    )
    user_keys: tuple[str, ...] = _setting(
        ("user.id", "enduser.id"), "OTLPD_USER_KEYS", _keys, "attribute keys for user_id"
    )
    project_keys: tuple[str, ...] = _setting(
        ("project.id",), "OTLPD_PROJECT_KEYS", _keys, "attribute keys for project_id"
    )
    max_request_bytes: int = _setting(
        64 * 1024 * 1024, "OTLPD_MAX_REQUEST_BYTES", parse_size, "request limit after gunzip"
    )
    max_attribute_value_bytes: int = _setting(
        64 * 1024,
        "OTLPD_MAX_ATTRIBUTE_VALUE_BYTES",
        parse_size,
        "larger string/bytes values are truncated",
    )
    max_body_bytes: int = _setting(
        1024 * 1024, "OTLPD_MAX_BODY_BYTES", parse_size, "larger log bodies are truncated"
    )
    redact: bool = _setting(
        True, "OTLPD_REDACT", _bool, "redact secrets (by key and by pattern) before storage"
    )
    redact_keys: tuple[str, ...] = _setting(
        DEFAULT_KEYS,
        "OTLPD_REDACT_KEYS",
        _names,
        "attribute keys whose values become [REDACTED] (also as http.*.header.<key>; none)",
    )
    redact_patterns: tuple[str, ...] = _setting(
        PATTERN_NAMES,
        "OTLPD_REDACT_PATTERNS",
        _patterns,
        f"patterns masked in string values and log bodies: {','.join(PATTERN_NAMES)} (none)",
    )
    redact_regex: str | None = _setting(
        None, "OTLPD_REDACT_REGEX", _regex, "one more regular expression whose matches are masked"
    )
    anonymize_ip: bool = _setting(
        True, "OTLPD_ANONYMIZE_IP", _bool, "zero the host part of client IPs (projects may opt out)"
    )
    ip_keys: tuple[str, ...] = _setting(
        DEFAULT_IP_KEYS, "OTLPD_IP_KEYS", _names, "attribute keys of client IPs (none)"
    )
    max_attributes: int = _setting(
        128, "OTLPD_MAX_ATTRIBUTES", int, "attributes kept per list; the rest are dropped"
    )
    max_attribute_depth: int = _setting(
        8, "OTLPD_MAX_ATTRIBUTE_DEPTH", int, "arrays/maps nested deeper are stored as null"
    )
    accept_past: float = _setting(
        24 * 3600.0, "OTLPD_ACCEPT_PAST", parse_duration, "oldest record accepted (age)"
    )
    accept_future: float = _setting(
        3600.0, "OTLPD_ACCEPT_FUTURE", parse_duration, "newest record accepted (ahead of now)"
    )
    partition_interval: float = _setting(
        3600.0, "OTLPD_PARTITION_INTERVAL", parse_duration, "width of a time partition"
    )
    partition_lock_timeout: float = _setting(
        5.0,
        "OTLPD_PARTITION_LOCK_TIMEOUT",
        parse_duration,
        "making a partition waits this long for its lock",
    )
    partitions_ahead: int = _setting(
        2, "OTLPD_PARTITIONS_AHEAD", int, "partitions created before they are needed"
    )
    batch_max_rows: int = _setting(8192, "OTLPD_BATCH_MAX_ROWS", int, "rows per transaction")
    batch_max_delay: float = _setting(
        0.0, "OTLPD_BATCH_MAX_DELAY", parse_duration, "wait to fill a batch (0: none)"
    )
    queue_max_rows: int = _setting(65536, "OTLPD_QUEUE_MAX_ROWS", int, "rows queued or in flight")
    queue_max_bytes: int = _setting(
        128 * 1024 * 1024,
        "OTLPD_QUEUE_MAX_BYTES",
        parse_size,
        "decoded rows (estimated memory) queued or in flight",
    )
    grpc_max_streams: int = _setting(
        32,
        "OTLPD_GRPC_MAX_STREAMS",
        int,
        "concurrent Exports per gRPC connection; clients queue the rest",
    )
    grpc_max_connections: int = _setting(
        0,
        "OTLPD_GRPC_MAX_CONNECTIONS",
        int,
        "gRPC connections per process (0: unlimited); more are closed: UNAVAILABLE",
    )
    decode_budget: int = _setting(
        128 * 1024 * 1024,
        "OTLPD_DECODE_BUDGET",
        parse_size,
        "request bytes being received or decoded at once",
    )
    receive_timeout: float = _setting(
        30.0,
        "OTLPD_RECEIVE_TIMEOUT",
        parse_duration,
        "a request body being read must arrive within this, or UNAVAILABLE",
    )
    decode_wait: float = _setting(
        1.0,
        "OTLPD_DECODE_WAIT",
        parse_duration,
        "an Export waits this long for the decode budget, then UNAVAILABLE",
    )
    writers: int = _setting(2, "OTLPD_WRITERS", int, "concurrent COPY transactions")
    max_loop_lag: float = _setting(
        0.25,
        "OTLPD_MAX_LOOP_LAG",
        parse_duration,
        "shed new Exports past this event-loop lag",
    )
    retry_after: float = _setting(
        1.0, "OTLPD_RETRY_AFTER", parse_duration, "RetryInfo delay told to refused clients"
    )
    store_timeout: float = _setting(
        3.0, "OTLPD_STORE_TIMEOUT", parse_duration, "connect timeout to PostgreSQL"
    )
    session_cache_size: int = _setting(
        100_000, "OTLPD_SESSION_CACHE_SIZE", int, "sessions remembered in memory"
    )
    session_cache_ttl: float = _setting(
        600.0, "OTLPD_SESSION_CACHE_TTL", parse_duration, "a remembered session owner expires"
    )
    session_negative_ttl: float = _setting(
        5.0,
        "OTLPD_SESSION_NEGATIVE_TTL",
        parse_duration,
        "an unknown session is asked about again",
    )
    shutdown_grace: float = _setting(
        20.0, "OTLPD_SHUTDOWN_GRACE", parse_duration, "SIGTERM drain deadline"
    )
    query_addr: str = _setting(":4319", "OTLPD_QUERY_ADDR", _address, "query API (gRPC) address")
    query_budget: float = _setting(
        10.0,
        "OTLPD_QUERY_BUDGET",
        parse_duration,
        "SQL time one query may take before RESOURCE_EXHAUSTED",
    )
    query_max_limit: int = _setting(
        10_000, "OTLPD_QUERY_MAX_LIMIT", int, "largest limit a list request may ask for"
    )
    query_connections: int = _setting(
        4, "OTLPD_QUERY_CONNECTIONS", int, "PostgreSQL connections of the query API"
    )
    tail_max_streams: int = _setting(
        64, "OTLPD_TAIL_MAX_STREAMS", int, "concurrent TailLogs streams per process"
    )
    tail_buffer: int = _setting(
        256, "OTLPD_TAIL_BUFFER", int, "commits a tail stream may fall behind before it lags"
    )
    text_index: bool = _setting(
        True, "OTLPD_TEXT_INDEX", _bool, "index log bodies of closed partitions for search"
    )
    text_index_slices: bool = _setting(
        True,
        "OTLPD_TEXT_INDEX_SLICES",
        _bool,
        "also index each past 10 minutes of the open log partitions (twice the index CPU)",
    )
    rollup_interval: float = _setting(
        15.0,
        "OTLPD_ROLLUP_INTERVAL",
        parse_duration,
        "how often the rollups (RED of spans, metric points) are brought up to date",
    )
    rollup_delay: float = _setting(
        60.0,
        "OTLPD_ROLLUP_DELAY",
        parse_duration,
        "a minute of spans or points is rolled up this long after it ends (the rollups' lag)",
    )
    rollup_retention_1m: float = _setting(
        7 * 86400.0,
        "OTLPD_ROLLUP_RETENTION_1M",
        parse_duration,
        "1-minute metric rollups stay in PostgreSQL this long (then tiered)",
    )
    rollup_retention_1h: float = _setting(
        400 * 86400.0,
        "OTLPD_ROLLUP_RETENTION_1H",
        parse_duration,
        "1-hour metric rollups stay in PostgreSQL this long (then tiered)",
    )
    scheduler: bool = _setting(
        True, "OTLPD_SCHEDULER", _bool, "run the background jobs on this replica (off: none)"
    )
    alert_poll: float = _setting(
        1.0,
        "OTLPD_ALERT_POLL",
        parse_duration,
        "how often the alert evaluator looks for due rules, and the senders for due notifications",
    )
    alert_lease: float = _setting(
        30.0,
        "OTLPD_ALERT_LEASE",
        parse_duration,
        "a rule or notification claimed by a replica that died is taken over after this",
    )
    alert_batch: int = _setting(
        100, "OTLPD_ALERT_BATCH", int, "rules (and notifications) claimed at once by a replica"
    )
    alert_concurrency: int = _setting(
        4,
        "OTLPD_ALERT_CONCURRENCY",
        int,
        "rule queries, and notification deliveries, in flight at once per replica",
    )
    alert_connections: int = _setting(
        2, "OTLPD_ALERT_CONNECTIONS", int, "PostgreSQL connections of the rules' queries"
    )
    alert_flap_firings: int = _setting(
        3,
        "OTLPD_ALERT_FLAP_FIRINGS",
        int,
        "an alert that fires more often than this within OTLPD_ALERT_FLAP_WINDOW is flapping",
    )
    alert_flap_window: float = _setting(
        3600.0, "OTLPD_ALERT_FLAP_WINDOW", parse_duration, "the window flapping is counted in"
    )
    external_url: str = _setting(
        "",
        "OTLPD_EXTERNAL_URL",
        _url,
        "where users reach otlpd: externalURL and generatorURL of notifications",
    )
    notify_timeout: float = _setting(
        10.0, "OTLPD_NOTIFY_TIMEOUT", parse_duration, "one notification delivery attempt"
    )
    notify_backoff: float = _setting(
        10.0,
        "OTLPD_NOTIFY_BACKOFF",
        parse_duration,
        "delay before the first retry of a notification; doubles with each retry",
    )
    notify_backoff_max: float = _setting(
        600.0, "OTLPD_NOTIFY_BACKOFF_MAX", parse_duration, "longest delay between two retries"
    )
    notify_attempts: int = _setting(
        12, "OTLPD_NOTIFY_ATTEMPTS", int, "attempts before a notification is given up (failed)"
    )
    notify_ca: Path | None = _setting(
        None,
        "OTLPD_NOTIFY_CA",
        Path,
        "PEM CA bundle trusted for webhook and Slack HTTPS, besides the system's",
    )
    smtp_host: str = _setting("", "OTLPD_SMTP_HOST", str, "SMTP relay of e-mail channels")
    smtp_port: int = _setting(587, "OTLPD_SMTP_PORT", int, "SMTP relay port")
    smtp_starttls: bool = _setting(
        True, "OTLPD_SMTP_STARTTLS", _bool, "upgrade the SMTP session with STARTTLS"
    )
    smtp_username: str = _setting("", "OTLPD_SMTP_USERNAME", str, "SMTP login (empty: no AUTH)")
    smtp_password: str = _setting("", "OTLPD_SMTP_PASSWORD", str, "SMTP password")
    smtp_from: str = _setting(
        "", "OTLPD_SMTP_FROM", str, "sender address of alert e-mails (required with a host)"
    )
    tiering: bool = _setting(
        True,
        "OTLPD_TIERING",
        _bool,
        "move partitions past their hot retention to the cold tier (queries read both tiers)",
    )
    cold_url: str = _setting(
        "",
        "OTLPD_COLD_URL",
        str,
        "cold tier: s3://BUCKET/PREFIX or file:///DIR (default under OTLPD_DATA_DIR)",
    )
    s3_endpoint: str = _setting("", "OTLPD_S3_ENDPOINT", str, "S3 endpoint host:port")
    s3_access_key: str = _setting("", "OTLPD_S3_ACCESS_KEY", str, "S3 access key")
    s3_secret_key: str = _setting("", "OTLPD_S3_SECRET_KEY", str, "S3 secret key")
    s3_region: str = _setting("", "OTLPD_S3_REGION", str, "S3 region (empty: the server's)")
    s3_secure: bool = _setting(True, "OTLPD_S3_SECURE", _bool, "S3 over TLS")
    hot_retention_spans: float = _setting(
        48 * 3600.0,
        "OTLPD_HOT_RETENTION_SPANS",
        parse_duration,
        "spans stay in PostgreSQL this long",
    )
    hot_retention_logs: float = _setting(
        48 * 3600.0,
        "OTLPD_HOT_RETENTION_LOGS",
        parse_duration,
        "log records stay in PostgreSQL this long",
    )
    hot_retention_metrics: float = _setting(
        2 * 3600.0,
        "OTLPD_HOT_RETENTION_METRICS",
        parse_duration,
        "raw metric points stay in PostgreSQL this long",
    )
    cold_retention_spans: float = _setting(
        30 * 86400.0,
        "OTLPD_COLD_RETENTION_SPANS",
        parse_duration,
        "cold span objects are deleted this long after their newest row",
    )
    cold_retention_logs: float = _setting(
        90 * 86400.0,
        "OTLPD_COLD_RETENTION_LOGS",
        parse_duration,
        "cold log objects are deleted this long after their newest row",
    )
    cold_retention_metrics: float = _setting(
        400 * 86400.0,
        "OTLPD_COLD_RETENTION_METRICS",
        parse_duration,
        "cold metric objects are deleted this long after their newest row",
    )
    tier_max_rows: float = _setting(
        20_000.0,
        "OTLPD_TIER_MAX_ROWS",
        float,
        "rows per second tiering may read (0: as fast as it can); ingest keeps the rest",
    )
    tier_interval: float = _setting(
        900.0, "OTLPD_TIER_INTERVAL", parse_duration, "time between two tiering passes"
    )
    cold_cache_bytes: int = _setting(
        256 * 1024**2,
        "OTLPD_COLD_CACHE_BYTES",
        parse_size,
        "memory kept of cold objects' footers and column chunks (0: none)",
    )
    cold_read_threads: int = _setting(
        4,
        "OTLPD_COLD_READ_THREADS",
        int,
        "cold objects a replica reads at once, for all queries together",
    )
    touch_interval: float = _setting(
        3600.0,
        "OTLPD_TOUCH_INTERVAL",
        parse_duration,
        "writers rewrite the resources, series, sessions and services they use at least "
        "this often; pruning waits twice this after a row's last write",
    )
    http_addr: str = _setting(
        ":4318", "OTLPD_HTTP_ADDR", _address, "OTLP/HTTP address (protobuf and JSON)"
    )
    auth: str = _setting(
        "auto",
        "OTLPD_AUTH",
        _auth_mode,
        "auto (tokens required once any exists), required, or off",
    )
    auth_refresh: float = _setting(
        1.0, "OTLPD_AUTH_REFRESH", parse_duration, "tokens and project settings reload period"
    )
    tls_cert: Path | None = _setting(
        None, "OTLPD_TLS_CERT", Path, "PEM certificate (chain): TLS on every port"
    )
    tls_key: Path | None = _setting(None, "OTLPD_TLS_KEY", Path, "PEM private key of the cert")
    tls_client_ca: Path | None = _setting(
        None,
        "OTLPD_TLS_CLIENT_CA",
        Path,
        "PEM CA bundle: require client certificates it signed (mTLS; not on the ops port)",
    )
    rate_limit_records: float = _setting(
        0.0,
        "OTLPD_RATE_LIMIT_RECORDS",
        float,
        "records/s per project and process (0: unlimited; `otlpd projects set "
        "--rate-records` overrides it per project)",
    )
    rate_limit_bytes: float = _setting(
        0.0,
        "OTLPD_RATE_LIMIT_BYTES",
        parse_size,
        "request bytes/s per project and process (0: unlimited; `otlpd projects set "
        "--rate-bytes` overrides it per project)",
    )
    rate_limit_burst: float = _setting(
        1.0, "OTLPD_RATE_LIMIT_BURST", parse_duration, "a bucket holds this many seconds of rate"
    )
    cors_origins: tuple[str, ...] = _setting(
        (),
        "OTLPD_CORS_ORIGINS",
        _keys,
        "browser origins allowed for projects that set none (* for any)",
    )
    usage_flush: float = _setting(
        10.0, "OTLPD_USAGE_FLUSH", parse_duration, "usage counters are written this often"
    )
    log_level: str = _setting("INFO", "OTLPD_LOG_LEVEL", str.upper, "DEBUG, INFO, WARNING, ERROR")
    log_json: bool = _setting(True, "OTLPD_LOG_JSON", _bool, "one JSON object per log line")

    def validate(self) -> list[str]:
        """Every problem with the values, each naming its variable."""
        problems: list[str] = []

        def need(ok: bool, name: str, rule: str, value: object) -> None:
            if not ok:
                problems.append(f"{_env_of(name)} {rule}, got {value!r}")

        for name in (
            "workers",
            "batch_max_rows",
            "queue_max_rows",
            "writers",
            "grpc_max_streams",
            "query_max_limit",
            "query_connections",
            "tail_max_streams",
            "tail_buffer",
        ):
            need(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        for name in ("queue_max_bytes", "max_request_bytes", "max_attribute_value_bytes"):
            need(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        need(self.decode_budget > 0, "decode_budget", "must be > 0", self.decode_budget)
        need(self.decode_wait >= 0, "decode_wait", "must be >= 0", self.decode_wait)
        need(
            self.grpc_max_connections >= 0,
            "grpc_max_connections",
            "must be >= 0 (0: unlimited)",
            self.grpc_max_connections,
        )
        need(
            self.grpc_max_streams <= 2**31 - 1,
            "grpc_max_streams",
            "must be at most 2147483647 (HTTP/2)",
            self.grpc_max_streams,
        )
        need(self.max_body_bytes > 0, "max_body_bytes", "must be > 0", self.max_body_bytes)
        for name in ("max_attributes", "max_attribute_depth"):
            need(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        self._validate_redaction(need)
        need(
            self.workers == 1 or not self.grpc_addr.endswith(":0"),
            "grpc_addr",
            "must name a fixed port when OTLPD_WORKERS > 1 (the workers share it)",
            self.grpc_addr,
        )
        need(
            self.workers == 1 or not self.query_addr.endswith(":0"),
            "query_addr",
            "must name a fixed port when OTLPD_WORKERS > 1 (the workers share it)",
            self.query_addr,
        )
        need(self.partitions_ahead >= 0, "partitions_ahead", "must be >= 0", self.partitions_ahead)
        need(
            self.batch_max_rows <= self.queue_max_rows,
            "batch_max_rows",
            f"must not exceed OTLPD_QUEUE_MAX_ROWS ({self.queue_max_rows})",
            self.batch_max_rows,
        )
        interval = self.partition_interval
        need(
            interval >= 60 and interval == int(interval) and 86400 % int(interval) == 0
            if interval < 86400
            else interval == int(interval) and int(interval) % 86400 == 0,
            "partition_interval",
            "must be whole minutes dividing a day (e.g. 15m, 1h, 6h) or whole days",
            interval,
        )
        for name in (
            "accept_past",
            "accept_future",
            "retry_after",
            "store_timeout",
            "max_loop_lag",
            "partition_lock_timeout",
            "receive_timeout",
            "query_budget",
            "rollup_interval",
            "tier_interval",
            "touch_interval",
        ):
            need(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        for name in ("alert_poll", "alert_lease", "alert_flap_window", "notify_timeout"):
            need(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        for name in ("alert_batch", "alert_concurrency", "alert_connections", "notify_attempts"):
            need(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        need(self.alert_flap_firings > 0, "alert_flap_firings", "must be > 0",
             self.alert_flap_firings)  # fmt: skip
        need(
            self.alert_lease >= 2 * self.alert_poll,
            "alert_lease",
            f"must be at least twice OTLPD_ALERT_POLL ({self.alert_poll:g}s)",
            self.alert_lease,
        )
        need(self.notify_backoff > 0, "notify_backoff", "must be > 0", self.notify_backoff)
        need(
            self.notify_backoff_max >= self.notify_backoff,
            "notify_backoff_max",
            f"must be at least OTLPD_NOTIFY_BACKOFF ({self.notify_backoff:g}s)",
            self.notify_backoff_max,
        )
        need(0 < self.smtp_port <= 65535, "smtp_port", "must be a TCP port", self.smtp_port)
        need(
            not self.smtp_host or "@" in self.smtp_from,
            "smtp_from",
            "must be an e-mail address when OTLPD_SMTP_HOST is set",
            self.smtp_from,
        )
        need(
            not self.smtp_password or bool(self.smtp_username),
            "smtp_password",
            "needs OTLPD_SMTP_USERNAME",
            "(set)",
        )
        need(
            self.notify_ca is None or self.notify_ca.is_file(),
            "notify_ca",
            "must name a readable file",
            str(self.notify_ca),
        )
        need(self.batch_max_delay >= 0, "batch_max_delay", "must be >= 0", self.batch_max_delay)
        need(self.rollup_delay >= 0, "rollup_delay", "must be >= 0", self.rollup_delay)
        need(self.tier_max_rows >= 0, "tier_max_rows", "must be >= 0", self.tier_max_rows)
        need(self.cold_cache_bytes >= 0, "cold_cache_bytes", "must be >= 0", self.cold_cache_bytes)
        need(
            1 <= self.cold_read_threads <= 64,
            "cold_read_threads",
            "must be 1 to 64",
            self.cold_read_threads,
        )
        need(
            bool(self.default_project) and key_safe_project(self.default_project),
            "default_project",
            "must be non-empty, without '/', '\\', '=', '..' or control characters "
            "(it becomes a cold-tier key segment)",
            self.default_project,
        )
        for signal in ("spans", "logs", "metrics"):
            hot, cold = f"hot_retention_{signal}", f"cold_retention_{signal}"
            need(getattr(self, hot) > 0, hot, "must be > 0", getattr(self, hot))
            need(getattr(self, cold) > 0, cold, "must be > 0", getattr(self, cold))
        for name in ("rollup_retention_1m", "rollup_retention_1h"):
            need(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        if self.cold_url:
            need(
                self.cold_url.startswith(("s3://", "file:///")),
                "cold_url",
                "must be s3://BUCKET/PREFIX or file:///DIR",
                self.cold_url,
            )
            need(
                not self.cold_url.startswith("s3://") or bool(self.s3_endpoint),
                "s3_endpoint",
                "is required with an s3:// OTLPD_COLD_URL",
                self.s3_endpoint,
            )
        need(self.shutdown_grace > 0, "shutdown_grace", "must be > 0", self.shutdown_grace)
        need(
            self.session_cache_size > 0,
            "session_cache_size",
            "must be > 0",
            self.session_cache_size,
        )
        for name in ("session_cache_ttl", "session_negative_ttl"):
            need(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        need(
            self.log_level in ("DEBUG", "INFO", "WARNING", "ERROR"),
            "log_level",
            "must be DEBUG, INFO, WARNING or ERROR",
            self.log_level,
        )
        for name in ("auth_refresh", "usage_flush", "rate_limit_burst"):
            need(getattr(self, name) > 0, name, "must be > 0", getattr(self, name))
        need(
            self.auth_refresh <= 2.5,
            "auth_refresh",
            "must be <= 2.5s (revocation takes effect within 5s)",
            self.auth_refresh,
        )
        for name in ("rate_limit_records", "rate_limit_bytes"):
            need(getattr(self, name) >= 0, name, "must be >= 0 (0: unlimited)", getattr(self, name))
        need(
            (self.tls_cert is None) == (self.tls_key is None),
            "tls_cert" if self.tls_cert is None else "tls_key",
            "must be set together with "
            + ("OTLPD_TLS_KEY" if self.tls_key is None else "OTLPD_TLS_CERT"),
            None,
        )
        need(
            self.tls_client_ca is None or self.tls_cert is not None,
            "tls_client_ca",
            "needs OTLPD_TLS_CERT and OTLPD_TLS_KEY",
            str(self.tls_client_ca),
        )
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            need(path is None or path.is_file(), name, "must name a readable file", str(path))
        need(
            self.workers == 1 or not self.http_addr.endswith(":0"),
            "http_addr",
            "must name a fixed port when OTLPD_WORKERS > 1 (the workers share it)",
            self.http_addr,
        )
        if self.database_url is not None:
            need(
                self.database_url.startswith(("postgresql://", "postgres://")),
                "database_url",
                "must be a postgresql:// URL",
                self.database_url,
            )
        return problems

    def _validate_redaction(self, need: Callable[[bool, str, str, object], None]) -> None:
        unknown = [p for p in self.redact_patterns if p not in PATTERN_NAMES]
        need(
            not unknown,
            "redact_patterns",
            f"must name known patterns ({', '.join(PATTERN_NAMES)})",
            ",".join(unknown),
        )
        if self.redact_regex is not None:
            try:
                compile_regex(self.redact_regex)
            except ValueError as e:
                need(False, "redact_regex", f"must be usable ({e})", self.redact_regex)
        # Envelope values are identities, indexed as sent: they cannot be redacted.
        envelope = {
            normalized(k): _env_of(name)
            for name in ("service_keys", "session_keys", "user_keys", "project_keys")
            for k in getattr(self, name)
        }
        for name, on in (("redact_keys", self.redact), ("ip_keys", self.anonymize_ip)):
            for key in getattr(self, name) if on else ():
                role = envelope.get(normalized(key))
                need(role is None, name, f"must not name an envelope key (one of {role})", key)


def _env_of(name: str) -> str:
    return str(next(f.metadata["env"] for f in fields(Config) if f.name == name))


def settings() -> list[tuple[str, str, str]]:
    """(variable, CLI flag, description) of every setting, for ``--help``."""
    return [(f.metadata["env"], _flag(f.name), f.metadata["doc"]) for f in fields(Config)]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def load(env: Mapping[str, str], overrides: Mapping[str, str] | None = None) -> Config:
    """Builds and validates a Config from ``env`` (and CLI ``overrides`` keyed by field name).

    Raises ConfigError listing every unparsable or invalid setting.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    overrides = overrides or {}
    for f in fields(Config):
        variable = f.metadata["env"]
        raw = overrides.get(f.name, env.get(variable))
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            problems.append(f"{variable}: {exc}")
    if problems:
        raise ConfigError(problems)
    config = Config(**values)
    problems = config.validate()
    if problems:
        raise ConfigError(problems)
    return config
