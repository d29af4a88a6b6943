from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from projections.rebuild import (
    RebuildBlockedError,
    RebuildInProgressError,
    RebuildProgress,
    rebuild_projection,
)
from projections.runner import projection_lock_key
from projections.tables import REBUILD_PROJECTION, ProjectionTables
from taskledger import ConfigurationError, StorageError, TaskLedger
from tests.projections.helpers import (
    bulk_append,
    fold_events,
    projected_tasks,
    read_model,
    table_rows,
)

START = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
API_ROLES = {"anon", "authenticated", "service_role", "PUBLIC"}
READ_MODEL = (
    "agent_tasks",
    "task_statistics",
    "task_duration_bins",
    "task_statistics_totals",
    "task_duration_bins_totals",
)

# The catalog entries that describe a table, apart from its OID.
CATALOG_QUERIES = {
    "indexes": "select c.relname, pg_get_indexdef(i.indexrelid) from pg_index i "
    "join pg_class c on c.oid = i.indexrelid where i.indrelid = %(table)s::regclass",
    "constraints": "select conname, pg_get_constraintdef(oid) from pg_constraint "
    "where conrelid = %(table)s::regclass",
    "policies": "select policyname, permissive, roles, cmd, qual, with_check "
    "from pg_policies where schemaname = %(schema)s and tablename = %(name)s",
    "grants": "select grantee, privilege_type "
    "from information_schema.role_table_grants "
    "where table_schema = %(schema)s and table_name = %(name)s",
    "table": "select relrowsecurity, relforcerowsecurity, relreplident, relowner, "
    "obj_description(oid, 'pg_class') from pg_class where oid = %(table)s::regclass",
    "publications": "select pubname from pg_publication_tables "
    "where schemaname = %(schema)s and tablename = %(name)s",
    "triggers": "select tgname, tgenabled, pg_get_triggerdef(oid) from pg_trigger "
    "where tgrelid = %(table)s::regclass and not tgisinternal",
    "rules": "select rulename, definition from pg_rules "
    "where schemaname = %(schema)s and tablename = %(name)s",
    "statistics targets": "select attname, attstattarget from pg_attribute "
    "where attrelid = %(table)s::regclass and attnum > 0",
}


def catalog(database_url: str, schema: str, name: str) -> dict[str, list[Any]]:
    params = {"schema": schema, "name": name, "table": f"{schema}.{name}"}
    with psycopg.connect(database_url) as conn:
        return {
            key: sorted(conn.execute(query, params).fetchall(), key=repr)  # type: ignore[arg-type]
            for key, query in CATALOG_QUERIES.items()
        }


def load(ledger: TaskLedger, database_url: str, schema: str, tasks: int) -> int:
    events = bulk_append(database_url, schema, tasks, seed=tasks, start=START)
    ledger.wait_for_projection(head(database_url, schema))
    return events


def head(database_url: str, schema: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            sql.SQL("select max(position) from {}").format(
                sql.Identifier(schema, "task_events")
            )
        ).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def test_rebuild_reproduces_read_model(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    events = load(ledger, database_url, schema, 300)
    before = read_model(database_url, schema)

    result = ledger.rebuild(batch_size=200)

    assert result.events == events
    assert result.position == head(database_url, schema)
    assert not result.resumed
    assert read_model(database_url, schema) == before
    assert ledger.lag().projection("agent_tasks").events_behind == 0
    assert [lag.projection for lag in ledger.lag().projections] == ["agent_tasks"]


def test_rebuild_keeps_table_settings(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    load(ledger, database_url, schema, 20)
    before = {name: catalog(database_url, schema, name) for name in READ_MODEL}

    ledger.rebuild()

    after = {name: catalog(database_url, schema, name) for name in READ_MODEL}
    assert after == before
    assert before["agent_tasks"]["publications"] == [("supabase_realtime",)]
    assert before["agent_tasks"]["policies"]


def test_rebuild_keeps_user_additions(
    ledger: TaskLedger,
    database_url: str,
    schema: str,
    db: psycopg.Connection[tuple[object, ...]],
) -> None:
    load(ledger, database_url, schema, 20)
    for statement in (
        "create table owners (name text primary key)",
        "insert into owners select distinct agent_id from agent_tasks",
        "alter table agent_tasks add constraint agent_owner "
        "foreign key (agent_id) references owners (name)",
        "alter table agent_tasks add column reviewed boolean",
        "update agent_tasks set reviewed = true where attempts > 1",
        "create function keep() returns trigger language plpgsql "
        "as 'begin return new; end'",
        "create trigger keep_rows before update on agent_tasks "
        "for each row execute function keep()",
        "alter table agent_tasks disable trigger keep_rows",
        "create rule no_truncate as on delete to agent_tasks "
        "where old.status = 'processing' do instead nothing",
        "alter table agent_tasks alter column message set statistics 500",
    ):
        db.execute(statement.encode())
    reviewed = db.execute("select id from agent_tasks where reviewed").fetchall()
    before = catalog(database_url, schema, "agent_tasks")

    ledger.rebuild()

    assert catalog(database_url, schema, "agent_tasks") == before
    assert reviewed
    assert db.execute("select id from agent_tasks where reviewed").fetchall() == (
        reviewed
    )


def test_rebuild_restarts_copies_after_new_constraint(
    ledger: TaskLedger,
    database_url: str,
    schema: str,
    db: psycopg.Connection[tuple[object, ...]],
) -> None:
    load(ledger, database_url, schema, 60)

    def interrupt(report: RebuildProgress) -> None:
        raise RebuildStoppedError

    with pytest.raises(RebuildStoppedError):
        ledger.rebuild(progress=interrupt, batch_size=50)
    db.execute(
        "alter table agent_tasks add constraint some_attempts check (attempts > 0)"
    )
    result = ledger.rebuild()
    constraints = catalog(database_url, schema, "agent_tasks")["constraints"]

    assert not result.resumed
    assert ("some_attempts", "CHECK ((attempts > 0))") in constraints


def test_rebuilt_table_keeps_row_level_security(
    ledger: TaskLedger, db: psycopg.Connection[tuple[object, ...]], schema: str
) -> None:
    owner = str(uuid.uuid4())
    ledger.create_task("a", "A", "mine", "chat", owner)
    ledger.create_task("a", "A", "theirs", "chat", str(uuid.uuid4()))
    ledger.rebuild()

    with db.transaction():
        db.execute("set local role authenticated")
        db.execute("select set_config('request.jwt.claim.sub', %s, true)", (owner,))
        visible = db.execute("select message from agent_tasks").fetchall()
    db.execute("set role anon")
    query = sql.SQL("select message from {}").format(
        sql.Identifier(schema, "agent_tasks")
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute(query)
    db.execute("reset role")

    assert visible == [("mine",)]


def test_rebuild_while_commands_continue(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    load(ledger, database_url, schema, 400)
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        while not stop.is_set():
            task = ledger.create_task("w", "W", "m", "chat")
            ledger.start_task(task.id)
            written.append(ledger.complete_task(task.id, "ok").position or 0)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        ledger.rebuild(batch_size=100)
        time.sleep(0.2)
    finally:
        stop.set()
        writer.join()
    ledger.wait_for_projection(max(written))

    assert written
    assert projected_tasks(database_url, schema) == fold_events(database_url, schema)
    with psycopg.connect(database_url) as conn:
        updates = conn.execute(
            sql.SQL("select count(*), count(distinct position) from {}").format(
                sql.Identifier(schema, "task_updates")
            )
        ).fetchone()
    events = head(database_url, schema)
    assert updates == (events, events)


@pytest.mark.slow
def test_rebuild_ends_while_writers_outpace_it(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    load(ledger, database_url, schema, 20)
    stop = threading.Event()
    rebuilt: list[int] = []

    def write() -> None:
        while not stop.is_set():
            task = ledger.create_task("w", "W", "m", "chat")
            ledger.start_task(task.id)
            ledger.complete_task(task.id, "ok")

    def rebuild() -> None:
        # One event per transaction: slower than the writer's commands.
        rebuilt.append(ledger.rebuild(batch_size=1).position)

    writer = threading.Thread(target=write)
    rebuilder = threading.Thread(target=rebuild, daemon=True)
    writer.start()
    try:
        rebuilder.start()
        rebuilder.join(timeout=120)
    finally:
        stop.set()
        writer.join()

    assert not rebuilder.is_alive()
    assert rebuilt
    assert rebuilt[0] < head(database_url, schema)


def test_rebuild_writes_no_task_updates(
    ledger: TaskLedger, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    ledger.start_task(task.id)
    ledger.get_task(task.id)
    before = db.execute("select * from task_updates order by position").fetchall()

    ledger.rebuild()

    assert db.execute("select * from task_updates order by position").fetchall() == (
        before
    )


def test_readers_use_old_tables_until_swap(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    load(ledger, database_url, schema, 200)
    expected = ledger.get_tasks(limit=1000)
    seen: list[tuple[int, int]] = []

    def during_rebuild(report: RebuildProgress) -> None:
        page = ledger.get_tasks(limit=1000)
        seen.append((page.total, ledger.get_statistics().total))

    ledger.rebuild(progress=during_rebuild, batch_size=100)

    assert len(seen) > 2
    assert set(seen) == {(expected.total, expected.total)}


def test_rebuild_reports_progress(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    events = load(ledger, database_url, schema, 100)
    reports: list[RebuildProgress] = []

    ledger.rebuild(progress=reports.append, batch_size=50)

    assert [r.events_done for r in reports] == sorted(r.events_done for r in reports)
    assert reports[-1].events_done == events
    assert reports[-1].remaining == 0
    assert reports[0].remaining > 0
    assert all(r.rate > 0 for r in reports)
    assert all(r.head == head(database_url, schema) for r in reports)


class RebuildStoppedError(Exception):
    """Raised from a progress callback to stop a rebuild midway."""


def test_interrupted_rebuild_resumes(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    events = load(ledger, database_url, schema, 200)
    before = read_model(database_url, schema)

    def interrupt(report: RebuildProgress) -> None:
        if report.events_done >= 100:
            raise RebuildStoppedError

    with pytest.raises(RebuildStoppedError):
        ledger.rebuild(progress=interrupt, batch_size=100)
    ledger.create_task("late", "L", "m", "chat")
    result = ledger.rebuild(batch_size=100)

    assert result.resumed
    assert result.events == events + 1 - 100
    ledger.get_tasks()
    after = read_model(database_url, schema)
    assert after["agent_tasks"] == table_rows(database_url, schema, "agent_tasks")
    assert len(after["agent_tasks"]) == len(before["agent_tasks"]) + 1
    assert projected_tasks(database_url, schema) == fold_events(database_url, schema)


def test_second_rebuild_is_rejected(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as other:
        key = projection_lock_key(schema, REBUILD_PROJECTION)
        other.execute("select pg_advisory_lock(%s)", (key,))

        with pytest.raises(RebuildInProgressError, match="another process"):
            ledger.rebuild()


def test_swap_waits_for_readers(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    load(ledger, database_url, schema, 30)
    reader = psycopg.connect(database_url)
    reader.execute(
        sql.SQL("select count(*) from {}").format(sql.Identifier(schema, "agent_tasks"))
    )
    with pytest.raises(StorageError, match="run the rebuild again"):
        rebuild_projection(database_url, schema, lock_timeout=0.1, swap_attempts=2)
    assert ledger.get_tasks().total == 30

    threading.Timer(0.5, reader.close).start()
    result = rebuild_projection(
        database_url, schema, lock_timeout=0.2, swap_attempts=20
    )

    assert result.resumed
    assert ledger.get_tasks().total == 30


def test_projection_continues_after_swap(ledger: TaskLedger) -> None:
    first = ledger.create_task("a", "A", "m", "chat", occurred_at=START)
    ledger.rebuild()

    ledger.start_task(first.id, occurred_at=START + timedelta(minutes=1))
    second = ledger.create_task("a", "A", "m", "chat", occurred_at=START)

    assert ledger.get_task(first.id).status.value == "processing"
    assert ledger.get_tasks().total == 2
    assert ledger.get_statistics().processing == 1
    assert ledger.get_task(second.id).attempts == 1


def test_copies_start_with_row_level_security(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    ledger.create_task("a", "A", "m", "chat")
    copies = ProjectionTables.rebuild_copies(schema)

    def inspect(report: RebuildProgress) -> None:
        del report
        for name in copies.read_model_names:
            settings = catalog(database_url, schema, name)
            assert settings["table"][0][0] is True
            grantees = {grantee for grantee, _ in settings["grants"]}
            assert grantees.isdisjoint(API_ROLES)
        raise RebuildStoppedError

    with pytest.raises(RebuildStoppedError):
        ledger.rebuild(progress=inspect)


def test_rebuild_of_schema_without_tables_is_reported(
    database_url: str, schema: str
) -> None:
    with pytest.raises(ConfigurationError, match="has no table task_events"):
        rebuild_projection(database_url, schema)


def test_dependents_block_rebuild_before_replay(
    ledger: TaskLedger, db: psycopg.Connection[tuple[object, ...]], schema: str
) -> None:
    ledger.create_task("a", "A", "m", "chat")
    db.execute("create view open_tasks as select id from agent_tasks")
    db.execute(
        "create function all_tasks() returns setof agent_tasks "
        "language sql as 'select * from agent_tasks'"
    )
    db.execute("create table notes (task_id uuid references agent_tasks (id))")
    db.execute(
        "create function task_count() returns bigint language sql "
        "begin atomic select count(*) from agent_tasks; end"
    )
    db.execute("create table reviews (id int primary key)")
    db.execute("alter table reviews enable row level security")
    db.execute(
        "create policy reviewed_tasks on reviews using "
        "(exists (select from agent_tasks where attempts = reviews.id))"
    )
    db.execute("create table snapshots (task agent_tasks)")
    db.execute("create type task_pair as (first agent_tasks, second agent_tasks)")

    with pytest.raises(RebuildBlockedError) as raised:
        ledger.rebuild()

    message = str(raised.value)
    for described in (
        f"view {schema}.open_tasks",
        f"function {schema}.all_tasks()",
        f"constraint notes_task_id_fkey on table {schema}.notes",
        f"function {schema}.task_count()",
        f"policy reviewed_tasks on table {schema}.reviews",
        f"column task of table {schema}.snapshots",
        f"column first of composite type {schema}.task_pair",
    ):
        assert described in message
    copy = db.execute("select to_regclass('agent_tasks_rebuild')").fetchone()
    assert copy == (None,)


def test_view_made_during_rebuild_blocks_swap(
    ledger: TaskLedger,
    database_url: str,
    schema: str,
    db: psycopg.Connection[tuple[object, ...]],
) -> None:
    load(ledger, database_url, schema, 50)

    def add_view(report: RebuildProgress) -> None:
        db.execute("create or replace view open_tasks as select id from agent_tasks")

    with pytest.raises(RebuildBlockedError, match="open_tasks"):
        ledger.rebuild(progress=add_view, batch_size=20)
    db.execute("drop view open_tasks")
    result = ledger.rebuild()

    assert result.resumed
    assert ledger.get_tasks().total == 50
