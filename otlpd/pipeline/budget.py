"""The decode budget: how many request bytes one process receives and decodes at once.

Admission to the batcher's queue counts rows once they exist; this counts what comes
before them, the request bodies being received and decoded (``OTLPD_DECODE_BUDGET``), so
that a burst of large Exports is refused (UNAVAILABLE + RetryInfo) before it is read,
not after it is in memory. ``receiver.ingest`` explains where it sits in the memory bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from otlpd.errors import Overloaded
from otlpd.instruments import Instruments


class DecodeBudget:
    """Request bytes held before they are rows: bodies being received, bodies read and
    not yet decoded (``OTLPD_DECODE_BUDGET``).

    A body of unknown size (a ``PayloadReader`` not read yet) is charged ``reservation``
    (the request limit: the most it can turn out to be) while it is received, then its
    real size until its rows are built. A request that finds no room waits, in arrival
    order, up to ``wait`` seconds, then is refused with ``Overloaded`` (UNAVAILABLE +
    RetryInfo) before its body is read. An empty budget admits any one request, so a
    request larger than the budget is slow, not refused forever. Requests wait here
    without a body: what they hold is bounded by the number of calls the transport lets
    in (``OTLPD_GRPC_MAX_STREAMS`` per connection).
    """

    def __init__(
        self,
        limit: int,
        reservation: int,
        wait: float,
        retry_after: float,
        instruments: Instruments | None = None,
    ) -> None:
        self.limit = limit
        self.reservation = min(reservation, limit)
        self._wait = wait
        self._retry_after = retry_after
        self._metrics = instruments
        self._used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def used(self) -> int:
        """Bytes charged now: reservations of bodies being received, sizes of bodies read."""
        return self._used

    @property
    def waiting(self) -> int:
        """Requests waiting for room."""
        return len(self._waiters)

    async def acquire(self, size: int) -> None:
        """Charges ``size`` bytes, waiting for room; raises Overloaded if none is made in
        time. The caller must ``release`` (what ``resize`` made of) it."""
        if not self._waiters and self._fits(size):
            self._charge(size)
            return
        if self._wait <= 0:
            raise self._refusal()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (size, future)
        self._waiters.append(waiter)
        self._observe()
        try:
            async with asyncio.timeout(self._wait):
                await future
        except BaseException as exc:
            granted = future.done() and not future.cancelled()
            if granted and isinstance(exc, TimeoutError):
                return  # granted as the wait ran out: take it
            if granted:
                self.release(size)  # granted as the call went away: hand the room on
            else:
                future.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                self._wake()  # it may have been the head that held the others back
            if isinstance(exc, TimeoutError):
                raise self._refusal() from None
            raise
        finally:
            self._observe()

    def resize(self, charged: int, size: int) -> None:
        """Turns a charge of ``charged`` bytes into one of ``size`` (the body's real size)."""
        self._used += size - charged
        self._observe()
        if size < charged:
            self._wake()

    def release(self, size: int) -> None:
        """Gives back a charge of ``size`` bytes."""
        self._used -= size
        self._observe()
        self._wake()

    def _fits(self, size: int) -> bool:
        return self._used == 0 or self._used + size <= self.limit

    def _charge(self, size: int) -> None:
        self._used += size
        self._observe()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            size, future = waiters[0]
            if future.done():  # cancelled: its owner removes it, or already did
                waiters.popleft()
                continue
            if not self._fits(size):
                break
            waiters.popleft()
            self._charge(size)
            future.set_result(None)
        self._observe()

    def _observe(self) -> None:
        if self._metrics is not None:
            self._metrics.decode_bytes.set(self._used)
            self._metrics.decode_waiting.set(len(self._waiters))

    def _refusal(self) -> Overloaded:
        return Overloaded(
            f"otlpd is receiving or decoding {self._used / 2**20:.1f} MiB of requests"
            f" (budget {self.limit / 2**20:.1f} MiB); retry later",
            self._retry_after,
        )
