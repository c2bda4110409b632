-- 0008: what the query API needs to read the cold tier (storage.keybloom, query.coldtier).
--
-- * cold_objects.object_id names one manifest row for good: a cold log record's id is
--   (time, object_id, row), so an id stays valid while its object lives. A row recorded
--   again (a late record made the tiering job export that project of the partition anew)
--   gets a new object_id (storage.postgres.tiering).
-- * cold_objects.row_groups is how many row groups the object has: the word blooms below
--   hold one segment per row group.
-- * cold_key_blooms answers "which objects, and which row groups of them, may hold this
--   trace id / session id / word?" without opening any object, so GetTrace needs no time
--   range, GetSessionTimeline no session row, and a word searched over a day reads only
--   the row groups whose log bodies may hold it. Each object's distinct keys (kind 1: trace
--   ids of spans and log records; 2: session ids of spans, log records and metric points;
--   3: the words of log bodies) are split into shards by a hash (storage.keybloom SHARDS),
--   as Tempo shards its block blooms; a shard's row holds one bloom filter per segment
--   (the whole object for ids, each row group for words), segment_bits each,
--   concatenated. A lookup reads one shard row per object (a few hundred bytes) instead of
--   a whole filter. A shard with no key has no row.
-- * Rows are written in the transaction that records the object, and deleted with it
--   (ON DELETE CASCADE), so a filter never names an object the manifest does not.
-- * Keys start with project_id (shardable by project, as in 0001).

ALTER TABLE cold_objects ADD COLUMN object_id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE cold_objects ADD COLUMN row_groups integer NOT NULL DEFAULT 0;

COMMENT ON COLUMN cold_objects.object_id IS
    'Names this manifest row (and so this object''s content) for good: part of a cold log '
    'record''s id. A project exported again gets a new one.';
COMMENT ON COLUMN cold_objects.row_groups IS 'Row groups in the object (0: recorded before 0008).';

CREATE UNIQUE INDEX cold_objects_object_idx ON cold_objects (project_id, object_id);

CREATE TABLE cold_key_blooms (
    project_id text NOT NULL,
    kind smallint NOT NULL CHECK (kind IN (1, 2, 3)),
    shard smallint NOT NULL,
    object_id bigint NOT NULL,
    segment_bits integer NOT NULL CHECK (segment_bits > 0 AND segment_bits % 8 = 0),
    hashes smallint NOT NULL CHECK (hashes > 0),
    bits bytea NOT NULL,
    PRIMARY KEY (project_id, kind, shard, object_id),
    FOREIGN KEY (project_id, object_id) REFERENCES cold_objects (project_id, object_id)
        ON DELETE CASCADE
);

COMMENT ON TABLE cold_key_blooms IS
    'Bloom filters of the trace ids (kind 1), session ids (2) and log body words (3) of each '
    'cold object, one shard of the keys per row, one filter per row group (0008 header).';
COMMENT ON COLUMN cold_key_blooms.bits IS
    'row_groups filters of segment_bits bits each, concatenated in row group order.';

CREATE INDEX cold_key_blooms_object_idx ON cold_key_blooms (project_id, object_id);
