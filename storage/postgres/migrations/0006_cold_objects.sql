-- 0006: the cold tier's manifest. One row per Parquet object a hot partition was
-- exported to (storage.postgres.tiering): what it holds, where, and how to check it.
--
-- * A row is written only after the object was uploaded and its footer read back and
--   checked; the partition is dropped only after every project's rows in it are in the
--   manifest, with the same counts, under a lock that stops new writes to it. So a crash
--   at any step leaves either the rows hot (and maybe an object the manifest does not
--   name yet, which the next pass overwrites under the same key) or the rows cold.
-- * A record accepted after its partition was tiered lands in the partition made again
--   (the writer makes missing ones); that generation has another table oid and goes to
--   object {n} + 1 of the same partition name.
-- * Keys start with project_id (shardable by project, as in 0001).

CREATE TABLE cold_objects (
    project_id text NOT NULL,
    signal text NOT NULL,
    key text NOT NULL,
    partition text NOT NULL,
    partition_oid oid NOT NULL,
    min_time timestamptz NOT NULL,
    max_time timestamptz NOT NULL,
    rows bigint NOT NULL,
    bytes bigint NOT NULL,
    sha256 text NOT NULL,
    schema_version integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, signal, key)
);

COMMENT ON TABLE cold_objects IS
    'The manifest of the cold tier: one row per Parquet object (docs/storage.md).';
COMMENT ON COLUMN cold_objects.key IS
    'Relative to OTLPD_COLD_URL: {signal}/project={id}/date={YYYY-MM-DD}/hour={HH}/{partition}-{n}.parquet';
COMMENT ON COLUMN cold_objects.partition IS 'The hot partition (table) the rows came from.';
COMMENT ON COLUMN cold_objects.partition_oid IS
    'That table''s oid: a partition made again after its drop (a late record) is another '
    'generation, exported as the next {n} of the same name.';
COMMENT ON COLUMN cold_objects.min_time IS 'Smallest value of the rows'' time column (inclusive).';
COMMENT ON COLUMN cold_objects.max_time IS 'Largest value of the rows'' time column (inclusive).';
COMMENT ON COLUMN cold_objects.sha256 IS 'Hex SHA-256 of the object''s bytes, as written.';

CREATE INDEX cold_objects_time_idx ON cold_objects (project_id, signal, min_time);
CREATE INDEX cold_objects_partition_idx ON cold_objects (partition, project_id);
