"""The admin subcommands of ``otlpd``: ``tokens``, ``projects``, ``usage`` and ``audit``.

They talk to PostgreSQL directly, like ``otlpd migrate`` (``OTLPD_DATABASE_URL``, else
the embedded server under ``OTLPD_DATA_DIR``), not to a running server: making the first
token must work before any server runs, and a server reloads tokens and projects on its
own within ``OTLPD_AUTH_REFRESH``. Each command migrates first, so it works on a fresh
database. Every change is recorded in the audit log with ``--actor`` (default
``$USER@host``).

Exit status: 0 done, 1 not found or the database failed, 2 a bad argument. This module
imports only argparse (and otlpd.config's parsers) at load time: ``otlpd serve`` parses
the same command line and must not pay for psycopg here.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from otlpd.config import parse_size

Handler = Callable[[argparse.Namespace, str], int]

SCOPES = ("ingest", "query", "admin")  # otlpd.access.Scope
_DEFAULT = "default"


class _Keep:
    """A settings flag not given: leave the project's value as it is. Not a string:
    argparse would pass a string default through the flag's type."""


_KEEP = _Keep()


# ---- flag values ---------------------------------------------------------------------


def rate(text: str) -> float:
    """A rate >= 0: a number, or for bytes a size such as ``1MiB`` (per second)."""
    value = text.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            number = float(parse_size(value))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number >= 0 (0: unlimited) or 'default', got {text!r}"
            ) from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (0: unlimited), got {text!r}")
    return number


def duration_or_default(text: str) -> float | str:
    """A duration in seconds (``24h``, ``30d``), or ``default``."""
    from otlpd.config import parse_duration

    if text.strip().lower() == _DEFAULT:
        return _DEFAULT
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return seconds


def rate_or_default(text: str) -> float | str:
    """A rate, or ``default`` (the server's OTLPD_RATE_LIMIT_*)."""
    return _DEFAULT if text.strip().lower() == _DEFAULT else rate(text)


def origins(text: str) -> tuple[str, ...] | str:
    """``https://a.example,https://b.example``, ``*``, ``none`` (no browser may send) or
    ``default`` (the server's OTLPD_CORS_ORIGINS)."""
    value = text.strip()
    if value.lower() == _DEFAULT:
        return _DEFAULT
    if value.lower() in ("", "none"):
        return ()
    return tuple(o.strip() for o in value.split(",") if o.strip())


def switch(text: str) -> bool | str:
    """``on``, ``off`` or ``default``."""
    value = text.strip().lower()
    if value in ("on", "true", "yes"):
        return True
    if value in ("off", "false", "no"):
        return False
    if value == _DEFAULT:
        return _DEFAULT
    raise argparse.ArgumentTypeError(f"expected on, off or default, got {text!r}")


def positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, got {text!r}")
    return number


def default_actor() -> str:
    """Who is making a change, for the audit log: ``$USER@host``."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # no name for this uid (a container)
            user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


# ---- argparse wiring -----------------------------------------------------------------


def add_commands(commands: Any) -> None:
    """Adds the admin subcommands to ``otlpd``'s subparsers (``commands``)."""

    def command(target: Any, name: str, handler: Handler, help_text: str) -> Any:
        parser = target.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(admin=handler)
        return parser

    def group(name: str, help_text: str) -> Any:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")

    def actor(parser: Any) -> None:
        parser.add_argument("--actor", help="who makes the change, for the audit log ($USER@host)")

    def as_json(parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON (one document)")

    tokens = group("tokens", "make, list and revoke API tokens (in PostgreSQL)")
    create = command(
        tokens,
        "create",
        _tokens_create,
        "make a token; it is printed once, alone on the last line",
    )
    create.add_argument("--project", required=True, help="the project the token sends to/reads")
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        choices=SCOPES,
        help="ingest (send OTLP), query (read) or admin (any project); repeat for several",
    )
    create.add_argument("--name", default="", help="what the token is for (shown by list)")
    create.add_argument(
        "--rate-records", type=rate, help="this token's own limit, records/s per process"
    )
    create.add_argument(
        "--rate-bytes", type=rate, help="this token's own limit, bytes/s per process (1MiB)"
    )
    actor(create)
    listing = command(tokens, "list", _tokens_list, "list tokens (never their secrets)")
    listing.add_argument("--project", help="only this project's")
    as_json(listing)
    revoke = command(
        tokens,
        "revoke",
        _tokens_revoke,
        "revoke a token; every server refuses it within seconds",
    )
    revoke.add_argument("token_id", metavar="ID", help="the token's id (tokens list)")
    actor(revoke)

    projects = group(
        "projects", "a project's settings: browser origins, IP anonymizing, limits, retention"
    )
    settings = command(
        projects,
        "set",
        _projects_set,
        "create a project or change the settings given ('default': the server's)",
    )
    settings.add_argument("project", metavar="PROJECT")
    settings.add_argument(
        "--origins",
        type=origins,
        default=_KEEP,
        help="browser origins allowed to send OTLP/HTTP: https://a.example,https://b.example,"
        " * (any), none, or default (OTLPD_CORS_ORIGINS)",
    )
    settings.add_argument(
        "--anonymize-ip",
        type=switch,
        default=_KEEP,
        metavar="{on,off,default}",
        help="drop the last octets of client IP addresses (default: OTLPD_ANONYMIZE_IP)",
    )
    settings.add_argument(
        "--rate-records",
        type=rate_or_default,
        default=_KEEP,
        help="records/s per process, 0 unlimited, or default (OTLPD_RATE_LIMIT_RECORDS)",
    )
    settings.add_argument(
        "--rate-bytes",
        type=rate_or_default,
        default=_KEEP,
        help="request bytes/s per process (1MiB), 0 unlimited, or default",
    )
    actor(settings)
    listing = command(projects, "list", _projects_list, "list projects and their settings")
    as_json(listing)
    retention = command(
        projects,
        "set-retention",
        _projects_set_retention,
        "how long a project's rows stay hot (PostgreSQL) and cold (objects) before they go",
    )
    retention.add_argument("project", metavar="PROJECT")
    retention.add_argument("--signal", required=True, choices=tuple(_RETENTION_SIGNALS))
    retention.add_argument(
        "--hot",
        type=duration_or_default,
        default=_KEEP,
        help="e.g. 24h, or default (OTLPD_HOT_RETENTION_*)",
    )
    retention.add_argument(
        "--cold",
        type=duration_or_default,
        default=_KEEP,
        help="e.g. 30d, or default (OTLPD_COLD_RETENTION_*)",
    )
    actor(retention)

    usage = command(commands, "usage", _usage, "records and bytes stored per day and signal")
    usage.add_argument("--project", required=True)
    usage.add_argument("--days", type=positive, default=30, help="the last N UTC days (30)")
    as_json(usage)

    audit = command(commands, "audit", _audit, "changes to tokens and projects, newest first")
    audit.add_argument("--project", help="only this project's")
    audit.add_argument("--limit", type=positive, default=50, help="at most this many (50)")
    as_json(audit)


def is_admin(args: argparse.Namespace) -> bool:
    """Whether ``args`` names an admin subcommand."""
    return getattr(args, "admin", None) is not None


# ---- running a command ---------------------------------------------------------------


def run(args: argparse.Namespace, database_url: str) -> int:
    """Runs the admin subcommand ``args`` names against ``database_url``; its exit status."""
    from storage.api import StorageError
    from storage.postgres.migrate import MigrationError, migrate
    from storage.postgres.tenants import InvalidArgument

    handler: Handler = args.admin
    try:
        migrate(database_url)
        return handler(args, database_url)
    except InvalidArgument as exc:
        print(f"otlpd: {exc}", file=sys.stderr)
        return 2
    except (StorageError, MigrationError) as exc:
        print(f"otlpd: {exc}", file=sys.stderr)
        return 1


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _json(document: Any) -> None:
    _print(json.dumps(document, indent=2, ensure_ascii=False, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _time(value)
    if hasattr(value, "isoformat"):  # a date
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    from otlpd.client.render import table

    return table(headers, rows)


def _number(value: float | None) -> str:
    if value is None:
        return _DEFAULT
    if value == 0:
        return "unlimited"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _tokens_create(args: argparse.Namespace, database_url: str) -> int:
    from storage.postgres.tenants import create_token

    token_id, text = create_token(
        database_url,
        args.project,
        args.scopes,
        name=args.name,
        actor=args.actor or default_actor(),
        rate=(args.rate_records, args.rate_bytes),
    )
    scopes = ", ".join(s for s in SCOPES if s in args.scopes)
    _print(f"token {token_id} for project {args.project}, scopes: {scopes}")
    _print("shown once, never again: store it now (revoke it with otlpd tokens revoke ID)")
    _print(text)
    return 0


def _tokens_list(args: argparse.Namespace, database_url: str) -> int:
    from storage.postgres.tenants import list_tokens

    found = list_tokens(database_url, args.project)
    if args.json:
        _json(
            [
                {
                    "id": t.token_id,
                    "project": t.project_id,
                    "scopes": list(t.scopes),
                    "name": t.name,
                    "created_at": t.created_at,
                    "created_by": t.created_by,
                    "revoked_at": t.revoked_at,
                    "revoked_by": t.revoked_by,
                    "rate_records": t.rate_records,
                    "rate_bytes": t.rate_bytes,
                }
                for t in found
            ]
        )
        return 0
    rows = [
        (
            t.token_id,
            t.project_id,
            ",".join(t.scopes),
            t.name,
            _time(t.created_at),
            _time(t.revoked_at) or "-",
        )
        for t in found
    ]
    _print(_table(("ID", "PROJECT", "SCOPES", "NAME", "CREATED", "REVOKED"), rows))
    return 0


def _tokens_revoke(args: argparse.Namespace, database_url: str) -> int:
    from storage.postgres.tenants import revoke_token

    if not revoke_token(database_url, args.token_id, actor=args.actor or default_actor()):
        print(f"otlpd: no token {args.token_id!r}", file=sys.stderr)
        return 1
    _print(f"token {args.token_id} revoked")
    return 0


def _setting(value: Any) -> Any:
    """A flag's value as ``set_project`` takes it: UNCHANGED, None (default) or the value."""
    from storage.postgres.tenants import UNCHANGED

    if value is _KEEP:
        return UNCHANGED
    return None if value == _DEFAULT else value


def _projects_set(args: argparse.Namespace, database_url: str) -> int:
    from storage.postgres.tenants import set_project

    row = set_project(
        database_url,
        args.project,
        origins=_setting(args.origins),
        anonymize_ip=_setting(args.anonymize_ip),
        rate_records=_setting(args.rate_records),
        rate_bytes=_setting(args.rate_bytes),
        actor=args.actor or default_actor(),
    )
    _print(_table(_PROJECT_HEADERS, [_project_cells(row)]))
    return 0


# otlpd projects set-retention --signal: its name -> the hot table it covers.
_RETENTION_SIGNALS = {"spans": "spans", "logs": "logs", "metrics": "metric_points"}


def _projects_set_retention(args: argparse.Namespace, database_url: str) -> int:
    from storage.postgres.tenants import set_retention

    row = set_retention(
        database_url,
        args.project,
        _RETENTION_SIGNALS[args.signal],
        hot_seconds=_setting(args.hot),
        cold_seconds=_setting(args.cold),
        actor=args.actor or default_actor(),
    )
    cells = [
        (
            row.project_id,
            args.signal,
            _DEFAULT if row.hot_seconds is None else f"{row.hot_seconds:g}s",
            _DEFAULT if row.cold_seconds is None else f"{row.cold_seconds:g}s",
        )
    ]
    _print(_table(("PROJECT", "SIGNAL", "HOT", "COLD"), cells))
    return 0


_PROJECT_HEADERS = ("PROJECT", "ORIGINS", "ANONYMIZE_IP", "RATE_RECORDS", "RATE_BYTES", "TOKENS")


def _project_cells(row: Any) -> tuple[str, ...]:
    if row.allowed_origins is None:
        origins_text = _DEFAULT
    else:
        origins_text = ",".join(row.allowed_origins) or "none"
    anonymize = _DEFAULT if row.anonymize_ip is None else ("on" if row.anonymize_ip else "off")
    return (
        row.project_id,
        origins_text,
        anonymize,
        _number(row.rate_records),
        _number(row.rate_bytes),
        str(row.active_tokens),
    )


def _projects_list(args: argparse.Namespace, database_url: str) -> int:
    from storage.postgres.tenants import get_projects

    found = get_projects(database_url)
    if args.json:
        _json(
            [
                {
                    "project": p.project_id,
                    "allowed_origins": None
                    if p.allowed_origins is None
                    else list(p.allowed_origins),
                    "anonymize_ip": p.anonymize_ip,
                    "rate_records": p.rate_records,
                    "rate_bytes": p.rate_bytes,
                    "active_tokens": p.active_tokens,
                    "created_at": p.created_at,
                    "updated_at": p.updated_at,
                }
                for p in found
            ]
        )
        return 0
    _print(_table(_PROJECT_HEADERS, [_project_cells(p) for p in found]))
    return 0


def _usage(args: argparse.Namespace, database_url: str) -> int:
    from storage.postgres.usage import usage_report

    rows = usage_report(database_url, args.project, args.days)
    if args.json:
        _json(
            [
                {"day": u.day, "signal": u.signal, "records": u.records, "bytes": u.bytes}
                for u in rows
            ]
        )
        return 0
    cells = [(u.day.isoformat(), u.signal, str(u.records), str(u.bytes)) for u in rows]
    _print(_table(("DAY", "SIGNAL", "RECORDS", "BYTES"), cells))
    return 0


def _audit(args: argparse.Namespace, database_url: str) -> int:
    from storage.postgres.tenants import audit_entries

    entries = audit_entries(database_url, args.project, args.limit)
    if args.json:
        _json(
            [
                {
                    "at": e.at,
                    "project": e.project_id,
                    "actor": e.actor,
                    "action": e.action,
                    "subject": e.subject,
                    "details": e.details,
                }
                for e in entries
            ]
        )
        return 0
    rows = [
        (
            _time(e.at),
            e.project_id,
            e.actor,
            e.action,
            e.subject,
            json.dumps(e.details, ensure_ascii=False, separators=(",", ":")),
        )
        for e in entries
    ]
    _print(_table(("AT", "PROJECT", "ACTOR", "ACTION", "SUBJECT", "DETAILS"), rows))
    return 0


__all__: Sequence[str] = ("add_commands", "is_admin", "run")
