"""Fixtures: a real PostgreSQL for the session and a fresh schema for each test.

TASKLEDGER_TEST_DATABASE_URL selects a server; without it the session starts an
embedded PostgreSQL (pgserver) in a temporary directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from taskledger import TaskLedger

TEST_DATABASE_VARIABLE = "TASKLEDGER_TEST_DATABASE_URL"
BOOTSTRAP_SQL = Path(__file__).parent / "sql" / "supabase_bootstrap.sql"
# Serialises the bootstrap across concurrent test sessions (roles are global).
_BOOTSTRAP_LOCK = 0x5B_0075_7A


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get(TEST_DATABASE_VARIABLE)
    if configured:
        url = configured
        server = None
    else:
        import pgserver

        server = pgserver.get_server(
            tmp_path_factory.mktemp("pgdata"), cleanup_mode="delete"
        )
        url = str(server.get_uri())
    bootstrap(url)
    yield url
    if server is not None:
        server.cleanup()


def bootstrap(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_BOOTSTRAP_LOCK,))
        try:
            conn.execute(BOOTSTRAP_SQL.read_text())  # type: ignore[call-overload]
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_BOOTSTRAP_LOCK,))


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A new, empty schema, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name))
        )


@pytest.fixture
def ledger(database_url: str, schema: str) -> Iterator[TaskLedger]:
    with TaskLedger.open(database_url, schema=schema) as opened:
        yield opened


@pytest.fixture
def db(
    database_url: str, schema: str
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain autocommit connection whose search_path is the test's schema."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("set search_path to {}, public").format(sql.Identifier(schema))
        )
        yield conn
