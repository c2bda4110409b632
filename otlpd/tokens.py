"""API tokens as text: ``otlpd_<token_id>_<secret>``, how they are minted, read and checked.

``token_id`` is 12 lowercase base32 characters (60 random bits): public, the key a token
is looked up by, shown by ``otlpd tokens list`` and in the audit log. ``secret`` is 32
random bytes in URL-safe base64 without padding (43 characters). The prefix lets secret
scanners (and people) recognise a leaked token.

Only ``sha256(secret)`` is stored. A slow password hash (bcrypt, scrypt, argon2) exists to
make guessing *low-entropy* secrets expensive after a leak of the hashes; a 256-bit
random secret cannot be guessed whatever the hash costs, and checking one must stay
cheap because it happens on every Export, on the event loop.

This module uses the standard library only: the server, the admin CLI and the store
(which mints tokens in the transaction that records them) all read it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "otlpd_"
TOKEN_ID_CHARS: Final = 12
SECRET_BYTES: Final = 32
SECRET_CHARS: Final = 43  # ceil(32 * 4 / 3), no padding

_TOKEN_ID: Final = re.compile(r"[a-z2-7]{12}")
_TOKEN: Final = re.compile(r"otlpd_([a-z2-7]{12})_([A-Za-z0-9_-]{43})")
TOKEN_CHARS: Final = len(PREFIX) + TOKEN_ID_CHARS + 1 + SECRET_CHARS


@dataclass(frozen=True, slots=True)
class Minted:
    """A new token: its text is shown once, its ``digest`` is what is stored."""

    token_id: str
    text: str
    digest: bytes

    def __repr__(self) -> str:  # never the secret, in a log or a traceback
        return f"Minted(token_id={self.token_id!r})"


def mint() -> Minted:
    """A new random token."""
    token_id = base64.b32encode(secrets.token_bytes(8)).decode("ascii")[:TOKEN_ID_CHARS].lower()
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return Minted(token_id, f"{PREFIX}{token_id}_{secret}", digest(secret))


def parse(text: object) -> tuple[str, str] | None:
    """``(token_id, secret)`` of a well-formed token, else None; never raises.

    Clients send anything in ``Authorization``: the length is checked before the
    pattern so that a megabyte of garbage costs nothing.
    """
    if not isinstance(text, str) or len(text) != TOKEN_CHARS:
        return None
    found = _TOKEN.fullmatch(text)
    if found is None:
        return None
    return found.group(1), found.group(2)


def is_token_id(text: object) -> bool:
    """Whether ``text`` has the shape of a token id (``tokens revoke`` checks it)."""
    return isinstance(text, str) and _TOKEN_ID.fullmatch(text) is not None


def digest(secret: str) -> bytes:
    """What is stored of a secret: its SHA-256 (32 bytes)."""
    return hashlib.sha256(secret.encode("ascii", "replace")).digest()


def verify(secret: str, stored: bytes) -> bool:
    """Whether ``secret`` is the one whose digest is ``stored``, in constant time."""
    return hmac.compare_digest(digest(secret), stored)
