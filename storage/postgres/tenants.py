"""Projects, API tokens and the audit log in PostgreSQL: the snapshot every replica serves
from, and the changes the admin CLI makes.

The server never reads a token from PostgreSQL per request: it reloads the whole of
``api_tokens`` (active rows) and ``projects`` every ``OTLPD_AUTH_REFRESH``
(``load_snapshot``, through ``PostgresTenants``) and checks tokens against that in
memory (``otlpd.access``). The tables are small, so a full reload is cheaper and simpler
than tracking changes, and it makes a revocation reach every replica within one refresh.

The admin functions are synchronous (the CLI has no event loop) and each is one
transaction that also writes its ``audit_log`` row: a change is never made without its
record, nor recorded without being made. They check their arguments before any SQL and
raise ``InvalidArgument`` (the CLI's exit status 2); the schema checks the same rules
again for anything that writes these tables by other means.

Tokens are minted here, in the transaction that stores their digest (``otlpd.tokens``, a
standard-library module, defines the format), so that the text handed back is always
that of a stored token.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Final, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from otlpd import tokens
from otlpd.envelope import FORBIDDEN_IN_PROJECT
from storage.postgres.connect import PooledStore, async_pool, connection_kwargs
from storage.postgres.errors import translate

# The ingest limit (otlpd.receiver.decode.limits.MAX_PROJECT_BYTES; the store does not
# import the decoder, tests/storage/test_tenants.py holds the two equal).
MAX_PROJECT_BYTES: Final = 128
SCOPES: Final = ("ingest", "query", "admin")  # otlpd.access.Scope, in display order
MAX_NAME_CHARS: Final = 200
MAX_ACTOR_CHARS: Final = 200
# A browser's Origin header: scheme "://" host [":" port], nothing after (RFC 6454).
_ORIGIN: Final = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s@]+")
_CONNECT_TIMEOUT: Final = 10.0


class InvalidArgument(ValueError):
    """An admin argument that breaks a rule (a project id, scope, origin, rate). Nothing
    was changed; the message says which rule."""


class _Unchanged(Enum):
    UNCHANGED = "unchanged"


UNCHANGED: Final = _Unchanged.UNCHANGED
"""``set_project``'s default for a field it must leave as it is (None restores NULL)."""


# ---- what is read --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """An active token as the server needs it to check a request."""

    token_id: str
    project_id: str
    scopes: frozenset[str]
    secret_sha256: bytes = field(repr=False)
    rate_records: float | None
    rate_bytes: float | None


@dataclass(frozen=True, slots=True)
class ProjectRow:
    """A row of ``projects``; None fields take the server's defaults."""

    project_id: str
    allowed_origins: tuple[str, ...] | None = None
    anonymize_ip: bool | None = None
    rate_records: float | None = None
    rate_bytes: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    active_tokens: int = 0  # filled by get_projects only


@dataclass(frozen=True, slots=True)
class TenantSnapshot:
    """Everything ``otlpd.access.Access`` serves from, as of one load.

    ``tokens_ever_created`` counts revoked tokens too: once an operator has made a token,
    ``OTLPD_AUTH=auto`` keeps requiring one even after the last is revoked. Revoking every
    token must lock clients out, not silently open the server to anyone.
    """

    tokens: Mapping[str, TokenEntry]  # active tokens by token_id
    projects: Mapping[str, ProjectRow]
    tokens_ever_created: bool


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as ``otlpd tokens list`` shows it: everything but its digest."""

    token_id: str
    project_id: str
    scopes: tuple[str, ...]
    name: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None
    rate_records: float | None
    rate_bytes: float | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of ``audit_log``."""

    project_id: str
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


# ---- the snapshot --------------------------------------------------------------------

_ACTIVE_TOKENS: Final = """
SELECT token_id, project_id, scopes, secret_sha256, rate_records, rate_bytes
FROM api_tokens WHERE revoked_at IS NULL
"""
_PROJECT_COLUMNS: Final = (
    "project_id, allowed_origins, anonymize_ip, rate_records, rate_bytes, created_at, updated_at"
)
_PROJECTS: Final = f"SELECT {_PROJECT_COLUMNS} FROM projects"
# A project's columns and its count of active tokens, what ``otlpd projects`` shows.
_PROJECTS_WITH_TOKENS: Final = (
    f"SELECT {_PROJECT_COLUMNS}, (SELECT count(*) FROM api_tokens t"
    " WHERE t.project_id = p.project_id AND t.revoked_at IS NULL) FROM projects p"
)
_ANY_TOKEN: Final = "SELECT EXISTS (SELECT 1 FROM api_tokens)"

AsyncSource = psycopg.AsyncConnection[TupleRow] | AsyncConnectionPool[Any]


async def load_snapshot(source: AsyncSource) -> TenantSnapshot:
    """Reads every active token and every project (raises ``StorageError``)."""
    try:
        if isinstance(source, AsyncConnectionPool):
            async with source.connection() as conn:
                return await _load(conn)
        return await _load(source)
    except psycopg.Error as exc:
        raise translate(exc) from exc


async def _load(conn: psycopg.AsyncConnection[Any]) -> TenantSnapshot:
    async with conn.transaction():
        token_rows = await (await conn.execute(_ACTIVE_TOKENS)).fetchall()
        project_rows = await (await conn.execute(_PROJECTS)).fetchall()
        ever = await (await conn.execute(_ANY_TOKEN)).fetchone()
    active = {
        token_id: TokenEntry(token_id, project, frozenset(scopes), bytes(digest), records, nbytes)
        for token_id, project, scopes, digest, records, nbytes in token_rows
    }
    projects = {row[0]: _project(row) for row in project_rows}
    return TenantSnapshot(active, projects, bool(ever and ever[0]))


def _project(row: Sequence[Any], active_tokens: int = 0) -> ProjectRow:
    project, origins, anonymize, records, nbytes, created, updated = row[:7]
    return ProjectRow(
        project,
        None if origins is None else tuple(origins),
        anonymize,
        records,
        nbytes,
        created,
        updated,
        active_tokens,
    )


class PostgresTenants(PooledStore):
    """``otlpd.access.TenantSource`` over ``api_tokens`` and ``projects``.

    One connection of its own (a reload a second needs no more), with a statement time
    limit: a reload that cannot finish fails within seconds, and ``Access`` decides what a
    snapshot that is getting old means. ``open`` before ``load``, ``close`` after.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        timeout: float = 3.0,
        connect_timeout: float = 3.0,
        reconnect_timeout: float = 20.0,
    ) -> None:
        self._pool = async_pool(
            conninfo,
            "otlpd-tenants",
            min_size=1,
            max_size=1,
            timeout=timeout,
            connect_timeout=connect_timeout,
            reconnect_timeout=reconnect_timeout,
            autocommit=True,
            options=f"-c statement_timeout={round(timeout * 1000)}",
        )

    async def load(self) -> TenantSnapshot:
        """The current snapshot; raises ``StorageUnavailable`` when PostgreSQL is down."""
        return await load_snapshot(self._pool)


# ---- rules for what the CLI passes ---------------------------------------------------


def check_project(project: object) -> str:
    """``project`` if it is a valid project id, else ``InvalidArgument`` saying why.

    The ingest rules (at most ``MAX_PROJECT_BYTES`` of UTF-8, no NUL) and those of an
    object-store key segment ``project={id}``: no ``/``, ``\\``, ``=``, ``..`` or control
    characters.
    """
    if not isinstance(project, str) or not project:
        raise InvalidArgument("a project id must be a non-empty string")
    try:
        size = len(project.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(f"project id {project!r} is not valid UTF-8") from None
    if size > MAX_PROJECT_BYTES:
        raise InvalidArgument(f"a project id is at most {MAX_PROJECT_BYTES} bytes, got {size}")
    bad = sorted({c for c in project if c in FORBIDDEN_IN_PROJECT})
    if bad:
        raise InvalidArgument(f"project id {project!r} contains {' '.join(bad)}")
    if any(unicodedata.category(c) == "Cc" for c in project):
        raise InvalidArgument(f"project id {project!r} contains a control character")
    if ".." in project:
        raise InvalidArgument(f"project id {project!r} contains '..'")
    return project


def check_scopes(scopes: Collection[str]) -> tuple[str, ...]:
    """The scopes, deduplicated, in ``SCOPES`` order; at least one, each known."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InvalidArgument(f"unknown scope {', '.join(unknown)}: expected {', '.join(SCOPES)}")
    if not scopes:
        raise InvalidArgument(f"a token needs at least one scope ({', '.join(SCOPES)})")
    return tuple(scope for scope in SCOPES if scope in scopes)


def check_rate(value: float | None, what: str) -> float | None:
    """None, or a finite rate >= 0 (0: unlimited)."""
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"{what} must be a number >= 0 (0: unlimited), got {value!r}")
    return float(value)


def check_origins(origins: Collection[str]) -> tuple[str, ...]:
    """Origins as browsers send them (``https://app.example:8443``), lowercased; ``*``
    allows any. An empty collection allows none."""
    found: list[str] = []
    for origin in origins:
        value = origin.strip().lower().rstrip("/")
        if value != "*" and not _ORIGIN.fullmatch(value):
            raise InvalidArgument(
                f"{origin!r} is not an origin: expected scheme://host[:port] or *"
            )
        if value not in found:
            found.append(value)
    return tuple(found)


def _check_text(value: str, what: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty):
        raise InvalidArgument(f"{what} must be a non-empty string")
    if len(value) > limit or "\x00" in value:
        raise InvalidArgument(f"{what} must be at most {limit} characters, without NUL")
    return value


# ---- changes ---------------------------------------------------------------------------

_ADD_PROJECT: Final = (
    "INSERT INTO projects (project_id) VALUES (%s) ON CONFLICT DO NOTHING RETURNING project_id"
)
_AUDIT: Final = (
    "INSERT INTO audit_log (project_id, actor, action, subject, details)"
    " VALUES (%s, %s, %s, %s, %s)"
)
_ADD_TOKEN: Final = """
INSERT INTO api_tokens (project_id, token_id, secret_sha256, scopes, name, created_by,
                        rate_records, rate_bytes)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
"""
_REVOKE: Final = """
UPDATE api_tokens SET revoked_at = now(), revoked_by = %s
WHERE token_id = %s AND revoked_at IS NULL
RETURNING project_id
"""


def _connect(conninfo: str) -> psycopg.Connection[TupleRow]:
    return psycopg.connect(
        conninfo, autocommit=True, **connection_kwargs("otlpd-admin", _CONNECT_TIMEOUT)
    )


def tokens_ever_created(conninfo: str) -> bool:
    """Whether any token was ever made (revoked ones count): ``auto`` auth is on then."""
    try:
        with _connect(conninfo) as conn:
            row = conn.execute(_ANY_TOKEN).fetchone()
    except psycopg.Error as exc:
        raise translate(exc) from exc
    return bool(row and row[0])


def _audit(
    conn: psycopg.Connection[TupleRow],
    project: str,
    actor: str,
    action: str,
    subject: str,
    *,
    details: Mapping[str, Any],
) -> None:
    conn.execute(_AUDIT, (project, actor, action, subject, Jsonb(dict(details))))


def _ensure_project(conn: psycopg.Connection[TupleRow], project: str, actor: str) -> None:
    if conn.execute(_ADD_PROJECT, (project,)).fetchone() is not None:
        _audit(conn, project, actor, "project.create", project, details={})


def create_token(
    conninfo: str,
    project: str,
    scopes: Collection[str],
    *,
    name: str = "",
    actor: str = "otlpd",
    rate: tuple[float | None, float | None] = (None, None),
) -> tuple[str, str]:
    """Makes a token for ``project`` (and the project, if new): ``(token_id, text)``.

    ``rate`` is the token's own ``(records/s, bytes/s)`` limit, None for none. The text
    is not kept anywhere: it cannot be shown again.
    """
    project = check_project(project)
    chosen = check_scopes(scopes)
    name = _check_text(name, "a token name", MAX_NAME_CHARS, empty=True)
    actor = _check_text(actor, "an actor", MAX_ACTOR_CHARS)
    records, nbytes = check_rate(rate[0], "rate_records"), check_rate(rate[1], "rate_bytes")
    details = {"scopes": list(chosen), "name": name, "rate_records": records, "rate_bytes": nbytes}
    try:
        with _connect(conninfo) as conn:
            for attempt in range(3):
                minted = tokens.mint()
                try:
                    with conn.transaction():
                        _ensure_project(conn, project, actor)
                        conn.execute(
                            _ADD_TOKEN,
                            (
                                project,
                                minted.token_id,
                                minted.digest,
                                list(chosen),
                                name,
                                actor,
                                records,
                                nbytes,
                            ),
                        )
                        _audit(
                            conn, project, actor, "token.create", minted.token_id, details=details
                        )
                except psycopg.errors.UniqueViolation:
                    # Two tokens drew the same 60-bit id: draw again (never seen in practice).
                    if attempt == 2:
                        raise
                    continue
                return minted.token_id, minted.text
    except psycopg.Error as exc:
        raise translate(exc) from exc
    raise AssertionError("unreachable")


def revoke_token(conninfo: str, token_id: str, actor: str = "otlpd") -> bool:
    """Revokes ``token_id``; False when no such token exists. Revoking a revoked token
    changes nothing (and records nothing) but is True."""
    actor = _check_text(actor, "an actor", MAX_ACTOR_CHARS)
    if not tokens.is_token_id(token_id):
        return False
    try:
        with _connect(conninfo) as conn, conn.transaction():
            row = conn.execute(_REVOKE, (actor, token_id)).fetchone()
            if row is not None:
                _audit(conn, row[0], actor, "token.revoke", token_id, details={})
                return True
            found = conn.execute("SELECT 1 FROM api_tokens WHERE token_id = %s", (token_id,))
            return found.fetchone() is not None
    except psycopg.Error as exc:
        raise translate(exc) from exc


_SETTABLE: Final = ("allowed_origins", "anonymize_ip", "rate_records", "rate_bytes")


def set_project(
    conninfo: str,
    project: str,
    *,
    origins: Collection[str] | _Unchanged | None = UNCHANGED,
    anonymize_ip: bool | _Unchanged | None = UNCHANGED,
    rate_records: float | _Unchanged | None = UNCHANGED,
    rate_bytes: float | _Unchanged | None = UNCHANGED,
    actor: str = "otlpd",
) -> ProjectRow:
    """Creates ``project`` if new and changes only the fields given; None restores the
    server's default (NULL). Returns the row as it now is."""
    project = check_project(project)
    actor = _check_text(actor, "an actor", MAX_ACTOR_CHARS)
    changes: dict[str, Any] = {}
    if origins is not UNCHANGED:
        changes["allowed_origins"] = None if origins is None else list(check_origins(origins))
    if anonymize_ip is not UNCHANGED:
        if anonymize_ip is not None and not isinstance(anonymize_ip, bool):
            raise InvalidArgument(f"anonymize_ip must be true, false or None, got {anonymize_ip!r}")
        changes["anonymize_ip"] = anonymize_ip
    if rate_records is not UNCHANGED:
        changes["rate_records"] = check_rate(rate_records, "rate_records")
    if rate_bytes is not UNCHANGED:
        changes["rate_bytes"] = check_rate(rate_bytes, "rate_bytes")
    try:
        with _connect(conninfo) as conn, conn.transaction():
            _ensure_project(conn, project, actor)
            before = conn.execute(
                f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE project_id = %s FOR UPDATE",
                (project,),
            ).fetchone()
            assert before is not None
            if changes:
                assignments = sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder())
                    for name in changes
                )
                conn.execute(
                    sql.SQL(
                        "UPDATE projects SET {}, updated_at = now() WHERE project_id = {}"
                    ).format(assignments, sql.Placeholder()),
                    (*changes.values(), project),
                )
                old = dict(zip(_SETTABLE, before[1:5], strict=True))
                details = {
                    "before": {name: old[name] for name in changes},
                    "after": changes,
                }
                _audit(conn, project, actor, "project.set", project, details=details)
            row = conn.execute(
                _PROJECTS_WITH_TOKENS + " WHERE p.project_id = %s", (project,)
            ).fetchone()
    except psycopg.Error as exc:
        raise translate(exc) from exc
    assert row is not None
    return _project(row, row[7])


# ---- listings --------------------------------------------------------------------------

_TOKEN_COLUMNS: Final = (
    "token_id, project_id, scopes, name, created_at, created_by, revoked_at, revoked_by,"
    " rate_records, rate_bytes"
)


def _fetch(conninfo: str, query: LiteralString, params: Mapping[str, Any]) -> list[TupleRow]:
    try:
        with _connect(conninfo) as conn:
            return conn.execute(query, params).fetchall()
    except psycopg.Error as exc:
        raise translate(exc) from exc


def list_tokens(conninfo: str, project: str | None = None) -> list[TokenInfo]:
    """Every token (revoked ones too), of one project or all, oldest first."""
    rows = _fetch(
        conninfo,
        f"SELECT {_TOKEN_COLUMNS} FROM api_tokens"
        " WHERE %(project)s::text IS NULL OR project_id = %(project)s"
        " ORDER BY project_id, created_at, token_id",
        {"project": project},
    )
    return [
        TokenInfo(
            token_id,
            project_id,
            tuple(s for s in SCOPES if s in scopes) + tuple(s for s in scopes if s not in SCOPES),
            name,
            created_at,
            created_by,
            revoked_at,
            revoked_by,
            records,
            nbytes,
        )
        for (
            token_id,
            project_id,
            scopes,
            name,
            created_at,
            created_by,
            revoked_at,
            revoked_by,
            records,
            nbytes,
        ) in rows
    ]


def get_projects(conninfo: str, project: str | None = None) -> list[ProjectRow]:
    """Every project (or one), with its count of active tokens, by id."""
    rows = _fetch(
        conninfo,
        _PROJECTS_WITH_TOKENS + " WHERE %(project)s::text IS NULL OR p.project_id = %(project)s"
        " ORDER BY p.project_id",
        {"project": project},
    )
    return [_project(row, row[7]) for row in rows]


def audit_entries(conninfo: str, project: str | None = None, limit: int = 50) -> list[AuditEntry]:
    """The newest ``limit`` entries (of one project or all), newest first."""
    if limit <= 0:
        raise InvalidArgument(f"limit must be > 0, got {limit}")
    rows = _fetch(
        conninfo,
        "SELECT project_id, at, actor, action, subject, details FROM audit_log"
        " WHERE %(project)s::text IS NULL OR project_id = %(project)s"
        " ORDER BY at DESC, entry_id DESC LIMIT %(limit)s",
        {"project": project, "limit": limit},
    )
    return [AuditEntry(*row) for row in rows]


RETENTION_SIGNALS: Final = ("spans", "logs", "metric_points")


@dataclass(frozen=True, slots=True)
class RetentionRow:
    """A row of ``project_retention``: seconds, None for the server's default."""

    project_id: str
    signal: str
    hot_seconds: float | None
    cold_seconds: float | None


def set_retention(
    conninfo: str,
    project: str,
    signal: str,
    *,
    hot_seconds: float | _Unchanged | None = UNCHANGED,
    cold_seconds: float | _Unchanged | None = UNCHANGED,
    actor: str = "otlpd",
) -> RetentionRow:
    """Sets ``project``'s retention of ``signal`` (a hot table); None restores the
    default. Audited like every project change."""
    project = check_project(project)
    actor = _check_text(actor, "an actor", MAX_ACTOR_CHARS)
    if signal not in RETENTION_SIGNALS:
        raise InvalidArgument(
            f"signal must be one of {', '.join(RETENTION_SIGNALS)}, got {signal!r}"
        )
    changes: dict[str, float | None] = {}
    for name, value in (("hot_seconds", hot_seconds), ("cold_seconds", cold_seconds)):
        if isinstance(value, _Unchanged):
            continue
        if value is not None and not (isinstance(value, int | float) and 0 < value < math.inf):
            raise InvalidArgument(f"{name} must be a positive number of seconds, got {value!r}")
        changes[name] = None if value is None else float(value)
    try:
        with _connect(conninfo) as conn, conn.transaction():
            _ensure_project(conn, project, actor)
            conn.execute(
                "INSERT INTO project_retention (project_id, signal) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (project, signal),
            )
            before = conn.execute(
                "SELECT hot_seconds, cold_seconds FROM project_retention "
                "WHERE project_id = %s AND signal = %s FOR UPDATE",
                (project, signal),
            ).fetchone()
            assert before is not None
            for name, value in changes.items():
                conn.execute(
                    sql.SQL(
                        "UPDATE project_retention SET {} = %s, updated_at = now() "
                        "WHERE project_id = %s AND signal = %s"
                    ).format(sql.Identifier(name)),
                    (value, project, signal),
                )
            if changes:
                old = dict(zip(("hot_seconds", "cold_seconds"), before, strict=True))
                _audit(
                    conn,
                    project,
                    actor,
                    "project.retention",
                    signal,
                    details={"before": {k: old[k] for k in changes}, "after": changes},
                )
            row = conn.execute(
                "SELECT hot_seconds, cold_seconds FROM project_retention "
                "WHERE project_id = %s AND signal = %s",
                (project, signal),
            ).fetchone()
    except psycopg.Error as exc:
        raise translate(exc) from exc
    assert row is not None
    return RetentionRow(project, signal, row[0], row[1])
