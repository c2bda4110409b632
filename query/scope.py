"""Which project a query request may read: the one place that decides it.

Until tokens map to projects (issue "The edge"), the project is the ``x-otlpd-project``
metadata value, else the request's ``project_id`` field, else the server's default
project. Token authentication replaces ``HeaderScope`` with another ``ProjectScope``;
nothing else in the query service looks at metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from otlpd.errors import BadArgument
from otlpd.receiver.decode.limits import MAX_PROJECT_BYTES

PROJECT_METADATA_KEY = "x-otlpd-project"

Metadata = Sequence[tuple[str, str | bytes]]


class ProjectScope(Protocol):
    """Resolves the one project a request is scoped to, or refuses the request."""

    def project(self, metadata: Metadata, requested: str) -> str:
        """The project to read; raises an ``otlpd.errors`` error when there is none."""
        ...


class HeaderScope:
    """Metadata wins over the request field, which wins over the default project."""

    def __init__(self, default_project: str) -> None:
        self._default = default_project

    def project(self, metadata: Metadata, requested: str) -> str:
        header = next(
            (value for key, value in metadata if key.lower() == PROJECT_METADATA_KEY), None
        )
        if isinstance(header, bytes):
            header = header.decode("utf-8", "replace")
        project = header or requested or self._default
        if len(project.encode()) > MAX_PROJECT_BYTES:
            field = PROJECT_METADATA_KEY if header else "project_id"
            raise BadArgument(field, f"longer than {MAX_PROJECT_BYTES} bytes")
        if "\x00" in project:
            raise BadArgument("project_id", "contains a NUL character")
        return project
