"""Which project a query request may read: the one place that decides it.

``TokenScope`` is what the server runs: a request with a token (``authorization:
Bearer ...`` metadata) reads its token's project; an ``admin`` token may name another
one (``x-otlpd-project`` metadata, else the request's ``project_id``); a token with
neither ``query`` nor ``admin`` scope is refused. Without a token, while auth is off,
``HeaderScope`` decides: the ``x-otlpd-project`` metadata value, else the request's
``project_id`` field, else the server's default project. Nothing else in the query
service looks at metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from otlpd.access import Authenticator, Scope
from otlpd.errors import BadArgument, PermissionDenied
from otlpd.receiver.decode.limits import MAX_PROJECT_BYTES

PROJECT_METADATA_KEY = "x-otlpd-project"
LOCAL_ACTOR: Final = "local"
"""Who made a change without a token (auth off), in audit logs and timelines."""

Metadata = Sequence[tuple[str, str | bytes]]


class ProjectScope(Protocol):
    """Resolves the one project a request is scoped to, or refuses the request."""

    async def project(self, metadata: Metadata, requested: str) -> str:
        """The project to read; raises an ``otlpd.errors`` error when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class Caller:
    """The project a request is scoped to, and who made it: the token's id, or
    ``LOCAL_ACTOR`` without a token (what audit logs record)."""

    project: str
    actor: str


class HeaderScope:
    """Metadata wins over the request field, which wins over the default project."""

    def __init__(self, default_project: str) -> None:
        self._default = default_project

    def project(self, metadata: Metadata, requested: str) -> str:
        header = _value(metadata, PROJECT_METADATA_KEY)
        if isinstance(header, bytes):
            header = header.decode("utf-8", "replace")
        project = header or requested or self._default
        if len(project.encode()) > MAX_PROJECT_BYTES:
            field = PROJECT_METADATA_KEY if header else "project_id"
            raise BadArgument(field, f"longer than {MAX_PROJECT_BYTES} bytes")
        if "\x00" in project:
            raise BadArgument("project_id", "contains a NUL character")
        return project


class TokenScope:
    """The token's project; an admin token may name another; no token: ``HeaderScope``
    while auth is off (``Access`` refuses a request without one while it is on)."""

    def __init__(self, access: Authenticator, default_project: str) -> None:
        self._access = access
        self._headers = HeaderScope(default_project)

    async def project(self, metadata: Metadata, requested: str) -> str:
        return (await self.caller(metadata, requested)).project

    async def caller(self, metadata: Metadata, requested: str) -> Caller:
        """The project, as ``project`` decides it, and the token id that asked (the
        alerting API writes it in the audit log)."""
        principal = await self._access.authorize(_value(metadata, "authorization"), Scope.QUERY)
        actor = principal.token_id or LOCAL_ACTOR
        if principal.project is None:  # auth off and no token
            return Caller(self._headers.project(metadata, requested), actor)
        if Scope.ADMIN in principal.scopes:
            return Caller(self._headers.project(metadata, requested or principal.project), actor)
        named = _value(metadata, PROJECT_METADATA_KEY) or requested
        if isinstance(named, bytes):
            named = named.decode("utf-8", "replace")
        if named and named != principal.project:
            raise PermissionDenied("this token may read its own project only")
        return Caller(principal.project, actor)


def _value(metadata: Metadata, key: str) -> str | bytes | None:
    return next((value for k, value in metadata if k.lower() == key), None)
