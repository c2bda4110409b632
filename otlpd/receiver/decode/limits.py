"""What a record may hold and when it may have happened, or it is refused.

Indexed values have limits of their own: PostgreSQL refuses a btree index row over
~2,704 bytes, and it refuses it by failing the whole COPY, which would cost every record
committed with it. So every value that lands in an indexed column is checked here, in
the decoder, and a record whose value is too long is rejected alone through partial
success. Rejected rather than truncated: two sessions (or users, or services) that
differ only after the limit would otherwise be merged into one, silently, and every
query by that value would answer for both.

The limits, in UTF-8 bytes (documented in README, "Limits"):

======================  ======  ==========================================================
value                   limit   why this number
======================  ======  ==========================================================
project id              128     an id, chosen by the operator; short keeps keys cheap
service name            256     ``service.name``; far above any real service name
session id              256     client-made ids (UUIDs, 32-64 hex characters)
user id                 256     ids or e-mail addresses (RFC 5321: 254 at most)
metric name             255     the OTel API's instrument name limit (255 characters)
======================  ======  ==========================================================

Together with the time and an id they stay far below the btree limit in every index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_PROJECT_BYTES: Final = 128
MAX_SERVICE_BYTES: Final = 256
MAX_SESSION_BYTES: Final = 256
MAX_USER_BYTES: Final = 256
MAX_METRIC_NAME_BYTES: Final = 255


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What a record may hold and when it may have happened, or it is refused."""

    max_attribute_value_bytes: int = 64 * 1024  # a string/bytes attribute value above this
    max_body_bytes: int = 1024 * 1024  # a log body (as JSON text) above this
    accept_past_ns: int = 24 * 3600 * 10**9  # records older than now - this
    accept_future_ns: int = 3600 * 10**9  # records newer than now + this
    max_project_bytes: int = MAX_PROJECT_BYTES
    max_service_bytes: int = MAX_SERVICE_BYTES
    max_session_bytes: int = MAX_SESSION_BYTES
    max_user_bytes: int = MAX_USER_BYTES
    max_metric_name_bytes: int = MAX_METRIC_NAME_BYTES

    def __post_init__(self) -> None:
        for name in (
            "max_attribute_value_bytes",
            "max_body_bytes",
            "max_project_bytes",
            "max_service_bytes",
            "max_session_bytes",
            "max_user_bytes",
            "max_metric_name_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("accept_past_ns", "accept_future_ns"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def envelope_limits(self) -> tuple[int, int, int, int]:
        """The byte limit of each envelope slot, in ``otlpd.envelope.Found`` order."""
        return (
            self.max_session_bytes,
            self.max_user_bytes,
            self.max_project_bytes,
            self.max_service_bytes,
        )
