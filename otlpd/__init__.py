"""otlpd: an OTLP collector-style server that keeps telemetry in PostgreSQL and S3."""

__version__ = "0.1.0"
