"""query.samples: the wire bytes written with numpy are the bytes the protobuf runtime
writes for the same samples, field for field."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from query.convert import set_timestamp
from query.proto import pb
from query.samples import add_samples, samples_wire

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _by_the_runtime(times: list[int], values: list[float]) -> pb.Series:
    series = pb.Series()
    for t, v in zip(times, values, strict=True):
        set_timestamp(series.samples.add(value=v).time, t)
    return series


def _by_numpy(times: list[int], values: list[float]) -> pb.Series:
    series = pb.Series()
    add_samples(series, np.array(times, dtype=np.int64), np.array(values, dtype=np.float64))
    return series


def test_edges_of_every_field() -> None:
    """Zero seconds, nanos and value are left out; negative times, 10-byte varints,
    infinities and -0.0 are kept."""
    times = [0, 1, -1, 10**9, -(10**9), -1_500_000_001, 1_700_000_000_123_456_789, 2**62]
    times += [-(2**63), 2**63 - 1, 999_999_999, 127 * 10**9, 128 * 10**9]
    values = [0.0, -0.0, 1.5, float("inf"), float("-inf"), 1e-300, -2.0, 0.0, 3.0]
    values += [5e300, 0.0, 127.0, 2.0**-1074]
    expected = _by_the_runtime(times, values)
    wire = samples_wire(np.array(times, dtype=np.int64), np.array(values))
    assert wire == expected.SerializeToString()
    assert _by_numpy(times, values).SerializeToString() == expected.SerializeToString()
    assert _by_numpy(times, values) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(INT64, st.floats(allow_nan=True)), max_size=40))
def test_any_samples(samples: list[tuple[int, float]]) -> None:
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    expected = _by_the_runtime(times, values).SerializeToString()
    # The bytes themselves, before protobuf parses (and so normalizes) them.
    assert samples_wire(np.array(times, dtype=np.int64), np.array(values)) == expected
    assert _by_numpy(times, values).SerializeToString() == expected


def test_samples_append_after_labels_and_earlier_samples() -> None:
    """MergeFromString appends to a repeated field: labels and samples already set stay."""
    series = pb.Series(labels={"service": "checkout"})
    add_samples(series, np.array([60 * 10**9]), np.array([1.0]))
    add_samples(series, np.array([120 * 10**9, 180 * 10**9]), np.array([2.0, 3.0]))
    add_samples(series, np.array([], dtype=np.int64), np.array([]))
    assert dict(series.labels) == {"service": "checkout"}
    assert [(s.time.seconds, s.value) for s in series.samples] == [
        (60, 1.0),
        (120, 2.0),
        (180, 3.0),
    ]


def test_the_empty_list_is_no_bytes() -> None:
    assert samples_wire(np.array([], dtype=np.int64), np.array([])) == b""
