"""The alerting API's connections to PostgreSQL: a small pool of its own for the changes
users make (rules, channels, silences, acknowledgements, incidents) and what it reads.

Every change is one transaction (``transaction``) in which the alerting layer reads what
it needs, checks it (versions, names, references) and writes, together with its audit
row: a change is never made without its record. Statements run under a time limit, so a
stuck one fails within seconds instead of holding a connection. What PostgreSQL raises
becomes a ``storage.api`` error here (``translate``), which the servicer answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import set_json_loads

from storage.postgres.connect import PooledStore, async_pool
from storage.postgres.errors import translate

Connection = psycopg.AsyncConnection[TupleRow]


async def _configure(conn: Connection) -> None:
    set_json_loads(orjson.loads, conn)


class AlertStore(PooledStore):
    """``open`` before use, ``close`` after; ``transaction`` for every call."""

    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int = 2,
        timeout: float = 3.0,
        connect_timeout: float = 3.0,
        statement_timeout: float = 10.0,
    ) -> None:
        self._pool = async_pool(
            conninfo,
            "otlpd-alerting",
            min_size=1,
            max_size=max_size,
            timeout=timeout,
            connect_timeout=connect_timeout,
            configure=_configure,
            options=f"-c statement_timeout={max(1, round(statement_timeout * 1000))}",
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection in a transaction, committed when the block ends without raising.

        psycopg errors are raised as ``storage.api`` errors; anything else the block
        raises rolls the transaction back and is raised as it is.
        """
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.Error as exc:
            raise translate(exc) from exc


async def rows(conn: Connection, query: Any, params: Any = None) -> list[TupleRow]:
    """The rows of one statement."""
    cursor = await conn.execute(query, params)
    return await cursor.fetchall() if cursor.description else []


async def row(conn: Connection, query: Any, params: Any = None) -> TupleRow | None:
    """The first row of one statement, or None."""
    cursor = await conn.execute(query, params)
    return await cursor.fetchone() if cursor.description else None
