-- 0003: what the query API needs beyond the records: a catalog of services and
-- operations kept as data arrives, and an index for a session's metric exemplars.
--
-- * ListServices and ListOperations read these small tables instead of a DISTINCT over
--   millions of span rows. The writer upserts an entry when it first sees it and then at
--   most every few minutes (last_seen is that coarse), in the transaction of the records.
-- * Keys start with project_id like every other key (shardable by project).

CREATE TABLE services (
    project_id text NOT NULL,
    service_name text NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (project_id, service_name)
);

COMMENT ON TABLE services IS
    'Every service that sent spans, logs or metric points, per project (ListServices).';
COMMENT ON COLUMN services.last_seen IS
    'When a write last mentioned it, to within the writer''s catalog resolution (minutes).';

CREATE TABLE operations (
    project_id text NOT NULL,
    service_name text NOT NULL,
    span_name text NOT NULL,
    span_kind smallint NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (project_id, service_name, span_name, span_kind)
);

COMMENT ON TABLE operations IS
    'Every (service, span name, span kind) seen, per project (ListOperations). Spans of '
    'no service are listed under the empty service name.';

-- GetSessionTimeline's exemplars: only points that carry both a session and an exemplar's
-- trace id are in the index. Points that carry a session on every sample (a client-side
-- meter tagged with session.id) would otherwise pay for it on every COPY: indexing every
-- point that has a session cost PostgreSQL ~2-4 us more CPU per point (docs/benchmarks.md).
CREATE INDEX metric_points_session_time_idx ON metric_points (project_id, session_id, time)
    WHERE session_id IS NOT NULL AND trace_id IS NOT NULL;
