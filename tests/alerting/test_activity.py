"""Alerts, events, notifications and incidents as the API reads them, from rows this test
writes the way the evaluator and the senders do (migration 0011); acknowledgements and
incident updates as people make them; and projects apart on every RPC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
from psycopg.types.json import Jsonb

from alerting.labels import alert_id, alert_labels, fingerprint, to_signed
from alerting.proto import pb
from tests.alerting.conftest import Project, refused
from tests.alerting.test_rules import metric_rule
from tests.conftest import RunningOtlpd

NOW = datetime.now(UTC)


class Seeded:
    """A rule of ``project`` with a firing, a pending and an inactive series, their
    events, an incident with a timeline, and two notifications with attempts."""

    def __init__(self, project: Project, database_url: str) -> None:
        p = project.project
        self.channel = project.CreateChannel(
            pb.CreateChannelRequest(
                channel=pb.Channel(name="hook", email=pb.EmailChannel(to=["a@b"]))
            )
        ).channel
        self.rule = project.CreateRule(
            pb.CreateRuleRequest(rule=metric_rule(channel_ids=[self.channel.id]))
        ).rule
        rid = self.rule.id
        self.labels = {
            state: alert_labels(self.rule.name, {"severity": "page"}, {"service.name": state})
            for state in ("firing", "pending", "inactive")
        }
        self.fp = {state: to_signed(fingerprint(labels)) for state, labels in self.labels.items()}
        self.ids = {state: alert_id(rid, fp) for state, fp in self.fp.items()}
        self.incident = "00000000000000a1"
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "INSERT INTO alert_incidents (project_id, incident_id, rule_id, group_key,"
                " title, status, opened_at) VALUES (%s, %s, %s, %s, %s, 'open', %s)",
                (p, self.incident, rid, f"{rid}{{}}", "HighLatency", NOW - timedelta(minutes=5)),
            )
            for state, value, active, fired, resolved, incident in (
                ("firing", 0.9, NOW - timedelta(minutes=6), NOW - timedelta(minutes=5), None,
                 self.incident),
                ("pending", 0.7, NOW - timedelta(minutes=1), None, None, None),
                ("inactive", 0.1, None, NOW - timedelta(hours=2), NOW - timedelta(hours=1), None),
            ):  # fmt: skip
                conn.execute(
                    "INSERT INTO alert_state (project_id, rule_id, fingerprint, labels,"
                    " annotations, state, value, active_at, fired_at, resolved_at,"
                    " last_evaluated_at, incident_id, rule_version)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1)",
                    (p, rid, self.fp[state], Jsonb(self.labels[state]),
                     Jsonb({"summary": f"{state} at {value}"}), state, value, active, fired,
                     resolved, NOW, incident),
                )  # fmt: skip
            for kind, frm, to, at in (
                ("pending", "inactive", "pending", NOW - timedelta(minutes=6)),
                ("firing", "pending", "firing", NOW - timedelta(minutes=5)),
            ):
                conn.execute(
                    "INSERT INTO alert_events (project_id, rule_id, fingerprint, labels, kind,"
                    " from_state, to_state, value, at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, 0.9, %s)",
                    (p, rid, self.fp["firing"], Jsonb(self.labels["firing"]), kind, frm, to, at),
                )
            conn.execute(
                "INSERT INTO alert_incident_timeline (project_id, incident_id, at, kind, text,"
                " rule_id, fingerprint) VALUES (%s, %s, %s, 'opened', '', NULL, NULL),"
                " (%s, %s, %s, 'alert_firing', 'value 0.9', %s, %s)",
                (p, self.incident, NOW - timedelta(minutes=5), p, self.incident,
                 NOW - timedelta(minutes=5), rid, self.fp["firing"]),
            )  # fmt: skip
            ids = []
            for status, attempts, created in (
                ("delivered", 3, NOW - timedelta(minutes=5)),
                ("pending", 1, NOW - timedelta(minutes=1)),
            ):
                found = conn.execute(
                    "INSERT INTO alert_notifications (project_id, channel_id, rule_id,"
                    " incident_id, group_key, alert_status, fingerprints, dedup_key, payload,"
                    " status, attempts, last_error, created_at, next_attempt_at, delivered_at)"
                    " VALUES (%s, %s, %s, %s, 'g', 'firing', %s, %s, '{}', %s, %s, %s, %s, %s, %s)"
                    " RETURNING notification_id",
                    (p, self.channel.id, rid, self.incident, [self.fp["firing"]],
                     f"k{status}", status, attempts,
                     None if status == "delivered" else "HTTP 500", created,
                     NOW + timedelta(seconds=30),
                     created + timedelta(seconds=3) if status == "delivered" else None),
                ).fetchone()  # fmt: skip
                assert found is not None
                ids.append(found[0])
                for n in range(1, attempts + 1):
                    ok = status == "delivered" and n == attempts
                    conn.execute(
                        "INSERT INTO alert_notification_attempts (project_id, notification_id,"
                        " attempt, at, duration_s, status_code, error)"
                        " VALUES (%s, %s, %s, %s, 0.05, %s, %s)",
                        (p, found[0], n, created + timedelta(seconds=n),
                         200 if ok else 500, None if ok else "HTTP 500"),
                    )  # fmt: skip
            self.notifications = ids


def test_alerts_are_listed_by_state_with_their_values_and_silences(
    project: Project, alerting_otlpd: RunningOtlpd
) -> None:
    seeded = Seeded(project, alerting_otlpd.database_url)
    alerts = project.ListAlerts(pb.ListAlertsRequest()).alerts
    assert [a.id for a in alerts] == [seeded.ids["firing"], seeded.ids["pending"]]
    firing = alerts[0]
    assert firing.state == pb.ALERT_STATE_FIRING and firing.value == 0.9
    assert firing.rule_name == "HighLatency" and firing.labels["service.name"] == "firing"
    assert firing.since.ToDatetime(tzinfo=UTC) == NOW - timedelta(minutes=5)
    assert firing.incident_id == seeded.incident and not firing.silenced
    assert firing.annotations["summary"] == "firing at 0.9"
    every = project.ListAlerts(
        pb.ListAlertsRequest(states=[pb.ALERT_STATE_INACTIVE, pb.ALERT_STATE_FIRING])
    ).alerts
    assert [a.state for a in every] == [pb.ALERT_STATE_FIRING, pb.ALERT_STATE_INACTIVE]
    page = project.ListAlerts(pb.ListAlertsRequest(limit=1))
    rest = project.ListAlerts(pb.ListAlertsRequest(limit=1, page_token=page.next_page_token))
    assert [a.id for a in (*page.alerts, *rest.alerts)] == [a.id for a in alerts]
    assert not rest.next_page_token
    assert list(project.ListAlerts(pb.ListAlertsRequest(rule_id="0" * 16)).alerts) == []
    # A silence that matches the firing alert marks it silenced, and it only.
    project.CreateSilence(
        pb.CreateSilenceRequest(
            silence=pb.Silence(
                matchers=[{"name": "service.name", "value": "firing"}],
                end_time={"seconds": int((NOW + timedelta(hours=1)).timestamp())},
                comment="known",
            )
        )
    )
    silenced = {a.id: a.silenced for a in project.ListAlerts(pb.ListAlertsRequest()).alerts}
    assert silenced == {seeded.ids["firing"]: True, seeded.ids["pending"]: False}


def test_events_newest_first_by_rule_and_by_alert(
    project: Project, alerting_otlpd: RunningOtlpd
) -> None:
    seeded = Seeded(project, alerting_otlpd.database_url)
    events = project.ListAlertEvents(pb.ListAlertEventsRequest()).events
    assert [(e.kind, e.from_state, e.to_state) for e in events] == [
        (pb.AlertEvent.FIRING, pb.ALERT_STATE_PENDING, pb.ALERT_STATE_FIRING),
        (pb.AlertEvent.PENDING, pb.ALERT_STATE_INACTIVE, pb.ALERT_STATE_PENDING),
    ]
    assert events[0].alert_id == seeded.ids["firing"] and events[0].value == 0.9
    by_alert = project.ListAlertEvents(pb.ListAlertEventsRequest(alert_id=seeded.ids["pending"]))
    assert list(by_alert.events) == []
    page = project.ListAlertEvents(pb.ListAlertEventsRequest(rule_id=seeded.rule.id, limit=1))
    rest = project.ListAlertEvents(
        pb.ListAlertEventsRequest(rule_id=seeded.rule.id, limit=1, page_token=page.next_page_token)
    )
    assert [e.id for e in (*page.events, *rest.events)] == [e.id for e in events]
    bad = refused(lambda: project.ListAlertEvents(pb.ListAlertEventsRequest(alert_id="x")))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "alert_id" in bad.details()


def test_acknowledging_an_alert_records_it_and_acknowledges_its_incident(
    project: Project, alerting_otlpd: RunningOtlpd
) -> None:
    seeded = Seeded(project, alerting_otlpd.database_url)
    acked = project.AcknowledgeAlert(
        pb.AcknowledgeAlertRequest(id=seeded.ids["firing"], comment="looking")
    ).alert
    assert acked.acknowledgement.by == "local" and acked.acknowledgement.comment == "looking"
    assert acked.acknowledgement.at.seconds > 0
    events = project.ListAlertEvents(
        pb.ListAlertEventsRequest(alert_id=seeded.ids["firing"])
    ).events
    assert events[0].kind == pb.AlertEvent.ACKNOWLEDGED and events[0].actor == "local"
    incident = project.GetIncident(pb.GetIncidentRequest(id=seeded.incident)).incident
    assert incident.status == pb.INCIDENT_STATUS_ACKNOWLEDGED
    assert [e.kind for e in incident.timeline][-1] == pb.TimelineEntry.ACKNOWLEDGED
    inactive = refused(
        lambda: project.AcknowledgeAlert(pb.AcknowledgeAlertRequest(id=seeded.ids["inactive"]))
    )
    assert inactive.code() == grpc.StatusCode.FAILED_PRECONDITION
    unknown = refused(
        lambda: project.AcknowledgeAlert(pb.AcknowledgeAlertRequest(id="nope-0000000000000000"))
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND


def test_notifications_with_their_attempts(project: Project, alerting_otlpd: RunningOtlpd) -> None:
    seeded = Seeded(project, alerting_otlpd.database_url)
    found = project.ListNotifications(pb.ListNotificationsRequest()).notifications
    assert [n.status for n in found] == [
        pb.NOTIFICATION_STATUS_PENDING,
        pb.NOTIFICATION_STATUS_DELIVERED,
    ]
    pending, delivered = found
    assert delivered.channel_name == "hook" and delivered.attempts == 3
    assert [a.status_code for a in delivered.attempt_log] == [500, 500, 200]
    assert [a.error for a in delivered.attempt_log] == ["HTTP 500", "HTTP 500", ""]
    assert delivered.delivered_at.seconds > 0 and not delivered.HasField("next_attempt_at")
    assert pending.last_error == "HTTP 500" and pending.HasField("next_attempt_at")
    assert list(pending.alert_ids) == [seeded.ids["firing"]]
    only = project.ListNotifications(
        pb.ListNotificationsRequest(statuses=[pb.NOTIFICATION_STATUS_DELIVERED])
    ).notifications
    assert [n.id for n in only] == [delivered.id]
    by_channel = project.ListNotifications(
        pb.ListNotificationsRequest(channel_id=seeded.channel.id, limit=1)
    )
    assert len(by_channel.notifications) == 1 and by_channel.next_page_token


def test_incident_updates_are_timeline_entries_in_order(
    project: Project, alerting_otlpd: RunningOtlpd
) -> None:
    seeded = Seeded(project, alerting_otlpd.database_url)
    listed = project.ListIncidents(pb.ListIncidentsRequest()).incidents
    assert [i.id for i in listed] == [seeded.incident] and listed[0].firing_alerts == 1
    project.UpdateIncident(pb.UpdateIncidentRequest(id=seeded.incident, assignee="alice"))
    project.UpdateIncident(
        pb.UpdateIncidentRequest(
            id=seeded.incident, status=pb.INCIDENT_STATUS_ACKNOWLEDGED, note="on it"
        )
    )
    done = project.UpdateIncident(
        pb.UpdateIncidentRequest(id=seeded.incident, status=pb.INCIDENT_STATUS_RESOLVED)
    ).incident
    assert done.status == pb.INCIDENT_STATUS_RESOLVED and done.assignee == "alice"
    assert done.resolved_at.seconds > 0 and done.acknowledged_at.seconds > 0
    kinds = [(e.kind, e.actor, e.text) for e in done.timeline]
    assert kinds == [
        (pb.TimelineEntry.OPENED, "", ""),
        (pb.TimelineEntry.ALERT_FIRING, "", "value 0.9"),
        (pb.TimelineEntry.ASSIGNED, "local", "alice"),
        (pb.TimelineEntry.ACKNOWLEDGED, "local", "open -> acknowledged"),
        (pb.TimelineEntry.NOTE, "local", "on it"),
        (pb.TimelineEntry.RESOLVED, "local", "acknowledged -> resolved"),
    ]
    assert done.timeline[1].alert_id == seeded.ids["firing"]
    reopen = refused(
        lambda: project.UpdateIncident(
            pb.UpdateIncidentRequest(id=seeded.incident, status=pb.INCIDENT_STATUS_OPEN)
        )
    )
    assert reopen.code() == grpc.StatusCode.FAILED_PRECONDITION
    resolved = project.ListIncidents(
        pb.ListIncidentsRequest(statuses=[pb.INCIDENT_STATUS_OPEN])
    ).incidents
    assert list(resolved) == []


def test_another_project_sees_and_touches_none_of_it(
    project: Project, other: Project, alerting_otlpd: RunningOtlpd
) -> None:
    seeded = Seeded(project, alerting_otlpd.database_url)
    assert list(other.ListAlerts(pb.ListAlertsRequest(rule_id=seeded.rule.id)).alerts) == []
    assert list(other.ListAlertEvents(pb.ListAlertEventsRequest()).events) == []
    assert list(other.ListNotifications(pb.ListNotificationsRequest()).notifications) == []
    assert list(other.ListIncidents(pb.ListIncidentsRequest()).incidents) == []
    calls: list[Any] = [
        lambda: other.GetIncident(pb.GetIncidentRequest(id=seeded.incident)),
        lambda: other.UpdateIncident(pb.UpdateIncidentRequest(id=seeded.incident, note="x")),
        lambda: other.AcknowledgeAlert(pb.AcknowledgeAlertRequest(id=seeded.ids["firing"])),
    ]
    for call in calls:
        assert refused(call).code() == grpc.StatusCode.NOT_FOUND
    incident = project.GetIncident(pb.GetIncidentRequest(id=seeded.incident)).incident
    assert incident.status == pb.INCIDENT_STATUS_OPEN and len(incident.timeline) == 2
