"""The decoder's twins of the OTLP messages: attribute lists as raw KeyValue bytes."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otlpd.receiver import messages


def kv(key: str, text: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=text))


def test_span_fields_are_the_same_and_attributes_are_raw() -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add(schema_url="r")
    rs.resource.attributes.append(kv("service.name", "svc"))
    span = rs.scope_spans.add().spans.add(name="op", kind=2, start_time_unix_nano=5)
    span.attributes.append(kv("a", "b"))
    span.events.add(name="e").attributes.append(kv("c", "d"))
    span.links.add(trace_id=b"t" * 16).attributes.append(kv("l", "m"))
    lazy = messages.TracesRequest.FromString(request.SerializeToString())
    (lazy_rs,) = lazy.resource_spans
    assert lazy_rs.schema_url == "r"
    assert list(lazy_rs.resource.attributes) == [kv("service.name", "svc").SerializeToString()]
    (lazy_span,) = lazy_rs.scope_spans[0].spans
    assert (lazy_span.name, lazy_span.kind, lazy_span.start_time_unix_nano) == ("op", 2, 5)
    assert list(lazy_span.attributes) == [kv("a", "b").SerializeToString()]
    assert list(lazy_span.events[0].attributes) == [kv("c", "d").SerializeToString()]
    assert list(lazy_span.links[0].attributes) == [kv("l", "m").SerializeToString()]


def test_log_body_is_raw_and_metric_attributes_are_raw() -> None:
    logs = ExportLogsServiceRequest()
    record = logs.resource_logs.add().scope_logs.add().log_records.add()
    record.body.string_value = "hello"
    lazy_record = messages.LogsRequest.FromString(logs.SerializeToString())
    body = lazy_record.resource_logs[0].scope_logs[0].log_records[0].body
    assert body == AnyValue(string_value="hello").SerializeToString()

    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="m")
    metric.metadata.append(kv("x", "y"))
    point = metric.histogram.data_points.add(sum=1.5)
    point.attributes.append(kv("a", "b"))
    point.exemplars.add().filtered_attributes.append(kv("f", "g"))
    lazy = messages.MetricsRequest.FromString(request.SerializeToString())
    lazy_metric = lazy.resource_metrics[0].scope_metrics[0].metrics[0]
    assert lazy_metric.WhichOneof("data") == "histogram"
    assert list(lazy_metric.metadata) == [kv("x", "y").SerializeToString()]
    lazy_point = lazy_metric.histogram.data_points[0]
    assert lazy_point.HasField("sum") and not lazy_point.HasField("min")
    assert list(lazy_point.attributes) == [kv("a", "b").SerializeToString()]
    assert list(lazy_point.exemplars[0].filtered_attributes) == [kv("f", "g").SerializeToString()]


def test_invalid_utf8_inside_attributes_does_not_fail_the_parse() -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().resource.attributes.append(kv("k", "XX"))
    payload = request.SerializeToString().replace(b"XX", b"\xff\xff")
    lazy = messages.TracesRequest.FromString(payload)
    assert list(lazy.resource_spans[0].resource.attributes) == [
        b"\x0a\x01k\x12\x04\x0a\x02\xff\xff"
    ]


def test_unread_resource_fields_are_not_validated() -> None:
    request = ExportTraceServiceRequest()
    ref = request.resource_spans.add().resource.entity_refs.add(type="XX")
    ref.id_keys.append("k")
    payload = request.SerializeToString().replace(b"XX", b"\xff\xff")
    assert len(messages.TracesRequest.FromString(payload).resource_spans) == 1
