"""Who the query client says it is and how it connects: token metadata, TLS files from
flags or the environment, and a token against a real otlpd that requires one. (TLS
against a real otlpd: tests/test_tls.py.)"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from otlpd.__main__ import main
from otlpd.client import commands
from otlpd.client.connect import ClientFailure, Target, channel_credentials
from storage.postgres.migrate import migrate
from storage.postgres.tenants import create_token
from tests.conftest import RunningOtlpd


def parsed(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["services", *flags])


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OTLPD_TOKEN", "OTLPD_QUERY_CA", "OTLPD_QUERY_CERT", "OTLPD_QUERY_KEY"):
        monkeypatch.delenv(variable, raising=False)


def test_a_token_is_sent_as_a_bearer_authorization() -> None:
    target = commands._target(parsed("--token", "otlpd_abc_def", "--project", "shop"))
    assert target.metadata == (
        ("x-otlpd-project", "shop"),
        ("authorization", "Bearer otlpd_abc_def"),
    )
    assert Target("h:1").metadata == ()
    assert not target.tls


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTLPD_TOKEN", "from-env")
    monkeypatch.setenv("OTLPD_QUERY_CA", "/env/ca.pem")
    monkeypatch.setenv("OTLPD_QUERY_CERT", "/env/c.pem")
    monkeypatch.setenv("OTLPD_QUERY_KEY", "/env/k.pem")
    target = commands._target(parsed())
    assert (target.token, target.ca, target.cert, target.key) == (
        "from-env",
        Path("/env/ca.pem"),
        Path("/env/c.pem"),
        Path("/env/k.pem"),
    )
    target = commands._target(parsed("--token", "flag", "--ca", "/flag/ca.pem"))
    assert (target.token, target.ca) == ("flag", Path("/flag/ca.pem"))
    assert target.tls


def test_a_certificate_needs_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("not used")
    for target in (Target("h:1", cert=cert), Target("h:1", key=cert)):
        assert target.tls
        with pytest.raises(ClientFailure, match="--cert and --key go together"):
            channel_credentials(target)


def test_an_unreadable_file_is_named_by_its_flag(tmp_path: Path) -> None:
    with pytest.raises(ClientFailure, match=r"^--ca: cannot read .*missing\.pem"):
        channel_credentials(Target("h:1", ca=tmp_path / "missing.pem"))


def test_a_server_that_requires_a_token_gets_it_from_the_flag_or_the_environment(
    database_url: str,
    start_otlpd: Callable[..., RunningOtlpd],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrate(database_url)
    _, token = create_token(database_url, "shop", ["query"])
    server = start_otlpd(auth="required")
    flags = ["services", "--addr", f"127.0.0.1:{server.app.ports.query}", "--timeout", "5s"]
    assert main(flags) == 1
    error = capsys.readouterr().err
    assert error.startswith("otlpd: UNAUTHENTICATED: ")
    assert error.endswith("(set --token or OTLPD_TOKEN)\n")
    assert main([*flags, "--token", token]) == 0
    capsys.readouterr()
    monkeypatch.setenv("OTLPD_TOKEN", token)
    assert main(flags) == 0
    assert main([*flags, "--token", token + "x"]) == 1  # the flag wins, and is checked
    assert capsys.readouterr().err.startswith("otlpd: UNAUTHENTICATED: ")
