"""The SQL migrations: re-runnable, and the schema they leave behind.

The session's database already has the Supabase bootstrap (tests/conftest.py):
the API roles, auth.uid() and the supabase_realtime publication.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from infrastructure.migrator import apply_migrations, load_migrations
from taskledger import TaskLedger
from tests.conftest import bootstrap

Db = psycopg.Connection[tuple[Any, ...]]
PROJECT = Path(__file__).resolve().parents[2]
LEDGER_TABLES = {"task_events", "projection_checkpoints", "agent_tasks"}
EVENT_TRIGGERS = {
    "task_events_check_version",
    "task_events_fill_user_id",
    "task_events_no_update_or_delete",
    "task_events_no_truncate",
    "task_events_serialise",
    "task_events_announce",
}
# (table, policy, roles, command)
POLICIES = {
    ("task_events", "task_events_service", "{service_role}", "ALL"),
    ("task_events", "task_events_owner_read", "{authenticated}", "SELECT"),
    (
        "projection_checkpoints",
        "projection_checkpoints_service",
        "{service_role}",
        "ALL",
    ),
    ("agent_tasks", "agent_tasks_service", "{service_role}", "ALL"),
    ("agent_tasks", "agent_tasks_owner_read", "{authenticated}", "SELECT"),
}


def rows(db: Db, query: str, *params: object) -> set[tuple[Any, ...]]:
    return set(db.execute(query, params).fetchall())


def assert_ledger_schema(db: Db, schema: str) -> None:
    """Check the tables, triggers, policies and publication the migrations make."""
    tables = rows(
        db,
        "select relname, relrowsecurity from pg_class "
        "where relnamespace = %s::regnamespace and relkind = 'r'",
        schema,
    )
    assert {name for name, _ in tables} >= LEDGER_TABLES
    assert {name for name, secured in tables if not secured} == set()

    triggers = rows(
        db,
        "select tgname from pg_trigger "
        "where tgrelid = to_regclass(%s) and not tgisinternal",
        f"{schema}.task_events",
    )
    assert {name for (name,) in triggers} == EVENT_TRIGGERS

    policies = rows(
        db,
        "select tablename, policyname, roles::text, cmd from pg_policies "
        "where schemaname = %s",
        schema,
    )
    assert policies >= POLICIES

    published = rows(
        db,
        "select tablename from pg_publication_tables "
        "where pubname = 'supabase_realtime' and schemaname = %s",
        schema,
    )
    assert ("agent_tasks",) in published
    assert ("task_events",) not in published

    identity = db.execute(
        "select relreplident from pg_class where oid = to_regclass(%s)",
        (f"{schema}.agent_tasks",),
    ).fetchone()
    assert identity == ("f",)


def test_migrations_leave_expected_schema(
    db: Db, database_url: str, schema: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        applied = apply_migrations(conn, schema)

    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert_ledger_schema(db, schema)


def test_migrations_rerun_without_error(db: Db, database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_migrations(conn, schema)
        again = apply_migrations(conn, schema)
        # Forget what ran, so every file runs a second time on its own objects.
        conn.execute(
            sql.SQL("delete from {}.taskledger_migrations").format(
                sql.Identifier(schema)
            )
        )
        rerun = apply_migrations(conn, schema)

    assert again == []
    assert len(rerun) == len(load_migrations())
    assert_ledger_schema(db, schema)


def test_ledger_opens_twice_on_same_schema(
    db: Db, database_url: str, schema: str
) -> None:
    with TaskLedger.open(database_url, schema=schema) as first:
        task = first.create_task("a", "A", "m", "chat")

    with TaskLedger.open(database_url, schema=schema) as second:
        started = second.start_task(task.id)

    assert started.version == 2
    assert_ledger_schema(db, schema)


@pytest.mark.parametrize("search_path", ["pg_catalog", "other ledger"])
def test_event_triggers_read_their_own_schema(
    database_url: str, schema: str, search_path: str
) -> None:
    other = f"t_{uuid.uuid4().hex[:12]}"
    insert = sql.SQL(
        "insert into {} (task_id, version, event_type, topic, payload, "
        "occurred_at) values (%s, %s, 'started', 'domain.task:Task.Started', "
        "'{{}}', now())"
    ).format(sql.Identifier(schema, "task_events"))
    try:
        TaskLedger.open(database_url, schema=other, project=False).close()
        with TaskLedger.open(database_url, schema=schema, project=False) as ledger:
            task = ledger.create_task("a", "A", "m", "chat", user_id="u1")
        with psycopg.connect(database_url, autocommit=True) as conn:
            path = other if search_path == "other ledger" else search_path
            conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(path)))
            # Plain SQL into this ledger: version 2 follows version 1 here.
            conn.execute(insert, (task.id, 2))
            gap = psycopg.errors.ForeignKeyViolation
            with pytest.raises(gap, match="no version 3"):
                conn.execute(insert, (task.id, 4))
            row = conn.execute(
                sql.SQL("select user_id from {} where version = 2").format(
                    sql.Identifier(schema, "task_events")
                )
            ).fetchone()
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop schema if exists {} cascade").format(
                    sql.Identifier(other)
                )
            )

    assert row == ("u1",)


def test_bootstrap_reruns_without_error(database_url: str) -> None:
    bootstrap(database_url)
    bootstrap(database_url)


# The Supabase CLI applies migrations to public and records them in its own
# schema, so it gets a database of its own.


def supabase_binary() -> str | None:
    local = PROJECT / "node_modules" / ".bin" / "supabase"
    if local.exists():
        return str(local)
    return shutil.which("supabase")


@pytest.fixture
def scratch_database(database_url: str) -> Iterator[str]:
    """A new database with the Supabase bootstrap, dropped afterwards."""
    params = conninfo_to_dict(database_url)
    host = str(params.get("host", ""))
    if not host or host.startswith("/"):
        pytest.skip("the Supabase CLI needs a TCP host, not a Unix socket")
    name = f"taskledger_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    user = params.get("user", "postgres")
    password = f":{params['password']}" if params.get("password") else ""
    sslmode = params.get("sslmode", "disable")
    port = params.get("port", 5432)
    url = f"postgresql://{user}{password}@{host}:{port}/{name}?sslmode={sslmode}"
    try:
        bootstrap(url)
        yield url
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database {} with (force)").format(sql.Identifier(name))
            )


def run_supabase(binary: str, workdir: Path, *arguments: str) -> str:
    completed = subprocess.run(
        [binary, *arguments],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DO_NOT_TRACK": "1", "SUPABASE_TELEMETRY_DISABLED": "1"},
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    return output


def copy_project(target: Path) -> Path:
    """Copy the migrations and the supabase folder, whose migrations is a symlink."""
    shutil.copytree(PROJECT / "supabase", target / "supabase", symlinks=True)
    shutil.copytree(
        PROJECT / "infrastructure" / "migrations",
        target / "infrastructure" / "migrations",
    )
    assert (target / "supabase" / "migrations").is_symlink()
    return target


def test_supabase_cli_pushes_migrations(scratch_database: str, tmp_path: Path) -> None:
    binary = supabase_binary()
    if binary is None:
        pytest.skip("no supabase binary (scripts/test.sh installs it with npm)")
    workdir = copy_project(tmp_path)
    versions = [m.version for m in load_migrations()]
    url = scratch_database

    first = run_supabase(binary, workdir, "db", "push", "--db-url", url, "--yes")
    second = run_supabase(binary, workdir, "db", "push", "--db-url", url, "--yes")
    listed = run_supabase(binary, workdir, "migration", "list", "--db-url", url)
    # Mark every migration reverted, so a third push runs each file again.
    run_supabase(
        binary,
        workdir,
        "migration",
        "repair",
        "--db-url",
        url,
        "--status",
        "reverted",
        *versions,
    )
    third = run_supabase(binary, workdir, "db", "push", "--db-url", url, "--yes")

    for version in versions:
        assert f"Applying migration {version}" in first
        assert f"Applying migration {version}" in third
        assert listed.count(version) >= 2, listed
    assert "Applying migration" not in second
    with psycopg.connect(url, autocommit=True) as conn:
        assert_ledger_schema(conn, "public")
        # The ledger's own migrator runs every file once more on top.
        assert len(apply_migrations(conn, "public")) == len(versions)
        assert_ledger_schema(conn, "public")
