"""The ``otlpd`` command: ``serve``, ``migrate``, ``version``, the query client
(``traces``, ``trace``, ``logs``, ``metrics``, ``session``, ``services``, ``operations``,
and the insights ``stats``, ``graph``, ``latency``, ``anomalies``, ``spikes``,
``patterns``: see ``otlpd.client``; the alerting client ``alerts`` and ``rules``: see
``otlpd.client.alerts``), and administration in PostgreSQL (``tokens``, ``projects``,
``usage``, ``audit``: see ``otlpd.admin``).

Every setting is an ``OTLPD_*`` variable and, for ``serve``, a flag of the same name;
a flag wins over the variable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import fields

from otlpd import __version__, embedded, logformat
from otlpd.admin import add_commands as add_admin_commands
from otlpd.admin import is_admin
from otlpd.client.commands import add_commands as add_client_commands
from otlpd.client.commands import is_client
from otlpd.config import Config, ConfigError, load, settings
from otlpd.listening import CannotListen, bind_hosts

log = logging.getLogger("otlpd")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otlpd", description="OTLP telemetry server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="receive OTLP and store it in PostgreSQL")
    for variable, flag, doc in settings():
        serve.add_argument(flag, dest=flag[2:].replace("-", "_"), help=f"{doc} [{variable}]")
    commands.add_parser("migrate", help="create or upgrade the schema, then exit")
    commands.add_parser("version", help="print the version")
    tier = commands.add_parser(
        "tier",
        help="move partitions past their hot retention to the cold tier, then exit",
        description="One pass of the background jobs over the database: the RED rollups, "
        "then tiering (OTLPD_COLD_URL, OTLPD_HOT_RETENTION_*), whatever OTLPD_TIERING says. "
        "Exits 0 when every job completed, 75 when another replica was running one (try "
        "again), 1 when one failed.",
    )
    tier.add_argument("--once", action="store_true", required=True, help="one pass, then exit")
    add_client_commands(commands)
    add_admin_commands(commands)
    return parser


def _config(args: argparse.Namespace) -> Config:
    if args.command != "serve":
        # Only serve has a flag per setting; other commands' flags (otlpd tokens'
        # --anonymize-ip, say) are not settings even where their names match one.
        return load(os.environ)
    names = {f.name for f in fields(Config)}
    overrides = {
        name: value for name, value in vars(args).items() if name in names and value is not None
    }
    return load(os.environ, overrides)


def _database_url(config: Config, command: str) -> str:
    # Only the server says that it started the embedded database: an admin command
    # (otlpd tokens, projects, ...) that prints it on every call is noise on stderr.
    return config.database_url or embedded.start(config.data_dir, announce=command == "serve")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otlpd`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    if is_client(args):
        from otlpd.client.commands import run

        return run(args)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"otlpd: {exc}", file=sys.stderr)
        return 2
    logformat.configure(config.log_level, config.log_json)
    if args.command == "serve":
        from otlpd.tls import grpc_server_credentials

        try:  # unreadable or mismatched certificates are a setting's fault: said like one
            grpc_server_credentials(config)
        except ConfigError as exc:
            print(f"otlpd: {exc}", file=sys.stderr)
            return 2
    database_url = _database_url(config, args.command)
    if is_admin(args):
        from otlpd.admin import run as run_admin

        return run_admin(args, database_url)
    if args.command == "migrate":
        from storage.postgres.migrate import migrate

        migrate(database_url)
        log.info("schema is up to date")
        return 0
    if args.command == "tier":
        from otlpd.jobs import tier_once

        return tier_once(config, database_url)
    try:
        if config.workers > 1:
            from otlpd.supervisor import Supervisor
            from storage.postgres.migrate import migrate
            from storage.postgres.tenants import tokens_ever_created

            # The supervisor binds the ops port and checks the gRPC one before any worker
            # runs: it decides the listening host for all of them, as App would alone.
            migrate(database_url)
            required = config.auth == "required" or (
                config.auth == "auto" and tokens_ever_created(database_url)
            )
            return Supervisor(bind_hosts(config, required), database_url).run()
        from otlpd.runner import run_app

        return run_app(config, database_url)
    except CannotListen as exc:  # a port taken: said in one line, not a traceback
        print(f"otlpd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
