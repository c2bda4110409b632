"""The files' own bloom filters, probed by storage.parquet_bloom, answer as DuckDB's
parquet_bloom_probe does on the same file, and never miss a value that is there."""

from __future__ import annotations

import os
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from storage import parquet, parquet_bloom


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes], list[str]]:
    """A file of 12 row groups as otlpd writes its blooms: trace ids and session ids."""
    rng = random.Random(3)
    traces = [rng.randbytes(16) for _ in range(4000)]
    sessions = [f"sess-{i}" for i in range(500)]
    rows = 12 * 1000
    table = pa.table(
        {
            "trace_id": pa.array([rng.choice(traces) for _ in range(rows)], pa.binary(16)),
            "session_id": pa.array(
                [rng.choice(sessions) if rng.random() < 0.7 else None for _ in range(rows)]
            ),
        }
    )
    path = tmp_path_factory.mktemp("bloom") / "spans.parquet"
    pq.write_table(
        table,
        path,
        row_group_size=1000,
        bloom_filter_options={
            name: {"ndv": 1000, "fpp": parquet.BLOOM_FPP} for name in ("trace_id", "session_id")
        },
    )
    return path, traces, sessions


def _ours(path: Path, column: str, value: bytes) -> list[int]:
    data = path.read_bytes()
    metadata = pq.read_metadata(path)
    return parquet_bloom.row_groups_holding(
        metadata, column, [value], lambda at, n: data[at : at + n]
    )


def _duckdb(path: Path, column: str, value: bytes | str) -> list[int]:
    with duckdb.connect() as conn:
        rows = conn.execute(
            f"SELECT row_group_id FROM parquet_bloom_probe(?, '{column}', ?) "
            "WHERE NOT bloom_filter_excludes ORDER BY 1",
            [str(path), value],
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_the_probe_agrees_with_duckdb_and_finds_every_value(
    written: tuple[Path, list[bytes], list[str]],
) -> None:
    path, traces, sessions = written
    table = pq.read_table(path)
    for trace in [*traces[:60], *(os.urandom(16) for _ in range(20))]:
        ours = _ours(path, "trace_id", trace)
        assert ours == _duckdb(path, "trace_id", trace)
        for g in range(12):  # every row group that holds it is found
            chunk = table.slice(g * 1000, 1000).column("trace_id").to_pylist()
            if trace in chunk:
                assert g in ours
    for session in [*sessions[:40], "no-such-session"]:
        assert _ours(path, "session_id", session.encode()) == _duckdb(path, "session_id", session)


def test_a_column_without_filters_holds_everything(
    written: tuple[Path, list[bytes], list[str]], tmp_path: Path
) -> None:
    plain = tmp_path / "plain.parquet"
    pq.write_table(pq.read_table(written[0]), plain, row_group_size=3000)
    assert _ours(plain, "trace_id", b"x" * 16) == [0, 1, 2, 3]
