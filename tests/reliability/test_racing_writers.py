"""Writers racing for the same version of a task: exactly one of them wins."""

from __future__ import annotations

import threading
from collections import Counter
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from taskledger import (
    ConcurrencyConflictError,
    InvalidTransitionError,
    TaskLedger,
    TaskRecord,
    TaskStatus,
)
from tests.projections.helpers import fold_events, projected_tasks
from tests.reliability.helpers import Db, event_count, race

TASKS = 200
# The terminal commands of each race. Worker 0 sends the first, worker 1 the second.
PAIRS = [
    (TaskStatus.COMPLETED, TaskStatus.FAILED),
    (TaskStatus.FAILED, TaskStatus.CANCELLED),
    (TaskStatus.CANCELLED, TaskStatus.COMPLETED),
]


def finish(ledger: TaskLedger, task_id: UUID, status: TaskStatus) -> TaskRecord:
    if status is TaskStatus.COMPLETED:
        return ledger.complete_task(task_id, "done", {"by": "worker"})
    if status is TaskStatus.FAILED:
        return ledger.fail_task(task_id, "broke")
    return ledger.cancel_task(task_id, "stopped")


def count_conflicts(ledger: TaskLedger, counter: Counter[str]) -> None:
    """Count the appends of a ledger that lost the race for a version."""
    recorder = ledger._commands.recorder
    append = recorder.append

    def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            return append(*args, **kwargs)
        except IntegrityError:
            counter["conflicts"] += 1
            raise

    recorder.append = counted  # type: ignore[method-assign]


def test_terminal_race_has_one_winner(
    ledger: TaskLedger, other: TaskLedger, db: Db, database_url: str, schema: str
) -> None:
    tasks = [
        ledger.start_task(ledger.create_task("a", "A", "m", "chat").id)
        for _ in range(TASKS)
    ]
    counter: Counter[str] = Counter()
    count_conflicts(ledger, counter)
    count_conflicts(other, counter)
    barrier = threading.Barrier(2)
    outcomes: list[list[object]] = [[None] * TASKS, [None] * TASKS]

    def work(worker: int, writer: TaskLedger) -> None:
        for number, task in enumerate(tasks):
            status = PAIRS[number % len(PAIRS)][worker]
            barrier.wait(timeout=30)
            try:
                outcomes[worker][number] = finish(writer, task.id, status)
            except Exception as error:
                outcomes[worker][number] = error

    workers = [
        threading.Thread(target=work, args=(0, ledger)),
        threading.Thread(target=work, args=(1, other)),
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(120)
        assert not thread.is_alive()

    winners: list[TaskRecord] = []
    for number in range(TASKS):
        pair = [outcomes[0][number], outcomes[1][number]]
        records = [o for o in pair if isinstance(o, TaskRecord)]
        errors = [o for o in pair if isinstance(o, Exception)]
        assert len(records) == 1, pair
        assert len(errors) == 1, pair
        assert isinstance(errors[0], ConcurrencyConflictError | InvalidTransitionError)
        assert records[0].version == 3
        winners.append(records[0])
    # Most races reach the database, because both appends were decided from
    # version 2.
    assert counter["conflicts"] > 0
    # Read-your-writes covers a TaskLedger's own writes, and some winners wrote
    # through the other one.
    ledger.wait_for_projection(max(w.position or 0 for w in winners))
    for winner in winners:
        assert ledger.get_task(winner.id) == winner
        replayed = ledger._commands.task_at_version(winner.id, 10**6)
        assert replayed == winner.model_copy(update={"position": None})
        assert event_count(db, winner.id) == 3
    assert projected_tasks(database_url, schema) == fold_events(database_url, schema)


def test_create_with_taken_id_conflicts(ledger: TaskLedger, db: Db) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    ledger.start_task(task.id)

    with pytest.raises(ConcurrencyConflictError) as raised:
        ledger.create_task("b", "B", "other", "chat", task_id=task.id)

    assert raised.value.task_id == task.id
    assert raised.value.expected_version == 0
    assert raised.value.actual_version == 2
    assert f"task {task.id} already exists (at version 2)" in str(raised.value)
    assert event_count(db) == 2


def test_racing_creates_of_one_id_one_wins(
    ledger: TaskLedger, other: TaskLedger, db: Db
) -> None:
    for _ in range(20):
        task_id = uuid4()

        outcomes = race(
            partial(ledger.create_task, "a", "A", "m", "chat", task_id=task_id),
            partial(other.create_task, "b", "B", "m", "chat", task_id=task_id),
        )

        records = [o for o in outcomes if isinstance(o, TaskRecord)]
        errors = [o for o in outcomes if isinstance(o, Exception)]
        assert len(records) == 1, outcomes
        assert len(errors) == 1, outcomes
        assert isinstance(errors[0], ConcurrencyConflictError)
        ledger.wait_for_projection(records[0].position or 0)
        assert ledger.get_task(task_id) == records[0]
    assert event_count(db) == 20
