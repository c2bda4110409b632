"""The OTLP request messages as the decoder parses them: attribute lists left as raw bytes.

Wire-compatible twins of the ``opentelemetry-proto`` classes, built at import from their
descriptors with three changes:

* every ``repeated KeyValue`` field (attributes, metadata, filtered attributes) is
  ``repeated bytes``: each element is one serialized ``KeyValue``. Reading a repeated
  bytes field costs a fraction of walking ``KeyValue``/``AnyValue`` wrappers, and equal
  bytes mean an equal attribute, so ``anyvalue.AttributeEncoder`` caches its JSON per
  bytes. It also confines an invalid UTF-8 attribute to its record: the parser does not
  look inside bytes, so the encoder finds it and refuses only that record.
* ``LogRecord.body`` is ``bytes`` (a serialized ``AnyValue``), for the same reasons.
* fields the decoder never reads (``Resource.entity_refs``) are dropped: the parser skips
  them as unknown fields without validating them.

They live in a pool of their own, so they do not clash with the real classes.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

_FILES: Final = (
    common_pb2,
    resource_pb2,
    trace_pb2,
    logs_pb2,
    metrics_pb2,
    trace_service_pb2,
    logs_service_pb2,
    metrics_service_pb2,
)
_KEY_VALUE: Final = ".opentelemetry.proto.common.v1.KeyValue"
_AS_BYTES: Final = {("LogRecord", "body")}
_DROPPED: Final = {("Resource", "entity_refs")}

_Field = descriptor_pb2.FieldDescriptorProto


def _lazy(messages: Any) -> None:
    for message in messages:
        for name in [f.name for f in message.field if (message.name, f.name) in _DROPPED]:
            index = next(i for i, f in enumerate(message.field) if f.name == name)
            del message.field[index]
        for f in message.field:
            if f.type_name == _KEY_VALUE or (message.name, f.name) in _AS_BYTES:
                f.type = _Field.TYPE_BYTES
                f.ClearField("type_name")
        _lazy(message.nested_type)


def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for module in _FILES:
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        proto.ClearField("service")
        _lazy(proto.message_type)
        pool.Add(proto)
    return pool


_POOL: Final = _pool()


def message_class(full_name: str) -> Any:
    """The lazy twin of the OTLP message ``full_name``."""
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(full_name))


TracesRequest: Final = message_class(
    "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"
)
LogsRequest: Final = message_class("opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest")
MetricsRequest: Final = message_class(
    "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest"
)
Resource: Final = message_class("opentelemetry.proto.resource.v1.Resource")
Scope: Final = message_class("opentelemetry.proto.common.v1.InstrumentationScope")
Span: Final = message_class("opentelemetry.proto.trace.v1.Span")
LogRecord: Final = message_class("opentelemetry.proto.logs.v1.LogRecord")
Metric: Final = message_class("opentelemetry.proto.metrics.v1.Metric")
