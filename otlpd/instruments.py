"""The Prometheus instruments otlpd keeps about itself.

Each App owns its registry, so two servers in one test process never mix counts. With
``--workers N`` the values live in ``PROMETHEUS_MULTIPROC_DIR`` and the supervisor sums
them; the gauge modes below say how (queue depth adds up, readiness is the worst worker).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Outcomes of a record: stored; refused by backpressure (the client retries); rejected as
# bad input (partial success or INVALID_ARGUMENT, not retried); failed in the store after
# being queued (the client is told to retry, or told it is permanent).
OUTCOMES = ("accepted", "refused", "rejected", "failed")

# Why otlpd.access refused a request (otlpd_auth_failures_total{reason}).
AUTH_FAILURES = ("missing", "invalid", "scope", "origin")

# What the decoder cuts to a limit, and what it redacts (otlpd.receiver.decode).
TRUNCATIONS = ("attributes", "value", "body", "depth")
REDACTIONS = ("key", "pattern", "ip")

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROWS = (1, 16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
_REQUESTS = (1, 2, 4, 8, 16, 32, 64, 128)


class Instruments:
    """Every metric otlpd exports, registered in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "otlpd_records",
            "Spans, log records and data points by outcome.",
            ["signal", "outcome"],
            registry=r,
        )
        self.requests = Counter(
            "otlpd_requests",
            "Export requests by status: the gRPC code name (OTLP/gRPC) or the HTTP status"
            " (OTLP/HTTP).",
            ["signal", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "otlpd_request_seconds",
            "Export latency, receipt to answer (including the commit).",
            ["signal"],
            buckets=_LATENCY,
            registry=r,
        )
        self.request_bytes = Histogram(
            "otlpd_request_bytes",
            "Export request size after decompression.",
            ["signal"],
            buckets=(1024, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864),
            registry=r,
        )
        self.commits = Counter("otlpd_commits", "Transactions committed.", registry=r)
        self.flush_seconds = Histogram(
            "otlpd_flush_seconds",
            "Time of one group commit: partitions, COPY and COMMIT.",
            buckets=_LATENCY,
            registry=r,
        )
        self.copy_seconds = Histogram(
            "otlpd_copy_seconds", "COPY time within a flush.", buckets=_LATENCY, registry=r
        )
        self.commit_seconds = Histogram(
            "otlpd_commit_seconds", "COMMIT time within a flush.", buckets=_LATENCY, registry=r
        )
        self.batch_rows = Histogram(
            "otlpd_batch_rows", "Records per committed transaction.", buckets=_ROWS, registry=r
        )
        self.batch_requests = Histogram(
            "otlpd_batch_requests",
            "Export requests sharing one committed transaction (group commit).",
            buckets=_REQUESTS,
            registry=r,
        )
        self.queue_rows = Gauge(
            "otlpd_queue_rows",
            "Records admitted and not yet committed.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queue_bytes = Gauge(
            "otlpd_queue_bytes",
            "Estimated memory of the decoded rows admitted and not yet committed (plus the"
            " request bytes a transport still holds).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.exports_active = Gauge(
            "otlpd_exports_active",
            "Export calls being handled: waiting to be read, read, decoded or committed"
            " (at most connections x OTLPD_GRPC_MAX_STREAMS).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.decode_bytes = Gauge(
            "otlpd_decode_bytes",
            "Request bytes charged to the decode budget: bodies being received (charged at"
            " OTLPD_MAX_REQUEST_BYTES until their size is known) or decoded.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.decode_waiting = Gauge(
            "otlpd_decode_waiting",
            "Exports waiting for room in the decode budget before their body is read.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.refused_unread = Counter(
            "otlpd_refused_unread",
            "Exports refused before their body was read (no room in the decode budget"
            " within OTLPD_DECODE_WAIT, or the body did not arrive within"
            " OTLPD_RECEIVE_TIMEOUT); their records are unknown, so not in otlpd_records.",
            ["signal"],
            registry=r,
        )
        self.writers_busy = Gauge(
            "otlpd_writers_busy",
            "Writer connections inside a transaction.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.loop_lag = Gauge(
            "otlpd_loop_lag_seconds",
            "How late the event loop ran its last timer: decoding backlog.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.store_up = Gauge(
            "otlpd_store_up",
            "1 when PostgreSQL answered the last probe or write.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.ready = Gauge(
            "otlpd_ready",
            "1 when serving: migrated, PostgreSQL reachable, not draining.",
            registry=r,
            multiprocess_mode="livemin",
        )
        # livemin is the least of the workers that wrote the gauge: a worker still starting
        # has written nothing, so it alone cannot tell the supervisor that all are ready.
        self.ready_workers = Gauge(
            "otlpd_ready_workers",
            "Worker processes ready to serve (with --workers N: N when all are).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.partitions_created = Counter(
            "otlpd_partitions_created", "Time partitions created by this process.", registry=r
        )
        self.partitions_missing = Gauge(
            "otlpd_partitions_missing",
            "Time partitions of the accepted window (every table) not made yet; 0 in steady "
            "state. Records that need a missing one wait for it to be made.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.query_requests = Counter(
            "otlpd_query_requests",
            "Query API calls answered, by RPC and gRPC status code.",
            ["rpc", "code"],
            registry=r,
        )
        self.query_seconds = Histogram(
            "otlpd_query_seconds",
            "Time to answer a query API call (a TailLogs stream: until it ends), by RPC.",
            ["rpc"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.alert_requests = Counter(
            "otlpd_alert_requests",
            "Alerting API calls answered, by RPC and gRPC status code.",
            ["rpc", "code"],
            registry=r,
        )
        self.alert_evaluations = Counter(
            "otlpd_alert_evaluations",
            "Rule evaluations this process ran, by outcome: ok; error (the query failed and"
            " the rule's on_error decided); fenced (the claim was lost, nothing written);"
            " failed (a fault of ours; the rule is retried at its next slot).",
            ["outcome"],
            registry=r,
        )
        self.alert_evaluation_seconds = Histogram(
            "otlpd_alert_evaluation_seconds",
            "Time of one rule evaluation: its query and its transaction.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.alerts = Gauge(
            "otlpd_alerts",
            "Alert series by state (inactive, pending, firing), every project, as of this"
            " process's last evaluation round.",
            ["state"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.alert_notifications = Counter(
            "otlpd_alert_notifications",
            "Notification delivery attempts of this process, by channel kind and outcome"
            " (delivered, retry, failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "otlpd_alert_outbox_pending",
            "Notifications not delivered yet (every project), as of this process's last"
            " sender round.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.outbox_oldest = Gauge(
            "otlpd_alert_outbox_oldest_seconds",
            "Age of the oldest notification not delivered yet (0: none).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.tail_streams = Gauge(
            "otlpd_tail_streams",
            "TailLogs streams open.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.tail_lagged = Counter(
            "otlpd_tail_lagged_records",
            "Records a TailLogs stream skipped because its client read too slowly.",
            registry=r,
        )
        self.text_indexed = Counter(
            "otlpd_text_indexed_partitions",
            "Closed log partitions whose bodies this process indexed for full-text search.",
            registry=r,
        )
        self.rollup_minutes = Counter(
            "otlpd_rollup_minutes",
            "Minutes of request spans this process recomputed into the RED rollups.",
            registry=r,
        )
        self.rollup_seconds = Histogram(
            "otlpd_rollup_round_seconds",
            "Duration of one round of the RED rollup job on this process.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
            registry=r,
        )
        self.metric_rollup_minutes = Counter(
            "otlpd_metric_rollup_minutes",
            "(project, minute)s of metric points this process recomputed into the 1-minute "
            "rollups.",
            registry=r,
        )
        self.metric_rollup_hours = Counter(
            "otlpd_metric_rollup_hours",
            "(project, hour)s this process recomputed into the 1-hour metric rollups.",
            registry=r,
        )
        self.metric_rollup_sealed = Counter(
            "otlpd_metric_rollup_sealed_minutes",
            "(project, minute)s with late points that this process left out of the metric "
            "rollups because the minute's other raw points were already in the cold tier.",
            registry=r,
        )
        self.metric_rollup_seconds = Histogram(
            "otlpd_metric_rollup_round_seconds",
            "Duration of one round of the metric rollup job on this process (the count: rounds).",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
            registry=r,
        )
        self.tier_objects = Counter(
            "otlpd_tier_objects",
            "Parquet objects this process exported to the cold tier and recorded.",
            ["signal"],
            registry=r,
        )
        self.tier_rows = Counter(
            "otlpd_tier_rows", "Rows moved to the cold tier.", ["signal"], registry=r
        )
        self.tier_bytes = Counter(
            "otlpd_tier_bytes", "Parquet bytes written to the cold tier.", ["signal"], registry=r
        )
        self.tier_lag = Gauge(
            "otlpd_tier_lag_seconds",
            "How long the oldest partition past its hot retention has waited to be tiered "
            "(0: none is due), as of this process's last tiering pass.",
            ["signal"],
            registry=r,
        )
        self.pruned_rows = Counter(
            "otlpd_pruned_rows",
            "Rows this process deleted from the tables records refer to (resources,"
            " metric_series, sessions, services, operations) once no hot partition needed"
            " them.",
            ["table"],
            registry=r,
        )
        self.job_runs = Counter(
            "otlpd_job_runs",
            "Rounds of background jobs this process ran, by job and outcome (ok, failed).",
            ["job", "outcome"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "otlpd_job_seconds",
            "Duration of the background jobs' rounds on this process.",
            ["job"],
            buckets=(0.01, 0.1, 1, 10, 60, 300, 1800),
            registry=r,
        )
        self.auth_failures = Counter(
            "otlpd_auth_failures",
            "Requests refused by otlpd.access: no token while one is required (missing), a"
            " malformed, unknown or revoked one (invalid), a scope the token lacks (scope), a"
            " browser origin its project does not allow (origin).",
            ["reason"],
            registry=r,
        )
        self.usage_records = Counter(
            "otlpd_usage_records",
            'Committed records per project (beyond 1,000 projects: project="(other)").',
            ["project", "signal"],
            registry=r,
        )
        self.usage_bytes = Counter(
            "otlpd_usage_bytes",
            "Request bytes of committed records per project (as otlpd_usage_records).",
            ["project", "signal"],
            registry=r,
        )
        self.throttled = Counter(
            "otlpd_throttled_records",
            "Records refused because their project or token was over its rate limit.",
            ["project", "signal"],
            registry=r,
        )
        for reason in AUTH_FAILURES:
            self.auth_failures.labels(reason)
        self.truncated_values = Counter(
            "otlpd_truncated_values",
            "Values cut to a limit before storage: attributes beyond OTLPD_MAX_ATTRIBUTES"
            " (attributes), strings and bytes (value), log bodies (body), nesting beyond"
            " OTLPD_MAX_ATTRIBUTE_DEPTH (depth). A cached attribute counts once.",
            ["what"],
            registry=r,
        )
        self.redacted_values = Counter(
            "otlpd_redacted_values",
            "Values redacted before storage: by key (key), by pattern (pattern), client"
            " IPs anonymized (ip). A cached attribute counts once.",
            ["what"],
            registry=r,
        )
        for what in TRUNCATIONS:
            self.truncated_values.labels(what)
        for what in REDACTIONS:
            self.redacted_values.labels(what)
        for outcome in ("ok", "error", "fenced", "failed"):
            self.alert_evaluations.labels(outcome)
        for state in ("inactive", "pending", "firing"):
            self.alerts.labels(state)
        for signal in ("traces", "logs", "metrics"):
            self.refused_unread.labels(signal)
            for outcome in OUTCOMES:
                self.records.labels(signal, outcome)
