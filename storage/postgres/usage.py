"""Usage per project, UTC day and signal in ``usage_daily``: added to by every replica,
read by ``otlpd usage``.

Each replica counts in memory (``otlpd.usage.UsageMeter``) and adds its counts here every
``OTLPD_USAGE_FLUSH`` in one statement, ``INSERT ... ON CONFLICT DO UPDATE`` adding to the
stored totals, so replicas never coordinate and a row holds the sum of all of them. The
rows are sent sorted by key: two replicas adding to the same rows lock them in the same
order and cannot deadlock each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from storage.postgres.connect import PooledStore, async_pool, connection_kwargs
from storage.postgres.errors import translate

UsageKey = tuple[str, date, str]
"""``(project_id, day, signal)``; the day is a UTC date."""

UsageCounts = Mapping[UsageKey, tuple[int, int]]
"""``(records, bytes)`` per key."""

_ADD: Final = """
INSERT INTO usage_daily (project_id, day, signal, records, bytes)
SELECT * FROM unnest(%s::text[], %s::date[], %s::text[], %s::bigint[], %s::bigint[])
ON CONFLICT (project_id, day, signal) DO UPDATE
SET records = usage_daily.records + EXCLUDED.records,
    bytes = usage_daily.bytes + EXCLUDED.bytes
"""

_REPORT: Final = """
SELECT day, signal, records, bytes FROM usage_daily
WHERE project_id = %s AND day > (now() AT TIME ZONE 'UTC')::date - %s
ORDER BY day DESC, signal
"""


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """One row of ``otlpd usage``."""

    day: date
    signal: str
    records: int
    bytes: int


async def add_usage(
    source: psycopg.AsyncConnection[TupleRow] | AsyncConnectionPool[Any], counts: UsageCounts
) -> None:
    """Adds ``counts`` to the stored totals, all or nothing (raises ``StorageError``)."""
    if not counts:
        return
    keys = sorted(counts)
    columns = (
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [counts[k][0] for k in keys],
        [counts[k][1] for k in keys],
    )
    try:
        if isinstance(source, AsyncConnectionPool):
            async with source.connection() as conn:
                await conn.execute(_ADD, columns)
        else:
            await source.execute(_ADD, columns)
    except psycopg.Error as exc:
        raise translate(exc) from exc


class PostgresUsage(PooledStore):
    """``otlpd.usage.UsageStore`` over ``usage_daily``: one connection of its own (a
    statement every few seconds), under a statement time limit. ``open`` before use."""

    def __init__(self, conninfo: str, *, timeout: float = 3.0, connect_timeout: float = 3.0):
        self._pool = async_pool(
            conninfo,
            "otlpd-usage",
            min_size=1,
            max_size=1,
            timeout=timeout,
            connect_timeout=connect_timeout,
            autocommit=True,  # one statement: its own transaction
            options=f"-c statement_timeout={round(timeout * 1000)}",
        )

    async def write(self, counts: UsageCounts) -> None:
        """Adds ``counts`` to ``usage_daily`` in one transaction."""
        await add_usage(self._pool, counts)


def usage_report(conninfo: str, project: str, days: int = 30) -> list[DailyUsage]:
    """``project``'s usage over the last ``days`` UTC days (today included), newest first."""
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    try:
        kwargs = connection_kwargs("otlpd-admin", 10.0)
        with psycopg.connect(conninfo, autocommit=True, **kwargs) as conn:
            rows = conn.execute(_REPORT, (project, days)).fetchall()
    except psycopg.Error as exc:
        raise translate(exc) from exc
    return [DailyUsage(*row) for row in rows]
