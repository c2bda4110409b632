"""Secrets and personal data taken out of telemetry before it is stored.

Three rules, applied by the decoder to every attribute list (resource, scope, record,
span event and link, data point, exemplar, metric metadata), to keys nested in kvlist
values, and to log bodies:

* **keys**: an attribute whose key is a secret's name (``authorization``, ``password``,
  ``token``, ... and the ``http.request.header.<name>`` / ``http.response.header.<name>``
  forms of them) keeps its key, and its value becomes the string ``"[REDACTED]"``
  whatever its type, except an array, which becomes ``["[REDACTED]"]``: semantic
  conventions declare header attributes ``string[]``, and a reader of
  ``attributes->'http.request.header.cookie'->0`` keeps working. Keys match
  case-insensitively, with ``-`` and ``_`` equal (SDKs write header names both ways).
* **patterns**: inside every string value (attribute values, nested ones, log bodies,
  span names, span status messages and span event names) these are masked, the rest of
  the text kept: ``Bearer <token>`` -> ``Bearer [REDACTED]`` (a token has a digit or one
  of ``-._~+/=``, or 20 letters: "the bearer of news" stays); the user information of
  a URL (``https://user:pass@host`` -> ``https://[REDACTED]@host``); card numbers
  (13-19 digits, spaces or dashes between them, starting with 2-6 as every card
  network's numbers do, and Luhn-valid, so ids, phone numbers and timestamps stay);
  e-mail addresses; and an operator's own regular expression, whose matches are masked.
* **client IPs**: an attribute under a client address key holding an IP address keeps
  its network and loses its host: IPv4 ``203.0.113.77`` -> ``203.0.113.0``, IPv6 keeps
  its first 48 bits (``2001:db8:1:2:3:4:5:6`` -> ``2001:db8:1::``). A value that is not
  an IP is kept as sent. On by default, off per project (``DecodePolicy``).

Not covered: the envelope attributes (service, session, user and project keys), which are
identities the operator chose to index (an e-mail user id masked would merge every such
user into one), so configuration refuses to list them here; metric names, units and
descriptions, scope names, trace states and log ``event_name``, which are identifiers.

Each pattern has a cheap pre-filter (an ``@`` for e-mails and URLs, the word "bearer",
13 digits for card numbers), so text that cannot hold one costs a few substring searches:
a regular expression search costs ~1 µs on a 60-character text, the filters ~0.2 µs.
Every pattern only starts a match where a run of its characters starts, so its cost is
linear in the text, whatever the text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

REDACTED: Final = "[REDACTED]"

PATTERN_NAMES: Final = ("bearer", "url-credentials", "card-number", "email")
"""The built-in patterns, in the order they are applied."""

DEFAULT_KEYS: Final = (
    "authorization",
    "cookie",
    "set-cookie",
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "x-api-key",
)
DEFAULT_IP_KEYS: Final = (
    "client.address",
    "net.peer.ip",
    "net.sock.peer.addr",
    "http.client_ip",
    "source.address",
    "network.peer.address",
    "client.ip",
)
_HEADER_PREFIXES: Final = ("http.request.header.", "http.response.header.")

# What a key is to the redactor.
PLAIN: Final = 0
SECRET: Final = 1  # its value is replaced
CLIENT_IP: Final = 2  # its value is anonymized when it is an IP address

_KEY_CACHE: Final = 4096
_NAME_CACHE: Final = 4096
_IPV4_HOST: Final = 0xFF  # the last octet
_IPV6_HOST: Final = (1 << 80) - 1  # the last 80 bits
_MAPPED_HOST: Final = _IPV4_HOST  # ::ffff:a.b.c.d: the last octet of its IPv4 address

# Patterns. Each starts where a run of its characters starts (a lookbehind), so a
# search is linear in the text: without it, a long run of e-mail local-part characters
# without an "@" would be scanned again from each of its positions.
_BEARER: Final = re.compile(r"(?<![A-Za-z0-9_-])(bearer)\s+([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_TOKEN_LETTERS: Final = 20  # a token of letters only is one from this length
# The user information of a URL (RFC 3986: no "/", "?", "#" or "@" in it).
_URL_CREDENTIALS: Final = re.compile(r"(?<=://)[^/?#@\s]+(?=@)")
# Not within a word or a decimal number: "0.4532015112830366" is a float, not a card.
_CARD: Final = re.compile(r"(?<![0-9A-Za-z.])[2-6](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z]|\.[0-9])")
# An apostrophe may be inside a local part (o'brien@), not open one ('alice@x.io').
_EMAIL: Final = re.compile(
    r"(?<![A-Za-z0-9._%+-])(?<![A-Za-z0-9._%+-]')[A-Za-z0-9_%+-][A-Za-z0-9._%+'-]*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])"
)
# Every byte to "0" if it is a digit, else to a space: the digit count of a text is one
# translate and one count, in C.
_DIGIT_CLASS: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_CARD_DIGITS: Final = 13


def normalized(key: str) -> str:
    """``key`` as keys are compared: lower case, ``_`` as ``-``."""
    return key.lower().replace("_", "-")


def luhn(digits: str) -> bool:
    """True if the decimal ``digits`` pass the Luhn check, as every card number does."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = ord(c) - 0x30
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def anonymized_ip(text: str) -> str:
    """``text`` with the host part of its IP address zeroed, or as it is if not an IP."""
    if not (":" in text or text.count(".") == 3) or len(text) > 64:
        return text
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(address) & ~_IPV4_HOST))
    mapped = address.ipv4_mapped
    if mapped is not None:
        return f"::ffff:{ipaddress.IPv4Address(int(mapped) & ~_MAPPED_HOST)}"
    return str(ipaddress.IPv6Address(int(address) & ~_IPV6_HOST))


def compile_regex(text: str) -> re.Pattern[str]:
    """An operator's extra pattern, compiled; ``ValueError`` says why it cannot be used."""
    try:
        pattern = re.compile(text)
    except re.error as e:
        raise ValueError(f"invalid regular expression {text!r}: {e}") from None
    if pattern.fullmatch(""):
        raise ValueError(f"regular expression {text!r} matches the empty text")
    return pattern


@dataclass(frozen=True, slots=True)
class Redaction:
    """The operator's redaction settings (``OTLPD_REDACT*``, ``OTLPD_ANONYMIZE_IP``,
    ``OTLPD_IP_KEYS``); see the module docstring for what each does."""

    enabled: bool = True  # keys and patterns
    keys: tuple[str, ...] = DEFAULT_KEYS
    patterns: tuple[str, ...] = PATTERN_NAMES
    regex: str | None = None
    anonymize_ip: bool = True
    ip_keys: tuple[str, ...] = DEFAULT_IP_KEYS

    def __post_init__(self) -> None:
        unknown = [p for p in self.patterns if p not in PATTERN_NAMES]
        if unknown:
            raise ValueError(
                f"unknown redaction pattern {unknown[0]!r}; known: {', '.join(PATTERN_NAMES)}"
            )
        if self.regex is not None:
            compile_regex(self.regex)

    def keys_named(self) -> set[str]:
        """Every key these settings act on (normalized), to check against other roles."""
        named = {normalized(k) for k in self.keys} if self.enabled else set()
        if self.anonymize_ip:
            named |= {normalized(k) for k in self.ip_keys}
        return named


DEFAULT_REDACTION: Final = Redaction()
"""Every rule on, with the default keys and patterns."""

Count = Callable[[str], None]
"""Counts one event of a kind (``what``): a redaction, a truncation."""


def ignore(what: str) -> None:
    """A ``Count`` that counts nothing."""


class _Memo(dict[str, Any]):
    """``memo[text]`` is ``make(text)``, remembered: a hit stays in C (``dict.__getitem__``),
    a miss calls ``__missing__``. Bounded by clearing when full."""

    __slots__ = ("_make", "_size")

    def __init__(self, make: Callable[[str], Any], size: int) -> None:
        super().__init__()
        self._make = make
        self._size = size

    def __missing__(self, text: str) -> Any:
        made = self._make(text)
        if len(self) >= self._size:
            self.clear()
        self[text] = made
        return made


class Redactor:
    """``Redaction`` compiled: what a key is, and the masking of texts and IPs.

    ``anonymize_ip`` is the caller's: the decoder keeps one redactor (and one attribute
    cache) per value of it. Safe to share between threads: its caches are plain dicts,
    bounded by clearing.
    """

    __slots__ = (
        "_bearer",
        "_card",
        "_count",
        "_email",
        "_extra",
        "_keys",
        "_url",
        "kind",
        "masks",
        "name",
    )

    def __init__(self, settings: Redaction, anonymize_ip: bool, count: Count = ignore) -> None:
        keys: dict[str, int] = {}
        if anonymize_ip and settings.anonymize_ip:
            keys |= {normalized(k): CLIENT_IP for k in settings.ip_keys}
        if settings.enabled:
            for key in map(normalized, settings.keys):
                keys[key] = SECRET
                for prefix in _HEADER_PREFIXES:
                    keys[prefix + key] = SECRET
        self._keys = keys
        self._count = count
        patterns = settings.patterns if settings.enabled else ()
        self._bearer = "bearer" in patterns
        self._url = "url-credentials" in patterns
        self._card = "card-number" in patterns
        self._email = "email" in patterns
        self._extra = (
            compile_regex(settings.regex)
            if settings.enabled and settings.regex is not None
            else None
        )
        self.masks = bool(patterns) or self._extra is not None
        """True if texts may be masked (else ``mask`` is the identity)."""
        self.kind: Callable[[str], int] = _Memo(self._kind, _KEY_CACHE).__getitem__
        """``PLAIN``, ``SECRET`` or ``CLIENT_IP``: what a key holds (remembered per key)."""
        self.name: Callable[[str], str] = _Memo(self.mask, _NAME_CACHE).__getitem__
        """``mask(text)`` for texts that repeat (span and event names, status messages):
        remembered, so a repeated one costs a lookup; counted once, when first masked."""

    @property
    def acts(self) -> bool:
        """True if this redactor can change anything at all."""
        return self.masks or bool(self._keys)

    def _kind(self, key: str) -> int:
        return self._keys.get(normalized(key), PLAIN)

    def mask(self, text: str) -> str:
        """``text`` with every pattern masked (the same object when nothing was)."""
        n = len(text)
        if n < 6 and self._extra is None:  # "a@b.cd", "x://a@": nothing shorter matches
            return text
        out = text
        if self._bearer and n >= 8 and "bearer" in text.lower():
            out = _BEARER.sub(_bearer_kept, out)
        if "@" in text:
            if self._url and "://" in out:
                out = _URL_CREDENTIALS.sub(REDACTED, out)
            if self._email:
                out = _EMAIL.sub(REDACTED, out)
        if (
            self._card
            and n >= _CARD_DIGITS
            and text.encode().translate(_DIGIT_CLASS).count(0x30) >= _CARD_DIGITS
        ):
            out = _CARD.sub(_card_masked, out)
        if self._extra is not None:
            out = self._extra.sub(REDACTED, out)
        if out != text:
            self._count("pattern")
            return out
        return text

    def anonymize(self, text: str) -> str:
        """``anonymized_ip(text)``, counted when it changed something."""
        out = anonymized_ip(text)
        if out != text:
            self._count("ip")
        return out

    def redacted_key(self) -> None:
        """Counts a value replaced because of its key."""
        self._count("key")


def _bearer_kept(match: re.Match[str]) -> str:
    token = match.group(2)
    # Prose has bearers too ("the bearer of bad news"): a token has a digit or a symbol
    # of its alphabet (JWTs have dots), or is long.
    if len(token) < _TOKEN_LETTERS and token.isalpha():
        return match.group(0)
    return f"{match.group(1)} {REDACTED}"


def _card_masked(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = text.replace(" ", "").replace("-", "")
    return REDACTED if luhn(digits) else text
