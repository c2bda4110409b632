"""The correlation envelope: which project, user, session and service a record belongs to.

Every stored row carries ``project_id``, ``session_id``, ``user_id`` and ``service_name``,
read from attributes under configurable keys. A record names them on itself, on its
instrumentation scope or on its resource (the nearest wins). A record that names only a
session is completed from what is known of that session: the project and user that other
records of the same session named, remembered in a bounded ``SessionCache`` in front of
the ``storage.api.SessionDirectory``.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from storage.model import SessionSighting

Owner = tuple[str, str | None]
"""Who a session belongs to: ``(project_id, user_id)``."""

NOT_FOUND: Final[Owner] = ("", None)
"""The cache's negative entry: the directory was asked and does not know the session.

Project ids are never empty (an empty attribute counts as absent), so this cannot be
mistaken for a real owner; compare with ``is``.
"""

# Slots of the envelope values a record can carry, in ``Found`` order.
SESSION: Final = 0
USER: Final = 1
PROJECT: Final = 2
SERVICE: Final = 3

Found = tuple[str | None, str | None, str | None, str | None]
"""Envelope values named at one level (record, scope or resource), indexed by slot."""

NOTHING_FOUND: Final[Found] = (None, None, None, None)

# Characters a project id may not hold, beyond control characters and "..": it becomes
# the object-store key segment ``project={id}`` of the cold tier (docs/storage.md).
FORBIDDEN_IN_PROJECT: Final = frozenset("/\\=")


def key_safe_project(project: str) -> bool:
    """Whether ``project`` can be a key segment as it is: no ``/``, ``\\``, ``=``, ``..``
    or control character (Unicode category Cc)."""
    return (
        ".." not in project
        and not any(c in FORBIDDEN_IN_PROJECT for c in project)
        and not any(unicodedata.category(c) == "Cc" for c in project)
    )


@dataclass(frozen=True, slots=True)
class EnvelopeKeys:
    """The attribute keys each envelope value is read from, in order of preference."""

    service: tuple[str, ...] = ("service.name",)
    session: tuple[str, ...] = ("session.id",)
    user: tuple[str, ...] = ("user.id", "enduser.id")
    project: tuple[str, ...] = ("project.id",)

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for role, keys in self._roles():
            for key in keys:
                if key in seen:
                    raise ValueError(
                        f"envelope key {key!r} is used for both {seen[key]} and {role}"
                    )
                seen[key] = role

    def _roles(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return (
            ("session", self.session),
            ("user", self.user),
            ("project", self.project),
            ("service", self.service),
        )

    def slots(self) -> dict[str, tuple[int, int]]:
        """Maps every key to ``(slot, rank)``: its envelope slot and its place in that list."""
        return {
            key: (slot, rank)
            for slot, (_, keys) in enumerate(self._roles())
            for rank, key in enumerate(keys)
        }


def envelope_value(value: object) -> str | None:
    """The envelope string of an attribute value: strings as they are, ints in decimal.

    Other types (bool, double, bytes, arrays, maps, empty) and empty strings name nothing.
    """
    if value.__class__ is str:
        return value or None
    if value.__class__ is int:
        return str(value)
    return None


class SessionCache:
    """A bounded LRU of session owners, with negative entries for unknown sessions.

    Shared by every request of a process and safe to use from several threads. Entries
    come from the directory (``learn``) and from records that name a session together
    with its project (``teach``). Both kinds expire, so that what another replica
    committed meanwhile is seen: a negative entry after ``negative_ttl`` seconds (a
    session's first records often reach one replica before another replica commits the
    record that names its owner), a positive one after ``ttl`` seconds (an owner that
    changed elsewhere); at most ``max_entries`` are kept, least recently used first out.
    """

    def __init__(
        self, max_entries: int = 100_000, *, ttl: float = 600.0, negative_ttl: float = 5.0
    ) -> None:
        if max_entries <= 0:
            raise ValueError(f"max_entries must be > 0, got {max_entries}")
        if ttl <= 0 or negative_ttl <= 0:
            raise ValueError(f"ttl and negative_ttl must be > 0, got {ttl}, {negative_ttl}")
        self._max = max_entries
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        # session id -> (owner, monotonic expiry)
        self._entries: OrderedDict[str, tuple[Owner, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_id: str) -> Owner | None:
        """The owner of ``session_id``; ``NOT_FOUND`` if known unknown; None if never seen
        or no longer known (expired)."""
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None:
                return None
            if entry[1] <= time.monotonic():
                del self._entries[session_id]
                return None
            self._entries.move_to_end(session_id)
            return entry[0]

    def learn(self, found: Mapping[str, tuple[str, str | None]], asked: Iterable[str]) -> None:
        """Records a directory answer: ``found`` owners, and ``asked`` ids it did not know.

        An id the directory did not know keeps a positive entry that a record taught in
        the meantime: that record knows better than a directory that has not stored it yet.
        """
        now = time.monotonic()
        with self._lock:
            for session_id in asked:
                if session_id in found:
                    continue
                entry = self._entries.get(session_id)
                if entry is None or entry[0] is NOT_FOUND or entry[1] <= now:
                    self._put(session_id, NOT_FOUND, now + self._negative_ttl)
            for session_id, owner in found.items():
                self._put(session_id, (owner[0], owner[1]), now + self._ttl)

    def teach(self, session_id: str, project_id: str, user_id: str | None) -> None:
        """Records what a record said of its session; an absent user keeps a known one."""
        # What records teach is nearly always known already (a session names the same
        # owner in every request): a read without the lock answers that, as the locked
        # read below would have at that instant.
        entry = self._entries.get(session_id)
        if entry is not None:
            owner = entry[0]
            if owner[0] == project_id and user_id in (None, owner[1]):
                return
        with self._lock:
            entry = self._entries.get(session_id)
            known = entry[0] if entry is not None else None
            if user_id is None and known is not None and known[0] == project_id:
                user_id = known[1]
            if known != (project_id, user_id):
                self._put(session_id, (project_id, user_id), time.monotonic() + self._ttl)

    def _put(self, session_id: str, owner: Owner, expires: float) -> None:
        entries = self._entries
        entries[session_id] = (owner, expires)
        entries.move_to_end(session_id)
        while len(entries) > self._max:
            entries.popitem(last=False)


@dataclass(slots=True)
class Completion:
    """Completes the envelopes of one request's records and collects its session sightings.

    Deterministic for a given cache state at the start, so a request decoded again after
    the directory answered gets the same rows, completed.

    ``locked``: the records' project is their caller's (an authenticated token's), named
    on every record. A session the cache knows as another project's is then neither
    completed from that owner nor taught to the cache: two projects may share a session
    id, and one project's records must not change how another's are completed.
    """

    cache: SessionCache
    default_project: str
    sessions: dict[tuple[str, str], SessionSighting]
    locked: bool = False
    unresolved: set[str] = field(default_factory=set)
    _owners: dict[str, Owner | None] = field(default_factory=dict)
    _taught: dict[str, Owner] = field(default_factory=dict)
    _foreign_sessions: dict[str, bool] = field(default_factory=dict)

    def finish(self) -> None:
        """Teaches the cache what this request's records said of their sessions."""
        teach = self.cache.teach
        for session, (project, user) in self._taught.items():
            teach(session, project, user)

    def _foreign(self, session: str, project: str) -> bool:
        """True if the cache knew ``session`` as another project's (when first asked in
        this request: later, ``_owners`` holds what this request's records said)."""
        verdict = self._foreign_sessions.get(session)
        if verdict is None:
            owners = self._owners
            if session in owners:
                owner = owners[session]
            else:
                owner = owners[session] = self.cache.get(session)
            verdict = owner is not None and owner is not NOT_FOUND and owner[0] != project
            self._foreign_sessions[session] = verdict
        return verdict

    def complete(
        self,
        session: str,
        project: str | None,
        user: str | None,
        service: str | None,
        time: int,
    ) -> tuple[str, str | None]:
        """Completes a record of ``session``: its ``(project_id, user_id)``.

        ``project`` and ``user`` are what the record named (None when it named nothing);
        the sighting of the session at ``time`` is recorded too.
        """
        named_project = project is not None
        if project is None or user is None:
            owners = self._owners
            if session in owners:
                owner = owners[session]
            else:
                owner = owners[session] = self.cache.get(session)
            if owner is None:
                self.unresolved.add(session)
            elif owner is not NOT_FOUND:
                if project is None:
                    project = owner[0]
                if user is None and owner[0] == project:
                    user = owner[1]
        if project is None:
            project = self.default_project
        elif named_project and self._taught.get(session) != (project, user):
            # The record named its project: later records of the session are completed
            # from it, in this request (here) and the next (``finish`` teaches the cache
            # once per session, not once per record: users churn within a session).
            owner = (project, user)
            if not self.locked or not self._foreign(session, project):
                self._taught[session] = owner
            self._owners[session] = owner
        key = (project, session)
        sighting = self.sessions.get(key)
        if sighting is None:
            self.sessions[key] = SessionSighting(user, service, time, time)
        else:
            if time < sighting.first_seen:
                sighting.first_seen = time
            elif time > sighting.last_seen:
                sighting.last_seen = time
            if sighting.user_id is None:
                sighting.user_id = user
            if sighting.service_name is None:
                sighting.service_name = service
        return project, user
