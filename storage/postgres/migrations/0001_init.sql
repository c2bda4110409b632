-- otlpd hot tier: the tables the writer COPYs into and the indexes the queries need.
--
-- Column order and types follow storage/model.py exactly (the writer's binary COPY
-- names every column, but keeping one order makes the two easy to compare).
--
-- Rules that shape this file:
-- * Every table carries project_id and every unique key includes it, so the schema can
--   be sharded by project (Citus distributes on project_id) without changing a key.
-- * Record tables are range-partitioned on time with no default partition: partitions
--   are created ahead of time by storage/postgres/partitions.py, never inside an ingest
--   transaction (creating one takes strong locks on the parent), and dropping a whole
--   partition is how retention and tiering free space.
-- * Indexes are declared on the parent (partitioned indexes), so every partition
--   inherits them. Each btree costs COPY throughput (~100k rows/s with three btrees,
--   ~156k with none, per connection); BRIN on time is nearly free. No text or trigram
--   indexes here: a pg_trgm GIN index makes COPY ~50x slower; build those when a
--   partition closes, if ever.

CREATE TABLE spans (
    project_id text NOT NULL,
    time timestamptz NOT NULL,
    start_time_unix_nano bigint,
    end_time_unix_nano bigint,
    duration_ns bigint,
    trace_id bytea NOT NULL,
    span_id bytea NOT NULL,
    parent_span_id bytea,
    trace_state text,
    flags bigint,
    service_name text,
    session_id text,
    user_id text,
    name text NOT NULL,
    kind smallint,
    status_code smallint,
    status_message text,
    attributes jsonb,
    events jsonb,
    links jsonb,
    dropped_attributes_count integer,
    dropped_events_count integer,
    dropped_links_count integer,
    resource_id bigint NOT NULL,
    scope_name text,
    scope_version text,
    scope_attributes jsonb,
    scope_schema_url text
) PARTITION BY RANGE (time);

COMMENT ON TABLE spans IS
    'One row per OTLP span. Partitioned by time (span start); no unique key: a span '
    'exported twice is stored twice and deduplicated at query time.';
COMMENT ON COLUMN spans.time IS
    'Span start, truncated to microseconds; the partition key. '
    'start_time_unix_nano keeps the exact nanoseconds.';
COMMENT ON COLUMN spans.duration_ns IS
    'end - start in nanoseconds, stored so that latency filters need no arithmetic.';
COMMENT ON COLUMN spans.trace_id IS '16 bytes as sent by the client (OTLP does not guarantee it).';
COMMENT ON COLUMN spans.span_id IS '8 bytes as sent by the client.';
COMMENT ON COLUMN spans.flags IS 'OTLP fixed32 span flags; bigint because PostgreSQL has no unsigned int4.';
COMMENT ON COLUMN spans.service_name IS 'Copied from the resource attribute service.name for the service+time index.';
COMMENT ON COLUMN spans.session_id IS 'From the session.id attribute (span, else resource), for session timelines.';
COMMENT ON COLUMN spans.resource_id IS
    'resources.resource_id of the same project. No foreign key (see metric_points.series_id). '
    'Stored as an id, not as jsonb: parsing and storing the resource per row cost PostgreSQL '
    '~5.5 of ~17.5 us of CPU and ~540 of ~1215 bytes per span row (binary COPY, measured).';

CREATE INDEX spans_trace_idx ON spans (project_id, trace_id);
CREATE INDEX spans_session_time_idx ON spans (project_id, session_id, time)
    WHERE session_id IS NOT NULL;
CREATE INDEX spans_service_time_idx ON spans (project_id, service_name, time);
CREATE INDEX spans_time_brin ON spans USING brin (time);

CREATE TABLE logs (
    project_id text NOT NULL,
    time timestamptz NOT NULL,
    time_unix_nano bigint,
    observed_time_unix_nano bigint,
    trace_id bytea,
    span_id bytea,
    flags bigint,
    service_name text,
    session_id text,
    user_id text,
    severity_number smallint,
    severity_text text,
    body jsonb,
    attributes jsonb,
    event_name text,
    dropped_attributes_count integer,
    resource_id bigint NOT NULL,
    scope_name text,
    scope_version text,
    scope_attributes jsonb,
    scope_schema_url text
) PARTITION BY RANGE (time);

COMMENT ON TABLE logs IS
    'One row per OTLP log record. Partitioned by time; no unique key (see spans).';
COMMENT ON COLUMN logs.time IS
    'time_unix_nano, or observed_time_unix_nano when the record had none (OTLP allows 0), '
    'so that every record lands in a partition near when it happened.';
COMMENT ON COLUMN logs.time_unix_nano IS '0 when the record had no timestamp, as in OTLP.';
COMMENT ON COLUMN logs.body IS
    'Any OTLP AnyValue as JSON (string, number, bool, array, object), or null. '
    'Not indexed: full-text indexes cost ingest dearly.';
COMMENT ON COLUMN logs.resource_id IS 'resources.resource_id of the same project (see spans).';

CREATE INDEX logs_trace_idx ON logs (project_id, trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX logs_session_time_idx ON logs (project_id, session_id, time)
    WHERE session_id IS NOT NULL;
CREATE INDEX logs_service_time_idx ON logs (project_id, service_name, time);
CREATE INDEX logs_time_brin ON logs USING brin (time);

CREATE TABLE metric_points (
    project_id text NOT NULL,
    time timestamptz NOT NULL,
    time_unix_nano bigint,
    start_time_unix_nano bigint,
    series_id bigint NOT NULL,
    service_name text,
    trace_id bytea,
    span_id bytea,
    session_id text,
    user_id text,
    flags bigint,
    value double precision,
    value_int bigint,
    count bigint,
    sum double precision,
    min double precision,
    max double precision,
    bucket_counts bigint[],
    explicit_bounds double precision[],
    scale integer,
    zero_count bigint,
    zero_threshold double precision,
    positive_offset integer,
    positive_bucket_counts bigint[],
    negative_offset integer,
    negative_bucket_counts bigint[],
    quantiles jsonb,
    exemplars jsonb
) PARTITION BY RANGE (time);

COMMENT ON TABLE metric_points IS
    'One row per data point of every metric kind; columns a kind does not use are null '
    '(one bit each), so one COPY stream serves them all. Labels live in metric_series.';
COMMENT ON COLUMN metric_points.series_id IS
    'metric_series.series_id of the same project. No foreign key: it would cost a lookup '
    'per point on ingest, and the id is a hash every replica computes alike.';
COMMENT ON COLUMN metric_points.value IS
    'Gauge or sum value; an as_int value is converted, and kept exactly in value_int.';
COMMENT ON COLUMN metric_points.trace_id IS 'From the first exemplar that has one, to jump from a point to a trace.';

CREATE INDEX metric_points_series_time_idx ON metric_points (project_id, series_id, time);
CREATE INDEX metric_points_time_brin ON metric_points USING brin (time);

CREATE TABLE metric_series (
    project_id text NOT NULL,
    series_id bigint NOT NULL,
    metric_name text NOT NULL,
    metric_type smallint NOT NULL,
    unit text,
    description text,
    aggregation_temporality smallint,
    is_monotonic boolean,
    service_name text,
    attributes jsonb,
    resource jsonb,
    scope_name text,
    scope_version text,
    metadata jsonb,
    first_seen timestamptz NOT NULL,
    PRIMARY KEY (project_id, series_id)
);

COMMENT ON TABLE metric_series IS
    'Each metric series once, with its labels; points refer to it by series_id '
    '(as Prometheus and Promscale do). Rows are inserted once and never updated.';
COMMENT ON COLUMN metric_series.series_id IS
    '63-bit hash of every column but first_seen, computed by the decoder, so that every '
    'replica derives the same id for the same series without a round trip.';
COMMENT ON COLUMN metric_series.metric_type IS 'storage.model.MetricType: 1 gauge, 2 sum, 3 histogram, 4 exponential histogram, 5 summary.';
COMMENT ON COLUMN metric_series.first_seen IS 'Time of the first point of the batch that created the row; not updated later.';

CREATE INDEX metric_series_name_idx ON metric_series (project_id, metric_name);

CREATE TABLE resources (
    project_id text NOT NULL,
    resource_id bigint NOT NULL,
    attributes jsonb NOT NULL,
    schema_url text,
    dropped_attributes_count integer,
    first_seen timestamptz NOT NULL,
    PRIMARY KEY (project_id, resource_id)
);

COMMENT ON TABLE resources IS
    'Each OTLP resource (a process, a pod, a device) once per project; spans and logs refer '
    'to it by resource_id. Rows are inserted once and never updated. Not partitioned: it is '
    'small, and tiering is to export the resources a partition refers to alongside it.';
COMMENT ON COLUMN resources.resource_id IS
    '63-bit hash of attributes, schema_url and dropped_attributes_count, computed by the '
    'decoder (see storage/ids.py), so every replica derives the same id without '
    'a round trip. It does not depend on the project: a resource whose records belong to '
    'several projects has one row per project, with the same id.';
COMMENT ON COLUMN resources.first_seen IS
    'Time of the first record that referred to it in the write that created the row; not updated later.';

CREATE TABLE sessions (
    project_id text NOT NULL,
    session_id text NOT NULL,
    user_id text,
    service_name text,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (project_id, session_id)
);

COMMENT ON TABLE sessions IS
    'Which project and user a session belongs to, and when it was seen; upserted once '
    'per write for every session the write mentions.';
COMMENT ON COLUMN sessions.user_id IS 'The last non-null user seen for the session (a user may log in mid-session).';
COMMENT ON COLUMN sessions.service_name IS 'The first service the session was seen in; later sightings do not change it.';

-- Records that carry only session.id are completed by looking the id up without a
-- project; the newest sighting wins when two projects share an id.
CREATE INDEX sessions_session_id_idx ON sessions (session_id);
