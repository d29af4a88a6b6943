"""Commands that arrive after a task finished: only an explicit retry reopens it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from domain.task import Task
from taskledger import InvalidTransitionError, TaskLedger, TaskRecord, TaskStatus
from tests.reliability.helpers import Db, event_count

TERMINAL = [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED]
# Every status a command can move a task to, except pending (a retry).
NOT_RETRY = [
    TaskStatus.PROCESSING,
    TaskStatus.WAITING,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
]


def finished(ledger: TaskLedger, status: TaskStatus) -> TaskRecord:
    task = ledger.create_task("a", "A", "m", "chat")
    ledger.start_task(task.id)
    if status is TaskStatus.COMPLETED:
        return ledger.complete_task(task.id, "ok")
    if status is TaskStatus.FAILED:
        return ledger.fail_task(task.id, "broke")
    return ledger.cancel_task(task.id, "stop")


def command_for(
    ledger: TaskLedger, task: TaskRecord, status: TaskStatus
) -> Callable[[], TaskRecord]:
    """The dedicated command that moves the task to status."""
    commands: dict[TaskStatus, Callable[[], TaskRecord]] = {
        TaskStatus.PROCESSING: lambda: ledger.start_task(task.id),
        TaskStatus.WAITING: lambda: ledger.wait_task(task.id),
        TaskStatus.COMPLETED: lambda: ledger.complete_task(task.id, "late"),
        TaskStatus.FAILED: lambda: ledger.fail_task(task.id, "late"),
        TaskStatus.CANCELLED: lambda: ledger.cancel_task(task.id, "late"),
    }
    return commands[status]


def test_completion_after_cancel_is_rejected(ledger: TaskLedger, db: Db) -> None:
    cancelled = finished(ledger, TaskStatus.CANCELLED)

    with pytest.raises(InvalidTransitionError) as raised:
        ledger.complete_task(cancelled.id, "the agent's answer", idempotency_key="c1")

    assert raised.value.task_id == cancelled.id
    assert raised.value.current == "cancelled"
    assert raised.value.requested == "completed"
    assert "is cancelled: it cannot move to completed" in str(raised.value)
    assert ledger.get_task(cancelled.id) == cancelled
    assert event_count(db, cancelled.id) == 3


def test_completion_decided_before_cancel_is_rejected(
    ledger: TaskLedger, monkeypatch: pytest.MonkeyPatch, db: Db
) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    ledger.start_task(task.id)
    commands = ledger._commands
    stale = commands._load(task.id)
    cancelled = ledger.cancel_task(task.id, "user gave up")
    loads: list[int] = []
    load = commands._load

    def load_stale_first(task_id: Any) -> Task:
        # The agent's completion was decided on the task as it was before the
        # cancel, so its append finds version 3 taken and must re-decide.
        loads.append(1)
        return stale if len(loads) == 1 else load(task_id)

    monkeypatch.setattr(commands, "_load", load_stale_first)

    with pytest.raises(InvalidTransitionError) as raised:
        ledger.complete_task(task.id, "the agent's answer")

    assert len(loads) == 2
    assert raised.value.current == "cancelled"
    assert raised.value.requested == "completed"
    assert ledger.get_task(task.id) == cancelled
    assert event_count(db, task.id) == 3


@pytest.mark.parametrize("terminal", TERMINAL, ids=str)
def test_terminal_accepts_only_retry(
    ledger: TaskLedger, db: Db, terminal: TaskStatus
) -> None:
    task = finished(ledger, terminal)

    for status in NOT_RETRY:
        with pytest.raises(InvalidTransitionError, match=f"is {terminal}"):
            command_for(ledger, task, status)()
        with pytest.raises(InvalidTransitionError, match=f"to {status}"):
            ledger.update_task_status(task.id, status, "late", error_message="late")

    assert ledger.get_task(task.id) == task
    assert event_count(db, task.id) == 3
    retried = ledger.update_task_status(task.id, "pending")
    assert retried.status is TaskStatus.PENDING
    assert retried.attempts == 2
    assert retried.version == 4
    assert ledger.start_task(task.id).status is TaskStatus.PROCESSING
