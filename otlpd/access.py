"""Who may do what: API tokens, their projects and scopes, and the one place that checks them.

Every transport (OTLP/gRPC, OTLP/HTTP, the query API) hands ``Access.authenticate`` the
``Authorization`` value it received and the scope it needs, and gets back a ``Principal``:
the project the request is confined to and what that project allows. Nothing else reads
credentials.

Tokens live hashed in PostgreSQL (``storage.postgres.tenants``). Every replica keeps an
in-memory snapshot of them, reloaded every ``OTLPD_AUTH_REFRESH`` (1 s): checking a
token costs a dictionary lookup and a hash, never a round trip, and a token revoked on
one replica stops working on every replica within one refresh (the issue asks for 5 s).
A snapshot older than ``STALE_AFTER`` seconds is not trusted: requests are refused
retryably until PostgreSQL answers again (it is needed to store them anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

from otlpd import tokens
from otlpd.errors import PermissionDenied, StoreUnavailable, Unauthenticated
from otlpd.instruments import AUTH_FAILURES, Instruments
from storage.api import StorageError

if TYPE_CHECKING:
    from storage.postgres.tenants import ProjectRow, TenantSnapshot

log = logging.getLogger(__name__)

STALE_AFTER: Final = 5.0
"""Seconds after the last good load when a snapshot is no longer trusted (the issue's
bound on how long a revoked token may keep working)."""

MISSING_TOKEN: Final = "a bearer token is required"
# One answer for a malformed, an unknown and a revoked token: which one it was would tell
# whoever probes tokens what they have found.
INVALID_TOKEN: Final = "the bearer token is not valid"
CANNOT_VERIFY: Final = "cannot verify tokens; retry later"
_MAX_AUTHORIZATION_CHARS: Final = 1024
_MISS_RELOAD_EVERY: Final = 0.25


class AuthMode(StrEnum):
    """``OTLPD_AUTH``: when a token is required."""

    AUTO = "auto"  # required as soon as any token was ever created
    REQUIRED = "required"
    OFF = "off"


class Scope(StrEnum):
    """What a token may be used for; ``admin`` implies the others."""

    INGEST = "ingest"
    QUERY = "query"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token-bucket rate; 0 means unlimited."""

    records_per_second: float = 0.0
    bytes_per_second: float = 0.0

    @property
    def unlimited(self) -> bool:
        return self.records_per_second <= 0 and self.bytes_per_second <= 0


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    """A project's own settings (table ``projects``), with the server's defaults filled in."""

    allowed_origins: frozenset[str] = frozenset()  # "*" allows every origin
    anonymize_ip: bool = True
    rate_limit: RateLimit = field(default_factory=RateLimit)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request, as ``Access.authenticate`` established it.

    ``project`` is None only while auth is off and no token was presented: the records
    then name their project (``OTLPD_PROJECT_KEYS``), as before tokens existed.
    """

    project: str | None
    token_id: str | None
    scopes: frozenset[Scope]
    settings: ProjectSettings = field(default_factory=ProjectSettings)
    token_rate_limit: RateLimit = field(default_factory=RateLimit)

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


class Authenticator(Protocol):
    """Who sent a request (``Access``): what the receivers and the query scope see of tokens."""

    async def authorize(self, authorization: str | bytes | None, scope: Scope) -> Principal:
        """The caller of a request whose ``Authorization`` value is ``authorization``;
        raises ``Unauthenticated``, ``PermissionDenied`` or a ``RetryableError``."""
        ...


class TenantSource(Protocol):
    """Where tokens and project settings come from (``storage.postgres.tenants``)."""

    async def load(self) -> TenantSnapshot:
        """Every active token and every project as of now; raises ``StorageError``."""
        ...


@dataclass(frozen=True, slots=True)
class _Known:
    """An active token: the digest to check, and the principal it is."""

    digest: bytes = field(repr=False)
    principal: Principal


@dataclass(frozen=True, slots=True)
class _State:
    """One snapshot, prepared for ``authenticate``; replaced whole on every load."""

    tokens: dict[str, _Known]
    settings: dict[str, ProjectSettings]
    anonymous: Principal
    ever: bool
    origins: frozenset[str]  # every origin some project (or the defaults) allows
    any_origin: bool
    loaded_at: float


class Access:
    """Checks credentials against an in-memory snapshot of tokens and projects.

    ``load`` once before the ports open (it raises a ``StorageError`` when PostgreSQL is
    down: the server cannot start without knowing who may call it), then ``run`` until
    cancelled to reload every ``refresh`` seconds. ``authenticate`` and the origin checks
    are synchronous and cost a dict lookup and at most one SHA-256.
    """

    def __init__(
        self,
        source: TenantSource,
        *,
        mode: AuthMode,
        default_project: str,
        defaults: ProjectSettings,
        refresh: float = 1.0,
        instruments: Instruments | None = None,
        retry_after: float = 1.0,
        stale_after: float = STALE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if refresh <= 0 or stale_after <= refresh:
            raise ValueError(f"need 0 < refresh < stale_after, got {refresh}, {stale_after}")
        self._source = source
        self._mode = AuthMode(mode)
        self._default_project = default_project
        self._defaults = _normalized(defaults)
        self._refresh = refresh
        self._retry_after = retry_after
        self._stale_after = stale_after
        self._clock = clock
        # The reload an unknown token asked for; kept so that it is not collected while
        # its waiters (shielded: one waiter's cancellation must not cancel the others')
        # wait for it. It ends by itself, within the pool's timeout.
        self._miss_reload: asyncio.Future[None] | None = None
        failures = instruments.auth_failures if instruments is not None else None
        self._failed = {
            reason: (failures.labels(reason).inc if failures is not None else _nothing)
            for reason in AUTH_FAILURES
        }
        # Before the first load nothing is known: with auth not off, refuse (retryably)
        # rather than let anyone in because no token is known yet.
        self._state = _State(
            tokens={},
            settings={},
            anonymous=Principal(None, None, frozenset(Scope), self._defaults),
            ever=self._mode is not AuthMode.OFF,
            origins=self._defaults.allowed_origins,
            any_origin="*" in self._defaults.allowed_origins,
            loaded_at=-float("inf"),
        )

    # ---- the snapshot ------------------------------------------------------------------

    async def load(self) -> None:
        """Loads a snapshot now; raises ``StorageError`` (and keeps the old one) on failure."""
        self._install(await self._source.load())

    async def run(self) -> None:
        """Reloads every ``refresh`` seconds until cancelled. A failing load is logged
        once (and its recovery once); meanwhile the last snapshot serves until it is
        ``stale_after`` seconds old."""
        failing = False
        while True:
            await asyncio.sleep(self._refresh)
            try:
                async with asyncio.timeout(self._stale_after):
                    await self.load()
            except Exception as exc:
                if not failing:
                    failing = True
                    log.warning(
                        "cannot reload tokens and projects (requests needing a token are "
                        "refused %.0fs after the last good load): %s",
                        self._stale_after,
                        exc or type(exc).__name__,
                        exc_info=not isinstance(exc, StorageError | TimeoutError),
                    )
                continue
            if failing:
                failing = False
                log.info("tokens and projects reloaded again")

    def _install(self, snapshot: TenantSnapshot) -> None:
        settings = {project: self._merge(row) for project, row in snapshot.projects.items()}
        known: dict[str, _Known] = {}
        for token_id, entry in snapshot.tokens.items():
            scopes = frozenset(Scope(s) for s in entry.scopes if s in _SCOPE_VALUES)
            rate = RateLimit(entry.rate_records or 0.0, entry.rate_bytes or 0.0)
            project_settings = settings.get(entry.project_id, self._defaults)
            principal = Principal(entry.project_id, token_id, scopes, project_settings, rate)
            known[token_id] = _Known(entry.secret_sha256, principal)
        origins = set(self._defaults.allowed_origins)
        for project_settings in settings.values():
            origins |= project_settings.allowed_origins
        default_settings = settings.get(self._default_project, self._defaults)
        self._state = _State(
            tokens=known,
            settings=settings,
            anonymous=Principal(None, None, frozenset(Scope), default_settings),
            ever=snapshot.tokens_ever_created,
            origins=frozenset(origins),
            any_origin="*" in origins,
            loaded_at=self._clock(),
        )

    def _merge(self, row: ProjectRow) -> ProjectSettings:
        """A project's row over the server's defaults (NULL: the default)."""
        base = self._defaults
        return ProjectSettings(
            allowed_origins=(
                base.allowed_origins
                if row.allowed_origins is None
                else frozenset(_origin(o) for o in row.allowed_origins)
            ),
            anonymize_ip=base.anonymize_ip if row.anonymize_ip is None else row.anonymize_ip,
            rate_limit=RateLimit(
                base.rate_limit.records_per_second
                if row.rate_records is None
                else row.rate_records,
                base.rate_limit.bytes_per_second if row.rate_bytes is None else row.rate_bytes,
            ),
        )

    # ---- checks --------------------------------------------------------------------------

    @property
    def required(self) -> bool:
        """Whether a request must carry a token: ``required``, or ``auto`` once any token
        was ever created (revoked ones count; before the first load, assumed so)."""
        if self._mode is AuthMode.AUTO:
            return self._state.ever
        return self._mode is AuthMode.REQUIRED

    def authenticate(self, authorization: str | bytes | None, scope: Scope) -> Principal:
        """The caller of a request whose ``Authorization`` value is ``authorization``.

        A token presented is always checked, even while auth is off, and confines the
        request to its project. Raises ``Unauthenticated`` (no token while one is
        required; a malformed, unknown or revoked one, all with one message),
        ``PermissionDenied`` (a scope the token lacks) or ``StoreUnavailable`` (tokens are
        required and the snapshot is too old to trust).
        """
        state = self._state
        if self.required and self._clock() - state.loaded_at > self._stale_after:
            raise StoreUnavailable(CANNOT_VERIFY, self._retry_after)
        if not authorization:
            if self.required:
                self._failed["missing"]()
                raise Unauthenticated(MISSING_TOKEN)
            return state.anonymous
        parsed = _bearer(authorization)
        known = state.tokens.get(parsed[0]) if parsed is not None else None
        if known is None or parsed is None or not tokens.verify(parsed[1], known.digest):
            self._failed["invalid"]()
            raise Unauthenticated(INVALID_TOKEN)
        principal = known.principal
        if not principal.allows(scope):
            self._failed["scope"]()
            raise PermissionDenied(f"this token has no {scope.value} scope")
        return principal

    async def authorize(self, authorization: str | bytes | None, scope: Scope) -> Principal:
        """``authenticate``, after one reload if the token is not in the snapshot.

        A token made a moment ago (``otlpd tokens create``, then the first Export) is
        newer than the snapshot for up to ``refresh`` seconds; rather than refuse it, the
        snapshot is reloaded then and there. Reloads for unknown tokens are shared by the
        requests waiting for them and happen at most every ``_MISS_RELOAD_EVERY``
        seconds, so a client sending made-up tokens costs PostgreSQL at most a few small
        reads a second, and is refused like any other invalid token.
        """
        try:
            return self.authenticate(authorization, scope)
        except Unauthenticated:
            parsed = _bearer(authorization) if authorization else None
            if parsed is None or parsed[0] in self._state.tokens:
                raise  # malformed, missing, or known with another secret: nothing to learn
        await self._reload_for_miss()
        return self.authenticate(authorization, scope)

    async def _reload_for_miss(self) -> None:
        """One reload, shared by every request that found its token unknown meanwhile."""
        running = self._miss_reload
        if running is None or running.done():
            if self._clock() - self._state.loaded_at < _MISS_RELOAD_EVERY:
                return  # loaded just now: the token really is unknown
            running = self._miss_reload = asyncio.ensure_future(self.load())
        try:
            await asyncio.shield(running)
        except Exception:  # the caller is refused as invalid; run() reports load failures
            log.debug("reloading tokens for an unknown one failed", exc_info=True)

    def settings(self, project: str) -> ProjectSettings:
        """``project``'s settings: its row merged over the server's defaults."""
        return self._state.settings.get(project, self._defaults)

    def origin_allowed(self, origin: str, principal: Principal) -> bool:
        """Whether a browser at ``origin`` may send for ``principal``'s project."""
        allowed = principal.settings.allowed_origins
        if "*" in allowed or _origin(origin) in allowed:
            return True
        self._failed["origin"]()
        return False

    def preflight_allowed(self, origin: str) -> bool:
        """Whether some project (or the defaults) allows ``origin``: a CORS preflight
        carries no credentials, so its project is not known yet."""
        state = self._state
        if state.any_origin or _origin(origin) in state.origins:
            return True
        self._failed["origin"]()
        return False


_SCOPE_VALUES: Final = frozenset(s.value for s in Scope)


def _nothing() -> None:
    return None


def _origin(text: str) -> str:
    """An origin as compared: browsers send scheme and host in lowercase, without a path."""
    return text.strip().lower().rstrip("/")


def _normalized(settings: ProjectSettings) -> ProjectSettings:
    origins = frozenset(_origin(o) for o in settings.allowed_origins)
    if origins == settings.allowed_origins:
        return settings
    return ProjectSettings(origins, settings.anonymize_ip, settings.rate_limit)


def _bearer(authorization: str | bytes) -> tuple[str, str] | None:
    """``(token_id, secret)`` of ``Bearer <token>`` (scheme in any case), else None.

    Never raises: the value is whatever a client sent.
    """
    if isinstance(authorization, bytes | bytearray):
        try:
            authorization = bytes(authorization).decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(authorization, str) or len(authorization) > _MAX_AUTHORIZATION_CHARS:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return tokens.parse(credentials.strip())
