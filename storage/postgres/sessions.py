"""Session lookups for records that carry only ``session.id``: which project, which user.

Served from a small async pool on the event loop, one query per lookup of many ids; the
receiver batches its lookups, so a few connections are plenty.
"""

from __future__ import annotations

from collections.abc import Collection

import psycopg

from storage.postgres.connect import PooledStore, async_pool
from storage.postgres.errors import translate

# Two projects may share a session id (they are client-made): the newest sighting wins.
_LOOKUP = """
SELECT DISTINCT ON (session_id) session_id, project_id, user_id
FROM sessions
WHERE session_id = ANY(%s::text[])
ORDER BY session_id, last_seen DESC, project_id
"""


class PostgresSessionDirectory(PooledStore):
    """``storage.api.SessionDirectory`` over the ``sessions`` table.

    Call ``open`` (or use ``async with``) before ``lookup`` and ``close`` after. A lookup
    fails with ``StorageUnavailable`` within about ``timeout`` seconds when the database
    cannot be reached.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 2,
        timeout: float = 3.0,
        connect_timeout: float = 3.0,
        reconnect_timeout: float = 20.0,
    ) -> None:
        self._pool = async_pool(
            conninfo,
            "otlpd-sessions",
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            connect_timeout=connect_timeout,
            reconnect_timeout=reconnect_timeout,
            autocommit=True,  # read-only lookups: no transaction left open
        )

    async def lookup(self, session_ids: Collection[str]) -> dict[str, tuple[str, str | None]]:
        """Maps each known session id to ``(project_id, user_id)``; unknown ids are absent."""
        if not session_ids:
            return {}
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_LOOKUP, (list(session_ids),))
                rows = await cursor.fetchall()
        except psycopg.Error as exc:
            raise translate(exc) from exc
        return {session_id: (project_id, user_id) for session_id, project_id, user_id in rows}
