"""Servers for the query tests: one whose RED rollups follow the data at once (the
insight RPCs), one with a cold tier that tiers on demand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from query.proto import pb, pb_grpc
from tests.conftest import RunningOtlpd, start_otlpd_thread


@pytest.fixture(scope="module")
def rolling_otlpd(shared_database: str) -> Iterator[RunningOtlpd]:
    """One otlpd for the module, rolling up every 0.2 s with no delay."""
    server = start_otlpd_thread(shared_database, rollup_delay="0", rollup_interval="0.2")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rolling_query(rolling_otlpd: RunningOtlpd) -> Iterator[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{rolling_otlpd.app.ports.query}") as channel:
        yield pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]


def wait_rolled_up(query: Any, until_ns: int, project: str = "default") -> None:
    """Until the project's rollups are final past ``until_ns`` (what was sent before)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = query.GetServiceStats(pb.GetServiceStatsRequest(project_id=project, limit=1))
        until = answer.complete_until.seconds * 10**9 + answer.complete_until.nanos
        if until >= until_ns:
            return
        time.sleep(0.1)
    raise AssertionError("the rollups did not catch up within 30 s")


# --- a server with a cold tier, and tiering on demand -------------------------------------

HOUR_NS = 3600 * 10**9
ACCEPT_PAST = 53 * 3600.0  # seconds: the server takes records this old, as tiering knows
# An hour 50-51 h back: past the default 48 h hot retention of spans and logs, inside the
# accepted window these servers take (53 h).
OLD_HOUR_NS = (time.time_ns() - 50 * HOUR_NS) // HOUR_NS * HOUR_NS


@dataclass
class ColdTierServer:
    """A running otlpd whose cold tier is ``store_url``; ``tier()`` runs one tiering pass
    as the scheduler would, and says what it moved: spans and logs of ``OLD_HOUR_NS`` and
    the hour after it (a hot retention of 48-49 h, counted from the end of that second
    hour, so that an hour turning between the module's import and the pass moves nothing
    more), metric points older than 2 h."""

    server: RunningOtlpd
    store_url: str
    query: Any

    def tier(self) -> Any:
        from otlpd.jobs import tiered_spans
        from otlpd.scheduler import Scheduler
        from storage.objectstore import open_store
        from storage.postgres.tiering import TierJob

        hot = (time.time_ns() - (OLD_HOUR_NS + 2 * HOUR_NS)) / 1e9
        job = TierJob(
            self.server.database_url,
            lambda: open_store(self.store_url),
            {"spans": hot, "logs": hot, "metric_points": 2 * 3600.0},
            interval=60,
            before_drop=tiered_spans(ACCEPT_PAST),
        )
        assert asyncio.run(Scheduler(self.server.database_url, [job]).run_once(job))
        return job.last

    def roll_up(self) -> None:
        """One round of the RED rollups with no delay, as the scheduler would run it (the
        server's own rounds are an hour apart)."""
        from otlpd.scheduler import Scheduler
        from storage.postgres.rollups import SpanRollupJob

        job = SpanRollupJob(delay=0)
        deadline = time.monotonic() + 30
        while not asyncio.run(Scheduler(self.server.database_url, [job]).run_once(job)):
            assert time.monotonic() < deadline, "the rollups' lock stayed taken for 30 s"
            time.sleep(0.1)


@pytest.fixture
def cold_tier(database_url: str, tmp_path: Path) -> Iterator[ColdTierServer]:
    """otlpd over a fresh database, its cold tier a directory, taking records 53 h old."""
    store_url = (tmp_path / "cold").as_uri()
    server = start_otlpd_thread(
        database_url,
        accept_past=f"{ACCEPT_PAST:g}s",
        cold_url=store_url,
        rollup_interval="1h",
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as channel:
            yield ColdTierServer(server, store_url, pb_grpc.QueryServiceStub(channel))  # type: ignore[no-untyped-call]
    finally:
        server.stop()


def without_ids(message: Any) -> Any:
    """A copy of an answer with log record ids and cold-read counts cleared: the two things
    that tell the tiers apart."""
    copy = type(message)()
    copy.CopyFrom(message)
    if copy.DESCRIPTOR.fields_by_name.get("cold") is not None:
        copy.ClearField("cold")
    _clear_ids(copy)
    return copy


def _clear_ids(message: Any) -> None:
    if message.DESCRIPTOR.full_name == "otlpd.query.v1.LogRecord":
        message.id = ""
    if message.DESCRIPTOR.fields_by_name.get("next_page_token") is not None:
        message.next_page_token = ""
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None or descriptor.message_type.GetOptions().map_entry:
            continue
        if descriptor.is_repeated:
            for item in value:
                _clear_ids(item)
        else:
            _clear_ids(value)
