"""Open the database a TaskLedger uses: a URL, the environment, or embedded."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import psycopg
from eventsourcing.application import Application

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
    if migrate:
        with (
            translated_errors(f"migrating {mask_conninfo(url)}"),
            psycopg.connect(url, autocommit=True, connect_timeout=10) as conn,
        ):
            applied = apply_migrations(conn, schema_name)
        for migration in applied:
            logger.info("applied migration %s_%s", migration.version, migration.name)
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
