"""Which interface a port listens on when its setting names only the port (``:4317``).

Without authentication anybody who can reach a port can write into any project and read
every project back, so an otlpd whose auth is off listens on 127.0.0.1 only, and says so;
with auth on it listens on every interface. An address that names a host
(``OTLPD_GRPC_ADDR=0.0.0.0:4317``) is used as given: that is how an operator tells it
otherwise (a container behind its own network policy, say).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final

from otlpd.config import Config

log = logging.getLogger(__name__)

ADDRESS_FIELDS: Final = ("grpc_addr", "http_addr", "query_addr", "metrics_addr")
LOOPBACK: Final = "127.0.0.1"
EVERY_INTERFACE: Final = "0.0.0.0"


class CannotListen(OSError):
    """A port otlpd must listen on is taken (or the address is not this host's): start-up
    stops with a message that names the setting."""

    def __init__(self, address: str, variable: str, cause: BaseException) -> None:
        super().__init__(f"cannot listen on {address} ({variable}): {cause}")


def bind_hosts(config: Config, auth_required: bool) -> Config:
    """``config`` with a host in every address: 127.0.0.1 while auth is off, else 0.0.0.0."""
    host = EVERY_INTERFACE if auth_required else LOOPBACK
    changes = {
        name: host + getattr(config, name)
        for name in ADDRESS_FIELDS
        if getattr(config, name).startswith(":")
    }
    if not changes:
        return config
    if not auth_required:
        log.warning(
            "auth is off: listening on 127.0.0.1 only; create a token (otlpd tokens create)"
            " or set OTLPD_AUTH=required to listen on every interface, or name the host in"
            " the address (e.g. OTLPD_GRPC_ADDR=0.0.0.0:4317) to listen there without auth",
            extra={"addresses": sorted(changes)},
        )
    return dataclasses.replace(config, **changes)
