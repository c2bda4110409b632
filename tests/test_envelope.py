"""The correlation envelope: keys, the session cache and the completion of records."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otlpd.envelope import (
    NOT_FOUND,
    PROJECT,
    SERVICE,
    SESSION,
    USER,
    Completion,
    EnvelopeKeys,
    SessionCache,
    envelope_value,
)
from storage.model import SessionSighting


def test_keys_default_and_slots() -> None:
    keys = EnvelopeKeys()
    assert keys.user == ("user.id", "enduser.id")
    assert keys.slots() == {
        "session.id": (SESSION, 0),
        "user.id": (USER, 0),
        "enduser.id": (USER, 1),
        "project.id": (PROJECT, 0),
        "service.name": (SERVICE, 0),
    }


def test_keys_refuse_a_key_in_two_roles() -> None:
    with pytest.raises(ValueError, match="'id' is used for both session and user"):
        EnvelopeKeys(session=("id",), user=("id",))


@pytest.mark.parametrize(
    ("value", "expected"),
    [("abc", "abc"), ("", None), (42, "42"), (-7, "-7"), (True, None), (1.5, None), (None, None)],
)
def test_envelope_value(value: object, expected: str | None) -> None:
    assert envelope_value(value) == expected


def test_cache_unknown_learned_and_negative() -> None:
    cache = SessionCache()
    assert cache.get("s1") is None
    cache.learn({"s1": ("p", "u")}, {"s1", "s2"})
    assert cache.get("s1") == ("p", "u")
    assert cache.get("s2") is NOT_FOUND


def test_cache_is_a_bounded_lru() -> None:
    cache = SessionCache(max_entries=2)
    cache.learn({"a": ("p", None), "b": ("p", None)}, ["a", "b"])
    assert cache.get("a") == ("p", None)  # a is now the most recent
    cache.learn({"c": ("p", None)}, ["c"])
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == ("p", None)
    assert cache.get("c") == ("p", None)


def test_cache_refuses_a_zero_bound() -> None:
    with pytest.raises(ValueError, match="max_entries must be > 0"):
        SessionCache(0)


def test_taught_entry_survives_a_directory_that_does_not_know_it_yet() -> None:
    cache = SessionCache()
    cache.teach("s", "p", "u")
    cache.learn({}, ["s"])
    assert cache.get("s") == ("p", "u")


def test_directory_answer_overrides_a_taught_entry() -> None:
    cache = SessionCache()
    cache.teach("s", "p", None)
    cache.learn({"s": ("p", "u")}, ["s"])
    assert cache.get("s") == ("p", "u")


def test_teach_without_user_keeps_the_known_user_of_the_same_project() -> None:
    cache = SessionCache()
    cache.teach("s", "p", "u")
    cache.teach("s", "p", None)
    assert cache.get("s") == ("p", "u")
    cache.teach("s", "q", None)
    assert cache.get("s") == ("q", None)


def test_teaching_a_known_owner_changes_nothing() -> None:
    cache = SessionCache(max_entries=2)
    cache.learn({"a": ("p", "u"), "b": ("q", None)}, ["a", "b"])
    cache.teach("a", "p", "u")  # known: not made the most recent
    cache.teach("a", "p", None)  # an absent user keeps the known one
    cache.teach("c", "r", None)
    assert cache.get("a") is None
    assert cache.get("b") == ("q", None)
    cache.teach("b", "q", "v")  # a user where none was known is news
    assert cache.get("b") == ("q", "v")


def _completion(cache: SessionCache) -> Completion:
    return Completion(cache, "default", {})


def test_complete_unknown_session_uses_defaults_and_asks() -> None:
    completion = _completion(SessionCache())
    assert completion.complete("s", None, None, "svc", 5) == ("default", None)
    assert completion.unresolved == {"s"}
    assert completion.sessions == {("default", "s"): SessionSighting(None, "svc", 5, 5)}


def _known(session: str, project: str, user: str | None) -> Completion:
    cache = SessionCache()
    cache.learn({session: (project, user)}, [session])
    return _completion(cache)


def test_complete_from_a_known_session() -> None:
    completion = _known("s", "p", "u")
    assert completion.complete("s", None, None, None, 1) == ("p", "u")
    assert completion.unresolved == set()
    assert _known("s", "p", "u").complete("s", None, "me", None, 1) == ("p", "me")
    # The user is taken only for the session's own project.
    assert _known("s", "p", "u").complete("s", "other", None, None, 1) == ("other", None)


def test_a_record_naming_another_project_teaches_it() -> None:
    completion = _known("s", "p", "u")
    completion.complete("s", "other", None, None, 1)
    assert completion.complete("s", None, None, None, 2) == ("other", None)
    assert completion.cache.get("s") == ("p", "u")  # taught once the request is decoded
    completion.finish()
    assert completion.cache.get("s") == ("other", None)


def test_complete_negative_entry_uses_defaults_without_asking() -> None:
    cache = SessionCache()
    cache.learn({}, ["s"])
    completion = _completion(cache)
    assert completion.complete("s", None, None, None, 1) == ("default", None)
    assert completion.unresolved == set()


def test_explicit_record_teaches_later_records() -> None:
    cache = SessionCache()
    completion = _completion(cache)
    assert completion.complete("s", "p", "u", None, 1) == ("p", "u")
    assert completion.unresolved == set()
    assert completion.complete("s", None, None, None, 2) == ("p", "u")
    completion.finish()
    assert cache.get("s") == ("p", "u")


def test_sightings_merge_times_user_and_service() -> None:
    completion = _completion(SessionCache())
    completion.complete("s", "p", None, None, 20)
    completion.complete("s", "p", "u", "svc", 10)
    completion.complete("s", "p", None, "other", 30)
    assert completion.sessions == {("p", "s"): SessionSighting("u", "svc", 10, 30)}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["s1", "s2"]),
            st.none() | st.sampled_from(["p1", "p2"]),
            st.none() | st.sampled_from(["u1", "u2"]),
            st.integers(0, 100),
        ),
        max_size=20,
    )
)
def test_completion_always_names_a_project_and_brackets_times(
    records: list[tuple[str, str | None, str | None, int]],
) -> None:
    completion = _completion(SessionCache())
    for session, project, user, time in records:
        got_project, got_user = completion.complete(session, project, user, None, time)
        assert got_project == (project or got_project)
        assert got_project
        assert got_user == (user or got_user)
    for (project, session), sighting in completion.sessions.items():
        times = [
            t
            for s, p, _, t in records
            if s == session and (p == project or (p is None and project))
        ]
        assert sighting.first_seen <= sighting.last_seen
        assert sighting.first_seen >= min(times)
