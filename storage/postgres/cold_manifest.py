"""The SQL the query API asks the cold tier's manifest (``cold_objects``, ``cold_key_blooms``).

Which objects answer for a project, a signal and a time range: those whose rows overlap
the range and whose hot partition is gone. An object whose partition still exists (the
same table, by oid and name) is skipped: its partition is waiting for another project's
retention, or was found changed after the export and will be exported again, and either
way the hot rows are the answer (docs/storage.md, "Operating the cold tier"). So every
row is read from exactly one tier. A partition made again after its drop (a late record)
is another table: its rows are hot, the earlier generation's are cold, and both answer.

Statements are ``(query, params)`` for ``query.call.QueryCall.fetch``, parameterized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from storage.postgres.partitions import datetime_from_ns, ns_from_datetime

Statement = tuple[str, dict[str, Any]]

_COLUMNS: Final = (
    "c.object_id, c.signal, c.key, c.sha256, c.bytes, c.rows, c.row_groups, c.min_time, c.max_time"
)
# The partition an object came from is gone: the object is the only copy of its rows.
_COLD_ONLY: Final = (
    "NOT EXISTS (SELECT 1 FROM pg_class p "
    "WHERE p.oid = c.partition_oid AND p.relname = c.partition)"
)


@dataclass(frozen=True, slots=True)
class ColdObject:
    """One object of the manifest, as a reader needs it."""

    object_id: int
    signal: str
    key: str
    sha256: str  # the content: part of every cache key, so a rewritten key is a miss
    bytes: int
    rows: int
    row_groups: int
    min_ns: int  # of the rows' `time`, inclusive
    max_ns: int

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ColdObject:
        object_id, signal, key, sha256, size, rows, groups, low, high = row[:9]
        return cls(
            int(object_id),
            str(signal),
            str(key),
            str(sha256),
            int(size),
            int(rows),
            int(groups),
            ns_from_datetime(low),
            ns_from_datetime(high),
        )


def objects(
    project: str, signal: str | Sequence[str], start_ns: int | None, end_ns: int | None
) -> Statement:
    """The objects of ``signal`` (or of several) whose rows may lie in ``[start_ns,
    end_ns)`` (None: open), newest first (by their newest row, then id)."""
    conditions = ["c.project_id = %(project)s", "c.signal = %(signal)s", _COLD_ONLY]
    params: dict[str, Any] = {"project": project, "signal": signal}
    if not isinstance(signal, str):
        conditions[1] = "c.signal = ANY(%(signal)s)"
        params["signal"] = list(signal)
    _overlapping(conditions, params, start_ns, end_ns)
    query = (
        f"SELECT {_COLUMNS} FROM cold_objects c WHERE {' AND '.join(conditions)} "
        "ORDER BY c.max_time DESC, c.object_id DESC"
    )
    return query, params


def one_object(project: str, object_id: int) -> Statement:
    """The object ``object_id`` of the project, if the manifest still names it."""
    query = (
        f"SELECT {_COLUMNS} FROM cold_objects c "
        f"WHERE c.project_id = %(project)s AND c.object_id = %(object)s AND {_COLD_ONLY}"
    )
    return query, {"project": project, "object": object_id}


def key_blooms(
    project: str,
    kind: int,
    shards: list[int],
    signals: tuple[str, ...],
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> Statement:
    """``ColdObject`` columns then ``(segment_bits, hashes, bits, shard)`` of every object
    of ``signals`` with a key of ``kind`` in one of ``shards`` (``storage.keybloom``),
    newest first; only objects with rows in ``[start_ns, end_ns)`` (None: open)."""
    conditions = [
        "b.project_id = %(project)s",
        "b.kind = %(kind)s",
        "b.shard = ANY(%(shards)s)",
        "c.signal = ANY(%(signals)s)",
        _COLD_ONLY,
    ]
    params: dict[str, Any] = {
        "project": project,
        "kind": kind,
        "shards": shards,
        "signals": list(signals),
    }
    _overlapping(conditions, params, start_ns, end_ns)
    query = (
        f"SELECT {_COLUMNS}, b.segment_bits, b.hashes, b.bits, b.shard FROM cold_key_blooms b "
        "JOIN cold_objects c ON c.project_id = b.project_id AND c.object_id = b.object_id "
        f"WHERE {' AND '.join(conditions)} ORDER BY c.max_time DESC, c.object_id DESC"
    )
    return query, params


def _overlapping(
    conditions: list[str], params: dict[str, Any], start_ns: int | None, end_ns: int | None
) -> None:
    """Adds "the object has rows in ``[start_ns, end_ns)``" (None: open)."""
    if start_ns is not None:
        conditions.append("c.max_time >= %(start)s")
        params["start"] = _floor_us(start_ns)
    if end_ns is not None:
        conditions.append("c.min_time < %(end)s")
        params["end"] = _ceil_us(end_ns)


def _floor_us(ns: int) -> datetime:
    return datetime_from_ns(ns // 1000 * 1000)


def _ceil_us(ns: int) -> datetime:
    return datetime_from_ns(-(-ns // 1000) * 1000)
