"""Conversions the alerting modules share: datetimes to Timestamps, durations to seconds,
messages to and from the JSON documents PostgreSQL keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.message import Message


def set_time(target: timestamp_pb2.Timestamp, moment: datetime | None) -> None:
    """``moment`` into ``target`` (None leaves it unset)."""
    if moment is not None:
        target.FromDatetime(moment.astimezone(UTC))


def set_seconds(target: duration_pb2.Duration, seconds: float) -> None:
    target.FromNanoseconds(round(seconds * 1e9))


def seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def to_datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def document(message: Message) -> dict[str, Any]:
    """``message`` as the JSON document stored (proto field names, defaults left out)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def from_document(stored: dict[str, Any], message: Message) -> Message:
    """A stored document parsed back into ``message`` (unknown fields ignored: a document
    written by a newer server still reads)."""
    json_format.ParseDict(stored, message, ignore_unknown_fields=True)
    return message
