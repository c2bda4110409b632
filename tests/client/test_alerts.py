"""``otlpd alerts``, ``otlpd rules list`` and ``otlpd rules apply`` against a real otlpd:
the docs' full example applied as written, twice (the second time changes nothing), a dry
run that changes nothing, and a changed file shown as a diff."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import psycopg
import pytest

from alerting.proto import pb, pb_grpc
from tests.conftest import RunningOtlpd
from tests.test_docs import ROOT, blocks

EXAMPLE = blocks(ROOT / "docs" / "alerting.md", "Rules as code", "yaml")[0]


def use_cli(server: RunningOtlpd, monkeypatch: pytest.MonkeyPatch) -> RunningOtlpd:
    """The terminal client's environment pointed at ``server``, project ``shop``."""
    monkeypatch.setenv("OTLPD_QUERY_ENDPOINT", f"127.0.0.1:{server.app.ports.query}")
    monkeypatch.setenv("OTLPD_PROJECT", "shop")
    monkeypatch.setenv("ONCALL_WEBHOOK_TOKEN", "t0ken")
    monkeypatch.delenv("OTLPD_TOKEN", raising=False)
    return server


@pytest.fixture
def cli_env(otlpd: RunningOtlpd, monkeypatch: pytest.MonkeyPatch) -> RunningOtlpd:
    return use_cli(otlpd, monkeypatch)


@pytest.fixture
def alerts(otlpd: RunningOtlpd) -> Iterator[pb_grpc.AlertServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{otlpd.app.ports.query}") as channel:
        yield pb_grpc.AlertServiceStub(channel)  # type: ignore[no-untyped-call]


SHOP = (("x-otlpd-project", "shop"),)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from otlpd.__main__ import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def audit_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_log WHERE project_id = 'shop'").fetchone()
    assert row is not None
    return int(row[0])


def test_the_docs_example_applies_as_written_and_twice_is_a_no_op(
    cli_env: RunningOtlpd,
    monkeypatch: pytest.MonkeyPatch,
    alerts: pb_grpc.AlertServiceStub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(EXAMPLE)

    code, out, err = run(capsys, "rules", "apply", str(path), "--dry-run")
    assert (code, err) == (0, "")
    assert "channel oncall-webhook: would create" in out
    assert "rule CheckoutSlow: would create" in out
    assert "+threshold: 0.5" in out and "t0ken" not in out
    summary = "dry run: 8 to create, 0 to update, 0 unchanged; nothing was changed"
    assert out.rstrip().endswith(summary)
    assert list(alerts.ListRules(pb.ListRulesRequest(), metadata=SHOP).rules) == []
    assert audit_count(cli_env.database_url) == 0

    code, out, err = run(capsys, "rules", "apply", str(path))
    assert (code, err) == (0, "")
    assert out.rstrip().endswith("8 created, 0 updated, 0 unchanged")
    rules = {r.name: r for r in alerts.ListRules(pb.ListRulesRequest(), metadata=SHOP).rules}
    assert sorted(rules) == [
        "CheckoutAvailability", "CheckoutErrors", "CheckoutSlow", "MetricsStopped",
        "PaymentFailures",
    ]  # fmt: skip
    channels = {
        c.name: c.id for c in alerts.ListChannels(pb.ListChannelsRequest(), metadata=SHOP).channels
    }
    assert list(rules["CheckoutSlow"].channel_ids) == [
        channels["oncall-webhook"],
        channels["team-slack"],
    ]
    assert getattr(rules["CheckoutSlow"], "for").seconds == 120
    assert rules["CheckoutAvailability"].slo.objective == 0.999
    written = audit_count(cli_env.database_url)
    assert written == 8

    code, out, err = run(capsys, "rules", "apply", str(path))
    assert (code, err) == (0, "")
    assert out.rstrip().endswith("nothing to change: 8 channels and rules as in " + str(path))
    assert audit_count(cli_env.database_url) == written
    versions = {
        r.name: r.version for r in alerts.ListRules(pb.ListRulesRequest(), metadata=SHOP).rules
    }
    assert set(versions.values()) == {1}

    # A changed threshold and a new secret: a diff, then one update each.
    path.write_text(EXAMPLE.replace("threshold: 0.5", "threshold: 0.75"))
    cli_env_token = "t1ken"
    import os

    os.environ["ONCALL_WEBHOOK_TOKEN"] = cli_env_token
    code, out, err = run(capsys, "rules", "apply", str(path), "--dry-run")
    assert (code, err) == (0, "")
    assert "-threshold: 0.5\n+threshold: 0.75" in out
    assert "channel oncall-webhook: would update (webhook.headers.Authorization)" in out
    assert "secret values differ" in out and "t1ken" not in out
    code, out, err = run(capsys, "rules", "apply", str(path), "--json")
    assert code == 0
    document = json.loads(out)
    updated = [(c["kind"], c["name"]) for c in document["changes"] if c["action"] == "update"]
    assert updated == [("channel", "oncall-webhook"), ("rule", "CheckoutSlow")]
    assert alerts.ListRules(pb.ListRulesRequest(), metadata=SHOP).rules[2].version == 2


def test_a_bad_rule_anywhere_changes_nothing(
    cli_env: RunningOtlpd,
    alerts: pb_grpc.AlertServiceStub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(EXAMPLE.replace("interval: 1m\n", "interval: 500ms\n"))
    code, _, err = run(capsys, "rules", "apply", str(path))
    assert code == 1
    assert err.startswith("otlpd: INVALID_ARGUMENT: rule.interval: must be at least 1s")
    assert list(alerts.ListChannels(pb.ListChannelsRequest(), metadata=SHOP).channels) == []
    missing = tmp_path / "missing.yaml"
    missing.write_text("rules:\n  - {name: r, channels: [nowhere], metric: {metric_name: m}}\n")
    code, _, err = run(capsys, "rules", "apply", str(missing))
    assert code == 1 and "rules[0].channels[0]: no channel named 'nowhere'" in err


def test_rules_list_and_alerts(
    start_otlpd: Callable[..., RunningOtlpd],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No evaluator: the firing alert below is written as the evaluator would write it, and
    # an evaluation of the rule in between (it has no data) would rewrite it (seen in CI).
    cli_env = use_cli(start_otlpd(scheduler="false"), monkeypatch)
    path = tmp_path / "rules.yaml"
    path.write_text(EXAMPLE)
    assert run(capsys, "rules", "apply", str(path))[0] == 0
    code, out, err = run(capsys, "rules", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "CONDITION", "INTERVAL", "FOR", "CHANNELS", "VERSION", "ID"]
    slow = next(line for line in lines if line.startswith("CheckoutSlow"))
    assert "p95(http.server.duration) > 0.5" in slow and " 30s " in slow and " 2m" in slow
    assert re.search(r"absent", next(line for line in lines if line.startswith("MetricsStopped")))

    code, out, err = run(capsys, "alerts")
    assert (code, out.strip(), err) == (0, "no alerts firing or pending", "")
    # One firing alert, as the evaluator writes it.
    code, out, _ = run(capsys, "rules", "list", "--json")
    rule = next(r for r in json.loads(out)["rules"] if r["name"] == "CheckoutSlow")
    with psycopg.connect(cli_env.database_url) as conn:
        conn.execute(
            "INSERT INTO alert_state (project_id, rule_id, fingerprint, labels, state, value,"
            " active_at, fired_at, last_evaluated_at, rule_version) VALUES ('shop', %s, 42,"
            ' \'{"alertname": "CheckoutSlow", "service.name": "checkout"}\', \'firing\','
            " 0.93, now(), now(), now(), 1)",
            (rule["id"],),
        )
    code, out, err = run(capsys, "alerts")
    assert (code, err) == (0, "")
    header, row = out.splitlines()
    assert header.split() == ["STATE", "SINCE", "VALUE", "ALERTNAME", "LABELS"]
    assert row.startswith("firing") and "0.93" in row and "CheckoutSlow" in row
    assert row.endswith("service.name=checkout")
    code, out, _ = run(capsys, "alerts", "--json")
    assert json.loads(out)["alerts"][0]["state"] == "ALERT_STATE_FIRING"


def test_the_readme_alerting_commands_run_as_written(
    cli_env: RunningOtlpd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shlex

    block = blocks(ROOT / "README.md", "Alerting", "sh")[0]
    (tmp_path / "rules.yaml").write_text(EXAMPLE)
    monkeypatch.chdir(tmp_path)
    outputs = {}
    for line in block.strip().splitlines():
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == "otlpd"
        code, out, err = run(capsys, *argv[1:])
        assert (code, err) == (0, ""), line
        outputs[" ".join(argv[1:])] = out
    assert "nothing was changed" in outputs["rules apply rules.yaml --dry-run"]
    assert "8 created" in outputs["rules apply rules.yaml"]
    assert "CheckoutSlow" in outputs["rules list"]
    # The evaluator runs: MetricsStopped (ABSENT, for 10m) may be pending already; nothing
    # fires.
    listed = outputs["alerts"].strip().splitlines()
    assert listed == ["no alerts firing or pending"] or all(
        row.startswith("pending") for row in listed[1:]
    ), listed
    assert (
        "rule CheckoutSlow: 2881 evaluations every 30s, 0 failed"
        in outputs["rules test rules.yaml --since 24h"]
    )
    shown = json.loads(outputs["alerts --state all --json"]).get("alerts", [])
    assert {a["state"] for a in shown} <= {"ALERT_STATE_PENDING", "ALERT_STATE_INACTIVE"}


def test_help_lists_the_alerting_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from otlpd.__main__ import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "alerts" in text and "rules" in text
    with pytest.raises(SystemExit):
        main(["rules", "--help"])
    text = capsys.readouterr().out
    assert "apply" in text and "list" in text


RULES_TO_TEST = """
rules:
  - name: PaymentFailures
    logs:
      filter: {q: '"payment failed"', service: checkout}
      window: 5m
    comparator: ">"
    threshold: 3
    interval: 10s
    channels: [nobody]
  - name: Quiet
    logs: {filter: {q: nothing-matches-this}, window: 1m}
    comparator: ">"
    threshold: 0
"""


def test_rules_test_backtests_each_rule_of_a_file(
    cli_env: RunningOtlpd, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from tests.alerting.conftest import send_logs

    send_logs(cli_env, ["payment failed: card declined"] * 5, project="shop")
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_TO_TEST)
    code, out, err = run(capsys, "rules", "test", str(path), "--since", "2m")
    assert (code, err) == (0, "")
    first, second = out.split("\n\n")
    lines = first.splitlines()
    assert lines[0] == "rule PaymentFailures: 13 evaluations every 10s, 0 failed"
    assert lines[1].split() == ["STATE", "MIN", "MAX", "LAST", "LABELS"]
    assert lines[2].split()[:4] == ["firing", "0", "5", "5"]  # 0 before the records
    assert lines[3].split() == ["TIME", "TRANSITION", "VALUE", "LABELS"]
    assert lines[4].split()[1:3] == ["firing", "5"]
    assert second.splitlines()[0] == "rule Quiet: 5 evaluations every 30s, 0 failed"
    assert "no transitions: it would not have fired" in second
    code, out, _ = run(
        capsys, "rules", "test", str(path), "--since", "0", "--rule", "Quiet", "--json"
    )
    (report,) = json.loads(out)
    assert report["rule"] == "Quiet" and report["evaluations"] == 1
    assert report["series"][0]["values"][0].get("value", 0) == 0  # proto JSON omits 0
    code, _, err = run(capsys, "rules", "test", str(path), "--rule", "Nope")
    assert code != 0 and "no rule named Nope" in err


FAST_RULE = """
rules:
  - name: Fast
    logs: {filter: {q: nothing-matches-this}, window: 1m}
    comparator: ">"
    threshold: 0
    interval: 1s
"""


def test_rules_test_steps_wider_than_an_interval_that_would_make_too_many_evaluations(
    cli_env: RunningOtlpd, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "fast.yaml"
    path.write_text(FAST_RULE)
    code, out, err = run(capsys, "rules", "test", str(path), "--since", "4h")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    # 1 s over 4 h would be 14,401 evaluations, over the 11,000 a backtest takes
    assert lines[0] == "rule Fast: 7201 evaluations every 2s, 0 failed"
    assert lines[1].startswith("  stepped every 2s, not at the rule's interval (1s)")
    code, _, err = run(capsys, "rules", "test", str(path), "--since", "4h", "--step", "1s")
    assert code != 0 and "14401 evaluations" in err
