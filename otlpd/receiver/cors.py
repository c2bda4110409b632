"""CORS for OTLP/HTTP: the headers that let a browser RUM SDK export from a web page.

A page's ``fetch`` with ``Content-Type: application/json`` or an ``Authorization`` header
is not a "simple" request, so the browser first sends a preflight (``OPTIONS`` with
``Origin`` and ``Access-Control-Request-Method``) and sends the POST only if the answer
names its origin (Fetch standard, "CORS protocol"). Which origins may send is a
project's setting (``otlpd.access``); this module only writes the headers.

No ``Access-Control-Allow-Credentials``: SDKs send their token in ``Authorization``,
never cookies, and with credentials a wildcard could not be used at all.
"""

from __future__ import annotations

from typing import Final

ALLOW_METHODS: Final = "POST, OPTIONS"
# Request headers a page may send: the OTLP ones, the token, and what the OpenTelemetry
# JS exporters and common RUM SDKs add. Anything else is left out of the answer, and
# the browser then refuses the request itself.
ALLOWED_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-language",
        "authorization",
        "content-encoding",
        "content-language",
        "content-type",
        "x-requested-with",
    }
)
# Chromium caps the cache of a preflight at 2 hours, Firefox at 24: 2 hours everywhere.
MAX_AGE_SECONDS: Final = 7200
# What a page may read of an answer beyond the CORS-safelisted headers: the throttle
# delay, which OTLP clients honour.
EXPOSE_HEADERS: Final = "Retry-After"


def response_headers(origin: str) -> dict[str, str]:
    """The headers that let the page at ``origin`` read an answer (errors included)."""
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSE_HEADERS,
        # The answer depends on the Origin: caches must not serve it to another one.
        "Vary": "Origin",
    }


def preflight_headers(origin: str, requested: str | None) -> dict[str, str]:
    """The answer to an allowed preflight: ``requested`` is its
    ``Access-Control-Request-Headers``, of which the allowed ones are echoed."""
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    allowed = [
        name
        for name in (part.strip().lower() for part in (requested or "").split(","))
        if name in ALLOWED_HEADERS
    ]
    if allowed:
        headers["Access-Control-Allow-Headers"] = ", ".join(dict.fromkeys(allowed))
    return headers
