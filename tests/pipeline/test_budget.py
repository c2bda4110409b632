"""The decode budget: admits request bytes up to its limit, in arrival order, and refuses
retryably when no room is made in time."""

from __future__ import annotations

import asyncio
import time

import pytest

from otlpd.errors import Overloaded
from otlpd.instruments import Instruments
from otlpd.pipeline.budget import DecodeBudget


def budget(limit: int = 100, reservation: int = 40, wait: float = 0.2) -> DecodeBudget:
    return DecodeBudget(limit, reservation, wait, retry_after=1.5, instruments=Instruments())


async def test_the_budget_admits_up_to_its_limit_then_refuses_after_the_wait() -> None:
    b = budget(wait=0.05)
    await b.acquire(60)
    await b.acquire(40)
    assert b.used == 100
    started = time.monotonic()
    with pytest.raises(Overloaded) as refused:
        await b.acquire(1)
    assert time.monotonic() - started >= 0.05
    assert refused.value.retry_after == 1.5
    assert "retry later" in str(refused.value)
    assert b.waiting == 0 and b.used == 100


async def test_a_waiting_request_gets_the_room_given_back() -> None:
    b = budget(wait=5)
    await b.acquire(b.reservation)  # a body being received, size unknown
    await b.acquire(60)
    waiter = asyncio.ensure_future(b.acquire(30))
    await asyncio.sleep(0.01)
    assert not waiter.done() and b.waiting == 1
    b.resize(b.reservation, 10)  # its size is known now: 10 bytes, not 40
    await asyncio.wait_for(waiter, 1)
    assert b.used == 10 + 60 + 30 and b.waiting == 0


async def test_waiters_are_served_in_arrival_order() -> None:
    b = budget(wait=5)
    await b.acquire(100)
    order: list[int] = []

    async def take(size: int) -> None:
        await b.acquire(size)
        order.append(size)

    big, small = asyncio.ensure_future(take(90)), asyncio.ensure_future(take(5))
    await asyncio.sleep(0.01)
    b.release(10)  # room for the small one, not the big one: the small one waits its turn
    await asyncio.sleep(0.01)
    assert order == []
    b.release(90)
    await asyncio.wait_for(asyncio.gather(big, small), 1)
    assert order == [90, 5] and b.used == 95


async def test_an_empty_budget_admits_a_request_larger_than_itself() -> None:
    b = budget(limit=10, reservation=1000)
    assert b.reservation == 10  # a body being received is never charged beyond the limit
    await b.acquire(500)
    assert b.used == 500
    b.release(500)
    assert b.used == 0


async def test_a_waiter_that_goes_away_leaves_nothing_behind() -> None:
    b = budget(wait=5)
    await b.acquire(100)
    gone = asyncio.ensure_future(b.acquire(50))
    after = asyncio.ensure_future(b.acquire(50))
    await asyncio.sleep(0.01)
    gone.cancel()  # the client's deadline passed while it waited
    with pytest.raises(asyncio.CancelledError):
        await gone
    b.release(100)
    await asyncio.wait_for(after, 1)
    assert b.used == 50 and b.waiting == 0


async def test_no_wait_refuses_at_once() -> None:
    b = budget(wait=0)
    await b.acquire(100)
    with pytest.raises(Overloaded):
        await b.acquire(1)
