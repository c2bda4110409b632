"""The alert evaluator: a job of otlpd's scheduler that evaluates every due rule once per
interval, whatever the number of replicas (migration 0011's header: the fence).

A round holds the job's advisory lock (``otlpd.scheduler``), claims due rules with a
lease (``storage.postgres.alert_eval.claim``, committed at once), runs their queries
(``alerting.conditions``) through a ``QueryCall`` on a read pool of its own, a few at a
time, and writes each rule's results in one transaction on the job's connection: it
first checks that the claim still holds (fence, lease owner, rule version), then runs
the state machine (``alerting.machine``) over the states it locked, writes the states,
their events, incidents and outbox rows, and moves the schedule to the next slot. A
replica killed anywhere in between leaves either nothing or everything of a slot
written, and every pending timer where it was.

Evaluation times are the schedule's slots, not the wall clock: a rule made at 12:00:07
with a 30 s interval is evaluated "at" 12:00:07, 12:00:37, ... however late a round
runs, so a backtest (TestRule) that steps over the same slots reads the same windows.
A rule whose slots were missed (every replica down) is evaluated at the latest slot
past, not at each missed one, as Prometheus skips missed evaluations.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from alerting import conditions, ids, machine, payloads, rules, templates
from alerting.conditions import Answer, Condition, LogRule, MetricRule
from alerting.matchers import LabelMatcher, from_json, matches
from alerting.proto import pb
from otlpd.errors import OtlpdError
from otlpd.instruments import Instruments
from query.call import QueryCall
from storage.api import StorageError
from storage.postgres import alert_config, alert_eval
from storage.postgres.alert_config import RuleRecord
from storage.postgres.alert_eval import Claim
from storage.postgres.alert_store import Connection
from storage.postgres.reading import ReadPool

log = logging.getLogger(__name__)

JOB_NAME: Final = "alert_evaluator"
# Metric rules of one project are read together, this many per QueryMetrics read (its
# two round trips, whatever the number of rules): bench-alerts measured 1,000 rules in
# 10.8 s one by one and 3-11 s in batches of 25 on a shared box (docs/benchmarks.md).
METRIC_BATCH: Final = 25
# otlpd_alerts{state} counts every project's alert_state rows: a scan, so not every round.
COUNT_EVERY: Final = 15.0


@dataclass(frozen=True, slots=True)
class EvaluatorSettings:
    """What the evaluator takes from otlpd's Config."""

    poll: float = 1.0  # OTLPD_ALERT_POLL
    lease: float = 30.0  # OTLPD_ALERT_LEASE
    batch: int = 100  # OTLPD_ALERT_BATCH
    concurrency: int = 4  # OTLPD_ALERT_CONCURRENCY
    budget: float = 10.0  # OTLPD_QUERY_BUDGET
    retry_after: float = 1.0
    external_url: str = ""  # OTLPD_EXTERNAL_URL
    flap_firings: int = 3  # OTLPD_ALERT_FLAP_FIRINGS
    flap_window: float = 3600.0  # OTLPD_ALERT_FLAP_WINDOW


def owner_id() -> str:
    """This replica, as a lease names it: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def settings_of(
    rule: pb.Rule, record: RuleRecord, condition: Condition, config: EvaluatorSettings
) -> machine.Settings:
    """The state machine's view of a rule."""
    return machine.Settings(
        rule_id=record.rule_id,
        name=record.name,
        version=record.version,
        labels=record.labels,
        annotations={k: templates.parse(v) for k, v in record.annotations.items()},
        comparator=record.comparator,
        threshold=record.threshold if record.threshold is not None else 0.0,
        for_s=record.for_s,
        keep_firing_for_s=record.keep_firing_for_s,
        repeat_interval_s=record.repeat_interval_s,
        no_data=record.no_data,
        on_error=record.on_error,
        absent_labels=condition.absent_labels(),
        notify=bool(record.channel_ids),
        flap_firings=config.flap_firings,
        flap_window_s=config.flap_window,
        external_url=config.external_url,
    )


async def answer(condition: Condition, call: QueryCall, times: Sequence[datetime]) -> list[Answer]:
    """The condition's answers, or one error answer per time when its query failed (a
    store fault, the budget spent, a value PostgreSQL refused): ``on_error`` decides."""
    try:
        return await condition.at(call, times)
    except (OtlpdError, StorageError) as exc:
        return [Answer(error=str(exc) or type(exc).__name__) for _ in times]


def series_of(found: Sequence[Any]) -> machine.Series:
    """An ``alert_state`` row (``alert_eval.STATE_COLUMNS``) as the machine's Series."""
    return machine.Series(
        fingerprint=found[0],
        labels=found[1],
        annotations=found[2],
        state=found[3],
        value=found[4],
        active_at=found[5],
        fired_at=found[6],
        resolved_at=found[7],
        last_evaluated_at=found[8],
        keep_firing_until=found[9],
        last_notified_at=found[10],
        flapping=found[11],
        flapping_since=found[12],
        transitions=tuple(found[13] or ()),
        acknowledged_at=found[14],
        acknowledged_by=found[15],
        acknowledgement=found[16],
        incident_id=found[17],
        rule_version=found[18],
    )


def _row(series: machine.Series) -> tuple[Any, ...]:
    return (
        series.fingerprint,
        series.labels,
        series.annotations,
        series.state,
        series.value,
        series.active_at,
        series.fired_at,
        series.resolved_at,
        series.last_evaluated_at,
        series.keep_firing_until,
        series.last_notified_at,
        series.flapping,
        series.flapping_since,
        list(series.transitions),
        series.acknowledged_at,
        series.acknowledged_by,
        series.acknowledgement,
        series.incident_id,
        series.rule_version,
    )


def slot_of(claim: Claim, interval_s: float) -> datetime:
    """The latest slot at or before now: missed slots are skipped, not replayed."""
    behind = (claim.now - claim.next_eval_at).total_seconds()
    if behind <= 0:
        return claim.next_eval_at
    return claim.next_eval_at + timedelta(seconds=(behind // interval_s) * interval_s)


@dataclass(frozen=True, slots=True)
class _Evaluation:
    """One claimed rule being evaluated at one slot."""

    claim: Claim
    record: RuleRecord
    condition: Condition
    at: datetime


class _Fenced(Exception):
    """The claim was lost (the lease expired and another replica took the rule, or the
    rule changed or went): roll back, as if this evaluation never happened."""


class AlertEvaluator:
    """The ``alert_evaluator`` job (an ``otlpd.scheduler.Job``)."""

    name = JOB_NAME

    def __init__(
        self, pool: ReadPool, settings: EvaluatorSettings, instruments: Instruments | None = None
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._metrics = instruments
        self.owner = owner_id()
        self.interval = settings.poll
        self._counted = -COUNT_EVERY

    async def run(self, conn: Connection) -> None:
        """Claims and evaluates due rules until none is due (or half a lease has passed:
        the claims of the next batch would otherwise outlive their lease)."""
        started = time.monotonic()
        silences: dict[str, list[tuple[LabelMatcher, ...]]] = {}
        while time.monotonic() - started < self._settings.lease / 2:
            claims = await alert_eval.claim(
                conn, owner=self.owner, lease_s=self._settings.lease, limit=self._settings.batch
            )
            if not claims:
                break
            await self._evaluate(conn, claims, silences)
        if self._metrics is not None and time.monotonic() - self._counted >= COUNT_EVERY:
            await self._count_states(conn)
            self._counted = time.monotonic()

    async def _evaluate(
        self,
        conn: Connection,
        claims: Sequence[Claim],
        silences: dict[str, list[tuple[LabelMatcher, ...]]],
    ) -> None:
        """Queries the claimed rules (metric rules of a project in batches, the others one
        by one), ``OTLPD_ALERT_CONCURRENCY`` queries at a time, and writes each rule's
        results as soon as its answer is there, one transaction at a time on ``conn``."""
        records = await alert_eval.rules(conn, [(c.project, c.rule_id) for c in claims])
        gate = asyncio.Semaphore(self._settings.concurrency)
        writing = asyncio.Lock()
        items: list[tuple[_Evaluation, pb.Rule]] = []
        for claim in claims:
            record = records.get((claim.project, claim.rule_id))
            if record is None:
                continue  # deleted since the claim: its schedule row went with it
            rule = rules.to_proto(record)
            condition = conditions.of(rule, claim.project)
            items.append(
                (_Evaluation(claim, record, condition, slot_of(claim, record.interval_s)), rule)
            )

        async def write(item: tuple[_Evaluation, pb.Rule], found: Answer, queried: float) -> None:
            evaluation, rule = item
            began = time.perf_counter() - queried
            try:
                async with writing:
                    began = time.perf_counter() - queried  # the time it took, not the wait
                    outcome = await self._commit(
                        conn, evaluation, rule, found, silences=silences, began=began
                    )
            except Exception as exc:  # a bug of ours: give the rule back, log, go on
                claim, record = evaluation.claim, evaluation.record
                log.exception("evaluating rule %s of %s failed", claim.rule_id, claim.project)
                async with writing:
                    await alert_eval.release(
                        conn,
                        claim,
                        next_eval_at=evaluation.at + timedelta(seconds=record.interval_s),
                        error=f"internal error ({type(exc).__name__})",
                    )
                outcome = "failed"
            if self._metrics is not None:
                self._metrics.alert_evaluations.labels(outcome).inc()
                self._metrics.alert_evaluation_seconds.observe(time.perf_counter() - began)

        async def alone(item: tuple[_Evaluation, pb.Rule]) -> None:
            evaluation = item[0]
            async with gate:
                began = time.perf_counter()
                call = self._call(evaluation.claim.project)
                found = (await answer(evaluation.condition, call, [evaluation.at]))[0]
                queried = time.perf_counter() - began
            await write(item, found, queried)

        async def batch(project: str, batch: list[tuple[_Evaluation, pb.Rule]]) -> None:
            async with gate:
                began = time.perf_counter()
                asked = [(e.condition, e.at) for e, _ in batch]
                try:
                    answers = await conditions.metric_answers(self._call(project), asked)  # type: ignore[arg-type]
                except (OtlpdError, StorageError):
                    answers = None  # one rule's query failed: each on its own, to know which
                queried = (time.perf_counter() - began) / len(batch)
            if answers is None:
                for item in batch:
                    await alone(item)
                return
            for item, found in zip(batch, answers, strict=True):
                await write(item, found, queried)

        metric: dict[str, list[tuple[_Evaluation, pb.Rule]]] = {}
        async with asyncio.TaskGroup() as group:
            for item in items:
                if isinstance(item[0].condition, MetricRule):
                    metric.setdefault(item[0].claim.project, []).append(item)
                else:
                    group.create_task(alone(item))
            for project, found in metric.items():
                for i in range(0, len(found), METRIC_BATCH):
                    group.create_task(batch(project, found[i : i + METRIC_BATCH]))

    def _call(self, project: str) -> QueryCall:
        return QueryCall(project, self._pool, self._settings.budget, self._settings.retry_after)

    async def _silenced(
        self, conn: Connection, project: str, cache: dict[str, list[tuple[LabelMatcher, ...]]]
    ) -> list[tuple[LabelMatcher, ...]]:
        if project not in cache:
            found = await alert_config.active_silences(conn, project)
            cache[project] = [from_json(s.matchers) for s in found]
        return cache[project]

    async def _commit(
        self,
        conn: Connection,
        evaluation: _Evaluation,
        rule: pb.Rule,
        found: Answer,
        *,
        silences: dict[str, list[tuple[LabelMatcher, ...]]],
        began: float,
    ) -> str:
        """Writes one evaluation under the fence; its outcome (ok, error, fenced)."""
        claim, record, condition, at = (
            evaluation.claim,
            evaluation.record,
            evaluation.condition,
            evaluation.at,
        )
        project = claim.project
        settings = settings_of(rule, record, condition, self._settings)
        muting = await self._silenced(conn, project, silences)
        try:
            async with conn.transaction():
                if not await alert_eval.fenced(conn, claim, self.owner, record.version):
                    raise _Fenced
                prior = {
                    s.fingerprint: s
                    for s in map(series_of, await alert_eval.states(conn, project, record.rule_id))
                }
                step = machine.evaluate(
                    settings,
                    at,
                    found,
                    prior,
                    silenced=lambda labels: any(matches(m, labels) for m in muting),
                )
                await self._write(conn, evaluation, step)
                await alert_eval.finish(
                    conn,
                    claim,
                    evaluated_at=at,
                    next_eval_at=at + timedelta(seconds=record.interval_s),
                    seconds=time.perf_counter() - began,
                    error=found.error,
                )
        except _Fenced:
            # Another replica holds the rule now, or it changed (UpdateRule made it due
            # again): either way this evaluation never happened. A claim still ours (the
            # rule changed) is given back at once rather than left to its lease.
            log.info("rule %s of %s: claim lost; evaluation dropped", claim.rule_id, project)
            await alert_eval.release(conn, claim, next_eval_at=None, error=None)
            return "fenced"
        return "ok" if found.error is None else "error"

    async def _write(self, conn: Connection, evaluation: _Evaluation, step: machine.Step) -> None:
        record, at = evaluation.record, evaluation.at
        project, rule_id = evaluation.claim.project, record.rule_id
        if step.kept_last:
            return
        series = step.series
        touched: set[str] = set()
        for fp in step.fired:
            s = series[fp]
            key = payloads.group_key(rule_id, s.labels, record.incident_group_by)
            labels = payloads.group_labels(record.name, s.labels, record.incident_group_by)
            title = " ".join(
                [record.name, *(f"{k}={v}" for k, v in labels.items() if k != "alertname")]
            )
            incident_id, _ = await alert_eval.join_incident(
                conn,
                project,
                new_id=ids.new_id(),
                rule_id=rule_id,
                group_key=key,
                group_labels={k: v for k, v in labels.items() if k != "alertname"},
                title=title,
                at=at,
            )
            series[fp] = replace(s, incident_id=incident_id)
            step.changed.add(fp)
            await alert_eval.add_entry(
                conn,
                project,
                incident_id,
                kind="alert_firing",
                text=_describe(s),
                alert=(rule_id, fp),
            )
        for fp in step.resolved:
            s = series[fp]
            if s.incident_id is not None:
                touched.add(s.incident_id)
                await alert_eval.add_entry(
                    conn,
                    project,
                    s.incident_id,
                    kind="alert_resolved",
                    text=_describe(s),
                    alert=(rule_id, fp),
                )
        await alert_eval.write_states(
            conn,
            project,
            rule_id,
            [_row(series[fp]) for fp in sorted(step.changed) if fp in series],
        )
        await alert_eval.delete_states(conn, project, rule_id, step.deleted)
        await alert_eval.insert_events(
            conn,
            project,
            rule_id,
            [(e.fingerprint, e.labels, e.kind, e.from_state, e.to_state, e.value, e.at, e.text)
             for e in step.events],
        )  # fmt: skip
        await alert_eval.resolve_quiet_incidents(conn, project, sorted(touched))
        if step.notices:
            await self._enqueue(conn, evaluation, step)

    async def _enqueue(self, conn: Connection, evaluation: _Evaluation, step: machine.Step) -> None:
        record, condition, at = evaluation.record, evaluation.condition, evaluation.at
        project, rule_id = evaluation.claim.project, record.rule_id
        channels = await alert_eval.channels(conn, project, record.channel_ids)
        if not channels:
            return
        groups: dict[tuple[str, str], list[machine.Notice]] = {}
        for notice in step.notices:
            s = step.series[notice.fingerprint]
            key = payloads.group_key(rule_id, s.labels, record.incident_group_by)
            groups.setdefault((notice.status, key), []).append(notice)
        for (status, key), notices in sorted(groups.items()):
            alerts = []
            for notice in notices:
                s = step.series[notice.fingerprint]
                annotations = dict(s.annotations)
                if notice.reason == "flapping":
                    annotations[machine.FLAPPING_ANNOTATION] = (
                        f"fired more than {self._settings.flap_firings} times in "
                        f"{templates.humanize_duration(self._settings.flap_window)}; "
                        "no more notifications until it settles"
                    )
                if status == "firing" and isinstance(condition, LogRule):
                    lines = await condition.examples(self._call(project), at, s.labels)
                    if lines:
                        annotations[payloads.EXAMPLES_ANNOTATION] = "\n".join(
                            f"{x['time']} {x['severity']} {x['service']}: {x['body']}"
                            for x in lines
                        )
                alerts.append(
                    payloads.AlertView(
                        s.fingerprint,
                        s.labels,
                        annotations,
                        s.fired_at,
                        s.resolved_at if status == "resolved" else None,
                    )
                )
            first = step.series[notices[0].fingerprint]
            incident_id = first.incident_id
            labels = payloads.group_labels(record.name, first.labels, record.incident_group_by)
            stamp = payloads.rfc3339(at)
            for channel in channels:
                document = payloads.webhook(
                    status=status,
                    receiver=channel.name,
                    group_key=key,
                    group_labels=labels,
                    alerts=alerts,
                    external_url=self._settings.external_url,
                    rule_id=rule_id,
                )
                await alert_eval.enqueue(
                    conn,
                    project,
                    channel_id=channel.channel_id,
                    rule_id=rule_id,
                    incident_id=incident_id,
                    group_key=key,
                    alert_status=status,
                    fingerprints=[a.fingerprint for a in alerts],
                    dedup_key=f"{key}/{status}/{stamp}",
                    payload=document,
                )

    async def _count_states(self, conn: Connection) -> None:
        assert self._metrics is not None
        found = await conn.execute(
            "SELECT state, count(*) FROM alert_state GROUP BY state"  # every project
        )
        counts: Mapping[str, int] = {str(r[0]): int(r[1]) for r in await found.fetchall()}
        for state in ("inactive", "pending", "firing"):
            self._metrics.alerts.labels(state).set(counts.get(state, 0))


def _describe(series: machine.Series) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(series.labels.items()))
    value = "" if series.value is None else f" value {templates.go_float(series.value)}"
    return f"{{{labels}}}{value}"
