"""Apply the SQL migrations in order and record which ones ran."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

logger = logging.getLogger(__name__)

# Serialises concurrent `migrate` runs on one database (pg_advisory_lock key).
_MIGRATE_LOCK_KEY = 0x7A5C_1ED6


@dataclass(frozen=True)
class Migration:
    """One SQL file of infrastructure/migrations, named <version>_<name>.sql."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    folder = resources.files("infrastructure") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.removesuffix(".sql").partition("_")
            found.append(Migration(version, rest, entry.read_text("utf-8")))
    return sorted(found, key=lambda migration: migration.version)


def pending_migrations(
    conn: psycopg.Connection[object], schema: str
) -> list[Migration]:
    applied = _applied_versions(conn, schema)
    return [m for m in load_migrations() if m.version not in applied]


def apply_migrations(conn: psycopg.Connection[object], schema: str) -> list[Migration]:
    """Apply every migration not yet recorded in <schema>.taskledger_migrations.

    The connection must be in autocommit mode; each file runs in its own
    transaction together with the row that records it.
    """
    conn.execute("select pg_advisory_lock(%s)", (_MIGRATE_LOCK_KEY,))
    try:
        with conn.transaction():
            _create_record_table(conn, schema)
        applied = []
        for migration in pending_migrations(conn, schema):
            _apply(conn, schema, migration)
            applied.append(migration)
        return applied
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (_MIGRATE_LOCK_KEY,))


def _apply(conn: psycopg.Connection[object], schema: str, migration: Migration) -> None:
    logger.info(
        "applying migration %s_%s",
        migration.version,
        migration.name,
        extra={"action": "migrate", "version": migration.version, "schema": schema},
    )
    with conn.transaction():
        set_search_path(conn, schema, local=True)
        conn.execute(sql.SQL(migration.sql))
        conn.execute(
            sql.SQL(
                "insert into {}.taskledger_migrations (version, name, checksum) "
                "values (%s, %s, %s) on conflict (version) do nothing"
            ).format(sql.Identifier(schema)),
            (migration.version, migration.name, migration.checksum),
        )


def set_search_path(
    conn: psycopg.Connection[object], schema: str, *, local: bool = False
) -> None:
    scope = sql.SQL("local ") if local else sql.SQL("")
    conn.execute(
        sql.SQL("set {}search_path to {}, public").format(scope, sql.Identifier(schema))
    )


def _create_record_table(conn: psycopg.Connection[object], schema: str) -> None:
    conn.execute(
        sql.SQL("create schema if not exists {}").format(sql.Identifier(schema))
    )
    conn.execute(
        sql.SQL(
            "create table if not exists {}.taskledger_migrations ("
            " version text primary key, name text not null, checksum text not null,"
            " applied_at timestamptz not null default now())"
        ).format(sql.Identifier(schema))
    )
    # Row level security without policies hides the table from Supabase's API
    # roles, should a project's default privileges grant them access. ALTER
    # TABLE locks the table, so it runs only when the flag is still off.
    enabled = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "select relrowsecurity from pg_class where oid = to_regclass(%s)",
            (f'"{schema}".taskledger_migrations',),
        )
        .fetchone()
    )
    if enabled is not None and not enabled[0]:
        conn.execute(
            sql.SQL(
                "alter table {}.taskledger_migrations enable row level security"
            ).format(sql.Identifier(schema))
        )


def _applied_versions(conn: psycopg.Connection[object], schema: str) -> set[str]:
    cursor = conn.cursor(row_factory=tuple_row)
    exists = cursor.execute(
        "select to_regclass(%s) is not null",
        (f'"{schema}".taskledger_migrations',),
    ).fetchone()
    if not exists or not exists[0]:
        return set()
    rows = cursor.execute(
        sql.SQL("select version from {}.taskledger_migrations").format(
            sql.Identifier(schema)
        )
    ).fetchall()
    return {str(row[0]) for row in rows}
