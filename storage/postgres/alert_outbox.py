"""The notification outbox as the senders use it (``alert_notifications`` of 0011).

``claim`` takes due rows (pending, ``next_attempt_at`` passed, no live lease) with
``FOR UPDATE SKIP LOCKED``, leasing them to one sender and committing the claim at once,
so two senders (two replicas, or a round that outlived its lock) never hold one row.
``record`` writes an attempt and its outcome in one transaction: the ``attempts`` row,
the outbox row's new status (or its next attempt), and, for a notification of an
incident, the incident's timeline entry. It writes only while the lease is still the
recorder's, so a sender presumed dead cannot overwrite its successor's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from storage.postgres.alert_eval import add_entry
from storage.postgres.alert_store import Connection, row, rows


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed notification with what its channel needs (None: the channel is gone)."""

    project: str
    notification_id: int
    channel_id: str
    incident_id: str | None
    alert_status: str
    payload: dict[str, Any]
    attempts: int
    channel_kind: str | None
    channel_name: str | None
    channel_config: dict[str, Any] | None


_CLAIM: Final = """
WITH due AS (
    SELECT project_id, notification_id FROM alert_notifications
    WHERE status = 'pending' AND next_attempt_at <= now()
      AND (lease_owner IS NULL OR lease_expires_at < now())
    ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
UPDATE alert_notifications n
SET lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease)s)
FROM due
WHERE n.project_id = due.project_id AND n.notification_id = due.notification_id
RETURNING n.project_id, n.notification_id, n.channel_id, n.incident_id, n.alert_status,
          n.payload, n.attempts,
          (SELECT c.kind FROM alert_channels c WHERE c.project_id = n.project_id
           AND c.channel_id = n.channel_id),
          (SELECT c.name FROM alert_channels c WHERE c.project_id = n.project_id
           AND c.channel_id = n.channel_id),
          (SELECT c.config FROM alert_channels c WHERE c.project_id = n.project_id
           AND c.channel_id = n.channel_id)
"""


async def claim(conn: Connection, *, owner: str, lease_s: float, limit: int) -> list[Due]:
    """At most ``limit`` due notifications, oldest first, leased to ``owner``."""
    found = await rows(conn, _CLAIM, {"owner": owner, "lease": lease_s, "limit": limit})
    return [Due(*r) for r in found]


async def record(
    conn: Connection,
    due: Due,
    *,
    owner: str,
    at: datetime,
    seconds: float,
    status_code: int | None,
    error: str | None,
    outcome: str,
    next_attempt_at: datetime | None,
) -> bool:
    """One attempt and its ``outcome`` (delivered, retry, failed); False when the lease
    was lost meanwhile (nothing written)."""
    async with conn.transaction():
        updated = await row(
            conn,
            "UPDATE alert_notifications SET attempts = attempts + 1,"
            " status = %(status)s, last_error = %(error)s,"
            " next_attempt_at = coalesce(%(next)s, next_attempt_at),"
            " delivered_at = CASE WHEN %(status)s = 'delivered' THEN now() END,"
            " lease_owner = NULL, lease_expires_at = NULL"
            " WHERE project_id = %(project)s AND notification_id = %(id)s"
            " AND lease_owner = %(owner)s AND status = 'pending' RETURNING attempts",
            {
                "status": "pending" if outcome == "retry" else outcome,
                "error": error,
                "next": next_attempt_at,
                "project": due.project,
                "id": due.notification_id,
                "owner": owner,
            },
        )
        if updated is None:
            return False
        await conn.execute(
            "INSERT INTO alert_notification_attempts (project_id, notification_id, attempt,"
            " at, duration_s, status_code, error) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (due.project, due.notification_id, updated[0], at, seconds, status_code, error),
        )
        if due.incident_id is not None and outcome != "retry":
            where = due.channel_name or due.channel_id
            await add_entry(
                conn,
                due.project,
                due.incident_id,
                kind="notification_sent" if outcome == "delivered" else "notification_failed",
                text=f"{due.alert_status} to {where}" + ("" if error is None else f": {error}"),
                notification_id=due.notification_id,
            )
    return True


async def depth(conn: Connection) -> tuple[int, float]:
    """(pending notifications, age in seconds of the oldest), over every project."""
    found = await row(
        conn,
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8"
        " FROM alert_notifications WHERE status = 'pending'",
    )
    assert found is not None
    return int(found[0]), float(found[1])
