"""Live tail's side of PostgreSQL: the LISTEN connection, and the rows of one notified commit.

The writer tells every listener of the database, at each commit that holds log rows,
which transaction it was (the 32-bit xid that is the rows' ``xmin``) and, per project,
the time range and count of its records (``storage.postgres.writer.LOGS_CHANNEL``). So a
tail never polls: it waits on ``LogNoticeListener.notices`` and, per notice, reads that
commit's rows with ``commit_rows``: the time range confines the scan to the partitions
(and, through the BRIN index on ``(project_id, time)``, the block ranges) the commit wrote,
and ``xmin`` picks that commit's rows out of them. Rows are never updated, so a committed
row keeps the ``xmin`` of the transaction that inserted it until its partition is dropped
(or frozen by VACUUM, which rewrites ``xmin`` to FrozenTransactionId: only rows older than
``vacuum_freeze_min_age`` transactions, i.e. long after a live tail wanted them).

Cost: the BRIN index narrows the scan only over block ranges VACUUM has summarized
(autovacuum runs on insert-only tables since PostgreSQL 13, and summarizes as it goes);
the unsummarized end of the open partition, where new rows land, is always read. Measured
on a 100k-row open partition: 2,730 blocks and 53 ms before any VACUUM, 170 blocks and
17 ms after one, for a commit of 2,000 rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from storage.postgres.connect import connection_kwargs
from storage.postgres.log_reader import LogFilter, filter_conditions
from storage.postgres.partitions import datetime_from_ns
from storage.postgres.reading import Query
from storage.postgres.records import LOG_COLUMNS, LOGS_FROM
from storage.postgres.writer import LOGS_CHANNEL

log = logging.getLogger(__name__)

# How long the listener waits for a notice before it checks that its connection is still
# alive: keepalives notice a vanished peer only after ~30 s (storage.postgres.connect).
_PROBE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ProjectCommit:
    """What one commit wrote for one project: ``[min_us, max_us)`` and how many records."""

    min_us: int
    max_us: int
    count: int


@dataclass(frozen=True, slots=True)
class LogNotice:
    """One commit with log rows. ``projects`` is None when the writer left them out (too
    many to fit a payload): the commit may then hold rows of any project, at any time."""

    xid: int
    projects: dict[str, ProjectCommit] | None


def parse_notice(payload: str) -> LogNotice | None:
    """The notice in ``payload``, or None (logged) when it is not one the writer sends."""
    try:
        data = json.loads(payload)
        xid = int(data["x"])
        raw = data["p"]
        projects = None
        if raw is not None:
            projects = {
                str(project): ProjectCommit(int(lo), int(hi), int(n))
                for project, (lo, hi, n) in raw.items()
            }
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("ignored a malformed %s notice: %.200r", LOGS_CHANNEL, payload)
        return None
    if not 0 <= xid < 2**32:
        log.warning("ignored a %s notice with xid %d", LOGS_CHANNEL, xid)
        return None
    return LogNotice(xid, projects)


class LogNoticeListener:
    """One dedicated autocommit connection that ``LISTEN``s on the writer's channel.

    Use as ``async with await LogNoticeListener.connect(url) as listener``; a failure of
    the connection (PostgreSQL restarted, the network went) raises ``psycopg.Error`` out
    of ``notices``, and the caller reconnects.
    """

    def __init__(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        self._conn = conn

    @classmethod
    async def connect(cls, conninfo: str, *, connect_timeout: float = 3.0) -> LogNoticeListener:
        conn = await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, **connection_kwargs("otlpd-tail", connect_timeout)
        )
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(LOGS_CHANNEL)))
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def __aenter__(self) -> LogNoticeListener:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._conn.close()

    async def notices(self) -> AsyncIterator[LogNotice]:
        """Every notice from now on, in commit order; raises when the connection fails."""
        while True:
            async for notify in self._conn.notifies(timeout=_PROBE_SECONDS):
                notice = parse_notice(notify.payload)
                if notice is not None:
                    yield notice
            # A quiet spell: make sure the connection is still there.
            await self._conn.execute("SELECT 1")


def commit_rows(
    xid: int,
    window_us: tuple[int, int],
    log_filter: LogFilter,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> tuple[Query, list[Any]]:
    """The statement and parameters reading the ``LOG_COLUMNS`` rows that transaction
    ``xid`` wrote in ``window_us`` (``[min, max)`` µs) and that match ``log_filter`` (its
    project included; the conditions are SearchLogs' own, ``log_reader.filter_conditions``):
    oldest first by ``(time, ctid)``, at most ``limit``, after the ``(time, ctid)`` of
    ``after`` (the last row of the previous page) when given."""
    lo, hi = window_us
    conditions, params = filter_conditions(log_filter)
    # xid has no cast from integer types, but has one from text.
    conditions += ["l.time >= %s", "l.time < %s", "l.xmin = %s::text::xid"]
    params += [datetime_from_ns(lo * 1000), datetime_from_ns(hi * 1000), str(xid)]
    if after is not None:
        conditions.append("(l.time, l.ctid) > (%s, %s::tid)")
        params.extend(after)
    params.append(limit)
    statement = sql.SQL(
        "SELECT "
        + LOG_COLUMNS
        + " FROM "
        + LOGS_FROM
        + " WHERE {} ORDER BY l.time, l.ctid LIMIT %s"
    ).format(sql.SQL(" AND ").join(sql.SQL(c) for c in conditions))
    return statement, params
