"""A read model row changed outside the projector: reported, then rebuilt."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from taskledger import ReadModelDamagedError, TaskLedger, TaskStatus

Db = psycopg.Connection[tuple[Any, ...]]


def started_after_damage(ledger: TaskLedger, db: Db, damage: str) -> Any:
    """Create a task, damage its row with the SQL damage, then start it."""
    task = ledger.create_task("a", "A", "m", "chat")
    ledger.get_task(task.id)
    db.execute(damage, (task.id,))
    return ledger.start_task(task.id)


@pytest.mark.parametrize(
    "damage",
    [
        "delete from agent_tasks where id = %s",
        "update agent_tasks set version = version + 1 where id = %s",
    ],
)
def test_damaged_row_stops_projection(ledger: TaskLedger, db: Db, damage: str) -> None:
    started = started_after_damage(ledger, db, damage)

    with pytest.raises(ReadModelDamagedError) as raised:
        ledger.wait_for_projection(started.position, timeout=10)

    assert str(started.id) in str(raised.value)
    assert "taskledger rebuild" in str(raised.value)


def test_rebuild_repairs_deleted_row(ledger: TaskLedger, db: Db) -> None:
    started = started_after_damage(ledger, db, "delete from agent_tasks where id = %s")
    with pytest.raises(ReadModelDamagedError):
        ledger.wait_for_projection(started.position, timeout=10)

    ledger.rebuild()
    completed = ledger.complete_task(started.id, "done")

    assert ledger.get_task(started.id).status is TaskStatus.COMPLETED
    updates = db.execute(
        "select position, task ->> 'status' from task_updates order by position"
    ).fetchall()
    assert [status for _, status in updates] == ["pending", "processing", "completed"]
    assert updates[-1][0] == completed.position
    assert ledger.get_statistics().completed == 1
