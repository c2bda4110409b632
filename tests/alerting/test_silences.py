"""Silences: create, list with their state, expire; validation; audit; projects apart."""

from __future__ import annotations

import time

import grpc
from google.protobuf import timestamp_pb2

from alerting.proto import pb
from query.proto import pb as qpb
from tests.alerting.conftest import Project, audit_rows, refused
from tests.conftest import RunningOtlpd


def at(offset_s: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(time.time_ns() + int(offset_s * 1e9))
    return ts


def silence(
    *matchers: qpb.LabelMatcher, start: float | None = None, end: float = 3600
) -> pb.Silence:
    s = pb.Silence(matchers=matchers, end_time=at(end), comment="deploy")
    if start is not None:
        s.start_time.CopyFrom(at(start))
    return s


SERVICE_API = qpb.LabelMatcher(name="service", value="api")


def test_create_list_expire_with_states_and_audit(
    project: Project, alerting_otlpd: RunningOtlpd
) -> None:
    active = project.CreateSilence(pb.CreateSilenceRequest(silence=silence(SERVICE_API))).silence
    assert active.state == pb.SILENCE_STATE_ACTIVE and active.created_by == "local"
    later = project.CreateSilence(
        pb.CreateSilenceRequest(
            silence=pb.Silence(
                matchers=[qpb.LabelMatcher(name="env", op=qpb.LabelMatcher.OP_RE,
                                           value="prod|stg")],
                start_time=at(600), end_time=at(1200), comment="window", created_by="alice",
            )
        )
    ).silence  # fmt: skip
    assert later.state == pb.SILENCE_STATE_PENDING and later.created_by == "alice"
    listed = project.ListSilences(pb.ListSilencesRequest()).silences
    assert [s.id for s in listed] == [later.id, active.id]
    expired = project.DeleteSilence(pb.DeleteSilenceRequest(id=active.id)).silence
    assert expired.state == pb.SILENCE_STATE_EXPIRED
    states = {s.id: s.state for s in project.ListSilences(pb.ListSilencesRequest()).silences}
    assert states == {active.id: pb.SILENCE_STATE_EXPIRED, later.id: pb.SILENCE_STATE_PENDING}
    only = project.ListSilences(pb.ListSilencesRequest(states=[pb.SILENCE_STATE_EXPIRED]))
    assert [s.id for s in only.silences] == [active.id]
    # Expiring an expired silence changes nothing.
    again = project.DeleteSilence(pb.DeleteSilenceRequest(id=active.id)).silence
    assert again.end_time == expired.end_time
    paged = project.ListSilences(pb.ListSilencesRequest(limit=1))
    assert [s.id for s in paged.silences] == [later.id] and paged.next_page_token
    rest = project.ListSilences(pb.ListSilencesRequest(limit=1, page_token=paged.next_page_token))
    assert [s.id for s in rest.silences] == [active.id] and not rest.next_page_token
    rows = audit_rows(alerting_otlpd.database_url, project.project)
    assert [(a, s) for _, a, s, _ in rows] == [
        ("silence.create", active.id),
        ("silence.create", later.id),
        ("silence.expire", active.id),
    ]
    assert rows[0][3]["after"]["matchers"] == [{"name": "service", "op": "EQ", "value": "api"}]


def test_validation_names_the_field(project: Project) -> None:
    cases = [
        (silence(), "silence.matchers"),
        (silence(qpb.LabelMatcher(name="a", op=qpb.LabelMatcher.OP_RE, value=".*")),
         "silence.matchers"),
        (silence(qpb.LabelMatcher(name="a", op=qpb.LabelMatcher.OP_RE, value="(")),
         "silence.matchers[0].value"),
        (silence(SERVICE_API, end=-10), "silence.end_time"),
        (silence(SERVICE_API, start=600, end=300), "silence.end_time"),
        (silence(SERVICE_API, end=400 * 86400), "silence.end_time"),
        (pb.Silence(matchers=[SERVICE_API], end_time=at(60)), "silence.comment"),
        (pb.Silence(matchers=[SERVICE_API], comment="x"), "silence.end_time"),
    ]  # fmt: skip
    for wanted, field in cases:
        error = refused(lambda w=wanted: project.CreateSilence(pb.CreateSilenceRequest(silence=w)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
        assert error.details().startswith(f"{field}:"), (field, error.details())
    assert list(project.ListSilences(pb.ListSilencesRequest()).silences) == []


def test_a_silence_of_another_project_is_invisible_and_untouchable(
    project: Project, other: Project
) -> None:
    mine = project.CreateSilence(pb.CreateSilenceRequest(silence=silence(SERVICE_API))).silence
    assert list(other.ListSilences(pb.ListSilencesRequest()).silences) == []
    error = refused(lambda: other.DeleteSilence(pb.DeleteSilenceRequest(id=mine.id)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert project.ListSilences(pb.ListSilencesRequest()).silences[0].state == (
        pb.SILENCE_STATE_ACTIVE
    )
