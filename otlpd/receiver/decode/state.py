"""What the record decoders of every signal share: the decoder's caches, one call's state,
and what the records of one resource and one scope have in common."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from otlpd.envelope import Completion, Found, SessionCache
from otlpd.receiver.anyvalue import AttributeEncoder
from otlpd.receiver.decode.checks import bad_time
from otlpd.receiver.decode.limits import DecodeLimits
from otlpd.receiver.rejections import RecordRejected, Rejections
from storage.model import Row, RowBatch

Records = Iterable[tuple[int, Any]]
"""``(index in its scope, lazy record message)`` pairs, as a record decoder takes them."""

# Completion.complete: (session, project, user, service, time) -> (project, user).
Completer = Callable[[str, str | None, str | None, str | None, int], tuple[str, str | None]]


@dataclass(slots=True)
class Shared:
    """The decoder's state that outlives a call: settings and caches.

    One per ``Decoder``, used from any thread: the caches are plain dicts, bounded by
    clearing, whose operations are atomic under the GIL.
    """

    limits: DecodeLimits
    default_project: str
    # (project, attributes JSON, identity JSON) -> series_id: a metric's series repeat
    # in every export, and a dict hit is cheaper than hashing them again.
    series_ids: dict[tuple[str, str, str], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Resource:
    """What the records of one resource share."""

    json: str
    schema_url: str | None
    service: str | None
    found: Found
    dropped_attributes_count: int
    id: int

    def refer(self, resources: dict[tuple[str, int], Row], project: str, time: int) -> None:
        """Adds this resource's row for ``project`` to ``resources`` unless it is there.

        The decoders call it when a stored record's project differs from the previous
        record's, not per record, so ``time`` is that of the first record of the request
        that referred to it, not the earliest.
        """
        key = (project, self.id)
        if key not in resources:
            row = (project, self.id, self.json, self.schema_url, self.dropped_attributes_count)
            resources[key] = (*row, time)


@dataclass(frozen=True, slots=True)
class Scope:
    """What the records of one instrumentation scope share, with inherited envelope values."""

    resource: Resource
    name: str | None
    version: str | None
    attributes: str | None
    schema_url: str | None
    dropped_attributes_count: int
    session: str | None
    user: str | None
    project: str | None
    locked: bool = False  # ``project`` is the caller's: a record may name no other

    def envelope(
        self, found: Found | None, complete: Completer, time: int, default_project: str
    ) -> tuple[str, str | None, str | None]:
        """A good record's ``(project, session, user)``: its own values, else the scope's
        (which fall back to the resource's), else its session owner's, else the default.
        Records the session sighting at ``time``.

        When the project is ``locked``, it is the scope's whatever the session's owner,
        and the user comes from the owner only if that is the same project
        (``Completion.complete``); a record that names another project is refused.
        """
        if found is None:
            session, user, project = self.session, self.user, self.project
        else:
            session = found[0] or self.session
            user = found[1] or self.user
            named = found[2]
            if named is None:
                project = self.project
            elif self.locked and named != self.project:
                raise not_allowed(self.project, "record")
            else:
                project = named
        if session is None:
            return project or default_project, None, user
        project, user = complete(session, project, user, self.resource.service, time)
        return project, session, user


def not_allowed(project: str | None, what: str) -> RecordRejected:
    """A record (scope, resource) names a project other than the caller's."""
    return RecordRejected(
        "project not allowed", f"the token's project is {project!r}; the {what} names another"
    )


class Run:
    """The state of one decode call: the rows so far, what was refused, the time window,
    and the caller's policy (the attribute encoder of its IP setting, its project)."""

    __slots__ = (
        "attributes",
        "batch",
        "completion",
        "hi",
        "lo",
        "now",
        "project",
        "rejections",
        "shared",
    )

    def __init__(
        self,
        shared: Shared,
        sessions: SessionCache,
        rejections: Rejections,
        now: int,
        *,
        attributes: AttributeEncoder,
        project: str | None = None,
    ):
        limits = shared.limits
        completion = Completion(sessions, shared.default_project, {}, project is not None)
        self.shared = shared
        self.attributes = attributes
        self.project = project  # the caller's, or None: the records'

        self.batch = RowBatch(sessions=completion.sessions)
        self.completion = completion
        self.rejections = rejections
        self.lo = max(1, now - limits.accept_past_ns)
        self.now = now
        self.hi = now + limits.accept_future_ns

    def bad_time(self, name: str, value: int) -> RecordRejected:
        """``value`` of field ``name`` is 0 or outside this call's accepted window."""
        return bad_time(name, value, self.lo, self.now, self.hi)

    def bad_end(self, start: int, end: int) -> RecordRejected:
        """A span's end is before its start, or outside the window."""
        if end < start:
            return RecordRejected(
                "end before start",
                f"end_time_unix_nano {end} is before start_time_unix_nano {start}",
            )
        return self.bad_time("end_time_unix_nano", end)


RecordDecoder = Callable[[Run, Scope, int, int, Records], None]
"""Decodes the records of one scope (resource ``i``, scope ``j``) into ``run``."""
