"""The rules every signal's records share, and the rejections that say which one broke.

Each function returns (never raises) a ``RecordRejected`` with a short reason, counted in
the partial-success summary, and a detail that says exactly what was wrong.
"""

from __future__ import annotations

from typing import Final

from otlpd.receiver.rejections import RecordRejected

ZERO_TRACE_ID: Final = bytes(16)
ZERO_SPAN_ID: Final = bytes(8)
MAX_SPAN_KIND: Final = 5  # SPAN_KIND_CONSUMER
MAX_STATUS_CODE: Final = 2  # STATUS_CODE_ERROR
MAX_SEVERITY: Final = 24  # SEVERITY_NUMBER_FATAL4
MAX_TEMPORALITY: Final = 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
# OTLP counts are uint32/uint64; PostgreSQL's integer and bigint are signed. Dropped counts
# beyond integer are saturated (they say "at least this many"); a time or count beyond
# bigint means a broken record, which is refused.
MAX_INTEGER: Final = 2**31 - 1
MAX_BIGINT: Final = 2**63 - 1
NUL_ESCAPE: Final = "\\u0000"  # how JSON text holds U+0000


def bad_id(name: str, value: bytes, size: int, optional: bool = False) -> RecordRejected:
    """``name`` is all zero or of the wrong length."""
    reason = f"invalid {name}"
    if len(value) == size:
        return RecordRejected(reason, f"{name} is all zero")
    expected = f"empty or {size}" if optional else f"{size}"
    return RecordRejected(reason, f"{name} must be {expected} bytes, got {len(value)}")


def _duration(ns: int) -> str:
    seconds = ns / 1e9
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def bad_time(name: str, value: int, lo: int, now: int, hi: int) -> RecordRejected:
    """``value`` is 0 or outside the accepted window ``lo..hi`` around ``now``."""
    if value == 0:
        return RecordRejected("invalid time", f"{name} is 0")
    if value < lo:
        when, limit = "before", now - lo
    else:
        when, limit = "after", hi - now
    delta = abs(now - value)
    return RecordRejected(
        "time out of range",
        f"{name} {value} is {_duration(delta)} {when} the server clock "
        f"(accepted: {_duration(limit)})",
    )


def too_big(name: str, value: int) -> RecordRejected:
    """A count beyond what ``bigint`` holds."""
    return RecordRejected("count out of range", f"{name} {value} is beyond 2^63-1")


def bad_enum(name: str, value: int, maximum: int) -> RecordRejected:
    """An enum value that OTLP does not define."""
    return RecordRejected(f"invalid {name}", f"{name} {value} is not in 0..{maximum}")


def nul(what: str) -> RecordRejected:
    """A text that holds U+0000, which PostgreSQL cannot store."""
    return RecordRejected("NUL character", f"{what} contains a NUL character")


def too_long(what: str, size: int, limit: int) -> RecordRejected:
    """An indexed value longer than its limit (see ``limits``)."""
    return RecordRejected(
        "value too long", f"{what} is {size} bytes, limit {limit} for an indexed value"
    )


def utf8_size(text: str, limit: int) -> int:
    """The UTF-8 size of ``text`` when it may exceed ``limit``, else 0 (cheap for short text)."""
    # A character is at most 4 bytes: a text of limit // 4 characters cannot exceed it.
    if len(text) <= limit // 4:
        return 0
    size = len(text.encode())
    return size if size > limit else 0


def hex_or_null(value: bytes | None) -> str:
    """An id as a JSON string of hex digits, or JSON null when empty."""
    return f'"{value.hex()}"' if value else "null"
