"""TestRule: a rule, saved or not, evaluated now or over a past range (a backtest), with
the values and the transitions it would have gone through; nobody is notified and
nothing is written.

A backtest runs the evaluator's own parts: the rule's query (``alerting.conditions``,
several evaluation times per round trip) and the state machine (``alerting.machine``),
from no state at ``start_time``, stepping at the rule's interval (or ``step``). Started
at a live rule's first slot (its ``created_at``) and stepped at its interval, it reads
the windows the live evaluations read and so goes through the same transitions, at the
same times, with the same values, provided the data had arrived when the live
evaluation ran. Silences and acknowledgements do not change transitions, only
notifications, so they play no part here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

from alerting import conditions, convert, machine, rules
from alerting.evaluator import EvaluatorSettings, answer, settings_of
from alerting.ids import looks_like_id
from alerting.labels import alert_id
from alerting.proto import pb
from otlpd.errors import BadArgument, NotFound
from query import arguments
from query.call import QueryCall
from query.proto import pb as query_pb
from query.scope import Caller
from storage.postgres import alert_config
from storage.postgres.alert_store import AlertStore
from storage.postgres.reading import ReadPool

MAX_EVALUATIONS: Final = 11_000
# Evaluation times per QueryCall: one round trip for metric, log and span rules, each
# call within the query budget of its own.
CHUNK: Final = 250
_STATES: Final = {
    "inactive": pb.ALERT_STATE_INACTIVE,
    "pending": pb.ALERT_STATE_PENDING,
    "firing": pb.ALERT_STATE_FIRING,
}
_KINDS: Final = {
    "pending": pb.AlertEvent.PENDING,
    "firing": pb.AlertEvent.FIRING,
    "resolved": pb.AlertEvent.RESOLVED,
    "cancelled": pb.AlertEvent.CANCELLED,
    "flapping": pb.AlertEvent.FLAPPING,
    "settled": pb.AlertEvent.SETTLED,
}


class Plan(NamedTuple):
    """When a test evaluates: its times, oldest first, and the step between them (None
    for the one evaluation of a test without ``start_time``)."""

    times: list[datetime]
    step_ns: int | None


def plan(request: pb.TestRuleRequest, interval_s: float, now_ns: int) -> Plan:
    """The evaluation times the request asks for.

    Without ``step`` a backtest steps at the rule's interval, or, where that would make
    more than ``MAX_EVALUATIONS``, at the smallest multiple of it that does not: a 2 s
    rule backtested over a day steps every 8 s instead of being refused. A ``step`` the
    caller gave is kept, and refused if it makes too many."""
    end_ns = (
        arguments.timestamp_ns(request.end_time, "end_time")
        if request.HasField("end_time")
        else now_ns
    )
    epoch = datetime.fromtimestamp(0, UTC)
    if not request.HasField("start_time"):
        return Plan([epoch + timedelta(microseconds=end_ns // 1000)], None)
    start_ns = arguments.timestamp_ns(request.start_time, "start_time")
    if end_ns < start_ns:
        raise BadArgument("end_time", "must not be before start_time")
    span_ns = end_ns - start_ns
    if request.HasField("step"):
        step_ns = arguments.duration_ns(request.step, "step")
        if step_ns < 10**9:
            raise BadArgument("step", "must be at least 1s")
        count = span_ns // step_ns + 1
        if count > MAX_EVALUATIONS:
            raise BadArgument(
                "step", f"gives {count} evaluations; at most {MAX_EVALUATIONS}: use a larger step"
            )
    else:
        step_ns = round(interval_s * 1e9)
        # ceil(span / (step * (MAX - 1))) steps of the interval: at most MAX evaluations
        step_ns *= max(1, -(-span_ns // (step_ns * (MAX_EVALUATIONS - 1))))
        count = span_ns // step_ns + 1
    at = [epoch + timedelta(microseconds=(start_ns + i * step_ns) // 1000) for i in range(count)]
    return Plan(at, step_ns)


class TestRuleCall:
    """The TestRule RPC."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, store: AlertStore, pool: ReadPool, settings: EvaluatorSettings) -> None:
        self._store = store
        self._pool = pool
        self._settings = settings

    async def _rule(self, caller: Caller, request: pb.TestRuleRequest) -> alert_config.RuleRecord:
        if request.WhichOneof("target") == "rule_id":
            found = None
            if looks_like_id(request.rule_id):
                async with self._store.transaction() as conn:
                    found = await alert_config.get_rule(conn, caller.project, request.rule_id)
            if found is None:
                raise NotFound(f"no rule with id {request.rule_id!r}")
            return found
        if request.WhichOneof("target") != "rule":
            raise BadArgument("rule", "rule_id or rule is required")
        return rules.validate(request.rule, caller.project, "")

    async def __call__(self, caller: Caller, request: pb.TestRuleRequest) -> Any:
        record = await self._rule(caller, request)
        at, step_ns = plan(request, record.interval_s, time.time_ns())
        rule = rules.to_proto(record)
        condition = conditions.of(rule, caller.project)
        settings = settings_of(rule, record, condition, self._settings)
        settings = machine.Settings(**{**_fields(settings), "notify": False})
        states: dict[int, machine.Series] = {}
        values: dict[int, list[query_pb.Sample]] = {}
        labels: dict[int, dict[str, str]] = {}
        response = pb.TestRuleResponse(evaluations=len(at))
        if step_ns is not None:
            response.step.FromNanoseconds(step_ns)
        for begin in range(0, len(at), CHUNK):
            chunk = at[begin : begin + CHUNK]
            call = QueryCall(
                caller.project, self._pool, self._settings.budget, self._settings.retry_after
            )
            for moment, found in zip(chunk, await answer(condition, call, chunk), strict=True):
                if found.error is not None:
                    response.errors += 1
                    response.first_error = response.first_error or found.error
                step = machine.evaluate(settings, moment, found, states)
                states = {fp: s for fp, s in step.series.items() if fp not in step.deleted}
                for answered in found.samples:
                    fp, full = machine.identity(settings, answered.labels)
                    labels[fp] = full
                    sample = query_pb.Sample(value=answered.value)
                    convert.set_time(sample.time, moment)
                    values.setdefault(fp, []).append(sample)
                for event in step.events:
                    response.events.append(_event(record.rule_id, event))
        for fp in sorted(set(states) | set(values)):
            state = states[fp].state if fp in states else "inactive"
            shown = states[fp].labels if fp in states else labels[fp]
            series = response.series.add(labels=shown, state=_STATES[state])
            series.values.extend(values.get(fp, []))
        return response


def _fields(settings: machine.Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in machine.Settings.__dataclass_fields__}


def _event(rule_id: str, event: machine.Event) -> pb.AlertEvent:
    found = pb.AlertEvent(
        alert_id=alert_id(rule_id, event.fingerprint) if rule_id else "",
        rule_id=rule_id,
        labels=event.labels,
        kind=_KINDS[event.kind],
        from_state=_STATES[event.from_state],
        to_state=_STATES[event.to_state],
        value=event.value or 0.0,
        text=event.text,
    )
    convert.set_time(found.time, event.at)
    return found
