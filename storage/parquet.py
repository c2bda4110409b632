"""The cold tier's Parquet objects: one self-contained file per (signal, project, partition).

``export_rows`` writes the rows of one project in one hot partition, together with what
they refer to in PostgreSQL (a span's or log record's resource, a point's metric series),
so that a reader needs nothing but the file and ``docs/storage.md``, the reference of
every column. ``verify`` checks an uploaded object's footer against what was exported,
from the tail bytes alone (one ranged read of the object store).

What the files are made of, and why:

* Flat columns, typed as PostgreSQL stores them (ids as fixed-size binary, OTLP times
  as their exact ``int64`` nanoseconds, ``time`` as a UTC timestamp); attributes,
  events, links, bodies and exemplars as the JSON text of their ``jsonb``.
* Strings that repeat across rows (service, span name, severity, scope, metric name,
  resource attributes, series labels) are dictionary-typed, which Parquet stores as a
  dictionary page per column chunk and readers get back as Arrow dictionaries.
* Rows sorted by (service_name, time), and trace_id as well for spans, with the
  ``sorting_columns`` declared, so min/max statistics of the row groups and of the pages
  (``write_page_index``) let a reader skip what a service or time filter excludes; split-
  block bloom filters on trace_id and session_id answer "is this trace here?" per row
  group (``storage.parquet_bloom`` reads them).
* zstd, row groups of ``ROW_GROUP_ROWS`` (see there), and ``otlpd.*`` key-value metadata
  naming the signal, project, partition, time range and ``SCHEMA_VERSION``.

Sorting happens in PostgreSQL (``ORDER BY``), streaming through a server-side cursor: a
partition is bounded by its hour, and the sort spills to disk under ``work_mem``, where
sorting in Python would need the whole partition in memory. Strings are ordered
``COLLATE "C"``, byte by byte, which is the order Parquet statistics compare in.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import psycopg
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from psycopg import sql
from psycopg.pq import TransactionStatus

from storage import keybloom
from storage.keybloom import ShardBloom
from storage.postgres.records import RESOURCE_JOIN

SCHEMA_VERSION: Final = 1
# The hot tables: records, and the metric rollups (0009).
SIGNALS: Final = ("spans", "logs", "metric_points", "metric_rollups_1m", "metric_rollups_1h")

ROW_GROUP_ROWS: Final = 8_192
"""Rows per row group: the unit a reader decodes, and what a key bloom points it to.

A trace's spans are spread over the row groups of the services they ran in (rows sort by
service first), so reading one trace decodes every column of several groups. Measured on
an hour of the query benchmark's spans (417k rows, a trace in 10 services): 16 ms of CPU
per trace with groups of 8,192 rows (10 groups, ~330 KB each), 28 ms with 16,384, 112 ms
with 65,536 (6 groups of ~2.5 MB), while scanning whole columns of the hour cost the same
within 30% at all three sizes and the file grew 4.5% (docs/benchmarks.md, "Cold tier").
The columns of one group lie side by side in the file, so reading a whole group is one
ranged GET. It also bounds the exporter's memory: one group of Arrow columns at a time.
"""

FETCH_ROWS: Final = 8_192
"""Rows per ``FETCH`` of the server-side cursor. Rows as Python objects take many times
the memory of their Arrow columns, so each fetch is converted at once and only the
columns are kept until a row group is full."""

FOOTER_LENGTH_HINT: Final = 64 * 1024
"""Tail bytes to read first for ``verify``. A spans footer measured ~4 KB (schema,
metadata) plus ~4 KB per row group (statistics of every column chunk; the page index and
bloom filters are outside it), so this holds the whole footer of up to ~15 row groups
(~120k rows). For a bigger one, ``footer_bytes_needed`` says how many bytes to read."""

ZSTD_LEVEL: Final = 6
"""Measured on realistic spans and logs (docs/storage.md): 5-6% fewer bytes than zstd's
default 3, for ~1 us more CPU per row, against ~15-20 us per row that reading the rows
from PostgreSQL costs; 9 and above gained ~1% more at 1.5-4x the CPU."""

BLOOM_FPP: Final = 0.01
"""False-positive rate of the trace_id and session_id bloom filters. pyarrow 26 sizes
each filter from the distinct values of its column chunk, rounded up to a power of two:
11-22 bits per distinct trace id (4 KiB for 3,000 traces; 0.05 gave the same sizes),
under 2% of the bytes of a span. Measured against random ids: ~0.13% of row groups
answer "maybe" (the rounding makes them roomier than asked)."""

MAGIC: Final = b"PAR1"
_ENCRYPTED_MAGIC: Final = b"PARE"
_TAIL: Final = 8  # a 4-byte little-endian footer length, then the magic

_DICT: Final = pa.dictionary(pa.int32(), pa.string())
_TIME: Final = pa.timestamp("ns", tz="UTC")
# The partition key, microseconds in PostgreSQL, as exact integer nanoseconds: extract
# gives numeric (not float) since PostgreSQL 14, and a timestamp needs no Python datetime.
_TIME_NS: Final = "(extract(epoch FROM t.time) * 1000000000)::bigint"


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a signal's files: its Arrow type and where its values come from."""

    name: str
    type: pa.DataType
    nullable: bool
    select: str  # SQL over t (the partition) and r (the resource or metric series)
    # What a fetched value becomes in the file, when PostgreSQL stores it otherwise.
    convert: Callable[[Any], Any] | None = None


def _c(
    name: str,
    type_: pa.DataType,
    select: str | None = None,
    *,
    null: bool = True,
    convert: Callable[[Any], Any] | None = None,
) -> Column:
    return Column(name, type_, null, select or f"t.{name}", convert)


def _packed_counts(value: bytes | None) -> list[int] | None:
    """Bucket counts stored packed in the rollup tables (8-byte big-endian, 0009)."""
    if value is None:
        return None
    counts: list[int] = np.frombuffer(value, dtype=">i8").tolist()
    return counts


# Columns every signal takes from the row's scope (stored on the row for spans and logs).
def _scope(alias: str) -> tuple[Column, ...]:
    return (
        _c("scope_name", _DICT, f"{alias}.scope_name"),
        _c("scope_version", _DICT, f"{alias}.scope_version"),
        _c("scope_attributes", _DICT, f"{alias}.scope_attributes::text"),
        _c("scope_schema_url", _DICT, f"{alias}.scope_schema_url"),
        _c("scope_dropped_attributes_count", pa.int32(), f"{alias}.scope_dropped_attributes_count"),
    )


_RESOURCE: Final = (
    _c("resource_id", pa.int64(), null=False),
    _c("resource_attributes", _DICT, "r.attributes::text"),
    _c("resource_schema_url", _DICT, "r.schema_url"),
    _c("resource_dropped_attributes_count", pa.int32(), "r.dropped_attributes_count"),
)

_SPANS: Final = (
    _c("project_id", _DICT, null=False),
    _c("time", _TIME, _TIME_NS, null=False),
    _c("start_time_unix_nano", pa.int64()),
    _c("end_time_unix_nano", pa.int64()),
    _c("duration_ns", pa.int64()),
    _c("trace_id", pa.binary(16), null=False),
    _c("span_id", pa.binary(8), null=False),
    _c("parent_span_id", pa.binary(8)),
    _c("trace_state", pa.string()),
    _c("flags", pa.int64()),
    _c("service_name", _DICT),
    _c("session_id", pa.string()),
    _c("user_id", pa.string()),
    _c("name", _DICT, null=False),
    _c("kind", pa.int16()),
    _c("status_code", pa.int16()),
    _c("status_message", pa.string()),
    _c("attributes", pa.string(), "t.attributes::text"),
    _c("events", pa.string(), "t.events::text"),
    _c("links", pa.string(), "t.links::text"),
    _c("dropped_attributes_count", pa.int32()),
    _c("dropped_events_count", pa.int32()),
    _c("dropped_links_count", pa.int32()),
    *_RESOURCE,
    *_scope("t"),
)

_LOGS: Final = (
    _c("project_id", _DICT, null=False),
    _c("time", _TIME, _TIME_NS, null=False),
    _c("time_unix_nano", pa.int64()),
    _c("observed_time_unix_nano", pa.int64()),
    _c("trace_id", pa.binary(16)),
    _c("span_id", pa.binary(8)),
    _c("flags", pa.int64()),
    _c("service_name", _DICT),
    _c("session_id", pa.string()),
    _c("user_id", pa.string()),
    _c("severity_number", pa.int16()),
    _c("severity_text", _DICT),
    _c("body", pa.string(), "t.body::text"),
    _c("attributes", pa.string(), "t.attributes::text"),
    _c("event_name", _DICT),
    _c("dropped_attributes_count", pa.int32()),
    *_RESOURCE,
    *_scope("t"),
)

_POINTS: Final = (
    _c("project_id", _DICT, null=False),
    _c("time", _TIME, _TIME_NS, null=False),
    _c("time_unix_nano", pa.int64()),
    _c("start_time_unix_nano", pa.int64()),
    _c("series_id", pa.int64(), null=False),
    _c("metric_name", _DICT, "r.metric_name"),
    _c("metric_type", pa.int16(), "r.metric_type"),
    _c("unit", _DICT, "r.unit"),
    _c("description", _DICT, "r.description"),
    _c("aggregation_temporality", pa.int16(), "r.aggregation_temporality"),
    _c("is_monotonic", pa.bool_(), "r.is_monotonic"),
    _c("metadata", _DICT, "r.metadata::text"),
    _c("service_name", _DICT),
    _c("attributes", _DICT, "r.attributes::text"),
    _c("resource_attributes", _DICT, "r.resource::text"),
    _c("resource_schema_url", _DICT, "r.resource_schema_url"),
    _c("resource_dropped_attributes_count", pa.int32(), "r.resource_dropped_attributes_count"),
    *_scope("r"),
    _c("trace_id", pa.binary(16)),
    _c("span_id", pa.binary(8)),
    _c("session_id", pa.string()),
    _c("user_id", pa.string()),
    _c("flags", pa.int64()),
    _c("value", pa.float64()),
    _c("value_int", pa.int64()),
    _c("count", pa.int64()),
    _c("sum", pa.float64()),
    _c("min", pa.float64()),
    _c("max", pa.float64()),
    _c("bucket_counts", pa.list_(pa.int64())),
    _c("explicit_bounds", pa.list_(pa.float64())),
    _c("scale", pa.int32()),
    _c("zero_count", pa.int64()),
    _c("zero_threshold", pa.float64()),
    _c("positive_offset", pa.int32()),
    _c("positive_bucket_counts", pa.list_(pa.int64())),
    _c("negative_offset", pa.int32()),
    _c("negative_bucket_counts", pa.list_(pa.int64())),
    _c("quantiles", pa.string(), "t.quantiles::text"),
    _c("exemplars", pa.string(), "t.exemplars::text"),
)

# A rollup row carries its series as a point does, then its summary of the interval.
_ROLLUPS: Final = (
    _c("project_id", _DICT, null=False),
    _c("time", _TIME, _TIME_NS, null=False),
    _c("series_id", pa.int64(), null=False),
    _c("part", pa.int16(), null=False),
    *_POINTS[5:12],  # metric_name .. metadata
    _c("service_name", _DICT, "r.service_name"),
    *_POINTS[13:22],  # attributes .. scope_dropped_attributes_count
    _c("samples", pa.int64(), null=False),
    _c("sum", pa.float64()),
    _c("min", pa.float64()),
    _c("max", pa.float64()),
    _c("first_time_unix_nano", pa.int64()),
    _c("first_value", pa.float64()),
    _c("last_time_unix_nano", pa.int64()),
    _c("last_value", pa.float64()),
    _c("increase", pa.float64()),
    _c("first_start_time_unix_nano", pa.int64()),
    _c("last_start_time_unix_nano", pa.int64()),
    _c("explicit_bounds", pa.list_(pa.float64())),
    _c("bucket_increments", pa.list_(pa.int64()), convert=_packed_counts),
    _c("first_bucket_counts", pa.list_(pa.int64()), convert=_packed_counts),
    _c("last_bucket_counts", pa.list_(pa.int64()), convert=_packed_counts),
    _c("scale", pa.int32()),
    _c("zero_threshold", pa.float64()),
    _c("positive_offset", pa.int32()),
    _c("negative_offset", pa.int32()),
    _c("zero_increment", pa.int64()),
    _c("positive_increments", pa.list_(pa.int64())),
    _c("negative_increments", pa.list_(pa.int64())),
    _c("first_zero_count", pa.int64()),
    _c("first_positive_counts", pa.list_(pa.int64())),
    _c("first_negative_counts", pa.list_(pa.int64())),
    _c("last_zero_count", pa.int64()),
    _c("last_positive_counts", pa.list_(pa.int64())),
    _c("last_negative_counts", pa.list_(pa.int64())),
)


@dataclass(frozen=True, slots=True)
class _Layout:
    columns: tuple[Column, ...]
    joins: str  # what r is
    order: tuple[str, ...]  # the sort, as column names
    bloom: tuple[str, ...]  # columns with a bloom filter
    keys: tuple[tuple[int, str], ...]  # (keybloom kind, column) of the manifest's key blooms
    # Sort columns that come from r, not from the row itself: their expression.
    sort_from: tuple[tuple[str, str], ...] = ()


# The resource of a span or log record, joined as every reader of the hot tier joins it.
_RESOURCE_JOIN: Final = RESOURCE_JOIN.format(alias="t")
_SERIES_JOIN: Final = (
    "LEFT JOIN metric_series r ON r.project_id = t.project_id AND r.series_id = t.series_id"
)

_LAYOUTS: Final = {
    "spans": _Layout(
        _SPANS,
        _RESOURCE_JOIN,
        ("service_name", "time", "trace_id"),
        ("trace_id", "session_id"),
        ((keybloom.TRACE, "trace_id"), (keybloom.SESSION, "session_id")),
    ),
    "logs": _Layout(
        _LOGS,
        _RESOURCE_JOIN,
        ("service_name", "time"),
        ("trace_id", "session_id"),
        (
            (keybloom.TRACE, "trace_id"),
            (keybloom.SESSION, "session_id"),
            (keybloom.WORD, "body"),
        ),
    ),
    "metric_points": _Layout(
        _POINTS,
        _SERIES_JOIN,
        ("service_name", "time"),
        ("session_id",),
        ((keybloom.SESSION, "session_id"),),
    ),
    **{
        table: _Layout(
            _ROLLUPS,
            _SERIES_JOIN,
            ("service_name", "time", "series_id"),
            (),
            (),
            sort_from=(("service_name", "r.service_name"),),
        )
        for table in ("metric_rollups_1m", "metric_rollups_1h")
    },
}

# Integers of few distinct values per file are dictionary-encoded in Parquet too (a few
# bits per row before zstd): enumerations, and the ids of resources and series.
_FEW_VALUES: Final = frozenset(
    {
        "kind",
        "status_code",
        "severity_number",
        "metric_type",
        "aggregation_temporality",
        "flags",
        "resource_id",
        "series_id",
        "part",
        "scale",
    }
)
# Times, sorted or nearly (within a service), as deltas: ~1 byte per row fewer than plain.
_DELTAS: Final = frozenset(
    {
        "time",
        "start_time_unix_nano",
        "end_time_unix_nano",
        "time_unix_nano",
        "observed_time_unix_nano",
        "first_time_unix_nano",
        "last_time_unix_nano",
        "first_start_time_unix_nano",
        "last_start_time_unix_nano",
    }
)


def arrow_schema(signal: str) -> pa.Schema:
    """The Arrow schema of ``signal``'s files (``docs/storage.md`` documents each column)."""
    return pa.schema(
        [pa.field(c.name, c.type, nullable=c.nullable) for c in _layout(signal).columns]
    )


@dataclass(frozen=True, slots=True)
class Exported:
    """One written file: what ``verify`` checks the stored object against, and what the
    manifest records. ``signal``, ``project`` and ``partition`` say what it holds."""

    path: Path
    rows: int
    bytes: int
    min_time_ns: int  # of the `time` column (the partition key), inclusive
    max_time_ns: int
    sha256: str  # hex of the file's bytes
    signal: str
    project: str
    partition: str
    row_groups: int = 0
    # The key blooms of the manifest (storage.keybloom): which row groups hold which trace
    # and session ids, recorded with the object.
    blooms: tuple[ShardBloom, ...] = ()


def export_rows(
    conn: psycopg.Connection[Any],
    signal: str,
    partition: str,
    project: str,
    path: Path,
    *,
    row_group_rows: int = ROW_GROUP_ROWS,
    pace: Callable[[int], None] | None = None,
) -> Exported:
    """Writes ``project``'s rows of hot partition ``partition`` of ``signal`` to ``path``.

    ``pace`` is called with the number of rows of every batch read, and may sleep: the
    caller's way to keep an export from taking the cores ingest needs.

    ``conn`` must be idle (not in a transaction): the export runs in a REPEATABLE READ
    READ ONLY transaction of its own, so the rows and what they refer to come from one
    snapshot; rows committed after it are not in the file (compare ``rows`` with a count
    taken under a lock before dropping anything). The file appears at ``path`` only when
    complete (written beside it, then renamed). Raises ``ValueError`` when ``signal`` is
    not a hot table, ``partition`` is not one of its partitions, or the project has no
    rows there (nothing is written then); database errors propagate as psycopg's.
    """
    layout = _layout(signal)
    if row_group_rows <= 0:
        raise ValueError(f"row_group_rows must be > 0, got {row_group_rows}")
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError("export_rows needs a connection that is not in a transaction")
    saved = conn.isolation_level, conn.read_only
    conn.isolation_level, conn.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
    try:
        with conn.transaction():
            _check_partition(conn, signal, partition)
            statement = sql.SQL(
                "SELECT {} FROM {} t {} WHERE t.project_id = %s ORDER BY {}"
            ).format(
                sql.SQL(", ").join(sql.SQL(c.select) for c in layout.columns),
                sql.Identifier(partition),
                sql.SQL(layout.joins),
                sql.SQL(", ").join(_order_by(layout)),
            )
            with conn.cursor(name="otlpd_parquet_export", binary=True) as cursor:
                cursor.execute(statement, (project,))
                return _write(
                    cursor,
                    path,
                    signal=signal,
                    partition=partition,
                    project=project,
                    row_group_rows=row_group_rows,
                    pace=pace,
                )
    finally:
        conn.isolation_level, conn.read_only = saved


def footer_bytes_needed(tail: bytes) -> int:
    """How many bytes at the end of a Parquet file hold its whole footer (metadata,
    length and magic), from its last 8 bytes. Raises ``ValueError`` if it is not one."""
    if len(tail) < _TAIL:
        raise ValueError(f"a Parquet tail is at least {_TAIL} bytes, got {len(tail)}")
    magic = tail[-4:]
    if magic == _ENCRYPTED_MAGIC:
        raise ValueError("the Parquet footer is encrypted; otlpd writes plain footers")
    if magic != MAGIC:
        raise ValueError(f"not a Parquet file: it ends with {magic!r}, not {MAGIC!r}")
    return int.from_bytes(tail[-_TAIL:-4], "little") + _TAIL


def verify(footer: bytes, expected: Exported) -> None:
    """Checks a Parquet footer against ``expected``: the row count and otlpd's metadata
    (schema version, signal, project, partition, time range).

    ``footer`` is the file's tail (``FOOTER_LENGTH_HINT`` bytes, or all of a smaller
    file). Raises ``ValueError`` naming every mismatch, or saying how many tail bytes to
    read when the footer is longer than ``footer``.
    """
    needed = footer_bytes_needed(footer)
    if needed > len(footer):
        raise ValueError(
            f"the footer needs the last {needed} bytes of the file, got {len(footer)}: "
            "read that many and verify again"
        )
    try:
        metadata = pq.read_metadata(pa.BufferReader(footer[-needed:]))
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"unreadable Parquet footer: {e}") from e
    found = {
        k.decode(errors="replace"): v.decode(errors="replace")
        for k, v in (metadata.metadata or {}).items()
    }
    wanted = {
        "otlpd.schema_version": str(SCHEMA_VERSION),
        "otlpd.signal": expected.signal,
        "otlpd.project": expected.project,
        "otlpd.partition": expected.partition,
        "otlpd.min_time_ns": str(expected.min_time_ns),
        "otlpd.max_time_ns": str(expected.max_time_ns),
    }
    wrong = [
        f"{key} is {found.get(key)!r}, expected {value!r}"
        for key, value in wanted.items()
        if found.get(key) != value
    ]
    if metadata.num_rows != expected.rows:
        wrong.insert(0, f"{metadata.num_rows} rows, expected {expected.rows}")
    if wrong:
        raise ValueError(f"{expected.path.name}: " + "; ".join(wrong))


# --- the export ---------------------------------------------------------------------------


def _layout(signal: str) -> _Layout:
    layout = _LAYOUTS.get(signal)
    if layout is None:
        raise ValueError(f"signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
    return layout


def _order_by(layout: _Layout) -> list[sql.Composable]:
    types = {c.name: c.type for c in layout.columns}
    joined = dict(layout.sort_from)
    out: list[sql.Composable] = []
    for name in layout.order:
        column = (
            sql.SQL(joined[name])
            if name in joined
            else sql.SQL("t.{}").format(sql.Identifier(name))
        )
        collate = sql.SQL(' COLLATE "C"') if pa.types.is_dictionary(types[name]) else sql.SQL("")
        out.append(sql.Composed([column, collate]))
    return out


def _check_partition(conn: psycopg.Connection[Any], signal: str, partition: str) -> None:
    """Refuses a table that is not a partition of ``signal``'s table (another table of
    the database must not be exported as if it were one)."""
    found = conn.execute(
        "SELECT 1 FROM pg_inherits "
        "WHERE inhparent = to_regclass(%s) AND inhrelid = to_regclass(quote_ident(%s))",
        (signal, partition),
    ).fetchone()
    if found is None:
        raise ValueError(f"{partition!r} is not a partition of {signal}")


def _write(
    cursor: psycopg.Cursor[Any],
    path: Path,
    *,
    signal: str,
    partition: str,
    project: str,
    row_group_rows: int,
    pace: Callable[[int], None] | None,
) -> Exported:
    """Streams the cursor's rows into ``path``, a row group at a time."""
    layout = _layout(signal)
    schema = arrow_schema(signal)
    time_at = schema.get_field_index("time")
    partial = path.with_name(path.name + ".partial")
    writer: pq.ParquetWriter | None = None
    pending: list[pa.RecordBatch] = []
    pending_rows = rows = 0
    keys: dict[int, list[list[bytes] | None]] = {kind: [] for kind, _ in layout.keys}
    groups = 0
    min_ns = max_ns = 0
    try:
        while True:
            fetched = cursor.fetchmany(min(FETCH_ROWS, row_group_rows))
            if fetched and pace is not None:
                pace(len(fetched))
            if fetched:
                columns: list[Any] = list(zip(*fetched, strict=True))
                for i, column in enumerate(layout.columns):
                    if column.convert is not None:
                        columns[i] = [column.convert(v) for v in columns[i]]
                times = columns[time_at]
                low, high = min(times), max(times)
                min_ns, max_ns = (low, high) if not rows else (min(min_ns, low), max(max_ns, high))
                pending.append(
                    pa.record_batch(
                        [
                            pa.array(values, f.type)
                            for values, f in zip(columns, schema, strict=True)
                        ],
                        schema=schema,
                    )
                )
                pending_rows += len(fetched)
                rows += len(fetched)
            while pending_rows >= row_group_rows or (pending_rows and not fetched):
                if writer is None:
                    writer = _writer(partial, schema, layout, row_group_rows)
                table = pa.Table.from_batches(pending, schema)
                size = min(pending_rows, row_group_rows)
                group = table.slice(0, size).combine_chunks()
                writer.write_table(group, row_group_size=size)
                groups += 1
                for kind, name in layout.keys:
                    column = group.column(name)
                    found = body_words(column) if kind == keybloom.WORD else _distinct_keys(column)
                    if keybloom.PER_ROW_GROUP[kind] or not keys[kind]:
                        keys[kind].append(found)
                    else:  # one segment for the whole object
                        kept = keys[kind][0]
                        keys[kind][0] = None if kept is None or found is None else kept + found
                rest = table.slice(size)
                pending, pending_rows = rest.to_batches(), rest.num_rows
            if not fetched:
                break
        if writer is None:
            raise ValueError(f"project {project!r} has no rows in {partition}")
        writer.add_key_value_metadata(
            {
                "otlpd.schema_version": str(SCHEMA_VERSION),
                "otlpd.signal": signal,
                "otlpd.project": project,
                "otlpd.partition": partition,
                "otlpd.min_time_ns": str(min_ns),
                "otlpd.max_time_ns": str(max_ns),
            }
        )
        writer.close()
        writer = None
        with partial.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        size = partial.stat().st_size
        os.replace(partial, path)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
    blooms = tuple(
        bloom for kind, per_group in keys.items() for bloom in keybloom.build(kind, per_group)
    )
    return Exported(
        path, rows, size, min_ns, max_ns, digest, signal, project, partition, groups, blooms
    )


def _distinct_keys(column: pa.ChunkedArray) -> list[bytes]:
    """The distinct non-null values of a key column as bytes (strings as UTF-8)."""
    values = pc.unique(column.drop_null()).to_pylist()
    return [v.encode() if isinstance(v, str) else v for v in values]


# What separates words in a body's JSON text: an escape (PostgreSQL's jsonb output escapes
# only '"', '\\' and control characters, none of them word characters, so an escape is a
# separator in the text it stands for) or a character that is neither a word character
# nor whitespace (whitespace separates already). Replacing these by a space, then splitting
# on whitespace, was ~4x faster than splitting on a pattern (pyarrow 26, measured).
# RE2's \s is ASCII ([\t\n\f\r ]), so what is left to split on is ASCII whitespace only,
# and the split is ``ascii_split_whitespace``: pyarrow 26's ``utf8_split_whitespace``
# decodes past the end of the last value (valgrind: a jump on uninitialised memory in
# ``UTF8Decode`` under ``SplitWhitespaceUtf8Finder``; apache/arrow#37757), so a body that
# ends in spaces now and then gave a word " ".
_NOT_WORDS: Final = r"\\(u[0-9a-fA-F]{4}|.)|[^\p{L}\p{N}_\s]+"


def body_words(column: pa.ChunkedArray) -> list[bytes] | None:
    """The distinct words (``keybloom.word_tokens``) of a row group's bodies, or None when
    there are more than ``keybloom.MAX_WORDS``: ~0.8 us a record, vectorized."""
    spaced = pc.replace_substring_regex(column.drop_null(), _NOT_WORDS, " ")
    words = pc.unique(pc.list_flatten(pc.ascii_split_whitespace(pc.utf8_lower(spaced))))
    if len(words) > keybloom.MAX_WORDS:
        return None
    return [w.encode() for w in words.to_pylist() if w]


def _writer(
    where: Path, schema: pa.Schema, layout: _Layout, row_group_rows: int
) -> pq.ParquetWriter:
    """A writer for ``schema``, opened with the first row group (an export of no rows
    writes nothing). ``ndv`` bounds the distinct values of a chunk; pyarrow sizes each
    bloom filter from the values it holds."""
    dictionary = [f.name for f in schema if pa.types.is_dictionary(f.type) or f.name in _FEW_VALUES]
    order = [schema.get_field_index(name) for name in layout.order]
    return pq.ParquetWriter(
        where,
        schema,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=dictionary,
        column_encoding={f.name: "DELTA_BINARY_PACKED" for f in schema if f.name in _DELTAS},
        write_statistics=True,
        write_page_index=True,
        sorting_columns=[pq.SortingColumn(i, nulls_first=False) for i in order],
        bloom_filter_options={
            name: {"ndv": row_group_rows, "fpp": BLOOM_FPP} for name in layout.bloom
        }
        or None,
    )
