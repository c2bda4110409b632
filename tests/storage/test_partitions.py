"""Time partitions: names, bounds, creation on demand and ahead, by many threads at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from storage.postgres.migrate import migrate
from storage.postgres.partitions import (
    PARTITIONED_TABLES,
    PartitionManager,
    datetime_from_ns,
    ns_from_datetime,
)

HOUR_NS = 3600 * 10**9
T0 = ns_from_datetime(datetime(2024, 3, 1, 10, 0, tzinfo=UTC))


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    migrate(database_url)
    yield database_url


def _partitions(url: str, table: str) -> dict[str, tuple[datetime, datetime]]:
    """Each partition of ``table`` with its bounds, read from the catalog."""
    with psycopg.connect(url) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        rows = conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (table,),
        ).fetchall()
    out = {}
    for name, bound in rows:
        low, high = str(bound).split("'")[1::2]
        out[str(name)] = (datetime.fromisoformat(low), datetime.fromisoformat(high))
    return out


def test_buckets_and_names_are_aligned_to_the_epoch(url: str) -> None:
    manager = PartitionManager(url)
    assert manager.bucket_start(T0 + 59 * 60 * 10**9 + 999) == T0
    assert manager.bucket_start(T0 - 1) == T0 - HOUR_NS
    assert manager.partition_name("spans", T0) == "spans_p20240301t1000"
    quarter = PartitionManager(url, interval_seconds=900)
    assert quarter.partition_name("logs", quarter.bucket_start(T0 + 20 * 60 * 10**9)) == (
        "logs_p20240301t1015"
    )
    assert datetime_from_ns(1_700_000_000_123_456_789) == datetime(
        2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC
    )


@pytest.mark.parametrize("seconds", [0, -60, 90])
def test_interval_must_be_a_positive_multiple_of_a_minute(seconds: int) -> None:
    with pytest.raises(ValueError, match="interval_seconds"):
        PartitionManager("postgresql://unused", interval_seconds=seconds)


def test_ensure_creates_missing_partitions_with_exact_bounds(url: str) -> None:
    manager = PartitionManager(url)
    starts = [T0, T0 + HOUR_NS, T0 + 2 * HOUR_NS]
    created = manager.ensure("spans", [*starts, T0])
    assert created == ["spans_p20240301t1000", "spans_p20240301t1100", "spans_p20240301t1200"]
    assert manager.ensure("spans", starts) == []
    assert _partitions(url, "spans") == {
        name: (datetime_from_ns(start), datetime_from_ns(start + HOUR_NS))
        for name, start in zip(created, starts, strict=True)
    }
    assert _partitions(url, "logs") == {}


def test_late_and_early_buckets_are_created_on_demand(url: str) -> None:
    manager = PartitionManager(url)
    late = T0 - 48 * HOUR_NS
    early = T0 + 24 * HOUR_NS
    assert manager.ensure("logs", [late, early]) == ["logs_p20240228t1000", "logs_p20240302t1000"]


def test_rollup_tables_have_partitions_of_their_own_width(url: str) -> None:
    """A day of 1-minute rollups, a week of 1-hour ones, whatever the records' width; a
    restarted manager knows them, and maintain() leaves them to the rollup job."""
    manager = PartitionManager(url, interval_seconds=900)
    day = manager.bucket_start(T0, "metric_rollups_1m")
    week = manager.bucket_start(T0, "metric_rollups_1h")
    assert manager.ensure("metric_rollups_1m", [day]) == ["metric_rollups_1m_p20240301t0000"]
    # Weeks are aligned to the epoch, which began on a Thursday.
    assert manager.ensure("metric_rollups_1h", [week]) == ["metric_rollups_1h_p20240229t0000"]
    assert _partitions(url, "metric_rollups_1h") == {
        "metric_rollups_1h_p20240229t0000": (
            datetime(2024, 2, 29, tzinfo=UTC),
            datetime(2024, 3, 7, tzinfo=UTC),
        )
    }
    with pytest.raises(ValueError, match="bucket of metric_rollups_1m"):
        manager.ensure("metric_rollups_1m", [T0])
    again = PartitionManager(url, interval_seconds=900)
    assert again.ensure("metric_rollups_1m", [day]) == []
    assert again.unknown("metric_rollups_1h", [week, week + 7 * 24 * HOUR_NS]) == [
        week + 7 * 24 * HOUR_NS
    ]
    again.maintain(T0)
    assert len(_partitions(url, "metric_rollups_1m")) == 1


def test_partitions_inherit_the_parents_indexes(url: str) -> None:
    PartitionManager(url).ensure("spans", [T0])
    with psycopg.connect(url) as conn:
        names = {
            str(n)
            for (n,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'spans_p20240301t1000'"
            ).fetchall()
        }
    assert len(names) == 4


def test_a_restarted_manager_knows_what_exists(url: str) -> None:
    first = PartitionManager(url)
    first.maintain(T0, ahead=2)
    second = PartitionManager(url)
    assert second.maintain(T0, ahead=2) == []
    assert second.known_buckets("metric_points") == {T0, T0 + HOUR_NS, T0 + 2 * HOUR_NS}
    # A manager of narrower width counts the buckets an existing partition covers.
    narrow = PartitionManager(url, interval_seconds=900)
    assert narrow.ensure("spans", [T0 + 900 * 10**9]) == []


def test_maintain_creates_the_current_and_next_buckets_of_every_table(url: str) -> None:
    manager = PartitionManager(url)
    created = manager.maintain(T0 + 17 * 60 * 10**9, ahead=1)
    assert sorted(created) == sorted(
        f"{table}_p20240301t{hour}00" for table in PARTITIONED_TABLES for hour in ("10", "11")
    )
    for table in PARTITIONED_TABLES:
        assert len(_partitions(url, table)) == 2


def test_concurrent_creation_from_threads_and_processes(url: str) -> None:
    """Eight threads; the ones with a manager of their own stand in for other processes."""
    shared = PartitionManager(url)
    managers = [shared] * 4 + [PartitionManager(url) for _ in range(4)]
    starts = [T0 + i * HOUR_NS for i in range(6)]
    barrier = threading.Barrier(len(managers))
    created: list[str] = []
    errors: list[BaseException] = []

    def run(manager: PartitionManager, offset: int) -> None:
        barrier.wait()
        try:
            for table in PARTITIONED_TABLES:
                # Each thread asks in its own order, overlapping the others.
                names = manager.ensure(table, starts[offset:] + starts[:offset])
                created.extend(names)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(manager, i % len(starts)))
        for i, manager in enumerate(managers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    expected = {shared.partition_name(t, s) for t in PARTITIONED_TABLES for s in starts}
    assert sorted(created) == sorted(expected)  # each created exactly once
    for table in PARTITIONED_TABLES:
        assert len(_partitions(url, table)) == len(starts)
