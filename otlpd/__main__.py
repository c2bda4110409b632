"""The ``otlpd`` command: ``serve``, ``migrate``, ``version``, and the query client
(``traces``, ``trace``, ``logs``, ``metrics``, ``session``, ``services``, ``operations``:
see ``otlpd.client``).

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
from otlpd.client.commands import add_commands as add_client_commands
from otlpd.client.commands import is_client
from otlpd.config import Config, ConfigError, load, settings

log = logging.getLogger("otlpd")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otlpd", description="OTLP telemetry server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="receive OTLP and store it in PostgreSQL")
    for variable, flag, doc in settings():
        serve.add_argument(flag, dest=flag[2:].replace("-", "_"), help=f"{doc} [{variable}]")
    commands.add_parser("migrate", help="create or upgrade the schema, then exit")
    commands.add_parser("version", help="print the version")
    add_client_commands(commands)
    return parser


def _config(args: argparse.Namespace) -> Config:
    names = {f.name for f in fields(Config)}
    overrides = {
        name: value for name, value in vars(args).items() if name in names and value is not None
    }
    return load(os.environ, overrides)


def _database_url(config: Config) -> str:
    return config.database_url or embedded.start(config.data_dir)


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
    database_url = _database_url(config)
    if args.command == "migrate":
        from storage.postgres.migrate import migrate

        migrate(database_url)
        log.info("schema is up to date")
        return 0
    if config.workers > 1:
        from otlpd.supervisor import Supervisor

        return Supervisor(config, database_url).run()
    from otlpd.runner import run_app

    return run_app(config, database_url)


if __name__ == "__main__":
    raise SystemExit(main())
