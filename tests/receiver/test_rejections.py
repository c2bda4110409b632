"""The partial-success summary of refused records."""

from __future__ import annotations

from otlpd.receiver.rejections import MAX_MESSAGE, RecordRejected, Rejections


def test_nothing_to_say() -> None:
    rejections = Rejections("span", "spans")
    assert (rejections.count, rejections.message()) == (0, "")


def test_counts_per_reason_and_first_examples() -> None:
    rejections = Rejections("span", "spans")
    for k in range(7):
        rejections.add(RecordRejected("invalid trace_id", f"detail {k}"), f"span {k}")
    rejections.add(RecordRejected("end before start"), "resource 1", 3)
    assert rejections.count == 10
    assert rejections.message() == (
        "10 spans rejected (invalid trace_id: 7, end before start: 3): detail 0 (span 0); "
        "detail 1 (span 1); detail 2 (span 2); detail 3 (span 3); detail 4 (span 4)"
    )


def test_singular_warnings_and_zero_counts() -> None:
    rejections = Rejections("data point", "data points")
    rejections.add(RecordRejected("bad"), "metric 0")
    rejections.add(RecordRejected("invalid UTF-8", "no points"), "metric 1", 0)
    rejections.warn("metric 2 has no data")
    assert rejections.count == 1
    assert rejections.message() == (
        "1 data point rejected (bad: 1): bad (metric 0); "
        "warning: no points (metric 1); metric 2 has no data"
    )


def test_message_is_capped() -> None:
    rejections = Rejections("span", "spans")
    for k in range(5):
        rejections.add(RecordRejected(f"reason {k}", "x" * 400), "here")
    message = rejections.message()
    assert len(message) == MAX_MESSAGE
    assert message.endswith("…")
