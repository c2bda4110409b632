"""How otlpd's connections to PostgreSQL fail fast: the libpq options every one of them uses.

A telemetry server must notice an unreachable database in seconds, answer UNAVAILABLE
and let clients retry, rather than hang: libpq's defaults wait without limit to connect
and let a TCP peer that vanished without a reset go unnoticed for hours.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool


def libpq_seconds(timeout: float) -> int:
    """``timeout`` as libpq's ``connect_timeout`` wants it: whole seconds, at least 2."""
    return max(2, math.ceil(timeout))


def connection_kwargs(application_name: str, connect_timeout: float) -> dict[str, Any]:
    """Keyword arguments for ``psycopg.connect`` (or a pool's ``kwargs``).

    ``application_name`` shows in ``pg_stat_activity`` which part of otlpd holds a
    connection. Keepalives and ``tcp_user_timeout`` make a dead peer an error in ~30 s.
    """
    return {
        "connect_timeout": libpq_seconds(connect_timeout),
        "application_name": application_name,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }


def async_pool(
    conninfo: str,
    name: str,
    *,
    min_size: int,
    max_size: int,
    timeout: float,
    connect_timeout: float,
    reconnect_timeout: float = 20.0,
    configure: Callable[[psycopg.AsyncConnection[TupleRow]], Awaitable[None]] | None = None,
    check: bool = True,
    **connection: Any,
) -> AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]:
    """An async pool, not yet open, of connections named ``name`` that fail fast.

    It must be opened inside the event loop that will use it. Connections are checked on
    borrow unless ``check`` is false (a connection broken by a restart would otherwise
    fail a caller; the query pool retries such a read itself instead, see
    ``storage.postgres.reading``). ``connection`` adds libpq or psycopg connection
    arguments (``autocommit``, ``options``).
    """
    return AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        check=AsyncConnectionPool.check_connection if check else None,
        configure=configure,
        timeout=timeout,
        reconnect_timeout=reconnect_timeout,
        kwargs={**connection_kwargs(name, connect_timeout), **connection},
    )


class PooledStore:
    """A store that owns one async pool (``self._pool``): ``open`` it before use and
    ``close`` it after, or use it as ``async with``. Connections are made in the
    background once open."""

    _pool: AsyncConnectionPool[Any]

    async def open(self) -> None:
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
