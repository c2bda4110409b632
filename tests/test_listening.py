"""Which interface a port listens on: loopback while auth is off, every one when it is on,
and an address that names its host as given."""

from __future__ import annotations

import logging

import pytest

from otlpd.config import load
from otlpd.listening import bind_hosts


def test_loopback_while_auth_is_off_and_said_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otlpd.listening")
    config = bind_hosts(load({"OTLPD_GRPC_ADDR": "10.1.2.3:4317"}), auth_required=False)
    assert config.grpc_addr == "10.1.2.3:4317"  # named: as given
    assert config.http_addr == "127.0.0.1:4318"
    assert config.query_addr == "127.0.0.1:4319"
    assert config.metrics_addr == "127.0.0.1:9464"
    (warning,) = caplog.records
    assert "auth is off: listening on 127.0.0.1 only" in warning.getMessage()


def test_every_interface_once_auth_is_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otlpd.listening")
    config = bind_hosts(load({}), auth_required=True)
    assert (config.grpc_addr, config.metrics_addr) == ("0.0.0.0:4317", "0.0.0.0:9464")
    assert caplog.records == []
