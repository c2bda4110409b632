"""PostgresWriter against a real PostgreSQL: every column back exactly, one transaction per
write, data errors told apart from an unreachable database, and recovery after one."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
import pytest

from storage import model
from storage.api import StorageDataError, StorageUnavailable
from storage.model import RowBatch, SessionSighting
from storage.postgres import writer as w
from storage.postgres.migrate import migrate
from storage.postgres.partitions import PartitionManager, datetime_from_ns
from storage.postgres.writer import PostgresWriter
from tests.conftest import terminate_backends

HOUR = 3600 * 10**9
# Not a whole microsecond: the nanoseconds must survive in the bigint columns.
T = 1_700_000_000_123_456_789
TRACE = bytes(range(16))
SPAN = bytes(range(8))

_TABLES: dict[str, tuple[Sequence[str], Sequence[str]]] = {
    "spans": (model.SPAN_COLUMNS, w.SPAN_TYPES),
    "logs": (model.LOG_COLUMNS, w.LOG_TYPES),
    "metric_points": (model.POINT_COLUMNS, w.POINT_TYPES),
    "metric_series": (model.SERIES_COLUMNS, w.SERIES_TYPES),
    "resources": (model.RESOURCE_COLUMNS, w.RESOURCE_TYPES),
    "sessions": (model.SESSION_COLUMNS, w.SESSION_TYPES),
}


def row(table: str, **values: Any) -> model.Row:
    """A row of ``table`` in model.py's column order; columns not given are None."""
    columns = _TABLES[table][0]
    unknown = set(values) - set(columns)
    assert not unknown, unknown
    return tuple(values.get(column) for column in columns)


def span(**values: Any) -> model.Row:
    required = {
        "project_id": "p1",
        "time": T,
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "op",
        "resource_id": 1,
    }
    return row("spans", **{**required, **values})


def log(**values: Any) -> model.Row:
    return row("logs", **{"project_id": "p", "time": T, "resource_id": 1, **values})


def series(series_id: int, **values: Any) -> model.Row:
    base = {"project_id": "p1", "series_id": series_id, "metric_name": "m", "metric_type": 1}
    return row("metric_series", **{**base, "first_seen": T, **values})


def resource(resource_id: int, **values: Any) -> model.Row:
    base = {"project_id": "p1", "resource_id": resource_id, "attributes": "{}"}
    return row("resources", **{**base, "first_seen": T, **values})


def stored(url: str, table: str, order_by: str = "1") -> list[tuple[Any, ...]]:
    columns = ", ".join(f'"{c}"' for c in _TABLES[table][0])
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order_by}").fetchall()


def expected(table: str, rows: Sequence[model.Row]) -> list[tuple[Any, ...]]:
    """What psycopg reads back for ``rows``: timestamptz as datetime, jsonb parsed."""
    types = _TABLES[table][1]
    out = []
    for r in rows:
        values: list[Any] = []
        for value, kind in zip(r, types, strict=True):
            if value is not None and kind == "timestamptz":
                values.append(datetime_from_ns(value))
            elif value is not None and kind == "jsonb":
                values.append(json.loads(value))
            else:
                values.append(value)
        out.append(tuple(values))
    return out


def counts(url: str) -> Mapping[str, int]:
    with psycopg.connect(url) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in _TABLES
        }


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    migrate(database_url)
    yield database_url


@pytest.fixture
def writer(url: str) -> Iterator[PostgresWriter]:
    writer = PostgresWriter(url, pool_size=2, pool_timeout=2.0)
    yield writer
    writer.close()


# --- round trips ---------------------------------------------------------------------

FULL_SPAN = span(
    project_id="proj-a",
    start_time_unix_nano=T,
    end_time_unix_nano=T + 1_500,
    duration_ns=1_500,
    parent_span_id=b"\xff" * 8,
    trace_state="vendor=1",
    flags=4_294_967_295,
    service_name="checkout",
    session_id="sess-1",
    user_id="user-1",
    name="GET /items/{id}",
    kind=2,
    status_code=2,
    status_message="boom: ünïcode ✓",
    attributes='{"a": 1, "b": [true, null, "x"], "c": {"d": 1.5}, "big": 1700000000123456790}',
    events='[{"name": "e", "time_unix_nano": 1700000000123456790, "attributes": {}}]',
    links="[]",
    dropped_attributes_count=2_147_483_647,
    dropped_events_count=2,
    dropped_links_count=3,
    resource_id=2**63 - 1,
    scope_name="opentelemetry.instrumentation.flask",
    scope_version="0.45b0",
    scope_attributes='{"s": "t"}',
    scope_schema_url="https://example.com/scope",
)
NULL_SPAN = span(project_id="proj-b")

FULL_LOG = log(
    project_id="p1",
    time=T,
    time_unix_nano=T,
    observed_time_unix_nano=T + 7,
    trace_id=TRACE,
    span_id=SPAN,
    flags=1,
    service_name="checkout",
    session_id="sess-1",
    user_id="user-1",
    severity_number=17,
    severity_text="ERROR",
    body='{"msg": "failed", "n": [1, 2.5]}',
    attributes='{"exception.type": "ValueError"}',
    event_name="checkout.failed",
    dropped_attributes_count=4,
    resource_id=7,
    scope_name="logger",
    scope_version="1",
    scope_attributes="{}",
    scope_schema_url="https://example.com/scope",
)
STRING_BODY_LOG = log(project_id="p2", time=T + 1, body='"just a string"', time_unix_nano=0)
NULL_LOG = log(project_id="p3", time=T + 2)

GAUGE = row(
    "metric_points",
    project_id="p1",
    time=T,
    time_unix_nano=T,
    start_time_unix_nano=T - 10**9,
    series_id=1,
    service_name="checkout",
    trace_id=TRACE,
    span_id=SPAN,
    session_id="sess-1",
    user_id="user-1",
    flags=1,
    value=-12.5,
    value_int=-9_007_199_254_740_993,
    exemplars='[{"value": 1.5, "trace_id": "000102030405060708090a0b0c0d0e0f"}]',
)
HISTOGRAM = row(
    "metric_points",
    project_id="p2",
    time=T,
    series_id=2,
    count=10,
    sum=12.25,
    min=0.5,
    max=float("inf"),
    bucket_counts=[1, 0, 9],
    explicit_bounds=[0.5, 1.0],
)
EXPONENTIAL = row(
    "metric_points",
    project_id="p3",
    time=T,
    series_id=3,
    count=7,
    scale=-3,
    zero_count=1,
    zero_threshold=1e-9,
    positive_offset=-2,
    positive_bucket_counts=[1, 2, 3],
    negative_offset=5,
    negative_bucket_counts=[],
)
SUMMARY = row(
    "metric_points",
    project_id="p4",
    time=T,
    series_id=4,
    count=3,
    sum=6.0,
    quantiles="[[0.5, 2.0], [0.99, 3.0]]",
)

FULL_SERIES = series(
    1,
    metric_name="http.server.duration",
    metric_type=model.MetricType.HISTOGRAM,
    unit="ms",
    description="Duration of inbound HTTP requests",
    aggregation_temporality=2,
    is_monotonic=True,
    service_name="checkout",
    attributes='{"http.route": "/items/{id}"}',
    resource='{"service.name": "checkout"}',
    scope_name="flask",
    scope_version="1",
    metadata='{"m": 1}',
)
NULL_SERIES = series(2, project_id="p2")

FULL_RESOURCE = resource(
    2**63 - 1,
    attributes='{"host.name": "web-1", "service.name": "checkout"}',
    schema_url="https://opentelemetry.io/schemas/1.21.0",
    dropped_attributes_count=2_147_483_647,
)
NULL_RESOURCE = resource(0, project_id="p2")


def test_spans_round_trip_every_column(url: str, writer: PostgresWriter) -> None:
    stats = writer.write([RowBatch(spans=[FULL_SPAN, NULL_SPAN])])
    assert (stats.spans, stats.logs, stats.points) == (2, 0, 0)
    assert stats.copy_seconds > 0 and stats.commit_seconds > 0
    assert stored(url, "spans") == expected("spans", [FULL_SPAN, NULL_SPAN])


def test_logs_round_trip_every_column(url: str, writer: PostgresWriter) -> None:
    writer.write([RowBatch(logs=[FULL_LOG, STRING_BODY_LOG, NULL_LOG])])
    assert stored(url, "logs") == expected("logs", [FULL_LOG, STRING_BODY_LOG, NULL_LOG])


def test_points_of_every_kind_round_trip(url: str, writer: PostgresWriter) -> None:
    points = [GAUGE, HISTOGRAM, EXPONENTIAL, SUMMARY]
    stats = writer.write([RowBatch(points=points)])
    assert stats.points == 4
    assert stored(url, "metric_points") == expected("metric_points", points)


def test_time_is_truncated_to_microseconds_and_nanoseconds_kept(
    url: str, writer: PostgresWriter
) -> None:
    writer.write([RowBatch(spans=[FULL_SPAN])])
    with psycopg.connect(url) as conn:
        got = conn.execute(
            "SELECT (extract(epoch FROM time) * 1000000)::bigint, start_time_unix_nano FROM spans"
        ).fetchone()
    assert got == (T // 1000, T)


def test_series_round_trip_including_all_null_columns(url: str, writer: PostgresWriter) -> None:
    assert writer.write([RowBatch(series={("p1", 1): FULL_SERIES})]).series == 1
    # Alone in its write, so every optional column's parameter array is all NULL.
    assert writer.write([RowBatch(series={("p2", 2): NULL_SERIES})]).series == 1
    got = stored(url, "metric_series", "project_id")
    assert got == expected("metric_series", [FULL_SERIES, NULL_SERIES])


def test_resources_round_trip_including_all_null_columns(url: str, writer: PostgresWriter) -> None:
    assert writer.write([RowBatch(resources={("p1", 2**63 - 1): FULL_RESOURCE})]).resources == 1
    assert writer.write([RowBatch(resources={("p2", 0): NULL_RESOURCE})]).resources == 1
    got = stored(url, "resources", "project_id")
    assert got == expected("resources", [FULL_RESOURCE, NULL_RESOURCE])


def test_sessions_round_trip(url: str, writer: PostgresWriter) -> None:
    sightings = {
        ("p1", "s1"): SessionSighting("u1", "checkout", T, T + 5),
        ("p1", "s2"): SessionSighting(None, None, T + 1, T + 1),
    }
    assert writer.write([RowBatch(sessions=sightings)]).sessions == 2
    assert stored(url, "sessions", "session_id") == expected(
        "sessions",
        [("p1", "s1", "u1", "checkout", T, T + 5), ("p1", "s2", None, None, T + 1, T + 1)],
    )


# --- partitions and transactions -------------------------------------------------------


def test_partitions_are_created_for_several_hours_and_late_data(
    url: str, writer: PostgresWriter
) -> None:
    now = time.time_ns()
    times = [now, now + HOUR, now + 2 * HOUR, now - 72 * HOUR]  # the last one is late
    writer.write([RowBatch(spans=[span(time=t) for t in times])])
    writer.write([RowBatch(logs=[log(time=now - 72 * HOUR)])])
    names = [
        writer.partitions.partition_name("spans", writer.partitions.bucket_start(t)) for t in times
    ]
    with psycopg.connect(url) as conn:
        placed = conn.execute("SELECT tableoid::regclass::text FROM spans ORDER BY time").fetchall()
        logs = conn.execute("SELECT tableoid::regclass::text FROM logs").fetchall()
    assert [p for (p,) in placed] == [names[3], names[0], names[1], names[2]]
    assert logs == [(names[3].replace("spans", "logs"),)]


def test_several_batches_are_one_transaction(url: str, writer: PostgresWriter) -> None:
    batches = [
        RowBatch(spans=[FULL_SPAN], logs=[FULL_LOG]),
        RowBatch(points=[GAUGE], series={("p1", 1): FULL_SERIES}),
        RowBatch(spans=[NULL_SPAN], sessions={("p1", "s"): SessionSighting(None, None, T, T)}),
        RowBatch(resources={("p1", 1): resource(1)}),
    ]
    stats = writer.write(batches)
    assert (stats.spans, stats.logs, stats.points) == (2, 1, 1)
    assert (stats.series, stats.resources, stats.sessions) == (1, 1, 1)
    with psycopg.connect(url) as conn:
        xids = conn.execute(
            "SELECT DISTINCT xmin::text FROM ("
            " SELECT xmin FROM spans UNION ALL SELECT xmin FROM logs"
            " UNION ALL SELECT xmin FROM metric_points UNION ALL SELECT xmin FROM metric_series"
            " UNION ALL SELECT xmin FROM resources UNION ALL SELECT xmin FROM sessions"
            ") AS all_rows"
        ).fetchall()
    # Every row of every batch was written by one transaction: one xid, six tables.
    assert len(xids) == 1
    assert sum(counts(url).values()) == 7


def test_a_failed_commit_keeps_no_batch_of_the_group(url: str, writer: PostgresWriter) -> None:
    # A deferred trigger refuses the last batch's log row at COMMIT, after every COPY of
    # the group succeeded: if the batches were committed one by one, the first would stay.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF NEW.project_id = 'refused' THEN"
            "   RAISE EXCEPTION 'refused at commit' USING ERRCODE = '40001'; END IF;"
            " RETURN NULL; END $$;"
            " CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON logs"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
        )
    batches = [
        RowBatch(spans=[FULL_SPAN]),
        RowBatch(points=[GAUGE], series={("p1", 1): FULL_SERIES}),
        RowBatch(logs=[log(project_id="refused")]),
    ]
    with pytest.raises(StorageUnavailable):
        writer.write(batches)
    assert sum(counts(url).values()) == 0
    writer.write(batches[:2])  # nothing was learned from the rolled-back write
    assert counts(url)["spans"] == 1 and counts(url)["metric_series"] == 1


# --- errors ----------------------------------------------------------------------------

BAD_BATCHES = {
    "jsonb that is not JSON": RowBatch(spans=[span(attributes='{"a": ')]),
    "NUL byte in text": RowBatch(spans=[span(name="a\x00b")]),
    "NUL escape in jsonb": RowBatch(logs=[log(body='"\\u0000"')]),
    "smallint out of range": RowBatch(spans=[span(kind=70_000)]),
    "integer out of range": RowBatch(spans=[span(dropped_attributes_count=2**31)]),
    "bigint out of range": RowBatch(spans=[span(flags=2**63)]),
    "wrong Python type": RowBatch(spans=[span(trace_id="not bytes")]),
    "jsonb given a non-str": RowBatch(spans=[span(attributes={"a": 1})]),
    "NOT NULL violated": RowBatch(spans=[span(name=None)]),
    "time missing": RowBatch(spans=[span(time=None)]),
    "resource_id missing": RowBatch(logs=[log(resource_id=None)]),
    "bad series jsonb": RowBatch(series={("p1", 9): series(9, attributes="nope")}),
    "bad resource jsonb": RowBatch(resources={("p1", 9): resource(9, attributes="nope")}),
    "resource without attributes": RowBatch(resources={("p1", 9): resource(9, attributes=None)}),
    "resource first_seen not a time": RowBatch(resources={("p1", 9): resource(9, first_seen="x")}),
    "NUL in a session id": RowBatch(sessions={("p1", "a\x00"): SessionSighting(None, None, T, T)}),
    "lone surrogate": RowBatch(spans=[span(service_name="\ud800")]),
}


@pytest.mark.parametrize("bad", list(BAD_BATCHES.values()), ids=list(BAD_BATCHES))
def test_bad_data_stores_nothing_and_the_writer_goes_on(
    url: str, writer: PostgresWriter, bad: RowBatch
) -> None:
    good = RowBatch(
        spans=[FULL_SPAN],
        logs=[FULL_LOG],
        points=[GAUGE],
        series={("p1", 1): FULL_SERIES},
        resources={("p1", 1): resource(1)},
        sessions={("p1", "sess-1"): SessionSighting("u1", None, T, T)},
    )
    with pytest.raises(StorageDataError):
        writer.write([good, bad])
    assert set(counts(url).values()) == {0}
    # Nothing learned from the failed write: series and resource are inserted by the next one.
    assert (len(writer.series.cache), len(writer.resources.cache)) == (0, 0)
    for _ in range(2):  # the connections of the pool are healthy
        writer.write([good])
    assert counts(url) == {
        "spans": 2,
        "logs": 2,
        "metric_points": 2,
        "metric_series": 1,
        "resources": 1,
        "sessions": 1,
    }


def _set_connections(url: str, allowed: bool) -> None:
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def test_unreachable_database_is_unavailable_then_the_writer_recovers(url: str) -> None:
    writer = PostgresWriter(url, pool_size=1, pool_timeout=1.0)
    try:
        writer.write([RowBatch(spans=[span()])])
        _set_connections(url, allowed=False)
        try:
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                writer.write([RowBatch(spans=[span()])])
            # A row in an hour without a partition needs a connection of its own.
            with pytest.raises(StorageUnavailable):
                writer.write([RowBatch(spans=[span(time=T + 5 * HOUR)])])
            assert time.monotonic() - started < 10
        finally:
            _set_connections(url, allowed=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                writer.write([RowBatch(spans=[span(time=T + 5 * HOUR)])])
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline, "the writer did not recover"
                time.sleep(0.2)
    finally:
        writer.close()
    assert counts(url)["spans"] == 2


def test_a_closed_writer_is_unavailable(url: str) -> None:
    writer = PostgresWriter(url)
    writer.close()
    with pytest.raises(StorageUnavailable):
        writer.write([RowBatch(spans=[span()])])


# --- series, resources and sessions ----------------------------------------------------


def test_series_are_stored_once(url: str, writer: PostgresWriter) -> None:
    key = ("p1", 1)
    later = series(1, first_seen=T + 10)
    first = writer.write([RowBatch(series={key: later}), RowBatch(series={key: FULL_SERIES})])
    assert first.series == 1
    assert writer.write([RowBatch(series={key: FULL_SERIES})]).series == 0  # cached
    # Another replica, whose cache is cold: the database keeps the first row (its
    # write only moves the row's times, for pruning).
    other = PostgresWriter(url, pool_size=1)
    try:
        assert other.write([RowBatch(series={key: later})]).series == 1
    finally:
        other.close()
    assert stored(url, "metric_series") == expected("metric_series", [FULL_SERIES])


def test_resources_are_stored_once_per_project(url: str, writer: PostgresWriter) -> None:
    """The same resource id in two projects is two rows; twice in one project, one row."""
    later = resource(5, first_seen=T + 10)
    first = writer.write(
        [
            RowBatch(resources={("p1", 5): later, ("p2", 5): resource(5, project_id="p2")}),
            RowBatch(resources={("p1", 5): resource(5)}),
        ]
    )
    assert first.resources == 2
    assert writer.write([RowBatch(resources={("p1", 5): later})]).resources == 0  # cached
    other = PostgresWriter(url, pool_size=1)  # a replica with a cold cache
    try:
        assert other.write([RowBatch(resources={("p2", 5): later})]).resources == 1  # touched
    finally:
        other.close()
    got = stored(url, "resources", "project_id")
    assert got == expected("resources", [resource(5), resource(5, project_id="p2")])


def test_a_resource_is_learned_only_after_its_write_committed(url: str) -> None:
    """A write that fails at COMMIT (after the INSERT succeeded) must leave the key
    unknown, or the next write would skip a resource that is not stored."""
    writer = PostgresWriter(url, pool_size=1)
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'P0001'; END $$"
        )
        conn.execute(
            "CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON spans"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit()"
        )
    batch = RowBatch(spans=[span(resource_id=3)], resources={("p1", 3): resource(3)})
    try:
        with pytest.raises(StorageDataError):
            writer.write([batch])
        assert len(writer.resources.cache) == 0
        with psycopg.connect(url) as conn:
            conn.execute("DROP TRIGGER fail_at_commit ON spans")
        assert writer.write([batch]).resources == 1
        assert len(writer.resources.cache) == 1
    finally:
        writer.close()
    assert counts(url)["resources"] == 1


def test_the_key_cache_is_bounded() -> None:
    cache = w.KeyCache(max_size=2)
    cache.learn([("p", 1), ("p", 2)], T, 0.0)
    assert cache.unknown({("p", 1): (), ("p", 3): ()}, T, 1.0) == {("p", 3): ()}  # 1 is recent
    cache.learn([("p", 3)], T, 1.0)
    assert len(cache) == 2
    assert set(cache.unknown({("p", i): () for i in (1, 2, 3)}, T, 2.0)) == {("p", 2)}


def test_a_cached_key_vouches_for_a_touch_interval_of_time_and_of_records() -> None:
    """What pruning relies on (storage.postgres.prune, W2): past either bound, the row is
    written again. Keys expire up to an eighth early, each at its own time."""
    second = 10**9
    cache = w.KeyCache(max_size=1000, ttl=100.0)
    keys = {("p", i): () for i in range(200)}
    cache.learn(keys, T, 0.0)
    assert cache.unknown(keys, T + 87 * second, 87.0) == {}
    assert cache.unknown(keys, T, 100.0) == keys  # a touch interval later
    assert cache.unknown(keys, T + 100 * second + 1, 1.0) == keys  # records more than that newer
    early = cache.unknown(keys, T, 95.0)
    assert 0 < len(early) < len(keys)  # spread, not all at once


def test_session_sightings_merge(url: str) -> None:
    key = ("p1", "s1")
    writer = PostgresWriter(url, pool_size=1, session_resolution=0)

    def session() -> tuple[Any, ...]:
        return stored(url, "sessions")[0]

    writer.write(
        [
            RowBatch(sessions={key: SessionSighting(None, "web", T + 10, T + 20)}),
            RowBatch(sessions={key: SessionSighting("alice", "api", T + 5, T + 15)}),
            RowBatch(sessions={key: SessionSighting(None, None, T + 12, T + 12)}),
        ]
    )
    assert session() == expected("sessions", [("p1", "s1", "alice", "web", T + 5, T + 20)])[0]
    writer.write([RowBatch(sessions={key: SessionSighting(None, "api", T + 30, T + 30)})])
    assert session() == expected("sessions", [("p1", "s1", "alice", "web", T + 5, T + 30)])[0]
    writer.write([RowBatch(sessions={key: SessionSighting("bob", None, T + 1, T + 2)})])
    assert session() == expected("sessions", [("p1", "s1", "bob", "web", T + 1, T + 30)])[0]
    writer.close()


def test_a_live_session_is_written_once_per_resolution(url: str) -> None:
    second = 10**9
    writer = PostgresWriter(url, pool_size=1, session_resolution=60)
    key = ("p1", "s1")

    def sighting(at: int, user: str | None = None) -> list[RowBatch]:
        return [RowBatch(sessions={key: SessionSighting(user, "web", T + at, T + at)})]

    def last_seen() -> Any:
        return stored(url, "sessions")[0][5]

    try:
        assert writer.write(sighting(0)).sessions == 1
        assert writer.write(sighting(30 * second)).sessions == 0  # nothing worth a write
        assert last_seen() == expected("sessions", [("p1", "s1", None, "web", T, T)])[0][5]
        assert writer.write(sighting(40 * second, "alice")).sessions == 1  # a user is news
        assert writer.write(sighting(61 * second)).sessions == 0  # 21 s past what was stored
        assert writer.write(sighting(101 * second)).sessions == 1  # 61 s past
        assert stored(url, "sessions")[0][2] == "alice"
        assert (
            last_seen()
            == expected("sessions", [("p1", "s1", None, None, T, T + 101 * second)])[0][5]
        )
        # A changed user waits for the resolution too (users may churn within a session).
        assert writer.write(sighting(102 * second, "bob")).sessions == 0
        assert stored(url, "sessions")[0][2] == "alice"
        # A write that did not commit teaches the ledger nothing.
        seen = SessionSighting("bob", "web", T + 170 * second, T + 170 * second)
        bad = RowBatch(spans=[span(name=None)], sessions={key: seen})
        with pytest.raises(StorageDataError):
            writer.write([bad])
        assert writer.write(sighting(171 * second, "bob")).sessions == 1
        assert stored(url, "sessions")[0][2] == "bob"
    finally:
        writer.close()


def test_concurrent_writers_of_the_same_series_and_sessions(url: str) -> None:
    """Shuffled keys from four threads on two writers: no deadlock, no duplicate."""
    writers = [PostgresWriter(url, pool_size=2) for _ in range(2)]
    errors: list[BaseException] = []

    def run(seed: int) -> None:
        rnd = random.Random(seed)
        keys = list(range(40))
        try:
            for _ in range(5):
                rnd.shuffle(keys)
                writers[seed % 2].write(
                    [
                        RowBatch(
                            spans=[span()],
                            series={("p1", k): series(k) for k in keys},
                            resources={("p1", k): resource(k) for k in keys},
                            sessions={
                                ("p1", f"s{k}"): SessionSighting(None, None, T + k, T + seed)
                                for k in keys
                            },
                        )
                    ]
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for writer in writers:
        writer.close()
    assert errors == []
    assert counts(url) == {
        "spans": 20,
        "logs": 0,
        "metric_points": 0,
        "metric_series": 40,
        "resources": 40,
        "sessions": 40,
    }


def test_the_writer_uses_the_given_partition_manager(url: str) -> None:
    partitions = PartitionManager(url, interval_seconds=900)
    writer = PostgresWriter(url, partitions)
    try:
        writer.write([RowBatch(spans=[span()])])
    finally:
        writer.close()
    assert partitions.known_buckets("spans") == {partitions.bucket_start(T)}


def test_a_partition_dropped_behind_the_writers_back_is_made_again(
    url: str, writer: PostgresWriter
) -> None:
    writer.write([RowBatch(spans=[span()], logs=[log()])])
    name = writer.partitions.partition_name("spans", writer.partitions.bucket_start(T))
    with psycopg.connect(url) as conn:
        conn.execute(f"DROP TABLE {name}")
    stats = writer.write([RowBatch(spans=[span()], logs=[log()])])
    assert (stats.spans, stats.logs) == (1, 1)
    assert counts(url)["spans"] == 1
    assert counts(url)["logs"] == 2


def test_an_empty_write_touches_nothing() -> None:
    writer = PostgresWriter("postgresql://postgres@127.0.0.1:1/nowhere", pool_timeout=0.1)
    try:
        assert writer.write([RowBatch(), RowBatch()]).spans == 0
    finally:
        writer.close()


def test_a_pooled_connection_lost_meanwhile_costs_no_write(url: str) -> None:
    """A restart or failover closes the pool's connections; the next write must not fail
    for it (it would make every client retry and the store look down)."""
    writer = PostgresWriter(url, pool_size=1)
    try:
        writer.write([RowBatch(spans=[FULL_SPAN])])
        assert terminate_backends(url, "otlpd-writer") == 1
        assert writer.write([RowBatch(spans=[NULL_SPAN])]).spans == 1
        assert counts(url)["spans"] == 2
    finally:
        writer.close()


# --- the query side's catalog and live-tail notice ----------------------------------------


def _catalog(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        services = conn.execute(
            "SELECT project_id, service_name FROM services ORDER BY 1, 2"
        ).fetchall()
        operations = conn.execute(
            "SELECT project_id, service_name, span_name, span_kind FROM operations ORDER BY 1, 2, 3"
        ).fetchall()
    return services, operations


def test_services_and_operations_are_catalogued_from_every_signal(url: str) -> None:
    writer = PostgresWriter(url, pool_size=1)
    try:
        writer.write(
            [
                RowBatch(
                    spans=[
                        span(service_name="api", name="GET /", kind=2),
                        span(service_name="api", name="GET /", kind=2),
                        span(service_name=None, name="orphan", kind=None),
                    ],
                    logs=[log(project_id="p2", service_name="worker")],
                    points=[
                        row(
                            "metric_points",
                            project_id="p3",
                            time=T,
                            series_id=1,
                            service_name="db",
                        )
                    ],
                )
            ]
        )
        services, operations = _catalog(url)
        assert services == [("p1", "api"), ("p2", "worker"), ("p3", "db")]
        assert operations == [("p1", "", "orphan", 0), ("p1", "api", "GET /", 2)]
    finally:
        writer.close()


def test_a_catalog_entry_is_rewritten_only_after_the_resolution(url: str) -> None:
    writer = PostgresWriter(url, pool_size=1, catalog_resolution=3600)
    try:
        writer.write([RowBatch(spans=[span(service_name="api")])])
        first = stored_last_seen(url)
        writer.write([RowBatch(spans=[span(service_name="api")])])
        assert stored_last_seen(url) == first  # known and fresh: not written again
        # A failed write teaches the catalog nothing: the entry is written next time.
        with pytest.raises(StorageDataError):
            writer.write([RowBatch(spans=[span(service_name="new", name=None)])])
        writer.write([RowBatch(spans=[span(service_name="new")])])
        assert ("p1", "new") in _catalog(url)[0]
    finally:
        writer.close()


def stored_last_seen(url: str) -> Any:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT last_seen FROM services").fetchone()


def test_a_commit_with_logs_notifies_listeners_of_its_rows(url: str) -> None:
    writer = PostgresWriter(url, pool_size=1)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {w.LOGS_CHANNEL}")
        try:
            writer.write([RowBatch(spans=[span()])])  # no logs: no notice
            writer.write(
                [
                    RowBatch(
                        logs=[log(project_id="a", time=T), log(project_id="a", time=T + 5000)]
                    ),
                    RowBatch(logs=[log(project_id="b", time=T + 2000)]),
                ]
            )
        finally:
            writer.close()
        notices = list(listener.notifies(timeout=1.0, stop_after=2))
        assert len(notices) == 1, notices
        payload = json.loads(notices[0].payload)
        assert payload["p"] == {
            "a": [T // 1000, (T + 5000) // 1000 + 1, 2],
            "b": [(T + 2000) // 1000, (T + 2000) // 1000 + 1, 1],
        }
        # "x" is the xmin of the rows: a reader finds exactly them with it.
        rows = listener.execute(
            "SELECT count(*) FROM logs WHERE xmin = %s::text::xid", (str(payload["x"]),)
        ).fetchone()
        assert rows == (3,)


def test_points_mark_the_minutes_the_metric_rollups_must_recompute() -> None:
    """A batch of one project marks the minutes from its first point to its last; a
    batch of several projects, or spread over more than ten minutes, each point's own."""
    from storage.postgres.writer import _point_minutes

    minute = 60 * 10**9
    t0 = 29_000_000 * minute

    def point(project: str, at: int) -> tuple[object, ...]:
        return (project, at, *([None] * 26))

    one = [point("a", t0 + 5), point("a", t0 + 2 * minute + 1), point("a", t0 + minute)]
    assert _point_minutes([one]) == {("a", 29_000_000), ("a", 29_000_001), ("a", 29_000_002)}
    mixed = [point("a", t0), point("b", t0 + 3 * minute)]
    assert _point_minutes([mixed]) == {("a", 29_000_000), ("b", 29_000_003)}
    spread = [point("a", t0), point("a", t0 + 600 * minute)]
    assert _point_minutes([spread, one[:1]]) == {("a", 29_000_000), ("a", 29_000_600)}
    assert _point_minutes([]) == set()
