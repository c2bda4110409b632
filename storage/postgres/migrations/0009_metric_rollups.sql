-- 0009: 1-minute and 1-hour rollups of metric points, kept by one fenced job
-- (storage.postgres.metric_rollups), so that QueryMetrics can answer ranges whose raw
-- points have left PostgreSQL (they stay hot OTLPD_HOT_RETENTION_METRICS, 2 h by default).
--
-- * One row per series, interval and bucket layout (part 0; 1, 2, ... only for the other
--   layouts of an explicit histogram that changed its bounds within the interval). It
--   summarizes the interval's points so that rows merge exactly into longer intervals:
--   the moments of the samples (count, sum, min, max, first and last with their times),
--   the counter increase between the samples inside the row, and for histograms what
--   the points added to each bucket inside the row plus the counts of the first and last
--   point, from which a reader computes the increase across the row's edges (resets
--   included) as it would from the raw points. storage/rollup_rows.py is the arithmetic;
--   docs/storage.md documents every column.
-- * A histogram state that equals what it stands in for is stored as NULL: first counts
--   equal to the last (a one-point row), increments equal to last minus first (no reset
--   inside the row). A delta series stores increments only.
-- * Explicit-histogram bucket counts are bytea: each count as 8 bytes, big-endian (what
--   int8send gives). A query reads a day of 100 series' rows, 1.9M counts: string_agg
--   of bytea moves them 2-3 times faster than array_agg/array_send of bigint[], which
--   call a send function per element (measured: 36-56 ms against 118-132 ms for 72,000
--   rows of 13 counts). The Parquet files have them as lists of int64.
-- * 1-minute rows are recomputed from the raw points of the minutes writers mark in
--   metric_rollup_dirty (in the transaction of the points), the way 0005 keeps the RED
--   rollups; 1-hour rows from the 1-minute rows of the hours the job marks in
--   metric_rollup_dirty_hours. A NULL project marks every project.
-- * Partitioned by time like the record tables, so that retention drops partitions:
--   a day per partition for 1-minute rows (1,440 rows per series), a week for 1-hour rows
--   (168 rows per series; 58 partitions over the default 400 days).
-- * Keys start with project_id (shardable by project, as in 0001); the second index serves
--   the job, which replaces whole intervals of a project.

CREATE TABLE metric_rollups_1m (
    project_id text NOT NULL,
    time timestamptz NOT NULL,
    series_id bigint NOT NULL,
    part smallint NOT NULL,
    samples bigint NOT NULL,
    sum double precision,
    min double precision,
    max double precision,
    first_time_unix_nano bigint,
    first_value double precision,
    last_time_unix_nano bigint,
    last_value double precision,
    increase double precision,
    first_start_time_unix_nano bigint,
    last_start_time_unix_nano bigint,
    explicit_bounds double precision[],
    bucket_increments bytea,
    first_bucket_counts bytea,
    last_bucket_counts bytea,
    scale integer,
    zero_threshold double precision,
    positive_offset integer,
    negative_offset integer,
    zero_increment bigint,
    positive_increments bigint[],
    negative_increments bigint[],
    first_zero_count bigint,
    first_positive_counts bigint[],
    first_negative_counts bigint[],
    last_zero_count bigint,
    last_positive_counts bigint[],
    last_negative_counts bigint[],
    PRIMARY KEY (project_id, series_id, time, part)
) PARTITION BY RANGE (time);

COMMENT ON TABLE metric_rollups_1m IS
    'Each series'' points summarized per minute (0009 header; columns in docs/storage.md).';
COMMENT ON COLUMN metric_rollups_1m.time IS 'Start of the interval.';
COMMENT ON COLUMN metric_rollups_1m.samples IS
    'Points with a value (a histogram''s: its count); 0 on parts > 0, whose number columns are null.';
COMMENT ON COLUMN metric_rollups_1m.last_bucket_counts IS
    'Explicit histogram: the last point''s bucket counts, 8 bytes each, big-endian.';
COMMENT ON COLUMN metric_rollups_1m.increase IS
    'Counter increase between the samples inside the row: a drop is a reset that adds the value after it.';

CREATE INDEX metric_rollups_1m_time_idx ON metric_rollups_1m (project_id, time);

CREATE TABLE metric_rollups_1h (
    project_id text NOT NULL,
    time timestamptz NOT NULL,
    series_id bigint NOT NULL,
    part smallint NOT NULL,
    samples bigint NOT NULL,
    sum double precision,
    min double precision,
    max double precision,
    first_time_unix_nano bigint,
    first_value double precision,
    last_time_unix_nano bigint,
    last_value double precision,
    increase double precision,
    first_start_time_unix_nano bigint,
    last_start_time_unix_nano bigint,
    explicit_bounds double precision[],
    bucket_increments bytea,
    first_bucket_counts bytea,
    last_bucket_counts bytea,
    scale integer,
    zero_threshold double precision,
    positive_offset integer,
    negative_offset integer,
    zero_increment bigint,
    positive_increments bigint[],
    negative_increments bigint[],
    first_zero_count bigint,
    first_positive_counts bigint[],
    first_negative_counts bigint[],
    last_zero_count bigint,
    last_positive_counts bigint[],
    last_negative_counts bigint[],
    PRIMARY KEY (project_id, series_id, time, part)
) PARTITION BY RANGE (time);

COMMENT ON TABLE metric_rollups_1h IS
    'As metric_rollups_1m, per hour, merged from the hour''s 1-minute rows.';

CREATE INDEX metric_rollups_1h_time_idx ON metric_rollups_1h (project_id, time);

CREATE TABLE metric_rollup_dirty (
    project_id text,
    minute timestamptz NOT NULL
);

COMMENT ON TABLE metric_rollup_dirty IS
    'Minutes whose metric points changed since they were rolled up; one row per write, '
    'deleted by the rollup job. A NULL project_id stands for every project.';

CREATE INDEX metric_rollup_dirty_minute_idx ON metric_rollup_dirty (project_id, minute);

CREATE TABLE metric_rollup_dirty_hours (
    project_id text,
    hour timestamptz NOT NULL
);

COMMENT ON TABLE metric_rollup_dirty_hours IS
    'Hours whose 1-minute rollups changed since their 1-hour rollup was made; written and '
    'deleted by the rollup job. A NULL project_id stands for every project.';

CREATE INDEX metric_rollup_dirty_hours_hour_idx ON metric_rollup_dirty_hours (project_id, hour);

CREATE TABLE metric_rollup_state (
    name text PRIMARY KEY,
    horizon timestamptz NOT NULL
);

COMMENT ON TABLE metric_rollup_state IS
    'The metric rollup job''s progress: a minute before horizon with no dirty mark is final, '
    'and so is an hour that ends by then with no mark of its own. A missing row means the '
    'job has never run (it then backfills).';
