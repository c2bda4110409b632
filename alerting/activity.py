"""ListAlerts, ListAlertEvents, AcknowledgeAlert, ListNotifications, ListIncidents,
GetIncident, UpdateIncident: what alerting did, and what people do about it.

The evaluator and the senders fill the tables (migration 0011); this module reads them
and records what people do: an acknowledgement stops an alert's repeat notifications
until it resolves, records an ``acknowledged`` event, and, if the alert belongs to an
open incident, acknowledges the incident too (as acknowledging a page acknowledges its
incident in PagerDuty or Grafana OnCall), with a timeline entry. Every change to an
incident (status, assignee, note) is a timeline entry with its actor, in the
transaction of the change.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from alerting import convert, matchers
from alerting.ids import looks_like_id
from alerting.labels import alert_id, fingerprint_hex, parse_alert_id
from alerting.proto import pb
from otlpd.errors import BadArgument, FailedPrecondition, NotFound
from query import arguments, tokens
from query.scope import Caller
from storage.postgres import alert_activity as activity
from storage.postgres import alert_config
from storage.postgres.alert_activity import (
    AlertRecord,
    EventRecord,
    IncidentRecord,
    NotificationRecord,
)
from storage.postgres.alert_store import AlertStore

LIST_DEFAULT_LIMIT: Final = 100
EVENTS_DEFAULT_SPAN: Final = timedelta(hours=24)
MAX_COMMENT_CHARS: Final = 1000
MAX_NOTE_CHARS: Final = 10_000
MAX_ASSIGNEE_CHARS: Final = 200
_ALERT_STATES: Final = {
    pb.ALERT_STATE_INACTIVE: "inactive",
    pb.ALERT_STATE_PENDING: "pending",
    pb.ALERT_STATE_FIRING: "firing",
}
_STATE_VALUES: Final = {name: value for value, name in _ALERT_STATES.items()}
_EVENT_KINDS: Final = {
    "pending": pb.AlertEvent.PENDING,
    "firing": pb.AlertEvent.FIRING,
    "resolved": pb.AlertEvent.RESOLVED,
    "cancelled": pb.AlertEvent.CANCELLED,
    "acknowledged": pb.AlertEvent.ACKNOWLEDGED,
    "flapping": pb.AlertEvent.FLAPPING,
    "settled": pb.AlertEvent.SETTLED,
}
_NOTIFICATION_STATUSES: Final = {
    pb.NOTIFICATION_STATUS_PENDING: "pending",
    pb.NOTIFICATION_STATUS_DELIVERED: "delivered",
    pb.NOTIFICATION_STATUS_FAILED: "failed",
}
_NOTIFICATION_VALUES: Final = {name: value for value, name in _NOTIFICATION_STATUSES.items()}
_INCIDENT_STATUSES: Final = {
    pb.INCIDENT_STATUS_OPEN: "open",
    pb.INCIDENT_STATUS_ACKNOWLEDGED: "acknowledged",
    pb.INCIDENT_STATUS_RESOLVED: "resolved",
}
_INCIDENT_VALUES: Final = {name: value for value, name in _INCIDENT_STATUSES.items()}
_TIMELINE_KINDS: Final = {
    name.lower(): value
    for name, value in pb.TimelineEntry.Kind.items()
    if name != "KIND_UNSPECIFIED"
}


def _enums(values: Any, known: Mapping[Any, str], field: str) -> list[str]:
    found = []
    for i, value in enumerate(values):
        if value not in known:
            raise BadArgument(f"{field}[{i}]", f"unknown value {value}")
        found.append(known[value])
    return found


def _cursor(token: str, kind: str, bound_to: str, size: int) -> list[Any] | None:
    cursor = tokens.decode(token, kind, bound_to)
    if cursor is not None and len(cursor) != size:
        raise BadArgument("page_token", "is not a token this server issued")
    return cursor


def _moment(text: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise BadArgument("page_token", "is not a token this server issued") from exc


def alert_to_proto(record: AlertRecord, silenced: bool) -> pb.Alert:
    alert = pb.Alert(
        id=alert_id(record.rule_id, record.fingerprint),
        rule_id=record.rule_id,
        rule_name=record.rule_name,
        labels=record.labels,
        annotations=record.annotations,
        state=_STATE_VALUES[record.state],
        value=record.value or 0.0,
        flapping=record.flapping,
        silenced=silenced,
        fingerprint=fingerprint_hex(record.fingerprint),
        incident_id=record.incident_id or "",
    )
    for name in ("since", "active_at", "fired_at", "resolved_at", "last_evaluated_at"):
        convert.set_time(getattr(alert, name), getattr(record, name))
    convert.set_time(alert.keep_firing_until, record.keep_firing_until)
    if record.acknowledged_at is not None:
        alert.acknowledgement.by = record.acknowledged_by or ""
        alert.acknowledgement.comment = record.acknowledgement or ""
        convert.set_time(alert.acknowledgement.at, record.acknowledged_at)
    return alert


def event_to_proto(record: EventRecord) -> pb.AlertEvent:
    event = pb.AlertEvent(
        id=str(record.event_id),
        alert_id=alert_id(record.rule_id, record.fingerprint),
        rule_id=record.rule_id,
        labels=record.labels,
        kind=_EVENT_KINDS[record.kind],
        from_state=_STATE_VALUES.get(record.from_state or "", 0),  # type: ignore[arg-type]
        to_state=_STATE_VALUES.get(record.to_state or "", 0),  # type: ignore[arg-type]
        value=record.value or 0.0,
        actor=record.actor or "",
        text=record.text or "",
    )
    convert.set_time(event.time, record.at)
    return event


def notification_to_proto(record: NotificationRecord) -> pb.Notification:
    notification = pb.Notification(
        id=str(record.notification_id),
        channel_id=record.channel_id,
        channel_name=record.channel_name or "",
        rule_id=record.rule_id or "",
        incident_id=record.incident_id or "",
        group_key=record.group_key,
        alert_status=record.alert_status,
        status=_NOTIFICATION_VALUES[record.status],
        attempts=record.attempts,
        last_error=record.last_error or "",
        alert_ids=[alert_id(record.rule_id or "", f) for f in record.fingerprints],
    )
    convert.set_time(notification.created_at, record.created_at)
    if record.status == "pending":
        convert.set_time(notification.next_attempt_at, record.next_attempt_at)
    convert.set_time(notification.delivered_at, record.delivered_at)
    for attempt in record.attempt_log:
        item = notification.attempt_log.add(
            status_code=attempt.status_code or 0, error=attempt.error or ""
        )
        convert.set_time(item.time, attempt.at)
        convert.set_seconds(item.duration, attempt.duration_s)
    return notification


def incident_to_proto(record: IncidentRecord) -> pb.Incident:
    incident = pb.Incident(
        id=record.incident_id,
        title=record.title,
        status=_INCIDENT_VALUES[record.status],
        assignee=record.assignee,
        rule_id=record.rule_id or "",
        group_labels=record.group_labels,
        firing_alerts=record.firing_alerts,
    )
    for name in ("opened_at", "acknowledged_at", "resolved_at", "updated_at"):
        convert.set_time(getattr(incident, name), getattr(record, name))
    return incident


class ActivityCalls:
    """The RPCs over alert state, events, notifications and incidents."""

    def __init__(self, store: AlertStore, max_limit: int) -> None:
        self._store = store
        self._max_limit = max_limit

    def _limit(self, value: int) -> int:
        return arguments.limit(value, default=LIST_DEFAULT_LIMIT, maximum=self._max_limit)

    async def list_alerts(self, caller: Caller, request: pb.ListAlertsRequest) -> Any:
        limit = self._limit(request.limit)
        states = _enums(request.states, _ALERT_STATES, "states") or ["pending", "firing"]
        bound_to = tokens.fingerprint(caller.project, request)
        cursor = _cursor(request.page_token, "alerts", bound_to, 4)
        after = None
        if cursor is not None:
            after = (int(cursor[0]), _moment(cursor[1]), str(cursor[2]), int(cursor[3]))
        rule_id = request.rule_id or None
        if rule_id is not None and not looks_like_id(rule_id):
            return pb.ListAlertsResponse()
        async with self._store.transaction() as conn:
            found = await activity.list_alerts(
                conn, caller.project, states=states, rule_id=rule_id, after=after, limit=limit + 1
            )
            silences = await alert_config.active_silences(conn, caller.project)
        muting = [matchers.from_json(s.matchers) for s in silences]
        response = pb.ListAlertsResponse(
            alerts=[
                alert_to_proto(record, any(matchers.matches(m, record.labels) for m in muting))
                for _, record in found[:limit]
            ]
        )
        if len(found) > limit:
            rank, last = found[limit - 1]
            response.next_page_token = tokens.encode(
                "alerts", bound_to, [rank, last.since.isoformat(), last.rule_id, last.fingerprint]
            )
        return response

    async def list_events(self, caller: Caller, request: pb.ListAlertEventsRequest) -> Any:
        limit = self._limit(request.limit)
        window = arguments.time_range(
            request, default_span_ns=int(EVENTS_DEFAULT_SPAN.total_seconds() * 1e9)
        )
        rule_id = request.rule_id or None
        fingerprint = None
        if request.alert_id:
            parsed = parse_alert_id(request.alert_id)
            if parsed is None:
                raise BadArgument("alert_id", "is not an alert id (<rule id>-<fingerprint>)")
            if rule_id is not None and rule_id != parsed[0]:
                raise BadArgument("alert_id", "is an alert of another rule than rule_id")
            rule_id, fingerprint = parsed
        bound_to = tokens.fingerprint(caller.project, request)
        cursor = _cursor(request.page_token, "alert-events", bound_to, 3)
        before = None
        if cursor is not None:
            before = (_moment(cursor[0]), int(cursor[1]))
        start = datetime.fromtimestamp(window.start_ns / 1e9).astimezone()
        end = datetime.fromtimestamp(window.end_ns / 1e9).astimezone()
        if cursor is not None:  # the range of the first page, not a moving "24 h ago"
            start = _moment(cursor[2])
        async with self._store.transaction() as conn:
            found = await activity.list_events(
                conn,
                caller.project,
                rule_id=rule_id,
                fingerprint=fingerprint,
                start=start,
                end=end,
                before=before,
                limit=limit + 1,
            )
        response = pb.ListAlertEventsResponse(events=[event_to_proto(e) for e in found[:limit]])
        if len(found) > limit:
            last = found[limit - 1]
            response.next_page_token = tokens.encode(
                "alert-events", bound_to, [last.at.isoformat(), last.event_id, start.isoformat()]
            )
        return response

    async def acknowledge(self, caller: Caller, request: pb.AcknowledgeAlertRequest) -> Any:
        comment = arguments.text(request.comment, "comment", max_chars=MAX_COMMENT_CHARS)
        parsed = parse_alert_id(request.id)
        if parsed is None:
            raise NotFound(f"no alert with id {request.id!r}")
        rule_id, fingerprint = parsed
        project = caller.project
        async with self._store.transaction() as conn:
            found = await activity.alert(conn, project, rule_id, fingerprint, lock=True)
            if found is None:
                raise NotFound(f"no alert with id {request.id!r}")
            if found.state == "inactive":
                raise FailedPrecondition(
                    "the alert is not pending or firing: nothing to acknowledge"
                )
            await activity.acknowledge(
                conn, project, rule_id, fingerprint, actor=caller.actor, comment=comment
            )
            if found.incident_id:
                incident = await activity.incident(conn, project, found.incident_id, lock=True)
                if incident is not None and incident.status == "open":
                    await activity.set_incident(
                        conn, project, incident.incident_id, changes={"status": "acknowledged"}
                    )
                    await activity.add_entry(
                        conn,
                        project,
                        incident.incident_id,
                        kind="acknowledged",
                        actor=caller.actor,
                        text=comment,
                        status="acknowledged",
                        alert=(rule_id, fingerprint),
                    )
            updated = await activity.alert(conn, project, rule_id, fingerprint)
            silences = await alert_config.active_silences(conn, project)
        assert updated is not None
        silenced = any(
            matchers.matches(matchers.from_json(s.matchers), updated.labels) for s in silences
        )
        return pb.AcknowledgeAlertResponse(alert=alert_to_proto(updated, silenced))

    async def list_notifications(self, caller: Caller, request: pb.ListNotificationsRequest) -> Any:
        limit = self._limit(request.limit)
        statuses = _enums(request.statuses, _NOTIFICATION_STATUSES, "statuses")
        bound_to = tokens.fingerprint(caller.project, request)
        cursor = _cursor(request.page_token, "notifications", bound_to, 2)
        before = None if cursor is None else (_moment(cursor[0]), int(cursor[1]))
        for name in ("channel_id", "rule_id", "incident_id"):
            value = getattr(request, name)
            if value and not looks_like_id(value):
                return pb.ListNotificationsResponse()
        async with self._store.transaction() as conn:
            found = await activity.list_notifications(
                conn,
                caller.project,
                channel_id=request.channel_id or None,
                rule_id=request.rule_id or None,
                incident_id=request.incident_id or None,
                statuses=statuses,
                before=before,
                limit=limit + 1,
            )
        response = pb.ListNotificationsResponse(
            notifications=[notification_to_proto(n) for n in found[:limit]]
        )
        if len(found) > limit:
            last = found[limit - 1]
            response.next_page_token = tokens.encode(
                "notifications", bound_to, [last.created_at.isoformat(), last.notification_id]
            )
        return response

    async def list_incidents(self, caller: Caller, request: pb.ListIncidentsRequest) -> Any:
        limit = self._limit(request.limit)
        statuses = _enums(request.statuses, _INCIDENT_STATUSES, "statuses")
        bound_to = tokens.fingerprint(caller.project, request)
        cursor = _cursor(request.page_token, "incidents", bound_to, 2)
        before = None if cursor is None else (_moment(cursor[0]), str(cursor[1]))
        async with self._store.transaction() as conn:
            found = await activity.list_incidents(
                conn, caller.project, statuses=statuses, before=before, limit=limit + 1
            )
        response = pb.ListIncidentsResponse(incidents=[incident_to_proto(i) for i in found[:limit]])
        if len(found) > limit:
            last = found[limit - 1]
            response.next_page_token = tokens.encode(
                "incidents", bound_to, [last.opened_at.isoformat(), last.incident_id]
            )
        return response

    async def _incident(self, conn: Any, project: str, incident_id: str) -> pb.Incident:
        found = (
            await activity.incident(conn, project, incident_id)
            if looks_like_id(incident_id)
            else None
        )
        if found is None:
            raise NotFound(f"no incident with id {incident_id!r}")
        incident = incident_to_proto(found)
        for entry in await activity.timeline(conn, project, incident_id):
            item = incident.timeline.add(
                id=str(entry.entry_id),
                kind=_TIMELINE_KINDS[entry.kind],
                actor=entry.actor,
                text=entry.text,
                notification_id="" if entry.notification_id is None else str(entry.notification_id),
                status=_INCIDENT_VALUES.get(entry.status or "", 0),
            )
            if entry.rule_id is not None and entry.fingerprint is not None:
                item.alert_id = alert_id(entry.rule_id, entry.fingerprint)
            convert.set_time(item.time, entry.at)
        return incident

    async def get_incident(self, caller: Caller, request: pb.GetIncidentRequest) -> Any:
        async with self._store.transaction() as conn:
            incident = await self._incident(conn, caller.project, request.id)
        return pb.GetIncidentResponse(incident=incident)

    async def update_incident(self, caller: Caller, request: pb.UpdateIncidentRequest) -> Any:
        project = caller.project
        note = arguments.text(request.note, "note", max_chars=MAX_NOTE_CHARS)
        assignee = None
        if request.HasField("assignee"):
            assignee = arguments.text(request.assignee, "assignee", max_chars=MAX_ASSIGNEE_CHARS)
        status = None
        if request.status != pb.INCIDENT_STATUS_UNSPECIFIED:
            if request.status not in _INCIDENT_STATUSES:
                raise BadArgument("status", f"unknown incident status {request.status}")
            status = _INCIDENT_STATUSES[request.status]
        async with self._store.transaction() as conn:
            current = (
                await activity.incident(conn, project, request.id, lock=True)
                if looks_like_id(request.id)
                else None
            )
            if current is None:
                raise NotFound(f"no incident with id {request.id!r}")
            if status is not None and status != current.status:
                if current.status == "resolved":
                    raise FailedPrecondition(
                        "the incident is resolved; a resolved incident stays so"
                    )
                kind = {"acknowledged": "acknowledged", "resolved": "resolved"}.get(
                    status, "status_changed"
                )
                await activity.set_incident(conn, project, request.id, changes={"status": status})
                await activity.add_entry(
                    conn, project, request.id, kind=kind, actor=caller.actor, status=status,
                    text=f"{current.status} -> {status}",
                )  # fmt: skip
            if assignee is not None and assignee != current.assignee:
                await activity.set_incident(
                    conn, project, request.id, changes={"assignee": assignee}
                )
                await activity.add_entry(
                    conn, project, request.id, kind="assigned", actor=caller.actor,
                    text=assignee or "(unassigned)",
                )  # fmt: skip
            if note.strip():
                await activity.add_entry(
                    conn, project, request.id, kind="note", actor=caller.actor, text=note
                )
                await activity.set_incident(conn, project, request.id, changes={})
            incident = await self._incident(conn, project, request.id)
        return pb.UpdateIncidentResponse(incident=incident)
