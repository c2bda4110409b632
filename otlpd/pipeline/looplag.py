"""Event-loop lag: how long a request that has arrived waits before otlpd can look at it.

The batcher's queue bounds what waits for PostgreSQL. When decoding is the bottleneck
instead (more OTLP than the process's core can turn into rows), the excess waits before
the queue: in grpc's transport and the event loop's ready queue, where no admission
check runs. Memory stays bounded there (HTTP/2 flow control), but latency does not:
`make bench` at 3x the closed-loop rate saw p99 of 7-12 s with hardly a refusal, past
the SDK's 10 s deadline, so clients would retry requests that were still going to be
committed (duplicates). Measuring how late the loop runs a timer, and refusing new
Exports while it is late, turns that backlog into cheap UNAVAILABLE + RetryInfo answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class LoopLag:
    """A ticker on the event loop; ``seconds`` is how far behind the loop runs right now."""

    def __init__(
        self, interval: float = 0.05, on_tick: Callable[[float], None] | None = None
    ) -> None:
        self._interval = interval
        self._on_tick = on_tick
        self._last_tick: float | None = None
        self._measured = 0.0

    @property
    def seconds(self) -> float:
        """The lag of the last tick, or, if the next tick is overdue, how overdue it is.

        The second part makes a stall visible while it happens, not one tick later.
        """
        if self._last_tick is None:
            return 0.0
        overdue = asyncio.get_running_loop().time() - self._last_tick - self._interval
        return max(self._measured, overdue)

    async def run(self) -> None:
        """Ticks until cancelled."""
        loop = asyncio.get_running_loop()
        self._last_tick = loop.time()
        while True:
            await asyncio.sleep(self._interval)
            now = loop.time()
            self._measured = max(0.0, now - self._last_tick - self._interval)
            self._last_tick = now
            if self._on_tick is not None:
                self._on_tick(self._measured)
