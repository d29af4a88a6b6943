"""A batch whose statements or writers fail: rolled back whole, reported, resumed."""

from __future__ import annotations

import logging
from collections import Counter

import psycopg
import pytest
from psycopg import Cursor, sql
from psycopg.rows import DictRow, dict_row

from domain.errors import ProjectionError
from projections.changes import TaskChange
from projections.projector import TaskProjector
from projections.tables import ProjectionTables
from taskledger import TaskLedger
from tests.projections.helpers import (
    expected_counter_rows,
    fold_events,
    projected_counter_rows,
    projected_tasks,
)

Db = psycopg.Connection[tuple[object, ...]]


class FailingWriter:
    """An extra writer with a bug: it raises on every batch."""

    def write(self, cursor: Cursor[DictRow], changes: list[TaskChange]) -> None:
        raise RuntimeError("extra writer bug")


class EventsPerAgentWriter:
    """An extra writer that updates a row, and inserts it where none matched."""

    def __init__(self, schema: str) -> None:
        table = sql.Identifier(schema, "agent_events")
        self.update = sql.SQL(
            "update {} set events = events + %s where agent_id = %s"
        ).format(table)
        self.insert = sql.SQL(
            "insert into {} (agent_id, events) values (%s, %s)"
        ).format(table)

    def write(self, cursor: Cursor[DictRow], changes: list[TaskChange]) -> None:
        counts = Counter(change.after.agent_id for change in changes)
        for agent_id, events in counts.items():
            cursor.execute(self.update, (events, agent_id))
            if cursor.rowcount == 0:
                cursor.execute(self.insert, (agent_id, events))


def append_tasks(database_url: str, schema: str, agents: list[str]) -> None:
    """Create, start and complete one task per agent, without projecting."""
    with TaskLedger.open(database_url, schema=schema, project=False) as ledger:
        for agent in agents:
            task = ledger.create_task(agent, "Agent", "m", "chat")
            ledger.start_task(task.id)
            ledger.complete_task(task.id, response="ok")


def scalar(db: Db, query: str) -> int:
    row = db.execute(query).fetchone()
    assert row is not None
    return int(str(row[0]))


def checkpoint(db: Db) -> int:
    return scalar(db, "select coalesce(max(position), 0) from projection_checkpoints")


def head(db: Db) -> int:
    return scalar(db, "select coalesce(max(position), 0) from task_events")


def positions(db: Db, table: str) -> list[int]:
    query = sql.SQL("select position from {} order by position")
    rows = db.execute(query.format(sql.Identifier(table))).fetchall()
    return [int(str(row[0])) for row in rows]


def reject_agent(db: Db, table: str) -> None:
    db.execute(
        sql.SQL(
            "alter table {} add constraint reject_bad check (agent_id <> 'bad')"
        ).format(sql.Identifier(table))
    )


def assert_equal_to_fold(database_url: str, schema: str, db: Db) -> None:
    folded = fold_events(database_url, schema)
    records = [task.record for task in folded.values()]
    assert projected_tasks(database_url, schema) == folded
    assert projected_counter_rows(database_url, schema) == expected_counter_rows(
        records
    )
    assert positions(db, "task_updates") == positions(db, "task_events")


@pytest.mark.parametrize(
    "table",
    [
        "agent_tasks",
        "task_statistics",
        "task_statistics_totals",
        "task_duration_bins",
        "task_updates",
    ],
)
def test_failed_statement_rolls_back_batch(
    database_url: str, schema: str, db: Db, table: str
) -> None:
    append_tasks(database_url, schema, ["good", "bad", "good"])
    reject_agent(db, table)
    projector = TaskProjector(ProjectionTables(schema))

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="reject_bad"):
            projector.project_batch(conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert checkpoint(db) == 0
        assert projected_tasks(database_url, schema) == {}
        assert positions(db, "task_updates") == []

        db.execute(
            sql.SQL("alter table {} drop constraint reject_bad").format(
                sql.Identifier(table)
            )
        )
        while projector.project_batch(conn) is not None:
            pass

    assert checkpoint(db) == head(db)
    assert_equal_to_fold(database_url, schema, db)


def test_failed_batch_in_caller_transaction(
    database_url: str, schema: str, db: Db
) -> None:
    append_tasks(database_url, schema, ["good", "bad"])
    reject_agent(db, "agent_tasks")
    projector = TaskProjector(ProjectionTables(schema))

    with (
        psycopg.connect(database_url, row_factory=dict_row) as conn,
        conn.transaction(),
    ):
        with pytest.raises(psycopg.errors.CheckViolation):
            projector.project_batch(conn)
        # Only the batch's savepoint rolled back, so the caller's transaction
        # goes on.
        conn.execute(
            sql.SQL("alter table {} drop constraint reject_bad").format(
                sql.Identifier(schema, "agent_tasks")
            )
        )
        assert projector.project_batch(conn) is not None
        assert projector.project_batch(conn) is None

    assert checkpoint(db) == head(db)
    assert_equal_to_fold(database_url, schema, db)


def test_statement_error_outranks_writer_error(
    database_url: str, schema: str, db: Db
) -> None:
    append_tasks(database_url, schema, ["bad"])
    # The trigger is slow, so its error arrives after the next writer has run.
    db.execute(
        "create function reject_slowly() returns trigger language plpgsql as $$ "
        "begin perform pg_sleep(0.3); raise exception 'agent % rejected', "
        "new.agent_id using errcode = 'check_violation'; end $$"
    )
    db.execute(
        "create trigger reject_slowly before insert on agent_tasks "
        "for each row execute function reject_slowly()"
    )
    projector = TaskProjector(ProjectionTables(schema))
    projector.writers.insert(1, FailingWriter())

    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn,
        pytest.raises(psycopg.errors.CheckViolation) as raised,
    ):
        projector.project_batch(conn)

    assert isinstance(raised.value.__context__, RuntimeError)
    assert checkpoint(db) == 0


def test_extra_writer_reads_row_counts(database_url: str, schema: str, db: Db) -> None:
    append_tasks(database_url, schema, ["a", "b", "a"])
    db.execute("create table agent_events (agent_id text primary key, events bigint)")
    projector = TaskProjector(
        ProjectionTables(schema),
        extra_writers=[EventsPerAgentWriter(schema)],
        batch_size=2,
    )

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        while projector.project_batch(conn) is not None:
            pass

    rows = db.execute("select agent_id, events from agent_events").fetchall()
    # Each task has three events: created, started and completed.
    assert {row[0]: row[1] for row in rows} == {"a": 6, "b": 3}


def test_extra_writer_error_stops_batch(database_url: str, schema: str, db: Db) -> None:
    append_tasks(database_url, schema, ["good"])
    projector = TaskProjector(ProjectionTables(schema), extra_writers=[FailingWriter()])

    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn,
        pytest.raises(RuntimeError, match="extra writer bug"),
    ):
        projector.project_batch(conn)

    assert checkpoint(db) == 0
    assert positions(db, "task_updates") == []


def test_batch_over_statement_timeout_stops(
    database_url: str, schema: str, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="projections.runner")
    separator = "&" if "?" in database_url else "?"
    url = f"{database_url}{separator}options=-c%20statement_timeout%3D300"
    with TaskLedger.open(url, schema=schema, read_timeout=10) as ledger:
        # A slow trigger on the read model, as an audit trigger might be.
        db.execute(
            "create function slow_audit() returns trigger language plpgsql as $$ "
            "begin perform pg_sleep(0.6); return null; end $$"
        )
        db.execute(
            "create trigger slow_audit after insert on agent_tasks "
            "for each statement execute function slow_audit()"
        )
        task = ledger.create_task("a", "A", "m", "chat")

        with pytest.raises(ProjectionError) as raised:
            ledger.get_task(task.id)

    message = str(raised.value)
    assert "cancelled 3 times in a row" in message
    assert "statement timeout" in message
    assert isinstance(raised.value.__cause__, psycopg.errors.QueryCanceled)
    stopped = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(stopped) == 1
    assert stopped[0].count("stopped") == 1
