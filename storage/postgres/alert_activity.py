"""What alerting did, in PostgreSQL: alert states, their events, notifications and
incidents (migration 0011). The evaluator and the senders write these tables; the API
reads them here, and writes what people do to them (acknowledgements, incident status,
assignees and notes), each with its event or timeline entry in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from storage.postgres.alert_store import Connection, row, rows

# ---- alert state -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A row of ``alert_state`` with its rule's name."""

    rule_id: str
    fingerprint: int
    rule_name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str
    value: float | None
    since: datetime
    active_at: datetime | None
    fired_at: datetime | None
    resolved_at: datetime | None
    last_evaluated_at: datetime
    keep_firing_until: datetime | None
    flapping: bool
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledgement: str | None
    incident_id: str | None


# Firing first, then pending, then inactive; within a state the longest-standing first.
_RANK: Final = "CASE s.state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END"
_SINCE: Final = (
    "CASE s.state WHEN 'firing' THEN s.fired_at WHEN 'pending' THEN s.active_at"
    " ELSE coalesce(s.resolved_at, s.last_evaluated_at) END"
)
_ALERT_COLUMNS: Final = (
    f"s.rule_id, s.fingerprint, r.name, s.labels, s.annotations, s.state, s.value, {_SINCE},"
    " s.active_at, s.fired_at, s.resolved_at, s.last_evaluated_at, s.keep_firing_until,"
    " s.flapping, s.acknowledged_at, s.acknowledged_by, s.acknowledgement, s.incident_id"
)
_ALERT_FROM: Final = (
    "alert_state s JOIN alert_rules r ON r.project_id = s.project_id AND r.rule_id = s.rule_id"
)


async def list_alerts(
    conn: Connection,
    project: str,
    *,
    states: Sequence[str],
    rule_id: str | None,
    after: tuple[int, datetime, str, int] | None,
    limit: int,
) -> list[tuple[int, AlertRecord]]:
    """``(rank, alert)`` by rank, since, rule id and fingerprint, after the cursor."""
    found = await rows(
        conn,
        f"SELECT {_RANK}, {_ALERT_COLUMNS} FROM {_ALERT_FROM}"
        " WHERE s.project_id = %(project)s AND s.state = ANY(%(states)s)"
        " AND (%(rule)s::text IS NULL OR s.rule_id = %(rule)s)"
        f" AND (%(rank)s::int IS NULL OR ({_RANK}, {_SINCE}, s.rule_id, s.fingerprint)"
        " > (%(rank)s, %(since)s, %(after_rule)s, %(fingerprint)s))"
        f" ORDER BY {_RANK}, {_SINCE}, s.rule_id, s.fingerprint LIMIT %(limit)s",
        {
            "project": project,
            "states": list(states),
            "rule": rule_id,
            "rank": None if after is None else after[0],
            "since": None if after is None else after[1],
            "after_rule": None if after is None else after[2],
            "fingerprint": None if after is None else after[3],
            "limit": limit,
        },
    )
    return [(r[0], AlertRecord(*r[1:])) for r in found]


async def alert(
    conn: Connection, project: str, rule_id: str, fingerprint: int, *, lock: bool = False
) -> AlertRecord | None:
    found = await row(
        conn,
        f"SELECT {_ALERT_COLUMNS} FROM {_ALERT_FROM}"
        " WHERE s.project_id = %s AND s.rule_id = %s AND s.fingerprint = %s"
        + (" FOR UPDATE OF s" if lock else ""),
        (project, rule_id, fingerprint),
    )
    return None if found is None else AlertRecord(*found)


async def acknowledge(
    conn: Connection, project: str, rule_id: str, fingerprint: int, *, actor: str, comment: str
) -> None:
    """Marks the alert acknowledged and records the ``acknowledged`` event."""
    await conn.execute(
        "UPDATE alert_state SET acknowledged_at = now(), acknowledged_by = %s,"
        " acknowledgement = %s WHERE project_id = %s AND rule_id = %s AND fingerprint = %s",
        (actor, comment, project, rule_id, fingerprint),
    )
    await conn.execute(
        "INSERT INTO alert_events (project_id, rule_id, fingerprint, labels, kind, from_state,"
        " to_state, value, at, actor, text)"
        " SELECT project_id, rule_id, fingerprint, labels, 'acknowledged', state, state, value,"
        " now(), %s, %s FROM alert_state"
        " WHERE project_id = %s AND rule_id = %s AND fingerprint = %s",
        (actor, comment, project, rule_id, fingerprint),
    )


# ---- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A row of ``alert_events``."""

    event_id: int
    rule_id: str
    fingerprint: int
    labels: dict[str, str]
    kind: str
    from_state: str | None
    to_state: str | None
    value: float | None
    at: datetime
    actor: str | None
    text: str | None


async def list_events(
    conn: Connection,
    project: str,
    *,
    rule_id: str | None,
    fingerprint: int | None,
    start: datetime,
    end: datetime,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[EventRecord]:
    """Newest first by (at, event_id), in ``[start, end)``, before the cursor."""
    found = await rows(
        conn,
        "SELECT event_id, rule_id, fingerprint, labels, kind, from_state, to_state, value, at,"
        " actor, text FROM alert_events WHERE project_id = %(project)s"
        " AND (%(rule)s::text IS NULL OR rule_id = %(rule)s)"
        " AND (%(fingerprint)s::bigint IS NULL OR fingerprint = %(fingerprint)s)"
        " AND at >= %(start)s AND at < %(end)s"
        " AND (%(at)s::timestamptz IS NULL OR (at, event_id) < (%(at)s, %(event)s))"
        " ORDER BY at DESC, event_id DESC LIMIT %(limit)s",
        {
            "project": project,
            "rule": rule_id,
            "fingerprint": fingerprint,
            "start": start,
            "end": end,
            "at": None if before is None else before[0],
            "event": None if before is None else before[1],
            "limit": limit,
        },
    )
    return [EventRecord(*r) for r in found]


# ---- notifications -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    at: datetime
    duration_s: float
    status_code: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """A row of ``alert_notifications`` with its channel's name and attempts."""

    notification_id: int
    channel_id: str
    channel_name: str | None
    rule_id: str | None
    incident_id: str | None
    group_key: str
    alert_status: str
    fingerprints: list[int]
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptRecord]


async def list_notifications(
    conn: Connection,
    project: str,
    *,
    channel_id: str | None,
    rule_id: str | None,
    incident_id: str | None,
    statuses: Sequence[str],
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[NotificationRecord]:
    """Newest first by (created_at, notification_id), before the cursor."""
    found = await rows(
        conn,
        "SELECT n.notification_id, n.channel_id, c.name, n.rule_id, n.incident_id, n.group_key,"
        " n.alert_status, n.fingerprints, n.status, n.attempts, n.last_error, n.created_at,"
        " n.next_attempt_at, n.delivered_at,"
        " coalesce((SELECT jsonb_agg(jsonb_build_array(a.at, a.duration_s, a.status_code,"
        " a.error) ORDER BY a.attempt) FROM alert_notification_attempts a"
        " WHERE a.project_id = n.project_id AND a.notification_id = n.notification_id),"
        " '[]'::jsonb)"
        " FROM alert_notifications n LEFT JOIN alert_channels c"
        " ON c.project_id = n.project_id AND c.channel_id = n.channel_id"
        " WHERE n.project_id = %(project)s"
        " AND (%(channel)s::text IS NULL OR n.channel_id = %(channel)s)"
        " AND (%(rule)s::text IS NULL OR n.rule_id = %(rule)s)"
        " AND (%(incident)s::text IS NULL OR n.incident_id = %(incident)s)"
        " AND (cardinality(%(statuses)s::text[]) = 0 OR n.status = ANY(%(statuses)s::text[]))"
        " AND (%(at)s::timestamptz IS NULL"
        " OR (n.created_at, n.notification_id) < (%(at)s, %(id)s))"
        " ORDER BY n.created_at DESC, n.notification_id DESC LIMIT %(limit)s",
        {
            "project": project,
            "channel": channel_id,
            "rule": rule_id,
            "incident": incident_id,
            "statuses": list(statuses),
            "at": None if before is None else before[0],
            "id": None if before is None else before[1],
            "limit": limit,
        },
    )
    records = []
    for r in found:
        attempts = [
            AttemptRecord(datetime.fromisoformat(a[0]), float(a[1]), a[2], a[3]) for a in r[14]
        ]
        records.append(NotificationRecord(*r[:14], attempts))  # type: ignore[call-arg]
    return records


# ---- incidents ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """A row of ``alert_incidents`` with the count of its firing alerts."""

    incident_id: str
    rule_id: str | None
    group_key: str
    group_labels: dict[str, str]
    title: str
    status: str
    assignee: str
    opened_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    updated_at: datetime
    firing_alerts: int


@dataclass(frozen=True, slots=True)
class TimelineRecord:
    """A row of ``alert_incident_timeline``."""

    entry_id: int
    at: datetime
    kind: str
    actor: str
    text: str
    rule_id: str | None
    fingerprint: int | None
    notification_id: int | None
    status: str | None


_INCIDENT_COLUMNS: Final = (
    "i.incident_id, i.rule_id, i.group_key, i.group_labels, i.title, i.status, i.assignee,"
    " i.opened_at, i.acknowledged_at, i.resolved_at, i.updated_at,"
    " (SELECT count(*) FROM alert_state s WHERE s.project_id = i.project_id"
    " AND s.incident_id = i.incident_id AND s.state = 'firing')::int"
)


async def list_incidents(
    conn: Connection,
    project: str,
    *,
    statuses: Sequence[str],
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[IncidentRecord]:
    """Newest first by (opened_at, incident_id), before the cursor."""
    found = await rows(
        conn,
        f"SELECT {_INCIDENT_COLUMNS} FROM alert_incidents i WHERE i.project_id = %(project)s"
        " AND (cardinality(%(statuses)s::text[]) = 0 OR i.status = ANY(%(statuses)s::text[]))"
        " AND (%(at)s::timestamptz IS NULL OR (i.opened_at, i.incident_id) < (%(at)s, %(id)s))"
        " ORDER BY i.opened_at DESC, i.incident_id DESC LIMIT %(limit)s",
        {
            "project": project,
            "statuses": list(statuses),
            "at": None if before is None else before[0],
            "id": None if before is None else before[1],
            "limit": limit,
        },
    )
    return [IncidentRecord(*r) for r in found]


async def incident(
    conn: Connection, project: str, incident_id: str, *, lock: bool = False
) -> IncidentRecord | None:
    found = await row(
        conn,
        f"SELECT {_INCIDENT_COLUMNS} FROM alert_incidents i"
        " WHERE i.project_id = %s AND i.incident_id = %s" + (" FOR UPDATE OF i" if lock else ""),
        (project, incident_id),
    )
    return None if found is None else IncidentRecord(*found)


async def timeline(conn: Connection, project: str, incident_id: str) -> list[TimelineRecord]:
    found = await rows(
        conn,
        "SELECT entry_id, at, kind, actor, text, rule_id, fingerprint, notification_id, status"
        " FROM alert_incident_timeline WHERE project_id = %s AND incident_id = %s"
        " ORDER BY entry_id",
        (project, incident_id),
    )
    return [TimelineRecord(*r) for r in found]


async def add_entry(
    conn: Connection,
    project: str,
    incident_id: str,
    *,
    kind: str,
    actor: str,
    text: str = "",
    status: str | None = None,
    alert: tuple[str, int] | None = None,
) -> None:
    """One timeline entry, at the transaction's now()."""
    await conn.execute(
        "INSERT INTO alert_incident_timeline (project_id, incident_id, kind, actor, text,"
        " status, rule_id, fingerprint) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            project,
            incident_id,
            kind,
            actor,
            text,
            status,
            None if alert is None else alert[0],
            None if alert is None else alert[1],
        ),
    )


async def set_incident(
    conn: Connection, project: str, incident_id: str, *, changes: dict[str, Any]
) -> None:
    """Sets ``status`` and/or ``assignee`` (keys of ``changes``), stamping the times."""
    status = changes.get("status")
    await conn.execute(
        "UPDATE alert_incidents SET status = coalesce(%(status)s, status),"
        " assignee = coalesce(%(assignee)s, assignee),"
        " acknowledged_at = CASE WHEN %(status)s = 'acknowledged' THEN now()"
        " ELSE acknowledged_at END,"
        " resolved_at = CASE WHEN %(status)s = 'resolved' THEN now() ELSE resolved_at END,"
        " updated_at = now() WHERE project_id = %(project)s AND incident_id = %(incident)s",
        {
            "status": status,
            "assignee": changes.get("assignee"),
            "project": project,
            "incident": incident_id,
        },
    )
