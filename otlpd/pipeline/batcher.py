"""Group commit: concurrent Export requests share one transaction, and wait for its commit.

An Export is acknowledged only after the transaction that holds its rows has committed
("acknowledged means durable"), so a request's latency is the time until the next commit.
Committing per request costs a WAL flush per request (~38k spans/s against ~64k with group
commit: docs/benchmarks.md, "Reference measurements"); here a flusher takes *everything*
queued when it becomes free, so batches grow exactly as fast as load does and no timer
adds latency when idle.

Memory is bounded by admission, not by hope: rows, and the memory they take (the size
the caller gives: ``receiver.ingest.decoded_size``), admitted and not yet committed are
counted from admission on (while a batch waits for its partition too), and a request that
would pass either limit is refused at once with ``Overloaded`` (UNAVAILABLE + RetryInfo),
before any work is queued.

The writer blocks (libpq I/O), so each flush runs in a thread of a pool sized to the
number of flushers; psycopg releases the GIL while it waits on the network, and the event
loop keeps decoding the next requests meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from otlpd.errors import (
    OtlpdError,
    Overloaded,
    ShuttingDown,
    StoreUnavailable,
    from_storage,
    internal_fault,
)
from otlpd.instruments import Instruments
from storage.api import StorageDataError, StorageError, Writer, WriteStats
from storage.model import RowBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatcherSettings:
    """Limits of the batcher; see the matching ``OTLPD_*`` settings in otlpd.config."""

    max_rows: int = 8192
    max_delay: float = 0.0
    queue_max_rows: int = 65536
    queue_max_bytes: int = 128 * 1024 * 1024
    flushers: int = 2
    retry_after: float = 1.0


@dataclass(slots=True)
class _Pending:
    batch: RowBatch
    rows: int
    size: int
    future: asyncio.Future[None]
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    """Bounded queue of row batches, flushed by N concurrent group commits."""

    def __init__(self, writer: Writer, settings: BatcherSettings, instruments: Instruments):
        self._writer = writer
        self._settings = settings
        self._metrics = instruments
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0  # admitted and not yet answered: queued plus in flight
        self._queued_bytes = 0
        self._work = asyncio.Condition()
        self._closing = False
        # False while PostgreSQL is known to be down (a write failed, or the App's probe
        # could not connect): requests are refused at once instead of queueing behind
        # connection timeouts. The probe sets it back.
        self.store_up = True
        self._executor = ThreadPoolExecutor(settings.flushers, thread_name_prefix="otlpd-writer")
        self._preparer = ThreadPoolExecutor(1, thread_name_prefix="otlpd-prepare")

    @property
    def depth(self) -> tuple[int, int]:
        """Rows and bytes admitted and not yet committed."""
        return self._queued_rows, self._queued_bytes

    def admit(self, rows: int, size: int) -> None:
        """Raises if a request of this size would not be admitted now.

        Called before decoding so an overloaded server spends no CPU on work it will
        refuse; ``submit`` checks again because other requests may have been admitted
        in between. ``size`` is the memory the request's rows hold (an estimate made
        from its request bytes before it is decoded).
        """
        self._check_open()
        s = self._settings
        # An empty queue admits any one request, however large: a request above the
        # limits would otherwise be refused forever (max size is enforced by the receiver).
        if self._queued_rows and (
            self._queued_rows + rows > s.queue_max_rows
            or self._queued_bytes + size > s.queue_max_bytes
        ):
            raise Overloaded(
                f"ingest queue full ({self._queued_rows} records, {self._queued_bytes} bytes"
                " waiting for PostgreSQL); retry later",
                s.retry_after,
            )

    async def submit(self, batch: RowBatch, size: int) -> None:
        """Queues ``batch`` and returns once it is committed.

        Raises Overloaded or ShuttingDown without queueing anything, StoreUnavailable if
        the transaction failed for reasons outside the data, RejectedByStore if PostgreSQL
        refused this request's rows. A request that is cancelled while waiting (client
        deadline) may still be committed: OTLP delivery is at-least-once.
        """
        rows = batch.row_count
        self.admit(rows, size)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = _Pending(batch, rows, size, future)
        # Counted from here on: a batch that waits for its partition holds its rows too.
        self._count(rows, size)
        try:
            await self._prepare(batch)
            self._check_open()  # the store may have gone, or a drain begun, meanwhile
        except BaseException:
            self._release(pending)
            raise
        self._queue.append(pending)
        async with self._work:
            self._work.notify()
        await future

    def _check_open(self) -> None:
        if self._closing:
            raise ShuttingDown("otlpd is shutting down", self._settings.retry_after)
        if not self.store_up:
            raise StoreUnavailable(
                "PostgreSQL is unreachable; retry later", self._settings.retry_after
            )

    def _count(self, rows: int, size: int) -> None:
        self._queued_rows += rows
        self._queued_bytes += size
        self._metrics.queue_rows.set(self._queued_rows)
        self._metrics.queue_bytes.set(self._queued_bytes)

    async def _prepare(self, batch: RowBatch) -> None:
        """Makes what ``batch`` needs (late data: its time partition) before it is queued.

        On a thread of its own, so that a creation waiting for a lock holds up only the
        requests that need it, never a group commit; a failure here fails this request
        alone and says nothing about PostgreSQL's health.
        """
        try:
            if self._writer.ready(batch):
                return
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._preparer, self._writer.prepare, batch)
        except StorageError as exc:
            raise from_storage(exc, self._settings.retry_after) from exc

    async def run(self) -> None:
        """Runs the flushers until ``close`` is called and the queue is drained."""
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self._settings.flushers):
                    group.create_task(self._flusher())
        finally:
            self._executor.shutdown(wait=True)
            self._preparer.shutdown(wait=True)

    async def close(self) -> None:
        """Stops admitting; the flushers finish what is queued, then ``run`` returns."""
        self._closing = True
        async with self._work:
            self._work.notify_all()

    async def _flusher(self) -> None:
        while True:
            async with self._work:
                await self._work.wait_for(lambda: bool(self._queue) or self._closing)
                if not self._queue:
                    return  # closing and drained
            await self._linger()
            taken = self._take()
            if taken:
                await self._flush(taken)

    async def _linger(self) -> None:
        """With a max delay set, waits for the oldest batch to age or the batch to fill."""
        delay = self._settings.max_delay
        if delay <= 0 or not self._queue or self._closing:
            return
        deadline = self._queue[0].enqueued + delay
        while self._queue and sum(p.rows for p in self._queue) < self._settings.max_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing:
                return
            async with self._work:
                try:
                    await asyncio.wait_for(self._work.wait(), remaining)
                except TimeoutError:
                    return

    def _take(self) -> list[_Pending]:
        """Pops whole requests up to ``max_rows`` (at least one, however large)."""
        taken: list[_Pending] = []
        rows = 0
        queue = self._queue
        while queue and (not taken or rows + queue[0].rows <= self._settings.max_rows):
            pending = queue.popleft()
            if pending.future.done():  # cancelled before it was taken: nothing to store
                self._release(pending)
                continue
            rows += pending.rows
            taken.append(pending)
        return taken

    async def _flush(self, taken: list[_Pending]) -> None:
        try:
            stats = await self._write([p.batch for p in taken])
        except StorageDataError as exc:
            if len(taken) == 1:
                self._finish(taken, from_storage(exc, self._settings.retry_after))
                return
            # One request's rows poisoned the shared transaction: retry each alone, so only
            # the culprit is refused and the others are stored.
            log.warning(
                "group commit refused by PostgreSQL; retrying its %d requests one by one",
                len(taken),
            )
            for pending in taken:
                await self._flush([pending])
            return
        except StorageError as exc:
            self.store_up = False
            self._finish(taken, from_storage(exc, self._settings.retry_after))
            return
        except Exception:  # a bug must fail the requests, never strand them
            log.exception("unexpected error in the writer")
            self._finish(taken, internal_fault(self._settings.retry_after))
            return
        self._observe(stats, len(taken))
        self._finish(taken, None)

    async def _write(self, batches: Sequence[RowBatch]) -> WriteStats:
        loop = asyncio.get_running_loop()
        self._metrics.writers_busy.inc()
        started = time.perf_counter()
        try:
            return await loop.run_in_executor(self._executor, self._writer.write, batches)
        finally:
            self._metrics.writers_busy.dec()
            self._metrics.flush_seconds.observe(time.perf_counter() - started)

    def _observe(self, stats: WriteStats, requests: int) -> None:
        m = self._metrics
        m.commits.inc()
        m.copy_seconds.observe(stats.copy_seconds)
        m.commit_seconds.observe(stats.commit_seconds)
        m.batch_rows.observe(stats.spans + stats.logs + stats.points)
        m.batch_requests.observe(requests)

    def _finish(self, taken: list[_Pending], error: OtlpdError | None) -> None:
        for pending in taken:
            self._release(pending)
            if pending.future.done():
                continue
            if error is None:
                pending.future.set_result(None)
            else:
                pending.future.set_exception(error)

    def _release(self, pending: _Pending) -> None:
        self._count(-pending.rows, -pending.size)
