"""otlpd.access: who may call, checked against a snapshot of PostgreSQL's tokens and
projects (the real ``storage.postgres.tenants`` source, over a fresh database)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otlpd import tokens
from otlpd.access import (
    INVALID_TOKEN,
    MISSING_TOKEN,
    Access,
    AuthMode,
    Principal,
    ProjectSettings,
    RateLimit,
    Scope,
)
from otlpd.errors import PermissionDenied, StoreUnavailable, Unauthenticated
from otlpd.instruments import Instruments
from storage.api import StorageUnavailable
from storage.postgres import tenants
from storage.postgres.migrate import migrate

DEFAULTS = ProjectSettings(frozenset({"https://default.example"}), True, RateLimit(10.0, 0.0))


@pytest.fixture
def db(database_url: str) -> str:
    migrate(database_url)
    return database_url


@pytest.fixture
async def source(db: str) -> AsyncIterator[tenants.PostgresTenants]:
    async with tenants.PostgresTenants(db) as source:
        yield source


def _access(
    source: tenants.PostgresTenants, mode: AuthMode = AuthMode.AUTO, **options: Any
) -> Access:
    return Access(
        source, mode=mode, default_project="default", defaults=DEFAULTS, refresh=0.2, **options
    )


@contextlib.asynccontextmanager
async def _running(*accesses: Access) -> AsyncIterator[None]:
    """Each Access reloading in the background (as app.py runs it), cancelled after."""
    tasks = [asyncio.create_task(access.run()) for access in accesses]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _make(db: str, project: str, *scopes: str, **options: Any) -> tuple[str, str]:
    return tenants.create_token(db, project, list(scopes), actor="test", **options)


async def _until(check: Callable[[], bool], within: float) -> float:
    """Seconds until ``check()`` held; fails after ``within``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "not within the time allowed"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def _refused(access: Access, authorization: str) -> bool:
    try:
        access.authenticate(authorization, Scope.INGEST)
    except Unauthenticated:
        return True
    return False


async def test_a_revoked_token_stops_on_two_replicas_within_five_seconds(db: str) -> None:
    token_id, text = _make(db, "acme", "ingest", rate=(5.0, None))
    other_id, other = _make(db, "acme", "ingest")
    async with tenants.PostgresTenants(db) as one, tenants.PostgresTenants(db) as two:
        replicas = [_access(one), _access(two)]
        for access in replicas:
            await access.load()
            principal = access.authenticate(f"Bearer {text}", Scope.INGEST)
            assert principal == Principal(
                "acme", token_id, frozenset({Scope.INGEST}), DEFAULTS, RateLimit(5.0, 0.0)
            )
        async with _running(*replicas):
            await asyncio.to_thread(tenants.revoke_token, db, token_id, actor="test")
            for access in replicas:
                await _until(partial(_refused, access, f"Bearer {text}"), within=5.0)
            # Only the revoked one.
            for access in replicas:
                assert access.authenticate(f"Bearer {other}", Scope.INGEST).token_id == other_id


async def test_auto_requires_a_token_once_one_was_ever_made(
    db: str, source: tenants.PostgresTenants
) -> None:
    access, off, required = (
        _access(source),
        _access(source, AuthMode.OFF),
        _access(source, AuthMode.REQUIRED),
    )
    for each in (access, off, required):
        await each.load()
    assert (access.required, off.required, required.required) == (False, False, True)
    anonymous = access.authenticate(None, Scope.QUERY)
    assert anonymous == Principal(None, None, frozenset(Scope), DEFAULTS)
    with pytest.raises(Unauthenticated, match=MISSING_TOKEN):
        required.authenticate(None, Scope.INGEST)

    token_id, text = _make(db, "acme", "ingest")
    await access.load()
    await off.load()
    assert access.required
    with pytest.raises(Unauthenticated, match=MISSING_TOKEN):
        access.authenticate(None, Scope.INGEST)
    with pytest.raises(Unauthenticated, match=MISSING_TOKEN):
        access.authenticate("", Scope.INGEST)
    # Off: no token is fine, but a token presented is still checked and scopes the request.
    assert off.authenticate(None, Scope.INGEST).project is None
    assert off.authenticate(f"Bearer {text}", Scope.INGEST).project == "acme"
    with pytest.raises(Unauthenticated):
        off.authenticate(f"Bearer {text[:-1]}x", Scope.INGEST)

    tenants.revoke_token(db, token_id, actor="test")
    await access.load()
    assert access.required  # revoking every token does not open the server


async def test_every_refusal_kind(db: str, source: tenants.PostgresTenants) -> None:
    instruments = Instruments()
    access = _access(source, instruments=instruments)
    ingest_id, ingest = _make(db, "acme", "ingest")
    revoked_id, revoked = _make(db, "acme", "ingest")
    _, admin = _make(db, "globex", "admin")
    tenants.revoke_token(db, revoked_id, actor="test")
    await access.load()

    def failures(reason: str) -> float:
        value = instruments.registry.get_sample_value(
            "otlpd_auth_failures_total", {"reason": reason}
        )
        return value or 0.0

    with pytest.raises(Unauthenticated, match=MISSING_TOKEN):
        access.authenticate(None, Scope.INGEST)
    unknown = tokens.mint().text
    wrong_secret = ingest[:-4] + ("AAAA" if not ingest.endswith("AAAA") else "BBBB")
    for authorization in (
        "Bearer otlpd_nonsense",  # malformed
        f"Bearer {unknown}",  # unknown id
        f"Bearer {wrong_secret}",  # known id, wrong secret
        f"Bearer {revoked}",  # revoked
        f"Basic {ingest}",  # another scheme
        ingest,  # no scheme
        f"Bearer{ingest}",
    ):
        with pytest.raises(Unauthenticated) as refused:
            access.authenticate(authorization, Scope.INGEST)
        assert str(refused.value) == INVALID_TOKEN, authorization  # one answer for all
    with pytest.raises(PermissionDenied, match="query"):
        access.authenticate(f"Bearer {ingest}", Scope.QUERY)
    assert (failures("missing"), failures("invalid"), failures("scope")) == (1, 7, 1)

    # The scheme in any case, spaces around, bytes as HTTP hands them over.
    accepted: tuple[str | bytes, ...] = (
        f"bearer {ingest}",
        f"BEARER  {ingest} ",
        f"Bearer {ingest}".encode(),
    )
    for value in accepted:
        assert access.authenticate(value, Scope.INGEST).token_id == ingest_id
    # admin implies the others.
    for scope in Scope:
        assert access.authenticate(f"Bearer {admin}", scope).project == "globex"


async def test_a_stale_snapshot_is_not_trusted_while_tokens_are_required(
    db: str, source: tenants.PostgresTenants, caplog: pytest.LogCaptureFixture
) -> None:
    _, text = _make(db, "acme", "ingest")
    access = _access(source, stale_after=1.0, retry_after=2.0)
    off = _access(source, AuthMode.OFF, stale_after=1.0)
    await access.load()
    await off.load()
    caplog.set_level(logging.INFO, logger="otlpd.access")
    async with _running(access, off):
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("ALTER TABLE api_tokens RENAME TO api_tokens_away")  # loads fail
        try:

            def unavailable() -> bool:
                try:
                    access.authenticate(f"Bearer {text}", Scope.INGEST)
                except StoreUnavailable as exc:
                    assert exc.retry_after == 2.0
                    assert "cannot verify tokens" in str(exc)
                    return True
                return False

            assert await _until(unavailable, within=3.0) > 0.5
            # Nothing to verify while auth is off: the stale snapshot still serves.
            assert off.authenticate(None, Scope.INGEST).project is None
        finally:
            with psycopg.connect(db, autocommit=True) as conn:
                conn.execute("ALTER TABLE api_tokens_away RENAME TO api_tokens")
        await _until(lambda: not unavailable(), within=2.0)
        recovered = lambda: sum("reloaded again" in r.getMessage() for r in caplog.records)  # noqa: E731
        await _until(lambda: recovered() == 2, within=2.0)  # both, each once
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once per Access, not once per failed load
    assert sum("reloaded again" in r.getMessage() for r in caplog.records) == 2


async def test_a_first_load_fails_when_postgresql_is_down() -> None:
    async with tenants.PostgresTenants(
        "postgresql://postgres@127.0.0.1:1/nowhere", timeout=0.5
    ) as source:
        access = _access(source)
        with pytest.raises(StorageUnavailable):
            await access.load()
        # Nothing known: refused retryably rather than let anyone in.
        assert access.required
        with pytest.raises(StoreUnavailable):
            access.authenticate(None, Scope.INGEST)


async def test_project_settings_and_origins(db: str, source: tenants.PostgresTenants) -> None:
    instruments = Instruments()
    tenants.set_project(
        db,
        "web",
        origins=["https://App.example"],
        anonymize_ip=False,
        rate_records=100,
        actor="test",
    )
    tenants.set_project(db, "open", origins=["*"], actor="test")
    tenants.set_project(db, "default", rate_bytes=1000, actor="test")
    _, web = _make(db, "web", "ingest")
    _, plain = _make(db, "plain", "ingest")  # a project row with every setting NULL
    access = _access(source, instruments=instruments)
    await access.load()

    assert access.settings("web") == ProjectSettings(
        frozenset({"https://app.example"}), False, RateLimit(100.0, 0.0)
    )
    assert access.settings("plain") == DEFAULTS
    assert access.settings("nowhere") == DEFAULTS
    # Without a token, the default project's settings.
    assert access.settings("default").rate_limit == RateLimit(10.0, 1000.0)
    assert _refused(access, "") is True  # a token exists: one is required now

    principal = access.authenticate(f"Bearer {web}", Scope.INGEST)
    assert principal.settings == access.settings("web")
    assert access.origin_allowed("https://app.example", principal)
    assert access.origin_allowed("HTTPS://APP.EXAMPLE", principal)
    assert not access.origin_allowed("https://default.example", principal)
    assert not access.origin_allowed("https://evil.example", principal)
    defaults = access.authenticate(f"Bearer {plain}", Scope.INGEST)
    assert access.origin_allowed("https://default.example", defaults)
    assert not access.origin_allowed("https://app.example", defaults)
    failed = instruments.registry.get_sample_value(
        "otlpd_auth_failures_total", {"reason": "origin"}
    )
    assert failed == 3

    # A preflight has no token: any project's origin (or the defaults') passes; "open"
    # allows every origin.
    assert access.preflight_allowed("https://app.example")
    assert access.preflight_allowed("https://anything.example")
    tenants.set_project(db, "open", origins=None, actor="test")
    await access.load()
    assert access.preflight_allowed("https://app.example")
    assert access.preflight_allowed("https://default.example")
    assert not access.preflight_allowed("https://anything.example")


async def test_garbage_in_authorization_is_only_ever_unauthenticated(
    db: str, source: tenants.PostgresTenants
) -> None:
    _, text = _make(db, "acme", "ingest")
    access = _access(source, AuthMode.REQUIRED)
    await access.load()
    token_id = text[6:18]

    garbage = st.one_of(
        st.text(),
        st.binary(),
        st.builds(lambda s: "Bearer " + s, st.text()),
        st.builds(lambda s: b"Bearer " + s, st.binary()),
        st.builds(lambda s: f"Bearer otlpd_{token_id}_{s}", st.text(min_size=40, max_size=46)),
        st.builds(
            lambda i, c: f"bearer {text[:i]}{c}{text[i + 1 :]}",
            st.integers(0, len(text) - 1),
            st.characters(),
        ),
        st.text(min_size=2000, max_size=3000),
    )

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(garbage)
    def check(value: str | bytes) -> None:
        try:
            principal = access.authenticate(value, Scope.INGEST)
        except Unauthenticated:
            return
        # Only the token itself gets in (a mutation that changed nothing).
        assert principal.project == "acme"
        assert tokens.parse(text) == tokens.parse(
            (value.decode() if isinstance(value, bytes) else value).split()[-1]
        )

    check()


class _CountingSource:
    """The real source, counting its loads."""

    def __init__(self, source: tenants.PostgresTenants) -> None:
        self.source = source
        self.loads = 0

    async def load(self) -> tenants.TenantSnapshot:
        self.loads += 1
        return await self.source.load()


async def test_a_token_made_after_the_last_load_works_at_once(
    db: str, source: tenants.PostgresTenants
) -> None:
    """authorize reloads once for a token the snapshot does not know yet (a token made a
    moment ago); made-up ones share one reload and are refused as invalid."""
    counting = _CountingSource(source)
    access = Access(
        counting,
        mode=AuthMode.AUTO,
        default_project="default",
        defaults=DEFAULTS,
        refresh=60.0,
        stale_after=120.0,
    )
    await access.load()
    _, text = _make(db, "shop", "ingest")
    with pytest.raises(Unauthenticated):  # the snapshot alone does not know it yet
        access.authenticate(f"Bearer {text}", Scope.INGEST)
    await asyncio.sleep(0.3)  # past the spacing of reloads for unknown tokens
    assert (await access.authorize(f"Bearer {text}", Scope.INGEST)).project == "shop"
    assert counting.loads == 2

    await asyncio.sleep(0.3)
    made_up = [f"Bearer {tokens.mint().text}" for _ in range(20)]
    results = await asyncio.gather(
        *(access.authorize(value, Scope.INGEST) for value in made_up), return_exceptions=True
    )
    assert all(isinstance(r, Unauthenticated) for r in results), results
    assert counting.loads == 3
    # Right after a load, an unknown token is refused without another.
    with pytest.raises(Unauthenticated):
        await access.authorize(f"Bearer {tokens.mint().text}", Scope.INGEST)
    assert counting.loads == 3
