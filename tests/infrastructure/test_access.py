"""Who may read and change the ledger's tables, as Supabase's API roles.

Each check runs in a transaction that is rolled back, with SET LOCAL ROLE and
the JWT claims in request.jwt.claims, as PostgREST sets them for a request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from uuid import UUID, uuid4

import psycopg
import psycopg.errors
import pytest
from eventsourcing.persistence import StoredEvent
from psycopg import sql

from infrastructure.datastore import LedgerDatastore
from infrastructure.migrator import apply_migrations
from infrastructure.recorders import TaskEventsRecorder
from infrastructure.settings import DatabaseSettings
from taskledger import TaskLedger

Db = psycopg.Connection[tuple[Any, ...]]
EVENT_TABLES = ("task_events", "agent_tasks")


@dataclass(frozen=True)
class Owners:
    user_a: str
    user_b: str
    task_a: UUID
    task_b: UUID
    task_without_user: UUID


@pytest.fixture(scope="module")
def schema(database_url: str) -> Iterator[str]:
    """One schema for the module: every check below rolls back what it changes."""
    name = f"t_{uuid4().hex[:12]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def owners(database_url: str, schema: str) -> Owners:
    user_a, user_b = str(uuid4()), str(uuid4())
    with TaskLedger.open(database_url, schema=schema) as ledger:
        task_a = ledger.create_task("a", "A", "m", "chat", user_a).id
        ledger.start_task(task_a)
        ledger.complete_task(task_a, "done")
        task_b = ledger.create_task("b", "B", "m", "chat", user_b).id
        task_without_user = ledger.create_task("c", "C", "m", "chat").id
        for task_id in (task_a, task_b, task_without_user):
            ledger.get_task(task_id)  # waits until agent_tasks has the task
    return Owners(user_a, user_b, task_a, task_b, task_without_user)


@pytest.fixture(scope="module")
def db(database_url: str, schema: str) -> Iterator[Db]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("set search_path to {}, public").format(sql.Identifier(schema))
        )
        yield conn


@contextmanager
def acting_as(
    db: Db, role: str | None, user_id: str | None = None, *grants: str
) -> Iterator[Db]:
    """Run as role (None: the owner, postgres) in a transaction rolled back after.

    grants are SQL statements run as the owner first, to give a role more
    privileges than the migrations do.
    """
    with db.transaction(force_rollback=True):
        for grant in grants:
            db.execute(grant.encode())
        if role is not None:
            db.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        if user_id is not None:
            claims = json.dumps({"sub": user_id, "role": role})
            db.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        yield db


def task_ids(db: Db, schema: str, table: str) -> list[UUID]:
    # Qualified, because a role without USAGE on the schema would otherwise
    # get "relation does not exist" instead of "permission denied".
    column = "task_id" if table == "task_events" else "id"
    rows = db.execute(
        sql.SQL("select {} from {} order by 1").format(
            sql.Identifier(column), sql.Identifier(schema, table)
        )
    ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize("table", [*EVENT_TABLES, "projection_checkpoints"])
def test_anon_is_denied(db: Db, owners: Owners, schema: str, table: str) -> None:
    with (
        acting_as(db, "anon"),
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        task_ids(db, schema, table)


@pytest.mark.parametrize("table", EVENT_TABLES)
def test_anon_with_grant_reads_nothing(
    db: Db, owners: Owners, schema: str, table: str
) -> None:
    # Older Supabase projects grant new public tables to anon by default;
    # row level security must still hide every row.
    grants = (
        f'grant usage on schema "{schema}" to anon',
        f'grant select on "{schema}".{table} to anon',
    )

    with acting_as(db, "anon", owners.user_a, *grants):
        assert task_ids(db, schema, table) == []


def test_authenticated_reads_own_events(db: Db, owners: Owners, schema: str) -> None:
    with acting_as(db, "authenticated", owners.user_a):
        events = task_ids(db, schema, "task_events")
        tasks = task_ids(db, schema, "agent_tasks")

    assert events == [owners.task_a] * 3
    assert tasks == [owners.task_a]


def test_other_user_reads_only_theirs(db: Db, owners: Owners, schema: str) -> None:
    with acting_as(db, "authenticated", owners.user_b):
        events = task_ids(db, schema, "task_events")
        tasks = task_ids(db, schema, "agent_tasks")

    assert events == [owners.task_b]
    assert tasks == [owners.task_b]


@pytest.mark.parametrize("table", EVENT_TABLES)
def test_authenticated_without_user_reads_nothing(
    db: Db, owners: Owners, schema: str, table: str
) -> None:
    with acting_as(db, "authenticated"):
        assert task_ids(db, schema, table) == []


def test_authenticated_cannot_read_checkpoints(
    db: Db, owners: Owners, schema: str
) -> None:
    with (
        acting_as(db, "authenticated", owners.user_a),
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        db.execute(
            sql.SQL("select * from {}").format(
                sql.Identifier(schema, "projection_checkpoints")
            )
        )


def test_service_role_reads_every_event(db: Db, owners: Owners, schema: str) -> None:
    with acting_as(db, "service_role"):
        events = task_ids(db, schema, "task_events")
        tasks = task_ids(db, schema, "agent_tasks")

    assert len(events) == 5
    assert len(tasks) == 3


CHANGES = {
    "update": "update {} set event_type = 'changed'",
    "delete": "delete from {}",
    "truncate": "truncate {}",
}


def change_events(db: Db, schema: str, change: str) -> int:
    """Run one of CHANGES on the schema's task_events; return the row count."""
    statement = sql.SQL(CHANGES[change]).format(sql.Identifier(schema, "task_events"))
    return db.execute(statement).rowcount


def event_count(db: Db) -> int:
    row = db.execute("select count(*) from task_events").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("role", [None, "service_role"])
def test_owner_and_service_role_cannot_change_events(
    db: Db, owners: Owners, schema: str, change: str, role: str | None
) -> None:
    # Even a grant the migrations never give does not help: the trigger rejects
    # the change for every role, superusers included.
    grant = f'grant update, delete, truncate on "{schema}".task_events to service_role'

    with (
        acting_as(db, role, None, grant),
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        change_events(db, schema, change)

    assert event_count(db) == 5


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("role", ["service_role", "authenticated", "anon"])
def test_api_roles_lack_change_privileges(
    db: Db, owners: Owners, schema: str, change: str, role: str
) -> None:
    with (
        acting_as(db, role, owners.user_a),
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"),
    ):
        change_events(db, schema, change)

    assert event_count(db) == 5


def test_authenticated_with_grant_changes_nothing(
    db: Db, owners: Owners, schema: str
) -> None:
    grant = f'grant update, delete on "{schema}".task_events to authenticated'

    with acting_as(db, "authenticated", owners.user_a, grant):
        updated = change_events(db, schema, "update")
        deleted = change_events(db, schema, "delete")

    # No policy allows UPDATE or DELETE, so row level security leaves no row.
    assert updated == 0
    assert deleted == 0
    assert event_count(db) == 5


def test_service_role_inserts_without_sequence_grant(
    db: Db, owners: Owners, schema: str
) -> None:
    with acting_as(db, "service_role"):
        row = db.execute(
            "insert into task_events "
            "(task_id, version, event_type, topic, payload, occurred_at) "
            "values (%s, 4, 'cancelled', 'domain.task:Task.Cancelled', '{}', now()) "
            "returning position, user_id",
            (owners.task_a,),
        ).fetchone()
        sequence_usage = db.execute(
            "select has_sequence_privilege("
            "pg_get_serial_sequence(%s, 'position'), 'usage')",
            (f'"{schema}".task_events',),
        ).fetchone()

    # An identity column draws from its sequence without a USAGE grant.
    assert sequence_usage == (False,)
    assert row is not None
    assert row[0] > 5
    assert row[1] == owners.user_a


@pytest.mark.parametrize("role", ["authenticated", "anon"])
def test_api_roles_cannot_append(
    db: Db, owners: Owners, schema: str, role: str
) -> None:
    with (
        acting_as(db, role, owners.user_a),
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        db.execute(
            sql.SQL(
                "insert into {} (task_id, version, event_type, topic, payload, "
                "occurred_at) values (%s, 9, 'cancelled', 't', '{{}}', now())"
            ).format(sql.Identifier(schema, "task_events")),
            (owners.task_a,),
        )


def test_recorder_appends_as_service_role(database_url: str) -> None:
    schema = f"t_{uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_migrations(conn, schema)
    separator = "&" if "?" in database_url else "?"
    url = f"{database_url}{separator}options={quote('-c role=service_role')}"
    datastore = LedgerDatastore(DatabaseSettings(url, schema))
    try:
        recorder = TaskEventsRecorder(datastore)
        event = StoredEvent(uuid4(), 1, "t:Task.Created", b'{"user_id": "u"}')

        [position] = recorder.insert_events([event]) or []

        with datastore.get_connection() as conn:
            role = conn.execute("select current_user").fetchone()
        assert role == {"current_user": "service_role"}
        assert position == 1
        assert recorder.select_events(event.originator_id) == [event]
    finally:
        datastore.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop schema {} cascade").format(sql.Identifier(schema))
            )


READ_MODEL_TABLES = (
    "agent_tasks",
    "task_updates",
    "task_statistics",
    "task_duration_bins",
    "task_statistics_totals",
    "task_duration_bins_totals",
)


@pytest.mark.parametrize("table", READ_MODEL_TABLES)
def test_service_role_reads_read_model_only(
    db: Db, owners: Owners, schema: str, table: str
) -> None:
    target = sql.Identifier(schema, table)
    with acting_as(db, "service_role"):
        db.execute(sql.SQL("select count(*) from {}").format(target))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute(sql.SQL("delete from {}").format(target))


def test_service_role_cannot_move_checkpoint(
    db: Db, owners: Owners, schema: str
) -> None:
    checkpoints = sql.Identifier(schema, "projection_checkpoints")
    with (
        acting_as(db, "service_role"),
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="projector"),
    ):
        db.execute(
            sql.SQL(
                "update {} set position = position + 1 where projection = 'agent_tasks'"
            ).format(checkpoints)
        )
    with acting_as(db, "service_role"):
        db.execute(
            sql.SQL(
                "insert into {} (projection, position) values ('reports', 0)"
            ).format(checkpoints)
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="projector"):
            db.execute(
                sql.SQL(
                    "insert into {} (projection, position) "
                    "values ('agent_tasks_rebuild', 9)"
                ).format(checkpoints)
            )
