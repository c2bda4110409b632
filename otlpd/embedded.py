"""An embedded PostgreSQL for ``make run`` when no ``OTLPD_DATABASE_URL`` is given.

``pgserver`` ships PostgreSQL 16 binaries in a wheel and starts a server over a data
directory in about a second, so a new user gets a real database with no install step.
It is for trying otlpd and for sidecars with local disk; production points
``OTLPD_DATABASE_URL`` at a managed PostgreSQL.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def start(data_dir: Path, *, announce: bool = True) -> str:
    """Starts (or reuses) the embedded server under ``data_dir/pg`` and returns its URL;
    ``announce``: log that it did at INFO (else DEBUG)."""
    # platformdirs, under pgserver, warns when XDG_RUNTIME_DIR is unset (containers, CI,
    # a root shell) and falls back to a directory under /tmp, which serves as well.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import pgserver  # imported here: only the embedded mode needs it

    # pgserver logs every command it runs, with its whole output, at INFO.
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    uri = str(server.get_uri())
    log.log(
        logging.INFO if announce else logging.DEBUG,
        "embedded PostgreSQL started",
        extra={"pgdata": str(pgdata)},
    )
    return uri
