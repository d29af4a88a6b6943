"""Open the database a TaskLedger uses: a URL, the environment, or embedded."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import Application

from domain.errors import ConfigurationError
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.errors import translated_errors
from infrastructure.migrator import apply_migrations
from infrastructure.settings import (
    DATABASE_URL_VARIABLE,
    SCHEMA_VARIABLE,
    mask_conninfo,
    resolve_database_url,
    resolve_schema,
)

logger = logging.getLogger(__name__)


class LedgerApplication(Application[UUID]):
    """The eventsourcing application whose event store is task_events."""

    name = "taskledger"


@dataclass
class Connection:
    """The application and, when the embedded server is used, its handle."""

    app: LedgerApplication
    url: str
    schema: str
    embedded: EmbeddedPostgres | None


def _require_ledger(conn: psycopg.Connection[Any], schema: str, url: str) -> None:
    row = conn.execute(
        "select to_regclass(format('%%I.task_events', %s::text)) is not null",
        (schema,),
    ).fetchone()
    if not row or not row[0]:
        raise ConfigurationError(
            f"schema {schema!r} at {mask_conninfo(url)} has no ledger tables; "
            "check the schema name, and if it is right, create the tables with "
            "`taskledger migrate` (in Python, open with migrate=True)"
        )


def connect(
    database_url: str | None,
    schema: str | None,
    data_dir: Path | None,
    *,
    migrate: bool = True,
    pool_size: int = 4,
) -> Connection:
    url = resolve_database_url(database_url)
    embedded = None
    if url is None:
        embedded = EmbeddedPostgres(data_dir)
        url = embedded.start()
    schema_name = resolve_schema(schema)
    action = "migrating" if migrate else "connecting to"
    with (
        translated_errors(f"{action} {mask_conninfo(url)}"),
        psycopg.connect(url, autocommit=True, connect_timeout=10) as conn,
    ):
        if migrate:
            applied = apply_migrations(conn, schema_name)
            for migration in applied:
                logger.info(
                    "applied migration %s_%s", migration.version, migration.name
                )
        else:
            _require_ledger(conn, schema_name, url)
    env = {
        "PERSISTENCE_MODULE": "infrastructure.persistence",
        DATABASE_URL_VARIABLE: url,
        SCHEMA_VARIABLE: schema_name,
        "CREATE_TABLE": "no",
        "POSTGRES_POOL_SIZE": str(pool_size),
    }
    with translated_errors(f"connecting to {mask_conninfo(url)}"):
        app = LedgerApplication(env=env)
    return Connection(app=app, url=url, schema=schema_name, embedded=embedded)
