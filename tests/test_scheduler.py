"""The leased job runner: one replica at a time per job, fenced by PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field

import psycopg
import pytest

from otlpd.scheduler import Connection, Scheduler


@dataclass
class RecordingJob:
    """Records when each of its runs started and ended, and on which backend."""

    name: str = "test-job"
    interval: float = 0.05
    seconds: float = 0.3
    fail_first: int = 0
    runs: list[tuple[float, float]] = field(default_factory=list)
    backends: list[int] = field(default_factory=list)
    running: asyncio.Event = field(default_factory=asyncio.Event)
    ran_thrice: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, conn: Connection) -> None:
        started = time.monotonic()
        self.backends.append(conn.info.backend_pid)
        self.running.set()
        await asyncio.sleep(self.seconds)
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("this round fails")
        self.runs.append((started, time.monotonic()))
        if len(self.runs) >= 3:
            self.ran_thrice.set()


async def test_two_schedulers_never_run_the_same_job_at_once(database_url: str) -> None:
    job = RecordingJob()
    one, two = Scheduler(database_url, [job]), Scheduler(database_url, [job])
    for _ in range(4):
        ran = await asyncio.gather(one.run_once(job), two.run_once(job))
        assert sorted(ran) == [False, True]
    assert len(job.runs) == 4
    ordered = sorted(job.runs)
    for (_, end), (start, _) in itertools.pairwise(ordered):
        assert start >= end


async def test_different_jobs_run_at_the_same_time(database_url: str) -> None:
    first, second = RecordingJob(name="a"), RecordingJob(name="b")
    scheduler = Scheduler(database_url, [first, second])
    ran = await asyncio.gather(scheduler.run_once(first), scheduler.run_once(second))
    assert list(ran) == [True, True]


async def test_a_failed_run_releases_the_job(database_url: str) -> None:
    job = RecordingJob(seconds=0.0, fail_first=1)
    one, two = Scheduler(database_url, [job]), Scheduler(database_url, [job])
    with pytest.raises(RuntimeError):
        await one.run_once(job)
    assert await two.run_once(job) is True


async def test_a_holder_whose_session_dies_loses_the_job(database_url: str) -> None:
    job = RecordingJob(seconds=5.0)
    one, two = Scheduler(database_url, [job]), Scheduler(database_url, [job])
    holder = asyncio.create_task(one.run_once(job))
    await asyncio.wait_for(job.running.wait(), 10)
    assert await two.run_once(RecordingJob(seconds=0.0)) is False
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (job.backends[0],))
    # PostgreSQL released the lock with the session, while the holder still "runs":
    # no lease outlives its session, and no clock decides when it expires.
    assert await two.run_once(RecordingJob(seconds=0.0)) is True
    assert not holder.done()
    holder.cancel()
    with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
        await holder


async def test_run_repeats_a_job_and_survives_a_failing_round(database_url: str) -> None:
    job = RecordingJob(seconds=0.0, interval=0.05, fail_first=1)
    task = asyncio.create_task(Scheduler(database_url, [job]).run())
    try:
        await asyncio.wait_for(job.ran_thrice.wait(), 10)
    finally:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(job.runs) >= 3
    assert len(job.backends) >= 4  # the failed round, then three good ones


async def test_a_slow_job_does_not_hold_back_the_others(database_url: str) -> None:
    slow = RecordingJob(name="slow", seconds=5.0, interval=0.05)
    fast = RecordingJob(name="fast", seconds=0.0, interval=0.05)
    task = asyncio.create_task(Scheduler(database_url, [slow, fast]).run())
    try:
        await asyncio.wait_for(fast.ran_thrice.wait(), 4)  # while the slow one still runs
    finally:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert slow.runs == []


async def test_a_job_keeps_its_connection_between_rounds_but_not_its_lock(
    database_url: str,
) -> None:
    job = RecordingJob(seconds=0.0, interval=0.05, fail_first=1)
    scheduler = Scheduler(database_url, [job])
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.wait_for(job.ran_thrice.wait(), 10)
        # Between rounds another replica may take the job: the lock ends with each round.
        other = RecordingJob(seconds=0.0)
        for _ in range(50):
            if await Scheduler(database_url, [other]).run_once(other):
                break
            await asyncio.sleep(0.01)
        assert other.backends, "the lock was never free between rounds"
    finally:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    failed, *good = job.backends
    assert len(set(good)) == 1  # one session for every round after the failed one
    assert failed not in good  # a failed round's session is not reused


async def test_a_slow_job_holds_no_connection_between_rounds(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("otlpd.scheduler.KEEP_CONNECTION_S", 0.2)
    job = RecordingJob(name="slow-job", seconds=0.0, interval=0.3)
    task = asyncio.create_task(Scheduler(database_url, [job]).run())
    try:
        await asyncio.wait_for(job.ran_thrice.wait(), 10)
        await asyncio.sleep(0.1)  # between two rounds
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                ("otlpd-job-slow-job",),
            ).fetchone()
    finally:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert row == (0,)
    assert len(set(job.backends)) == len(job.backends)  # a session of its own each round
