"""Schema migrations: apply ``migrations/NNNN_*.sql`` in order, each exactly once.

Every replica runs ``migrate`` at start. A session-level advisory lock, held on a
connection of its own (never a pooled one, which a pool may reset and so drop the lock),
serializes replicas that start together: the second waits, then finds every migration
recorded in ``schema_migrations`` and does nothing. Each file runs in its own
transaction together with the row that records it, so a failed migration leaves no trace
and is retried by the next start.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg.rows import TupleRow

from storage.postgres.connect import connection_kwargs
from storage.postgres.errors import translate

# Arbitrary but fixed: every otlpd replica must use the same key ("otlpd" + 1 in ASCII).
MIGRATION_LOCK_KEY = 0x6F746C706401

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# Earlier texts of amended migrations that a database may have recorded: an amendment
# changes comments only, never what the schema is (a later migration brings databases
# that applied the old text to the same catalog comments).
_AMENDED: dict[int, frozenset[str]] = {
    # 0.1.0 cited a file that the decoder package replaced, in a COMMENT ON COLUMN.
    1: frozenset({"9ad4053ceff6f0c07b2d81e98fb879e85b612ac1df956b4f3a8774217a4c9af3"}),
    # Its header named two kinds of key blooms, each per row group; there are three, and
    # ids have one filter per object.
    8: frozenset({"b5cd2bb10b22e1c134686f57a2fdbca25e80fe7adf39e3682e742a99236a20a9"}),
}

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The migrations on disk disagree with what the database recorded as applied."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One ``NNNN_name.sql`` file: its number orders it, its hash detects later edits."""

    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        """Digest of the file as applied; an applied file must never change."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The migration files shipped with the package, in version order."""
    folder = resources.files("storage.postgres").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {[m.name for m in found]}")
    return found


def migrate(conninfo: str, *, connect_timeout: float = 10.0) -> None:
    """Bring the database's schema up to date; safe to call from several replicas at once.

    Raises ``StorageUnavailable`` when the database cannot be reached, and
    ``MigrationError`` when an applied migration's file was edited afterwards.
    """
    migrations = load_migrations()
    try:
        kwargs = connection_kwargs("otlpd-migrate", connect_timeout)
        with psycopg.connect(conninfo, autocommit=True, **kwargs) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            try:
                _apply(conn, migrations)
            finally:
                # Closing the connection would release it too; unlocking says so.
                if not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    except psycopg.Error as exc:
        raise translate(exc) from exc


def _apply(conn: psycopg.Connection[TupleRow], migrations: list[Migration]) -> None:
    # Created only under the lock: two concurrent CREATE TABLE IF NOT EXISTS can both
    # miss the table and then collide on the catalog's unique index.
    conn.execute(_CREATE_LEDGER)
    rows = conn.execute("SELECT version, sha256 FROM schema_migrations").fetchall()
    applied: dict[int, str] = dict(rows)
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None:
            if recorded != migration.sha256 and recorded not in _AMENDED.get(
                migration.version, frozenset()
            ):
                raise MigrationError(
                    f"{migration.name} was edited after it was applied; add a new migration instead"
                )
            continue
        with conn.transaction():
            # No parameters: psycopg sends the file with the simple query protocol,
            # which accepts several statements.
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.sha256),
            )
