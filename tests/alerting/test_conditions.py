"""Span rules through TestRule: error ratios and latency percentiles of requests, read
from the spans and, once the RED rollups hold their minutes, from the rollups, with the
same answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import psycopg
import pytest

from alerting.proto import pb, pb_grpc
from otlpd.scheduler import Scheduler
from storage.postgres.rollups import SpanRollupJob
from tests.alerting.conftest import Project, alerting_server, duration, send_requests
from tests.conftest import RunningOtlpd

PROJECT = "shop"


@pytest.fixture
def api(database_url: str) -> Iterator[tuple[RunningOtlpd, Project]]:
    server = alerting_server(database_url, scheduler="off")  # the rollups run when told
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as channel:
            yield server, Project(pb_grpc.AlertServiceStub(channel), PROJECT)  # type: ignore[no-untyped-call]
    finally:
        server.stop()


def now(api: Project, condition: pb.SpanCondition) -> dict[str, float]:
    """The rule's value per series, evaluated once, now."""
    rule = pb.Rule(name="t", spans=condition, comparator=pb.Rule.GT, threshold=1e9)
    answer = api.TestRule(pb.TestRuleRequest(rule=rule))
    assert answer.errors == 0, answer.first_error
    return {",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "alertname"):
            s.values[-1].value for s in answer.series}  # fmt: skip


def test_error_ratio_and_latency_are_the_same_from_spans_and_from_rollups(
    api: tuple[RunningOtlpd, Project],
) -> None:
    server, project = api
    # Three minutes ago: whole minutes the rollups will hold once their job has run.
    send_requests(server, project=PROJECT, service="pay", total=40, errors=10, ago=180)
    send_requests(server, project=PROJECT, service="pay", total=10, errors=0, ago=180,
                  name="GET /health", duration_ns=400_000_000)  # fmt: skip
    send_requests(server, project=PROJECT, service="cart", total=5, errors=5, ago=180)
    errors = pb.SpanCondition(
        service="pay", measure=pb.SpanCondition.ERROR_RATIO, window=duration(600),
        group_by=["span.name"],
    )  # fmt: skip
    latency = pb.SpanCondition(
        service="pay", measure=pb.SpanCondition.LATENCY, quantile=0.9, window=duration(600)
    )
    before = (now(project, errors), now(project, latency))  # from the spans: no rollups yet
    assert not _rolled_up(server.database_url)
    job = SpanRollupJob(interval=1.0, delay=0.0)
    assert asyncio.run(Scheduler(server.database_url, [job]).run_once(job))
    assert _rolled_up(server.database_url)
    with psycopg.connect(server.database_url) as conn:  # what is read now, the rollups hold
        conn.execute("DELETE FROM spans")
    after = (now(project, errors), now(project, latency))  # the minutes from the rollups
    assert before == after
    ratios, p90 = after
    assert ratios == {"span.name=GET /pay": 0.25, "span.name=GET /health": 0.0}
    (value,) = p90.values()
    assert value == pytest.approx(0.4, rel=0.05)  # within the rollups' bucket width


def _rolled_up(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(
            "SELECT count(*) FROM operation_rollups WHERE project_id = %s", (PROJECT,)
        ).fetchone()
    return found is not None and found[0] >= 2
