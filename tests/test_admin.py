"""``otlpd tokens | projects | usage | audit``: the admin CLI against a real (fresh,
unmigrated) PostgreSQL database, run in-process through ``otlpd.__main__.main``."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from otlpd import tokens
from otlpd.__main__ import main
from otlpd.access import Access, AuthMode, ProjectSettings, Scope
from otlpd.errors import Unauthenticated
from storage.postgres.tenants import PostgresTenants


@pytest.fixture
def cli(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[pytest.CaptureFixture[str]]:
    """``main`` pointed at a fresh database; the root logger put back after (main
    configures logging as a process would)."""
    monkeypatch.setenv("OTLPD_DATABASE_URL", database_url)
    monkeypatch.setenv("OTLPD_LOG_JSON", "false")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield capsys
    root.handlers[:], root.level = handlers, level


def _run(cli: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = cli.readouterr()
    return code, out, err


async def test_tokens_create_list_revoke(
    cli: pytest.CaptureFixture[str], database_url: str
) -> None:
    code, out, _ = _run(
        cli,
        "tokens",
        "create",
        "--project",
        "acme",
        "--scope",
        "query",
        "--scope",
        "ingest",
        "--name",
        "ci",
        "--rate-records",
        "50",
        "--actor",
        "alice",
    )
    assert code == 0
    *about, text = out.strip().splitlines()
    parsed = tokens.parse(text)  # the token alone on the last line
    assert parsed is not None
    token_id = parsed[0]
    assert token_id in about[0] and "acme" in about[0] and "ingest, query" in about[0]
    assert "shown once" in " ".join(about)

    async with PostgresTenants(database_url) as source:
        access = Access(
            source, mode=AuthMode.AUTO, default_project="default", defaults=ProjectSettings()
        )
        await access.load()
        principal = access.authenticate(f"Bearer {text}", Scope.QUERY)
        assert (principal.project, principal.token_id) == ("acme", token_id)
        assert principal.token_rate_limit.records_per_second == 50

        code, out, _ = _run(cli, "tokens", "list")
        assert code == 0
        header, row = out.strip().splitlines()
        assert header.split() == ["ID", "PROJECT", "SCOPES", "NAME", "CREATED", "REVOKED"]
        assert row.split()[:4] == [token_id, "acme", "ingest,query", "ci"]
        assert row.split()[5] == "-"
        assert parsed[1] not in out

        code, out, _ = _run(cli, "tokens", "revoke", token_id, "--actor", "bob")
        assert (code, out.strip()) == (0, f"token {token_id} revoked")
        code, _, err = _run(cli, "tokens", "revoke", "aaaaaaaaaaaa")
        assert code == 1 and "no token" in err

        await access.load()
        with pytest.raises(Unauthenticated):
            access.authenticate(f"Bearer {text}", Scope.QUERY)

    code, out, _ = _run(cli, "tokens", "list", "--project", "acme", "--json")
    (listed,) = json.loads(out)
    assert listed["id"] == token_id and listed["scopes"] == ["ingest", "query"]
    assert listed["revoked_by"] == "bob" and listed["revoked_at"].endswith("Z")
    assert parsed[1] not in out
    assert json.loads(_run(cli, "tokens", "list", "--project", "other", "--json")[1]) == []

    code, out, _ = _run(cli, "audit", "--project", "acme", "--json")
    assert [(e["action"], e["actor"], e["subject"]) for e in json.loads(out)] == [
        ("token.revoke", "bob", token_id),
        ("token.create", "alice", token_id),
        ("project.create", "alice", "acme"),
    ]
    code, out, _ = _run(cli, "audit", "--limit", "1")
    assert code == 0 and len(out.strip().splitlines()) == 2 and "token.revoke" in out


def test_projects_set_and_list(
    cli: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "carol")
    code, out, _ = _run(
        cli,
        "projects",
        "set",
        "web",
        "--origins",
        "https://a.example,https://B.example",
        "--anonymize-ip",
        "off",
        "--rate-records",
        "100",
        "--rate-bytes",
        "1MiB",
    )
    assert code == 0
    assert out.split()[6:12] == [
        "web",
        "https://a.example,https://b.example",
        "off",
        "100",
        "1048576",
        "0",
    ]
    assert _run(cli, "projects", "set", "web", "--rate-bytes", "default")[0] == 0
    assert _run(cli, "projects", "set", "other", "--origins", "none")[0] == 0
    code, out, _ = _run(cli, "projects", "list", "--json")
    assert code == 0
    other, web = json.loads(out)  # by id
    assert web["project"] == "web"
    assert web["allowed_origins"] == ["https://a.example", "https://b.example"]
    assert (web["anonymize_ip"], web["rate_records"], web["rate_bytes"]) == (False, 100.0, None)
    assert (other["allowed_origins"], other["anonymize_ip"]) == ([], None)
    code, out, _ = _run(cli, "projects", "list")
    assert out.splitlines()[1].split() == ["other", "none", "default", "default", "default", "0"]
    audit = json.loads(_run(cli, "audit", "--project", "web", "--json")[1])
    assert {e["actor"] for e in audit} == {f"carol@{socket.gethostname()}"}
    assert audit[0]["details"] == {
        "before": {"rate_bytes": 1048576.0},
        "after": {"rate_bytes": None},
    }


def test_bad_arguments_exit_2_and_change_nothing(
    cli: pytest.CaptureFixture[str], database_url: str
) -> None:
    refused: tuple[tuple[str, ...], ...] = (
        ("tokens", "create", "--project", "a/b", "--scope", "ingest"),
        ("tokens", "create", "--project", "x" * 129, "--scope", "ingest"),
        ("projects", "set", "a=b"),
        ("projects", "set", "web", "--origins", "https://a.example/path"),
    )
    for argv in refused:
        code, out, err = _run(cli, *argv)
        assert (code, out) == (2, ""), argv
        assert err.startswith("otlpd: ")
    malformed: tuple[tuple[str, ...], ...] = (
        ("tokens", "create", "--project", "p", "--scope", "write"),
        ("tokens", "create", "--project", "p"),
        ("projects", "set", "web", "--rate-records", "-1"),
        ("projects", "set", "web", "--anonymize-ip", "maybe"),
        ("usage", "--project", "p", "--days", "0"),
    )
    for argv in malformed:
        with pytest.raises(SystemExit) as exited:  # argparse's own refusal
            main(list(argv))
        assert exited.value.code == 2, argv
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)


def test_usage(cli: pytest.CaptureFixture[str], database_url: str) -> None:
    assert _run(cli, "usage", "--project", "acme")[0] == 0  # migrated by the command
    today = datetime.now(UTC).date()
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO usage_daily VALUES (%s, %s, 'traces', 10, 1000),"
            " (%s, %s - 1, 'logs', 2, 20), (%s, %s - 40, 'logs', 9, 9), ('b', %s, 'logs', 1, 1)",
            ("acme", today, "acme", today, "acme", today, today),
        )
    code, out, _ = _run(cli, "usage", "--project", "acme", "--json")
    assert code == 0
    assert json.loads(out) == [
        {"day": today.isoformat(), "signal": "traces", "records": 10, "bytes": 1000},
        {
            "day": today.fromordinal(today.toordinal() - 1).isoformat(),
            "signal": "logs",
            "records": 2,
            "bytes": 20,
        },
    ]
    code, out, _ = _run(cli, "usage", "--project", "acme", "--days", "1")
    assert out.strip().splitlines() == [
        "DAY         SIGNAL  RECORDS  BYTES",
        f"{today.isoformat()}  traces  10       1000",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ("tokens",),
        ("tokens", "create"),
        ("tokens", "list"),
        ("tokens", "revoke"),
        ("projects", "set"),
        ("projects", "list"),
        ("usage",),
        ("audit",),
    ],
)
def test_every_command_has_help(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    assert "usage: otlpd" in capsys.readouterr().out
