"""The alerting subcommands of ``otlpd``: ``alerts`` (what fires now), ``rules list``,
``rules apply FILE.yaml [--dry-run]`` (rules as code, ``otlpd.client.rulefile``) and
``rules test FILE.yaml --since 24h`` (each rule of a file backtested by TestRule).

They talk to a running server's AlertService with the query client's connection flags
(``--addr``/``OTLPD_QUERY_ENDPOINT``, ``--project``/``OTLPD_PROJECT``,
``--token``/``OTLPD_TOKEN``, TLS files): the alerting API shares the query port.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STATES = ("firing", "pending", "inactive", "all")


def add_commands(command: Callable[..., Any], group: Callable[[str, str], Any]) -> None:
    """``alerts`` and ``rules``; ``command`` and ``group`` are ``commands.add_commands``'."""
    alerts = command("alerts", _alerts, "alerts firing and pending now (alerting API)")
    alerts.add_argument(
        "--state", choices=_STATES, action="append", default=[],
        help="only these states (default: firing and pending; all: inactive too)",
    )  # fmt: skip
    alerts.add_argument("--rule", default="", help="only this rule's (its id)")
    alerts.add_argument("--limit", type=int, default=0, help="at most this many (0: default)")
    alerts.set_defaults(service="alerting")

    rules = group("rules", "alerting rules: list them, apply a file of them (alerting API)")
    listing = command("list", _rules_list, "the project's rules", rules)
    listing.set_defaults(service="alerting")
    apply = command(
        "apply",
        _rules_apply,
        "create or update channels and rules from a YAML file, by name (docs/alerting.md)",
        rules,
    )
    apply.add_argument("file", type=Path, metavar="FILE.yaml")
    apply.add_argument(
        "--dry-run", action="store_true", help="print what would change, as a diff; change nothing"
    )
    apply.set_defaults(service="alerting")
    test = command(
        "test",
        _rules_test,
        "backtest the rules of a YAML file over a past range: their values and transitions",
        rules,
    )
    test.add_argument("file", type=Path, metavar="FILE.yaml")
    test.add_argument(
        "--since", default="24h", help="from this long ago until now (default 24h; 0: now only)"
    )
    test.add_argument("--step", default="", help="between evaluations (default: each interval)")
    test.add_argument("--rule", action="append", default=[], help="only the rule of this name")
    test.set_defaults(service="alerting")


def _call(args: argparse.Namespace, stub: Any) -> Callable[[str, Any], Any]:
    target = args.target

    def call(rpc: str, request: Any) -> Any:
        return getattr(stub, rpc)(request, metadata=target.metadata, timeout=target.timeout)

    return call


def _alerts(args: argparse.Namespace, stub: Any) -> int:
    from alerting.proto import pb
    from otlpd.client.commands import _answer
    from otlpd.client.render import alerts_table

    wanted = set(args.state)
    states = (
        [pb.ALERT_STATE_FIRING, pb.ALERT_STATE_PENDING, pb.ALERT_STATE_INACTIVE]
        if "all" in wanted
        else [getattr(pb, f"ALERT_STATE_{s.upper()}") for s in _STATES[:3] if s in wanted]
    )
    request = pb.ListAlertsRequest(states=states, rule_id=args.rule, limit=args.limit)
    response = _call(args, stub)("ListAlerts", request)
    return _answer(args, response, lambda r: alerts_table(r.alerts))


def _rules_list(args: argparse.Namespace, stub: Any) -> int:
    from alerting.proto import pb
    from otlpd.client.commands import _answer
    from otlpd.client.render import rules_table

    call = _call(args, stub)
    response = pb.ListRulesResponse()
    token = ""
    while True:
        page = call("ListRules", pb.ListRulesRequest(page_token=token, limit=1000))
        response.rules.extend(page.rules)
        token = page.next_page_token
        if not token:
            break
    return _answer(args, response, lambda r: rules_table(r.rules))


def _rules_apply(args: argparse.Namespace, stub: Any) -> int:
    import json

    from otlpd.client import rulefile

    loaded = rulefile.load(args.file)
    changes = rulefile.apply(loaded, _call(args, stub), dry_run=args.dry_run)
    if args.json:
        document = [
            {"kind": c.what, "name": c.name, "action": c.action, "fields": c.fields}
            for c in changes
        ]
        print(json.dumps({"dry_run": args.dry_run, "changes": document}, indent=2))
        return 0
    verb = {"create": "would create", "update": "would update"} if args.dry_run else {
        "create": "created", "update": "updated"
    }  # fmt: skip
    counts = {"create": 0, "update": 0, "unchanged": 0}
    for change in changes:
        counts[change.action] += 1
        if change.action == "unchanged":
            print(f"{change.what} {change.name}: unchanged")
            continue
        fields = f" ({', '.join(change.fields)})" if change.fields else ""
        print(f"{change.what} {change.name}: {verb[change.action]}{fields}")
        if args.dry_run and change.diff:
            sys.stdout.write(change.diff if change.diff.endswith("\n") else change.diff + "\n")
    if counts["create"] == counts["update"] == 0:
        print(f"nothing to change: {counts['unchanged']} channels and rules as in {args.file}")
    elif args.dry_run:
        print(
            f"dry run: {counts['create']} to create, {counts['update']} to update, "
            f"{counts['unchanged']} unchanged; nothing was changed"
        )
    else:
        print(
            f"{counts['create']} created, {counts['update']} updated, "
            f"{counts['unchanged']} unchanged"
        )
    return 0


def _rules_test(args: argparse.Namespace, stub: Any) -> int:
    import json
    import time

    from google.protobuf import json_format

    from alerting.proto import pb
    from otlpd.client import rulefile
    from otlpd.client.connect import ClientFailure
    from otlpd.client.render import duration_text, test_report
    from otlpd.config import parse_duration

    loaded = rulefile.load(args.file)
    wanted = set(args.rule)
    chosen = [rule for rule, _ in loaded.rules if not wanted or rule.name in wanted]
    if wanted - {rule.name for rule in chosen}:
        raise ClientFailure(f"no rule named {', '.join(sorted(wanted))} in {args.file}")
    try:
        since = parse_duration(args.since)
        step = parse_duration(args.step) if args.step else 0.0
    except ValueError as exc:
        raise ClientFailure(str(exc)) from None
    call = _call(args, stub)
    now = time.time_ns()
    reports = []
    notes: dict[str, str] = {}
    for rule in chosen:
        request = pb.TestRuleRequest(rule=rule)
        request.end_time.FromNanoseconds(now)
        if since > 0:
            request.start_time.FromNanoseconds(now - round(since * 1e9))
        if step:
            request.step.FromNanoseconds(round(step * 1e9))
        answer = call("TestRule", request)
        reports.append((rule.name, answer))
        interval_ns = rule.interval.ToNanoseconds() if rule.HasField("interval") else 0
        if not step and interval_ns and answer.step.ToNanoseconds() > interval_ns:
            notes[rule.name] = (
                f"stepped every {duration_text(answer.step.ToNanoseconds())}, not at the "
                f"rule's interval ({duration_text(interval_ns)}): that would make more "
                "evaluations than a backtest takes; --step to choose"
            )
    if args.json:
        document = [
            {"rule": name, **json_format.MessageToDict(answer, preserving_proto_field_name=True)}
            for name, answer in reports
        ]
        print(json.dumps(document, indent=2))
        return 0
    print("\n\n".join(test_report(name, answer, notes.get(name)) for name, answer in reports))
    return 0
