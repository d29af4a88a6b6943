"""The connection pool, built from a PostgreSQL URL, with the ledger's schema."""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import ConnectionPool, PostgresDatastore
from psycopg import Connection, sql
from psycopg.rows import DictRow, dict_row

from infrastructure.settings import DatabaseSettings


class LedgerDatastore(PostgresDatastore):
    """eventsourcing's PostgresDatastore, connecting with a URL instead of parts.

    A URL keeps options such as sslmode that the host/port/user form would drop.
    Every pooled connection is in autocommit mode with search_path set to the
    ledger's schema, so unqualified names in functions and triggers resolve.
    Connections are not pinged on checkout, because a ping costs a round trip
    per command. A connection broken by a server restart fails its statement
    with an OperationalError, and the pool discards it when it is returned.
    """

    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        pool_size: int = 4,
        max_overflow: int = 8,
        connect_timeout: float = 10.0,
        lock_timeout: int = 0,
    ) -> None:
        super().__init__(
            dbname="",
            host="",
            port="",
            user="",
            password="",
            schema=settings.schema,
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_timeout=connect_timeout,
            lock_timeout=lock_timeout,
            pre_ping=False,
        )
        self.settings = settings
        self.pool = ConnectionPool(
            settings.conninfo,
            connection_class=Connection[DictRow],
            kwargs={"row_factory": dict_row, "connect_timeout": int(connect_timeout)},
            min_size=1,
            max_size=pool_size + max_overflow,
            open=False,
            configure=_configure_for(settings.schema),
            timeout=connect_timeout,
            name="taskledger",
        )


def _configure_for(schema: str) -> Any:
    statement = sql.SQL("set search_path to {}, public").format(sql.Identifier(schema))

    def configure(conn: Connection[DictRow]) -> None:
        conn.autocommit = True
        conn.execute(statement)

    return configure
