"""The per-call ``DecodePolicy``: rows confined to the caller's project, records that claim
another refused, session completion that never crosses projects."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlpd.envelope import SessionCache
from otlpd.receiver.decode import Decoded, DecodePolicy
from storage.model import SessionSighting
from tests.receiver.test_decode import (
    NOW,
    T0,
    assert_rejected,
    attrs,
    decoder,
    gauge,
    log,
    logs,
    logs_of,
    metrics,
    number,
    points_of,
    series_of,
    span,
    spans_of,
    traces,
)

MINE = DecodePolicy(project="mine")


def envelope(decoded: Decoded) -> list[tuple[str, str | None, str | None]]:
    return [(s["project_id"], s["session_id"], s["user_id"]) for s in spans_of(decoded)]


def test_every_row_is_the_callers_project() -> None:
    d = decoder()
    decoded = d.traces(traces([span(), span(attributes=attrs({"session.id": "s"}))]), NOW, MINE)
    assert [s["project_id"] for s in spans_of(decoded)] == ["mine", "mine"]
    assert [key[0] for key in decoded.batch.resources] == ["mine"]
    assert list(decoded.batch.sessions) == [("mine", "s")]
    (got,) = logs_of(d.logs(logs([log()]), NOW, MINE))
    assert got["project_id"] == "mine"
    decoded = d.metrics(metrics([gauge(number())]), NOW, MINE)
    assert [p["project_id"] for p in points_of(decoded)] == ["mine"]
    assert [s["project_id"] for s in series_of(decoded)] == ["mine"]
    # Without a policy, the records name their project, as before.
    assert envelope(d.traces(traces([span()], {"project.id": "p"}), NOW)) == [("p", None, None)]


def test_a_record_that_names_another_project_is_refused_alone() -> None:
    payload = traces(
        [
            span(name="same", attributes=attrs({"project.id": "mine"})),
            span(name="other", attributes=attrs({"project.id": "theirs"})),
            span(name="none"),
        ]
    )
    decoded = decoder().traces(payload, NOW, MINE)
    assert [s["name"] for s in spans_of(decoded)] == ["same", "none"]
    assert_rejected(
        decoded,
        1,
        "1 span rejected (project not allowed: 1)",
        "the token's project is 'mine'; the record names another (resource 0, scope 0, span 1)",
    )
    assert "theirs" not in decoded.error_message
    payload = logs([log(attributes=attrs({"project.id": "theirs"})), log()])
    decoded = decoder().logs(payload, NOW, MINE)
    assert (decoded.rejected, len(decoded.batch.logs)) == (1, 1)
    point = number(attributes=attrs({"project.id": "theirs"}))
    decoded = decoder().metrics(metrics([gauge(point, number())]), NOW, MINE)
    assert (decoded.rejected, len(decoded.batch.points)) == (1, 1)


def test_a_scope_or_resource_that_names_another_project_refuses_its_records() -> None:
    request = ExportTraceServiceRequest()
    theirs = request.resource_spans.add()
    theirs.resource.attributes.extend(attrs({"project.id": "theirs"}))
    theirs.scope_spans.add().spans.extend([span(), span()])
    mine = request.resource_spans.add()
    mine.resource.attributes.extend(attrs({"project.id": "mine"}))
    mine.scope_spans.add(scope={"attributes": attrs({"project.id": "theirs"})}).spans.append(span())
    mine.scope_spans.add().spans.append(span(name="kept"))
    decoded = decoder().traces(request.SerializeToString(), NOW, MINE)
    assert [(s["name"], s["project_id"]) for s in spans_of(decoded)] == [("kept", "mine")]
    assert_rejected(
        decoded,
        3,
        "project not allowed: 3",
        "the resource names another (resource 0)",
        "the scope names another (resource 1, scope 0)",
    )


def test_session_completion_never_crosses_projects() -> None:
    cache = SessionCache()
    cache.learn({"theirs-s": ("theirs", "their-user"), "my-s": ("mine", "my-user")}, [])
    d = decoder(cache)
    payload = traces(
        [
            span(attributes=attrs({"session.id": "theirs-s"})),
            span(attributes=attrs({"session.id": "my-s"})),
        ]
    )
    decoded = d.traces(payload, NOW, MINE)
    # The other project's owner gives neither its project nor its user.
    assert envelope(decoded) == [("mine", "theirs-s", None), ("mine", "my-s", "my-user")]
    assert decoded.batch.sessions == {
        ("mine", "theirs-s"): SessionSighting(None, "svc", T0, T0),
        ("mine", "my-s"): SessionSighting("my-user", "svc", T0, T0),
    }
    # Without a policy, the session's owner completes it (its project and user).
    assert envelope(d.traces(payload, NOW)) == [
        ("theirs", "theirs-s", "their-user"),
        ("mine", "my-s", "my-user"),
    ]


def test_records_under_a_policy_teach_their_sessions_but_not_anothers() -> None:
    cache = SessionCache()
    cache.learn({"shared": ("theirs", "their-user")}, [])
    d = decoder(cache)
    named = [
        span(attributes=attrs({"session.id": sid, "user.id": user}))
        for sid, user in [("shared", "u1"), ("shared", "u2"), ("new", "u3")]
    ]
    d.traces(traces(named), NOW, MINE)
    assert cache.get("shared") == ("theirs", "their-user")  # not taken over
    assert cache.get("new") == ("mine", "u3")
    later = traces([span(attributes=attrs({"session.id": sid})) for sid in ("new", "shared")])
    assert envelope(d.traces(later, NOW, MINE)) == [("mine", "new", "u3"), ("mine", "shared", None)]
    assert envelope(d.traces(later, NOW))[1] == ("theirs", "shared", "their-user")


def test_an_unknown_session_under_a_policy_is_looked_up_then_completed() -> None:
    cache = SessionCache()
    d = decoder(cache)
    payload = traces([span(attributes=attrs({"session.id": "s"}))])
    first = d.traces(payload, NOW, MINE)
    assert (envelope(first), first.unresolved_sessions) == ([("mine", "s", None)], {"s"})
    cache.learn({"s": ("mine", "u")}, first.unresolved_sessions)
    again = d.traces(payload, NOW, MINE)
    assert (envelope(again), again.unresolved_sessions) == ([("mine", "s", "u")], set())


def test_a_policy_project_must_be_a_storable_id() -> None:
    for bad in ("", "p\x00", "p" * 129):
        with pytest.raises(ValueError, match="project must be a text of 1 to 128 bytes"):
            DecodePolicy(project=bad)
    assert DecodePolicy() == DecodePolicy(None, True)
