"""What the query service takes from otlpd's Config, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QuerySettings:
    budget: float = 10.0  # OTLPD_QUERY_BUDGET: seconds of SQL per call
    max_limit: int = 10_000  # OTLPD_QUERY_MAX_LIMIT
    retry_after: float = 1.0  # OTLPD_RETRY_AFTER, told to clients when the store is down
    partition_interval_s: int = 3600  # OTLPD_PARTITION_INTERVAL
    tail_max_streams: int = 64  # OTLPD_TAIL_MAX_STREAMS
    tail_buffer: int = 256  # OTLPD_TAIL_BUFFER
    rollup_retention_1m_s: float = 7 * 86400.0  # OTLPD_ROLLUP_RETENTION_1M
    rollup_retention_1h_s: float = 400 * 86400.0  # OTLPD_ROLLUP_RETENTION_1H
