"""storage.postgres.tenants: tokens, projects and the audit log in PostgreSQL, and the
snapshot every replica serves from."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from otlpd import tokens
from otlpd.access import Scope
from otlpd.receiver.decode.limits import MAX_PROJECT_BYTES
from storage.api import StorageDataError, StorageUnavailable
from storage.postgres import tenants
from storage.postgres.migrate import migrate


@pytest.fixture
def db(database_url: str) -> str:
    migrate(database_url)
    return database_url


def _rows(db: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(query).fetchall()


def test_the_rules_are_those_of_ingest_and_access() -> None:
    assert tenants.MAX_PROJECT_BYTES == MAX_PROJECT_BYTES
    assert set(tenants.SCOPES) == {scope.value for scope in Scope}


async def test_create_list_revoke_round_trip_with_audit_rows(db: str) -> None:
    token_id, text = tenants.create_token(
        db, "acme", ["query", "ingest", "query"], name="ci", actor="alice", rate=(50, None)
    )
    parsed = tokens.parse(text)
    assert parsed is not None and parsed[0] == token_id
    # Only the digest is stored.
    ((digest, scopes),) = _rows(db, "SELECT secret_sha256, scopes FROM api_tokens")
    assert digest == hashlib.sha256(parsed[1].encode()).digest()
    assert scopes == ["ingest", "query"]
    assert parsed[1] not in str(_rows(db, "SELECT * FROM api_tokens"))

    (listed,) = tenants.list_tokens(db)
    assert (listed.token_id, listed.project_id, listed.scopes, listed.name) == (
        token_id,
        "acme",
        ("ingest", "query"),
        "ci",
    )
    assert (listed.created_by, listed.revoked_at, listed.rate_records) == ("alice", None, 50.0)
    assert tenants.list_tokens(db, "other") == []

    async with await psycopg.AsyncConnection.connect(db) as conn:
        snapshot = await tenants.load_snapshot(conn)  # a connection, or a pool
    assert set(snapshot.tokens) == {token_id}
    entry = snapshot.tokens[token_id]
    assert tokens.verify(parsed[1], entry.secret_sha256)
    assert (entry.project_id, entry.scopes, entry.rate_records, entry.rate_bytes) == (
        "acme",
        frozenset({"ingest", "query"}),
        50.0,
        None,
    )
    assert set(snapshot.projects) == {"acme"}  # made with its first token
    assert snapshot.tokens_ever_created

    assert tenants.revoke_token(db, token_id, actor="bob")
    assert tenants.revoke_token(db, token_id, actor="bob")  # again: no change, still known
    assert not tenants.revoke_token(db, "aaaaaaaaaaaa", actor="bob")
    assert not tenants.revoke_token(db, "not a token id", actor="bob")
    (listed,) = tenants.list_tokens(db, "acme")
    assert listed.revoked_at is not None and listed.revoked_by == "bob"

    async with tenants.PostgresTenants(db) as source:
        snapshot = await source.load()
    assert snapshot.tokens == {}
    assert snapshot.tokens_ever_created  # revoked tokens keep auto mode required

    entries = tenants.audit_entries(db)
    assert [(e.action, e.actor, e.subject, e.project_id) for e in entries] == [
        ("token.revoke", "bob", token_id, "acme"),
        ("token.create", "alice", token_id, "acme"),
        ("project.create", "alice", "acme", "acme"),
    ]
    assert entries[1].details == {
        "scopes": ["ingest", "query"],
        "name": "ci",
        "rate_records": 50.0,
        "rate_bytes": None,
    }
    assert [e.action for e in tenants.audit_entries(db, "acme", limit=1)] == ["token.revoke"]
    assert tenants.audit_entries(db, "other") == []


async def test_an_empty_database_has_no_tokens_ever(db: str) -> None:
    async with tenants.PostgresTenants(db) as source:
        snapshot = await source.load()
    assert (snapshot.tokens, snapshot.projects, snapshot.tokens_ever_created) == ({}, {}, False)


def test_set_project_changes_only_what_is_given_and_default_restores_null(db: str) -> None:
    row = tenants.set_project(db, "web", actor="alice")
    assert (row.allowed_origins, row.anonymize_ip, row.rate_records, row.rate_bytes) == (
        None,
        None,
        None,
        None,
    )
    row = tenants.set_project(
        db,
        "web",
        origins=["https://App.example/", "https://app.example", "http://localhost:3000"],
        rate_records=100,
        actor="alice",
    )
    assert row.allowed_origins == ("https://app.example", "http://localhost:3000")
    assert (row.anonymize_ip, row.rate_records, row.rate_bytes) == (None, 100.0, None)
    row = tenants.set_project(db, "web", anonymize_ip=False, rate_bytes=0, actor="bob")
    assert row.allowed_origins == ("https://app.example", "http://localhost:3000")
    assert (row.anonymize_ip, row.rate_records, row.rate_bytes) == (False, 100.0, 0.0)
    row = tenants.set_project(db, "web", origins=None, rate_records=None, actor="carol")
    assert (row.allowed_origins, row.anonymize_ip, row.rate_records) == (None, False, None)
    assert tenants.set_project(db, "web", origins=[], actor="carol").allowed_origins == ()

    (listed,) = tenants.get_projects(db)
    assert (listed.project_id, listed.allowed_origins, listed.active_tokens) == ("web", (), 0)
    actions = [(e.action, e.actor) for e in tenants.audit_entries(db, "web")]
    assert actions == [
        ("project.set", "carol"),
        ("project.set", "carol"),
        ("project.set", "bob"),
        ("project.set", "alice"),
        ("project.create", "alice"),
    ]
    restore = tenants.audit_entries(db, "web")[1].details
    assert restore == {
        "before": {
            "allowed_origins": ["https://app.example", "http://localhost:3000"],
            "rate_records": 100.0,
        },
        "after": {"allowed_origins": None, "rate_records": None},
    }


def test_set_project_answers_with_its_active_tokens(db: str) -> None:
    assert tenants.set_project(db, "web", actor="alice").active_tokens == 0
    token_id, _ = tenants.create_token(db, "web", ["ingest"], actor="alice")
    tenants.create_token(db, "web", ["query"], actor="alice")
    tenants.create_token(db, "other", ["ingest"], actor="alice")
    assert tenants.set_project(db, "web", rate_records=5, actor="alice").active_tokens == 2
    tenants.revoke_token(db, token_id, actor="alice")
    assert tenants.set_project(db, "web", actor="alice").active_tokens == 1


@pytest.mark.parametrize(
    "project",
    [
        "",
        "a/b",
        "a\\b",
        "project=x",
        "a..b",
        "..",
        "tab\there",
        "nul\x00",
        "bell\x07",
        "c1\x85",
        "x" * (MAX_PROJECT_BYTES + 1),
        "é" * 65,
        "\udc80",
    ],
)
def test_bad_project_ids_are_refused_before_any_sql(project: str) -> None:
    # No database at that address: the check comes first.
    nowhere = "postgresql://postgres@127.0.0.1:1/nowhere"
    with pytest.raises(tenants.InvalidArgument):
        tenants.create_token(nowhere, project, ["ingest"], actor="alice")
    with pytest.raises(tenants.InvalidArgument):
        tenants.set_project(nowhere, project, actor="alice")


def test_good_project_ids_pass() -> None:
    for project in ("acme", "a.b", "Team One", "é" * 64, "x" * MAX_PROJECT_BYTES, "a-b_c:1"):
        assert tenants.check_project(project) == project


def test_other_bad_arguments_change_nothing(db: str) -> None:
    nothing: list[tuple[object, ...]] = []
    for bad in (
        lambda: tenants.create_token(db, "acme", [], actor="a"),
        lambda: tenants.create_token(db, "acme", ["write"], actor="a"),
        lambda: tenants.create_token(db, "acme", ["ingest"], actor=""),
        lambda: tenants.create_token(db, "acme", ["ingest"], actor="a", rate=(-1, None)),
        lambda: tenants.create_token(db, "acme", ["ingest"], actor="a", rate=(None, float("nan"))),
        lambda: tenants.set_project(db, "acme", origins=["https://a.example/path"], actor="a"),
        lambda: tenants.set_project(db, "acme", origins=["a.example"], actor="a"),
        lambda: tenants.set_project(db, "acme", rate_bytes=float("inf"), actor="a"),
        lambda: tenants.audit_entries(db, limit=0),
    ):
        with pytest.raises(tenants.InvalidArgument):
            bad()
    assert _rows(db, "SELECT * FROM projects") == nothing
    assert _rows(db, "SELECT * FROM audit_log") == nothing


def test_the_schema_holds_the_same_rules_for_other_writers(db: str) -> None:
    for project in ("a/b", "a=b", "a..b", "", "x" * 129, "tab\t"):
        with pytest.raises(psycopg.errors.CheckViolation):
            _rows(db, f"INSERT INTO projects (project_id) VALUES ('{project}') RETURNING 1")
    _rows(db, "INSERT INTO projects (project_id) VALUES ('p') RETURNING 1")
    with pytest.raises(psycopg.errors.CheckViolation):
        _rows(
            db,
            "INSERT INTO api_tokens (project_id, token_id, secret_sha256, scopes, created_by)"
            " VALUES ('p', 'aaaaaaaaaaaa', sha256(''), ARRAY['write'], 'x') RETURNING 1",
        )


def test_a_failed_change_leaves_no_audit_row(db: str) -> None:
    """The change and its audit row are one transaction: a token for a project whose row
    cannot be made (a rule of the schema only) records nothing either."""
    with psycopg.connect(db) as conn:
        conn.execute(
            "ALTER TABLE api_tokens ADD CONSTRAINT no_ci CHECK (name <> 'ci')"  # a later rule
        )
    with pytest.raises(StorageDataError):
        tenants.create_token(db, "acme", ["ingest"], name="ci", actor="alice")
    assert _rows(db, "SELECT * FROM audit_log") == []
    assert _rows(db, "SELECT * FROM projects") == []


async def test_unreachable_database_is_unavailable() -> None:
    nowhere = "postgresql://postgres@127.0.0.1:1/nowhere"
    source = tenants.PostgresTenants(nowhere, timeout=0.5)
    await source.open()
    try:
        with pytest.raises(StorageUnavailable):
            await source.load()
    finally:
        await source.close()
    with pytest.raises(StorageUnavailable):
        tenants.list_tokens(nowhere)
