-- 0004: tenants. Projects and their settings, API tokens, the audit log of changes to
-- them, and usage counted per project and day.
--
-- * projects, api_tokens and audit_log are small (rows per operator action, not per
--   record) and read whole by every replica every OTLPD_AUTH_REFRESH: sharded with Citus
--   they would be *reference* tables (copied to every node), so a key without project_id
--   is fine there (api_tokens' unique token_id: tokens are looked up by id alone).
--   Every other key starts with project_id, as in 0001.
-- * Settings left NULL mean "the server's default" (an OTLPD_* variable), so changing
--   the default changes every project that did not choose for itself.
-- * Project ids of projects and api_tokens follow the rules of ingest (at most 128 bytes,
--   no NUL) and more: no '/', '\', '..', '=' or control characters, because a project id
--   becomes an object-store key segment (project={id}) in the cold tier. Projects named
--   by records while auth is off (usage_daily, audit_log) are not held to these rules.

CREATE TABLE projects (
    project_id text PRIMARY KEY
        CHECK (project_id <> '' AND octet_length(project_id) <= 128
               AND project_id !~ '[/\\=[:cntrl:]]' AND strpos(project_id, '..') = 0),
    allowed_origins text[],
    anonymize_ip boolean,
    rate_records double precision CHECK (rate_records >= 0 AND rate_records < 'Infinity'),
    rate_bytes double precision CHECK (rate_bytes >= 0 AND rate_bytes < 'Infinity'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE projects IS
    'A tenant and its own settings; NULL settings take the server''s defaults. A row is '
    'made by "otlpd projects set" or with the project''s first token.';
COMMENT ON COLUMN projects.allowed_origins IS
    'Browser origins allowed to send OTLP/HTTP (CORS); ''*'' allows any. '
    'NULL: OTLPD_CORS_ORIGINS.';
COMMENT ON COLUMN projects.anonymize_ip IS 'NULL: OTLPD_ANONYMIZE_IP.';
COMMENT ON COLUMN projects.rate_records IS
    'Records per second per process (token bucket); 0 unlimited; NULL: OTLPD_RATE_LIMIT_RECORDS.';
COMMENT ON COLUMN projects.rate_bytes IS
    'Request bytes per second per process; 0 unlimited; NULL: OTLPD_RATE_LIMIT_BYTES.';

CREATE TABLE api_tokens (
    project_id text NOT NULL REFERENCES projects (project_id),
    token_id text NOT NULL CHECK (token_id ~ '^[a-z2-7]{12}$'),
    secret_sha256 bytea NOT NULL CHECK (octet_length(secret_sha256) = 32),
    scopes text[] NOT NULL
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['ingest', 'query', 'admin']),
    name text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL,
    revoked_at timestamptz,
    revoked_by text,
    rate_records double precision CHECK (rate_records >= 0 AND rate_records < 'Infinity'),
    rate_bytes double precision CHECK (rate_bytes >= 0 AND rate_bytes < 'Infinity'),
    PRIMARY KEY (project_id, token_id)
);

-- Reference table (see above): the key a token is looked up by, without its project.
CREATE UNIQUE INDEX api_tokens_token_id_key ON api_tokens (token_id);

COMMENT ON TABLE api_tokens IS
    'Bearer tokens otlpd_<token_id>_<secret>. Only sha256(secret) is kept: the secret is '
    '256 random bits, which no hash speed makes guessable. Revoked rows are kept: they are '
    'the history, and their existence keeps OTLPD_AUTH=auto requiring tokens.';
COMMENT ON COLUMN api_tokens.scopes IS 'ingest, query and/or admin (admin implies the others).';
COMMENT ON COLUMN api_tokens.rate_records IS
    'This token''s own limit, besides its project''s; NULL: none.';

CREATE TABLE audit_log (
    entry_id bigint GENERATED ALWAYS AS IDENTITY,
    project_id text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    subject text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_project_at_idx ON audit_log (project_id, at);

COMMENT ON TABLE audit_log IS
    'Every change to projects and tokens, written in the transaction of the change. '
    'entry_id orders the entries of one transaction, which share their at.';
COMMENT ON COLUMN audit_log.action IS 'token.create, token.revoke, project.create, project.set.';
COMMENT ON COLUMN audit_log.subject IS 'The token id or project id acted on.';
COMMENT ON COLUMN audit_log.details IS 'What changed: for project.set, each column before and after.';

CREATE TABLE usage_daily (
    project_id text NOT NULL,
    day date NOT NULL,
    signal text NOT NULL,
    records bigint NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (project_id, day, signal)
);

COMMENT ON TABLE usage_daily IS
    'Committed records and their request bytes per project, UTC day and signal; every '
    'replica adds its counts (INSERT ... ON CONFLICT DO UPDATE) every OTLPD_USAGE_FLUSH. '
    'project_id '''' holds counts a replica could not attribute (more projects than it '
    'keeps counters for while PostgreSQL was unreachable).';
