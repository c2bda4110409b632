"""Rules as code: a YAML file of channels and rules, turned into AlertService messages,
and the plan that brings a project's channels and rules to what the file says.

The file's format is docs/alerting.md's "Rules as code". Values are the proto's JSON
fields (``metric_name``, ``group_by``, ``keep_firing_for``, ...) with what people write
in Prometheus rule files accepted as well: durations as ``30s``, ``5m``, ``1h``, ``7d``;
comparators as ``>``, ``>=``, ``<``, ``<=``, ``==``, ``!=`` or their names; aggregations
as ``p95``, ``rate``; matchers as ``service.name=checkout`` or ``{name, op, value}``; a
rule's ``channels`` by name. ``${NAME}`` anywhere is replaced by the environment variable
NAME (a secret need not be in git); an unset variable is an error.

Channels and rules are matched by name: a name the project lacks is created, one it has
is updated (``UpdateChannel``/``UpdateRule`` with the version just read), nothing else is
touched (a rule that is not in the file stays). Every change is first checked by the
server (``validate_only``), so a file with one bad rule changes nothing; applying the
same file twice changes nothing the second time.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from google.protobuf import json_format

from otlpd.client.connect import ClientFailure
from otlpd.config import parse_duration

_VARIABLE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MATCHER: Final = re.compile(r"^\s*([^=!~\s]+)\s*(=~|!~|!=|=)\s*(.*)$", re.DOTALL)
_MATCH_OPS: Final = {"=": "OP_EQ", "!=": "OP_NEQ", "=~": "OP_RE", "!~": "OP_NRE"}
_COMPARATORS: Final = {">": "GT", ">=": "GTE", "<": "LT", "<=": "LTE", "==": "EQ", "!=": "NE"}
_DURATIONS: Final = frozenset(
    {"window", "interval", "for", "keep_firing_for", "repeat_interval", "period",
     "latency_threshold", "step", "range"}
)  # fmt: skip
_KINDS: Final = ("metric", "logs", "spans", "slo")
_NOT_SHOWN: Final = ("id", "version", "created_at", "updated_at")


class RuleFileError(ClientFailure):
    """The file is not a rule file this client reads; the message says where."""


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise RuleFileError(f"{where}: ${{{name}}} is not set in the environment")
            return os.environ[name]

        return _VARIABLE.sub(variable, value)
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    return value


def _duration(value: Any, where: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise RuleFileError(f"{where}: {exc}") from None
    else:
        raise RuleFileError(f"{where}: expected a duration such as 30s or 5m, got {value!r}")
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def _matcher(value: Any, where: str) -> Any:
    if isinstance(value, str):
        found = _MATCHER.match(value)
        if not found:
            raise RuleFileError(f"{where}: expected k=v, k!=v, k=~re or k!~re, got {value!r}")
        name, op, text = found.groups()
        return {"name": name, "op": _MATCH_OPS[op], "value": text.strip().strip('"')}
    if isinstance(value, dict) and isinstance(value.get("op"), str):
        op = value["op"]
        return {**value, "op": _MATCH_OPS.get(op, op if op.startswith("OP_") else f"OP_{op}")}
    return value


def _normalize(value: Any, where: str, key: str = "") -> Any:
    """Prometheus-style spellings into the proto's JSON."""
    if key in _DURATIONS and value is not None:
        return _duration(value, where)
    if key == "matchers" and isinstance(value, list):
        return [_matcher(m, f"{where}[{i}]") for i, m in enumerate(value)]
    if key == "aggregation" and isinstance(value, str) and not value.startswith("AGGREGATION_"):
        return f"AGGREGATION_{value.upper()}"
    if key == "comparator" and isinstance(value, str):
        return _COMPARATORS.get(value.strip(), value.strip().upper())
    if key in ("measure", "no_data", "on_error") and isinstance(value, str):
        return value.strip().upper()
    if isinstance(value, dict):
        return {k: _normalize(v, f"{where}.{k}", str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _message(document: Any, message: Any, where: str) -> Any:
    try:
        json_format.ParseDict(document, message)
    except json_format.ParseError as exc:
        raise RuleFileError(f"{where}: {exc}") from None
    return message


@dataclass
class RuleFile:
    """What a file asks for: channels, and rules with their channels by name."""

    channels: list[Any] = field(default_factory=list)
    rules: list[tuple[Any, list[str]]] = field(default_factory=list)


def load(path: Path) -> RuleFile:
    """The file's channels and rules as messages; ``RuleFileError`` saying where."""
    from alerting.proto import pb

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise RuleFileError(f"{path} is not YAML: {exc}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict) or set(document) - {"channels", "rules"}:
        raise RuleFileError(f"{path}: expected a mapping with 'channels' and/or 'rules'")
    document = _expand(document, "")
    loaded = RuleFile()
    names: set[str] = set()
    for i, item in enumerate(document.get("channels") or []):
        where = f"channels[{i}]"
        if not isinstance(item, dict):
            raise RuleFileError(f"{where}: expected a mapping")
        channel = _message(item, pb.Channel(), where)
        if channel.name in names:
            raise RuleFileError(f"{where}: a second channel named {channel.name!r}")
        names.add(channel.name)
        loaded.channels.append(channel)
    rule_names: set[str] = set()
    for i, item in enumerate(document.get("rules") or []):
        where = f"rules[{i}]"
        if not isinstance(item, dict):
            raise RuleFileError(f"{where}: expected a mapping")
        body = dict(item)
        channels = body.pop("channels", []) or []
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise RuleFileError(f"{where}.channels: expected a list of channel names")
        rule = _message(_normalize(body, where), pb.Rule(), where)
        if rule.name in rule_names:
            raise RuleFileError(f"{where}: a second rule named {rule.name!r}")
        rule_names.add(rule.name)
        loaded.rules.append((rule, channels))
    return loaded


# ---- the plan ------------------------------------------------------------------------------


def shown(message: Any, channel_names: Mapping[str, str] | None = None) -> str:
    """A channel or rule as YAML for a diff: no ids, versions or times; channels by name."""
    document = json_format.MessageToDict(message, preserving_proto_field_name=True)
    for key in _NOT_SHOWN:
        document.pop(key, None)
    if channel_names is not None and "channel_ids" in document:
        document["channels"] = [channel_names.get(i, i) for i in document.pop("channel_ids")]
    return yaml.safe_dump(document, sort_keys=True, allow_unicode=True)


def diff(before: str, after: str, label: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{label} (now)",
        tofile=f"{label} (file)",
    )
    return "".join(lines)


@dataclass
class Change:
    """What applying does (or would do) to one channel or rule."""

    what: str  # "channel" or "rule"
    name: str
    action: str  # "create", "update", "unchanged"
    fields: list[str] = field(default_factory=list)
    diff: str = ""


Call = Callable[[str, Any], Any]


def _all(call: Call, rpc: str, request_type: Any, items: str) -> Iterator[Any]:
    token = ""
    while True:
        answer = call(rpc, request_type(page_token=token, limit=1000))
        yield from getattr(answer, items)
        token = answer.next_page_token
        if not token:
            return


def apply(rule_file: RuleFile, call: Call, *, dry_run: bool) -> list[Change]:
    """Brings the project to ``rule_file`` through ``call(rpc, request)``; what changed
    (``dry_run``: what would change; nothing is written)."""
    from alerting.proto import pb

    channels = {c.name: c for c in _all(call, "ListChannels", pb.ListChannelsRequest, "channels")}
    rules = {r.name: r for r in _all(call, "ListRules", pb.ListRulesRequest, "rules")}
    ids = {name: c.id for name, c in channels.items()}
    names = {c.id: name for name, c in channels.items()}
    for i, (_, wanted) in enumerate(rule_file.rules):
        for j, channel in enumerate(wanted):
            if channel not in ids and all(c.name != channel for c in rule_file.channels):
                raise RuleFileError(
                    f"rules[{i}].channels[{j}]: no channel named {channel!r} in the file or "
                    "the project"
                )
    # Every change checked by the server first: a bad rule anywhere changes nothing.
    known = {"channels": channels, "rules": rules, "ids": ids, "names": names}
    planned = _plan(rule_file, call, **known, validate_only=True)
    if dry_run or all(change.action == "unchanged" for change in planned):
        return planned
    return _plan(rule_file, call, **known, validate_only=False)


def _plan(
    rule_file: RuleFile,
    call: Call,
    *,
    channels: dict[str, Any],
    rules: dict[str, Any],
    ids: dict[str, str],
    names: dict[str, str],
    validate_only: bool,
) -> list[Change]:
    from alerting.proto import pb

    ids, names = dict(ids), dict(names)
    changes: list[Change] = []
    for channel in rule_file.channels:
        current = channels.get(channel.name)
        if current is None:
            made = call(
                "CreateChannel",
                pb.CreateChannelRequest(channel=channel, validate_only=validate_only),
            ).channel
            text = diff("", shown(made), f"channel {channel.name}")
            changes.append(Change("channel", channel.name, "create", diff=text))
            if not validate_only:
                ids[channel.name], names[made.id] = made.id, channel.name
            continue
        wanted = pb.Channel()
        wanted.CopyFrom(channel)
        wanted.id, wanted.version = current.id, current.version
        answer = call(
            "UpdateChannel", pb.UpdateChannelRequest(channel=wanted, validate_only=validate_only)
        )
        if not answer.changed:
            changes.append(Change("channel", channel.name, "unchanged"))
            continue
        text = diff(shown(current), shown(answer.channel), f"channel {channel.name}")
        if not text:  # only a secret differs: the answers mask it
            text = f"  (secret values differ: {', '.join(answer.changed_fields)})\n"
        changes.append(Change("channel", channel.name, "update", list(answer.changed_fields), text))
    for rule, wanted_channels in rule_file.rules:
        desired = pb.Rule()
        desired.CopyFrom(rule)
        # A channel the file creates has no id during the check: it is left out of the
        # rule the server checks, and shown by name in the diff.
        desired.channel_ids.extend(ids[c] for c in wanted_channels if c in ids)
        current = rules.get(rule.name)
        if current is None:
            made = call(
                "CreateRule", pb.CreateRuleRequest(rule=desired, validate_only=validate_only)
            )
            preview = pb.Rule()
            preview.CopyFrom(made.rule)
            del preview.channel_ids[:]
            preview.channel_ids.extend(ids.get(c, c) for c in wanted_channels)
            text = diff("", shown(preview, names), f"rule {rule.name}")
            changes.append(Change("rule", rule.name, "create", diff=text))
            continue
        desired.id, desired.version = current.id, current.version
        answer = call("UpdateRule", pb.UpdateRuleRequest(rule=desired, validate_only=validate_only))
        missing = [c for c in wanted_channels if c not in ids]
        if not answer.changed and not missing:
            changes.append(Change("rule", rule.name, "unchanged"))
            continue
        after = pb.Rule()
        after.CopyFrom(answer.rule)
        del after.channel_ids[:]
        after.channel_ids.extend(ids.get(c, c) for c in wanted_channels)
        fields = list(answer.changed_fields) or ["channel_ids"]
        text = diff(shown(current, names), shown(after, names), f"rule {rule.name}")
        changes.append(Change("rule", rule.name, "update", fields, text))
    return changes
