-- 0010: what pruning needs to know of the rows records refer to (storage/postgres/prune.py).
--
-- resources, metric_series, sessions, services and operations are pruned of rows that no
-- hot partition still needs. A row may go only when (1) every record that refers to it is
-- in a partition that has been dropped, and (2) no writer can still skip writing it
-- because its cache says the row is there. Each row therefore carries two times:
--
-- * The newest record time (coarse) of the writes that stored it: resources.last_seen,
--   metric_series.last_seen, sessions.last_seen (already so), services.last_record,
--   operations.last_record. Every record that refers to the row is at most the writers'
--   touch interval (OTLPD_TOUCH_INTERVAL) newer: a writer writes the row again before it
--   stores a newer record. NULL: unknown, never pruned.
-- * When a writer last wrote it, on PostgreSQL's clock (statement_timestamp()):
--   resources.touched_at, metric_series.touched_at, sessions.touched_at, and the
--   catalog's last_seen (already so). A writer trusts its cache of a row for at most the
--   touch interval after such a write.
--
-- Rows stored before this migration get, as their newest record time, the end of the
-- newest partition that exists now (no record written before can be newer), or
-- 'infinity' if a partition's bound is not a time range (a default or MAXVALUE partition
-- made by hand could hold any record). A constant default keeps ALTER TABLE from rewriting
-- the tables (PostgreSQL stores it once as the value of the rows that predate the column);
-- it is dropped right after, so a row an older otlpd inserts gets NULL (never pruned).
--
-- The indexes serve the pruning job's keyset scan: per project, by newest record time,
-- then the key. Keys start with project_id, as in 0001.

DO $$
DECLARE
    horizon timestamptz;
BEGIN
    SELECT CASE WHEN bool_or(b.upper IS NULL) THEN 'infinity'::timestamptz
                ELSE greatest(max(b.upper), now()) END
    INTO horizon
    FROM (
        SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]
                   ::timestamptz AS upper
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent IN ('spans'::regclass, 'logs'::regclass, 'metric_points'::regclass)
    ) b;
    horizon := coalesce(horizon, now());
    EXECUTE format('ALTER TABLE resources ADD COLUMN last_seen timestamptz DEFAULT %L', horizon);
    EXECUTE format('ALTER TABLE metric_series ADD COLUMN last_seen timestamptz DEFAULT %L', horizon);
    EXECUTE format('ALTER TABLE services ADD COLUMN last_record timestamptz DEFAULT %L', horizon);
    EXECUTE format('ALTER TABLE operations ADD COLUMN last_record timestamptz DEFAULT %L', horizon);
END
$$;

ALTER TABLE resources ALTER COLUMN last_seen DROP DEFAULT;
ALTER TABLE metric_series ALTER COLUMN last_seen DROP DEFAULT;
ALTER TABLE services ALTER COLUMN last_record DROP DEFAULT;
ALTER TABLE operations ALTER COLUMN last_record DROP DEFAULT;

ALTER TABLE resources ADD COLUMN touched_at timestamptz NOT NULL DEFAULT statement_timestamp();
ALTER TABLE metric_series ADD COLUMN touched_at timestamptz NOT NULL DEFAULT statement_timestamp();
ALTER TABLE sessions ADD COLUMN touched_at timestamptz NOT NULL DEFAULT statement_timestamp();

COMMENT ON COLUMN resources.last_seen IS
    'Newest record time of the writes that stored the row (coarse: the newest record of '
    'the write); records that refer to it are at most OTLPD_TOUCH_INTERVAL newer. '
    'NULL: unknown (never pruned).';
COMMENT ON COLUMN resources.touched_at IS
    'When a writer last wrote the row (PostgreSQL''s clock); writers trust their cache of '
    'it for at most OTLPD_TOUCH_INTERVAL after that.';
COMMENT ON COLUMN metric_series.last_seen IS
    'Newest record time of the writes that stored the row (coarse); points that refer to '
    'it are at most OTLPD_TOUCH_INTERVAL newer. NULL: unknown (never pruned).';
COMMENT ON COLUMN metric_series.touched_at IS
    'When a writer last wrote the row (PostgreSQL''s clock), as resources.touched_at.';
COMMENT ON COLUMN sessions.touched_at IS
    'When a writer last wrote the row (PostgreSQL''s clock), as resources.touched_at.';
COMMENT ON COLUMN services.last_record IS
    'Newest record time of the writes that wrote the entry (coarse: the newest record of '
    'the write). NULL: unknown (never pruned).';
COMMENT ON COLUMN operations.last_record IS 'As services.last_record.';
COMMENT ON COLUMN sessions.last_seen IS
    'Newest record time of the session, to within the writers'' session resolution.';

-- The comments of 0001 said the rows are never updated; they are, for pruning.
COMMENT ON TABLE resources IS
    'Each OTLP resource (a process, a pod, a device) once per project; spans and logs refer '
    'to it by resource_id. Written again only to move last_seen and touched_at, and '
    'pruned once no hot partition needs it (storage/postgres/prune.py).';
COMMENT ON TABLE metric_series IS
    'Each metric series once, with its labels; points refer to it by series_id '
    '(as Prometheus and Promscale do). Written again only to move last_seen and '
    'touched_at, and pruned once no hot partition needs it (storage/postgres/prune.py).';

CREATE INDEX resources_prune_idx ON resources (project_id, last_seen, resource_id);
CREATE INDEX metric_series_prune_idx ON metric_series (project_id, last_seen, series_id);
CREATE INDEX sessions_prune_idx ON sessions (project_id, last_seen, session_id);
CREATE INDEX services_prune_idx ON services (project_id, last_record, service_name);
CREATE INDEX operations_prune_idx
    ON operations (project_id, last_record, service_name, span_name, span_kind);
