"""A server whose RED rollups follow the data at once, for the insight RPCs' tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
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
