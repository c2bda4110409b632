"""PostgresSessionDirectory: which project and user a bare session id belongs to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from storage.api import StorageUnavailable
from storage.postgres.migrate import migrate
from storage.postgres.sessions import PostgresSessionDirectory


@pytest.fixture
async def directory(database_url: str) -> AsyncIterator[PostgresSessionDirectory]:
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO sessions (project_id, session_id, user_id, service_name, "
            "first_seen, last_seen) VALUES "
            "('p1', 's1', 'alice', 'web', now() - interval '1 hour', now() - interval '1 hour'),"
            "('p1', 's2', NULL, NULL, now(), now()),"
            # s3 is known in two projects; p3 saw it last.
            "('p2', 's3', 'bob', NULL, now() - interval '2 hours', now() - interval '1 hour'),"
            "('p3', 's3', 'carol', NULL, now() - interval '3 hours', now())"
        )
    async with PostgresSessionDirectory(database_url) as directory:
        yield directory


async def test_lookup_maps_known_ids_to_project_and_user(
    directory: PostgresSessionDirectory,
) -> None:
    found = await directory.lookup(["s1", "s2", "s3", "unknown"])
    assert found == {"s1": ("p1", "alice"), "s2": ("p1", None), "s3": ("p3", "carol")}


async def test_lookup_of_nothing_asks_nothing(directory: PostgresSessionDirectory) -> None:
    assert await directory.lookup([]) == {}
    assert await directory.lookup({"nope"}) == {}


async def test_unreachable_database_is_unavailable() -> None:
    directory = PostgresSessionDirectory("postgresql://postgres@127.0.0.1:1/nowhere", timeout=0.5)
    await directory.open()
    try:
        with pytest.raises(StorageUnavailable):
            await directory.lookup(["s1"])
    finally:
        await directory.close()
