"""What a record may hold and when it may have happened: what is cut, and what is refused.

Values that land in no index are cut to their limit, as the OpenTelemetry SDKs' attribute
limits do, and every cut is counted (``otlpd_truncated_values_total{what}``):

=========================  ==========  ================================================
value                      limit       beyond it (``what``)
=========================  ==========  ================================================
attributes per list        128         the first 128 are kept; the others are added to
                                       the record's (event's, link's, resource's,
                                       scope's) ``dropped_attributes_count``; data
                                       points, exemplars and metric metadata have none
                                       (``attributes``)
string or bytes value      64 KiB      cut to the limit in UTF-8 bytes, on a character
                                       boundary; bytes before base64 (``value``)
log body                   1 MiB       a string body is cut like a value; a structured
                                       body whose JSON text is longer becomes a string
                                       holding the first 1 MiB of that text (``body``)
nesting of arrays/kvlists  8           a deeper array or kvlist becomes null, its place
                                       (array index, kvlist key) kept (``depth``)
=========================  ==========  ================================================

Each limit is a setting (``OTLPD_MAX_ATTRIBUTES``, ``OTLPD_MAX_ATTRIBUTE_VALUE_BYTES``,
``OTLPD_MAX_BODY_BYTES``, ``OTLPD_MAX_ATTRIBUTE_DEPTH``); an attribute value is at depth
1, so the default keeps 8 levels of arrays inside arrays. A cached attribute was counted
when its fragment was made, not at each use (``anyvalue``).

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
They are never cut, nor redacted: an envelope attribute is stored as sent or its record
refused, whatever the attribute value limit.
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
    """What a record may hold and when it may have happened: cut beyond the first four
    limits, refused beyond the others."""

    max_attribute_value_bytes: int = 64 * 1024  # a string/bytes attribute value is cut to this
    max_body_bytes: int = 1024 * 1024  # a log body (string, or JSON text) is cut to this
    max_attributes: int = 128  # attributes kept per list (the SDKs' default limit)
    max_attribute_depth: int = 8  # arrays/kvlists nested deeper become null
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
            "max_attributes",
            "max_attribute_depth",
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
