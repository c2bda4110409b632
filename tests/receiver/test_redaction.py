"""Redaction: the patterns, keys and IPs of ``otlpd.receiver.redaction``, and the decoder
applying them to every attribute list, log bodies and span texts before anything is stored."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.metrics.v1.metrics_pb2 import Exemplar
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otlpd.envelope import EnvelopeKeys, SessionCache
from otlpd.receiver.decode import DecodeLimits, DecodePolicy, Decoder
from otlpd.receiver.redaction import (
    REDACTED,
    Redaction,
    Redactor,
    anonymized_ip,
    luhn,
)
from tests.receiver.test_decode import (
    NOW,
    OTHER_TRACE,
    any_value,
    attrs,
    gauge,
    log,
    logs,
    logs_of,
    metrics,
    number,
    points_of,
    resources_of,
    series_of,
    span,
    spans_of,
    traces,
)

CARD = "4111 1111 1111 1111"  # Luhn-valid (the classic test Visa)
CARDS = ["4111111111111111", "5500-0000-0000-0004", "378282246310005", "6011 0009 9013 9424"]


def redactor(settings: Redaction | None = None, counts: list[str] | None = None) -> Redactor:
    return Redactor(settings or Redaction(), True, (counts if counts is not None else []).append)


# -- patterns ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Authorization: Bearer eyJhbGciOi.J9.x-_~+/=", "Authorization: Bearer [REDACTED]"),
        ("auth=bearer abc123 then", "auth=bearer [REDACTED] then"),
        ("BEARER  tok.en", "BEARER [REDACTED]"),
        (
            "GET https://alice:s3cr3t@db.example.com:5432/x",
            "GET https://[REDACTED]@db.example.com:5432/x",
        ),
        ("redis://:pw@cache/0 and ftp://u@h", "redis://[REDACTED]@cache/0 and ftp://[REDACTED]@h"),
        (f"card {CARD} declined", "card [REDACTED] declined"),
        ("paid with 5500-0000-0000-0004.", "paid with [REDACTED]."),
        ("mail alice.o'brien+tag@mail.example.co.uk now", "mail [REDACTED] now"),
        ("From: Bob <bob@example.org>", "From: Bob <[REDACTED]>"),
        ("user 'carol@example.org' locked", "user '[REDACTED]' locked"),
        (
            "Bearer t0k for carol@example.com paid 378282246310005 via https://u:p@x.io",
            "Bearer [REDACTED] for [REDACTED] paid [REDACTED] via https://[REDACTED]@x.io",
        ),
    ],
)
def test_patterns_mask_the_secret_and_keep_the_rest(text: str, masked: str) -> None:
    counts: list[str] = []
    assert redactor(counts=counts).mask(text) == masked
    assert counts == ["pattern"]  # one per value, however many matches


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # not Luhn-valid
        "order 1700000000123 at 1700000000123456789",  # timestamps (ms, ns): start with 1
        "4111111111111111111111",  # 22 digits: an id, not a card
        "trace 0af7651916cd43dd8448eb211c80319c and a4111111111111111b",  # inside hex ids
        "+49 30 1234 5678",  # a phone number: too few digits
        "user@localhost",  # no domain
        "https://example.com/path?mail=nobody",
        "the bearer of bad news",  # a word, not a token
        "ratio 0.4111111111111111, total 4111111111111111.25",  # decimals
    ],
)
def test_what_merely_looks_like_a_secret_is_kept(text: str) -> None:
    r = redactor()
    assert r.mask(text) is text


def test_every_built_in_card_is_luhn_valid() -> None:
    assert all(luhn(c.replace(" ", "").replace("-", "")) for c in CARDS)
    assert not luhn("4111111111111112")
    for card in CARDS:
        assert redactor().mask(f"cc={card};") == f"cc={REDACTED};"


def test_text_without_candidates_is_returned_as_is() -> None:
    r = redactor()
    for text in ["", "GET", "/api/v1/products/12345", "timed out after 12s", "x" * 10_000]:
        assert r.mask(text) is text


def test_patterns_can_be_chosen_and_extended() -> None:
    only_email = redactor(Redaction(patterns=("email",), regex=r"acct-\d{6}"))
    text = f"Bearer abc {CARD} a@b.io acct-123456"
    assert only_email.mask(text) == f"Bearer abc {CARD} [REDACTED] [REDACTED]"
    assert redactor(Redaction(enabled=False)).mask(text) is text
    with pytest.raises(ValueError, match="unknown redaction pattern 'ssn'"):
        Redaction(patterns=("ssn",))
    with pytest.raises(ValueError, match="invalid regular expression"):
        Redaction(regex="(")


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000 + "@",  # an e-mail local part that never ends in a domain
        "x@" + "a-" * 100_000,  # a domain that never has a dot
        "https://" + "u" * 200_000,  # user information without "@"
        "1 " * 100_000,  # digits with separators, never 13 in a row
        "bearer " * 30_000,
    ],
)
def test_masking_is_linear_in_the_text(text: str) -> None:
    started = time.perf_counter()
    redactor().mask(text)
    assert time.perf_counter() - started < 0.5


# -- client IPs and keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "anonymized"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1::"),
        ("2001:db8:1:ffff::1", "2001:db8:1::"),
        ("::ffff:203.0.113.77", "::ffff:203.0.113.0"),
        ("::1", "::"),
        ("203.0.113.0", "203.0.113.0"),
        ("not an ip", "not an ip"),
        ("10.0.0", "10.0.0"),
        ("example.com:443", "example.com:443"),
        ("", ""),
    ],
)
def test_client_ips_lose_their_host_part(text: str, anonymized: str) -> None:
    assert anonymized_ip(text) == anonymized


def test_keys_match_case_insensitively_with_header_forms() -> None:
    r = Redactor(Redaction(), True)
    secret = [
        "Authorization",
        "http.request.header.authorization",
        "HTTP.RESPONSE.HEADER.SET_COOKIE",
    ]
    secret += ["api-key", "X_API_KEY", "password", "token"]
    assert {k: r.kind(k) for k in secret} == dict.fromkeys(secret, 1)
    assert [r.kind(k) for k in ["client.address", "http.client-ip", "net.peer.ip"]] == [2, 2, 2]
    plain = ["tokens", "http.request.header.accept", "user.password.hint", "client.port"]
    assert [r.kind(k) for k in plain] == [0, 0, 0, 0]
    assert Redactor(Redaction(), False).kind("client.address") == 0


# -- the decoder: every attribute list, bodies, span texts ----------------------------


SECRETS = {
    "authorization": "Basic dXNlcjpwYXNz",
    "http.request.header.cookie": ["sid=abc", "theme=dark"],
    "password": 12345,
    "note": f"Bearer tok-1 card {CARD} from eve@example.com via https://u:pw@h.io",
    "client.address": "203.0.113.77",
    "nested": {"Token": "t", "list": ["mallory@example.com"], "net.peer.ip": "2001:db8:1:2::9"},
}
CLEAN = {
    "authorization": REDACTED,
    "http.request.header.cookie": [REDACTED],
    "password": REDACTED,
    "note": "Bearer [REDACTED] card [REDACTED] from [REDACTED] via https://[REDACTED]@h.io",
    "client.address": "203.0.113.0",
    "nested": {"Token": REDACTED, "list": [REDACTED], "net.peer.ip": "2001:db8:1::"},
}
LEAKS = ["dXNlcjpw", "sid=abc", "12345", "tok-1", "4111", "eve@", "u:pw", ".77", "mallory", ":9"]


def decoder(
    redaction: Redaction | None = None, counts: list[str] | None = None, **limits: Any
) -> Decoder:
    return Decoder(
        EnvelopeKeys(),
        DecodeLimits(**limits),
        "default",
        SessionCache(),
        redaction=redaction or Redaction(),
        on_redacted=(counts if counts is not None else []).append,
    )


def assert_clean(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, (leak, text)


def test_every_attribute_list_of_a_span_is_redacted() -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(attrs({"service.name": "svc", **SECRETS}))
    ss = rs.scope_spans.add()
    ss.scope.CopyFrom(InstrumentationScope(name="lib", attributes=attrs(SECRETS)))
    ss.spans.append(
        span(
            name="login eve@example.com",
            attributes=attrs(SECRETS),
            status=Status(code=2, message=f"card {CARD} declined"),
            events=[Span.Event(name="mail to eve@example.com", attributes=attrs(SECRETS))],
            links=[Span.Link(trace_id=OTHER_TRACE, attributes=attrs(SECRETS))],
        )
    )
    decoded = decoder().traces(request.SerializeToString(), NOW)
    (got,) = spans_of(decoded)
    assert json.loads(got["attributes"]) == CLEAN
    assert json.loads(got["scope_attributes"]) == CLEAN
    (event,) = json.loads(got["events"])
    assert (event["name"], event["attributes"]) == ("mail to [REDACTED]", CLEAN)
    assert json.loads(got["links"])[0]["attributes"] == CLEAN
    assert (got["name"], got["status_message"]) == ("login [REDACTED]", "card [REDACTED] declined")
    (resource,) = resources_of(decoded)
    assert json.loads(resource["attributes"]) == {"service.name": "svc", **CLEAN}
    for text in (got["attributes"], got["events"], got["links"], resource["attributes"]):
        assert_clean(text)


def test_log_bodies_and_attributes_are_redacted() -> None:
    records = [
        log(body=any_value(SECRETS["note"]), attributes=attrs(SECRETS)),
        log(body=any_value(SECRETS)),  # a kvlist body: keys and values
        log(body=any_value(["a@b.io", 1])),
    ]
    bodies = [json.loads(g["body"]) for g in logs_of(decoder().logs(logs(records), NOW))]
    assert bodies == [CLEAN["note"], CLEAN, [REDACTED, 1]]
    (got,) = logs_of(decoder().logs(logs(records[:1]), NOW))
    assert json.loads(got["attributes"]) == CLEAN


def test_points_exemplars_and_metadata_are_redacted() -> None:
    point = number(
        attributes=attrs({"token": "t", "client.address": "203.0.113.77"}),
        exemplars=[
            Exemplar(time_unix_nano=NOW - 10**9, as_int=1, filtered_attributes=attrs(SECRETS))
        ],
    )
    metric = gauge(point)
    metric.metadata.extend(attrs({"password": "p"}))
    decoded = decoder().metrics(metrics([metric]), NOW)
    (series,) = series_of(decoded)
    assert json.loads(series["attributes"]) == {"client.address": "203.0.113.0", "token": REDACTED}
    assert json.loads(series["metadata"]) == {"password": REDACTED}
    (got,) = points_of(decoded)
    assert json.loads(got["exemplars"])[0]["filtered_attributes"] == CLEAN


def test_envelope_values_are_not_masked() -> None:
    payload = traces(
        [span(attributes=attrs({"user.id": "eve@example.com", "n": "eve@example.com"}))]
    )
    (got,) = spans_of(decoder().traces(payload, NOW))
    assert got["user_id"] == "eve@example.com"
    assert json.loads(got["attributes"]) == {"user.id": "eve@example.com", "n": REDACTED}
    with pytest.raises(ValueError, match=r"envelope key 'user\.id' cannot be redacted"):
        decoder(Redaction(keys=("user.id",)))


def test_redactions_are_counted_once_per_cached_fragment() -> None:
    counts: list[str] = []
    d = decoder(counts=counts)
    payload = traces(
        [span(attributes=attrs({"token": "t", "client.address": "203.0.113.77", "m": "a@b.io"}))]
    )
    d.traces(payload, NOW)
    d.traces(payload, NOW)  # the same fragments, from the cache
    assert sorted(counts) == ["ip", "key", "pattern"]


def test_redaction_off_keeps_values_but_still_anonymizes_ips() -> None:
    payload = traces([span(name="eve@example.com", attributes=attrs(SECRETS))])
    (got,) = spans_of(decoder(Redaction(enabled=False)).traces(payload, NOW))
    assert json.loads(got["attributes"]) == {
        **SECRETS,
        "client.address": "203.0.113.0",
        "nested": {**SECRETS["nested"], "net.peer.ip": "2001:db8:1::"},
    }  # type: ignore[dict-item]
    assert got["name"] == "eve@example.com"
    nothing = Redaction(enabled=False, anonymize_ip=False)
    (got,) = spans_of(decoder(nothing).traces(payload, NOW))
    assert json.loads(got["attributes"]) == SECRETS


def test_a_caller_that_keeps_ips_has_a_cache_of_its_own() -> None:
    d = decoder()
    payload = traces([span(attributes=attrs({"client.address": "203.0.113.77", "token": "t"}))])
    keep = DecodePolicy(anonymize_ip=False)
    assert d._keeping is None  # made on first use only
    for _ in range(2):  # made, then from each cache
        (kept,) = spans_of(d.traces(payload, NOW, keep))
        (anonymized,) = spans_of(d.traces(payload, NOW))
        assert json.loads(kept["attributes"]) == {
            "client.address": "203.0.113.77",
            "token": REDACTED,
        }
        assert json.loads(anonymized["attributes"])["client.address"] == "203.0.113.0"
    keeping = d._keeping
    d.logs(logs([log()]), NOW, keep)
    assert d._keeping is keeping is not d._anonymizing
    # Where nothing is anonymized, there is one cache.
    plain = decoder(Redaction(anonymize_ip=False))
    assert plain._keeping is plain._anonymizing
