"""What users configure for alerting, in PostgreSQL: channels, rules and silences, and
the audit rows of their changes (migration 0011, ``audit_log`` of 0004).

Each function runs one or two parameterized statements on a connection the caller holds
in a transaction (``AlertStore.transaction``), so that the alerting layer can read,
check and write a change and its audit row atomically. Names, ids and the JSON documents
of conditions and configs are values, never SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg.types.json import Jsonb

from storage.postgres.alert_store import Connection, row, rows

# ---- audit -------------------------------------------------------------------------------

_AUDIT: Final = (
    "INSERT INTO audit_log (project_id, actor, action, subject, details)"
    " VALUES (%s, %s, %s, %s, %s)"
)


async def audit(
    conn: Connection,
    project: str,
    *,
    actor: str,
    action: str,
    subject: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    """One ``audit_log`` row: ``{"before": ..., "after": ...}`` (None: did not exist)."""
    details = {"before": before, "after": after}
    await conn.execute(_AUDIT, (project, actor, action, subject, Jsonb(details)))


# ---- channels ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A row of ``alert_channels``."""

    channel_id: str
    name: str
    kind: str
    config: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


_CHANNEL_COLUMNS: Final = "channel_id, name, kind, config, version, created_at, updated_at"


def _channel(found: Sequence[Any]) -> ChannelRecord:
    return ChannelRecord(*found)


async def insert_channel(
    conn: Connection, project: str, *, channel_id: str, name: str, kind: str, config: dict[str, Any]
) -> ChannelRecord | None:
    """The new channel, or None when the project has one of that name already."""
    found = await row(
        conn,
        "INSERT INTO alert_channels (project_id, channel_id, name, kind, config)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        f" RETURNING {_CHANNEL_COLUMNS}",
        (project, channel_id, name, kind, Jsonb(config)),
    )
    return None if found is None else _channel(found)


async def channel(
    conn: Connection, project: str, channel_id: str, *, lock: bool = False
) -> ChannelRecord | None:
    found = await row(
        conn,
        f"SELECT {_CHANNEL_COLUMNS} FROM alert_channels WHERE project_id = %s AND channel_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (project, channel_id),
    )
    return None if found is None else _channel(found)


async def channels(
    conn: Connection, project: str, *, after_name: str | None, limit: int
) -> list[ChannelRecord]:
    """By name, after ``after_name`` (a page's last name)."""
    found = await rows(
        conn,
        f"SELECT {_CHANNEL_COLUMNS} FROM alert_channels WHERE project_id = %s"
        " AND (%s::text IS NULL OR name > %s) ORDER BY name LIMIT %s",
        (project, after_name, after_name, limit),
    )
    return [_channel(r) for r in found]


async def name_taken(conn: Connection, table: str, project: str, name: str, except_id: str) -> bool:
    """Whether another rule (``table`` "rules") or channel ("channels") has ``name``."""
    query = {
        "rules": "SELECT 1 FROM alert_rules WHERE project_id = %s AND name = %s AND rule_id <> %s",
        "channels": "SELECT 1 FROM alert_channels WHERE project_id = %s AND name = %s"
        " AND channel_id <> %s",
    }[table]
    return await row(conn, query, (project, name, except_id)) is not None


async def update_channel(
    conn: Connection, project: str, *, channel_id: str, name: str, kind: str, config: dict[str, Any]
) -> ChannelRecord:
    found = await row(
        conn,
        "UPDATE alert_channels SET name = %s, kind = %s, config = %s, version = version + 1,"
        " updated_at = now() WHERE project_id = %s AND channel_id = %s"
        f" RETURNING {_CHANNEL_COLUMNS}",
        (name, kind, Jsonb(config), project, channel_id),
    )
    assert found is not None, "update_channel of a channel not locked first"
    return _channel(found)


async def delete_channel(conn: Connection, project: str, channel_id: str) -> None:
    await conn.execute(
        "DELETE FROM alert_channels WHERE project_id = %s AND channel_id = %s",
        (project, channel_id),
    )


async def rules_using(conn: Connection, project: str, channel_id: str) -> list[str]:
    """Names of the rules that notify ``channel_id``, by name."""
    found = await rows(
        conn,
        "SELECT r.name FROM alert_rule_channels c JOIN alert_rules r"
        " ON r.project_id = c.project_id AND r.rule_id = c.rule_id"
        " WHERE c.project_id = %s AND c.channel_id = %s ORDER BY r.name",
        (project, channel_id),
    )
    return [r[0] for r in found]


async def existing_channels(conn: Connection, project: str, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` are channels of ``project`` (locked until the transaction ends, so
    that none is deleted while a rule comes to refer to it)."""
    found = await rows(
        conn,
        "SELECT channel_id FROM alert_channels WHERE project_id = %s AND channel_id = ANY(%s)"
        " FOR SHARE",
        (project, list(ids)),
    )
    return {r[0] for r in found}


# ---- rules -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleRecord:
    """A row of ``alert_rules`` with its channels (``alert_rule_channels``, in order)."""

    rule_id: str
    name: str
    version: int
    kind: str
    condition: dict[str, Any]
    comparator: str | None
    threshold: float | None
    interval_s: float
    for_s: float
    keep_firing_for_s: float
    repeat_interval_s: float
    labels: dict[str, str]
    annotations: dict[str, str]
    no_data: str
    on_error: str
    incident_group_by: tuple[str, ...]
    channel_ids: tuple[str, ...]
    created_at: datetime | None = None
    updated_at: datetime | None = None


_RULE_VALUES: Final = (
    "name, kind, condition, comparator, threshold, interval_s, for_s, keep_firing_for_s,"
    " repeat_interval_s, labels, annotations, no_data, on_error, incident_group_by"
)
_RULE_COLUMNS: Final = (
    "r.rule_id, r.name, r.version, r.kind, r.condition, r.comparator, r.threshold,"
    " r.interval_s, r.for_s, r.keep_firing_for_s, r.repeat_interval_s, r.labels,"
    " r.annotations, r.no_data, r.on_error, r.incident_group_by,"
    " ARRAY(SELECT c.channel_id FROM alert_rule_channels c WHERE c.project_id = r.project_id"
    " AND c.rule_id = r.rule_id ORDER BY c.position) AS channel_ids,"
    " r.created_at, r.updated_at"
)


def _rule(found: Sequence[Any]) -> RuleRecord:
    values = list(found)
    values[15] = tuple(values[15])
    values[16] = tuple(values[16])
    return RuleRecord(*values)


# What the evaluator reads of rules it claimed (``storage.postgres.alert_eval``).
RULE_COLUMNS: Final = _RULE_COLUMNS
rule_from_row = _rule


def _rule_values(rule: RuleRecord) -> tuple[Any, ...]:
    return (
        rule.name,
        rule.kind,
        Jsonb(rule.condition),
        rule.comparator,
        rule.threshold,
        rule.interval_s,
        rule.for_s,
        rule.keep_firing_for_s,
        rule.repeat_interval_s,
        Jsonb(rule.labels),
        Jsonb(rule.annotations),
        rule.no_data,
        rule.on_error,
        list(rule.incident_group_by),
    )


async def _set_channels(conn: Connection, project: str, rule: RuleRecord) -> None:
    await conn.execute(
        "DELETE FROM alert_rule_channels WHERE project_id = %s AND rule_id = %s",
        (project, rule.rule_id),
    )
    if rule.channel_ids:
        await conn.execute(
            "INSERT INTO alert_rule_channels (project_id, rule_id, channel_id, position)"
            " SELECT %s, %s, c, p - 1 FROM unnest(%s::text[]) WITH ORDINALITY AS u(c, p)",
            (project, rule.rule_id, list(rule.channel_ids)),
        )


async def insert_rule(conn: Connection, project: str, rule: RuleRecord) -> RuleRecord | None:
    """The new rule, due for evaluation at once; None when the name is taken."""
    inserted = await row(
        conn,
        f"INSERT INTO alert_rules (project_id, rule_id, {_RULE_VALUES})"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING RETURNING rule_id",
        (project, rule.rule_id, *_rule_values(rule)),
    )
    if inserted is None:
        return None
    await _set_channels(conn, project, rule)
    await conn.execute(
        "INSERT INTO alert_rule_schedule (project_id, rule_id, next_eval_at)"
        " VALUES (%s, %s, now())",
        (project, rule.rule_id),
    )
    return await get_rule(conn, project, rule.rule_id)


async def get_rule(
    conn: Connection, project: str, rule_id: str, *, lock: bool = False
) -> RuleRecord | None:
    found = await row(
        conn,
        f"SELECT {_RULE_COLUMNS} FROM alert_rules r WHERE r.project_id = %s AND r.rule_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (project, rule_id),
    )
    return None if found is None else _rule(found)


async def list_rules(
    conn: Connection, project: str, *, after_name: str | None, limit: int
) -> list[RuleRecord]:
    """By name, after ``after_name``."""
    found = await rows(
        conn,
        f"SELECT {_RULE_COLUMNS} FROM alert_rules r WHERE r.project_id = %s"
        " AND (%s::text IS NULL OR r.name > %s) ORDER BY r.name LIMIT %s",
        (project, after_name, after_name, limit),
    )
    return [_rule(r) for r in found]


async def update_rule(conn: Connection, project: str, rule: RuleRecord) -> RuleRecord:
    """Writes ``rule`` over the locked row (version + 1) and makes it due at once."""
    await conn.execute(
        f"UPDATE alert_rules SET ({_RULE_VALUES}) ="
        " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s),"
        " version = version + 1, updated_at = now() WHERE project_id = %s AND rule_id = %s",
        (*_rule_values(rule), project, rule.rule_id),
    )
    await _set_channels(conn, project, rule)
    await conn.execute(
        "UPDATE alert_rule_schedule SET next_eval_at = now()"
        " WHERE project_id = %s AND rule_id = %s",
        (project, rule.rule_id),
    )
    updated = await get_rule(conn, project, rule.rule_id)
    assert updated is not None
    return updated


async def delete_rule(conn: Connection, project: str, rule_id: str) -> None:
    """The rule, its channels, schedule and alert state (cascade); events stay."""
    await conn.execute(
        "DELETE FROM alert_rules WHERE project_id = %s AND rule_id = %s", (project, rule_id)
    )


# ---- silences ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    """A row of ``alert_silences``."""

    silence_id: str
    matchers: list[dict[str, str]]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    created_at: datetime


_SILENCE_COLUMNS: Final = (
    "silence_id, matchers, starts_at, ends_at, comment, created_by, created_at"
)


async def insert_silence(
    conn: Connection,
    project: str,
    *,
    silence_id: str,
    matchers: list[dict[str, str]],
    starts_at: datetime | None,
    ends_at: datetime,
    comment: str,
    created_by: str,
) -> SilenceRecord:
    """``starts_at`` None: the transaction's now."""
    found = await row(
        conn,
        "INSERT INTO alert_silences (project_id, silence_id, matchers, starts_at, ends_at,"
        " comment, created_by) VALUES (%s, %s, %s, coalesce(%s, now()), %s, %s, %s)"
        f" RETURNING {_SILENCE_COLUMNS}",
        (project, silence_id, Jsonb(matchers), starts_at, ends_at, comment, created_by),
    )
    assert found is not None
    return SilenceRecord(*found)


async def silence(
    conn: Connection, project: str, silence_id: str, *, lock: bool = False
) -> SilenceRecord | None:
    found = await row(
        conn,
        f"SELECT {_SILENCE_COLUMNS} FROM alert_silences WHERE project_id = %s"
        " AND silence_id = %s" + (" FOR UPDATE" if lock else ""),
        (project, silence_id),
    )
    return None if found is None else SilenceRecord(*found)


async def expire_silence(conn: Connection, project: str, silence_id: str) -> SilenceRecord:
    """Ends it now (a pending one: starts and ends now)."""
    found = await row(
        conn,
        "UPDATE alert_silences SET ends_at = now(), starts_at = least(starts_at, now()),"
        " updated_at = now() WHERE project_id = %s AND silence_id = %s"
        f" RETURNING {_SILENCE_COLUMNS}",
        (project, silence_id),
    )
    assert found is not None
    return SilenceRecord(*found)


_SILENCE_STATE: Final = (
    "CASE WHEN ends_at <= now() THEN 'expired' WHEN starts_at > now() THEN 'pending'"
    " ELSE 'active' END"
)


async def list_silences(
    conn: Connection,
    project: str,
    *,
    states: Sequence[str],
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[SilenceRecord]:
    """Newest first by (created_at, silence_id), before the cursor; ``states`` among
    pending, active and expired (empty: all)."""
    found = await rows(
        conn,
        f"SELECT {_SILENCE_COLUMNS} FROM alert_silences WHERE project_id = %s"
        f" AND (cardinality(%s::text[]) = 0 OR {_SILENCE_STATE} = ANY(%s::text[]))"
        " AND (%s::timestamptz IS NULL OR (created_at, silence_id) < (%s, %s))"
        " ORDER BY created_at DESC, silence_id DESC LIMIT %s",
        (
            project,
            list(states),
            list(states),
            None if before is None else before[0],
            None if before is None else before[0],
            None if before is None else before[1],
            limit,
        ),
    )
    return [SilenceRecord(*r) for r in found]


async def active_silences(conn: Connection, project: str) -> list[SilenceRecord]:
    """The silences active now (the evaluator and ListAlerts mute with them)."""
    found = await rows(
        conn,
        f"SELECT {_SILENCE_COLUMNS} FROM alert_silences WHERE project_id = %s"
        " AND starts_at <= now() AND ends_at > now()",
        (project,),
    )
    return [SilenceRecord(*r) for r in found]


async def now(conn: Connection) -> datetime:
    """The transaction's now(), as PostgreSQL keeps time."""
    found = await row(conn, "SELECT now()")
    assert found is not None
    value: datetime = found[0]
    return value
