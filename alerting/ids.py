"""Ids of what the alerting API makes (rules, channels, silences, incidents)."""

from __future__ import annotations

import re
import secrets
from typing import Final

_ID: Final = re.compile(r"^[0-9a-f]{16}$")


def new_id() -> str:
    """16 random hex digits: opaque, unguessable, and short enough to type."""
    return secrets.token_hex(8)


def looks_like_id(text: str) -> bool:
    """Whether ``text`` could be an id this server drew (a cheap NOT_FOUND otherwise)."""
    return _ID.fullmatch(text) is not None
