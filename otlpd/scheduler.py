"""A small leased job runner: named periodic jobs, each run by one replica at a time.

Background work over the shared database (indexing closed partitions, tiering them to
cold storage) must not run twice at once when several otlpd processes share it. The fence
is PostgreSQL's: a run holds the session-level advisory lock
``pg_try_advisory_lock(JOB_LOCK_CLASS, hashtext(job.name))`` on a connection of its own,
and does its work on that same connection (unlocked at the end of each round; kept for
the next one when the job runs often). If the process dies or the connection drops,
PostgreSQL releases the lock with the session, so no lease can outlive its holder and no
clock has to agree between replicas (PostgreSQL documentation, "Advisory Locks"). A
replica that does not get the lock skips that round: the other one is doing the job.

A job is anything with a ``name``, an ``interval`` and ``async run(conn)``: see ``Job``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

import psycopg
from psycopg.rows import TupleRow

from storage.postgres.connect import connection_kwargs

log = logging.getLogger(__name__)

# The first key of every job's advisory lock ("jobs"); the second is hashtext(name).
JOB_LOCK_CLASS: Final = 0x6A6F6273

# A job that runs at least this often keeps its connection between rounds; a slower one
# (tiering, rollups, text indexing: every 15 s or more) opens one per round, so that a
# replica does not hold an idle backend per job against PostgreSQL's max_connections
# (100 by default) while a few milliseconds of connecting every quarter hour cost nothing.
KEEP_CONNECTION_S: Final = 5.0

Connection = psycopg.AsyncConnection[TupleRow]


class Job(Protocol):
    """A periodic task over the database that only one replica may run at a time."""

    @property
    def name(self) -> str:
        """Unique among jobs: the lock is taken on it."""
        ...

    @property
    def interval(self) -> float:
        """Seconds between the end of one round and the start of the next."""
        ...

    async def run(self, conn: Connection) -> None:
        """One round of work, on ``conn`` (autocommit), which holds the job's lock."""
        ...


async def hold_for_transaction(conn: Connection, name: str) -> bool:
    """Takes job ``name``'s lock until ``conn``'s transaction ends, so that no replica
    starts a round of it meanwhile; False (and nothing held) if a round holds it now.
    For work of another job that must not interleave with that one's."""
    cursor = await conn.execute(
        "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (JOB_LOCK_CLASS, name)
    )
    row = await cursor.fetchone()
    return row is not None and bool(row[0])


class Scheduler:
    """Runs ``jobs`` forever, each every ``job.interval`` seconds under its lock.

    A failing round is logged and retried at the next interval; it never stops the
    other jobs or the process.
    """

    def __init__(
        self,
        conninfo: str,
        jobs: Sequence[Job],
        *,
        connect_timeout: float = 3.0,
        on_round: Callable[[str, bool, float], None] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._jobs = list(jobs)
        self._connect_timeout = connect_timeout
        self._on_round = on_round  # (job name, succeeded, seconds) of every round run here
        self._kept: dict[str, Connection] = {}

    async def _connection(self, job: Job) -> Connection:
        """The job's connection of its last round, if it is still healthy; else a new one.
        Kept between rounds of a frequent job (``KEEP_CONNECTION_S``): one polled every
        second would otherwise cost PostgreSQL a backend started and stopped every second,
        per replica."""
        conn = self._kept.pop(job.name, None)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        return await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            **connection_kwargs(f"otlpd-job-{job.name}"[:63], self._connect_timeout),
        )

    async def run_once(self, job: Job, *, keep: bool = False) -> bool:
        """One round of ``job`` if no replica is running it; whether this one ran it.
        ``keep``: leave its connection open for the next round (``run`` does; a single
        round, as ``otlpd tier --once`` runs, closes it)."""
        conn = await self._connection(job)
        try:
            ran = await self._round(job, conn)
        except BaseException:
            await conn.close()  # in whatever state the failure left it: not reused
            raise
        if keep:
            self._kept[job.name] = conn
        else:
            await conn.close()
        return ran

    async def _round(self, job: Job, conn: Connection) -> bool:
        cursor = await conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (JOB_LOCK_CLASS, job.name)
        )
        row = await cursor.fetchone()
        if row is None or not row[0]:
            return False
        started = time.perf_counter()
        ok = False
        try:
            await job.run(conn)
            ok = True
        finally:
            if self._on_round is not None:
                self._on_round(job.name, ok, time.perf_counter() - started)
            # The session keeps living between rounds: the lock must end with the round.
            if not conn.closed:
                await conn.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (JOB_LOCK_CLASS, job.name)
                )
        return True

    async def close(self) -> None:
        """Closes the connections kept between rounds."""
        kept, self._kept = list(self._kept.values()), {}
        for conn in kept:
            await conn.close()

    async def run(self) -> None:
        """Every job, each in a loop of its own, until cancelled.

        Jobs run side by side, not one after the other: a tiering pass may take minutes
        and a notification round waits on receivers, and neither may hold back the alert
        evaluator, whose rules are due every few seconds.
        """
        try:
            async with asyncio.TaskGroup() as group:
                for job in self._jobs:
                    group.create_task(self._loop(job))
        finally:
            await self.close()

    async def _loop(self, job: Job) -> None:
        while True:
            try:
                await self.run_once(job, keep=job.interval <= KEEP_CONNECTION_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job %s failed; will retry in %gs", job.name, job.interval)
            await asyncio.sleep(job.interval)
