"""LoopLag: a stalled event loop is seen while it is stalled, and recovery is seen too."""

from __future__ import annotations

import asyncio
import time

from otlpd.pipeline.looplag import LoopLag


async def test_a_stall_shows_as_lag_then_recovers() -> None:
    ticks: list[float] = []
    lag = LoopLag(interval=0.02, on_tick=ticks.append)
    task = asyncio.create_task(lag.run())
    try:
        await asyncio.sleep(0.1)
        assert lag.seconds < 0.1
        time.sleep(0.3)  # noqa: ASYNC251 - blocking the loop is the point: a decoding backlog
        assert lag.seconds >= 0.25  # visible at once, before the next tick
        await asyncio.sleep(0.05)
        assert max(ticks) >= 0.25  # the late tick measured it
        await asyncio.sleep(0.1)
        assert lag.seconds < 0.1
    finally:
        task.cancel()


async def test_no_lag_before_the_first_tick() -> None:
    assert LoopLag().seconds == 0.0
