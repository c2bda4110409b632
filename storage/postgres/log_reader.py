"""The SQL of SearchLogs, GetLogContext and GetLogVolume (and the filters TailLogs shares).

Every statement here is built from constant fragments and ``%s`` placeholders only:
what a client sent is always a bound parameter. Times travel as whole microseconds and
become timestamptz in SQL (``records.US_TO_TIME``), or as the exact timestamptz values of
those microseconds (``moment``), so no float rounding moves a cursor.

Order and identity are ``(time, ctid)`` (see ``storage.postgres.records``). The filtered,
ordered and limited rows are picked in a subquery before ``resources`` is joined, so the
join runs once per returned record, not once per candidate.

Which index serves what (0001/0002 migrations, and ``text_index`` for closed partitions):
``logs_trace_idx`` a trace_id, ``logs_session_time_idx`` a session newest first,
``logs_service_time_idx`` a service newest first, the BRIN on ``(project_id, time)`` a
short time window, and the per-partition pg_trgm GIN the ``ILIKE`` prefilters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.postgres.partitions import datetime_from_ns, ns_from_datetime
from storage.postgres.records import LOG_COLUMNS, RESOURCE_JOIN, US_TO_TIME
from storage.postgres.text_index import SLICE_NS

_T = US_TO_TIME.format("%s")
_FIRST_US = ns_from_datetime(datetime(1, 1, 1, tzinfo=UTC)) // 1000
_LAST_US = ns_from_datetime(datetime(9999, 12, 31, tzinfo=UTC)) // 1000
# A record body's text: a string body is its string, any other its JSON text. The text
# index job indexes exactly this expression; the planner matches it only when identical.
BODY_TEXT = "(l.body #>> '{}')"
# The severity ranges of GetLogVolume, by their lowest number (OTLP SeverityNumber):
# 0 unspecified, 1 trace, 5 debug, 9 info, 13 warn, 17 error, 21 fatal.
_SEVERITY_RANGE = (
    "CASE WHEN coalesce(l.severity_number, 0) <= 0 THEN 0 "
    "ELSE least((l.severity_number - 1) / 4, 5) * 4 + 1 END"
)
_INNER_LOG = "SELECT l.*, l.ctid AS ctid FROM logs l"
_JOINED = (
    "SELECT " + LOG_COLUMNS + " FROM ({inner}) l " + RESOURCE_JOIN.format(alias="l") + " {order}"
)
_NEWEST_FIRST = "ORDER BY l.time DESC, l.ctid DESC"
_OLDEST_FIRST = "ORDER BY l.time, l.ctid"


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What a record must satisfy, beyond its time: SearchLogs' filter, validated.

    ``regexes`` are case-insensitive PostgreSQL AREs that must all match the body text;
    ``likes`` are ``ILIKE`` patterns implied by them (a prefilter an index can serve).
    For rows read outside PostgreSQL (the cold tier): ``patterns``, the same matches in
    Python's syntax; ``words``, the literal words each matching body holds somewhere
    (case aside); ``whole_words``, those it holds as whole words.
    """

    project: str
    regexes: Sequence[str] = ()
    likes: Sequence[str] = ()
    patterns: Sequence[re.Pattern[str]] = ()
    words: Sequence[str] = ()
    whole_words: Sequence[str] = ()
    service: str | None = None
    min_severity: int = 0
    trace_id: bytes | None = None
    span_id: bytes | None = None
    session_id: str | None = None
    user_id: str | None = None
    attributes: Sequence[tuple[str, str]] = field(default=())


def filter_conditions(f: LogFilter) -> tuple[list[str], list[Any]]:
    """The WHERE conditions (ANDed, over alias ``l``) and their parameters for ``f``."""
    conditions = ["l.project_id = %s"]
    params: list[Any] = [f.project]
    if f.trace_id is not None:
        # logs_trace_idx is partial (WHERE trace_id IS NOT NULL): equality implies it.
        conditions.append("l.trace_id = %s")
        params.append(f.trace_id)
    if f.span_id is not None:
        conditions.append("l.span_id = %s")
        params.append(f.span_id)
    if f.session_id is not None:
        conditions.append("l.session_id = %s")
        params.append(f.session_id)
    if f.service is not None:
        conditions.append("l.service_name = %s")
        params.append(f.service)
    if f.user_id is not None:
        conditions.append("l.user_id = %s")
        params.append(f.user_id)
    if f.min_severity > 0:
        conditions.append("l.severity_number >= %s")
        params.append(f.min_severity)
    for key, value in f.attributes:
        # The attribute's string form: a string is itself, 42 is "42", true is "true".
        conditions.append("(l.attributes -> %s) #>> '{}' = %s")
        params += [key, value]
    # The regexes first: PostgreSQL evaluates equally costly conditions in the order
    # written, and on a partition without a text index (the open ones) ILIKE is the
    # slower of the two (measured: ~1.3 us against ~0.7 us per body, C.UTF-8), so it
    # runs only on the few rows a regex let through. The planner still takes the ILIKE
    # patterns (and the regexes: pg_trgm serves both) to a partition's trigram index.
    for regex in f.regexes:
        conditions.append(BODY_TEXT + " ~* %s")
        params.append(regex)
    for pattern in f.likes:
        conditions.append(BODY_TEXT + " ILIKE %s")
        params.append(pattern)
    return conditions, params


def moment(time_us: int) -> datetime:
    """``time_us`` as a timestamptz parameter, exact to the microsecond like ``_T``.

    A search's time bounds travel as timestamptz values rather than as ``_T``'s
    expression, which is only STABLE: PostgreSQL prunes the partitions outside a value's
    range while it plans, but an expression's only when the plan starts, after planning
    every partition. Planning a one-word search over the query benchmark's 52 log
    partitions took 10-17 ms with the expression, 0.4 ms with values (docs/benchmarks.md,
    "Word searches planned for their values"). Clamped to the years datetime holds, far
    beyond any time OTLP can carry (unsigned nanoseconds end in 2554).
    """
    return datetime_from_ns(min(max(time_us, _FIRST_US), _LAST_US) * 1000)


def _time_conditions(start_us: int | None, end_us: int | None) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    if start_us is not None:
        conditions.append("l.time >= %s")
        params.append(moment(start_us))
    if end_us is not None:
        conditions.append("l.time < %s")
        params.append(moment(end_us))
    return conditions, params


def _slice_arms(
    f: LogFilter, slices: Sequence[int], start_us: int | None, end_us: int | None
) -> tuple[list[str], list[Any]]:
    """The condition that lets a word search read the open partitions' slices by index
    (``text_index``): none when there is no word or no slice in ``[start_us, end_us)``.

    A partial index serves a condition only if the condition implies its predicate, so
    the search's time range alone never reaches a slice. This condition is true of every
    row that holds the word (the search also requires it), written as an OR whose arms
    each fall inside one slice's predicate, or read by the time BRIN: the newest
    minutes after the last slice (the arm tested first: most rows of a scan are there),
    what lies before the first slice, and any gap between slices. PostgreSQL then reads
    each slice's index and OR's the bitmaps (measured in docs/benchmarks.md, "The open
    partition indexed in slices"). Its values are bound in the plan, so the statement
    must be planned for them (``prepare=False``) for the proof to hold.
    """
    width = SLICE_NS // 1000
    starts = sorted(
        {
            s
            for s in slices
            if (end_us is None or s < end_us) and (start_us is None or s + width > start_us)
        }
    )
    if not starts or not f.regexes:
        return [], []
    arms = ["l.time >= %s", "l.time < %s"]
    params: list[Any] = [moment(starts[-1] + width), moment(starts[0])]
    for before, start in zip([None, *starts], starts, strict=False):
        if before is not None and start > before + width:  # no slice indexed here
            arms.append("(l.time >= %s AND l.time < %s)")
            params += [moment(before + width), moment(start)]
        arms.append("(l.time >= %s AND l.time < %s AND " + BODY_TEXT + " ~* %s)")
        params += [moment(start), moment(start + width), f.regexes[0]]
    return ["(" + " OR ".join(arms) + ")"], params


def search(
    f: LogFilter,
    *,
    start_us: int | None,
    end_us: int | None,
    before: tuple[int, str] | None,
    limit: int,
    slices: Sequence[int] = (),
) -> tuple[str, list[Any]]:
    """Up to ``limit`` records matching ``f`` in ``[start_us, end_us)``, newest first,
    strictly older than the cursor ``before`` = (time µs, ctid) when given; ``slices``:
    the starts (µs) of the open partitions' indexed slices (``_slice_arms``)."""
    conditions, params = _slice_arms(f, slices, start_us, end_us)
    more, more_params = filter_conditions(f)
    conditions += more
    params += more_params
    more, more_params = _time_conditions(start_us, end_us)
    conditions += more
    params += more_params
    if before is not None:
        conditions.append("(l.time, l.ctid) < (%s, %s::tid)")
        params += [moment(before[0]), before[1]]
    inner = f"{_INNER_LOG} WHERE {' AND '.join(conditions)} {_NEWEST_FIRST} LIMIT %s"
    params.append(limit)
    return _JOINED.format(inner=inner, order=_NEWEST_FIRST), params


def record(project: str, time_us: int, ctid: str) -> tuple[str, list[Any]]:
    """One record (``LOG_COLUMNS``) by its id."""
    statement = (
        "SELECT "
        + LOG_COLUMNS
        + " FROM logs l "
        + RESOURCE_JOIN.format(alias="l")
        + " WHERE l.project_id = %s AND l.time = "
        + _T
        + " AND l.ctid = %s::tid"
    )
    return statement, [project, time_us, ctid]


def neighbours(
    project: str,
    service: str | None,
    resource_id: int,
    around: tuple[int, str | None],
    *,
    older: bool,
    limit: int,
    reach_us: int,
) -> tuple[str, list[Any]]:
    """The ``limit`` records of the same service and resource nearest before (``older``)
    or after ``around`` = (time µs, ctid), within ``reach_us``, oldest first. A ctid of
    None places ``around`` before every hot row of its microsecond: a cold record
    (``storage.postgres.records``)."""
    time_us, ctid = around
    conditions = ["l.project_id = %s", "l.resource_id = %s"]
    params: list[Any] = [project, resource_id]
    if service is None:
        conditions.append("l.service_name IS NULL")
    else:
        conditions.append("l.service_name = %s")
        params.append(service)
    if older:
        conditions.append("l.time >= " + _T)
        params.append(time_us - reach_us)
        if ctid is None:
            conditions.append("l.time < " + _T)
            params.append(time_us)
        else:
            conditions.append("(l.time, l.ctid) < (" + _T + ", %s::tid)")
            params += [time_us, ctid]
        order = _NEWEST_FIRST
    else:
        conditions.append("l.time < " + _T)
        params.append(time_us + reach_us)
        if ctid is None:
            conditions.append("l.time >= " + _T)
            params.append(time_us)
        else:
            conditions.append("(l.time, l.ctid) > (" + _T + ", %s::tid)")
            params += [time_us, ctid]
        order = _OLDEST_FIRST
    inner = f"{_INNER_LOG} WHERE {' AND '.join(conditions)} {order} LIMIT %s"
    params.append(limit)
    return _JOINED.format(inner=inner, order=_OLDEST_FIRST), params


def volume(
    f: LogFilter, *, start_us: int, end_us: int, step_us: int, slices: Sequence[int] = ()
) -> tuple[str, list[Any]]:
    """Rows of (bucket number, severity range, count) for ``f`` in ``[start_us, end_us)``;
    bucket ``k`` is ``[k * step_us, (k + 1) * step_us)`` since the epoch. Empty buckets
    have no row (the caller fills them). ``slices``: as for ``search``."""
    conditions, params = _slice_arms(f, slices, start_us, end_us)
    more, more_params = filter_conditions(f)
    conditions += more
    params += more_params
    more, more_params = _time_conditions(start_us, end_us)
    conditions += more
    # Rows are binned by date_bin (integer arithmetic on the timestamp) and only each
    # bin's start is turned into its number: extract(epoch) is numeric (exact, PostgreSQL
    # 14+) and numeric arithmetic on every row of a day took about as long again as the
    # rest of the statement (docs/benchmarks.md, "GetLogVolume binned by date_bin").
    statement = (
        "SELECT floor(extract(epoch FROM v.bin) * 1000000 / %s)::bigint, v.severity, v.n "
        "FROM (SELECT date_bin(%s, l.time, timestamptz 'epoch') AS bin, "
        + _SEVERITY_RANGE
        + " AS severity, count(*) AS n FROM logs l WHERE "
        + " AND ".join(conditions)
        + " GROUP BY 1, 2) v"
    )
    return statement, [step_us, timedelta(microseconds=step_us), *params, *more_params]
