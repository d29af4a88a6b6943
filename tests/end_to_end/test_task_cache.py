"""Tasks cached between commands act as loads from the database would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from taskledger import InvalidInputError, TaskLedger, TaskNotFoundError, TaskStatus


@pytest.fixture
def other(database_url: str, schema: str) -> Iterator[TaskLedger]:
    """A second ledger on the same schema, as another process would open it."""
    with TaskLedger.open(database_url, schema=schema, project=False) as opened:
        yield opened


def test_command_after_other_writer_redecides(
    ledger: TaskLedger, other: TaskLedger
) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    other.start_task(task.id)

    done = ledger.complete_task(task.id, "ok")

    assert done.status is TaskStatus.COMPLETED
    assert done.version == 3
    history = [event.event_type for event in other.get_history(task.id)]
    assert history == ["created", "started", "completed"]


def test_conflict_with_cached_task_redecides(
    ledger: TaskLedger, other: TaskLedger
) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    other.start_task(task.id)

    cancelled = ledger.cancel_task(task.id, "not needed")

    assert cancelled.version == 3
    assert cancelled.started_at is not None
    history = [event.event_type for event in other.get_history(task.id)]
    assert history == ["created", "started", "cancelled"]


def test_results_carry_database_times(ledger: TaskLedger) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    ledger.start_task(task.id)
    ledger.wait_task(task.id)
    ledger.start_task(task.id)

    done = ledger.complete_task(task.id, "ok")

    ledger.wait_for_projection(done.position)
    assert ledger.get_task(task.id) == done


def test_occurred_at_is_checked_against_stored_time(ledger: TaskLedger) -> None:
    task = ledger.create_task("a", "A", "m", "chat")

    with pytest.raises(InvalidInputError, match="earlier"):
        ledger.start_task(
            task.id, occurred_at=task.created_at - timedelta(microseconds=1)
        )

    started = ledger.start_task(task.id, occurred_at=task.created_at)
    assert started.wait_ms == 0


def test_cached_task_whose_events_were_lost_is_not_found(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    ledger.start_task(task.id)
    # As after a restore that lost the task: the delete bypasses the triggers.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("set session_replication_role = replica")
        conn.execute(
            sql.SQL("delete from {}.task_events").format(sql.Identifier(schema))
        )

    with pytest.raises(TaskNotFoundError):
        ledger.complete_task(task.id, "ok")

    with psycopg.connect(database_url) as conn:
        count = conn.execute(
            sql.SQL("select count(*) from {}.task_events").format(
                sql.Identifier(schema)
            )
        ).fetchone()
    assert count == (0,)
