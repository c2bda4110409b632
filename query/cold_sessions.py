"""A session's items in the cold tier, for GetSessionTimeline: spans, log records and
metric exemplars, in the shapes ``storage.postgres.session_reader`` gives the hot ones.

The manifest's key blooms of session ids (``storage.keybloom``) name the objects and row
groups that may hold the session's rows, in every signal at once; those row groups are
read whole and filtered by the session. A session is bounded (a visit, a job), so every
cold row of it is read on each page and cut after the page's position by the caller:
that also gives what the ``sessions`` row would say when it has been pruned with the
session's last hot partition (first and last seen, user, service).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from query import cold_logs, cold_spans
from query.call import QueryCall
from query.coldtier import Lookup, Read
from storage import keybloom
from storage.cold_reader import ROW
from storage.postgres.partitions import datetime_from_ns
from storage.postgres.records import LogRow, cold_place

_EXEMPLAR_COLUMNS: Final = (
    "time",
    "time_unix_nano",
    "metric_name",
    "service_name",
    "value",
    "exemplars",
    "trace_id",
    "span_id",
)


@dataclass(slots=True)
class ColdSession:
    """Every cold item of one session, in no order, and what they say of it."""

    spans: list[tuple[Any, ...]] = field(default_factory=list)  # (time, *SpanRow)
    logs: list[LogRow] = field(default_factory=list)
    exemplars: list[tuple[Any, ...]] = field(default_factory=list)  # session_reader's shape
    first_ns: int | None = None
    last_ns: int | None = None
    user_id: str | None = None  # of the newest item that names one
    service: str | None = None  # of the oldest item that names one
    _user_at: int = -1
    _service_at: int = 2**63

    def saw(self, time_ns: int, user_id: str | None, service: str | None) -> None:
        self.first_ns = time_ns if self.first_ns is None else min(self.first_ns, time_ns)
        self.last_ns = time_ns if self.last_ns is None else max(self.last_ns, time_ns)
        if user_id and time_ns >= self._user_at:
            self.user_id, self._user_at = user_id, time_ns
        if service and time_ns < self._service_at:
            self.service, self._service_at = service, time_ns


def _of_session(session_id: str) -> Callable[[pa.Table], pa.Table]:
    """What ``Read.keep`` keeps of a row group: the rows of the session."""

    def keep(table: pa.Table) -> pa.Table:
        return table.filter(pc.fill_null(pc.equal(table.column("session_id"), session_id), False))

    return keep


def lookup(session_id: str) -> Lookup:
    """Which objects may hold the session's items: a read the caller sends with its own."""
    return Lookup(keybloom.SESSION, (session_id.encode(),), ("spans", "logs", "metric_points"))


async def items(call: QueryCall, session_id: str, rows: Sequence[Any]) -> ColdSession:
    """Every cold span, log record and exemplar of the session; ``rows``: what the
    manifest answered to ``lookup(session_id)``."""
    found = ColdSession()
    if call.cold is None:
        return found
    (where,) = lookup(session_id).answer(rows).values()
    reads = []
    keep = _of_session(session_id)
    for obj, _ in where:
        if obj.signal == "spans":
            columns: tuple[str, ...] = ("time", *cold_spans.COLUMNS)
        elif obj.signal == "logs":
            columns = cold_logs.COLUMNS
        else:
            columns = _EXEMPLAR_COLUMNS
        reads.append(
            Read(
                obj,
                (*columns, "session_id", "user_id"),
                keys=("session_id", [session_id.encode()]),
                keep=keep,
            )
        )
    for read, chosen in zip(reads, await call.cold.read(call, reads), strict=True):
        if not chosen.num_rows:
            continue
        times = chosen.column("time").cast(pa.int64()).to_pylist()
        users = chosen.column("user_id").to_pylist()
        services = chosen.column("service_name").to_pylist()
        for time_ns, user, service in zip(times, users, services, strict=True):
            found.saw(time_ns, user, service)
        if read.obj.signal == "spans":
            for time_ns, span in zip(times, cold_spans.span_rows(chosen), strict=True):
                found.spans.append((datetime_from_ns(time_ns), *span))
        elif read.obj.signal == "logs":
            found.logs += cold_logs.rows(chosen, range(chosen.num_rows), read.obj)
        else:
            found.exemplars += _exemplars(chosen, read.obj.object_id)
    return found


def _exemplars(table: pa.Table, object_id: int) -> list[tuple[Any, ...]]:
    """Points that carry an exemplar's trace, as ``session_reader.exemplars`` returns them
    (a point without a value of its own gives its first exemplar's)."""
    out = []
    columns = {name: table.column(name).to_pylist() for name in (*_EXEMPLAR_COLUMNS[1:], ROW)}
    times = table.column("time").cast(pa.int64()).to_pylist()
    for i, time_ns in enumerate(times):
        if columns["trace_id"][i] is None:
            continue
        value = columns["value"][i]
        if value is None and columns["exemplars"][i]:
            first = orjson.loads(columns["exemplars"][i])
            number = first[0].get("value") if isinstance(first, list) and first else None
            if isinstance(number, int | float) and not isinstance(number, bool):
                value = float(number)
        out.append(
            (
                datetime_from_ns(time_ns),
                cold_place(object_id, columns[ROW][i]),
                columns["time_unix_nano"][i],
                columns["metric_name"][i],
                columns["service_name"][i],
                value,
                columns["trace_id"][i],
                columns["span_id"][i],
            )
        )
    return out
