"""The evaluator's fence, step by step: a claim lost to another replica, or a rule changed
under an evaluation, writes nothing of that evaluation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from google.protobuf import duration_pb2

from alerting import rules
from alerting.evaluator import AlertEvaluator, EvaluatorSettings
from alerting.proto import pb
from otlpd.instruments import Instruments
from storage.postgres import alert_config, alert_eval
from storage.postgres.migrate import migrate
from storage.postgres.reading import ReadPool

PROJECT = "shop"


@pytest.fixture
async def setup(database_url: str) -> AsyncIterator[tuple[AlertEvaluator, Any, Instruments]]:
    migrate(database_url)
    rule = pb.Rule(
        name="NoData",
        metric=pb.MetricCondition(metric_name="nothing"),
        comparator=pb.Rule.GT,
        no_data=pb.Rule.ALERTING,
        interval=duration_pb2.Duration(seconds=60),
    )
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    await alert_config.insert_rule(conn, PROJECT, rules.validate(rule, PROJECT, "0" * 16))
    pool = ReadPool(database_url, max_size=1)
    await pool.open()
    metrics = Instruments()
    yield AlertEvaluator(pool, EvaluatorSettings(), metrics), conn, metrics
    await pool.close()
    await conn.close()


async def _blocked(dsn: str, pid: int) -> None:
    """Until backend ``pid`` waits for a lock (polled in autocommit: pg_stat_activity is a
    snapshot per transaction)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as watch:
        for _ in range(250):
            cursor = await watch.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            )
            row = await cursor.fetchone()
            if row and row[0] == "Lock":
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the evaluation never waited for the rule's row")


async def _one(conn: Any, sql: str) -> Any:
    cursor = await conn.execute(sql)
    row = await cursor.fetchone()
    return row[0] if row else None


async def test_a_claim_taken_over_meanwhile_writes_nothing(
    setup: tuple[AlertEvaluator, Any, Instruments],
) -> None:
    evaluator, conn, metrics = setup
    claims = await alert_eval.claim(conn, owner=evaluator.owner, lease_s=30, limit=10)
    assert len(claims) == 1
    # The lease ran out and another replica claimed the rule while this one was stalled.
    await conn.execute(
        "UPDATE alert_rule_schedule SET fence = fence + 1, lease_owner = 'other:1:x'"
    )
    await evaluator._evaluate(conn, claims, {})
    assert await _one(conn, "SELECT count(*) FROM alert_state") == 0
    assert await _one(conn, "SELECT count(*) FROM alert_events") == 0
    assert await _one(conn, "SELECT evaluations FROM alert_rule_schedule") == 0
    assert await _one(conn, "SELECT lease_owner FROM alert_rule_schedule") == "other:1:x"
    fenced = metrics.registry.get_sample_value(
        "otlpd_alert_evaluations_total", {"outcome": "fenced"}
    )
    assert fenced == 1


async def test_a_rule_changed_under_an_evaluation_is_given_back_at_once(
    setup: tuple[AlertEvaluator, Any, Instruments],
) -> None:
    evaluator, conn, _ = setup
    claims = await alert_eval.claim(conn, owner=evaluator.owner, lease_s=30, limit=10)
    # UpdateRule holds the rule's row while the evaluation runs its query, and commits a
    # new version before the evaluation's transaction can check it.
    other = await psycopg.AsyncConnection.connect(conn.info.dsn, autocommit=False)
    async with other:
        await other.execute("SELECT 1 FROM alert_rules FOR UPDATE")
        running = asyncio.create_task(evaluator._evaluate(conn, claims, {}))
        await _blocked(conn.info.dsn, conn.info.backend_pid)
        await other.execute("UPDATE alert_rules SET version = version + 1")
        await other.commit()
    await running
    assert await _one(conn, "SELECT count(*) FROM alert_state") == 0
    assert await _one(conn, "SELECT lease_owner FROM alert_rule_schedule") is None
    # Due again at once, evaluated as the rule now is.
    claims = await alert_eval.claim(conn, owner=evaluator.owner, lease_s=30, limit=10)
    await evaluator._evaluate(conn, claims, {})
    assert await _one(conn, "SELECT state FROM alert_state") == "firing"
    assert await _one(conn, "SELECT evaluations FROM alert_rule_schedule") == 1
    assert await _one(conn, "SELECT lease_owner FROM alert_rule_schedule") is None
    # Claimed and committed: not due again before its next slot, a minute on.
    assert await alert_eval.claim(conn, owner=evaluator.owner, lease_s=30, limit=10) == []
