"""CreateRule, GetRule, ListRules, UpdateRule, DeleteRule: validation and storage of rules.

``validate`` turns a ``Rule`` message into the record PostgreSQL keeps, or raises
``BadArgument`` naming the field (``rule.metric.window``, ``rule.annotations.summary``).
A rule's query is checked with the query API's own functions: label matchers and the
aggregation as QueryMetrics checks them (``query.metrics``), a log filter as SearchLogs
does (``query.logs.log_filter``). Defaults are filled in before anything is stored, so a
stored rule is complete: the evaluator reads no defaults of its own, and two requests
that differ only by a default are the same rule (``UpdateRule`` answers
``changed: false``). The condition is kept as the JSON of its message
(``alert_rules.condition``): a document the server built, never text that reaches SQL.

Optimistic concurrency: ``UpdateRule`` must carry the version it read; another one is
ABORTED (``Conflict``), read under the row's lock so that two concurrent updates cannot
both pass the check.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf import duration_pb2

from alerting import convert, templates
from alerting.channels import name as checked_name
from alerting.ids import looks_like_id, new_id
from alerting.proto import pb
from otlpd.errors import AlreadyExists, BadArgument, Conflict, NotFound
from query import arguments, tokens
from query.logs import log_filter
from query.metrics import MAX_NAME_CHARS, check_aggregation, label_matchers
from query.proto import pb as query_pb
from query.scope import Caller
from storage.postgres import alert_config as store
from storage.postgres.alert_config import RuleRecord
from storage.postgres.alert_store import AlertStore

DAY_S: Final = 86400.0
DEFAULT_INTERVAL_S: Final = 30.0
MIN_INTERVAL_S: Final = 1.0
MAX_INTERVAL_S: Final = DAY_S
MAX_FOR_S: Final = 7 * DAY_S
DEFAULT_REPEAT_S: Final = 4 * 3600.0  # Alertmanager's repeat_interval default
MIN_REPEAT_S: Final = 60.0
MAX_REPEAT_S: Final = 30 * DAY_S
DEFAULT_WINDOW_S: Final = 300.0
MIN_WINDOW_S: Final = 1.0
MAX_WINDOW_S: Final = 31 * DAY_S
DEFAULT_PERIOD_S: Final = 30 * DAY_S
MIN_PERIOD_S: Final = DAY_S
MAX_PERIOD_S: Final = 90 * DAY_S
DEFAULT_EXAMPLES: Final = 5
MAX_EXAMPLES: Final = 20
MAX_LABELS: Final = 64
MAX_LABEL_VALUE_CHARS: Final = 1000
MAX_CHANNELS: Final = 16
MAX_GROUP_BY: Final = 16
LIST_DEFAULT_LIMIT: Final = 100
LABEL_NAME: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
SPAN_GROUP_BY: Final = ("service.name", "span.name")
_COMPARATORS: Final = ("GT", "GTE", "LT", "LTE", "EQ", "NE", "ABSENT")
_OUTCOMES: Final = ("OK", "ALERTING", "KEEP_LAST")
_TOKEN_KIND: Final = "rules"
# What UpdateRule compares: everything but identity, version and times.
_NOT_COMPARED: Final = ("id", "version", "created_at", "updated_at")


def _duration(
    message: Any,
    name: str,
    field: str,
    *,
    default: float,
    minimum: float,
    maximum: float,
) -> float:
    """Seconds of the Duration ``message.<name>``, ``default`` when unset, within bounds."""
    if not message.HasField(name):
        return default
    value: duration_pb2.Duration = getattr(message, name)
    if value.seconds < 0 or value.nanos < 0:
        raise BadArgument(field, "must not be negative")
    seconds = convert.seconds(value)
    if seconds < minimum:
        raise BadArgument(field, f"must be at least {templates.humanize_duration(minimum)}")
    if seconds > maximum:
        raise BadArgument(field, f"must be at most {templates.humanize_duration(maximum)}")
    return seconds


def _set_window(message: Any, field: str) -> None:
    seconds = _duration(
        message,
        "window",
        field,
        default=DEFAULT_WINDOW_S,
        minimum=MIN_WINDOW_S,
        maximum=MAX_WINDOW_S,
    )
    convert.set_seconds(message.window, seconds)


def _group_by(values: Any, field: str, allowed: tuple[str, ...] | None = None) -> None:
    if len(values) > MAX_GROUP_BY:
        raise BadArgument(field, f"at most {MAX_GROUP_BY} labels")
    if len(set(values)) != len(values):
        raise BadArgument(field, "names a label twice")
    for i, label in enumerate(values):
        if not label:
            raise BadArgument(f"{field}[{i}]", "must not be empty")
        arguments.text(label, f"{field}[{i}]", max_chars=255)
        if allowed is not None and label not in allowed:
            raise BadArgument(f"{field}[{i}]", f"must be one of {', '.join(allowed)}")


def _prefixed(prefix: str, exc: BadArgument) -> BadArgument:
    problem = str(exc).split(": ", 1)[-1]
    return BadArgument(f"{prefix}.{exc.field}", problem)


def _metric_query(query: query_pb.MetricQuery, field: str) -> None:
    if not query.metric_name:
        raise BadArgument(f"{field}.metric_name", "must not be empty")
    arguments.text(query.metric_name, f"{field}.metric_name", max_chars=MAX_NAME_CHARS)
    label_matchers(query.matchers, f"{field}.matchers")


def _condition(rule: pb.Rule, project: str) -> tuple[str, Any]:
    """``(kind, condition message)`` validated, with its defaults filled in."""
    kind = rule.WhichOneof("condition")
    if kind is None:
        raise BadArgument("rule", "one of metric, logs, spans or slo is required")
    field = f"rule.{kind}"
    if kind == "metric":
        metric = pb.MetricCondition()
        metric.CopyFrom(rule.metric)
        _metric_query(
            query_pb.MetricQuery(metric_name=metric.metric_name, matchers=metric.matchers), field
        )
        check_aggregation(metric.aggregation, f"{field}.aggregation")
        if metric.aggregation == query_pb.AGGREGATION_UNSPECIFIED:
            metric.aggregation = query_pb.AGGREGATION_AVG
        _set_window(metric, f"{field}.window")
        _group_by(metric.group_by, f"{field}.group_by")
        return kind, metric
    if kind == "logs":
        logs = pb.LogCondition()
        logs.CopyFrom(rule.logs)
        try:
            log_filter(project, logs.filter)
        except BadArgument as exc:
            raise _prefixed(field, exc) from exc
        _set_window(logs, f"{field}.window")
        _group_by(logs.group_by, f"{field}.group_by")
        if not 0 <= logs.examples <= MAX_EXAMPLES:
            raise BadArgument(f"{field}.examples", f"must be 0 to {MAX_EXAMPLES}")
        logs.examples = logs.examples or DEFAULT_EXAMPLES
        return kind, logs
    if kind == "spans":
        spans = pb.SpanCondition()
        spans.CopyFrom(rule.spans)
        arguments.text(spans.service, f"{field}.service", max_chars=256)
        arguments.text(spans.operation, f"{field}.operation")
        if spans.measure == pb.SpanCondition.LATENCY:
            if not (math.isfinite(spans.quantile) and 0 < spans.quantile < 1):
                raise BadArgument(f"{field}.quantile", "must be in (0, 1), e.g. 0.99")
        elif spans.measure == pb.SpanCondition.ERROR_RATIO:
            if spans.quantile:
                raise BadArgument(f"{field}.quantile", "is for the LATENCY measure only")
        else:
            raise BadArgument(f"{field}.measure", "must be ERROR_RATIO or LATENCY")
        if not 0 <= spans.span_kind <= 5:
            raise BadArgument(f"{field}.span_kind", "must be an OTLP SpanKind, 0 to 5")
        _set_window(spans, f"{field}.window")
        _group_by(spans.group_by, f"{field}.group_by", SPAN_GROUP_BY)
        return kind, spans
    slo = pb.SloCondition()
    slo.CopyFrom(rule.slo)
    events = slo.WhichOneof("events")
    if events == "spans":
        if not slo.spans.service:
            raise BadArgument(f"{field}.spans.service", "must not be empty")
        arguments.text(slo.spans.service, f"{field}.spans.service", max_chars=256)
        arguments.text(slo.spans.operation, f"{field}.spans.operation")
        _duration(
            slo.spans,
            "latency_threshold",
            f"{field}.spans.latency_threshold",
            default=0.0,
            minimum=0.0,
            maximum=3600.0,
        )
    elif events == "metrics":
        _metric_query(slo.metrics.good, f"{field}.metrics.good")
        _metric_query(slo.metrics.total, f"{field}.metrics.total")
    else:
        raise BadArgument(f"{field}.events", "spans or metrics is required")
    if not (math.isfinite(slo.objective) and 0 < slo.objective < 1):
        raise BadArgument(f"{field}.objective", "must be in (0, 1), e.g. 0.999")
    period = _duration(
        slo,
        "period",
        f"{field}.period",
        default=DEFAULT_PERIOD_S,
        minimum=MIN_PERIOD_S,
        maximum=MAX_PERIOD_S,
    )
    convert.set_seconds(slo.period, period)
    return kind, slo


def _labels(values: Mapping[str, str], field: str) -> dict[str, str]:
    if len(values) > MAX_LABELS:
        raise BadArgument(field, f"at most {MAX_LABELS}")
    for key, value in values.items():
        if not LABEL_NAME.fullmatch(key):
            raise BadArgument(f"{field}.{key}", "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        arguments.text(value, f"{field}.{key}", max_chars=MAX_LABEL_VALUE_CHARS)
    return dict(values)


def _annotations(values: Mapping[str, str], field: str) -> dict[str, str]:
    if len(values) > MAX_LABELS:
        raise BadArgument(field, f"at most {MAX_LABELS}")
    for key, value in values.items():
        if not LABEL_NAME.fullmatch(key):
            raise BadArgument(f"{field}.{key}", "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        arguments.text(value, f"{field}.{key}", max_chars=templates.MAX_TEMPLATE_CHARS)
        try:
            templates.parse(value)
        except templates.TemplateError as exc:
            raise BadArgument(f"{field}.{key}", str(exc)) from exc
    return dict(values)


def _outcome(value: int, field: str, default: str) -> str:
    if value == pb.Rule.OUTCOME_UNSPECIFIED:
        return default
    name = pb.Rule.Outcome.Name(value) if value in pb.Rule.Outcome.values() else None
    if name not in _OUTCOMES:
        raise BadArgument(field, f"unknown outcome {value}")
    return name


def validate(rule: pb.Rule, project: str, rule_id: str) -> RuleRecord:
    """The record of a valid rule, defaults filled in; ``BadArgument`` naming the field.
    Channel ids are checked for form here and for existence by the caller."""
    rule_name = checked_name(rule.name, "rule.name")
    kind, condition = _condition(rule, project)
    comparator: str | None = None
    threshold: float | None = rule.threshold
    if not math.isfinite(rule.threshold):
        raise BadArgument("rule.threshold", "must be a finite number")
    if kind == "slo":
        if rule.comparator != pb.Rule.COMPARATOR_UNSPECIFIED:
            raise BadArgument("rule.comparator", "is not used by slo rules: leave it unset")
        if rule.threshold:
            raise BadArgument("rule.threshold", "is not used by slo rules: leave it unset")
        threshold = None
    else:
        if rule.comparator not in pb.Rule.Comparator.values() or (
            rule.comparator == pb.Rule.COMPARATOR_UNSPECIFIED
        ):
            raise BadArgument("rule.comparator", f"must be one of {', '.join(_COMPARATORS)}")
        comparator = pb.Rule.Comparator.Name(rule.comparator)
        if comparator == "ABSENT":
            if rule.threshold:
                raise BadArgument("rule.threshold", "is not used by ABSENT: leave it unset")
            threshold = None
    interval = _duration(
        rule,
        "interval",
        "rule.interval",
        default=DEFAULT_INTERVAL_S,
        minimum=MIN_INTERVAL_S,
        maximum=MAX_INTERVAL_S,
    )
    pending_for = _duration(rule, "for", "rule.for", default=0.0, minimum=0.0, maximum=MAX_FOR_S)
    keep = _duration(
        rule, "keep_firing_for", "rule.keep_firing_for", default=0.0, minimum=0.0,
        maximum=MAX_FOR_S,
    )  # fmt: skip
    repeat = _duration(
        rule,
        "repeat_interval",
        "rule.repeat_interval",
        default=DEFAULT_REPEAT_S,
        minimum=MIN_REPEAT_S,
        maximum=MAX_REPEAT_S,
    )
    labels = _labels(rule.labels, "rule.labels")
    if "alertname" in labels:
        raise BadArgument("rule.labels.alertname", "is the rule's name and cannot be set")
    annotations = _annotations(rule.annotations, "rule.annotations")
    channel_ids = tuple(rule.channel_ids)
    if len(channel_ids) > MAX_CHANNELS:
        raise BadArgument("rule.channel_ids", f"at most {MAX_CHANNELS} channels")
    if len(set(channel_ids)) != len(channel_ids):
        raise BadArgument("rule.channel_ids", "names a channel twice")
    group_by = tuple(rule.incident_group_by)
    if len(group_by) > MAX_GROUP_BY or len(set(group_by)) != len(group_by):
        raise BadArgument("rule.incident_group_by", f"at most {MAX_GROUP_BY} distinct labels")
    for i, label in enumerate(group_by):
        if not LABEL_NAME.fullmatch(label):
            raise BadArgument(f"rule.incident_group_by[{i}]", "is not a label name")
    return RuleRecord(
        rule_id=rule_id,
        name=rule_name,
        version=1,
        kind=kind,
        condition=convert.document(condition),
        comparator=comparator,
        threshold=threshold,
        interval_s=interval,
        for_s=pending_for,
        keep_firing_for_s=keep,
        repeat_interval_s=repeat,
        labels=labels,
        annotations=annotations,
        no_data=_outcome(rule.no_data, "rule.no_data", "OK"),
        on_error=_outcome(rule.on_error, "rule.on_error", "KEEP_LAST"),
        incident_group_by=group_by,
        channel_ids=channel_ids,
    )


_CONDITIONS: Final = {
    "metric": pb.MetricCondition,
    "logs": pb.LogCondition,
    "spans": pb.SpanCondition,
    "slo": pb.SloCondition,
}


def to_proto(record: RuleRecord) -> pb.Rule:
    """A stored rule as the API answers it (and as the evaluator reads it)."""
    rule = pb.Rule(
        id=record.rule_id,
        name=record.name,
        version=record.version,
        threshold=record.threshold or 0.0,
        labels=record.labels,
        annotations=record.annotations,
        channel_ids=record.channel_ids,
        no_data=record.no_data,
        on_error=record.on_error,
        incident_group_by=record.incident_group_by,
    )
    condition = convert.from_document(record.condition, _CONDITIONS[record.kind]())
    getattr(rule, record.kind).CopyFrom(condition)
    if record.comparator is not None:
        rule.comparator = record.comparator  # type: ignore[assignment]  # enums take names
    convert.set_seconds(rule.interval, record.interval_s)
    convert.set_seconds(getattr(rule, "for"), record.for_s)
    convert.set_seconds(rule.keep_firing_for, record.keep_firing_for_s)
    convert.set_seconds(rule.repeat_interval, record.repeat_interval_s)
    convert.set_time(rule.created_at, record.created_at)
    convert.set_time(rule.updated_at, record.updated_at)
    return rule


def _flat(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if not prefix and key in _NOT_COMPARED:
            continue
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_fields(before: pb.Rule, after: pb.Rule) -> list[str]:
    """The fields of ``after`` that differ from ``before`` (dotted, e.g. ``labels.team``)."""
    old, new = _flat(convert.document(before)), _flat(convert.document(after))
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def audited(record: RuleRecord) -> dict[str, Any]:
    """The rule as the audit log keeps it: the API's JSON of it, without times."""
    shown = convert.document(to_proto(record))
    for key in ("created_at", "updated_at"):
        shown.pop(key, None)
    return shown


class RuleCalls:
    """The rule RPCs over the alerting store."""

    def __init__(self, store: AlertStore, max_limit: int) -> None:
        self._store = store
        self._max_limit = max_limit

    async def _check_channels(self, conn: Any, project: str, record: RuleRecord) -> None:
        ids = [i for i in record.channel_ids if looks_like_id(i)]
        found = await store.existing_channels(conn, project, ids) if ids else set()
        for i, channel_id in enumerate(record.channel_ids):
            if channel_id not in found:
                raise BadArgument(
                    f"rule.channel_ids[{i}]", f"no channel with id {channel_id!r} in this project"
                )

    async def create(self, caller: Caller, request: pb.CreateRuleRequest) -> Any:
        project = caller.project
        record = validate(request.rule, project, new_id())
        async with self._store.transaction() as conn:
            await self._check_channels(conn, project, record)
            if request.validate_only:
                if await store.name_taken(conn, "rules", project, record.name, ""):
                    raise AlreadyExists(f"rule.name: a rule named {record.name!r} exists")
                preview = to_proto(record)
                preview.id = ""
                return pb.CreateRuleResponse(rule=preview)
            created = await store.insert_rule(conn, project, record)
            if created is None:
                raise AlreadyExists(f"rule.name: a rule named {record.name!r} exists")
            await store.audit(
                conn,
                project,
                actor=caller.actor,
                action="rule.create",
                subject=created.rule_id,
                before=None,
                after=audited(created),
            )
        return pb.CreateRuleResponse(rule=to_proto(created))

    async def _existing(
        self, conn: Any, project: str, rule_id: str, *, lock: bool = False
    ) -> RuleRecord:
        found = (
            await store.get_rule(conn, project, rule_id, lock=lock)
            if looks_like_id(rule_id)
            else None
        )
        if found is None:
            raise NotFound(f"no rule with id {rule_id!r}")
        return found

    async def get(self, caller: Caller, request: pb.GetRuleRequest) -> Any:
        async with self._store.transaction() as conn:
            found = await self._existing(conn, caller.project, request.id)
        return pb.GetRuleResponse(rule=to_proto(found))

    async def list(self, caller: Caller, request: pb.ListRulesRequest) -> Any:
        limit = arguments.limit(request.limit, default=LIST_DEFAULT_LIMIT, maximum=self._max_limit)
        bound_to = tokens.fingerprint(caller.project, request)
        cursor = tokens.decode(request.page_token, _TOKEN_KIND, bound_to)
        after = None if cursor is None else str(cursor[0])
        async with self._store.transaction() as conn:
            found = await store.list_rules(conn, caller.project, after_name=after, limit=limit + 1)
        response = pb.ListRulesResponse(rules=[to_proto(r) for r in found[:limit]])
        if len(found) > limit:
            response.next_page_token = tokens.encode(_TOKEN_KIND, bound_to, [found[limit - 1].name])
        return response

    async def update(self, caller: Caller, request: pb.UpdateRuleRequest) -> Any:
        project = caller.project
        rule_id, version = request.rule.id, request.rule.version
        if not rule_id:
            raise BadArgument("rule.id", "is required")
        if version <= 0:
            raise BadArgument("rule.version", "is required: the version the change is based on")
        record = validate(request.rule, project, rule_id)
        async with self._store.transaction() as conn:
            current = await self._existing(conn, project, rule_id, lock=True)
            if current.version != version:
                raise Conflict(
                    f"rule.version: {version} is not the current version ({current.version}); "
                    "read the rule again"
                )
            before = to_proto(current)
            fields = changed_fields(before, to_proto(record))
            if not fields:
                return pb.UpdateRuleResponse(rule=before, changed=False)
            await self._check_channels(conn, project, record)
            if "name" in fields and await store.name_taken(
                conn, "rules", project, record.name, rule_id
            ):
                raise AlreadyExists(f"rule.name: a rule named {record.name!r} exists")
            if request.validate_only:
                preview = to_proto(record)
                preview.version = current.version + 1
                preview.created_at.CopyFrom(before.created_at)
                preview.updated_at.CopyFrom(before.updated_at)
                return pb.UpdateRuleResponse(rule=preview, changed=True, changed_fields=fields)
            updated = await store.update_rule(conn, project, record)
            await store.audit(
                conn,
                project,
                actor=caller.actor,
                action="rule.update",
                subject=rule_id,
                before=audited(current),
                after=audited(updated),
            )
        return pb.UpdateRuleResponse(rule=to_proto(updated), changed=True, changed_fields=fields)

    async def delete(self, caller: Caller, request: pb.DeleteRuleRequest) -> Any:
        project = caller.project
        async with self._store.transaction() as conn:
            current = await self._existing(conn, project, request.id, lock=True)
            await store.delete_rule(conn, project, request.id)
            await store.audit(
                conn,
                project,
                actor=caller.actor,
                action="rule.delete",
                subject=request.id,
                before=audited(current),
                after=None,
            )
        return pb.DeleteRuleResponse()
