"""What a notification says: the Alertmanager webhook document, and the Slack and e-mail
messages rendered from it.

The outbox keeps one document per notification: Alertmanager's webhook payload, version
"4" (prometheus/alertmanager ``notify/webhook``: ``version``, ``groupKey``,
``truncatedAlerts``, ``status``, ``receiver``, ``groupLabels``, ``commonLabels``,
``commonAnnotations``, ``externalURL``, ``alerts[]`` with ``status``, ``labels``,
``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``, ``fingerprint``), so a
receiver written for Alertmanager takes a webhook channel's POST unchanged. A firing
alert's ``endsAt`` is Go's zero time, as Alertmanager sends it. Slack's incoming-webhook
message (``text`` for notifications, ``blocks`` for the message, Slack's Block Kit) and
the e-mail (plain text) are rendered from that same document when they are sent.

otlpd adds annotations of its own, prefixed ``otlpd_``: ``otlpd_examples`` (a log rule's
newest matching lines, one per line) and ``otlpd_flapping`` (on the one notification of
a series marked flapping).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Final

from alerting.labels import fingerprint_hex

VERSION: Final = "4"
ZERO_TIME: Final = "0001-01-01T00:00:00Z"
MAX_ALERTS: Final = 200  # per message; the rest are counted in truncatedAlerts
EXAMPLES_ANNOTATION: Final = "otlpd_examples"
_SLACK_TEXT_CHARS: Final = 2900  # a section block's text is at most 3,000 characters


def rfc3339(moment: datetime | None) -> str:
    """``moment`` as RFC 3339 in UTC with a Z (Go's time.Time JSON); None: zero time."""
    if moment is None:
        return ZERO_TIME
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def group_key(rule_id: str, labels: Mapping[str, str], group_by: Sequence[str]) -> str:
    """``<rule id>{name="value",...}`` over ``group_by``, sorted: an incident's group and
    a notification's ``groupKey``."""
    pairs = ",".join(f"{k}={json.dumps(labels.get(k, ''))}" for k in sorted(group_by))
    return f"{rule_id}{{{pairs}}}"


def group_labels(
    rule_name: str, labels: Mapping[str, str], group_by: Sequence[str]
) -> dict[str, str]:
    """The labels the group shares: alertname and the rule's ``incident_group_by``."""
    found = {k: labels[k] for k in group_by if labels.get(k)}
    return {"alertname": rule_name, **found}


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert of a message."""

    fingerprint: int
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime | None
    ends_at: datetime | None  # None while firing


def generator_url(external_url: str, rule_id: str) -> str:
    """Where the alert comes from: the rule under the external URL (empty without one)."""
    return f"{external_url.rstrip('/')}/rules/{rule_id}" if external_url else ""


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    common = dict(maps[0])
    for other in maps[1:]:
        common = {k: v for k, v in common.items() if other.get(k) == v}
    return common


def webhook(
    *,
    status: str,
    receiver: str,
    group_key: str,
    group_labels: Mapping[str, str],
    alerts: Sequence[AlertView],
    external_url: str,
    rule_id: str,
) -> dict[str, Any]:
    """The Alertmanager webhook document (version 4) of one notification."""
    kept = list(alerts[:MAX_ALERTS])
    shown = [
        {
            "status": "firing" if a.ends_at is None else "resolved",
            "labels": dict(a.labels),
            "annotations": dict(a.annotations),
            "startsAt": rfc3339(a.starts_at),
            "endsAt": rfc3339(a.ends_at),
            "generatorURL": generator_url(external_url, rule_id),
            "fingerprint": fingerprint_hex(a.fingerprint),
        }
        for a in kept
    ]
    return {
        "receiver": receiver,
        "status": status,
        "alerts": shown,
        "groupLabels": dict(group_labels),
        "commonLabels": _common([a.labels for a in kept]),
        "commonAnnotations": _common([a.annotations for a in kept]),
        "externalURL": external_url,
        "version": VERSION,
        "groupKey": group_key,
        "truncatedAlerts": len(alerts) - len(kept),
    }


def _title(document: Mapping[str, Any]) -> str:
    alerts = document.get("alerts", [])
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    name = document.get("groupLabels", {}).get("alertname", "alert")
    status = str(document.get("status", "firing")).upper()
    count = f":{firing}" if status == "FIRING" else ""
    extras = ", ".join(
        f"{k}={v}" for k, v in sorted(document.get("groupLabels", {}).items()) if k != "alertname"
    )
    return f"[{status}{count}] {name}" + (f" ({extras})" if extras else "")


def _alert_lines(alert: Mapping[str, Any]) -> list[str]:
    annotations = alert.get("annotations", {})
    lines = []
    summary = annotations.get("summary") or annotations.get("description")
    if summary:
        lines.append(str(summary))
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.get("labels", {}).items()))
    lines.append(f"labels: {labels}")
    for key, value in sorted(annotations.items()):
        if key in ("summary", "description") and value == summary:
            continue
        if key == EXAMPLES_ANNOTATION:
            lines.append("examples:")
            lines += [f"  {line}" for line in str(value).splitlines()]
            continue
        lines.append(f"{key}: {value}")
    lines.append(f"since: {alert.get('startsAt', '')}")
    if alert.get("status") == "resolved":
        lines.append(f"resolved: {alert.get('endsAt', '')}")
    return lines


def text(document: Mapping[str, Any]) -> str:
    """A plain-text rendering: the title, then each alert."""
    out = [_title(document), ""]
    for alert in document.get("alerts", []):
        out.append(f"- {str(alert.get('status', '')).upper()}")
        out += [f"  {line}" for line in _alert_lines(alert)]
        out.append("")
    if document.get("truncatedAlerts"):
        out.append(f"... and {document['truncatedAlerts']} more alerts")
    return "\n".join(out).rstrip() + "\n"


def slack(document: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (the notification's fallback) and
    ``blocks`` (a header, then a section per alert, in mrkdwn)."""
    title = _title(document)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}}
    ]
    for alert in document.get("alerts", [])[:45]:  # Slack takes 50 blocks a message
        body = "\n".join(_alert_lines(alert))
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{str(alert.get('status', '')).upper()}*\n{body}"[:_SLACK_TEXT_CHARS],
                },
            }
        )
    if document.get("externalURL"):
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{document['externalURL']}|otlpd>"}],
            }
        )
    return {"text": title, "blocks": blocks}


def email(document: Mapping[str, Any], *, sender: str, to: Sequence[str]) -> EmailMessage:
    """The e-mail of a notification: the title as subject, ``text`` as the body."""
    message = EmailMessage()
    message["Subject"] = _title(document)
    message["From"] = sender
    message["To"] = ", ".join(to)
    message.set_content(text(document))
    return message
