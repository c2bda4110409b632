"""Reading a rule file: Prometheus spellings into the proto, ${VAR}s, and errors that say
where."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.proto import pb
from otlpd.client.rulefile import RuleFileError, load
from query.proto import pb as qpb


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_prometheus_spellings_become_the_proto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    loaded = load(
        write(
            tmp_path,
            """
channels:
  - name: hook
    webhook: {url: "https://h.example/x", headers: {Authorization: "Bearer ${HOOK_TOKEN}"}}
rules:
  - name: r
    metric:
      metric_name: m
      matchers: ["service.name=checkout", 'env=~"prod|stg"', {name: a, op: "!=", value: b}]
      aggregation: p95
      window: 90s
    comparator: ">="
    threshold: 2
    for: 1.5m
    keep_firing_for: 1h
    interval: 10
    no_data: alerting
    channels: [hook]
""",
        )
    )
    (channel,) = loaded.channels
    assert channel.webhook.headers["Authorization"] == "Bearer s3cret"
    ((rule, channels),) = loaded.rules
    assert channels == ["hook"]
    assert [(m.name, m.op, m.value) for m in rule.metric.matchers] == [
        ("service.name", qpb.LabelMatcher.OP_EQ, "checkout"),
        ("env", qpb.LabelMatcher.OP_RE, "prod|stg"),
        ("a", qpb.LabelMatcher.OP_NEQ, "b"),
    ]
    assert rule.metric.aggregation == qpb.AGGREGATION_P95
    assert rule.metric.window.seconds == 90 and getattr(rule, "for").seconds == 90
    assert rule.keep_firing_for.seconds == 3600 and rule.interval.seconds == 10
    assert rule.comparator == pb.Rule.GTE and rule.no_data == pb.Rule.ALERTING


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("rules:\n  - {name: r, bogus: 1}", "rules[0]"),
        ("rules:\n  - {name: r, for: soon}", "rules[0].for"),
        ("rules:\n  - {name: r, metric: {metric_name: m, matchers: ['nope']}}",
         "rules[0].metric.matchers[0]"),
        ("channels:\n  - {name: c, webhook: {url: '${UNSET_VARIABLE_X}'}}",
         "channels[0].webhook.url"),
        ("channels:\n  - {name: c}\n  - {name: c}", "channels[1]"),
        ("rules:\n  - {name: r, channels: nope}", "rules[0].channels"),
        ("- just a list", "rules.yaml"),
        ("rules: [", "rules.yaml"),
    ],
)  # fmt: skip
def test_errors_say_where(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        load(write(tmp_path, text))
    assert where in str(caught.value), str(caught.value)
