"""Row types shared by the decoder (which builds them) and the writers (which store them).

Rows are plain tuples in the column order below, not objects: the decoder builds tens of
thousands per second per core, and a tuple is the cheapest thing Python can make and the
thing a binary ``COPY`` consumes as is. The column tuples are the single source of truth
for that order; ``storage/postgres/migrations`` declare the same columns in the same order.

Value conventions, the same in every table:

* ``time`` and every ``*_unix_nano`` column are ``int`` nanoseconds since the Unix epoch.
  The writer turns ``time`` into ``timestamptz`` (microseconds); the ``*_unix_nano``
  columns keep the original nanoseconds as ``bigint``.
* ids (``trace_id``, ``span_id``, ...) are ``bytes`` of the OTLP length, or ``None``.
* ``jsonb`` columns hold a ``str`` of JSON text that the decoder already serialized, so
  scope attributes shared by 512 spans are serialized once, and a queued row is compact.
* ``None`` is SQL NULL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

Row = tuple[Any, ...]

SPAN_COLUMNS: Final = (
    "project_id",  # text, never null
    "time",  # timestamptz: span start
    "start_time_unix_nano",  # bigint
    "end_time_unix_nano",  # bigint
    "duration_ns",  # bigint: end - start
    "trace_id",  # bytea(16)
    "span_id",  # bytea(8)
    "parent_span_id",  # bytea(8) or null for a root span
    "trace_state",  # text or null
    "flags",  # bigint (fixed32 in OTLP)
    "service_name",  # text or null
    "session_id",  # text or null
    "user_id",  # text or null
    "name",  # text
    "kind",  # smallint: SpanKind
    "status_code",  # smallint: Status.StatusCode
    "status_message",  # text or null
    "attributes",  # jsonb object
    "events",  # jsonb array or null
    "links",  # jsonb array or null
    "dropped_attributes_count",  # integer
    "dropped_events_count",  # integer
    "dropped_links_count",  # integer
    "resource_id",  # bigint: resources.resource_id
    "scope_name",  # text or null
    "scope_version",  # text or null
    "scope_attributes",  # jsonb object or null
    "scope_schema_url",  # text or null
    "scope_dropped_attributes_count",  # integer (migration 0002)
)

LOG_COLUMNS: Final = (
    "project_id",
    "time",  # timestamptz: time_unix_nano, else observed_time_unix_nano
    "time_unix_nano",  # bigint, 0 when the record had none
    "observed_time_unix_nano",  # bigint
    "trace_id",  # bytea(16) or null
    "span_id",  # bytea(8) or null
    "flags",  # bigint
    "service_name",
    "session_id",
    "user_id",
    "severity_number",  # smallint
    "severity_text",  # text or null
    "body",  # jsonb: any AnyValue (string, number, bool, array, object) or null
    "attributes",  # jsonb object
    "event_name",  # text or null
    "dropped_attributes_count",  # integer
    "resource_id",  # bigint: resources.resource_id
    "scope_name",
    "scope_version",
    "scope_attributes",
    "scope_schema_url",
    "scope_dropped_attributes_count",  # integer (migration 0002)
)

# One row per data point of every kind. Columns that a kind does not use are null, which
# costs one bit in PostgreSQL's null bitmap; one table means one COPY stream per batch.
POINT_COLUMNS: Final = (
    "project_id",
    "time",  # timestamptz: time_unix_nano
    "time_unix_nano",  # bigint
    "start_time_unix_nano",  # bigint
    "series_id",  # bigint: metric_series.series_id
    "service_name",
    "trace_id",  # bytea(16) or null: from the first exemplar that has one
    "span_id",  # bytea(8) or null
    "session_id",
    "user_id",
    "flags",  # bigint: DataPointFlags; bit 1 (FLAG_NO_RECORDED_VALUE) marks a staleness
    # marker, whose value columns (value .. quantiles) are all null: not a zero
    "value",  # double precision: gauge/sum value (as_int converted), else null
    "value_int",  # bigint: the exact as_int of a gauge/sum, else null
    "count",  # bigint: histogram, exponential histogram, summary
    "sum",  # double precision or null
    "min",  # double precision or null
    "max",  # double precision or null
    "bucket_counts",  # bigint[]: histogram
    "explicit_bounds",  # double precision[]: histogram
    "scale",  # integer: exponential histogram
    "zero_count",  # bigint
    "zero_threshold",  # double precision
    "positive_offset",  # integer
    "positive_bucket_counts",  # bigint[]
    "negative_offset",  # integer
    "negative_bucket_counts",  # bigint[]
    "quantiles",  # jsonb array of [quantile, value]: summary
    "exemplars",  # jsonb array or null
)

# A series is stored once and points refer to it by id (as Prometheus and Promscale do),
# so a point row carries no labels. series_id is a 63-bit hash of its identity (see
# storage.ids: everything below but description, metadata, first_seen and the dropped
# counts), so every replica computes the same id for the same series without asking.
SERIES_COLUMNS: Final = (
    "project_id",
    "series_id",  # bigint
    "metric_name",  # text
    "metric_type",  # smallint: MetricType
    "unit",  # text or null
    "description",  # text or null
    "aggregation_temporality",  # smallint or null
    "is_monotonic",  # boolean or null
    "service_name",  # text or null
    "attributes",  # jsonb object: the data point attributes
    "resource",  # jsonb object
    "scope_name",
    "scope_version",
    "metadata",  # jsonb object (Metric.metadata) or null
    "first_seen",  # timestamptz: int nanoseconds, like time
    # migration 0002: what OTLP says of the resource and scope beyond the above
    "resource_schema_url",  # text or null
    "resource_dropped_attributes_count",  # integer
    "scope_attributes",  # jsonb object or null
    "scope_schema_url",  # text or null
    "scope_dropped_attributes_count",  # integer
)

# A resource is stored once per project and spans and logs refer to it by id, as points
# refer to their series: PostgreSQL parsing and storing the same resource jsonb on every
# row cost a third of its CPU per span row (measured). resource_id is a 63-bit hash of
# the canonical resource: its attributes' JSON in canonical order (see
# ``AttributeEncoder.encode_sorted``), schema_url and dropped_attributes_count. It is the
# same in every process and does not depend on project_id: the records of one resource
# may belong to several projects, which makes one row per (project_id, resource_id).
RESOURCE_COLUMNS: Final = (
    "project_id",
    "resource_id",  # bigint
    "attributes",  # jsonb object
    "schema_url",  # text or null
    "dropped_attributes_count",  # integer
    "first_seen",  # timestamptz: int nanoseconds, like time
)

SESSION_COLUMNS: Final = (
    "project_id",
    "session_id",
    "user_id",  # text or null
    "service_name",  # text or null
    "first_seen",  # timestamptz: int nanoseconds
    "last_seen",  # timestamptz: int nanoseconds
)


class MetricType:
    """The kinds of OTLP metric data, as stored in ``metric_series.metric_type``."""

    GAUGE: Final = 1
    SUM: Final = 2
    HISTOGRAM: Final = 3
    EXPONENTIAL_HISTOGRAM: Final = 4
    SUMMARY: Final = 5


class Signal:
    """Names of the three OTLP signals, used in metrics labels and messages."""

    TRACES: Final = "traces"
    LOGS: Final = "logs"
    METRICS: Final = "metrics"


@dataclass(slots=True)
class SessionSighting:
    """What one request saw of a session; merged per batch before the upsert."""

    user_id: str | None
    service_name: str | None
    first_seen: int
    last_seen: int


@dataclass(slots=True)
class RowBatch:
    """The rows one Export request produced, stored in one transaction with others.

    ``series`` holds every series the points refer to and ``resources`` every resource the
    spans and logs refer to, each keyed by ``(project_id, id)`` and deduplicated within the
    request; ``sessions`` every session the records mention, keyed by
    ``(project_id, session_id)``.
    """

    spans: list[Row] = field(default_factory=list)
    logs: list[Row] = field(default_factory=list)
    points: list[Row] = field(default_factory=list)
    series: dict[tuple[str, int], Row] = field(default_factory=dict)
    resources: dict[tuple[str, int], Row] = field(default_factory=dict)
    sessions: dict[tuple[str, str], SessionSighting] = field(default_factory=dict)

    @property
    def row_count(self) -> int:
        """Records in the batch; series, resources and sessions are bookkeeping, not records."""
        return len(self.spans) + len(self.logs) + len(self.points)
