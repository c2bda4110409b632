"""Migrations: the schema they build, once, however many replicas start together."""

from __future__ import annotations

import threading

import psycopg
import pytest

from storage import model
from storage.api import StorageUnavailable
from storage.postgres import metric_rollups, writer
from storage.postgres.migrate import MigrationError, load_migrations, migrate

# format_type() spelling of the COPY type names the writer uses.
_SQL_TYPE = {
    "text": "text",
    "timestamptz": "timestamp with time zone",
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float8": "double precision",
    "bool": "boolean",
    "bytea": "bytea",
    "jsonb": "jsonb",
    "int8[]": "bigint[]",
    "float8[]": "double precision[]",
}

_TABLES = {
    "spans": (model.SPAN_COLUMNS, writer.SPAN_TYPES),
    "logs": (model.LOG_COLUMNS, writer.LOG_TYPES),
    "metric_points": (model.POINT_COLUMNS, writer.POINT_TYPES),
    "metric_series": (model.SERIES_COLUMNS, writer.SERIES_TYPES),
    "resources": (model.RESOURCE_COLUMNS, writer.RESOURCE_TYPES),
    "sessions": (model.SESSION_COLUMNS, writer.SESSION_TYPES),
    **{
        table: (
            tuple(name for name, _ in metric_rollups.COLUMNS),
            tuple(t for _, t in metric_rollups.COLUMNS),
        )
        for table in ("metric_rollups_1m", "metric_rollups_1h")
    },
}


def _applied(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
    return [(int(v), str(n)) for v, n in rows]


def test_migrate_is_idempotent(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)
    expected = [(m.version, m.name) for m in load_migrations()]
    assert expected[0] == (1, "0001_init.sql")
    assert _applied(database_url) == expected


# Columns the writer sets itself, after the model's: pruning's times (0010).
_WRITER_COLUMNS = {
    "metric_series": [("last_seen", "timestamptz"), ("touched_at", "timestamptz")],
    "resources": [("last_seen", "timestamptz"), ("touched_at", "timestamptz")],
    "sessions": [("touched_at", "timestamptz")],
}


def test_schema_matches_model_and_copy_types(database_url: str) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        for table, (columns, types) in _TABLES.items():
            rows = conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum",
                (table,),
            ).fetchall()
            extra = _WRITER_COLUMNS.get(table, [])
            assert [name for name, _ in rows] == [*columns, *(c for c, _ in extra)], table
            kinds = [*types, *(t for _, t in extra)]
            assert [sql_type for _, sql_type in rows] == [_SQL_TYPE[t] for t in kinds], table


def test_record_tables_are_partitioned_with_inherited_indexes(database_url: str) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        partitioned = conn.execute(
            "SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_class c "
            "WHERE c.relkind = 'p' ORDER BY 1"
        ).fetchall()
        assert partitioned == [
            ("logs", 'RANGE ("time")'),
            ("metric_points", 'RANGE ("time")'),
            ("metric_rollups_1h", 'RANGE ("time")'),
            ("metric_rollups_1m", 'RANGE ("time")'),
            ("spans", 'RANGE ("time")'),
        ]
        defaults = conn.execute(
            "SELECT count(*) FROM pg_partitioned_table WHERE partdefid <> 0"
        ).fetchone()
        assert defaults == (0,)
        indexes = {
            (str(t), str(d).split(" USING ", 1)[1])
            for t, d in conn.execute(
                "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert indexes == {
        ("spans", "btree (project_id, trace_id)"),
        ("spans", 'btree (project_id, session_id, "time") WHERE (session_id IS NOT NULL)'),
        ("spans", 'btree (project_id, service_name, "time")'),
        ("spans", 'brin (project_id, "time")'),
        ("logs", "btree (project_id, trace_id) WHERE (trace_id IS NOT NULL)"),
        ("logs", 'btree (project_id, session_id, "time") WHERE (session_id IS NOT NULL)'),
        ("logs", 'btree (project_id, service_name, "time")'),
        ("logs", 'brin (project_id, "time")'),
        ("metric_points", 'btree (project_id, series_id, "time")'),
        ("metric_points", 'brin (project_id, "time")'),
        (
            "metric_points",
            'btree (project_id, session_id, "time") '
            "WHERE ((session_id IS NOT NULL) AND (trace_id IS NOT NULL))",
        ),
        ("services", "btree (project_id, service_name)"),
        ("services", "btree (project_id, last_record, service_name)"),
        ("operations", "btree (project_id, service_name, span_name, span_kind)"),
        ("operations", "btree (project_id, last_record, service_name, span_name, span_kind)"),
        ("metric_series", "btree (project_id, series_id)"),
        ("metric_series", "btree (project_id, metric_name)"),
        ("metric_series", "btree (project_id, last_seen, series_id)"),
        ("resources", "btree (project_id, resource_id)"),
        ("resources", "btree (project_id, last_seen, resource_id)"),
        ("sessions", "btree (project_id, session_id)"),
        ("sessions", "btree (session_id, project_id)"),
        ("sessions", "btree (project_id, last_seen, session_id)"),
        ("projects", "btree (project_id)"),
        ("api_tokens", "btree (project_id, token_id)"),
        ("api_tokens", "btree (token_id)"),
        ("audit_log", "btree (project_id, at)"),
        ("usage_daily", "btree (project_id, day, signal)"),
        ("service_rollups", "btree (project_id, minute, service_name)"),
        ("operation_rollups", "btree (project_id, minute, service_name, span_name, span_kind)"),
        ("operation_rollups", "btree (project_id, service_name, minute)"),
        ("span_rollup_dirty", "btree (project_id, minute)"),
        (
            "span_rollups_tiered",
            "btree (project_id, minute, service_name, span_name, span_kind)",
        ),
        ("span_rollups_tiered", "btree (minute, project_id)"),
        ("span_rollup_state", "btree (name)"),
        ("cold_objects", "btree (project_id, signal, key)"),
        ("cold_objects", "btree (project_id, signal, min_time)"),
        ("cold_objects", "btree (partition, project_id)"),
        ("cold_objects", "btree (project_id, object_id)"),
        ("cold_key_blooms", "btree (project_id, kind, shard, object_id)"),
        ("cold_key_blooms", "btree (project_id, object_id)"),
        ("project_retention", "btree (project_id, signal)"),
        ("metric_rollups_1m", 'btree (project_id, series_id, "time", part)'),
        ("metric_rollups_1m", 'btree (project_id, "time")'),
        ("metric_rollups_1h", 'btree (project_id, series_id, "time", part)'),
        ("metric_rollups_1h", 'btree (project_id, "time")'),
        ("metric_rollup_dirty", "btree (project_id, minute)"),
        ("metric_rollup_dirty_hours", "btree (project_id, hour)"),
        ("metric_rollup_state", "btree (name)"),
        ("schema_migrations", "btree (version)"),
        ("alert_channels", "btree (project_id, channel_id)"),
        ("alert_channels", "btree (project_id, name)"),
        ("alert_events", "btree (project_id, at)"),
        ("alert_events", "btree (project_id, event_id)"),
        ("alert_events", "btree (project_id, rule_id, at)"),
        ("alert_incident_timeline", "btree (project_id, incident_id, entry_id)"),
        ("alert_incidents", "btree (project_id, group_key) WHERE (status <> 'resolved'::text)"),
        ("alert_incidents", "btree (project_id, incident_id)"),
        ("alert_incidents", "btree (project_id, opened_at)"),
        ("alert_notification_attempts", "btree (project_id, notification_id, attempt)"),
        (
            "alert_notifications",
            "btree (next_attempt_at, project_id) WHERE (status = 'pending'::text)",
        ),
        ("alert_notifications", "btree (project_id, channel_id, dedup_key)"),
        ("alert_notifications", "btree (project_id, created_at)"),
        ("alert_notifications", "btree (project_id, notification_id)"),
        ("alert_rule_channels", "btree (project_id, channel_id)"),
        ("alert_rule_channels", "btree (project_id, rule_id, channel_id)"),
        ("alert_rule_schedule", "btree (next_eval_at, project_id)"),
        ("alert_rule_schedule", "btree (project_id, rule_id)"),
        ("alert_rules", "btree (project_id, name)"),
        ("alert_rules", "btree (project_id, rule_id)"),
        ("alert_silences", "btree (project_id, ends_at)"),
        ("alert_silences", "btree (project_id, silence_id)"),
        ("alert_state", "btree (project_id, rule_id, fingerprint)"),
        ("alert_state", "btree (project_id, state, active_at) WHERE (state <> 'inactive'::text)"),
    }


def test_every_index_includes_project_id(database_url: str) -> None:
    """Unique or not, on every table (partitions included), but the migrations ledger."""
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        keys = conn.execute(
            "SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text, i.indisunique,"
            " array_agg(a.attname::text) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE n.nspname = 'public' AND c.relname <> 'schema_migrations' "
            "GROUP BY i.indexrelid, i.indrelid, i.indisunique",
        ).fetchall()
    tables = {table for _, table, _, _ in keys}
    assert set(_TABLES) <= tables
    assert {table for _, table, unique, _ in keys if unique} == {
        "metric_series",
        "resources",
        "sessions",
        "services",
        "operations",
        "projects",
        "api_tokens",
        "usage_daily",
        "service_rollups",
        "operation_rollups",
        "span_rollups_tiered",
        "span_rollup_state",
        "cold_objects",
        "cold_key_blooms",
        "project_retention",
        "alert_channels",
        "alert_rules",
        "alert_rule_channels",
        "alert_silences",
        "alert_rule_schedule",
        "alert_state",
        "alert_events",
        "alert_notifications",
        "alert_notification_attempts",
        "alert_incidents",
        "alert_incident_timeline",
        "metric_rollups_1m",
        "metric_rollups_1h",
        "metric_rollup_state",
    }
    assert len([k for k in keys if k[1] == "resources"]) == 2  # its key; pruning's (0010)
    # Tokens are looked up by their id, across projects: api_tokens is a small table,
    # a Citus reference table (replicated whole), where a key need not hold project_id.
    # span_rollup_state and metric_rollup_state hold one row per background job,
    # likewise reference tables.
    reference = {
        "api_tokens_token_id_key",
        "span_rollup_state_pkey",
        "metric_rollup_state_pkey",
    }
    for index, table, _, columns in keys:
        if index not in reference:
            assert "project_id" in columns, f"{index} on {table} lacks project_id: {columns}"


def test_concurrent_migrations_apply_once(database_url: str) -> None:
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            migrate(database_url)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert _applied(database_url) == [(m.version, m.name) for m in load_migrations()]


def test_an_edited_migration_is_refused(database_url: str) -> None:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE schema_migrations SET sha256 = 'edited' WHERE version = 1")
    with pytest.raises(MigrationError, match=r"0001_init\.sql was edited"):
        migrate(database_url)


def test_unreachable_database_is_unavailable() -> None:
    with pytest.raises(StorageUnavailable):
        migrate("postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2")


def test_rows_stored_before_0010_count_as_seen_until_the_newest_partition_ends(
    database_url: str,
) -> None:
    """Pruning must not take a row stored before it existed for unused: such a row gets
    the end of the newest partition as its newest record time; one an older otlpd
    inserts after the migration gets NULL (never pruned)."""
    from storage.postgres.migrate import _apply

    with psycopg.connect(database_url, autocommit=True) as conn:
        _apply(conn, [m for m in load_migrations() if m.version < 10])
        conn.execute(
            "CREATE TABLE logs_ahead PARTITION OF logs "
            "FOR VALUES FROM ('2999-01-01 00:00+00') TO ('2999-01-01 01:00+00')"
        )
        conn.execute(
            "INSERT INTO resources (project_id, resource_id, attributes, first_seen) "
            "VALUES ('p', 1, '{}', now())"
        )
        conn.execute("INSERT INTO operations VALUES ('p', 'api', 'GET /', 2, now(), now())")
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(
            "INSERT INTO resources (project_id, resource_id, attributes, first_seen) "
            "VALUES ('p', 2, '{}', now())"
        )
        found = conn.execute(
            "SELECT resource_id, last_seen::text, touched_at <= now() FROM resources ORDER BY 1"
        ).fetchall()
        (ahead,) = conn.execute("SELECT last_record::text FROM operations").fetchone()  # type: ignore[misc]
    assert found == [(1, "2999-01-01 01:00:00+00", True), (2, None, True)]
    assert ahead == "2999-01-01 01:00:00+00"
