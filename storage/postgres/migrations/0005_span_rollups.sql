-- 0005: per-minute RED rollups of request spans, for the insights RPCs (GetServiceStats,
-- GetErrorSpikes, DetectAnomalies over RED), which must answer a day of a busy project in
-- well under a second: a day is ~30k service-minutes here, against millions of spans.
--
-- * Requests are spans of kind SERVER (2) or CONSUMER (5); an error is status ERROR (2).
-- * Durations go into log-scaled buckets: bucket b holds [2^(b/8), 2^((b+1)/8)) ns (eight
--   per octave, ~9% wide), stored sparse as two parallel arrays. Buckets of any rows add
--   up, so any range and step is a sum of minutes; a percentile read from them is within
--   half a bucket (4.4%) of the exact one.
-- * The rollups are derived data, rebuilt from spans by one fenced job (otlpd.scheduler,
--   storage.postgres.rollups): every write of spans records the (project, minute)s it
--   touched in span_rollup_dirty in the same transaction, and the job recomputes those
--   minutes from the spans and deletes the marks it saw, in one REPEATABLE READ
--   transaction. A mark committed after the job's snapshot survives it, so a late span is
--   always rolled up by a later round; nothing is counted twice because a minute is
--   recomputed whole. A NULL project marks the minute of every project (the backfill of
--   spans stored before this migration).
-- * Keys start with project_id (shardable by project, as in 0001), but for
--   span_rollup_state, one row per job: a Citus reference table, like api_tokens.

CREATE TABLE service_rollups (
    project_id text NOT NULL,
    minute timestamptz NOT NULL,
    service_name text NOT NULL,
    requests bigint NOT NULL,
    errors bigint NOT NULL,
    duration_ns_sum bigint NOT NULL,
    buckets smallint[] NOT NULL,
    counts bigint[] NOT NULL,
    PRIMARY KEY (project_id, minute, service_name)
);

COMMENT ON TABLE service_rollups IS
    'Request spans (kind server or consumer) per project, minute and service: count, '
    'errors, summed duration and the log-scaled duration histogram (0005 header).';
COMMENT ON COLUMN service_rollups.service_name IS 'Empty for spans of no service.';
COMMENT ON COLUMN service_rollups.buckets IS
    'Ascending bucket indexes b: the bucket holds durations in [2^(b/8), 2^((b+1)/8)) ns.';
COMMENT ON COLUMN service_rollups.counts IS 'Spans in the bucket of the same position.';

CREATE TABLE operation_rollups (
    project_id text NOT NULL,
    minute timestamptz NOT NULL,
    service_name text NOT NULL,
    span_name text NOT NULL,
    span_kind smallint NOT NULL,
    requests bigint NOT NULL,
    errors bigint NOT NULL,
    duration_ns_sum bigint NOT NULL,
    buckets smallint[] NOT NULL,
    counts bigint[] NOT NULL,
    PRIMARY KEY (project_id, minute, service_name, span_name, span_kind)
);

COMMENT ON TABLE operation_rollups IS
    'As service_rollups, per operation (span name and kind) of the service.';

CREATE INDEX operation_rollups_service_idx ON operation_rollups (project_id, service_name, minute);

CREATE TABLE span_rollup_dirty (
    project_id text,
    minute timestamptz NOT NULL
);

COMMENT ON TABLE span_rollup_dirty IS
    'Minutes whose spans changed since they were rolled up; one row per write, deleted '
    'by the rollup job. A NULL project_id stands for every project.';

CREATE INDEX span_rollup_dirty_minute_idx ON span_rollup_dirty (project_id, minute);

CREATE TABLE span_rollup_state (
    name text PRIMARY KEY,
    horizon timestamptz NOT NULL
);

COMMENT ON TABLE span_rollup_state IS
    'The rollup job''s progress: every minute before horizon that has no dirty mark is '
    'final. A missing row means the job has never run (it then backfills).';
