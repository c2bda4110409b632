-- 0007: per-project retention overrides (otlpd projects set-retention), for tiering.
--
-- * One row per project and hot table; a NULL column takes the server's default
--   (OTLPD_HOT_RETENTION_*, OTLPD_COLD_RETENTION_*), so changing a default changes every
--   project that did not choose for itself.
-- * A project whose hot retention is shorter than its partition's neighbours' is exported
--   when its own retention passes; the partition is dropped once every project in it is
--   exported. Until then those rows are in both tiers, and the hot ones are the answer
--   (a manifest row whose partition still exists is not the only copy).

CREATE TABLE project_retention (
    project_id text NOT NULL,
    signal text NOT NULL CHECK (signal IN ('spans', 'logs', 'metric_points')),
    hot_seconds double precision CHECK (hot_seconds > 0 AND hot_seconds < 'Infinity'),
    cold_seconds double precision CHECK (cold_seconds > 0 AND cold_seconds < 'Infinity'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, signal)
);

COMMENT ON TABLE project_retention IS
    'How long a project''s rows of one signal stay hot and cold; NULL: the server''s default.';
