"""The SQL of GetLogPatterns: exact counts, the records to mine (all or a sample), and
the example records of a page.

Mining needs three things of a record: its time, its body text and its id. The records
to mine are read sorted by ``(time, body text, ctid)``, so a repeated request gets the
same rows in the same order (the miner shuffles them with a fixed seed) and the same
patterns: Drain's result depends on the order it sees records in. The body text before
the ctid keeps that order where a record's place changes: records tiered to Parquet sort
the same (``query.patterns``), byte by byte (``COLLATE "C"``, Python's order of ``str``)
whatever the database's collation.

Sampling is ``TABLESAMPLE BERNOULLI (p) REPEATABLE (seed)``: PostgreSQL keeps or skips a
row by a hash of the seed and the row's location (block, offset), independently of the
filters, so ``p`` percent of the matching rows come back, the same rows for the same
``p`` every time (the pages of one request agree), and new rows do not move old ones in
or out. It works on the partitioned ``logs`` (each partition gets a Sample Scan; time
still prunes partitions), but it reads every block of the partitions it keeps, without
the BRIN: that is the price of a sample that is not biased towards some blocks, as
``SYSTEM`` sampling is (measured on the query benchmark: 130 ms for 5 % of 2.4 hours,
1M records, against 220 ms to count them).

Every statement is fixed fragments and ``%s`` placeholders; what a client sent is
always a parameter, and every statement filters by ``project_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.postgres.log_reader import BODY_TEXT, LogFilter, filter_conditions
from storage.postgres.records import LOG_COLUMNS, RESOURCE_JOIN, US_TO_TIME

_T = US_TO_TIME.format("%s")
# A body longer than this is mined by its start: a template of a megabyte of JSON says
# nothing more than its first lines, and tokenizing it costs in proportion.
MAX_BODY_CHARS = 2000
# extract(epoch) is numeric (PostgreSQL 14+): exact microseconds, no float.
_TIME_US = "(extract(epoch FROM l.time) * 1000000)::bigint"


def counts(
    f: LogFilter, *, baseline_start_us: int, start_us: int, end_us: int
) -> tuple[str, list[Any]]:
    """One row: (records matching ``f`` in ``[start_us, end_us)``, in
    ``[baseline_start_us, start_us)``), exact, in one scan of both windows."""
    conditions, params = filter_conditions(f)
    statement = (
        "SELECT count(*) FILTER (WHERE l.time >= "
        + _T
        + "), count(*) FILTER (WHERE l.time < "
        + _T
        + ") FROM logs l WHERE "
        + " AND ".join([*conditions, "l.time >= " + _T, "l.time < " + _T])
    )
    return statement, [start_us, start_us, *params, baseline_start_us, end_us]


def mined(
    f: LogFilter,
    *,
    start_us: int,
    end_us: int,
    percent: float | None,
    seed: int,
    limit: int,
) -> tuple[str, list[Any]]:
    """Rows of (time µs, ctid text, body text) of the records matching ``f`` in
    ``[start_us, end_us)``, oldest first, then by body text in byte order (nulls last),
    then by ctid: a ``percent`` sample of them, or all of them (at most ``limit``) when
    ``percent`` is None."""
    conditions, params = filter_conditions(f)
    conditions += ["l.time >= " + _T, "l.time < " + _T]
    params += [start_us, end_us]
    sampling = ""
    sample_params: list[Any] = []
    if percent is not None:
        sampling = " TABLESAMPLE BERNOULLI (%s::float4) REPEATABLE (%s::float8)"
        sample_params = [percent, seed]
    statement = (
        "SELECT "
        + _TIME_US
        + ", l.ctid::text, left("
        + BODY_TEXT
        + ', %s) COLLATE "C" FROM logs l'
        + sampling
        + " WHERE "
        + " AND ".join(conditions)
        + " ORDER BY l.time, 3, l.ctid LIMIT %s"
    )
    return statement, [MAX_BODY_CHARS, *sample_params, *params, limit]


def examples(project: str, keys: Sequence[tuple[int, str]]) -> tuple[str, list[Any]]:
    """The whole records (``LOG_COLUMNS``) of ``keys`` = (time µs, ctid), in no order;
    a key no longer there (its partition dropped) has no row.

    One statement for a page: each key is a TID scan of the one partition its time
    prunes to, at run time (PostgreSQL 11+ prunes an Append per outer row).
    """
    statement = (
        "SELECT "
        + LOG_COLUMNS
        + " FROM unnest(%s::bigint[], %s::text[]) AS k(time_us, ctid) CROSS JOIN LATERAL ("
        "SELECT l.*, l.ctid AS ctid FROM logs l WHERE l.project_id = %s AND l.time = "
        + US_TO_TIME.format("k.time_us")
        + " AND l.ctid = k.ctid::tid) l "
        + RESOURCE_JOIN.format(alias="l")
    )
    return statement, [[k[0] for k in keys], [k[1] for k in keys], project]
