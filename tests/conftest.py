"""Fixtures that start real components: a PostgreSQL database per test, dropped after.

The machine's PostgreSQL (``OTLPD_TEST_PG``, default ``postgresql://postgres@127.0.0.1:5432``)
is the server; every test that asks for ``database_url`` gets a database of its own, so
tests never see each other's rows and can run in any order.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_SERVER = os.environ.get("OTLPD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True)


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh, empty database on the real server; dropped (with its sessions) after the test."""
    name = f"otlpd_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
