"""The evaluator end to end: data through the OTLP receiver, rules through the alerting
API, a real otlpd evaluating every 0.2 s, and real HTTP receivers of the notifications."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest

from alerting.proto import pb, pb_grpc
from query.proto import pb as query_pb
from tests.alerting.conftest import (
    Feeder,
    Project,
    Receiver,
    alerting_server,
    duration,
    event_kinds,
    send_gauge,
    send_logs,
    send_requests,
    wait_for,
    webhook_channel,
)
from tests.conftest import RunningOtlpd

PROJECT = "shop"


@pytest.fixture
def server(database_url: str) -> Iterator[RunningOtlpd]:
    running = alerting_server(database_url)
    yield running
    running.stop()


@pytest.fixture
def api(server: RunningOtlpd) -> Iterator[Project]:
    with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as channel:
        yield Project(pb_grpc.AlertServiceStub(channel), PROJECT)  # type: ignore[no-untyped-call]


def metric_rule(name: str, channel_id: str = "", **fields: Any) -> pb.Rule:
    rule = pb.Rule(
        name=name,
        metric=pb.MetricCondition(
            metric_name="queue.depth",
            aggregation=query_pb.AGGREGATION_AVG,
            window=duration(2),
        ),
        comparator=pb.Rule.GT,
        threshold=10,
        interval=duration(1),
        annotations={"summary": "queue depth is {{ $value }} on {{ $labels.service.name }}"},
        channel_ids=[channel_id] if channel_id else [],
        **fields,
    )
    return rule


def alerts(api: Project, rule_id: str) -> list[pb.Alert]:
    states = [pb.ALERT_STATE_INACTIVE, pb.ALERT_STATE_PENDING, pb.ALERT_STATE_FIRING]
    return list(api.ListAlerts(pb.ListAlertsRequest(rule_id=rule_id, states=states)).alerts)


def feed(server: RunningOtlpd, value: float, seconds: float, **labels: str) -> None:
    """A point every 0.2 s for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        send_gauge(server, "queue.depth", value, project=PROJECT, labels=labels)
        time.sleep(0.2)


def test_a_threshold_goes_pending_then_firing_then_resolved_with_alertmanager_payloads(
    server: RunningOtlpd, api: Project, receiver: Receiver
) -> None:
    channel = webhook_channel(api, receiver.url)
    rule = api.CreateRule(
        pb.CreateRuleRequest(rule=metric_rule("QueueDeep", channel, **{"for": duration(2)}))
    ).rule
    feed(server, 50.0, 1.5)
    assert wait_for(lambda: "PENDING" in event_kinds(api, rule.id))
    assert not receiver.bodies(), "nothing is sent while pending"
    feed(server, 50.0, 2.5)
    wait_for(lambda: receiver.bodies("firing"))
    (firing,) = alerts(api, rule.id)
    assert firing.state == pb.ALERT_STATE_FIRING
    assert firing.fired_at.ToDatetime() - firing.active_at.ToDatetime() >= duration(2).ToTimedelta()
    feed(server, 1.0, 3.0)
    wait_for(lambda: receiver.bodies("resolved"))
    assert event_kinds(api, rule.id) == ["PENDING", "FIRING", "RESOLVED"]

    (sent,) = receiver.bodies("firing")
    assert sent["version"] == "4" and sent["status"] == "firing" and sent["receiver"] == "hook"
    assert sent["externalURL"] == "http://otlpd.example"
    assert sent["truncatedAlerts"] == 0
    assert sent["groupKey"] == f"{rule.id}{{}}"
    assert sent["groupLabels"] == {"alertname": "QueueDeep"}
    (alert,) = sent["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == {"alertname": "QueueDeep", "service.name": "svc"}
    assert alert["annotations"]["summary"].startswith("queue depth is 50 on svc")
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["startsAt"].endswith("Z")
    assert alert["generatorURL"] == f"http://otlpd.example/rules/{rule.id}"
    assert alert["fingerprint"] == firing.fingerprint
    assert sent["commonLabels"] == alert["labels"]
    assert sent["commonAnnotations"] == alert["annotations"]
    (resolved,) = receiver.bodies("resolved")
    assert resolved["alerts"][0]["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    assert resolved["alerts"][0]["fingerprint"] == firing.fingerprint
    assert receiver.deliveries[0].headers["X-Team"] == "payments"
    sent_list = api.ListNotifications(pb.ListNotificationsRequest(rule_id=rule.id))
    assert [n.status for n in sent_list.notifications] == [pb.NOTIFICATION_STATUS_DELIVERED] * 2
    assert server.metric("otlpd_alert_evaluations_total", {"outcome": "ok"}) >= 5


def test_a_log_rule_fires_with_example_lines(
    server: RunningOtlpd, api: Project, receiver: Receiver
) -> None:
    channel = webhook_channel(api, receiver.url)
    rule = api.CreateRule(
        pb.CreateRuleRequest(
            rule=pb.Rule(
                name="PaymentFailures",
                logs=pb.LogCondition(
                    filter=query_pb.LogFilter(q='"payment failed"', service="checkout"),
                    window=duration(300),
                    examples=2,
                ),
                comparator=pb.Rule.GT,
                threshold=3,
                interval=duration(1),
                annotations={"summary": "{{ $value }} payment failures in 5 minutes"},
                channel_ids=[channel],
            )
        )
    ).rule
    send_logs(server, ["payment failed: card declined"] * 3, project=PROJECT)
    send_logs(server, ["payment succeeded", "cart viewed"], project=PROJECT)
    time.sleep(1.5)
    assert not receiver.bodies(), "3 is not more than 3"
    send_logs(server, ["payment failed: insufficient funds"], project=PROJECT)
    (sent,) = wait_for(lambda: receiver.bodies("firing"))
    (alert,) = sent["alerts"]
    assert alert["annotations"]["summary"] == "4 payment failures in 5 minutes"
    lines = alert["annotations"]["otlpd_examples"].splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("checkout: payment failed: insufficient funds")
    assert lines[1].endswith("checkout: payment failed: card declined")
    assert event_kinds(api, rule.id) == ["FIRING"]


def test_absent_fires_when_a_series_stops_and_no_data_per_setting(
    server: RunningOtlpd, api: Project
) -> None:
    absent = api.CreateRule(
        pb.CreateRuleRequest(
            rule=pb.Rule(
                name="QueueGone",
                metric=pb.MetricCondition(metric_name="queue.depth", window=duration(1)),
                comparator=pb.Rule.ABSENT,
                interval=duration(1),
            )
        )
    ).rule
    nodata = api.CreateRule(
        pb.CreateRuleRequest(rule=metric_rule("NoQueueData", no_data=pb.Rule.ALERTING))
    ).rule
    keep = api.CreateRule(
        pb.CreateRuleRequest(rule=metric_rule("KeepQueue", no_data=pb.Rule.KEEP_LAST))
    ).rule
    ok = api.CreateRule(pb.CreateRuleRequest(rule=metric_rule("OkQueue"))).rule
    feed(server, 50.0, 2.5, queue="orders")
    for rule in (keep, ok):
        wait_for(lambda rule=rule: "FIRING" in event_kinds(api, rule.id))
    assert not [a for a in alerts(api, absent.id) if a.state == pb.ALERT_STATE_FIRING]
    # The series stops: ABSENT fires for it, NoData fires its own series, KEEP_LAST
    # keeps firing, OK resolves.
    wait_for(lambda: [a for a in alerts(api, absent.id) if a.state == pb.ALERT_STATE_FIRING])
    (gone,) = [a for a in alerts(api, absent.id) if a.state == pb.ALERT_STATE_FIRING]
    assert gone.labels["queue"] == "orders" and gone.labels["alertname"] == "QueueGone"
    wait_for(lambda: "RESOLVED" in event_kinds(api, ok.id))
    firing = wait_for(
        lambda: [a for a in alerts(api, nodata.id) if a.state == pb.ALERT_STATE_FIRING]
    )
    assert [a.labels["otlpd_reason"] for a in firing] == ["nodata"]
    assert [a.state for a in alerts(api, keep.id)] == [pb.ALERT_STATE_FIRING]
    assert "RESOLVED" not in event_kinds(api, keep.id)


def test_query_errors_follow_on_error(server: RunningOtlpd, api: Project) -> None:
    # A regular expression Python accepts and PostgreSQL refuses fails every evaluation.
    bad = [query_pb.LabelMatcher(name="queue", op=query_pb.LabelMatcher.OP_RE, value="(?P<x>a)b")]
    rules = {}
    for outcome in ("OK", "ALERTING", "KEEP_LAST"):
        rule = pb.Rule(
            name=f"Broken{outcome}",
            metric=pb.MetricCondition(metric_name="queue.depth", matchers=bad, window=duration(5)),
            comparator=pb.Rule.GT,
            interval=duration(1),
            on_error=getattr(pb.Rule, outcome),
        )
        rules[outcome] = api.CreateRule(pb.CreateRuleRequest(rule=rule)).rule
    send_gauge(server, "queue.depth", 50.0, project=PROJECT, labels={"queue": "ab"})
    firing = wait_for(
        lambda: [a for a in alerts(api, rules["ALERTING"].id) if a.state == pb.ALERT_STATE_FIRING]
    )
    assert firing[0].labels["otlpd_reason"] == "error"
    assert alerts(api, rules["OK"].id) == []
    assert alerts(api, rules["KEEP_LAST"].id) == []
    with psycopg.connect(server.database_url) as conn:
        errors = conn.execute(
            "SELECT count(*) FROM alert_rule_schedule WHERE last_error IS NOT NULL"
        ).fetchone()
    assert errors == (3,)
    assert server.metric("otlpd_alert_evaluations_total", {"outcome": "error"}) >= 3


def test_a_burn_rate_slo_fires_on_a_fast_burn_and_stays_quiet_on_a_slow_one(
    server: RunningOtlpd, api: Project
) -> None:
    rules = {}
    for service in ("fast", "medium", "slow"):
        slo = pb.SloCondition(spans=pb.SloCondition.SpanEvents(service=service), objective=0.999)
        rule = pb.Rule(name=f"{service}-availability", slo=slo, interval=duration(1))
        rules[service] = api.CreateRule(pb.CreateRuleRequest(rule=rule)).rule
    # Error ratios 50%, 0.3% and 0.05% of a 0.1% budget: burn rates 500, 3 and 0.5.
    send_requests(server, project=PROJECT, service="fast", total=100, errors=50)
    send_requests(server, project=PROJECT, service="medium", total=1000, errors=3)
    send_requests(server, project=PROJECT, service="slow", total=2000, errors=1)

    def firing(service: str) -> set[tuple[str, str]]:
        return {
            (a.labels["severity"], a.labels["window"])
            for a in alerts(api, rules[service].id)
            if a.state == pb.ALERT_STATE_FIRING
        }

    wait_for(lambda: len(firing("fast")) == 3 and firing("medium"))
    time.sleep(1.5)  # a few more evaluations of each
    assert firing("fast") == {("page", "1h"), ("page", "6h"), ("ticket", "3d")}
    assert firing("medium") == {("ticket", "3d")}
    assert firing("slow") == set()
    burns = {a.labels["window"]: a.value for a in alerts(api, rules["fast"].id)}
    assert burns == pytest.approx({"1h": 500.0, "6h": 500.0, "3d": 500.0})
    quiet = {a.labels["window"]: a.value for a in alerts(api, rules["slow"].id)}
    assert quiet == {}  # never held: no state kept


def test_flapping_is_notified_once_until_it_settles(database_url: str, receiver: Receiver) -> None:
    server = alerting_server(database_url, alert_flap_firings="1", alert_flap_window="5s")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.app.ports.query}") as channel:
            api = Project(pb_grpc.AlertServiceStub(channel), PROJECT)  # type: ignore[no-untyped-call]
            rule = api.CreateRule(
                pb.CreateRuleRequest(
                    rule=pb.Rule(
                        name="Flappy",
                        metric=pb.MetricCondition(metric_name="flap", window=duration(1)),
                        comparator=pb.Rule.GT,
                        threshold=10,
                        interval=duration(1),
                        channel_ids=[webhook_channel(api, receiver.url)],
                    )
                )
            ).rule
            feeder = Feeder(server, "flap", 50.0, project=PROJECT)
            try:
                for n in range(1, 4):  # fire, resolve, fire (flapping), resolve, fire, resolve
                    wait_for(lambda n=n: event_kinds(api, rule.id).count("FIRING") == n)
                    feeder.value = 1.0
                    wait_for(lambda n=n: event_kinds(api, rule.id).count("RESOLVED") == n)
                    feeder.value = 50.0
                feeder.value = 1.0
                wait_for(lambda: "SETTLED" in event_kinds(api, rule.id), timeout=15)
            finally:
                feeder.stop()
            kinds = event_kinds(api, rule.id)
    finally:
        server.stop()
    assert kinds.count("FLAPPING") == 1
    assert kinds.index("FLAPPING") == kinds.index("FIRING", kinds.index("RESOLVED")) + 1
    wait_for(lambda: receiver.bodies()[-1]["status"] == "resolved")
    sent = [
        (b["status"], "otlpd_flapping" in b["alerts"][0]["annotations"]) for b in receiver.bodies()
    ]
    # Fired and resolved once as usual; then one notification that it flaps, nothing while
    # it flaps, and one when it settled (resolved).
    assert sent == [("firing", False), ("resolved", False), ("firing", True), ("resolved", False)]


def test_an_incident_timeline_shows_firing_notification_ack_note_and_resolution(
    server: RunningOtlpd, api: Project, receiver: Receiver
) -> None:
    channel = webhook_channel(api, receiver.url)
    rule = api.CreateRule(pb.CreateRuleRequest(rule=metric_rule("Incident", channel))).rule
    feeder = Feeder(server, "queue.depth", 50.0, project=PROJECT)
    try:
        wait_for(lambda: receiver.bodies("firing"))
        (incident,) = api.ListIncidents(pb.ListIncidentsRequest()).incidents
        assert incident.status == pb.INCIDENT_STATUS_OPEN and incident.firing_alerts == 1
        assert incident.title == "Incident" and incident.rule_id == rule.id

        def timeline() -> list[str]:
            found = api.GetIncident(pb.GetIncidentRequest(id=incident.id)).incident
            return [pb.TimelineEntry.Kind.Name(e.kind) for e in found.timeline]

        wait_for(lambda: "NOTIFICATION_SENT" in timeline())
        (alert,) = alerts(api, rule.id)
        api.AcknowledgeAlert(pb.AcknowledgeAlertRequest(id=alert.id, comment="on it"))
        api.UpdateIncident(
            pb.UpdateIncidentRequest(id=incident.id, note="queue consumer restarted")
        )
        feeder.value = 1.0
        wait_for(lambda: "RESOLVED" in timeline())
    finally:
        feeder.stop()
    found = api.GetIncident(pb.GetIncidentRequest(id=incident.id)).incident
    assert found.status == pb.INCIDENT_STATUS_RESOLVED and found.firing_alerts == 0
    kinds = [pb.TimelineEntry.Kind.Name(e.kind) for e in found.timeline]
    assert kinds[:7] == [
        "OPENED",
        "ALERT_FIRING",
        "NOTIFICATION_SENT",
        "ACKNOWLEDGED",
        "NOTE",
        "ALERT_RESOLVED",
        "RESOLVED",
    ]
    times = [e.time.ToNanoseconds() for e in found.timeline]
    assert times == sorted(times)
    assert found.timeline[1].alert_id == alert.id
    assert found.timeline[2].notification_id
    # The incident's notifications, oldest last: the firing one, then the resolved one.
    (notified,) = api.ListNotifications(
        pb.ListNotificationsRequest(
            incident_id=incident.id, statuses=[pb.NOTIFICATION_STATUS_DELIVERED]
        )
    ).notifications[-1:]
    assert notified.alert_status == "firing"


def test_test_rule_over_a_past_range_reports_what_the_live_evaluation_did(
    server: RunningOtlpd, api: Project
) -> None:
    rule = api.CreateRule(
        pb.CreateRuleRequest(
            rule=metric_rule(
                "Backtested",
                **{"for": duration(2), "keep_firing_for": duration(1)},
            )
        )
    ).rule
    # Points stamped half a second ahead reach PostgreSQL before any evaluation whose
    # window holds them: the live evaluations and the backtest read the same data.
    feeder = Feeder(server, "queue.depth", 50.0, project=PROJECT, ahead=0.5)
    try:
        wait_for(lambda: "FIRING" in event_kinds(api, rule.id))
        feeder.value = 1.0
        wait_for(lambda: "RESOLVED" in event_kinds(api, rule.id))
        feeder.value = 50.0
        wait_for(lambda: event_kinds(api, rule.id).count("PENDING") == 2)
    finally:
        feeder.stop()
    time.sleep(1.2)
    live = list(reversed(api.ListAlertEvents(pb.ListAlertEventsRequest(rule_id=rule.id)).events))
    with psycopg.connect(server.database_url) as conn:
        (last,) = conn.execute("SELECT last_eval_at FROM alert_rule_schedule").fetchone()  # type: ignore[misc]
    request = pb.TestRuleRequest(rule_id=rule.id, start_time=rule.created_at)
    request.end_time.FromDatetime(last)
    tested = api.TestRule(request)
    assert tested.errors == 0
    assert tested.evaluations >= 8
    shown = [(e.kind, e.time.ToNanoseconds(), e.value, dict(e.labels)) for e in tested.events]
    assert shown == [(e.kind, e.time.ToNanoseconds(), e.value, dict(e.labels)) for e in live]
    assert [pb.AlertEvent.Kind.Name(e.kind) for e in tested.events][:4] == [
        "PENDING",
        "FIRING",
        "RESOLVED",
        "PENDING",
    ]
    (series,) = tested.series
    assert series.labels["alertname"] == "Backtested"
    # A value for every evaluation but the first (the rule was made before the first point).
    assert len(series.values) in (tested.evaluations - 1, tested.evaluations)
    # An unsaved rule, one evaluation now: its value, and no transition recorded anywhere.
    unsaved = metric_rule("Unsaved")
    unsaved.threshold = 1e9
    now = api.TestRule(pb.TestRuleRequest(rule=unsaved))
    assert now.evaluations == 1 and len(now.series) == 1 and not now.events
    assert now.series[0].state == pb.ALERT_STATE_INACTIVE
    assert [r.name for r in api.ListRules(pb.ListRulesRequest()).rules] == ["Backtested"]
