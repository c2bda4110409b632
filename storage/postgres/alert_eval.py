"""What the alert evaluator reads and writes (migration 0011's header: the fence).

* ``claim`` takes due rules from ``alert_rule_schedule`` with ``FOR UPDATE SKIP LOCKED``,
  setting the lease and ``fence + 1``, in a statement of its own (committed at once).
* ``fenced`` starts the results' transaction: it locks the schedule row and checks that
  the fence and lease are still the claimer's and the rule's version the evaluated one;
  when not, the caller rolls back and nothing of the evaluation is written.
* The rest writes state, events, incidents and outbox rows in that same transaction, and
  ``finish`` moves the schedule to the next slot and clears the lease.

Every statement is parameterized; rows are keyed by ``project_id`` first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg.types.json import Jsonb

from storage.postgres.alert_config import RULE_COLUMNS, RuleRecord, rule_from_row
from storage.postgres.alert_store import Connection, row, rows


@dataclass(frozen=True, slots=True)
class Claim:
    """A due rule this replica holds: its slot, fence and the database's now."""

    project: str
    rule_id: str
    next_eval_at: datetime
    fence: int
    now: datetime


_CLAIM: Final = """
WITH due AS (
    SELECT project_id, rule_id FROM alert_rule_schedule
    WHERE next_eval_at <= now() AND (lease_owner IS NULL OR lease_expires_at < now())
    ORDER BY next_eval_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
UPDATE alert_rule_schedule s
SET lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease)s),
    fence = s.fence + 1
FROM due WHERE s.project_id = due.project_id AND s.rule_id = due.rule_id
RETURNING s.project_id, s.rule_id, s.next_eval_at, s.fence, now()
"""


async def claim(conn: Connection, *, owner: str, lease_s: float, limit: int) -> list[Claim]:
    """At most ``limit`` due rules, oldest slot first, leased to ``owner``."""
    found = await rows(conn, _CLAIM, {"owner": owner, "lease": lease_s, "limit": limit})
    return sorted((Claim(*r) for r in found), key=lambda c: c.next_eval_at)


async def rules(
    conn: Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], RuleRecord]:
    """The rules of ``(project, rule_id)`` keys that still exist."""
    if not keys:
        return {}
    found = await rows(
        conn,
        f"SELECT r.project_id, {RULE_COLUMNS} FROM alert_rules r"
        " JOIN unnest(%s::text[], %s::text[]) AS k(p, id) ON r.project_id = k.p"
        " AND r.rule_id = k.id",
        ([k[0] for k in keys], [k[1] for k in keys]),
    )
    return {(r[0], r[1]): rule_from_row(r[1:]) for r in found}


async def release(
    conn: Connection, claim: Claim, *, next_eval_at: datetime | None, error: str | None
) -> None:
    """Gives a claimed rule back without an evaluation, if the claim is still this one:
    due at ``next_eval_at`` (None: when it was), with ``error`` (None: the one it had)."""
    await conn.execute(
        "UPDATE alert_rule_schedule SET lease_owner = NULL, lease_expires_at = NULL,"
        " next_eval_at = coalesce(%s, next_eval_at), last_error = coalesce(%s, last_error)"
        " WHERE project_id = %s AND rule_id = %s AND fence = %s",
        (
            next_eval_at,
            None if error is None else error[:2000],
            claim.project,
            claim.rule_id,
            claim.fence,
        ),
    )


async def fenced(conn: Connection, claim: Claim, owner: str, version: int) -> bool:
    """Whether this replica still holds the claim and the rule is still ``version``;
    locks the schedule row (and shares the rule's) until the transaction ends."""
    found = await row(
        conn,
        "SELECT s.fence, s.lease_owner, r.version FROM alert_rule_schedule s"
        " JOIN alert_rules r ON r.project_id = s.project_id AND r.rule_id = s.rule_id"
        " WHERE s.project_id = %s AND s.rule_id = %s FOR UPDATE OF s FOR SHARE OF r",
        (claim.project, claim.rule_id),
    )
    return found is not None and tuple(found) == (claim.fence, owner, version)


async def finish(
    conn: Connection,
    claim: Claim,
    *,
    evaluated_at: datetime,
    next_eval_at: datetime,
    seconds: float,
    error: str | None,
) -> None:
    await conn.execute(
        "UPDATE alert_rule_schedule SET next_eval_at = %s, last_eval_at = %s,"
        " last_eval_seconds = %s, last_error = %s, evaluations = evaluations + 1,"
        " lease_owner = NULL, lease_expires_at = NULL WHERE project_id = %s AND rule_id = %s",
        (
            next_eval_at,
            evaluated_at,
            seconds,
            None if error is None else error[:2000],
            claim.project,
            claim.rule_id,
        ),
    )


# ---- state -----------------------------------------------------------------------------

STATE_COLUMNS: Final = (
    "fingerprint, labels, annotations, state, value, active_at, fired_at, resolved_at,"
    " last_evaluated_at, keep_firing_until, last_notified_at, flapping, flapping_since,"
    " transitions, acknowledged_at, acknowledged_by, acknowledgement, incident_id, rule_version"
)


async def states(conn: Connection, project: str, rule_id: str) -> list[tuple[Any, ...]]:
    """The rule's ``alert_state`` rows (``STATE_COLUMNS``), locked."""
    return [
        tuple(r)
        for r in await rows(
            conn,
            f"SELECT {STATE_COLUMNS} FROM alert_state WHERE project_id = %s AND rule_id = %s"
            " ORDER BY fingerprint FOR UPDATE",
            (project, rule_id),
        )
    ]


_UNNESTED: Final = (
    "fp, labels, annotations, state, value, active_at, fired_at, resolved_at,"
    " last_evaluated_at, keep_firing_until, last_notified_at, flapping, flapping_since,"
    " transitions, acknowledged_at, acknowledged_by, acknowledgement, incident_id, rule_version"
)

_UPSERT: Final = f"""
INSERT INTO alert_state (project_id, rule_id, {STATE_COLUMNS})
SELECT %s, %s, fp, labels, annotations, state, value, active_at, fired_at, resolved_at,
       last_evaluated_at, keep_firing_until, last_notified_at, flapping, flapping_since,
       transitions::timestamptz[], acknowledged_at, acknowledged_by, acknowledgement,
       incident_id, rule_version
FROM unnest(
    %s::bigint[], %s::jsonb[], %s::jsonb[], %s::text[], %s::float8[], %s::timestamptz[],
    %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[],
    %s::timestamptz[], %s::bool[], %s::timestamptz[], %s::text[], %s::timestamptz[],
    %s::text[], %s::text[], %s::text[], %s::bigint[]) AS u({_UNNESTED})
ON CONFLICT (project_id, rule_id, fingerprint) DO UPDATE SET
    labels = EXCLUDED.labels, annotations = EXCLUDED.annotations, state = EXCLUDED.state,
    value = EXCLUDED.value, active_at = EXCLUDED.active_at, fired_at = EXCLUDED.fired_at,
    resolved_at = EXCLUDED.resolved_at, last_evaluated_at = EXCLUDED.last_evaluated_at,
    keep_firing_until = EXCLUDED.keep_firing_until,
    last_notified_at = EXCLUDED.last_notified_at, flapping = EXCLUDED.flapping,
    flapping_since = EXCLUDED.flapping_since, transitions = EXCLUDED.transitions,
    acknowledged_at = EXCLUDED.acknowledged_at, acknowledged_by = EXCLUDED.acknowledged_by,
    acknowledgement = EXCLUDED.acknowledgement, incident_id = EXCLUDED.incident_id,
    rule_version = EXCLUDED.rule_version
"""


def _transitions(values: Iterable[datetime]) -> str:
    # Each row's array travels as its text form and is cast back per row: unnest() of
    # a 2-D array would flatten it, and rows have arrays of different lengths.
    return "{" + ",".join(f'"{v.isoformat()}"' for v in values) + "}"


async def write_states(
    conn: Connection, project: str, rule_id: str, records: Sequence[Sequence[Any]]
) -> None:
    """Inserts or replaces rows given in ``STATE_COLUMNS`` order (transitions a list),
    in one statement."""
    if not records:
        return
    columns: list[list[Any]] = [[] for _ in range(19)]
    for record in records:
        for i, value in enumerate(record):
            if i in (1, 2):
                columns[i].append(Jsonb(value))
            elif i == 13:
                columns[i].append(_transitions(value))
            else:
                columns[i].append(value)
    await conn.execute(_UPSERT, (project, rule_id, *columns))


async def delete_states(conn: Connection, project: str, rule_id: str, fps: Sequence[int]) -> None:
    if fps:
        await conn.execute(
            "DELETE FROM alert_state WHERE project_id = %s AND rule_id = %s"
            " AND fingerprint = ANY(%s)",
            (project, rule_id, list(fps)),
        )


async def insert_events(
    conn: Connection, project: str, rule_id: str, events: Sequence[Sequence[Any]]
) -> None:
    """``(fingerprint, labels, kind, from, to, value, at, text)`` rows of ``alert_events``."""
    if not events:
        return
    async with conn.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO alert_events (project_id, rule_id, fingerprint, labels, kind,"
            " from_state, to_state, value, at, text) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s)",
            [(project, rule_id, e[0], Jsonb(e[1]), *e[2:]) for e in events],
        )


# ---- incidents -------------------------------------------------------------------------


async def join_incident(
    conn: Connection,
    project: str,
    *,
    new_id: str,
    rule_id: str,
    group_key: str,
    group_labels: Mapping[str, str],
    title: str,
    at: datetime,
) -> tuple[str, bool]:
    """``(incident id, opened)``: the group's unresolved incident, or a new one."""
    found = await row(
        conn,
        "SELECT incident_id FROM alert_incidents WHERE project_id = %s AND group_key = %s"
        " AND status <> 'resolved' FOR UPDATE",
        (project, group_key),
    )
    if found is not None:
        return str(found[0]), False
    await conn.execute(
        "INSERT INTO alert_incidents (project_id, incident_id, rule_id, group_key,"
        " group_labels, title, status, opened_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, 'open', %s, now())",
        (project, new_id, rule_id, group_key, Jsonb(dict(group_labels)), title, at),
    )
    await add_entry(conn, project, new_id, kind="opened", text=title)
    return new_id, True


async def add_entry(
    conn: Connection,
    project: str,
    incident_id: str,
    *,
    kind: str,
    text: str = "",
    status: str | None = None,
    alert: tuple[str, int] | None = None,
    notification_id: int | None = None,
) -> None:
    """One timeline entry by otlpd itself (no actor), at the transaction's now()."""
    await conn.execute(
        "INSERT INTO alert_incident_timeline (project_id, incident_id, kind, text, status,"
        " rule_id, fingerprint, notification_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            project,
            incident_id,
            kind,
            text,
            status,
            None if alert is None else alert[0],
            None if alert is None else alert[1],
            notification_id,
        ),
    )


async def resolve_quiet_incidents(
    conn: Connection, project: str, incident_ids: Sequence[str]
) -> list[str]:
    """Resolves those of ``incident_ids`` that are unresolved and have no firing alert
    left (their timeline says so); the ids resolved."""
    if not incident_ids:
        return []
    found = await rows(
        conn,
        "UPDATE alert_incidents i SET status = 'resolved', resolved_at = now(),"
        " updated_at = now() WHERE i.project_id = %s AND i.incident_id = ANY(%s)"
        " AND i.status <> 'resolved' AND NOT EXISTS (SELECT 1 FROM alert_state s"
        " WHERE s.project_id = i.project_id AND s.incident_id = i.incident_id"
        " AND s.state = 'firing') RETURNING i.incident_id",
        (project, list(incident_ids)),
    )
    resolved = [str(r[0]) for r in found]
    for incident_id in resolved:
        await add_entry(
            conn,
            project,
            incident_id,
            kind="resolved",
            text="every alert of the incident resolved",
            status="resolved",
        )
    return resolved


# ---- notifications ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    channel_id: str
    name: str
    kind: str


async def channels(conn: Connection, project: str, ids: Sequence[str]) -> list[ChannelInfo]:
    """The channels of ``ids`` that exist, in the order of ``ids``."""
    if not ids:
        return []
    found = await rows(
        conn,
        "SELECT channel_id, name, kind FROM alert_channels WHERE project_id = %s"
        " AND channel_id = ANY(%s)",
        (project, list(ids)),
    )
    by_id = {r[0]: ChannelInfo(*r) for r in found}
    return [by_id[i] for i in ids if i in by_id]


async def enqueue(
    conn: Connection,
    project: str,
    *,
    channel_id: str,
    rule_id: str,
    incident_id: str | None,
    group_key: str,
    alert_status: str,
    fingerprints: Sequence[int],
    dedup_key: str,
    payload: Mapping[str, Any],
) -> int | None:
    """One outbox row, due now; None when the same dedup key is queued already."""
    found = await row(
        conn,
        "INSERT INTO alert_notifications (project_id, channel_id, rule_id, incident_id,"
        " group_key, alert_status, fingerprints, dedup_key, payload)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        " RETURNING notification_id",
        (
            project,
            channel_id,
            rule_id,
            incident_id,
            group_key,
            alert_status,
            list(fingerprints),
            dedup_key,
            Jsonb(dict(payload)),
        ),
    )
    return None if found is None else int(found[0])
