"""Tasks cached between commands act as loads from the database would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from taskledger import (
    InvalidInputError,
    TaskLedger,
    TaskNotFoundError,
    TaskStatus,
)
from taskledger.commands import TASK_CACHE_BYTES, CommandContext, TaskCommands

NO_CONTEXT = CommandContext()
TASK_FIELDS = {
    "agent_id": "a",
    "agent_name": "A",
    "message": "m",
    "task_type": "chat",
    "user_id": None,
}


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


def test_cached_task_with_lost_events(
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


def test_edits_to_returned_record_stay_out_of_cache(ledger: TaskLedger) -> None:
    metadata = {"a": 1}
    task = ledger.create_task("a", "A", "m", "chat", metadata=metadata)
    started = ledger.start_task(task.id)

    task.metadata["created_copy"] = True
    started.metadata["started_copy"] = True
    metadata["input"] = True
    done = ledger.complete_task(task.id, "ok")

    assert done.metadata == {"a": 1}
    ledger.wait_for_projection(done.position)
    assert ledger.get_task(task.id) == done


def test_cache_stays_within_its_memory_budget(database_url: str, schema: str) -> None:
    # Each metadata is about 1.4 MB of JSON, estimated at 8.4 MB cached.
    scores = [float(n % 1000) + 0.5 for n in range(200_000)]
    with TaskLedger.open(database_url, schema=schema, project=False) as ledger:
        commands = TaskCommands(ledger.application)
        large = [
            commands.create({**TASK_FIELDS, "metadata": {"scores": scores}}, NO_CONTEXT)
            for _ in range(6)
        ]
        small = commands.create({**TASK_FIELDS, "metadata": {}}, NO_CONTEXT)

        cache = commands._task_cache
        cached = set(cache)

    assert cache.currsize <= TASK_CACHE_BYTES
    assert small.task.id in cached
    assert large[-1].task.id in cached
    assert large[0].task.id not in cached
