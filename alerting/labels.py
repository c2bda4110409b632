"""Alert series identity: the label set of an alert, its fingerprint, and its id.

An alert series is one rule and one label set: ``alertname`` (the rule's name), the
rule's own labels, and the labels the query answered for the series (query labels win
over nothing: a rule label of the same name wins, as Prometheus lets rule labels
override the series'). Its fingerprint is Alertmanager's (Prometheus common/model
``LabelSet.Fingerprint``: FNV-1a 64 over the label names in sorted order, each name and
value followed by the byte 0xff), so the webhook payload's ``fingerprint`` is the one
Alertmanager receivers already know. PostgreSQL keeps it as a signed bigint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

ALERTNAME: Final = "alertname"
_OFFSET64: Final = 14695981039346656037
_PRIME64: Final = 1099511628211
_MASK64: Final = (1 << 64) - 1
_SEPARATOR: Final = 0xFF


def alert_labels(
    rule_name: str, rule_labels: Mapping[str, str], series_labels: Mapping[str, str]
) -> dict[str, str]:
    """The label set of one alert series: the series', then the rule's, then alertname."""
    labels = dict(series_labels)
    labels.update(rule_labels)
    labels[ALERTNAME] = rule_name
    return labels


def fingerprint(labels: Mapping[str, str]) -> int:
    """Alertmanager's fingerprint of ``labels``, as an unsigned 64-bit int."""
    h = _OFFSET64
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8"):
                h = ((h ^ byte) * _PRIME64) & _MASK64
            h = ((h ^ _SEPARATOR) * _PRIME64) & _MASK64
    return h


def fingerprint_hex(value: int) -> str:
    """16 lowercase hex digits, as Alertmanager prints a fingerprint (signed or not)."""
    return f"{value & _MASK64:016x}"


def to_signed(value: int) -> int:
    """The unsigned fingerprint as the signed bigint PostgreSQL stores."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def alert_id(rule_id: str, value: int) -> str:
    """``Alert.id``: ``<rule id>-<fingerprint hex>``."""
    return f"{rule_id}-{fingerprint_hex(value)}"


def parse_alert_id(text: str) -> tuple[str, int] | None:
    """``(rule_id, signed fingerprint)`` of an ``Alert.id``, or None if it is not one."""
    rule_id, sep, digits = text.rpartition("-")
    if not sep or not rule_id or len(digits) != 16:
        return None
    try:
        value = int(digits, 16)
    except ValueError:
        return None
    return rule_id, to_signed(value)
