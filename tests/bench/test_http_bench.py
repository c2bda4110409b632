"""The OTLP/HTTP benchmark at a tiny scale, so the tool cannot rot: one run against a
real otlpd prints a row per transport, each with records acknowledged."""

from __future__ import annotations

import re

import pytest

from bench.http import main
from tests.conftest import PG_SERVER


def test_one_short_run_prints_every_transport(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--case", "logs", "--duration", "0.5", "--warmup", "0.2", "--inflight", "2"]
    assert main([*argv, "--pool", "2", "--pg", PG_SERVER]) == 0
    rows = re.findall(r"^\| (OTLP/[^|]+) \| ([\d,]+) \|", capsys.readouterr().out, re.M)
    assert [name.split(",")[0] for name, _ in rows] == [
        "OTLP/gRPC",
        "OTLP/HTTP protobuf",
        "OTLP/HTTP JSON",
    ]
    assert all(int(rate.replace(",", "")) > 0 for _, rate in rows), rows
