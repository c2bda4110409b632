"""Log records of the cold tier, filtered and ordered exactly as the hot tier's.

The hot tier answers a ``LogFilter`` in SQL (``storage.postgres.log_reader``); here the
same filter is applied to the Parquet rows of cold objects, so a record reads the same,
matches the same filters and sorts the same whichever tier holds it:

* Which objects: the manifest's for the time range, narrowed by the key blooms when the
  filter names a trace, a session or whole words (``query.coldtier.Lookup``, sent in one
  round trip): a word searched over a day reads only the row groups whose bodies may
  hold it.
* Which row groups: those whose ``time`` (and ``service_name``, the files' first sort
  key) statistics overlap the filter, and for a trace or a session those the files' own
  bloom filters admit.
* Which rows: narrowed step by step (``matching``), vectorized (pyarrow) but for the cases
  where PostgreSQL's semantics need Python: a body whose JSON text is pure ASCII without
  escapes is matched by RE2 with ``\\b`` word boundaries, which agree there with
  PostgreSQL's ``\\m``/``\\M``; any other body (non-ASCII letters, escaped characters) is
  decoded and matched with the filter's Python patterns, like attribute filters, on the
  candidates that the literal words let through. Each row group is filtered on the
  thread that reads it (``Read.keep``).
* Order: ``(time, place)`` as ``storage.postgres.records`` defines it across tiers; a
  scan newest (or oldest) first reads the row groups of every candidate object in that
  order by their time statistics and stops as soon as no further one can hold a row that
  would make the page.
* For the insight RPCs: exact counts per range (``counts``), the bodies GetLogPatterns
  mines, all or a repeatable Bernoulli sample (``bodies``, ``sampled``), and records by
  their places (``records``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from query.call import QueryCall
from query.coldtier import Choose, Lookup, Read, all_true, true
from storage import keybloom
from storage.cold_reader import ROW, overlapping
from storage.postgres import cold_manifest
from storage.postgres.cold_manifest import ColdObject, Statement
from storage.postgres.log_reader import LogFilter
from storage.postgres.partitions import datetime_from_ns
from storage.postgres.records import COLD, LogRow, cold_place

SIGNAL: Final = "logs"
COLUMNS: Final = (
    "time",
    "time_unix_nano",
    "observed_time_unix_nano",
    "trace_id",
    "span_id",
    "flags",
    "service_name",
    "session_id",
    "user_id",
    "severity_number",
    "severity_text",
    "body",
    "attributes",
    "event_name",
    "scope_name",
    "resource_attributes",
    "resource_id",
)
Key = tuple[int, int, int, int]  # LogRow.key: (time µs, tier, a, b)
# Row groups a scan reads at once: few first (a page of common words is often in the first
# ones), twice as many each round after, up to this many.
FIRST_WAVE: Final = 4
LAST_WAVE: Final = 32


@dataclass(frozen=True, slots=True)
class Scope:
    """What a scan reads: the filter, the time range ``[start_us, end_us)`` (None: open),
    and optionally one resource (GetLogContext's neighbours)."""

    filter: LogFilter
    start_us: int | None
    end_us: int | None
    resource_id: int | None = None
    no_service: bool = False  # only records without a service (as SQL's IS NULL)


def _json_text(literal: str) -> str:
    """``literal`` as it appears inside a JSON string (PostgreSQL's jsonb text)."""
    return json.dumps(literal, ensure_ascii=False)[1:-1]


def _re2(pattern: re.Pattern[str]) -> str:
    """A Python term pattern (``query.fulltext.Term.pattern``) in RE2's syntax, for
    ASCII text: RE2 has no look-behind, and its ``\\b`` is exact there."""
    text = pattern.pattern.replace(r"(?<!\w)", r"\b").replace(r"(?!\w)", r"\b")
    return "(?i)" + text


def _plain_mask(table: pa.Table, scope: Scope) -> np.ndarray:
    """The rows of ``table`` that pass the filter's cheap conditions: time, service,
    severity, ids, session, user, resource (each a vectorized comparison)."""
    f = scope.filter
    conditions = []
    if scope.start_us is not None or scope.end_us is not None:
        times = table.column("time").cast(pa.int64())
        if scope.start_us is not None:
            conditions.append(pc.greater_equal(times, scope.start_us * 1000))
        if scope.end_us is not None:
            conditions.append(pc.less(times, scope.end_us * 1000))
    if f.service is not None:
        conditions.append(pc.equal(table.column("service_name").cast(pa.string()), f.service))
    if f.min_severity > 0:
        conditions.append(pc.greater_equal(table.column("severity_number"), f.min_severity))
    for name, identifier in (("trace_id", f.trace_id), ("span_id", f.span_id)):
        if identifier is not None:
            wanted = pa.scalar(identifier, pa.binary(len(identifier)))
            conditions.append(pc.equal(table.column(name), wanted))
    for name, text in (("session_id", f.session_id), ("user_id", f.user_id)):
        if text is not None:
            conditions.append(pc.equal(table.column(name), text))
    if scope.resource_id is not None:
        conditions.append(pc.equal(table.column("resource_id"), scope.resource_id))
    if scope.no_service:
        conditions.append(pc.is_null(table.column("service_name")))
    return all_true(table.num_rows, conditions)


def _body_text(text: str | None) -> str | None:
    """A body as PostgreSQL's ``body #>> '{}'`` gives it: a string body is its string,
    any other its JSON text."""
    if text is None:
        return None
    if text.startswith('"'):
        value = orjson.loads(text)
        return value if isinstance(value, str) else text
    return text


def _jsonb_text(value: Any) -> str:
    """A JSON value printed as PostgreSQL prints jsonb (``", "`` and ``": "``)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def attribute_text(value: Any) -> str | None:
    """``(attributes -> key) #>> '{}'``: a string is itself, null is SQL NULL, anything else
    its JSON text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return _jsonb_text(value)


def _exact(bodies: Any, patterns: Sequence[re.Pattern[str]]) -> np.ndarray:
    """Which of ``bodies`` (JSON texts) every pattern matches, decoded as PostgreSQL's
    ``body #>> '{}'`` gives them."""
    matched = []
    for raw in bodies.to_pylist():
        text = _body_text(raw)
        matched.append(text is not None and all(p.search(text) for p in patterns))
    return np.array(matched, dtype=bool)


def _exact_attributes(texts: list[str | None], f: LogFilter) -> np.ndarray:
    """Which attribute objects (JSON texts) hold every attribute filter's value exactly,
    as ``(attributes -> key) #>> '{}' = value`` compares."""
    matched = []
    for text in texts:
        found = orjson.loads(text) if text else {}
        matched.append(
            isinstance(found, dict)
            and all(attribute_text(found.get(key)) == value for key, value in f.attributes)
        )
    return np.array(matched, dtype=bool)


def matching(table: pa.Table, scope: Scope) -> np.ndarray:
    """Positions of the rows of ``table`` that match ``scope``, ascending.

    Narrowed step by step, each test on the rows the previous ones left: the cheap
    comparisons, then the literal words (a case-insensitive substring of the body's JSON
    text: every match has them), then the exact match: RE2 on bodies whose text is pure
    ASCII without escapes, Python's patterns on the others and for attribute filters."""
    f = scope.filter
    positions = np.flatnonzero(_plain_mask(table, scope))
    if not len(positions) or not (f.words or f.patterns or f.attributes):
        return positions
    whole = len(positions) == table.num_rows

    def column(name: str) -> Any:
        found = table.column(name)
        return found if whole else found.take(pa.array(positions, pa.int64()))

    if f.words or f.patterns:
        body = column("body")
        for word in f.words:
            ok = true(pc.match_substring(body, _json_text(word), ignore_case=True))
            positions, body = positions[ok], body.filter(pa.array(ok))
        if f.patterns and len(positions):
            plain = true(
                pc.and_(pc.string_is_ascii(body), pc.invert(pc.match_substring(body, "\\")))
            )
            exact = plain.copy()
            for pattern in f.patterns:
                exact &= true(pc.match_substring_regex(body, _re2(pattern)))
            checked = _exact(body.filter(pa.array(~plain)), f.patterns)
            decided = np.flatnonzero(~plain)[checked]
            exact[decided] = True
            positions = positions[exact]
        whole = False
    if f.attributes and len(positions):
        texts = table.column("attributes").take(pa.array(positions, pa.int64()))
        for _, value in f.attributes:
            ok = true(pc.match_substring(texts, _json_text(value)))
            positions, texts = positions[ok], texts.filter(pa.array(ok))
        positions = positions[_exact_attributes(texts.to_pylist(), f)]
    return positions


def keeper(scope: Scope) -> Callable[[pa.Table], pa.Table]:
    """What ``Read.keep`` keeps of a row group: the records of ``scope``."""

    def keep(table: pa.Table) -> pa.Table:
        positions = matching(table, scope)
        if len(positions) == table.num_rows:
            return table
        return table.take(pa.array(positions, pa.int64()))

    return keep


def keys(table: pa.Table, obj: ColdObject) -> tuple[np.ndarray, np.ndarray]:
    """(time µs, row in object) of every row of ``table``."""
    times = table.column("time").cast(pa.int64()).to_numpy() // 1000
    return times, table.column(ROW).to_numpy()


def rows(table: pa.Table, positions: Sequence[int], obj: ColdObject) -> list[LogRow]:
    """``LogRow``s of the rows of ``table`` at ``positions``, in that order."""
    if not len(positions):
        return []
    taken = table.take(pa.array(positions, pa.int64()))
    column = {name: taken.column(name).to_pylist() for name in (*COLUMNS[1:], ROW)}
    times = taken.column("time").cast(pa.int64()).to_pylist()
    out = []
    for i, time_ns in enumerate(times):
        body = column["body"][i]
        attributes = column["attributes"][i]
        out.append(
            LogRow(
                datetime_from_ns(time_ns),
                cold_place(obj.object_id, column[ROW][i]),
                column["time_unix_nano"][i],
                column["observed_time_unix_nano"][i],
                column["trace_id"][i],
                column["span_id"][i],
                column["flags"][i],
                column["service_name"][i],
                column["session_id"][i],
                column["user_id"][i],
                column["severity_number"][i],
                column["severity_text"][i],
                None if body is None else orjson.loads(body),
                None if attributes is None else orjson.loads(attributes),
                column["event_name"][i],
                column["scope_name"][i],
                column["resource_attributes"][i],
                column["resource_id"][i],
            )
        )
    return out


def _both(first: set[int] | None, second: set[int] | None) -> set[int] | None:
    if first is None:
        return second
    return first if second is None else first & second


def _groups_within(scope: Scope) -> Choose:
    """The row-group chooser for ``scope``: groups whose time and service statistics
    overlap it."""

    low_ns, high_ns = _range_ns(scope)

    def choose(metadata: pq.FileMetaData) -> list[int]:
        return overlapping(metadata, low_ns=low_ns, high_ns=high_ns, service=scope.filter.service)

    return choose


def manifest_read(call: QueryCall, scope: Scope) -> Statement | None:
    """The manifest read ``candidates`` makes for ``scope``, for a caller that sends it
    with its own statements (one round trip instead of two; ``objects_of`` its rows are
    then ``scan``'s ``objects``). None without a cold tier."""
    if call.cold is None:
        return None
    return cold_manifest.objects(call.project, SIGNAL, *_range_ns(scope))


def objects_of(rows: Sequence[Any]) -> list[ColdObject]:
    """The objects of ``manifest_read``'s rows."""
    return [ColdObject.from_row(row) for row in rows]


def _range_ns(scope: Scope) -> tuple[int | None, int | None]:
    """``scope``'s time range in ns (None: open)."""
    start_ns = None if scope.start_us is None else scope.start_us * 1000
    end_ns = None if scope.end_us is None else scope.end_us * 1000
    return start_ns, end_ns


async def candidates(
    call: QueryCall,
    scope: Scope,
    columns: Sequence[str],
    objects: Sequence[ColdObject] | None = None,
) -> list[Read]:
    """Reads of ``columns`` of the cold objects (newest first) that may hold records of
    ``scope``, and of their row groups that may: the key blooms narrow them when the
    filter names a trace, a session or whole words, the files' bloom filters when it
    names a trace or a session, the row groups' statistics by time and service. Each
    read keeps only the records of ``scope``. ``objects``: the manifest's answer for a
    range that holds the scope's, when the caller read it already (one read for several
    scopes)."""
    cold = call.cold
    if cold is None:
        return []
    start_ns, end_ns = _range_ns(scope)
    f = scope.filter
    lookups: list[Lookup] = []
    keys: tuple[str, list[bytes]] | None = None
    if f.trace_id is not None:
        lookups.append(Lookup(keybloom.TRACE, (f.trace_id,), (SIGNAL,), start_ns))
        keys = ("trace_id", [f.trace_id])
    if f.session_id is not None:
        lookups.append(Lookup(keybloom.SESSION, (f.session_id.encode(),), (SIGNAL,), start_ns))
        keys = keys or ("session_id", [f.session_id.encode()])
    for word in f.whole_words:
        if word.isascii():  # a non-ASCII word may lowercase otherwise than the index did
            lookups += [
                Lookup(keybloom.WORD, (token.encode(),), (SIGNAL,), start_ns)
                for token in keybloom.word_tokens(word)
            ]
    # The manifest's objects and every key bloom lookup: one round trip; none when the
    # caller's manifest answer holds no object of the scope.
    reads = [lookup.statement(call.project) for lookup in lookups]
    if objects is None:
        reads.insert(0, cold_manifest.objects(call.project, SIGNAL, start_ns, end_ns))
        answers = await call.fetch_many(reads)
        objects = objects_of(answers.pop(0))
    else:
        objects = [
            obj
            for obj in objects
            if obj.signal == SIGNAL
            and (start_ns is None or obj.max_ns >= start_ns)
            and (end_ns is None or obj.min_ns < end_ns)
        ]
        answers = await call.fetch_many(reads) if objects and reads else []
    if not objects:
        return []
    # Per object: None (not looked up), or the row groups the blooms allow (None: any).
    allowed: dict[int, set[int] | None] | None = None
    for lookup, rows_of in zip(lookups, answers, strict=True):
        (places,) = lookup.answer(rows_of).values()
        found = {obj.object_id: None if groups is None else set(groups) for obj, groups in places}
        if allowed is None:
            allowed = found
        else:
            allowed = {i: _both(allowed[i], found[i]) for i in allowed.keys() & found.keys()}
    choose, keep = _groups_within(scope), keeper(scope)
    out: list[Read] = []
    for obj in objects:
        if allowed is None or not obj.row_groups:  # no blooms (tiered before they existed)
            out.append(Read(obj, columns, choose=choose, keys=keys, keep=keep))
        elif obj.object_id in allowed:
            groups = allowed[obj.object_id]
            if groups is None or groups:
                chosen = None if groups is None else sorted(groups)
                out.append(Read(obj, columns, groups=chosen, choose=choose, keys=keys, keep=keep))
    return out


async def scan(
    call: QueryCall,
    scope: Scope,
    *,
    newest_first: bool,
    after: Key | None,
    want: int,
    rival: Key | None = None,
    objects: Sequence[ColdObject] | None = None,
) -> list[LogRow]:
    """Up to ``want`` cold records of ``scope`` past ``after`` (in the scan's direction),
    in that order. ``rival`` is the ``want``-th record another tier already has: a record
    that does not come before it cannot make the page, nor can an object whose rows all
    come after it. ``objects``: as for ``candidates``."""
    cold = call.cold
    if cold is None or want <= 0:
        return []
    found = await candidates(call, scope, COLUMNS, objects)
    # Row group by row group, in the scan's direction by their time statistics: the files
    # sort by service first, so the newest records of an hour are in the last row group of
    # each service's run, and a page of them rarely needs the others.
    units = [
        (read, span)
        for read, spans in zip(found, await cold.plan(call, found), strict=True)
        for span in spans
    ]
    if newest_first:
        units.sort(key=lambda u: (-u[1].high_ns, -u[0].obj.object_id, -u[1].group))
    else:
        units.sort(key=lambda u: (u[1].low_ns, u[0].obj.object_id, u[1].group))

    def rank(key: Key) -> Key:
        """Smaller is earlier in the scan's direction."""
        return (-key[0], -key[1], -key[2], -key[3]) if newest_first else key

    best: list[tuple[Key, LogRow]] = []  # the page so far, in the scan's order

    def cutoff() -> Key | None:
        """The key a row must come before to make the page, if any bounds it yet."""
        bounds = [k for k in (best[want - 1][0] if len(best) >= want else None, rival) if k]
        return min(bounds, key=rank) if bounds else None

    at, size = 0, FIRST_WAVE
    while at < len(units):
        limit = cutoff()
        wave: dict[int, tuple[Read, list[int]]] = {}
        taken = 0
        while at < len(units) and taken < size:
            read, span = units[at]
            # The row group's nearest row in the scan's direction; row groups come in that
            # order, so once one cannot beat the cutoff, none further can.
            edge = (span.high_ns if newest_first else span.low_ns) // 1000
            nearest = (edge, COLD, read.obj.object_id, 2**62 if newest_first else -1)
            if limit is not None and rank(nearest) > rank(limit):
                at = len(units)
                break
            wave.setdefault(read.obj.object_id, (read, []))[1].append(span.group)
            at, taken = at + 1, taken + 1
        size = min(2 * size, LAST_WAVE)
        reads = [
            replace(read, groups=sorted(groups), keys=None, choose=None)
            for read, groups in wave.values()
        ]
        tables = await cold.read(call, reads)
        for read, table in zip(reads, tables, strict=True):
            if not table.num_rows:  # the reads kept only the records of the scope
                continue
            times, numbers = keys(table, read.obj)
            order = np.lexsort((numbers, times))
            if newest_first:
                order = order[::-1]
            picked: list[int] = []
            for i in order:
                key = (int(times[i]), COLD, read.obj.object_id, int(numbers[i]))
                if after is not None and (key >= after if newest_first else key <= after):
                    continue
                if len(picked) >= want:
                    break
                picked.append(int(i))
            for row in rows(table, picked, read.obj):
                best.append((row.key, row))
        best.sort(key=lambda item: rank(item[0]))
        del best[want:]
    return [row for _, row in best]


async def matches(
    call: QueryCall,
    scope: Scope,
    columns: Sequence[str],
    objects: Sequence[ColdObject] | None = None,
) -> list[tuple[ColdObject, pa.Table]]:
    """Every cold record of ``scope``: per object that has some, those records (their
    ``columns``, what the filter needs, and ``ROW``), in no order. ``objects``: as for
    ``candidates``."""
    if call.cold is None:
        return []
    needed = tuple(dict.fromkeys((*_filter_columns(scope), *columns)))
    reads = await candidates(call, scope, needed, objects)
    return [
        (read.obj, table)
        for read, table in zip(reads, await call.cold.read(call, reads), strict=True)
        if table.num_rows
    ]


async def volume(call: QueryCall, scope: Scope, step_us: int) -> dict[tuple[int, int], int]:
    """Cold records of ``scope`` counted per ``(bucket, severity range)`` as
    ``storage.postgres.log_reader.volume`` counts them."""
    counts: dict[tuple[int, int], int] = {}
    for _, table in await matches(call, scope, ("severity_number",)):
        times = table.column("time").cast(pa.int64()).to_numpy() // 1000
        severity = pc.fill_null(table.column("severity_number").cast(pa.int64()), 0).to_numpy()
        ranges_ = np.where(severity <= 0, 0, np.minimum((severity - 1) // 4, 5) * 4 + 1)
        buckets = np.floor_divide(times, step_us)
        first = int(buckets.min())
        # One number per (bucket, severity range): 8 codes a bucket cover the 6 ranges.
        codes = (buckets - first) * 8 + (ranges_ + 3) // 4
        for code, count in enumerate(np.bincount(codes).tolist()):
            if count:
                bucket, severity_range = first + code // 8, max(0, (code % 8) * 4 - 3)
                counts[(bucket, severity_range)] = counts.get((bucket, severity_range), 0) + count
    return counts


async def counts(
    call: QueryCall,
    flt: LogFilter,
    cuts_us: Sequence[int],
    objects: Sequence[ColdObject] | None = None,
) -> list[int]:
    """Cold records of ``flt`` in each range ``[cuts_us[i], cuts_us[i + 1])``, exactly."""
    found = np.zeros(len(cuts_us) - 1, dtype=np.int64)
    scope = Scope(flt, cuts_us[0], cuts_us[-1])
    for _, table in await matches(call, scope, (), objects):
        times = table.column("time").cast(pa.int64()).to_numpy() // 1000
        where = np.searchsorted(np.asarray(cuts_us), times, side="right") - 1
        found += np.bincount(where, minlength=len(found))[: len(found)]
    return [int(n) for n in found]


def sampled(object_id: int, rows: np.ndarray, seed: int, rate: float) -> np.ndarray:
    """Which of ``rows`` (positions in the object ``object_id``) a Bernoulli sample at
    ``rate`` keeps: each by a hash of (seed, object, row) (SplitMix64's finalizer), so
    the same rate and seed keep the same records of an object every time, independently
    of the filters and of one another, as PostgreSQL's ``TABLESAMPLE BERNOULLI ...
    REPEATABLE`` does with a row's block and offset."""
    base = (((object_id << 32) ^ seed) * _GOLDEN) % 2**64
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as the hash wants
        z = rows.astype(np.uint64) + np.uint64(base)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    uniform = (z >> np.uint64(11)).astype(np.float64) / float(2**53)
    kept: np.ndarray = uniform < rate
    return kept


_GOLDEN: Final = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, SplitMix64's increment


async def bodies(
    call: QueryCall,
    scope: Scope,
    *,
    rate: float | None,
    seed: int,
    max_chars: int,
    objects: Sequence[ColdObject] | None = None,
) -> list[tuple[int, str, str | None]]:
    """``(time µs, place, body text)`` of the cold records of ``scope``, in no order: all
    of them, or (``rate``) a ``sampled`` part. The body text is PostgreSQL's
    ``left(body #>> '{}', max_chars)``."""
    found = await matches(call, scope, ("body",), objects)
    # Up to a window's worth of bodies decoded in Python: off the event loop.
    return await asyncio.to_thread(_bodies, found, rate, seed, max_chars)


def _bodies(
    found: list[tuple[ColdObject, pa.Table]],
    rate: float | None,
    seed: int,
    max_chars: int,
) -> list[tuple[int, str, str | None]]:
    out: list[tuple[int, str, str | None]] = []
    for obj, table in found:
        taken = table
        if rate is not None:
            kept = sampled(obj.object_id, table.column(ROW).to_numpy(), seed, rate)
            taken = table.filter(pa.array(kept))
        if not taken.num_rows:
            continue
        times = (taken.column("time").cast(pa.int64()).to_numpy() // 1000).tolist()
        numbers = taken.column(ROW).to_pylist()
        for time_us, row, body in zip(
            times, numbers, taken.column("body").to_pylist(), strict=True
        ):
            text = _body_text(body)
            out.append(
                (
                    time_us,
                    cold_place(obj.object_id, row),
                    None if text is None else text[:max_chars],
                )
            )
    return out


def _filter_columns(scope: Scope) -> tuple[str, ...]:
    """The columns ``matching`` reads for ``scope``."""
    f = scope.filter
    needed = ["time"]
    if f.min_severity > 0:
        needed.append("severity_number")
    if f.words or f.patterns:
        needed.append("body")
    if f.service is not None or scope.no_service:
        needed.append("service_name")
    for name, value in (
        ("trace_id", f.trace_id),
        ("span_id", f.span_id),
        ("session_id", f.session_id),
        ("user_id", f.user_id),
    ):
        if value is not None:
            needed.append(name)
    if f.attributes:
        needed.append("attributes")
    if scope.resource_id is not None:
        needed.append("resource_id")
    return tuple(needed)


async def records(
    call: QueryCall,
    places: Sequence[tuple[int, int]],
    objects: Sequence[ColdObject] = (),
) -> dict[tuple[int, int], LogRow]:
    """The records at ``places`` = (object, row) of the project's cold objects, while the
    manifest names them (``objects``: some of them, already read), one read per object."""
    cold = call.cold
    if cold is None or not places:
        return {}
    wanted: dict[int, set[int]] = {}
    for object_id, row in places:
        wanted.setdefault(object_id, set()).add(row)
    known = {obj.object_id: obj for obj in objects}
    reads = []
    for object_id, rows_of in wanted.items():
        obj = known.get(object_id) or await cold.one(call, object_id)
        if obj is not None:
            reads.append(Read(obj, COLUMNS, choose=_groups_holding(sorted(rows_of))))
    found: dict[tuple[int, int], LogRow] = {}
    for read, table in zip(reads, await cold.read(call, reads), strict=True):
        if not table.num_rows:
            continue
        numbers = table.column(ROW).to_numpy()
        rows_of = wanted[read.obj.object_id]
        positions = np.flatnonzero(np.isin(numbers, np.array(sorted(rows_of), dtype=np.int64)))
        for record in rows(table, positions.tolist(), read.obj):
            found.setdefault((read.obj.object_id, int(record.place.split(".")[1])), record)
    return found


def _groups_holding(wanted_rows: Sequence[int]) -> Choose:
    """The row-group chooser for the groups that hold rows ``wanted_rows`` (sorted)."""

    def choose(metadata: pq.FileMetaData) -> list[int]:
        chosen, at, i = [], 0, 0
        for g in range(metadata.num_row_groups):
            at += metadata.row_group(g).num_rows
            if i < len(wanted_rows) and wanted_rows[i] < at:
                chosen.append(g)
                while i < len(wanted_rows) and wanted_rows[i] < at:
                    i += 1
        return chosen

    return choose


async def record(call: QueryCall, object_id: int, row: int) -> LogRow | None:
    """Row ``row`` of the project's cold object ``object_id``, while the manifest names it."""
    return (await records(call, [(object_id, row)])).get((object_id, row))
