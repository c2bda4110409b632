-- 0002: OTLP fields the first schema dropped, and project_id in every index.
--
-- * The scope's dropped_attributes_count, for spans and logs; for metric series the
--   resource's schema_url and dropped count and the scope's attributes, schema_url and
--   dropped count (spans and logs keep the resource's in resources, by resource_id).
--   New columns are appended: storage/model.py lists them in the same order.
-- * Every index includes project_id, unique or not, so the hot tier can be sharded by
--   project (Citus distributes on project_id) and a query of one project never walks
--   another's entries. BRIN summarizes block ranges per column, so the extra column
--   costs a few bytes per range.

ALTER TABLE spans ADD COLUMN scope_dropped_attributes_count integer;
ALTER TABLE logs ADD COLUMN scope_dropped_attributes_count integer;
ALTER TABLE metric_series
    ADD COLUMN resource_schema_url text,
    ADD COLUMN resource_dropped_attributes_count integer,
    ADD COLUMN scope_attributes jsonb,
    ADD COLUMN scope_schema_url text,
    ADD COLUMN scope_dropped_attributes_count integer;

COMMENT ON COLUMN metric_points.flags IS
    'OTLP DataPointFlags. Bit 1 (FLAG_NO_RECORDED_VALUE) marks a staleness marker: its '
    'value columns (value through quantiles) are all null, never zero.';
COMMENT ON COLUMN metric_series.scope_attributes IS
    'Scope attributes, schema URLs: part of the series identity when present (storage/ids.py).';

-- The same text as 0001 now has (0001 was amended to cite storage/ids.py).
COMMENT ON COLUMN resources.resource_id IS
    '63-bit hash of attributes, schema_url and dropped_attributes_count, computed by the '
    'decoder (see storage/ids.py), so every replica derives the same id without '
    'a round trip. It does not depend on the project: a resource whose records belong to '
    'several projects has one row per project, with the same id.';

DROP INDEX sessions_session_id_idx;
-- Records that carry only session.id are completed by looking the id up without a
-- project; project_id follows so that the index is a key of the sharded schema too.
CREATE INDEX sessions_session_id_idx ON sessions (session_id, project_id);

DROP INDEX spans_time_brin;
CREATE INDEX spans_time_brin ON spans USING brin (project_id, time);
DROP INDEX logs_time_brin;
CREATE INDEX logs_time_brin ON logs USING brin (project_id, time);
DROP INDEX metric_points_time_brin;
CREATE INDEX metric_points_time_brin ON metric_points USING brin (project_id, time);
