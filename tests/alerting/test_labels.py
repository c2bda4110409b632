"""Alert series identity: Alertmanager's fingerprint, alert ids."""

from __future__ import annotations

from alerting.labels import (
    alert_id,
    alert_labels,
    fingerprint,
    fingerprint_hex,
    parse_alert_id,
    to_signed,
)


def test_the_fingerprint_is_alertmanagers() -> None:
    # Prometheus common/model: the empty set is FNV-1a's offset basis; a set's
    # fingerprint does not depend on insertion order.
    assert fingerprint({}) == 14695981039346656037
    # FNV-1a 64 of b"alertname\xffHighLatency\xff", computed by hand from the definition.
    h = 14695981039346656037
    for byte in b"alertname\xffHighLatency\xff":
        h = ((h ^ byte) * 1099511628211) % 2**64
    assert fingerprint({"alertname": "HighLatency"}) == h
    a = fingerprint({"alertname": "x", "service": "checkout", "severity": "page"})
    b = fingerprint({"severity": "page", "service": "checkout", "alertname": "x"})
    assert a == b
    assert a != fingerprint({"alertname": "x", "service": "checkout", "severity": "ticket"})
    # The separator keeps name/value boundaries apart.
    assert fingerprint({"ab": "c"}) != fingerprint({"a": "bc"})


def test_rule_labels_override_series_labels_and_alertname_is_the_rules_name() -> None:
    labels = alert_labels(
        "HighErrors", {"severity": "page"}, {"severity": "low", "alertname": "x", "svc": "a"}
    )
    assert labels == {"alertname": "HighErrors", "severity": "page", "svc": "a"}


def test_alert_ids_round_trip_through_signed_fingerprints() -> None:
    value = fingerprint({"alertname": "x"})
    text = alert_id("0123abcd4567ef89", value)
    assert text == f"0123abcd4567ef89-{fingerprint_hex(value)}"
    assert parse_alert_id(text) == ("0123abcd4567ef89", to_signed(value))
    assert to_signed(2**64 - 1) == -1
    assert fingerprint_hex(-1) == "ffffffffffffffff"
    for bad in ("", "abc", "rule-xyz", "rule-123", "-0123456789abcdef", "r-0123456789abcdeg"):
        assert parse_alert_id(bad) is None
