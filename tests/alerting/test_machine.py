"""The state machine alone: Prometheus' transitions, for, keep_firing_for, repeats,
acknowledgements, silences, ABSENT and KEEP_LAST, evaluation after evaluation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from alerting import templates
from alerting.conditions import Answer, Sample
from alerting.machine import Series, Settings, Step, evaluate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def settings(**fields: Any) -> Settings:
    base: dict[str, Any] = {
        "rule_id": "r",
        "name": "High",
        "version": 1,
        "labels": {"severity": "page"},
        "annotations": {"summary": templates.parse("at {{ $value }}")},
        "comparator": "GT",
        "threshold": 10.0,
        "for_s": 0.0,
        "keep_firing_for_s": 0.0,
        "repeat_interval_s": 60.0,
        "no_data": "OK",
        "on_error": "KEEP_LAST",
        "absent_labels": {"job": "api"},
    }
    return Settings(**(base | fields))


def value(v: float, **labels: str) -> Answer:
    return Answer([Sample(labels or {"job": "api"}, v)])


class Run:
    """Evaluations one interval (10 s) apart, states carried along."""

    def __init__(self, rule: Settings, silenced: bool = False) -> None:
        self.rule = rule
        self.states: dict[int, Series] = {}
        self.at = T0
        self.silenced = silenced
        self.steps: list[Step] = []

    def __call__(self, answer: Answer) -> Step:
        step = evaluate(self.rule, self.at, answer, self.states, silenced=lambda _: self.silenced)
        self.states = {fp: s for fp, s in step.series.items() if fp not in step.deleted}
        self.at += timedelta(seconds=10)
        self.steps.append(step)
        return step

    def kinds(self) -> list[str]:
        return [e.kind for step in self.steps for e in step.events]

    def notices(self) -> list[str]:
        return [f"{n.status}/{n.reason}" for step in self.steps for n in step.notices]

    def state(self) -> str:
        (series,) = self.states.values()
        return series.state


def test_for_holds_pending_then_fires_and_a_dip_cancels() -> None:
    run = Run(settings(for_s=20.0))
    run(value(50))
    assert run.state() == "pending"
    run(value(50))
    run(value(5))  # stopped holding before the 20 s passed
    assert run.kinds() == ["pending", "cancelled"]
    run(value(50))
    run(value(50))
    run(value(50))  # 20 s after it became pending again
    assert run.kinds() == ["pending", "cancelled", "pending", "firing"]
    (series,) = run.states.values()
    assert series.fired_at - series.active_at == timedelta(seconds=20)  # type: ignore[operator]
    assert series.labels == {"job": "api", "severity": "page", "alertname": "High"}
    assert series.annotations == {"summary": "at 50"}


def test_without_for_it_fires_at_once_and_keep_firing_for_delays_the_resolution() -> None:
    run = Run(settings(keep_firing_for_s=15.0))
    run(value(50))
    assert run.kinds() == ["firing"]
    run(value(1))  # t=10: keeps firing until 25
    run(value(1))  # t=20
    assert run.state() == "firing"
    run(value(50))  # holds again: the timer is cleared
    run(value(1))  # t=40: until 55
    run(value(1))
    assert run.state() == "firing"
    run(value(1))  # t=60 >= 55
    assert run.kinds() == ["firing", "resolved"]


def test_repeats_every_repeat_interval_unless_acknowledged_and_resolved_once() -> None:
    run = Run(settings(repeat_interval_s=30.0))
    for _ in range(7):
        run(value(50))
    assert run.notices() == ["firing/firing", "firing/repeat", "firing/repeat"]
    fp = next(iter(run.states))
    run.states[fp] = replace(run.states[fp], acknowledged_at=run.at)
    for _ in range(6):
        run(value(50))
    assert run.notices().count("firing/repeat") == 2  # none while acknowledged
    run(value(1))
    assert run.notices()[-1] == "resolved/resolved"
    assert run.states[fp].acknowledged_at is None  # cleared on resolve


def test_a_silenced_alert_is_not_notified_nor_resolved_but_changes_state() -> None:
    run = Run(settings(), silenced=True)
    run(value(50))
    run(value(1))
    assert run.kinds() == ["firing", "resolved"] and run.notices() == []


def test_absent_fires_for_a_series_that_stops_and_for_nothing_at_all() -> None:
    run = Run(settings(comparator="ABSENT", threshold=None))
    run(Answer())  # nothing ever seen: the query's equalities
    (series,) = run.states.values()
    assert series.state == "firing" and series.labels["job"] == "api"
    run(value(3, job="api", instance="a"))  # data: the synthetic one resolves
    run(value(3, job="api", instance="a"))
    assert run.kinds() == ["firing", "resolved"]
    run(Answer([Sample({"job": "api", "instance": "b"}, 1.0)]))  # "a" stopped
    firing = [s for s in run.states.values() if s.state == "firing"]
    assert [s.labels.get("instance") for s in firing] == ["a"]


def test_no_data_and_errors_per_setting() -> None:
    keep = Run(settings(no_data="KEEP_LAST"))
    keep(value(50))
    step = keep(Answer())
    assert step.kept_last and keep.state() == "firing"
    alerting = Run(settings(no_data="ALERTING", for_s=10.0))
    alerting(Answer())
    alerting(Answer())
    (series,) = alerting.states.values()
    assert series.labels["otlpd_reason"] == "nodata" and series.state == "firing"
    ok = Run(settings(on_error="OK"))
    ok(value(50))
    ok(Answer(error="boom"))
    assert ok.kinds() == ["firing", "resolved"]


def test_flapping_marks_once_and_holds_notifications_until_it_settles() -> None:
    run = Run(settings(flap_firings=2, flap_window_s=100.0))
    for _ in range(3):
        run(value(50))
        run(value(1))
    assert run.kinds().count("flapping") == 1
    assert run.notices() == [
        "firing/firing",
        "resolved/resolved",
        "firing/firing",
        "resolved/resolved",
        "firing/flapping",
    ]
    for _ in range(10):  # quiet for 100 s: the firings leave the window
        run(value(1))
    assert run.kinds()[-1] == "settled"
    assert run.notices()[-1] == "resolved/settled"
