"""What every query request shares is validated once, naming the field."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from otlpd.errors import BadArgument
from query import arguments
from query.arguments import TimeRange
from query.proto import pb

HOUR = arguments.HOUR_NS


def test_limit_defaults_refuses_negative_and_huge() -> None:
    assert arguments.limit(0, default=20, maximum=100) == 20
    assert arguments.limit(7, default=20, maximum=100) == 7
    with pytest.raises(BadArgument, match="limit: must be >= 0"):
        arguments.limit(-1, default=20, maximum=100)
    with pytest.raises(BadArgument, match="limit: must be at most 100"):
        arguments.limit(2**31 - 1, default=20, maximum=100)


def test_time_range_defaults_to_the_last_hour_and_refuses_end_before_start() -> None:
    now = 1_800_000_000 * 10**9
    window = arguments.time_range(pb.SearchLogsRequest(), now_ns=now)
    assert window == TimeRange(now + 1 - HOUR, now + 1)
    assert arguments.time_range(pb.SearchLogsRequest(), unbounded_start=True, now_ns=now) == (
        TimeRange(0, now + 1)
    )
    backwards = pb.SearchLogsRequest(
        start_time=timestamp_pb2.Timestamp(seconds=200),
        end_time=timestamp_pb2.Timestamp(seconds=100),
    )
    with pytest.raises(BadArgument, match="end_time: must be after start_time"):
        arguments.time_range(backwards)
    with pytest.raises(BadArgument, match="start_time"):
        arguments.time_range(pb.SearchLogsRequest(start_time=timestamp_pb2.Timestamp(seconds=-5)))


def test_step_is_rounded_when_absent_and_refused_when_negative_zero_or_too_fine() -> None:
    day = TimeRange(0, 24 * HOUR)
    assert arguments.step_ns(None, day) == 1800 * 10**9  # 48 buckets, the round step above 24 min
    assert arguments.step_ns(None, TimeRange(0, HOUR)) == 60 * 10**9
    assert arguments.step_ns(duration_pb2.Duration(seconds=60), day) == 60 * 10**9
    with pytest.raises(BadArgument, match="step: must not be negative"):
        arguments.step_ns(duration_pb2.Duration(seconds=-60), day)
    with pytest.raises(BadArgument, match="step: must be > 0"):
        arguments.step_ns(duration_pb2.Duration(), day)
    with pytest.raises(BadArgument, match="more than 11000 buckets"):
        arguments.step_ns(duration_pb2.Duration(seconds=1), day)


def test_ids_text_and_attribute_filters() -> None:
    assert arguments.trace_id(bytes(16)) == bytes(16)
    with pytest.raises(BadArgument, match="trace_id: must be 16 bytes, got 15"):
        arguments.trace_id(bytes(15))
    with pytest.raises(BadArgument, match=r"filter\.span_id: must be 8 bytes"):
        arguments.span_id(b"x", "filter.span_id")
    assert arguments.text("it's 100% _fine_ \\", "q") == "it's 100% _fine_ \\"
    with pytest.raises(BadArgument, match="q: must be at most 1000 characters, got 1001"):
        arguments.text("x" * 1001, "q")
    with pytest.raises(BadArgument, match="q: contains a NUL"):
        arguments.text("a\x00b", "q")
    pairs = arguments.attribute_filters([pb.AttributeFilter(key="k", value="v")])
    assert list(pairs) == [("k", "v")]
    with pytest.raises(BadArgument, match=r"attributes\[0\].key: must not be empty"):
        arguments.attribute_filters([pb.AttributeFilter(value="v")])
