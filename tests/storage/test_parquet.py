"""The cold tier's Parquet files, from rows sent through a real otlpd's OTLP receiver to
files read back with plain pyarrow and DuckDB, checked against docs/storage.md."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import grpc
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from psycopg import sql

from otlpd.scheduler import Scheduler
from storage import parquet
from storage.parquet import Exported, export_rows, footer_bytes_needed, verify
from storage.postgres.metric_rollups import MetricRollupJob
from storage.postgres.migrate import migrate
from storage.postgres.partitions import PartitionManager
from tests.conftest import start_otlpd_thread

S = 10**9
HOUR = 3600 * S
# The last whole hour: every record below lands in its partition, whenever the test runs.
H = (time.time_ns() // HOUR - 1) * HOUR
DOCS = Path(__file__).resolve().parents[2] / "docs" / "storage.md"
PROJECTS = ("shop", "blog")


# --- what is sent ---------------------------------------------------------------------------


def value(v: Any) -> common_pb2.AnyValue:
    if isinstance(v, bool):
        return common_pb2.AnyValue(bool_value=v)
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v)
    if isinstance(v, float):
        return common_pb2.AnyValue(double_value=v)
    if isinstance(v, bytes):
        return common_pb2.AnyValue(bytes_value=v)
    if isinstance(v, list):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=map(value, v)))
    if isinstance(v, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=attrs(v)))
    return common_pb2.AnyValue(string_value=v)


def attrs(values: dict[str, Any]) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=k, value=value(v)) for k, v in values.items()]


def resource(project: str, service: str | None) -> dict[str, Any]:
    return {
        "project.id": project,
        "host.name": f"{service}-host",
        **({"service.name": service} if service else {}),
    }


SCOPE_NAME, SCOPE_VERSION, SCOPE_ATTRIBUTES = "test.scope", "1.2.3", {"lib": "pq"}
RESOURCE_SCHEMA = "https://opentelemetry.io/schemas/1.26.0"
SPAN_ATTRIBUTES = {
    "http.route": "/cart",
    "http.status_code": 200,
    "ratio": 0.25,
    "ok": True,
    "blob": b"\x00\x01\xff",
    "tags": ["x", 1],
    "big": 2**62 + 1,
}


@dataclass(frozen=True)
class Span:
    service: str | None
    trace_id: bytes
    span_id: bytes
    start: int
    parent: bytes = b""
    events: bool = False
    link: bytes = b""


def spans_of(project: str) -> list[Span]:
    """Spans in no sorted order: two services whose names sort differently in a
    locale-aware and in a byte order, and one without a service."""
    seed = PROJECTS.index(project) + 1
    t1, t2, t3 = (bytes([seed, k]) * 8 for k in (1, 2, 3))
    return [
        Span("alpha", t1, bytes([seed, 1]) * 4, H + 900 * S + 7),
        Span("Zeta", t2, bytes([seed, 2]) * 4, H + 60 * S + 3, events=True, link=t1),
        Span("alpha", t1, bytes([seed, 3]) * 4, H + 901 * S, parent=bytes([seed, 1]) * 4),
        Span(None, t3, bytes([seed, 4]) * 4, H + 30 * S),
        Span("Zeta", t2, bytes([seed, 5]) * 4, H + 60 * S + 3, parent=bytes([seed, 2]) * 4),
        Span("alpha", t3, bytes([seed, 6]) * 4, H + 120 * S + 1001),
    ]


def send_spans(target: str, project: str) -> None:
    request = trace_service_pb2.ExportTraceServiceRequest()
    for service in ("alpha", "Zeta", None):
        rs = request.resource_spans.add(
            resource=resource_pb2.Resource(attributes=attrs(resource(project, service))),
            schema_url=RESOURCE_SCHEMA,
        )
        scope = rs.scope_spans.add(schema_url="https://scope.example/1")
        scope.scope.name, scope.scope.version = SCOPE_NAME, SCOPE_VERSION
        scope.scope.attributes.extend(attrs(SCOPE_ATTRIBUTES))
        for s in spans_of(project):
            if s.service != service:
                continue
            span = scope.spans.add(
                trace_id=s.trace_id,
                span_id=s.span_id,
                parent_span_id=s.parent,
                name=f"GET {s.service}",
                kind=2,
                start_time_unix_nano=s.start,
                end_time_unix_nano=s.start + 1_234_567,
                attributes=attrs(SPAN_ATTRIBUTES),
                status=trace_pb2.Status(code=2, message="boom"),
            )
            if s.events:
                span.events.add(
                    time_unix_nano=s.start + 5, name="exception", attributes=attrs({"n": 1})
                )
            if s.link:
                span.links.add(trace_id=s.link, span_id=b"\x07" * 8, attributes=attrs({"l": "k"}))
    with grpc.insecure_channel(target) as channel:
        answer = trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=30)
    assert not answer.partial_success.rejected_spans, answer


LOG_BODY = {"event": "paid", "amount": 12.5, "items": [1, 2]}


def send_logs(target: str, project: str) -> None:
    request = logs_service_pb2.ExportLogsServiceRequest()
    for service, offsets in (("alpha", (700, 10)), ("Zeta", (40, 0))):
        scope = request.resource_logs.add(
            resource=resource_pb2.Resource(attributes=attrs(resource(project, service)))
        ).scope_logs.add()
        scope.scope.name = SCOPE_NAME
        for k, offset in enumerate(offsets):
            record = scope.log_records.add(
                time_unix_nano=H + offset * S + 11 if offset else 0,
                observed_time_unix_nano=H + 3000 * S + k,
                severity_number=9 + 8 * k,
                severity_text=("INFO", "ERROR")[k],
                attributes=attrs({"code.lineno": 42 + k}),
                trace_id=bytes([7, k]) * 8,
                span_id=bytes([8, k]) * 4,
            )
            record.body.CopyFrom(value(LOG_BODY if k else f"hello from {service}"))
    with grpc.insecure_channel(target) as channel:
        answer = logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=30)
    assert not answer.partial_success.rejected_log_records, answer


EXEMPLAR_TRACE = b"\x0e" * 16
BIG_INT = 2**53 + 1  # not a double: only value_int keeps it


def metrics_of(project: str) -> list[metrics_pb2.Metric]:
    t = H + 1200 * S
    gauge = metrics_pb2.Metric(name="temperature", unit="Cel", description="room temperature")
    gauge.metadata.extend(attrs({"origin": "sensor"}))
    gauge.gauge.data_points.add(
        time_unix_nano=t,
        as_double=21.5,
        attributes=attrs({"room": "a"}),
        exemplars=[metrics_pb2.Exemplar(time_unix_nano=t, as_double=21.5, trace_id=EXEMPLAR_TRACE)],
    )
    gauge.gauge.data_points.add(
        time_unix_nano=t + S, as_int=BIG_INT, attributes=attrs({"room": "b"})
    )
    if project != "shop":
        return [gauge]
    total = metrics_pb2.Metric(name="requests", unit="1")
    total.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    total.sum.is_monotonic = True
    total.sum.data_points.add(time_unix_nano=t + 2 * S, start_time_unix_nano=H, as_int=7)
    histogram = metrics_pb2.Metric(name="latency", unit="ms")
    histogram.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    histogram.histogram.data_points.add(
        time_unix_nano=t + 3 * S,
        start_time_unix_nano=t,
        count=6,
        sum=33.0,
        min=0.5,
        max=20.0,
        bucket_counts=[1, 2, 3],
        explicit_bounds=[1.0, 10.0],
    )
    exponential = metrics_pb2.Metric(name="size", unit="By")
    exponential.exponential_histogram.aggregation_temporality = (
        metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    )
    exponential.exponential_histogram.data_points.add(
        time_unix_nano=t + 4 * S,
        start_time_unix_nano=t,
        count=7,
        sum=40.0,
        scale=2,
        zero_count=1,
        zero_threshold=0.001,
        positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(offset=-1, bucket_counts=[1, 2]),
        negative=metrics_pb2.ExponentialHistogramDataPoint.Buckets(offset=3, bucket_counts=[3]),
    )
    summary = metrics_pb2.Metric(name="gc", unit="s")
    summary.summary.data_points.add(
        time_unix_nano=t + 5 * S,
        count=4,
        sum=2.0,
        quantile_values=[
            metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=0.25),
            metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=1.5),
        ],
    )
    return [gauge, total, histogram, exponential, summary]


def send_metrics(target: str, project: str) -> None:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    for service in ("Zeta", "alpha"):
        scope = request.resource_metrics.add(
            resource=resource_pb2.Resource(attributes=attrs(resource(project, service)))
        ).scope_metrics.add()
        scope.scope.name = SCOPE_NAME
        scope.metrics.extend(metrics_of(project))
    with grpc.insecure_channel(target) as channel:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        answer = stub.Export(request, timeout=30)
    assert not answer.partial_success.rejected_data_points, answer


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database(shared_database: str) -> str:
    """The module's database, filled through a real otlpd that is stopped afterwards, its
    metric points rolled up (the minute and the hour of H)."""
    migrate(shared_database)
    server = start_otlpd_thread(shared_database, scheduler="false")
    try:
        for project in PROJECTS:
            send_spans(server.grpc_target, project)
            send_logs(server.grpc_target, project)
            send_metrics(server.grpc_target, project)
    finally:
        server.stop()
    job = MetricRollupJob(shared_database, PartitionManager(shared_database), delay=0)
    assert asyncio.run(Scheduler(shared_database, [job]).run_once(job))
    assert job.last.minutes and job.last.hours
    return shared_database


def partition_of(url: str, signal: str) -> str:
    """The one partition of ``signal`` that holds rows (found in pg_inherits)."""
    with psycopg.connect(url) as conn:
        names = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            (signal,),
        ).fetchall()
        full = [
            str(name)
            for (name,) in names
            if conn.execute(
                sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(str(name)))
            ).fetchone()
        ]
    assert len(full) == 1, full
    return full[0]


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cold")


@pytest.fixture(scope="module")
def files(database: str, cold: Path) -> dict[tuple[str, str], Exported]:
    """Every (signal, project)'s file, laid out under ``cold`` as the object keys are."""
    hour = datetime.fromtimestamp(H / S, UTC)
    out = {}
    with psycopg.connect(database) as conn:
        for signal in parquet.SIGNALS:
            partition = partition_of(database, signal)
            for project in PROJECTS:
                folder = cold / signal / f"project={project}" / f"date={hour:%Y-%m-%d}"
                path = folder / f"hour={hour:%H}" / f"{partition}-0.parquet"
                path.parent.mkdir(parents=True)
                out[signal, project] = export_rows(conn, signal, partition, project, path)
    return out


def table(files: dict[tuple[str, str], Exported], signal: str, project: str = "shop") -> pa.Table:
    return pq.read_table(files[signal, project].path)


def rows(files: dict[tuple[str, str], Exported], signal: str) -> list[dict[str, Any]]:
    t = table(files, signal)
    t = t.set_column(1, "time", t.column("time").cast(pa.int64()))  # as ns, no datetime
    found: list[dict[str, Any]] = t.to_pylist()
    return found


def postgres(url: str, statement: Any, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(statement, params).fetchall()


# --- the documentation ----------------------------------------------------------------------

_DICT = str(pa.dictionary(pa.int32(), pa.string()))
_ROW = re.compile(r"^\| `(\w+)` \| `([^`]+)` \| `([^`]+)` \| (yes|no) \|", re.MULTILINE)


def documented_columns(signal: str) -> list[tuple[str, str, str, bool]]:
    """(name, Arrow type, Parquet type, nullable) of each row of docs/storage.md's
    table under the ``### `` heading that names ``signal`` (``### spans``, or one heading
    for signals with the same columns: ``### metric_rollups_1m and metric_rollups_1h``)."""
    text = DOCS.read_text()
    (heading,) = re.findall(rf"^### .*\b{signal}\b.*$", text, re.MULTILINE)
    start = text.index(f"\n{heading}\n")
    end = text.find("\n#", start + 1)
    return [
        (name, _DICT if arrow == "dictionary<string>" else arrow, physical, null == "yes")
        for name, arrow, physical, null in _ROW.findall(text[start:end])
    ]


def parquet_type(column: Any) -> str:
    """A column's leaf in docs/storage.md's notation: ``INT32 INT(16)``, ``LIST<INT64>``."""
    text = str(column.physical_type)
    if text == "FIXED_LEN_BYTE_ARRAY":
        text += f"({column.length})"
    logical = (
        json.loads(column.logical_type.to_json()) if column.logical_type.type != "NONE" else {}
    )
    if logical.get("Type") == "String":
        text += " STRING"
    elif logical.get("Type") == "Int":
        text += f" INT({logical['bitWidth']})"
    elif logical.get("Type") == "Timestamp":
        assert logical["timeUnit"] == "nanoseconds" and logical["isAdjustedToUTC"]
        text += " TIMESTAMP(NANOS, UTC)"
    else:
        assert not logical, logical
    return f"LIST<{text}>" if column.max_repetition_level else text


def documented_duckdb_query() -> str:
    """The DuckDB query of docs/storage.md's "Reading the files", as written."""
    text = DOCS.read_text()
    start = text.index("\n## Reading the files")
    blocks = re.findall(r"^```sql\n(.*?)^```", text[start:], re.MULTILINE | re.DOTALL)
    (query,) = [block for block in blocks if "'ROOT/" in block]
    return str(query)


# --- the tests ------------------------------------------------------------------------------


def test_a_file_holds_exactly_its_projects_rows_of_the_partition(
    database: str, files: dict[tuple[str, str], Exported]
) -> None:
    for (signal, project), exported in files.items():
        partition = partition_of(database, signal)
        ((count, low, high),) = postgres(
            database,
            sql.SQL(
                "SELECT count(*), (extract(epoch FROM min(time)) * 1e9)::bigint, "
                "(extract(epoch FROM max(time)) * 1e9)::bigint FROM {} WHERE project_id = %s"
            ).format(sql.Identifier(partition)),
            project,
        )
        assert count > 0
        found = pq.read_table(exported.path)
        assert exported.rows == found.num_rows == count, (signal, project)
        assert found.column("project_id").unique().to_pylist() == [project]
        assert (exported.min_time_ns, exported.max_time_ns) == (low, high)
        data = exported.path.read_bytes()
        assert exported.bytes == len(data)
        assert exported.sha256 == hashlib.sha256(data).hexdigest()
        assert (exported.signal, exported.project, exported.partition) == (
            signal,
            project,
            partition,
        )
    for project in PROJECTS:  # another project's rows are not in the file
        ids = set(table(files, "spans", project).column("span_id").to_pylist())
        assert ids == {s.span_id for s in spans_of(project)}
    assert files["metric_points", "blog"].rows == 4  # one gauge of two points, two services


def test_plain_pyarrow_reads_the_schema_of_docs_storage_md(
    files: dict[tuple[str, str], Exported],
) -> None:
    for signal in parquet.SIGNALS:
        documented = documented_columns(signal)
        path = files[signal, "shop"].path
        schema = pq.read_table(path).schema
        leaves = pq.ParquetFile(path).schema
        found = [
            (f.name, str(f.type), parquet_type(leaves.column(i)), f.nullable)
            for i, f in enumerate(schema)
        ]
        assert found == documented, signal
        assert schema.equals(parquet.arrow_schema(signal))


def test_values_round_trip_as_sent(database: str, files: dict[tuple[str, str], Exported]) -> None:
    spans = {r["span_id"]: r for r in rows(files, "spans")}
    for sent in spans_of("shop"):
        row = spans[sent.span_id]
        assert row["trace_id"] == sent.trace_id
        assert row["parent_span_id"] == (sent.parent or None)
        assert row["start_time_unix_nano"] == sent.start
        assert row["end_time_unix_nano"] == sent.start + 1_234_567
        assert row["duration_ns"] == 1_234_567
        assert row["time"] == sent.start // 1000 * 1000  # microseconds, as PostgreSQL keeps
        assert row["service_name"] == sent.service
        assert (row["name"], row["kind"], row["status_code"]) == (f"GET {sent.service}", 2, 2)
        assert row["status_message"] == "boom"
        assert json.loads(row["attributes"]) == {
            **SPAN_ATTRIBUTES,
            "blob": base64.b64encode(b"\x00\x01\xff").decode(),
        }
        assert json.loads(row["resource_attributes"]) == resource("shop", sent.service)
        assert row["resource_schema_url"] == RESOURCE_SCHEMA
        assert (row["scope_name"], row["scope_version"]) == (SCOPE_NAME, SCOPE_VERSION)
        assert json.loads(row["scope_attributes"]) == SCOPE_ATTRIBUTES
        assert row["scope_schema_url"] == "https://scope.example/1"
        events = json.loads(row["events"]) if row["events"] else None
        links = json.loads(row["links"]) if row["links"] else None
        if sent.events:
            assert events == [
                {
                    "name": "exception",
                    "attributes": {"n": 1},
                    "time_unix_nano": sent.start + 5,
                    "dropped_attributes_count": 0,
                }
            ]
            assert links is not None
            assert links[0]["trace_id"] == sent.link.hex()
            assert links[0]["span_id"] == "07" * 8
            assert links[0]["attributes"] == {"l": "k"}
        else:
            assert events is None and links is None
    # JSON exactly as PostgreSQL's jsonb prints it, and the same resource as PostgreSQL's.
    some = next(iter(spans.values()))
    ((attributes, resource_text),) = postgres(
        database,
        "SELECT s.attributes::text, r.attributes::text FROM spans s JOIN resources r "
        "ON r.project_id = s.project_id AND r.resource_id = s.resource_id WHERE s.span_id = %s",
        some["span_id"],
    )
    assert (some["attributes"], some["resource_attributes"]) == (attributes, resource_text)

    logs = {(r["service_name"], r["severity_text"]): r for r in rows(files, "logs")}
    assert len(logs) == 4
    hello = logs["alpha", "INFO"]
    assert json.loads(hello["body"]) == "hello from alpha"
    assert hello["time_unix_nano"] == H + 700 * S + 11
    assert hello["time"] == (H + 700 * S + 11) // 1000 * 1000
    assert (hello["trace_id"], hello["span_id"]) == (bytes([7, 0]) * 8, bytes([8, 0]) * 4)
    assert json.loads(hello["attributes"]) == {"code.lineno": 42}
    assert json.loads(hello["resource_attributes"]) == resource("shop", "alpha")
    paid = logs["Zeta", "ERROR"]  # no timestamp of its own: time is the observed time
    assert json.loads(paid["body"]) == LOG_BODY
    assert paid["time_unix_nano"] == 0
    assert paid["observed_time_unix_nano"] == H + 3000 * S + 1
    assert paid["time"] == (H + 3000 * S + 1) // 1000 * 1000
    assert paid["severity_number"] == 17

    points = rows(files, "metric_points")
    assert len(points) == 2 * 6  # two services, six points each
    by = {(p["service_name"], p["metric_name"], p["time_unix_nano"]): p for p in points}
    t = H + 1200 * S
    for service in ("alpha", "Zeta"):
        a, b = by[service, "temperature", t], by[service, "temperature", t + S]
        assert (a["metric_type"], a["unit"], a["description"]) == (1, "Cel", "room temperature")
        assert json.loads(a["metadata"]) == {"origin": "sensor"}
        assert json.loads(a["attributes"]) == {"room": "a"}
        assert json.loads(a["resource_attributes"]) == resource("shop", service)
        assert (a["value"], a["value_int"], a["trace_id"]) == (21.5, None, EXEMPLAR_TRACE)
        (exemplar,) = json.loads(a["exemplars"])
        assert exemplar["trace_id"] == EXEMPLAR_TRACE.hex() and exemplar["value"] == 21.5
        assert (json.loads(b["attributes"]), b["value_int"]) == ({"room": "b"}, BIG_INT)
        total = by[service, "requests", t + 2 * S]
        assert (total["metric_type"], total["aggregation_temporality"]) == (2, 2)
        assert (total["is_monotonic"], total["value_int"], total["start_time_unix_nano"]) == (
            True,
            7,
            H,
        )
        h = by[service, "latency", t + 3 * S]
        assert (h["metric_type"], h["aggregation_temporality"], h["count"]) == (3, 1, 6)
        assert (h["sum"], h["min"], h["max"]) == (33.0, 0.5, 20.0)
        assert (h["bucket_counts"], h["explicit_bounds"]) == ([1, 2, 3], [1.0, 10.0])
        e = by[service, "size", t + 4 * S]
        assert (e["metric_type"], e["count"], e["sum"], e["scale"]) == (4, 7, 40.0, 2)
        assert (e["zero_count"], e["zero_threshold"]) == (1, 0.001)
        assert (e["positive_offset"], e["positive_bucket_counts"]) == (-1, [1, 2])
        assert (e["negative_offset"], e["negative_bucket_counts"]) == (3, [3])
        assert e["bucket_counts"] is None and e["value"] is None
        s = by[service, "gc", t + 5 * S]
        assert (s["metric_type"], s["count"], s["sum"]) == (5, 4, 2.0)
        assert json.loads(s["quantiles"]) == [[0.5, 0.25], [0.99, 1.5]]

    # The rollups: the minute and the hour of the points, each row with its series.
    minute, hour = t // (60 * S) * 60 * S, H
    for signal, start in (("metric_rollups_1m", minute), ("metric_rollups_1h", hour)):
        found = rows(files, signal)
        assert len(found) == 2 * 6, signal  # two services, six series each
        by = {(r["service_name"], r["metric_name"], r["attributes"]): r for r in found}
        for service in ("alpha", "Zeta"):
            g = by[service, "temperature", '{"room": "a"}']
            assert (g["time"], g["part"], g["samples"], g["sum"]) == (start, 0, 1, 21.5)
            assert (g["first_time_unix_nano"], g["last_value"], g["increase"]) == (t, 21.5, 0.0)
            assert json.loads(g["resource_attributes"]) == resource("shop", service)
            assert g["explicit_bounds"] is None and g["scale"] is None
            h = by[service, "latency", "{}"]
            assert (h["aggregation_temporality"], h["explicit_bounds"]) == (1, [1.0, 10.0])
            assert (h["bucket_increments"], h["last_bucket_counts"]) == ([1, 2, 3], None)
            e = by[service, "size", "{}"]
            assert (e["scale"], e["zero_threshold"], e["zero_increment"]) == (2, 0.001, 1)
            assert (e["positive_offset"], e["positive_increments"]) == (-1, [1, 2])
            assert (e["negative_offset"], e["negative_increments"]) == (3, [3])
            total = by[service, "requests", "{}"]
            assert (total["last_value"], total["last_start_time_unix_nano"]) == (7.0, None)


def test_rows_are_sorted_as_documented(files: dict[tuple[str, str], Exported]) -> None:
    def key(row: dict[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
        out: list[Any] = []
        for name in columns:
            v = row[name]
            # Byte order for strings, nulls last, as the docs say.
            out.append((v is None, v.encode() if isinstance(v, str) else (v or 0)))
        return tuple(out)

    orders = {
        "spans": ("service_name", "time", "trace_id"),
        "logs": ("service_name", "time"),
        "metric_points": ("service_name", "time"),
        "metric_rollups_1m": ("service_name", "time", "series_id"),
        "metric_rollups_1h": ("service_name", "time", "series_id"),
    }
    for signal, columns in orders.items():
        found = rows(files, signal)
        assert [key(r, columns) for r in found] == sorted(key(r, columns) for r in found)
        names = [r["service_name"] for r in found]
        assert names.index("Zeta") < names.index("alpha")  # bytes, not a locale's order
        declared = pq.read_metadata(files[signal, "shop"].path).row_group(0).sorting_columns
        schema = parquet.arrow_schema(signal)
        assert [(schema.names[c.column_index], c.descending, c.nulls_first) for c in declared] == [
            (name, False, False) for name in columns
        ]
    assert rows(files, "spans")[-1]["service_name"] is None


def test_zstd_statistics_page_index_and_id_bloom_filters(
    files: dict[tuple[str, str], Exported],
) -> None:
    for (signal, project), exported in files.items():
        metadata = pq.read_metadata(exported.path)
        assert metadata.metadata[b"otlpd.schema_version"] == b"1"
        assert metadata.metadata[b"otlpd.signal"] == signal.encode()
        assert metadata.metadata[b"otlpd.project"] == project.encode()
        assert metadata.metadata[b"otlpd.min_time_ns"] == str(exported.min_time_ns).encode()
        for g in range(metadata.num_row_groups):
            for c in range(metadata.num_columns):
                chunk = metadata.row_group(g).column(c)
                assert chunk.compression == "ZSTD", chunk.path_in_schema
                assert chunk.is_stats_set, chunk.path_in_schema
                assert chunk.has_column_index and chunk.has_offset_index, chunk.path_in_schema
                has_bloom = chunk.bloom_filter_length not in (None, 0)
                wanted = {
                    "spans": ("trace_id", "session_id"),
                    "logs": ("trace_id", "session_id"),
                    "metric_points": ("session_id",),
                }.get(signal, ())
                assert has_bloom == (chunk.path_in_schema in wanted), chunk.path_in_schema
    # DuckDB reads the bloom filters: a trace of the file is never excluded, others mostly.
    path = str(files["spans", "shop"].path)
    with duckdb.connect() as db:
        probe = "SELECT bloom_filter_excludes FROM parquet_bloom_probe(?, 'trace_id', ?)"
        for s in spans_of("shop"):
            assert db.execute(probe, [path, s.trace_id]).fetchall() == [(False,)]
        absent = [db.execute(probe, [path, os.urandom(16)]).fetchall() for _ in range(20)]
    assert absent.count([(True,)]) >= 15


def test_verify_accepts_the_real_footer_and_refuses_what_differs(
    files: dict[tuple[str, str], Exported],
) -> None:
    for exported in files.values():
        data = exported.path.read_bytes()
        tail = data[-min(parquet.FOOTER_LENGTH_HINT, len(data)) :]
        assert footer_bytes_needed(tail) <= len(tail)
        verify(tail, exported)
    exported = files["spans", "shop"]
    data = exported.path.read_bytes()
    with pytest.raises(ValueError, match=f"{exported.rows} rows, expected {exported.rows + 1}"):
        verify(data, replace(exported, rows=exported.rows + 1))
    with pytest.raises(ValueError, match=r"otlpd\.project is 'shop', expected 'blog'"):
        verify(data, replace(exported, project="blog"))
    with pytest.raises(ValueError, match=r"otlpd\.signal is 'spans'"):
        verify(data, replace(exported, signal="logs"))
    with pytest.raises(ValueError, match=r"otlpd\.partition is"):
        verify(data, replace(exported, partition="spans_p20000101t0000"))
    # A tail shorter than the footer: the caller is told how many bytes to read.
    needed = footer_bytes_needed(data[-8:])
    with pytest.raises(ValueError, match=f"needs the last {needed} bytes of the file, got 100"):
        verify(data[-100:], exported)
    verify(data[-needed:], exported)
    with pytest.raises(ValueError, match="not a Parquet file"):
        verify(b"x" * 100, exported)
    with pytest.raises(ValueError, match="unreadable Parquet footer"):
        verify(b"\x00" * 92 + (50).to_bytes(4, "little") + b"PAR1", exported)


def test_duckdb_runs_the_documented_query_as_written(
    database: str, cold: Path, files: dict[tuple[str, str], Exported]
) -> None:
    query = documented_duckdb_query().replace("ROOT", str(cold))
    with duckdb.connect() as db:
        found = db.execute(query).fetchall()
    expected = postgres(
        database,
        "SELECT service_name, count(*) FROM spans WHERE project_id = 'shop' "
        'GROUP BY service_name ORDER BY service_name COLLATE "C" NULLS LAST',
    )
    assert found == expected == [("Zeta", 2), ("alpha", 3), (None, 1)]


def test_row_groups_are_written_as_the_rows_stream(
    database: str, files: dict[tuple[str, str], Exported], tmp_path: Path
) -> None:
    whole = files["metric_points", "shop"]
    with psycopg.connect(database) as conn:
        small = export_rows(
            conn, "metric_points", whole.partition, "shop", tmp_path / "x.parquet", row_group_rows=5
        )
    metadata = pq.read_metadata(small.path)
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [5, 5, 2]
    # The same rows in the same order (the groups' dictionaries differ, not their values).
    assert pq.read_table(small.path).to_pylist() == pq.read_table(whole.path).to_pylist()
    assert (small.rows, small.min_time_ns, small.max_time_ns) == (
        whole.rows,
        whole.min_time_ns,
        whole.max_time_ns,
    )
    assert math.ceil(whole.rows / 5) == metadata.num_row_groups


def test_export_refuses_what_it_cannot_export_and_writes_nothing(
    database: str, files: dict[tuple[str, str], Exported], tmp_path: Path
) -> None:
    path = tmp_path / "x.parquet"
    spans_partition = files["spans", "shop"].partition
    logs_partition = files["logs", "shop"].partition
    with psycopg.connect(database) as conn:
        with pytest.raises(ValueError, match="signal must be one of"):
            export_rows(conn, "sessions", spans_partition, "shop", path)
        with pytest.raises(ValueError, match="is not a partition of spans"):
            export_rows(conn, "spans", "resources", "shop", path)
        with pytest.raises(ValueError, match="is not a partition of spans"):
            export_rows(conn, "spans", logs_partition, "shop", path)
        with pytest.raises(ValueError, match="has no rows"):
            export_rows(conn, "spans", spans_partition, "nobody", path)
        conn.execute("SELECT 1")
        with pytest.raises(ValueError, match="not in a transaction"):
            export_rows(conn, "spans", spans_partition, "shop", path)
        conn.rollback()
        # The connection is as it was: the export's isolation level was its own.
        assert (conn.isolation_level, conn.read_only) == (None, None)
        assert conn.execute("SHOW transaction_isolation").fetchone() == ("read committed",)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(autouse=True)
def _no_stray_files(cold: Path) -> Iterator[None]:
    yield
    assert not list(cold.rglob("*.partial"))
