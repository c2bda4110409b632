"""Validation of what every query request shares: limits, time ranges, ids, text, steps.

Each function returns the value in the form the readers use (nanoseconds, plain ints) or
raises ``BadArgument`` naming the request field, so a client learns what to fix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf import duration_pb2, timestamp_pb2

from otlpd.errors import BadArgument
from query.proto import pb

HOUR_NS = 3600 * 10**9
# Timestamps PostgreSQL's timestamptz and our bigint columns both hold comfortably.
_MIN_NS = 0
_MAX_NS = 2**62
# Round bucket widths for a step nobody gave (as Grafana and Prometheus UIs pick them).
_STEPS_S = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
)
DEFAULT_BUCKETS = 60
MAX_BUCKETS = 11_000  # Prometheus refuses more than 11,000 points per series, as we do


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``[start_ns, end_ns)``; ``start_ns`` 0 means unbounded."""

    start_ns: int
    end_ns: int

    @property
    def span_ns(self) -> int:
        return self.end_ns - self.start_ns


def limit(value: int, *, default: int, maximum: int, field: str = "limit") -> int:
    """``value``, or ``default`` when 0; refused when negative or above ``maximum``."""
    if value < 0:
        raise BadArgument(field, f"must be >= 0, got {value}")
    if value > maximum:
        raise BadArgument(field, f"must be at most {maximum}, got {value}")
    return value or default


def timestamp_ns(ts: timestamp_pb2.Timestamp, field: str) -> int:
    if ts.nanos < 0 or ts.nanos >= 10**9:
        raise BadArgument(field, "nanos must be in [0, 1e9)")
    ns = ts.seconds * 10**9 + ts.nanos
    if not _MIN_NS <= ns <= _MAX_NS:
        raise BadArgument(field, "must be between 1970 and 2116")
    return ns


def duration_ns(d: duration_pb2.Duration, field: str) -> int:
    """A non-negative duration in nanoseconds."""
    ns = d.seconds * 10**9 + d.nanos
    if ns < 0:
        raise BadArgument(field, f"must not be negative, got {ns / 1e9}s")
    if ns > _MAX_NS:
        raise BadArgument(field, "is too large")
    return ns


def time_range(
    message: object,
    *,
    default_span_ns: int = HOUR_NS,
    unbounded_start: bool = False,
    now_ns: int | None = None,
) -> TimeRange:
    """The request's ``start_time``/``end_time``: end defaults to now, start to
    ``default_span_ns`` before the end (or unbounded, when the filters are selective)."""
    has = message.HasField  # type: ignore[attr-defined]
    end = timestamp_ns(message.end_time, "end_time") if has("end_time") else None  # type: ignore[attr-defined]
    if end is None:
        end = (now_ns if now_ns is not None else time.time_ns()) + 1
    if has("start_time"):
        start = timestamp_ns(message.start_time, "start_time")  # type: ignore[attr-defined]
    elif unbounded_start:
        start = 0
    else:
        start = max(0, end - default_span_ns)
    if end <= start:
        raise BadArgument("end_time", "must be after start_time")
    return TimeRange(start, end)


def step_ns(
    d: duration_pb2.Duration | None,
    window: TimeRange,
    *,
    field: str = "step",
    buckets: int = DEFAULT_BUCKETS,
) -> int:
    """The given bucket width, or a round one giving about ``buckets`` buckets."""
    if d is not None:
        step = duration_ns(d, field)
        if step == 0:
            raise BadArgument(field, "must be > 0")
        if window.span_ns // step > MAX_BUCKETS:
            raise BadArgument(
                field, f"gives more than {MAX_BUCKETS} buckets over the range; use a larger step"
            )
        return step
    want = window.span_ns / buckets / 1e9
    for seconds in _STEPS_S:
        if seconds >= want:
            return seconds * 10**9
    return int(-(-want // 86400)) * 86400 * 10**9


def trace_id(value: bytes, field: str = "trace_id") -> bytes:
    if len(value) != 16:
        raise BadArgument(field, f"must be 16 bytes, got {len(value)}")
    return value


def span_id(value: bytes, field: str = "span_id") -> bytes:
    if len(value) != 8:
        raise BadArgument(field, f"must be 8 bytes, got {len(value)}")
    return value


def text(value: str, field: str, *, max_chars: int = 1000) -> str:
    """Free text: at most ``max_chars`` characters and no NUL (PostgreSQL text has none)."""
    if len(value) > max_chars:
        raise BadArgument(field, f"must be at most {max_chars} characters, got {len(value)}")
    if "\x00" in value:
        raise BadArgument(field, "contains a NUL character")
    return value


def attribute_filters(
    filters: Iterable[pb.AttributeFilter], field: str = "attributes"
) -> Sequence[tuple[str, str]]:
    """(key, value) pairs; a key is required."""
    pairs = []
    for i, f in enumerate(filters):
        if not f.key:
            raise BadArgument(f"{field}[{i}].key", "must not be empty")
        pairs.append((text(f.key, f"{field}[{i}].key"), text(f.value, f"{field}[{i}].value")))
    if len(pairs) > 32:
        raise BadArgument(field, "at most 32 attribute filters")
    return pairs
