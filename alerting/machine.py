"""The alert state machine: one evaluation of a rule, from its series' states before to
their states after, the events of every transition and the notifications due.

Pure: no I/O, no clock (the evaluation time is given), so the evaluator (live, states
from PostgreSQL) and TestRule (a backtest, states carried in memory) run the very same
transitions over the same answers. The states are Prometheus' alerting rules' (migration
0011's header, docs/alerting.md):

* inactive -> pending when the condition holds (``active_at``); with ``for`` = 0 straight
  to firing (one FIRING event, no PENDING). pending -> firing at the first evaluation at
  or after ``active_at + for`` that still holds; pending -> inactive (CANCELLED) if it
  stops holding first.
* A firing series that stops holding sets ``keep_firing_until`` = now + keep_firing_for
  and resolves (RESOLVED) at the first evaluation at or after it that still does not
  hold; holding again clears it.
* NoData and Error (Grafana's): ``OK`` is "nothing holds"; ``ALERTING`` holds one series
  labelled ``otlpd_reason`` = nodata | error (with ``for`` like any other);
  ``KEEP_LAST`` changes nothing.
* ``ABSENT`` holds for every series seen before (its state row, kept while the rule
  lives, is the memory) that the answer lacks, and, when the answer is empty and no
  series was ever seen, for one series labelled with the query's equalities.

Notifications (``Notice``): a firing one on FIRING, again every ``repeat_interval`` while
firing unless acknowledged, a resolved one on RESOLVED if a firing one went out; none
for a silenced series, none when the rule notifies no channel. Flapping (Nagios'
notion, counted the Prometheus way, in firings): a series that fires more than
``flap_firings`` times within ``flap_window`` is marked flapping (FLAPPING event) and
notified once, as firing with the annotation ``otlpd_flapping``; then nothing until it
settles, when at most half as many firings remain in the window (SETTLED event, and a
notification of the state it settled in).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

from alerting import labels as alert_labels
from alerting.conditions import Answer
from alerting.templates import Template

REASON_LABEL: Final = "otlpd_reason"
FLAPPING_ANNOTATION: Final = "otlpd_flapping"
MAX_TRANSITIONS: Final = 32
# Prometheus forgets a resolved alert 15 minutes after it resolved (resolvedRetention).
FORGET_AFTER: Final = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Settings:
    """What the machine reads of a rule (and of the server: flapping, external URL)."""

    rule_id: str
    name: str
    version: int
    labels: Mapping[str, str]
    annotations: Mapping[str, Template]
    comparator: str | None  # None: the condition decides (slo)
    threshold: float | None
    for_s: float
    keep_firing_for_s: float
    repeat_interval_s: float
    no_data: str
    on_error: str
    absent_labels: Mapping[str, str]
    notify: bool = True
    flap_firings: int = 3
    flap_window_s: float = 3600.0
    external_url: str = ""


@dataclass(frozen=True, slots=True)
class Series:
    """One alert series' state: a row of ``alert_state``."""

    fingerprint: int  # signed, as stored
    labels: dict[str, str]
    state: str = "inactive"
    annotations: dict[str, str] = field(default_factory=dict)
    value: float | None = None
    active_at: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_evaluated_at: datetime | None = None
    keep_firing_until: datetime | None = None
    last_notified_at: datetime | None = None
    flapping: bool = False
    flapping_since: datetime | None = None
    transitions: tuple[datetime, ...] = ()
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledgement: str | None = None
    incident_id: str | None = None
    rule_version: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """A transition (``alert_events``)."""

    fingerprint: int
    labels: dict[str, str]
    kind: str  # pending, firing, resolved, cancelled, flapping, settled
    from_state: str
    to_state: str
    value: float | None
    at: datetime
    text: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    """A notification due for one series: ``status`` firing or resolved; ``reason``
    firing, repeat, flapping, settled or resolved."""

    fingerprint: int
    status: str
    reason: str


@dataclass(slots=True)
class Step:
    """What one evaluation did."""

    series: dict[int, Series]  # every series kept, after
    deleted: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    fired: list[int] = field(default_factory=list)  # became firing
    resolved: list[int] = field(default_factory=list)  # stopped firing
    changed: set[int] = field(default_factory=set)  # rows to write
    kept_last: bool = False  # KEEP_LAST: nothing changed at all


_COMPARE: Final[dict[str, Callable[[float, float], bool]]] = {
    "GT": lambda v, t: v > t,
    "GTE": lambda v, t: v >= t,
    "LT": lambda v, t: v < t,
    "LTE": lambda v, t: v <= t,
    "EQ": lambda v, t: v == t,
    "NE": lambda v, t: v != t,
}


def identity(settings: Settings, series_labels: Mapping[str, str]) -> tuple[int, dict[str, str]]:
    """The signed fingerprint and whole label set of the series a query answered."""
    labels = alert_labels.alert_labels(settings.name, settings.labels, series_labels)
    return alert_labels.to_signed(alert_labels.fingerprint(labels)), labels


def _holding(
    settings: Settings, answer: Answer, prior: Mapping[int, Series]
) -> tuple[dict[int, tuple[dict[str, str], float | None]], dict[int, tuple[dict[str, str], float]]]:
    """``(holding, seen but not holding)``: fingerprint -> (labels, value)."""
    holding: dict[int, tuple[dict[str, str], float | None]] = {}
    quiet: dict[int, tuple[dict[str, str], float]] = {}
    if settings.comparator == "ABSENT":
        for sample in answer.samples:
            fp, labels = identity(settings, sample.labels)
            quiet[fp] = (labels, sample.value)
        known = [s for s in prior.values() if REASON_LABEL not in s.labels]
        synthetic_fp, synthetic = identity(settings, settings.absent_labels)
        for s in known:
            if s.fingerprint not in quiet and s.fingerprint != synthetic_fp:
                holding[s.fingerprint] = (s.labels, None)
        if not answer.samples and not holding:
            holding[synthetic_fp] = (synthetic, None)
        return holding, quiet
    for sample in answer.samples:
        fp, labels = identity(settings, sample.labels)
        holds = sample.holds
        if holds is None:
            assert settings.comparator is not None and settings.threshold is not None
            holds = not math.isnan(sample.value) and _COMPARE[settings.comparator](
                sample.value, settings.threshold
            )
        if holds:
            holding[fp] = (labels, sample.value)
        else:
            quiet[fp] = (labels, sample.value)
    return holding, quiet


def _reason(settings: Settings, reason: str) -> dict[int, tuple[dict[str, str], float | None]]:
    fp, labels = identity(settings, {**settings.absent_labels, REASON_LABEL: reason})
    return {fp: (labels, None)}


def evaluate(
    settings: Settings,
    at: datetime,
    answer: Answer,
    prior: Mapping[int, Series],
    *,
    silenced: Callable[[Mapping[str, str]], bool] = lambda _: False,
) -> Step:
    """The states after one evaluation at ``at`` of ``answer``, from ``prior``."""
    quiet: dict[int, tuple[dict[str, str], float]] = {}
    if answer.error is not None:
        if settings.on_error == "KEEP_LAST":
            return Step(dict(prior), kept_last=True)
        holding = _reason(settings, "error") if settings.on_error == "ALERTING" else {}
    elif not answer.samples and settings.comparator != "ABSENT":
        if settings.no_data == "KEEP_LAST":
            return Step(dict(prior), kept_last=True)
        holding = _reason(settings, "nodata") if settings.no_data == "ALERTING" else {}
    else:
        holding, quiet = _holding(settings, answer, prior)
    step = Step({})
    for fp in sorted(set(prior) | set(holding) | set(quiet)):
        before = prior.get(fp)
        after: Series | None
        if fp in holding:
            labels, value = holding[fp]
            after = _holds(
                settings, at, before=before, fp=fp, labels=labels, value=value, step=step
            )
        elif before is not None:
            value = quiet[fp][1] if fp in quiet else None
            after = _quiet(settings, at, before, value, step)
        elif settings.comparator == "ABSENT":  # a series seen: remember it existed
            labels, value = quiet[fp]
            after = Series(fp, labels, value=value, rule_version=settings.version)
            step.changed.add(fp)
        else:
            continue
        if after is None:
            step.deleted.append(fp)
            continue
        after = _flapping(settings, at, before, after, step)
        after = _notify(settings, at, before=before, after=after, step=step, silenced=silenced)
        if after.state != "inactive" or fp in holding or fp in quiet:
            after = replace(
                after,
                annotations=_render(settings, after),
                last_evaluated_at=at,
                rule_version=settings.version,
            )
            step.changed.add(fp)
        elif after != before:
            step.changed.add(fp)
        step.series[fp] = after
    return step


def _render(settings: Settings, series: Series) -> dict[str, str]:
    return {
        name: template.render(series.value, series.labels, settings.external_url)
        for name, template in settings.annotations.items()
    }


def _event(
    step: Step, series: Series, kind: str, before: str, *, at: datetime, text: str = ""
) -> None:
    step.events.append(
        Event(series.fingerprint, series.labels, kind, before, series.state, series.value, at, text)
    )


def _fire(settings: Settings, at: datetime, series: Series, step: Step, before: str) -> Series:
    window = timedelta(seconds=settings.flap_window_s)
    recent = tuple(t for t in series.transitions if t > at - window)[-(MAX_TRANSITIONS - 1) :]
    fired = replace(
        series, state="firing", fired_at=at, keep_firing_until=None, transitions=(*recent, at)
    )
    _event(step, fired, "firing", before, at=at)
    step.fired.append(series.fingerprint)
    return fired


def _holds(
    settings: Settings,
    at: datetime,
    *,
    before: Series | None,
    fp: int,
    labels: dict[str, str],
    value: float | None,
    step: Step,
) -> Series:
    series = before or Series(fp, labels, rule_version=settings.version)
    series = replace(series, labels=labels, value=value)
    if series.state == "inactive":
        series = replace(series, state="pending", active_at=at, resolved_at=None)
        if settings.for_s <= 0:
            return _fire(settings, at, series, step, "inactive")
        _event(step, series, "pending", "inactive", at=at)
        return series
    if series.state == "pending":
        assert series.active_at is not None
        if at - series.active_at >= timedelta(seconds=settings.for_s):
            return _fire(settings, at, series, step, "pending")
        return series
    return replace(series, keep_firing_until=None)


def _quiet(
    settings: Settings, at: datetime, before: Series, value: float | None, step: Step
) -> Series | None:
    series = replace(before, value=value)
    if series.state == "pending":
        series = replace(series, state="inactive", active_at=None)
        _event(step, series, "cancelled", "pending", at=at)
        return series
    if series.state == "firing":
        until = series.keep_firing_until or at + timedelta(seconds=settings.keep_firing_for_s)
        if at < until:
            return replace(series, keep_firing_until=until)
        window = timedelta(seconds=settings.flap_window_s)
        recent = tuple(t for t in series.transitions if t > at - window)
        series = replace(
            series,
            state="inactive",
            active_at=None,
            resolved_at=at,
            keep_firing_until=None,
            acknowledged_at=None,
            acknowledged_by=None,
            acknowledgement=None,
            transitions=recent,
        )
        _event(step, series, "resolved", "firing", at=at)
        step.resolved.append(series.fingerprint)
        return series
    # Inactive and not answered: forgotten 15 minutes after it resolved, as Prometheus
    # forgets resolved alerts; ABSENT's memory of a series is kept.
    if settings.comparator == "ABSENT" and REASON_LABEL not in series.labels:
        return before
    if series.flapping:
        return before
    if series.resolved_at is None or at - series.resolved_at >= FORGET_AFTER:
        return None
    return before


def _flapping(
    settings: Settings, at: datetime, before: Series | None, after: Series, step: Step
) -> Series:
    window = timedelta(seconds=settings.flap_window_s)
    firings = sum(1 for t in after.transitions if t > at - window)
    if not after.flapping and firings > settings.flap_firings:
        after = replace(after, flapping=True, flapping_since=at)
        text = f"fired {firings} times in {settings.flap_window_s:g}s"
        _event(step, after, "flapping", after.state, at=at, text=text)
    elif after.flapping and firings <= settings.flap_firings // 2:
        after = replace(after, flapping=False, flapping_since=None)
        _event(step, after, "settled", after.state, at=at)
    return after


def _notify(
    settings: Settings,
    at: datetime,
    *,
    before: Series | None,
    after: Series,
    step: Step,
    silenced: Callable[[Mapping[str, str]], bool],
) -> Series:
    if not settings.notify:
        return after
    fp = after.fingerprint
    was_flapping = before is not None and before.flapping
    fired_now = fp in step.fired
    resolved_now = fp in step.resolved
    if after.flapping and not was_flapping:  # marked just now: notified once
        if after.state == "firing" and not silenced(after.labels):
            step.notices.append(Notice(fp, "firing", "flapping"))
            return replace(after, last_notified_at=at)
        return after
    if after.flapping:
        return after
    if was_flapping:  # settled just now: say where it settled
        if after.state == "firing" and not silenced(after.labels):
            step.notices.append(Notice(fp, "firing", "settled"))
            return replace(after, last_notified_at=at)
        if after.state == "inactive" and after.last_notified_at is not None:
            if not silenced(after.labels):
                step.notices.append(Notice(fp, "resolved", "settled"))
            return replace(after, last_notified_at=None)
        return after
    if resolved_now:
        if after.last_notified_at is not None and not silenced(after.labels):
            step.notices.append(Notice(fp, "resolved", "resolved"))
        return replace(after, last_notified_at=None)
    if after.state != "firing" or silenced(after.labels):
        return after
    if fired_now:
        step.notices.append(Notice(fp, "firing", "firing"))
        return replace(after, last_notified_at=at)
    if after.acknowledged_at is not None:
        return after
    due = after.last_notified_at is None or at - after.last_notified_at >= timedelta(
        seconds=settings.repeat_interval_s
    )
    if due:
        step.notices.append(Notice(fp, "firing", "repeat"))
        return replace(after, last_notified_at=at)
    return after
