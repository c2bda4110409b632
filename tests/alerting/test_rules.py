"""Rules: every RPC, defaults, validation naming fields, versions, channels, audit, and
projects apart."""

from __future__ import annotations

from typing import Any

import grpc
import psycopg
from google.protobuf import duration_pb2

from alerting.proto import pb
from query.proto import pb as qpb
from tests.alerting.conftest import Project, audit_rows, refused
from tests.conftest import RunningOtlpd


def seconds(n: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(n * 1e9))
    return d


def metric_rule(name: str = "HighLatency", **fields: Any) -> pb.Rule:
    rule = pb.Rule(
        name=name,
        metric=pb.MetricCondition(
            metric_name="http.server.duration",
            matchers=[qpb.LabelMatcher(name="service.name", value="checkout")],
            aggregation=qpb.AGGREGATION_P95,
            group_by=["service.name"],
        ),
        comparator=pb.Rule.GT,
        threshold=0.5,
        labels={"severity": "page"},
        annotations={"summary": "p95 of {{ $labels.service }} is {{ $value | humanize }}s"},
    )
    for key, value in fields.items():
        if key == "for_":
            getattr(rule, "for").CopyFrom(value)
        elif isinstance(value, duration_pb2.Duration | pb.MetricCondition):
            getattr(rule, key).CopyFrom(value)
        elif isinstance(value, list):
            del getattr(rule, key)[:]
            getattr(rule, key).extend(value)
        elif isinstance(value, dict):
            getattr(rule, key).clear()
            getattr(rule, key).update(value)
        else:
            setattr(rule, key, value)
    return rule


def test_create_get_list_update_delete_with_defaults_versions_and_audit(
    project: Project, alerting_otlpd: RunningOtlpd
) -> None:
    channel = project.CreateChannel(
        pb.CreateChannelRequest(channel=pb.Channel(name="c", email=pb.EmailChannel(to=["a@b"])))
    ).channel
    made = project.CreateRule(
        pb.CreateRuleRequest(rule=metric_rule(channel_ids=[channel.id], for_=seconds(60)))
    ).rule
    assert len(made.id) == 16 and made.version == 1
    # Defaults filled in: interval 30 s, window 5 min, repeat 4 h, no data OK, error keep.
    assert made.interval.seconds == 30 and made.metric.window.seconds == 300
    assert made.repeat_interval.seconds == 4 * 3600 and getattr(made, "for").seconds == 60
    assert (made.no_data, made.on_error) == (pb.Rule.OK, pb.Rule.KEEP_LAST)
    assert list(made.channel_ids) == [channel.id]
    assert project.GetRule(pb.GetRuleRequest(id=made.id)).rule == made
    assert [r.name for r in project.ListRules(pb.ListRulesRequest()).rules] == ["HighLatency"]
    with psycopg.connect(alerting_otlpd.database_url) as conn:
        schedule = conn.execute(
            "SELECT next_eval_at <= now() FROM alert_rule_schedule"
            " WHERE project_id = %s AND rule_id = %s",
            (project.project, made.id),
        ).fetchall()
    assert schedule == [(True,)], "a new rule is due at once"

    # The same rule with its defaults spelled out is no change.
    same = metric_rule(
        channel_ids=[channel.id], for_=seconds(60), interval=seconds(30), id=made.id, version=1
    )
    unchanged = project.UpdateRule(pb.UpdateRuleRequest(rule=same))
    assert (unchanged.changed, unchanged.rule.version) == (False, 1)
    edited = metric_rule(threshold=0.8, id=made.id, version=1, labels={"severity": "ticket"})
    preview = project.UpdateRule(pb.UpdateRuleRequest(rule=edited, validate_only=True))
    assert preview.changed and list(preview.changed_fields) == [
        "channel_ids",
        "for",
        "labels.severity",
        "threshold",
    ]
    assert project.GetRule(pb.GetRuleRequest(id=made.id)).rule.version == 1
    updated = project.UpdateRule(pb.UpdateRuleRequest(rule=edited))
    assert updated.changed and updated.rule.version == 2 and updated.rule.threshold == 0.8
    stale = refused(lambda: project.UpdateRule(pb.UpdateRuleRequest(rule=edited)))
    assert stale.code() == grpc.StatusCode.ABORTED
    assert stale.details().startswith("rule.version: 1 is not the current version (2)")

    project.DeleteRule(pb.DeleteRuleRequest(id=made.id))
    assert refused(lambda: project.GetRule(pb.GetRuleRequest(id=made.id))).code() == (
        grpc.StatusCode.NOT_FOUND
    )
    rows = audit_rows(alerting_otlpd.database_url, project.project)
    actions = [(action, subject) for _, action, subject, _ in rows if action.startswith("rule.")]
    assert actions == [("rule.create", made.id), ("rule.update", made.id), ("rule.delete", made.id)]
    update = next(details for _, action, _, details in rows if action == "rule.update")
    assert update["before"]["threshold"] == 0.5 and update["after"]["threshold"] == 0.8
    assert update["before"]["version"] == "1" and update["after"]["version"] == "2"
    assert rows[-1][3]["after"] is None and rows[-1][3]["before"]["name"] == "HighLatency"


def test_every_kind_of_condition_is_stored_and_answered(project: Project) -> None:
    rules = [
        pb.Rule(
            name="payment failures",
            logs=pb.LogCondition(
                filter=qpb.LogFilter(q='"payment failed"', min_severity=13),
                window=seconds(300),
            ),
            comparator=pb.Rule.GT,
            threshold=3,
        ),
        pb.Rule(
            name="errors",
            spans=pb.SpanCondition(service="checkout", measure=pb.SpanCondition.ERROR_RATIO),
            comparator=pb.Rule.GTE,
            threshold=0.05,
        ),
        pb.Rule(
            name="p99",
            spans=pb.SpanCondition(
                service="checkout",
                measure=pb.SpanCondition.LATENCY,
                quantile=0.99,
                group_by=["span.name"],
            ),
            comparator=pb.Rule.GT,
            threshold=1.5,
        ),
        pb.Rule(
            name="availability",
            slo=pb.SloCondition(
                spans=pb.SloCondition.SpanEvents(service="checkout"), objective=0.999
            ),
        ),
        pb.Rule(
            name="gone", metric=pb.MetricCondition(metric_name="up"), comparator=pb.Rule.ABSENT
        ),
    ]
    for rule in rules:
        made = project.CreateRule(pb.CreateRuleRequest(rule=rule)).rule
        assert made.WhichOneof("condition") == rule.WhichOneof("condition")
        assert project.GetRule(pb.GetRuleRequest(id=made.id)).rule == made
    listed = {r.name: r for r in project.ListRules(pb.ListRulesRequest()).rules}
    assert listed["payment failures"].logs.examples == 5
    assert listed["payment failures"].logs.filter.q == '"payment failed"'
    assert listed["availability"].slo.period.seconds == 30 * 86400
    assert listed["availability"].comparator == pb.Rule.COMPARATOR_UNSPECIFIED
    assert listed["gone"].metric.aggregation == qpb.AGGREGATION_AVG
    assert listed["p99"].spans.quantile == 0.99


def test_validation_names_the_field(project: Project) -> None:
    bad_regex = metric_rule()
    bad_regex.metric.matchers.add(name="x", op=qpb.LabelMatcher.OP_RE, value="(")
    cases: list[tuple[pb.Rule, str]] = [
        (metric_rule(name=""), "rule.name"),
        (pb.Rule(name="x", comparator=pb.Rule.GT), "rule"),
        (metric_rule(comparator=pb.Rule.COMPARATOR_UNSPECIFIED), "rule.comparator"),
        (metric_rule(threshold=float("nan")), "rule.threshold"),
        (metric_rule(threshold=float("inf")), "rule.threshold"),
        (metric_rule(interval=seconds(0.5)), "rule.interval"),
        (metric_rule(interval=seconds(2 * 86400)), "rule.interval"),
        (metric_rule(for_=seconds(8 * 86400)), "rule.for"),
        (metric_rule(keep_firing_for=seconds(-1)), "rule.keep_firing_for"),
        (metric_rule(repeat_interval=seconds(10)), "rule.repeat_interval"),
        (metric_rule(labels={"bad-name": "x"}), "rule.labels.bad-name"),
        (metric_rule(labels={"alertname": "x"}), "rule.labels.alertname"),
        (metric_rule(annotations={"summary": "{{ $value.Foo }}"}), "rule.annotations.summary"),
        (metric_rule(annotations={"summary": "{{ exec }}"}), "rule.annotations.summary"),
        (metric_rule(channel_ids=["0123456789abcdef"]), "rule.channel_ids[0]"),
        (metric_rule(channel_ids=["nope"]), "rule.channel_ids[0]"),
        (bad_regex, "rule.metric.matchers[1].value"),
        (metric_rule(metric=pb.MetricCondition(metric_name="m", aggregation=99)),  # type: ignore[arg-type]
         "rule.metric.aggregation"),
        (metric_rule(metric=pb.MetricCondition(metric_name="m", window=seconds(0.1))),
         "rule.metric.window"),
        (metric_rule(metric=pb.MetricCondition(metric_name="")), "rule.metric.metric_name"),
        (pb.Rule(name="l", logs=pb.LogCondition(filter=qpb.LogFilter(q='"open')),
                 comparator=pb.Rule.GT), "rule.logs.filter.q"),
        (pb.Rule(name="l", logs=pb.LogCondition(filter=qpb.LogFilter(min_severity=99)),
                 comparator=pb.Rule.GT), "rule.logs.filter.min_severity"),
        (pb.Rule(name="l", logs=pb.LogCondition(examples=21), comparator=pb.Rule.GT),
         "rule.logs.examples"),
        (pb.Rule(name="s", spans=pb.SpanCondition(), comparator=pb.Rule.GT),
         "rule.spans.measure"),
        (pb.Rule(name="s", spans=pb.SpanCondition(measure=pb.SpanCondition.LATENCY,
                                                  quantile=1.0), comparator=pb.Rule.GT),
         "rule.spans.quantile"),
        (pb.Rule(name="s", spans=pb.SpanCondition(measure=pb.SpanCondition.ERROR_RATIO,
                                                  group_by=["http.route"]),
                 comparator=pb.Rule.GT), "rule.spans.group_by[0]"),
        (pb.Rule(name="o", slo=pb.SloCondition(spans=pb.SloCondition.SpanEvents(service="c"),
                                               objective=1.0)), "rule.slo.objective"),
        (pb.Rule(name="o", slo=pb.SloCondition(spans=pb.SloCondition.SpanEvents(service="c"),
                                               objective=0.99, period=seconds(3600))),
         "rule.slo.period"),
        (pb.Rule(name="o", slo=pb.SloCondition(objective=0.99)), "rule.slo.events"),
        (pb.Rule(name="o", slo=pb.SloCondition(spans=pb.SloCondition.SpanEvents(service="c"),
                                               objective=0.99), comparator=pb.Rule.GT),
         "rule.comparator"),
        (metric_rule(comparator=pb.Rule.ABSENT, threshold=3), "rule.threshold"),
    ]  # fmt: skip
    for rule, field in cases:
        error = refused(lambda r=rule: project.CreateRule(pb.CreateRuleRequest(rule=r)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
        assert error.details().startswith(f"{field}:"), (field, error.details())
    project.CreateRule(pb.CreateRuleRequest(rule=metric_rule("dup")))
    twice = refused(lambda: project.CreateRule(pb.CreateRuleRequest(rule=metric_rule("dup"))))
    assert twice.code() == grpc.StatusCode.ALREADY_EXISTS
    assert [r.name for r in project.ListRules(pb.ListRulesRequest()).rules] == ["dup"]


def test_a_channel_in_use_cannot_be_deleted(project: Project) -> None:
    channel = project.CreateChannel(
        pb.CreateChannelRequest(channel=pb.Channel(name="c", email=pb.EmailChannel(to=["a@b"])))
    ).channel
    rule = project.CreateRule(pb.CreateRuleRequest(rule=metric_rule(channel_ids=[channel.id])))
    error = refused(lambda: project.DeleteChannel(pb.DeleteChannelRequest(id=channel.id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'HighLatency'" in error.details()
    project.DeleteRule(pb.DeleteRuleRequest(id=rule.rule.id))
    project.DeleteChannel(pb.DeleteChannelRequest(id=channel.id))


def test_a_rule_of_another_project_is_invisible_and_untouchable(
    project: Project, other: Project
) -> None:
    mine = project.CreateRule(pb.CreateRuleRequest(rule=metric_rule())).rule
    theirs_channel = other.CreateChannel(
        pb.CreateChannelRequest(channel=pb.Channel(name="c", email=pb.EmailChannel(to=["a@b"])))
    ).channel
    assert list(other.ListRules(pb.ListRulesRequest()).rules) == []
    edited = metric_rule(id=mine.id, version=1, threshold=9)
    for call in (
        lambda: other.GetRule(pb.GetRuleRequest(id=mine.id)),
        lambda: other.UpdateRule(pb.UpdateRuleRequest(rule=edited)),
        lambda: other.DeleteRule(pb.DeleteRuleRequest(id=mine.id)),
    ):
        assert refused(call).code() == grpc.StatusCode.NOT_FOUND
    # Nor may a rule send to another project's channel.
    error = refused(
        lambda: project.CreateRule(
            pb.CreateRuleRequest(rule=metric_rule("x", channel_ids=[theirs_channel.id]))
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert project.GetRule(pb.GetRuleRequest(id=mine.id)).rule.threshold == 0.5
