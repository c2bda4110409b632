-- 0012: what the RED rollups (0005) counted of spans that left for the cold tier, so that
-- a late span for such a minute adds to the minute instead of replacing it.
--
-- The rollup job recomputes a marked minute whole from the spans; once the minute's
-- partition is tiered, its spans are no longer in PostgreSQL, and a late span for that
-- minute (possible when OTLPD_ACCEPT_PAST exceeds a project's hot retention of spans)
-- made the job recompute the minute from the late span alone. Now, when tiering drops a
-- spans partition whose range can still take late spans, it first rolls up the range's
-- marked minutes, then copies the range's operation_rollups rows here, in the
-- transaction of the DROP (storage.postgres.rollups.seal). The job's recompute adds these
-- rows to the hot spans of the minute: the minute counts its tiered spans once, from
-- here, and its late spans once, from the spans table. A later tiering of the late spans'
-- partition replaces the range's rows here by the rollups that now include them.
--
-- Rows are kept while their minute may still receive a late span (OTLPD_ACCEPT_PAST and
-- an hour), then deleted by the tiering pass: no recompute can need them after that.
-- Service rows are the sums of their operations, so only operation rows are kept.
-- The key starts with project_id (shardable by project, as in 0001).

-- Its rows are operation_rollups rows: the same columns, copied by LIKE (columns, types
-- and NOT NULL only), and the same key.
CREATE TABLE span_rollups_tiered (
    LIKE operation_rollups,
    PRIMARY KEY (project_id, minute, service_name, span_name, span_kind)
);

COMMENT ON TABLE span_rollups_tiered IS
    'operation_rollups rows of tiered minutes that may still take a late span (0012 header).';

CREATE INDEX span_rollups_tiered_minute_idx ON span_rollups_tiered (minute, project_id);
