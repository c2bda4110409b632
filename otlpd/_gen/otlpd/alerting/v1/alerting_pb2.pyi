import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from otlpd._gen.otlpd.query.v1 import query_pb2 as _query_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATE_UNSPECIFIED: _ClassVar[AlertState]
    ALERT_STATE_INACTIVE: _ClassVar[AlertState]
    ALERT_STATE_PENDING: _ClassVar[AlertState]
    ALERT_STATE_FIRING: _ClassVar[AlertState]

class SilenceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SILENCE_STATE_UNSPECIFIED: _ClassVar[SilenceState]
    SILENCE_STATE_PENDING: _ClassVar[SilenceState]
    SILENCE_STATE_ACTIVE: _ClassVar[SilenceState]
    SILENCE_STATE_EXPIRED: _ClassVar[SilenceState]

class NotificationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTIFICATION_STATUS_UNSPECIFIED: _ClassVar[NotificationStatus]
    NOTIFICATION_STATUS_PENDING: _ClassVar[NotificationStatus]
    NOTIFICATION_STATUS_DELIVERED: _ClassVar[NotificationStatus]
    NOTIFICATION_STATUS_FAILED: _ClassVar[NotificationStatus]

class IncidentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INCIDENT_STATUS_UNSPECIFIED: _ClassVar[IncidentStatus]
    INCIDENT_STATUS_OPEN: _ClassVar[IncidentStatus]
    INCIDENT_STATUS_ACKNOWLEDGED: _ClassVar[IncidentStatus]
    INCIDENT_STATUS_RESOLVED: _ClassVar[IncidentStatus]
ALERT_STATE_UNSPECIFIED: AlertState
ALERT_STATE_INACTIVE: AlertState
ALERT_STATE_PENDING: AlertState
ALERT_STATE_FIRING: AlertState
SILENCE_STATE_UNSPECIFIED: SilenceState
SILENCE_STATE_PENDING: SilenceState
SILENCE_STATE_ACTIVE: SilenceState
SILENCE_STATE_EXPIRED: SilenceState
NOTIFICATION_STATUS_UNSPECIFIED: NotificationStatus
NOTIFICATION_STATUS_PENDING: NotificationStatus
NOTIFICATION_STATUS_DELIVERED: NotificationStatus
NOTIFICATION_STATUS_FAILED: NotificationStatus
INCIDENT_STATUS_UNSPECIFIED: IncidentStatus
INCIDENT_STATUS_OPEN: IncidentStatus
INCIDENT_STATUS_ACKNOWLEDGED: IncidentStatus
INCIDENT_STATUS_RESOLVED: IncidentStatus

class Channel(_message.Message):
    __slots__ = ("id", "name", "webhook", "slack", "email", "version", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    SLACK_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    webhook: WebhookChannel
    slack: SlackChannel
    email: EmailChannel
    version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., webhook: _Optional[_Union[WebhookChannel, _Mapping]] = ..., slack: _Optional[_Union[SlackChannel, _Mapping]] = ..., email: _Optional[_Union[EmailChannel, _Mapping]] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WebhookChannel(_message.Message):
    __slots__ = ("url", "headers")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    url: str
    headers: _containers.ScalarMap[str, str]
    def __init__(self, url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SlackChannel(_message.Message):
    __slots__ = ("url",)
    URL_FIELD_NUMBER: _ClassVar[int]
    url: str
    def __init__(self, url: _Optional[str] = ...) -> None: ...

class EmailChannel(_message.Message):
    __slots__ = ("to",)
    TO_FIELD_NUMBER: _ClassVar[int]
    to: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, to: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateChannelRequest(_message.Message):
    __slots__ = ("project_id", "channel", "validate_only")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    channel: Channel
    validate_only: bool
    def __init__(self, project_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class CreateChannelResponse(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    def __init__(self, channel: _Optional[_Union[Channel, _Mapping]] = ...) -> None: ...

class ListChannelsRequest(_message.Message):
    __slots__ = ("project_id", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListChannelsResponse(_message.Message):
    __slots__ = ("channels", "next_page_token")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    next_page_token: str
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateChannelRequest(_message.Message):
    __slots__ = ("project_id", "channel", "validate_only")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    channel: Channel
    validate_only: bool
    def __init__(self, project_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class UpdateChannelResponse(_message.Message):
    __slots__ = ("channel", "changed", "changed_fields")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    changed: bool
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, channel: _Optional[_Union[Channel, _Mapping]] = ..., changed: _Optional[bool] = ..., changed_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteChannelRequest(_message.Message):
    __slots__ = ("project_id", "id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class DeleteChannelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MetricCondition(_message.Message):
    __slots__ = ("metric_name", "matchers", "aggregation", "window", "group_by")
    METRIC_NAME_FIELD_NUMBER: _ClassVar[int]
    MATCHERS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    metric_name: str
    matchers: _containers.RepeatedCompositeFieldContainer[_query_pb2.LabelMatcher]
    aggregation: _query_pb2.Aggregation
    window: _duration_pb2.Duration
    group_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, metric_name: _Optional[str] = ..., matchers: _Optional[_Iterable[_Union[_query_pb2.LabelMatcher, _Mapping]]] = ..., aggregation: _Optional[_Union[_query_pb2.Aggregation, str]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., group_by: _Optional[_Iterable[str]] = ...) -> None: ...

class LogCondition(_message.Message):
    __slots__ = ("filter", "window", "group_by", "examples")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    filter: _query_pb2.LogFilter
    window: _duration_pb2.Duration
    group_by: _containers.RepeatedScalarFieldContainer[str]
    examples: int
    def __init__(self, filter: _Optional[_Union[_query_pb2.LogFilter, _Mapping]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., group_by: _Optional[_Iterable[str]] = ..., examples: _Optional[int] = ...) -> None: ...

class SpanCondition(_message.Message):
    __slots__ = ("service", "operation", "measure", "quantile", "window", "span_kind", "group_by")
    class Measure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MEASURE_UNSPECIFIED: _ClassVar[SpanCondition.Measure]
        ERROR_RATIO: _ClassVar[SpanCondition.Measure]
        LATENCY: _ClassVar[SpanCondition.Measure]
    MEASURE_UNSPECIFIED: SpanCondition.Measure
    ERROR_RATIO: SpanCondition.Measure
    LATENCY: SpanCondition.Measure
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    MEASURE_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    SPAN_KIND_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    service: str
    operation: str
    measure: SpanCondition.Measure
    quantile: float
    window: _duration_pb2.Duration
    span_kind: int
    group_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, service: _Optional[str] = ..., operation: _Optional[str] = ..., measure: _Optional[_Union[SpanCondition.Measure, str]] = ..., quantile: _Optional[float] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., span_kind: _Optional[int] = ..., group_by: _Optional[_Iterable[str]] = ...) -> None: ...

class SloCondition(_message.Message):
    __slots__ = ("spans", "metrics", "objective", "period")
    class SpanEvents(_message.Message):
        __slots__ = ("service", "operation", "latency_threshold")
        SERVICE_FIELD_NUMBER: _ClassVar[int]
        OPERATION_FIELD_NUMBER: _ClassVar[int]
        LATENCY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
        service: str
        operation: str
        latency_threshold: _duration_pb2.Duration
        def __init__(self, service: _Optional[str] = ..., operation: _Optional[str] = ..., latency_threshold: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
    class MetricEvents(_message.Message):
        __slots__ = ("good", "total")
        GOOD_FIELD_NUMBER: _ClassVar[int]
        TOTAL_FIELD_NUMBER: _ClassVar[int]
        good: _query_pb2.MetricQuery
        total: _query_pb2.MetricQuery
        def __init__(self, good: _Optional[_Union[_query_pb2.MetricQuery, _Mapping]] = ..., total: _Optional[_Union[_query_pb2.MetricQuery, _Mapping]] = ...) -> None: ...
    SPANS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    spans: SloCondition.SpanEvents
    metrics: SloCondition.MetricEvents
    objective: float
    period: _duration_pb2.Duration
    def __init__(self, spans: _Optional[_Union[SloCondition.SpanEvents, _Mapping]] = ..., metrics: _Optional[_Union[SloCondition.MetricEvents, _Mapping]] = ..., objective: _Optional[float] = ..., period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("id", "name", "version", "metric", "logs", "spans", "slo", "comparator", "threshold", "interval", "keep_firing_for", "labels", "annotations", "channel_ids", "repeat_interval", "no_data", "on_error", "incident_group_by", "created_at", "updated_at")
    class Comparator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        COMPARATOR_UNSPECIFIED: _ClassVar[Rule.Comparator]
        GT: _ClassVar[Rule.Comparator]
        GTE: _ClassVar[Rule.Comparator]
        LT: _ClassVar[Rule.Comparator]
        LTE: _ClassVar[Rule.Comparator]
        EQ: _ClassVar[Rule.Comparator]
        NE: _ClassVar[Rule.Comparator]
        ABSENT: _ClassVar[Rule.Comparator]
    COMPARATOR_UNSPECIFIED: Rule.Comparator
    GT: Rule.Comparator
    GTE: Rule.Comparator
    LT: Rule.Comparator
    LTE: Rule.Comparator
    EQ: Rule.Comparator
    NE: Rule.Comparator
    ABSENT: Rule.Comparator
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[Rule.Outcome]
        OK: _ClassVar[Rule.Outcome]
        ALERTING: _ClassVar[Rule.Outcome]
        KEEP_LAST: _ClassVar[Rule.Outcome]
    OUTCOME_UNSPECIFIED: Rule.Outcome
    OK: Rule.Outcome
    ALERTING: Rule.Outcome
    KEEP_LAST: Rule.Outcome
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    SLO_FIELD_NUMBER: _ClassVar[int]
    COMPARATOR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    FOR_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIRING_FOR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_IDS_FIELD_NUMBER: _ClassVar[int]
    REPEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    NO_DATA_FIELD_NUMBER: _ClassVar[int]
    ON_ERROR_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    version: int
    metric: MetricCondition
    logs: LogCondition
    spans: SpanCondition
    slo: SloCondition
    comparator: Rule.Comparator
    threshold: float
    interval: _duration_pb2.Duration
    keep_firing_for: _duration_pb2.Duration
    labels: _containers.ScalarMap[str, str]
    annotations: _containers.ScalarMap[str, str]
    channel_ids: _containers.RepeatedScalarFieldContainer[str]
    repeat_interval: _duration_pb2.Duration
    no_data: Rule.Outcome
    on_error: Rule.Outcome
    incident_group_by: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., metric: _Optional[_Union[MetricCondition, _Mapping]] = ..., logs: _Optional[_Union[LogCondition, _Mapping]] = ..., spans: _Optional[_Union[SpanCondition, _Mapping]] = ..., slo: _Optional[_Union[SloCondition, _Mapping]] = ..., comparator: _Optional[_Union[Rule.Comparator, str]] = ..., threshold: _Optional[float] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., keep_firing_for: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Mapping[str, str]] = ..., channel_ids: _Optional[_Iterable[str]] = ..., repeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., no_data: _Optional[_Union[Rule.Outcome, str]] = ..., on_error: _Optional[_Union[Rule.Outcome, str]] = ..., incident_group_by: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., **kwargs) -> None: ...

class CreateRuleRequest(_message.Message):
    __slots__ = ("project_id", "rule", "validate_only")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    rule: Rule
    validate_only: bool
    def __init__(self, project_id: _Optional[str] = ..., rule: _Optional[_Union[Rule, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class CreateRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class GetRuleRequest(_message.Message):
    __slots__ = ("project_id", "id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class ListRulesRequest(_message.Message):
    __slots__ = ("project_id", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRulesResponse(_message.Message):
    __slots__ = ("rules", "next_page_token")
    RULES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    next_page_token: str
    def __init__(self, rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateRuleRequest(_message.Message):
    __slots__ = ("project_id", "rule", "validate_only")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    rule: Rule
    validate_only: bool
    def __init__(self, project_id: _Optional[str] = ..., rule: _Optional[_Union[Rule, _Mapping]] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class UpdateRuleResponse(_message.Message):
    __slots__ = ("rule", "changed", "changed_fields")
    RULE_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    changed: bool
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ..., changed: _Optional[bool] = ..., changed_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteRuleRequest(_message.Message):
    __slots__ = ("project_id", "id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class DeleteRuleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TestRuleRequest(_message.Message):
    __slots__ = ("project_id", "rule_id", "rule", "start_time", "end_time", "step")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    rule_id: str
    rule: Rule
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    step: _duration_pb2.Duration
    def __init__(self, project_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., rule: _Optional[_Union[Rule, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TestSeries(_message.Message):
    __slots__ = ("labels", "values", "state")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.ScalarMap[str, str]
    values: _containers.RepeatedCompositeFieldContainer[_query_pb2.Sample]
    state: AlertState
    def __init__(self, labels: _Optional[_Mapping[str, str]] = ..., values: _Optional[_Iterable[_Union[_query_pb2.Sample, _Mapping]]] = ..., state: _Optional[_Union[AlertState, str]] = ...) -> None: ...

class TestRuleResponse(_message.Message):
    __slots__ = ("series", "events", "evaluations", "errors", "first_error", "step")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    FIRST_ERROR_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[TestSeries]
    events: _containers.RepeatedCompositeFieldContainer[AlertEvent]
    evaluations: int
    errors: int
    first_error: str
    step: _duration_pb2.Duration
    def __init__(self, series: _Optional[_Iterable[_Union[TestSeries, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[AlertEvent, _Mapping]]] = ..., evaluations: _Optional[int] = ..., errors: _Optional[int] = ..., first_error: _Optional[str] = ..., step: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Acknowledgement(_message.Message):
    __slots__ = ("by", "at", "comment")
    BY_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    by: str
    at: _timestamp_pb2.Timestamp
    comment: str
    def __init__(self, by: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comment: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("id", "rule_id", "rule_name", "labels", "annotations", "state", "value", "since", "active_at", "fired_at", "resolved_at", "last_evaluated_at", "keep_firing_until", "flapping", "silenced", "acknowledgement", "fingerprint", "incident_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    FIRED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_EVALUATED_AT_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIRING_UNTIL_FIELD_NUMBER: _ClassVar[int]
    FLAPPING_FIELD_NUMBER: _ClassVar[int]
    SILENCED_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGEMENT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    rule_id: str
    rule_name: str
    labels: _containers.ScalarMap[str, str]
    annotations: _containers.ScalarMap[str, str]
    state: AlertState
    value: float
    since: _timestamp_pb2.Timestamp
    active_at: _timestamp_pb2.Timestamp
    fired_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    last_evaluated_at: _timestamp_pb2.Timestamp
    keep_firing_until: _timestamp_pb2.Timestamp
    flapping: bool
    silenced: bool
    acknowledgement: Acknowledgement
    fingerprint: str
    incident_id: str
    def __init__(self, id: _Optional[str] = ..., rule_id: _Optional[str] = ..., rule_name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[AlertState, str]] = ..., value: _Optional[float] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fired_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_evaluated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., keep_firing_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., flapping: _Optional[bool] = ..., silenced: _Optional[bool] = ..., acknowledgement: _Optional[_Union[Acknowledgement, _Mapping]] = ..., fingerprint: _Optional[str] = ..., incident_id: _Optional[str] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("project_id", "states", "rule_id", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    states: _containers.RepeatedScalarFieldContainer[AlertState]
    rule_id: str
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[AlertState, str]]] = ..., rule_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts", "next_page_token")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    next_page_token: str
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AlertEvent(_message.Message):
    __slots__ = ("id", "alert_id", "rule_id", "labels", "kind", "from_state", "to_state", "value", "time", "actor", "text")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[AlertEvent.Kind]
        PENDING: _ClassVar[AlertEvent.Kind]
        FIRING: _ClassVar[AlertEvent.Kind]
        RESOLVED: _ClassVar[AlertEvent.Kind]
        CANCELLED: _ClassVar[AlertEvent.Kind]
        ACKNOWLEDGED: _ClassVar[AlertEvent.Kind]
        FLAPPING: _ClassVar[AlertEvent.Kind]
        SETTLED: _ClassVar[AlertEvent.Kind]
    KIND_UNSPECIFIED: AlertEvent.Kind
    PENDING: AlertEvent.Kind
    FIRING: AlertEvent.Kind
    RESOLVED: AlertEvent.Kind
    CANCELLED: AlertEvent.Kind
    ACKNOWLEDGED: AlertEvent.Kind
    FLAPPING: AlertEvent.Kind
    SETTLED: AlertEvent.Kind
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    id: str
    alert_id: str
    rule_id: str
    labels: _containers.ScalarMap[str, str]
    kind: AlertEvent.Kind
    from_state: AlertState
    to_state: AlertState
    value: float
    time: _timestamp_pb2.Timestamp
    actor: str
    text: str
    def __init__(self, id: _Optional[str] = ..., alert_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., kind: _Optional[_Union[AlertEvent.Kind, str]] = ..., from_state: _Optional[_Union[AlertState, str]] = ..., to_state: _Optional[_Union[AlertState, str]] = ..., value: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ListAlertEventsRequest(_message.Message):
    __slots__ = ("project_id", "rule_id", "alert_id", "start_time", "end_time", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    rule_id: str
    alert_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., alert_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAlertEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AlertEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AlertEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AcknowledgeAlertRequest(_message.Message):
    __slots__ = ("project_id", "id", "comment")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    comment: str
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class AcknowledgeAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class Silence(_message.Message):
    __slots__ = ("id", "matchers", "start_time", "end_time", "comment", "created_by", "created_at", "state")
    ID_FIELD_NUMBER: _ClassVar[int]
    MATCHERS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    matchers: _containers.RepeatedCompositeFieldContainer[_query_pb2.LabelMatcher]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    comment: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    state: SilenceState
    def __init__(self, id: _Optional[str] = ..., matchers: _Optional[_Iterable[_Union[_query_pb2.LabelMatcher, _Mapping]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comment: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[SilenceState, str]] = ...) -> None: ...

class CreateSilenceRequest(_message.Message):
    __slots__ = ("project_id", "silence")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SILENCE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    silence: Silence
    def __init__(self, project_id: _Optional[str] = ..., silence: _Optional[_Union[Silence, _Mapping]] = ...) -> None: ...

class CreateSilenceResponse(_message.Message):
    __slots__ = ("silence",)
    SILENCE_FIELD_NUMBER: _ClassVar[int]
    silence: Silence
    def __init__(self, silence: _Optional[_Union[Silence, _Mapping]] = ...) -> None: ...

class ListSilencesRequest(_message.Message):
    __slots__ = ("project_id", "states", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    states: _containers.RepeatedScalarFieldContainer[SilenceState]
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[SilenceState, str]]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSilencesResponse(_message.Message):
    __slots__ = ("silences", "next_page_token")
    SILENCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    silences: _containers.RepeatedCompositeFieldContainer[Silence]
    next_page_token: str
    def __init__(self, silences: _Optional[_Iterable[_Union[Silence, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSilenceRequest(_message.Message):
    __slots__ = ("project_id", "id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class DeleteSilenceResponse(_message.Message):
    __slots__ = ("silence",)
    SILENCE_FIELD_NUMBER: _ClassVar[int]
    silence: Silence
    def __init__(self, silence: _Optional[_Union[Silence, _Mapping]] = ...) -> None: ...

class NotificationAttempt(_message.Message):
    __slots__ = ("time", "duration", "status_code", "error")
    TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    status_code: int
    error: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., status_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("id", "channel_id", "channel_name", "rule_id", "incident_id", "group_key", "alert_status", "status", "attempts", "last_error", "created_at", "next_attempt_at", "delivered_at", "attempt_log", "alert_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_NAME_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    ALERT_STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_LOG_FIELD_NUMBER: _ClassVar[int]
    ALERT_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    channel_id: str
    channel_name: str
    rule_id: str
    incident_id: str
    group_key: str
    alert_status: str
    status: NotificationStatus
    attempts: int
    last_error: str
    created_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    delivered_at: _timestamp_pb2.Timestamp
    attempt_log: _containers.RepeatedCompositeFieldContainer[NotificationAttempt]
    alert_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., channel_id: _Optional[str] = ..., channel_name: _Optional[str] = ..., rule_id: _Optional[str] = ..., incident_id: _Optional[str] = ..., group_key: _Optional[str] = ..., alert_status: _Optional[str] = ..., status: _Optional[_Union[NotificationStatus, str]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt_log: _Optional[_Iterable[_Union[NotificationAttempt, _Mapping]]] = ..., alert_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ("project_id", "channel_id", "rule_id", "incident_id", "statuses", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    channel_id: str
    rule_id: str
    incident_id: str
    statuses: _containers.RepeatedScalarFieldContainer[NotificationStatus]
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., channel_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., incident_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[NotificationStatus, str]]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNotificationsResponse(_message.Message):
    __slots__ = ("notifications", "next_page_token")
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    next_page_token: str
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TimelineEntry(_message.Message):
    __slots__ = ("id", "time", "kind", "actor", "text", "alert_id", "notification_id", "status")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[TimelineEntry.Kind]
        OPENED: _ClassVar[TimelineEntry.Kind]
        ALERT_FIRING: _ClassVar[TimelineEntry.Kind]
        ALERT_RESOLVED: _ClassVar[TimelineEntry.Kind]
        NOTIFICATION_SENT: _ClassVar[TimelineEntry.Kind]
        NOTIFICATION_FAILED: _ClassVar[TimelineEntry.Kind]
        ACKNOWLEDGED: _ClassVar[TimelineEntry.Kind]
        NOTE: _ClassVar[TimelineEntry.Kind]
        ASSIGNED: _ClassVar[TimelineEntry.Kind]
        STATUS_CHANGED: _ClassVar[TimelineEntry.Kind]
        RESOLVED: _ClassVar[TimelineEntry.Kind]
    KIND_UNSPECIFIED: TimelineEntry.Kind
    OPENED: TimelineEntry.Kind
    ALERT_FIRING: TimelineEntry.Kind
    ALERT_RESOLVED: TimelineEntry.Kind
    NOTIFICATION_SENT: TimelineEntry.Kind
    NOTIFICATION_FAILED: TimelineEntry.Kind
    ACKNOWLEDGED: TimelineEntry.Kind
    NOTE: TimelineEntry.Kind
    ASSIGNED: TimelineEntry.Kind
    STATUS_CHANGED: TimelineEntry.Kind
    RESOLVED: TimelineEntry.Kind
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    time: _timestamp_pb2.Timestamp
    kind: TimelineEntry.Kind
    actor: str
    text: str
    alert_id: str
    notification_id: str
    status: IncidentStatus
    def __init__(self, id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[TimelineEntry.Kind, str]] = ..., actor: _Optional[str] = ..., text: _Optional[str] = ..., alert_id: _Optional[str] = ..., notification_id: _Optional[str] = ..., status: _Optional[_Union[IncidentStatus, str]] = ...) -> None: ...

class Incident(_message.Message):
    __slots__ = ("id", "title", "status", "assignee", "rule_id", "group_labels", "opened_at", "acknowledged_at", "resolved_at", "updated_at", "firing_alerts", "timeline")
    class GroupLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_LABELS_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FIRING_ALERTS_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    status: IncidentStatus
    assignee: str
    rule_id: str
    group_labels: _containers.ScalarMap[str, str]
    opened_at: _timestamp_pb2.Timestamp
    acknowledged_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    firing_alerts: int
    timeline: _containers.RepeatedCompositeFieldContainer[TimelineEntry]
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., status: _Optional[_Union[IncidentStatus, str]] = ..., assignee: _Optional[str] = ..., rule_id: _Optional[str] = ..., group_labels: _Optional[_Mapping[str, str]] = ..., opened_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., firing_alerts: _Optional[int] = ..., timeline: _Optional[_Iterable[_Union[TimelineEntry, _Mapping]]] = ...) -> None: ...

class ListIncidentsRequest(_message.Message):
    __slots__ = ("project_id", "statuses", "limit", "page_token")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    statuses: _containers.RepeatedScalarFieldContainer[IncidentStatus]
    limit: int
    page_token: str
    def __init__(self, project_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[IncidentStatus, str]]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListIncidentsResponse(_message.Message):
    __slots__ = ("incidents", "next_page_token")
    INCIDENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    incidents: _containers.RepeatedCompositeFieldContainer[Incident]
    next_page_token: str
    def __init__(self, incidents: _Optional[_Iterable[_Union[Incident, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetIncidentRequest(_message.Message):
    __slots__ = ("project_id", "id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetIncidentResponse(_message.Message):
    __slots__ = ("incident",)
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    incident: Incident
    def __init__(self, incident: _Optional[_Union[Incident, _Mapping]] = ...) -> None: ...

class UpdateIncidentRequest(_message.Message):
    __slots__ = ("project_id", "id", "status", "assignee", "note")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    id: str
    status: IncidentStatus
    assignee: str
    note: str
    def __init__(self, project_id: _Optional[str] = ..., id: _Optional[str] = ..., status: _Optional[_Union[IncidentStatus, str]] = ..., assignee: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class UpdateIncidentResponse(_message.Message):
    __slots__ = ("incident",)
    INCIDENT_FIELD_NUMBER: _ClassVar[int]
    incident: Incident
    def __init__(self, incident: _Optional[_Union[Incident, _Mapping]] = ...) -> None: ...
