"""TailLogs: live tail of committed log records, fed by PostgreSQL LISTEN/NOTIFY.

The writer notifies every listener of the database at each commit with log rows ("this
transaction wrote these time ranges for these projects", never the rows), so a tail sees
what any otlpd process sharing the database committed, as soon as it commits. One
listener per process (``LogTail.run``) hands each notice to the open streams of its
project; each stream reads that commit's rows matching its filters with one statement
(``storage.postgres.log_notices.commit_rows``) and sends them.

Memory per stream is bounded three ways: its queue holds at most ``OTLPD_TAIL_BUFFER``
notices (a notice is a few numbers, not rows), dropping the oldest when full; a commit's
rows are read at most ``MAX_RECORDS`` at a time; and the next message is built only once
the previous one was taken by gRPC, whose ``yield`` waits for HTTP/2 flow control when
the client stops reading. A stream that dropped notices tells its client before its next
records: ``TailLogsResponse(lagged=Lagged(skipped_records=n))``, where ``n`` counts the
project's records in the dropped commits (an upper bound of the matching ones: counting
exactly would take the very reads the stream is shedding).

Protocol details a client sees:

* The first message of every stream is empty: the tail is live from then on (records
  committed after it arrives are sent), so a client can tell "listening" from "nothing
  yet".
* When the listener's connection drops, it reconnects with backoff; records committed in
  between are not sent, and every stream is told ``Lagged(skipped_records=0)`` once the
  listener listens again: "lagged, by an unknown amount".
* Beyond ``OTLPD_TAIL_MAX_STREAMS`` streams per process a new one is refused UNAVAILABLE
  with RetryInfo (``otlpd.errors.Overloaded``), like any overload: the client may retry,
  here later or on another replica. RESOURCE_EXHAUSTED is this API's "the query itself
  is too costly", which would tell the client not to retry the same request.
* A stream ends when the client cancels, or OK when the server shuts down.
* The filter is SearchLogs' (``query.logs.log_filter``, ``query.fulltext``), validated the
  same way, with the same INVALID_ARGUMENT answers.
* A commit whose notice names no project (the writer's ``"p": null``, more than 64
  projects in one commit) is read by every stream over the last two partition intervals
  and the next one, where live records land; older records of such a commit are not
  tailed, and its records do not count in ``skipped_records`` when dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime

import psycopg

from otlpd.errors import Overloaded, ShuttingDown
from otlpd.instruments import Instruments
from query.call import QueryCall
from query.convert import log_record
from query.logs import log_filter
from query.proto import pb
from query.settings import QuerySettings
from storage.postgres.log_notices import LogNotice, LogNoticeListener, commit_rows
from storage.postgres.log_reader import LogFilter
from storage.postgres.records import LogRow

log = logging.getLogger(__name__)

MAX_RECORDS = 1000  # per message, and per read of a commit's rows
# How long a new stream waits for the listener (starting, or reconnecting) to listen
# before it goes live anyway; it is then told it lagged once the listener is back.
_READY_SECONDS = 5.0
_BACKOFF_MIN, _BACKOFF_MAX = 0.2, 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Commit:
    """One notice as one stream needs it: which transaction, which times, how many."""

    xid: int
    window_us: tuple[int, int]
    count: int


class _Stream:
    """One TailLogs stream's state, shared between the listener and the stream's task."""

    __slots__ = ("capacity", "closed", "gap", "project", "queue", "skipped", "wake")

    def __init__(self, project: str, capacity: int) -> None:
        self.project = project
        self.capacity = capacity
        self.queue: deque[_Commit] = deque()
        self.skipped = 0  # records of dropped commits, not yet told
        self.gap = False  # notices were lost (the listener reconnected), not yet told
        self.closed = False
        self.wake = asyncio.Event()

    def offer(self, commit: _Commit) -> int:
        """Queues ``commit``; returns the records dropped to make room (0 if none)."""
        dropped = 0
        if len(self.queue) >= self.capacity:
            dropped = self.queue.popleft().count
            self.skipped += dropped
        self.queue.append(commit)
        self.wake.set()
        return dropped


class LogTail:
    """One listener per process; each stream has a bounded queue of commits to read."""

    def __init__(
        self, database_url: str, settings: QuerySettings, instruments: Instruments
    ) -> None:
        self._database_url = database_url
        self._settings = settings
        self._metrics = instruments
        self._streams: dict[str, set[_Stream]] = {}
        self._count = 0
        self._listening = asyncio.Event()
        self._stopped = False

    async def run(self) -> None:
        """Listens until cancelled; the App owns the task. Reconnects with backoff."""
        backoff = _BACKOFF_MIN
        try:
            while True:
                try:
                    async with await LogNoticeListener.connect(self._database_url) as listener:
                        self._mark_gap()  # whatever was committed while not listening
                        self._listening.set()
                        backoff = _BACKOFF_MIN
                        async for notice in listener.notices():
                            self._dispatch(notice)
                except psycopg.Error as exc:
                    self._listening.clear()
                    log.warning("live tail: listener lost (%s); again in %.1fs", exc, backoff)
                except Exception:
                    # A bug of ours must not take the App's TaskGroup (ingest) down with it.
                    self._listening.clear()
                    log.exception("live tail: listener failed; again in %.1fs", backoff)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(_BACKOFF_MAX, backoff * 2)
        finally:
            self._stopped = True
            self._listening.clear()
            for streams in self._streams.values():
                for stream in streams:
                    stream.closed = True
                    stream.wake.set()

    def _mark_gap(self) -> None:
        for streams in self._streams.values():
            for stream in streams:
                stream.gap = True
                stream.wake.set()

    def _dispatch(self, notice: LogNotice) -> None:
        if notice.projects is None:
            # The writer left the projects out (too many for one payload): every stream
            # reads the commit, over the open partitions, where live records land.
            now_us = time.time_ns() // 1000
            width = self._settings.partition_interval_s * 1_000_000
            window = (now_us - 2 * width, now_us + width)
            targets = [
                (s, _Commit(notice.xid, window, 0)) for v in self._streams.values() for s in v
            ]
        else:
            targets = [
                (stream, _Commit(notice.xid, (part.min_us, part.max_us), part.count))
                for project, part in notice.projects.items()
                for stream in self._streams.get(project, ())
            ]
        for stream, commit in targets:
            dropped = stream.offer(commit)
            if dropped:
                self._metrics.tail_lagged.inc(dropped)

    async def stream(
        self, call: QueryCall, request: pb.TailLogsRequest
    ) -> AsyncIterator[pb.TailLogsResponse]:
        """The records of ``call.project`` matching the request's filter, as committed."""
        wanted = log_filter(call.project, request.filter)  # SearchLogs' validation
        if self._stopped:
            raise ShuttingDown("the server is shutting down", self._settings.retry_after)
        if self._count >= self._settings.tail_max_streams:
            raise Overloaded(
                f"this server already tails {self._count} streams, its maximum; retry later",
                self._settings.retry_after,
            )
        # Counted before the first await, so streams arriving together cannot overshoot.
        self._count += 1
        self._metrics.tail_streams.inc()
        stream = _Stream(call.project, max(1, self._settings.tail_buffer))
        try:
            if not self._listening.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._listening.wait(), _READY_SECONDS)
            stream.gap = not self._listening.is_set()
            self._streams.setdefault(call.project, set()).add(stream)
            yield pb.TailLogsResponse()
            while not stream.closed:
                await stream.wake.wait()
                stream.wake.clear()
                async for response in self._drain(call, stream, wanted):
                    yield response
        finally:
            self._metrics.tail_streams.dec()
            self._count -= 1
            streams = self._streams.get(call.project)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._streams[call.project]

    async def _drain(
        self, call: QueryCall, stream: _Stream, wanted: LogFilter
    ) -> AsyncIterator[pb.TailLogsResponse]:
        """Messages for everything queued: lag first, then records, oldest first."""
        pending: list[pb.LogRecord] = []
        while True:
            if stream.closed:
                return
            if stream.skipped or stream.gap:
                if pending:
                    yield pb.TailLogsResponse(records=pending)
                    pending = []
                skipped, stream.skipped, stream.gap = stream.skipped, 0, False
                yield pb.TailLogsResponse(lagged=pb.Lagged(skipped_records=skipped))
                continue  # more may have been dropped while that message waited
            if not stream.queue:
                break
            commit = stream.queue.popleft()
            after: tuple[datetime, str] | None = None
            while True:
                rows = await self._read(call, commit, wanted, after)
                pending.extend(log_record(row) for row in rows)
                while len(pending) >= MAX_RECORDS:
                    yield pb.TailLogsResponse(records=pending[:MAX_RECORDS])
                    pending = pending[MAX_RECORDS:]
                if len(rows) < MAX_RECORDS:
                    break
                after = (rows[-1].time, rows[-1].place)
        if pending:
            yield pb.TailLogsResponse(records=pending)

    async def _read(
        self,
        call: QueryCall,
        commit: _Commit,
        wanted: LogFilter,
        after: tuple[datetime, str] | None,
    ) -> list[LogRow]:
        statement, params = commit_rows(
            commit.xid, commit.window_us, wanted, after=after, limit=MAX_RECORDS
        )
        # A stream lives for hours: the query budget applies to each read, not to the
        # stream (the client's deadline, if any, still bounds them all).
        read = dataclasses.replace(call, started=time.monotonic())
        return [LogRow(*row) for row in await read.fetch(statement, params)]
