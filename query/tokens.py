"""Opaque page tokens: a keyset cursor bound to the request that made it.

A token carries where the previous page ended (the sort key of its last item), never an
offset: rows committed meanwhile neither shift a page nor repeat one. It also carries a
hash of the request (project included, page_token and limit excluded), so a token is
refused with any other filters or any other project instead of silently mixing results.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from google.protobuf.message import Message

from otlpd.errors import BadArgument

_FIELD = "page_token"
_MAX_TOKEN_CHARS = 4096


def fingerprint(project: str, request: Message) -> str:
    """What a token is bound to: the project and every field but ``page_token``/``limit``."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ("page_token", "limit", "project_id"):
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    digest = hashlib.blake2b(project.encode(), digest_size=8)
    digest.update(copy.SerializeToString(deterministic=True))
    return digest.hexdigest()


def encode(kind: str, bound_to: str, cursor: list[Any]) -> str:
    """A token for the page after ``cursor`` (JSON-serializable values)."""
    raw = json.dumps([kind, bound_to, cursor], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, kind: str, bound_to: str) -> list[Any] | None:
    """The cursor of ``token``, None for no token; ``BadArgument`` for a token that is not
    ours, is damaged, or belongs to another request."""
    if not token:
        return None
    if len(token) > _MAX_TOKEN_CHARS:
        raise BadArgument(_FIELD, "is not a token this server issued")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        got_kind, got_bound, cursor = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadArgument(_FIELD, "is not a token this server issued") from exc
    if got_kind != kind or not isinstance(cursor, list):
        raise BadArgument(_FIELD, "is not a token of this RPC")
    if got_bound != bound_to:
        raise BadArgument(_FIELD, "was issued for a request with other filters or project")
    return cursor
