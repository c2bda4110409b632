import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MetricType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_TYPE_UNSPECIFIED: _ClassVar[MetricType]
    METRIC_TYPE_GAUGE: _ClassVar[MetricType]
    METRIC_TYPE_SUM: _ClassVar[MetricType]
    METRIC_TYPE_HISTOGRAM: _ClassVar[MetricType]
    METRIC_TYPE_EXPONENTIAL_HISTOGRAM: _ClassVar[MetricType]
    METRIC_TYPE_SUMMARY: _ClassVar[MetricType]

class Aggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGGREGATION_UNSPECIFIED: _ClassVar[Aggregation]
    AGGREGATION_AVG: _ClassVar[Aggregation]
    AGGREGATION_SUM: _ClassVar[Aggregation]
    AGGREGATION_MIN: _ClassVar[Aggregation]
    AGGREGATION_MAX: _ClassVar[Aggregation]
    AGGREGATION_COUNT: _ClassVar[Aggregation]
    AGGREGATION_LAST: _ClassVar[Aggregation]
    AGGREGATION_RATE: _ClassVar[Aggregation]
    AGGREGATION_INCREASE: _ClassVar[Aggregation]
    AGGREGATION_P50: _ClassVar[Aggregation]
    AGGREGATION_P90: _ClassVar[Aggregation]
    AGGREGATION_P95: _ClassVar[Aggregation]
    AGGREGATION_P99: _ClassVar[Aggregation]

class Resolution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOLUTION_UNSPECIFIED: _ClassVar[Resolution]
    RESOLUTION_RAW: _ClassVar[Resolution]
    RESOLUTION_1M: _ClassVar[Resolution]
    RESOLUTION_1H: _ClassVar[Resolution]
METRIC_TYPE_UNSPECIFIED: MetricType
METRIC_TYPE_GAUGE: MetricType
METRIC_TYPE_SUM: MetricType
METRIC_TYPE_HISTOGRAM: MetricType
METRIC_TYPE_EXPONENTIAL_HISTOGRAM: MetricType
METRIC_TYPE_SUMMARY: MetricType
AGGREGATION_UNSPECIFIED: Aggregation
AGGREGATION_AVG: Aggregation
AGGREGATION_SUM: Aggregation
AGGREGATION_MIN: Aggregation
AGGREGATION_MAX: Aggregation
AGGREGATION_COUNT: Aggregation
AGGREGATION_LAST: Aggregation
AGGREGATION_RATE: Aggregation
AGGREGATION_INCREASE: Aggregation
AGGREGATION_P50: Aggregation
AGGREGATION_P90: Aggregation
AGGREGATION_P95: Aggregation
AGGREGATION_P99: Aggregation
RESOLUTION_UNSPECIFIED: Resolution
RESOLUTION_RAW: Resolution
RESOLUTION_1M: Resolution
RESOLUTION_1H: Resolution

class ColdRead(_message.Message):
    __slots__ = ("objects", "row_groups", "bytes")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    ROW_GROUPS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    objects: int
    row_groups: int
    bytes: int
    def __init__(self, objects: _Optional[int] = ..., row_groups: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class AttributeFilter(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("id", "time", "observed_time", "trace_id", "span_id", "service", "session_id", "user_id", "severity_number", "severity_text", "body", "attributes", "resource", "scope_name", "event_name", "flags")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_TIME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_TEXT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPE_NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_NAME_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    time: _timestamp_pb2.Timestamp
    observed_time: _timestamp_pb2.Timestamp
    trace_id: bytes
    span_id: bytes
    service: str
    session_id: str
    user_id: str
    severity_number: int
    severity_text: str
    body: _struct_pb2.Value
    attributes: _struct_pb2.Struct
    resource: _struct_pb2.Struct
    scope_name: str
    event_name: str
    flags: int
    def __init__(self, id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., observed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[bytes] = ..., span_id: _Optional[bytes] = ..., service: _Optional[str] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., severity_number: _Optional[int] = ..., severity_text: _Optional[str] = ..., body: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., resource: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., scope_name: _Optional[str] = ..., event_name: _Optional[str] = ..., flags: _Optional[int] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("trace_id", "span_id", "parent_span_id", "name", "service", "kind", "start_time", "end_time", "duration", "status_code", "status_message", "attributes", "resource", "events", "links", "session_id", "user_id", "scope_name", "trace_state", "depth")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_NAME_FIELD_NUMBER: _ClassVar[int]
    TRACE_STATE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    name: str
    service: str
    kind: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    status_code: int
    status_message: str
    attributes: _struct_pb2.Struct
    resource: _struct_pb2.Struct
    events: _struct_pb2.ListValue
    links: _struct_pb2.ListValue
    session_id: str
    user_id: str
    scope_name: str
    trace_state: str
    depth: int
    def __init__(self, trace_id: _Optional[bytes] = ..., span_id: _Optional[bytes] = ..., parent_span_id: _Optional[bytes] = ..., name: _Optional[str] = ..., service: _Optional[str] = ..., kind: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., status_code: _Optional[int] = ..., status_message: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., resource: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., events: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., links: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., scope_name: _Optional[str] = ..., trace_state: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class LogFilter(_message.Message):
    __slots__ = ("q", "service", "min_severity", "trace_id", "span_id", "session_id", "user_id", "attributes")
    Q_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    q: str
    service: str
    min_severity: int
    trace_id: bytes
    span_id: bytes
    session_id: str
    user_id: str
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeFilter]
    def __init__(self, q: _Optional[str] = ..., service: _Optional[str] = ..., min_severity: _Optional[int] = ..., trace_id: _Optional[bytes] = ..., span_id: _Optional[bytes] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[AttributeFilter, _Mapping]]] = ...) -> None: ...

class SearchLogsRequest(_message.Message):
    __slots__ = ("project_id", "start_time", "end_time", "filter", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    filter: LogFilter
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filter: _Optional[_Union[LogFilter, _Mapping]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchLogsResponse(_message.Message):
    __slots__ = ("records", "next_page_token", "cold")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    next_page_token: str
    cold: ColdRead
    def __init__(self, records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...

class GetLogContextRequest(_message.Message):
    __slots__ = ("project_id", "id", "before", "after")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    before: int
    after: int
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ..., before: _Optional[int] = ..., after: _Optional[int] = ...) -> None: ...

class GetLogContextResponse(_message.Message):
    __slots__ = ("before", "record", "after", "cold")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    before: _containers.RepeatedCompositeFieldContainer[LogRecord]
    record: LogRecord
    after: _containers.RepeatedCompositeFieldContainer[LogRecord]
    cold: ColdRead
    def __init__(self, before: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ..., record: _Optional[_Union[LogRecord, _Mapping]] = ..., after: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...

class GetLogVolumeRequest(_message.Message):
    __slots__ = ("project_id", "start_time", "end_time", "filter", "step")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    filter: LogFilter
    step: _duration_pb2.Duration
    def __init__(self, project_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filter: _Optional[_Union[LogFilter, _Mapping]] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SeverityCount(_message.Message):
    __slots__ = ("severity_number", "severity", "count")
    SEVERITY_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    severity_number: int
    severity: str
    count: int
    def __init__(self, severity_number: _Optional[int] = ..., severity: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class VolumeBucket(_message.Message):
    __slots__ = ("time", "counts", "total")
    TIME_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    counts: _containers.RepeatedCompositeFieldContainer[SeverityCount]
    total: int
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., counts: _Optional[_Iterable[_Union[SeverityCount, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class GetLogVolumeResponse(_message.Message):
    __slots__ = ("step", "buckets", "cold")
    STEP_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    step: _duration_pb2.Duration
    buckets: _containers.RepeatedCompositeFieldContainer[VolumeBucket]
    cold: ColdRead
    def __init__(self, step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., buckets: _Optional[_Iterable[_Union[VolumeBucket, _Mapping]]] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...

class TailLogsRequest(_message.Message):
    __slots__ = ("project_id", "filter")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    filter: LogFilter
    def __init__(self, project_id: _Optional[str] = ..., filter: _Optional[_Union[LogFilter, _Mapping]] = ...) -> None: ...

class TailLogsResponse(_message.Message):
    __slots__ = ("records", "lagged")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    LAGGED_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    lagged: Lagged
    def __init__(self, records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ..., lagged: _Optional[_Union[Lagged, _Mapping]] = ...) -> None: ...

class Lagged(_message.Message):
    __slots__ = ("skipped_records",)
    SKIPPED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    skipped_records: int
    def __init__(self, skipped_records: _Optional[int] = ...) -> None: ...

class SearchTracesRequest(_message.Message):
    __slots__ = ("project_id", "start_time", "end_time", "service", "span_name", "attributes", "min_duration", "max_duration", "errors_only", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SPAN_NAME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    MIN_DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    ERRORS_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    service: str
    span_name: str
    attributes: _containers.RepeatedCompositeFieldContainer[AttributeFilter]
    min_duration: _duration_pb2.Duration
    max_duration: _duration_pb2.Duration
    errors_only: bool
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., service: _Optional[str] = ..., span_name: _Optional[str] = ..., attributes: _Optional[_Iterable[_Union[AttributeFilter, _Mapping]]] = ..., min_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., errors_only: _Optional[bool] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TraceSummary(_message.Message):
    __slots__ = ("trace_id", "root_service", "root_name", "start_time", "duration", "span_count", "error_count", "services")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_SERVICE_FIELD_NUMBER: _ClassVar[int]
    ROOT_NAME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    SPAN_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    trace_id: bytes
    root_service: str
    root_name: str
    start_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    span_count: int
    error_count: int
    services: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, trace_id: _Optional[bytes] = ..., root_service: _Optional[str] = ..., root_name: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., span_count: _Optional[int] = ..., error_count: _Optional[int] = ..., services: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchTracesResponse(_message.Message):
    __slots__ = ("traces", "next_page_token", "cold")
    TRACES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    traces: _containers.RepeatedCompositeFieldContainer[TraceSummary]
    next_page_token: str
    cold: ColdRead
    def __init__(self, traces: _Optional[_Iterable[_Union[TraceSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...

class GetTraceRequest(_message.Message):
    __slots__ = ("project_id", "trace_id", "include_logs")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LOGS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    trace_id: bytes
    include_logs: bool
    def __init__(self, project_id: _Optional[str] = ..., trace_id: _Optional[bytes] = ..., include_logs: _Optional[bool] = ...) -> None: ...

class GetTraceResponse(_message.Message):
    __slots__ = ("spans", "logs", "cold")
    SPANS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    logs: _containers.RepeatedCompositeFieldContainer[LogRecord]
    cold: ColdRead
    def __init__(self, spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., logs: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("name", "first_seen", "last_seen")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ("project_id", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services", "next_page_token")
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[Service]
    next_page_token: str
    def __init__(self, services: _Optional[_Iterable[_Union[Service, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("name", "span_kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPAN_KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    span_kind: int
    def __init__(self, name: _Optional[str] = ..., span_kind: _Optional[int] = ...) -> None: ...

class ListOperationsRequest(_message.Message):
    __slots__ = ("project_id", "service", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    service: str
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., service: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOperationsResponse(_message.Message):
    __slots__ = ("operations", "next_page_token")
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[Operation]
    next_page_token: str
    def __init__(self, operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class LabelMatcher(_message.Message):
    __slots__ = ("name", "op", "value")
    class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OP_EQ: _ClassVar[LabelMatcher.Op]
        OP_NEQ: _ClassVar[LabelMatcher.Op]
        OP_RE: _ClassVar[LabelMatcher.Op]
        OP_NRE: _ClassVar[LabelMatcher.Op]
    OP_EQ: LabelMatcher.Op
    OP_NEQ: LabelMatcher.Op
    OP_RE: LabelMatcher.Op
    OP_NRE: LabelMatcher.Op
    NAME_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    op: LabelMatcher.Op
    value: str
    def __init__(self, name: _Optional[str] = ..., op: _Optional[_Union[LabelMatcher.Op, str]] = ..., value: _Optional[str] = ...) -> None: ...

class MetricQuery(_message.Message):
    __slots__ = ("metric_name", "matchers", "start_time", "end_time", "step", "aggregation", "group_by", "range")
    METRIC_NAME_FIELD_NUMBER: _ClassVar[int]
    MATCHERS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    metric_name: str
    matchers: _containers.RepeatedCompositeFieldContainer[LabelMatcher]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    step: _duration_pb2.Duration
    aggregation: Aggregation
    group_by: _containers.RepeatedScalarFieldContainer[str]
    range: _duration_pb2.Duration
    def __init__(self, metric_name: _Optional[str] = ..., matchers: _Optional[_Iterable[_Union[LabelMatcher, _Mapping]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., aggregation: _Optional[_Union[Aggregation, str]] = ..., group_by: _Optional[_Iterable[str]] = ..., range: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("time", "value")
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    value: float
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ...) -> None: ...

class Series(_message.Message):
    __slots__ = ("labels", "samples")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.ScalarMap[str, str]
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    def __init__(self, labels: _Optional[_Mapping[str, str]] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ...) -> None: ...

class MetricResult(_message.Message):
    __slots__ = ("metric_name", "type", "unit", "step", "series", "resolution")
    METRIC_NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    metric_name: str
    type: MetricType
    unit: str
    step: _duration_pb2.Duration
    series: _containers.RepeatedCompositeFieldContainer[Series]
    resolution: Resolution
    def __init__(self, metric_name: _Optional[str] = ..., type: _Optional[_Union[MetricType, str]] = ..., unit: _Optional[str] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., series: _Optional[_Iterable[_Union[Series, _Mapping]]] = ..., resolution: _Optional[_Union[Resolution, str]] = ...) -> None: ...

class QueryMetricsRequest(_message.Message):
    __slots__ = ("project_id", "queries")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    queries: _containers.RepeatedCompositeFieldContainer[MetricQuery]
    def __init__(self, project_id: _Optional[str] = ..., queries: _Optional[_Iterable[_Union[MetricQuery, _Mapping]]] = ...) -> None: ...

class QueryMetricsResponse(_message.Message):
    __slots__ = ("results", "cold")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[MetricResult]
    cold: ColdRead
    def __init__(self, results: _Optional[_Iterable[_Union[MetricResult, _Mapping]]] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...

class MetricInfo(_message.Message):
    __slots__ = ("name", "type", "unit", "description", "label_keys")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABEL_KEYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: MetricType
    unit: str
    description: str
    label_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[MetricType, str]] = ..., unit: _Optional[str] = ..., description: _Optional[str] = ..., label_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class ListMetricsRequest(_message.Message):
    __slots__ = ("project_id", "prefix", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    prefix: str
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., prefix: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMetricsResponse(_message.Message):
    __slots__ = ("metrics", "next_page_token")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricInfo]
    next_page_token: str
    def __init__(self, metrics: _Optional[_Iterable[_Union[MetricInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("session_id", "project_id", "user_id", "services", "first_seen", "last_seen")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    project_id: str
    user_id: str
    services: _containers.RepeatedScalarFieldContainer[str]
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., services: _Optional[_Iterable[str]] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MetricExemplar(_message.Message):
    __slots__ = ("metric_name", "service", "value", "trace_id", "span_id")
    METRIC_NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    metric_name: str
    service: str
    value: float
    trace_id: bytes
    span_id: bytes
    def __init__(self, metric_name: _Optional[str] = ..., service: _Optional[str] = ..., value: _Optional[float] = ..., trace_id: _Optional[bytes] = ..., span_id: _Optional[bytes] = ...) -> None: ...

class TimelineItem(_message.Message):
    __slots__ = ("time", "span", "log", "exemplar")
    TIME_FIELD_NUMBER: _ClassVar[int]
    SPAN_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    EXEMPLAR_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    span: Span
    log: LogRecord
    exemplar: MetricExemplar
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., span: _Optional[_Union[Span, _Mapping]] = ..., log: _Optional[_Union[LogRecord, _Mapping]] = ..., exemplar: _Optional[_Union[MetricExemplar, _Mapping]] = ...) -> None: ...

class GetSessionTimelineRequest(_message.Message):
    __slots__ = ("project_id", "session_id", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    session_id: str
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., session_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetSessionTimelineResponse(_message.Message):
    __slots__ = ("session", "items", "next_page_token", "cold")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    session: Session
    items: _containers.RepeatedCompositeFieldContainer[TimelineItem]
    next_page_token: str
    cold: ColdRead
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., items: _Optional[_Iterable[_Union[TimelineItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...

class RedStats(_message.Message):
    __slots__ = ("requests", "errors", "request_rate", "error_rate", "p50", "p95", "p99", "mean")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_RATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    requests: int
    errors: int
    request_rate: float
    error_rate: float
    p50: _duration_pb2.Duration
    p95: _duration_pb2.Duration
    p99: _duration_pb2.Duration
    mean: _duration_pb2.Duration
    def __init__(self, requests: _Optional[int] = ..., errors: _Optional[int] = ..., request_rate: _Optional[float] = ..., error_rate: _Optional[float] = ..., p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p95: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., mean: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RedPoint(_message.Message):
    __slots__ = ("time", "stats")
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    stats: RedStats
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stats: _Optional[_Union[RedStats, _Mapping]] = ...) -> None: ...

class OperationStats(_message.Message):
    __slots__ = ("operation", "span_kind", "stats", "points")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    SPAN_KIND_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    operation: str
    span_kind: int
    stats: RedStats
    points: _containers.RepeatedCompositeFieldContainer[RedPoint]
    def __init__(self, operation: _Optional[str] = ..., span_kind: _Optional[int] = ..., stats: _Optional[_Union[RedStats, _Mapping]] = ..., points: _Optional[_Iterable[_Union[RedPoint, _Mapping]]] = ...) -> None: ...

class ServiceStats(_message.Message):
    __slots__ = ("service", "stats", "points", "operations")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    service: str
    stats: RedStats
    points: _containers.RepeatedCompositeFieldContainer[RedPoint]
    operations: _containers.RepeatedCompositeFieldContainer[OperationStats]
    def __init__(self, service: _Optional[str] = ..., stats: _Optional[_Union[RedStats, _Mapping]] = ..., points: _Optional[_Iterable[_Union[RedPoint, _Mapping]]] = ..., operations: _Optional[_Iterable[_Union[OperationStats, _Mapping]]] = ...) -> None: ...

class GetServiceStatsRequest(_message.Message):
    __slots__ = ("project_id", "start_time", "end_time", "service", "step", "operations", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    service: str
    step: _duration_pb2.Duration
    operations: bool
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., service: _Optional[str] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., operations: _Optional[bool] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetServiceStatsResponse(_message.Message):
    __slots__ = ("services", "next_page_token", "step", "complete_until", "percentile_relative_error")
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_UNTIL_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_RELATIVE_ERROR_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceStats]
    next_page_token: str
    step: _duration_pb2.Duration
    complete_until: _timestamp_pb2.Timestamp
    percentile_relative_error: float
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceStats, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., complete_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., percentile_relative_error: _Optional[float] = ...) -> None: ...

class ServiceEdge(_message.Message):
    __slots__ = ("caller", "callee", "calls", "errors", "p95")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    CALLEE_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    caller: str
    callee: str
    calls: int
    errors: int
    p95: _duration_pb2.Duration
    def __init__(self, caller: _Optional[str] = ..., callee: _Optional[str] = ..., calls: _Optional[int] = ..., errors: _Optional[int] = ..., p95: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetServiceGraphRequest(_message.Message):
    __slots__ = ("project_id", "start_time", "end_time", "service", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    service: str
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., service: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetServiceGraphResponse(_message.Message):
    __slots__ = ("edges", "services", "next_page_token", "cold")
    EDGES_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    edges: _containers.RepeatedCompositeFieldContainer[ServiceEdge]
    services: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    cold: ColdRead
    def __init__(self, edges: _Optional[_Iterable[_Union[ServiceEdge, _Mapping]]] = ..., services: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...

class GetLatencyHistogramRequest(_message.Message):
    __slots__ = ("project_id", "start_time", "end_time", "service", "operation", "bounds", "bins", "span_kind")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    BINS_FIELD_NUMBER: _ClassVar[int]
    SPAN_KIND_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    service: str
    operation: str
    bounds: _containers.RepeatedCompositeFieldContainer[_duration_pb2.Duration]
    bins: int
    span_kind: int
    def __init__(self, project_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., service: _Optional[str] = ..., operation: _Optional[str] = ..., bounds: _Optional[_Iterable[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]]] = ..., bins: _Optional[int] = ..., span_kind: _Optional[int] = ...) -> None: ...

class HistogramBin(_message.Message):
    __slots__ = ("lower", "upper", "count")
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    lower: _duration_pb2.Duration
    upper: _duration_pb2.Duration
    count: int
    def __init__(self, lower: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., upper: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class Percentile(_message.Message):
    __slots__ = ("quantile", "value", "bin")
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    BIN_FIELD_NUMBER: _ClassVar[int]
    quantile: float
    value: _duration_pb2.Duration
    bin: int
    def __init__(self, quantile: _Optional[float] = ..., value: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., bin: _Optional[int] = ...) -> None: ...

class GetLatencyHistogramResponse(_message.Message):
    __slots__ = ("bins", "percentiles", "count", "min", "max", "mean", "cold")
    BINS_FIELD_NUMBER: _ClassVar[int]
    PERCENTILES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    bins: _containers.RepeatedCompositeFieldContainer[HistogramBin]
    percentiles: _containers.RepeatedCompositeFieldContainer[Percentile]
    count: int
    min: _duration_pb2.Duration
    max: _duration_pb2.Duration
    mean: _duration_pb2.Duration
    cold: ColdRead
    def __init__(self, bins: _Optional[_Iterable[_Union[HistogramBin, _Mapping]]] = ..., percentiles: _Optional[_Iterable[_Union[Percentile, _Mapping]]] = ..., count: _Optional[int] = ..., min: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., mean: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...

class RedSeriesQuery(_message.Message):
    __slots__ = ("service", "operation", "signal", "start_time", "end_time", "step")
    class Signal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SIGNAL_REQUEST_RATE: _ClassVar[RedSeriesQuery.Signal]
        SIGNAL_ERROR_RATE: _ClassVar[RedSeriesQuery.Signal]
        SIGNAL_P50: _ClassVar[RedSeriesQuery.Signal]
        SIGNAL_P95: _ClassVar[RedSeriesQuery.Signal]
        SIGNAL_P99: _ClassVar[RedSeriesQuery.Signal]
    SIGNAL_REQUEST_RATE: RedSeriesQuery.Signal
    SIGNAL_ERROR_RATE: RedSeriesQuery.Signal
    SIGNAL_P50: RedSeriesQuery.Signal
    SIGNAL_P95: RedSeriesQuery.Signal
    SIGNAL_P99: RedSeriesQuery.Signal
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    service: str
    operation: str
    signal: RedSeriesQuery.Signal
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    step: _duration_pb2.Duration
    def __init__(self, service: _Optional[str] = ..., operation: _Optional[str] = ..., signal: _Optional[_Union[RedSeriesQuery.Signal, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DetectAnomaliesRequest(_message.Message):
    __slots__ = ("project_id", "metric", "red", "window", "threshold", "seasonality")
    class Seasonality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SEASONALITY_NONE: _ClassVar[DetectAnomaliesRequest.Seasonality]
        SEASONALITY_DAY: _ClassVar[DetectAnomaliesRequest.Seasonality]
        SEASONALITY_WEEK: _ClassVar[DetectAnomaliesRequest.Seasonality]
    SEASONALITY_NONE: DetectAnomaliesRequest.Seasonality
    SEASONALITY_DAY: DetectAnomaliesRequest.Seasonality
    SEASONALITY_WEEK: DetectAnomaliesRequest.Seasonality
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    RED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SEASONALITY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    metric: MetricQuery
    red: RedSeriesQuery
    window: _duration_pb2.Duration
    threshold: float
    seasonality: DetectAnomaliesRequest.Seasonality
    def __init__(self, project_id: _Optional[str] = ..., metric: _Optional[_Union[MetricQuery, _Mapping]] = ..., red: _Optional[_Union[RedSeriesQuery, _Mapping]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., threshold: _Optional[float] = ..., seasonality: _Optional[_Union[DetectAnomaliesRequest.Seasonality, str]] = ...) -> None: ...

class ScoredPoint(_message.Message):
    __slots__ = ("time", "value", "scored_value", "mean", "median", "zscore", "robust_score", "scored", "anomalous")
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCORED_VALUE_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    ZSCORE_FIELD_NUMBER: _ClassVar[int]
    ROBUST_SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORED_FIELD_NUMBER: _ClassVar[int]
    ANOMALOUS_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    value: float
    scored_value: float
    mean: float
    median: float
    zscore: float
    robust_score: float
    scored: bool
    anomalous: bool
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ..., scored_value: _Optional[float] = ..., mean: _Optional[float] = ..., median: _Optional[float] = ..., zscore: _Optional[float] = ..., robust_score: _Optional[float] = ..., scored: _Optional[bool] = ..., anomalous: _Optional[bool] = ...) -> None: ...

class AnomalyInterval(_message.Message):
    __slots__ = ("start_time", "end_time", "max_zscore", "max_robust_score")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_ZSCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_ROBUST_SCORE_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    max_zscore: float
    max_robust_score: float
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_zscore: _Optional[float] = ..., max_robust_score: _Optional[float] = ...) -> None: ...

class AnomalySeries(_message.Message):
    __slots__ = ("labels", "points", "intervals")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.ScalarMap[str, str]
    points: _containers.RepeatedCompositeFieldContainer[ScoredPoint]
    intervals: _containers.RepeatedCompositeFieldContainer[AnomalyInterval]
    def __init__(self, labels: _Optional[_Mapping[str, str]] = ..., points: _Optional[_Iterable[_Union[ScoredPoint, _Mapping]]] = ..., intervals: _Optional[_Iterable[_Union[AnomalyInterval, _Mapping]]] = ...) -> None: ...

class DetectAnomaliesResponse(_message.Message):
    __slots__ = ("series", "step")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[AnomalySeries]
    step: _duration_pb2.Duration
    def __init__(self, series: _Optional[_Iterable[_Union[AnomalySeries, _Mapping]]] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetErrorSpikesRequest(_message.Message):
    __slots__ = ("project_id", "start_time", "end_time", "baseline", "limit", "examples", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    baseline: _duration_pb2.Duration
    limit: int
    examples: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., baseline: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit: _Optional[int] = ..., examples: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ErrorSpike(_message.Message):
    __slots__ = ("service", "operation", "span_kind", "requests", "errors", "error_rate", "baseline_requests", "baseline_errors", "baseline_error_rate", "excess_errors", "zscore", "operations", "example_spans", "example_logs")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    SPAN_KIND_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    EXCESS_ERRORS_FIELD_NUMBER: _ClassVar[int]
    ZSCORE_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_SPANS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_LOGS_FIELD_NUMBER: _ClassVar[int]
    service: str
    operation: str
    span_kind: int
    requests: int
    errors: int
    error_rate: float
    baseline_requests: int
    baseline_errors: int
    baseline_error_rate: float
    excess_errors: float
    zscore: float
    operations: _containers.RepeatedCompositeFieldContainer[ErrorSpike]
    example_spans: _containers.RepeatedCompositeFieldContainer[Span]
    example_logs: _containers.RepeatedCompositeFieldContainer[LogRecord]
    def __init__(self, service: _Optional[str] = ..., operation: _Optional[str] = ..., span_kind: _Optional[int] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., error_rate: _Optional[float] = ..., baseline_requests: _Optional[int] = ..., baseline_errors: _Optional[int] = ..., baseline_error_rate: _Optional[float] = ..., excess_errors: _Optional[float] = ..., zscore: _Optional[float] = ..., operations: _Optional[_Iterable[_Union[ErrorSpike, _Mapping]]] = ..., example_spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ..., example_logs: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ...) -> None: ...

class GetErrorSpikesResponse(_message.Message):
    __slots__ = ("spikes", "next_page_token", "complete_until", "cold")
    SPIKES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_UNTIL_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    spikes: _containers.RepeatedCompositeFieldContainer[ErrorSpike]
    next_page_token: str
    complete_until: _timestamp_pb2.Timestamp
    cold: ColdRead
    def __init__(self, spikes: _Optional[_Iterable[_Union[ErrorSpike, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., complete_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...

class GetLogPatternsRequest(_message.Message):
    __slots__ = ("project_id", "start_time", "end_time", "filter", "baseline", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    filter: LogFilter
    baseline: _duration_pb2.Duration
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filter: _Optional[_Union[LogFilter, _Mapping]] = ..., baseline: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class LogPattern(_message.Message):
    __slots__ = ("template", "count", "first_seen", "last_seen", "example", "new", "baseline_count")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    BASELINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    template: str
    count: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    example: LogRecord
    new: bool
    baseline_count: int
    def __init__(self, template: _Optional[str] = ..., count: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., example: _Optional[_Union[LogRecord, _Mapping]] = ..., new: _Optional[bool] = ..., baseline_count: _Optional[int] = ...) -> None: ...

class GetLogPatternsResponse(_message.Message):
    __slots__ = ("patterns", "next_page_token", "total_records", "sampled_records", "sampled", "sample_rate", "cold")
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_RECORDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    COLD_FIELD_NUMBER: _ClassVar[int]
    patterns: _containers.RepeatedCompositeFieldContainer[LogPattern]
    next_page_token: str
    total_records: int
    sampled_records: int
    sampled: bool
    sample_rate: float
    cold: ColdRead
    def __init__(self, patterns: _Optional[_Iterable[_Union[LogPattern, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_records: _Optional[int] = ..., sampled_records: _Optional[int] = ..., sampled: _Optional[bool] = ..., sample_rate: _Optional[float] = ..., cold: _Optional[_Union[ColdRead, _Mapping]] = ...) -> None: ...
