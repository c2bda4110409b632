"""Several replicas on one database: each slot of each rule is evaluated once, and a
replica killed mid-``for`` leaves its pending timer to another, which fires it once."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import psycopg
import pytest

from alerting.proto import pb, pb_grpc
from query.proto import pb as query_pb
from tests.alerting.conftest import (
    FAST,
    Feeder,
    Project,
    Receiver,
    alerting_server,
    duration,
    event_kinds,
    wait_for,
    webhook_channel,
)
from tests.conftest import RunningOtlpd, free_port
from tests.test_main import base_env

PROJECT = "shop"


def api_of(server_query_port: int) -> tuple[grpc.Channel, Project]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server_query_port}")
    return channel, Project(pb_grpc.AlertServiceStub(channel), PROJECT)  # type: ignore[no-untyped-call]


def test_two_replicas_evaluate_every_rule_exactly_once_per_interval(database_url: str) -> None:
    one = alerting_server(database_url)
    two = alerting_server(database_url)
    try:
        channel, api = api_of(one.app.ports.query)
        with channel:
            for i in range(6):
                rule = pb.Rule(
                    name=f"r{i}",
                    metric=pb.MetricCondition(metric_name="nothing", window=duration(5)),
                    comparator=pb.Rule.GT,
                    interval=duration(1),
                )
                api.CreateRule(pb.CreateRuleRequest(rule=rule))
        seen: dict[str, list[tuple[object, int]]] = {}
        deadline = time.monotonic() + 6
        with psycopg.connect(database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                for rule_id, at, n in conn.execute(
                    "SELECT rule_id, last_eval_at, evaluations FROM alert_rule_schedule"
                ):
                    history = seen.setdefault(rule_id, [])
                    if not history or history[-1] != (at, n):
                        history.append((at, n))
                time.sleep(0.05)
            created = dict(conn.execute("SELECT rule_id, created_at FROM alert_rules").fetchall())
    finally:
        one.stop()
        two.stop()
    with psycopg.connect(database_url) as conn:
        total = conn.execute("SELECT sum(evaluations)::int FROM alert_rule_schedule").fetchone()
    assert total is not None
    for rule_id, history in seen.items():
        evaluated = [(at, n) for at, n in history if at is not None]
        # Each change is one more evaluation, of the slot one interval after the last.
        for (at0, n0), (at1, n1) in itertools.pairwise(evaluated):
            assert n1 == n0 + 1, history
            assert at1 - at0 == timedelta(seconds=1), history  # type: ignore[operator]
        first = evaluated[0][0]
        assert abs(first - created[rule_id]) < timedelta(seconds=0.1)  # type: ignore[operator]
        assert evaluated[-1][1] >= 5  # no slot skipped over 6 s
    ran = [s.metric("otlpd_alert_evaluations_total", {"outcome": "ok"}) for s in (one, two)]
    # Nothing dropped after evaluation. A replica stopped while a commit is in flight may
    # see it land without counting it (the count follows the commit): one per replica
    # (seen once: 50 counted, 51 committed).
    assert total[0] - 2 <= sum(ran) <= total[0]
    assert all(n > 0 for n in ran), ran  # both replicas took turns
    assert (
        sum(s.metric("otlpd_alert_evaluations_total", {"outcome": "fenced"}) for s in (one, two))
        == 0
    )


@pytest.fixture
def killable(database_url: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


def test_a_replica_killed_mid_for_leaves_the_timer_to_another_which_fires_once(
    database_url: str,
    tmp_path: Path,
    receiver: Receiver,
    killable: list[subprocess.Popen[bytes]],
) -> None:
    query_port = free_port()
    env = base_env(
        OTLPD_DATABASE_URL=database_url,
        OTLPD_GRPC_ADDR=f"127.0.0.1:{free_port()}",
        OTLPD_METRICS_ADDR=f"127.0.0.1:{free_port()}",
        OTLPD_QUERY_ADDR=f"127.0.0.1:{query_port}",
        **{f"OTLPD_{k.upper()}": v for k, v in FAST.items()},
    )
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(
        [sys.executable, "-m", "otlpd", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    killable.append(first)
    channel, api = api_of(query_port)
    with channel:
        wait_for(lambda: _answers(api), timeout=30)
        rule = api.CreateRule(
            pb.CreateRuleRequest(
                rule=pb.Rule(
                    name="SlowBurn",
                    metric=pb.MetricCondition(
                        metric_name="depth",
                        aggregation=query_pb.AGGREGATION_MAX,
                        window=duration(3),
                    ),
                    comparator=pb.Rule.GT,
                    threshold=10,
                    interval=duration(1),
                    channel_ids=[webhook_channel(api, receiver.url)],
                    **{"for": duration(4)},
                )
            )
        ).rule
    # The data goes through a second replica that does not evaluate (OTLPD_SCHEDULER=off).
    ingest = alerting_server(database_url, scheduler="off")
    second: RunningOtlpd | None = None
    feeder = Feeder(ingest, "depth", 50.0, project=PROJECT)
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            wait_for(lambda: _state(conn, rule.id) == "pending")
            (active_at,) = conn.execute("SELECT active_at FROM alert_state").fetchone()  # type: ignore[misc]
            time.sleep(1.0)
            os.kill(first.pid, signal.SIGKILL)  # mid-for: 1 s or so of 4 pending
            first.wait(10)
            second = alerting_server(database_url)
            channel, api = api_of(second.app.ports.query)
            with channel:
                wait_for(lambda: receiver.bodies("firing"), timeout=20)
                time.sleep(1.5)  # more evaluations while it fires
                kinds = event_kinds(api, rule.id)
            row = conn.execute("SELECT active_at, fired_at FROM alert_state").fetchone()
    finally:
        feeder.stop()
        ingest.stop()
        if second is not None:
            second.stop()
    assert kinds == ["PENDING", "FIRING"]
    assert row is not None and row[0] == active_at  # the timer the first replica started
    assert row[1] - active_at >= timedelta(seconds=4)
    assert len(receiver.bodies("firing")) == 1


def _answers(api: Project) -> bool:
    try:
        api.ListRules(pb.ListRulesRequest())
    except grpc.RpcError:
        return False
    return True


def _state(conn: psycopg.Connection[tuple[object, ...]], rule_id: str) -> object:
    found = conn.execute("SELECT state FROM alert_state WHERE rule_id = %s", (rule_id,)).fetchone()
    return None if found is None else found[0]
