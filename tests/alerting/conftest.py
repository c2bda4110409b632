"""One otlpd per module for the alerting API's tests, and stubs scoped to a project."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import psycopg
import pytest

from alerting.proto import pb_grpc
from tests.conftest import RunningOtlpd, start_otlpd_thread


@pytest.fixture(scope="module")
def alerting_otlpd(shared_database: str) -> Iterator[RunningOtlpd]:
    server = start_otlpd_thread(shared_database, scheduler="off")
    yield server
    server.stop()


class Project:
    """An AlertService stub whose every call names one project (x-otlpd-project)."""

    def __init__(self, stub: Any, project: str) -> None:
        self._stub = stub
        self.project = project

    def __getattr__(self, rpc: str) -> Callable[..., Any]:
        method = getattr(self._stub, rpc)

        def call(request: Any) -> Any:
            return method(request, metadata=(("x-otlpd-project", self.project),), timeout=10)

        return call


@pytest.fixture(scope="module")
def alert_stub(alerting_otlpd: RunningOtlpd) -> Iterator[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{alerting_otlpd.app.ports.query}") as channel:
        yield pb_grpc.AlertServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture
def project(alert_stub: Any, request: pytest.FixtureRequest) -> Project:
    """A project of its own for each test (the module shares one database)."""
    return Project(alert_stub, f"p-{request.node.name[:60]}")


@pytest.fixture
def other(alert_stub: Any, request: pytest.FixtureRequest) -> Project:
    return Project(alert_stub, f"o-{request.node.name[:60]}")


def refused(call: Callable[[], Any]) -> grpc.RpcError:
    """The error ``call`` raised (it must raise one)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value  # type: ignore[no-any-return]


def audit_rows(database_url: str, project: str) -> list[tuple[Any, ...]]:
    """(actor, action, subject, details) of the project's audit log, oldest first."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT actor, action, subject, details FROM audit_log WHERE project_id = %s"
            " ORDER BY entry_id",
            (project,),
        ).fetchall()
