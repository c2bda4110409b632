"""What one caller may store: the per-call side of decoding, set by whoever authenticated it.

The ``Decoder`` is one per process and its settings are the operator's; a ``DecodePolicy``
is the caller's (its token's project and that project's settings), passed with each call.
"""

from __future__ import annotations

from dataclasses import dataclass

from otlpd.receiver.decode.limits import MAX_PROJECT_BYTES


@dataclass(frozen=True, slots=True)
class DecodePolicy:
    """The caller's project and its privacy settings, for one decode call.

    ``project``: every row goes to this project, and a record (or its scope or resource)
    that names another one in its project attributes is rejected ("project not allowed");
    None takes the project from the records, as without authentication. ``anonymize_ip``:
    False keeps client IP attributes as sent (the operator's ``OTLPD_ANONYMIZE_IP`` must
    be on for True to anonymize them).
    """

    project: str | None = None
    anonymize_ip: bool = True

    def __post_init__(self) -> None:
        project = self.project
        if project is not None and (
            not project or "\x00" in project or len(project.encode()) > MAX_PROJECT_BYTES
        ):
            raise ValueError(
                f"project must be a text of 1 to {MAX_PROJECT_BYTES} bytes without NUL, "
                f"got {project[:64]!r}"
            )


DEFAULT_POLICY = DecodePolicy()
"""Records name their project; client IPs are anonymized (when the operator's setting is)."""
