"""Every query read runs under the nearer of the client's deadline and the server's budget,
and PostgreSQL stops the statement itself: nothing keeps running for a client that is gone.

A statement is made slow by holding a lock it needs (another session's ACCESS EXCLUSIVE
on ``logs``), so the tests do not depend on the machine's speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import psycopg
import pytest

from query.proto import pb, pb_grpc
from tests.conftest import PG_SERVER, RunningOtlpd


@contextmanager
def logs_locked(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database_url) as conn:
        # A server just started indexes its empty past partitions (CREATE INDEX
        # CONCURRENTLY, which waits for this transaction while the lock waits for the
        # index's): PostgreSQL breaks that deadlock by failing the lock. Take it again.
        for _ in range(50):
            try:
                conn.execute("LOCK TABLE logs IN ACCESS EXCLUSIVE MODE")
                break
            except psycopg.errors.DeadlockDetected:
                conn.rollback()
                time.sleep(0.1)
        else:
            raise AssertionError("could not lock logs: a deadlock every time")
        yield conn
        conn.rollback()


def waiting_query_backends(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """Query statements running in this test's database (another test's otlpd, killed,
    may leave one running elsewhere until its own statement_timeout).

    ``conn`` holds a transaction open (the lock), and within a transaction PostgreSQL
    answers pg_stat_activity from the snapshot it took at the first read: clear it, or a
    caller polling until a statement stops would see it running forever."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'otlpd-query' AND state = 'active'"
    ).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def stub(server: RunningOtlpd) -> tuple[grpc.Channel, pb_grpc.QueryServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}")
    return channel, pb_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]


def test_a_query_past_the_budget_is_resource_exhausted_with_advice(
    start_otlpd: Callable[..., RunningOtlpd],
) -> None:
    server = start_otlpd(query_budget="1s")
    channel, query = stub(server)
    with channel, logs_locked(server.database_url) as locker:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            query.SearchLogs(pb.SearchLogsRequest(), timeout=30)
        took = time.monotonic() - started
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "narrow the time range or add a filter" in caught.value.details()
        assert "logs" not in caught.value.details().replace("log ", "")  # no table named
        assert 0.9 < took < 10, took
        assert waiting_query_backends(locker) == 0


def test_the_client_deadline_cancels_the_statement(otlpd: RunningOtlpd) -> None:
    channel, query = stub(otlpd)
    with channel, logs_locked(otlpd.database_url) as locker:
        with pytest.raises(grpc.RpcError) as caught:
            query.SearchLogs(pb.SearchLogsRequest(), timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The statement does not outlive its client (the budget is 10 s): PostgreSQL was
        # told to stop it within the deadline, or psycopg cancelled it with the call.
        deadline = time.monotonic() + 3
        while waiting_query_backends(locker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting_query_backends(locker) == 0
    # And the server answers the next call at once.
    with grpc.insecure_channel(f"127.0.0.1:{otlpd.app.ports.query}") as again:
        answer = pb_grpc.QueryServiceStub(again).SearchLogs(  # type: ignore[no-untyped-call]
            pb.SearchLogsRequest(), timeout=5
        )
        assert list(answer.records) == []


def test_an_unreachable_store_is_unavailable_with_retry_info(otlpd: RunningOtlpd) -> None:
    """The query pool's connections are killed and the database refuses new ones: the
    answer is retryable and names nothing of ours."""
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        name = otlpd.database_url.rsplit("/", 1)[1]
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'otlpd-query' AND datname = %s",
                (name,),
            )
            channel, query = stub(otlpd)
            with channel, pytest.raises(grpc.RpcError) as caught:
                query.ListServices(pb.ListServicesRequest(), timeout=20)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            trailers = dict(caught.value.trailing_metadata() or ())
            assert "google.rpc.retryinfo-bin" in trailers
            assert "services" not in caught.value.details()
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
