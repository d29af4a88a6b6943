from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
import pytest

from taskledger import (
    ConcurrencyConflictError,
    IdempotencyConflictError,
    InvalidInputError,
    InvalidTransitionError,
    TaskLedger,
    TaskNotFoundError,
    TaskStatus,
)


def test_lifecycle_reaches_completed(ledger: TaskLedger) -> None:
    task = ledger.create_task("marketing", "Marketing", "Draft", "generation", "u1")
    ledger.start_task(task.id)

    done = ledger.complete_task(task.id, "ok", {"n": 1}, {"tokens": 7})

    assert done.status is TaskStatus.COMPLETED
    assert done.version == 3
    assert done.response_data == {"n": 1}
    assert done.metadata == {"tokens": 7}
    assert done.duration_ms is not None
    assert done.duration_ms >= 0


def test_second_process_sees_same_history(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    task = ledger.create_task("sales", "Sales", "Call", "chat")
    ledger.start_task(task.id)
    ledger.fail_task(task.id, "no answer")
    ledger.retry_task(task.id)
    cancelled = ledger.cancel_task(task.id, "customer left")
    script = (
        "import sys\n"
        "from taskledger import TaskLedger\n"
        "with TaskLedger.open(sys.argv[1], schema=sys.argv[2]) as l:\n"
        "    l.wait_for_projection(int(sys.argv[4]))\n"
        "    t = l.get_task(sys.argv[3])\n"
        "    print(t.status.value, t.attempts, t.version, t.error_message)\n"
        "    print(' '.join(e.event_type for e in l.get_history(sys.argv[3])))\n"
    )
    position = str(cancelled.position)

    output = subprocess.run(
        [sys.executable, "-c", script, database_url, schema, str(task.id), position],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()

    assert output == [
        "cancelled 2 5 customer left",
        "created started failed retried cancelled",
    ]


def test_unknown_task_is_not_found(ledger: TaskLedger) -> None:
    with pytest.raises(TaskNotFoundError):
        ledger.start_task("00000000-0000-0000-0000-000000000000")


def test_naive_occurred_at_is_rejected(ledger: TaskLedger) -> None:
    with pytest.raises(InvalidInputError, match="time zone"):
        ledger.create_task("a", "A", "m", "chat", occurred_at=datetime(2024, 1, 1))


def test_occurred_at_before_previous_event_is_rejected(ledger: TaskLedger) -> None:
    created_at = datetime(2024, 1, 1, tzinfo=UTC)
    task = ledger.create_task("a", "A", "m", "chat", occurred_at=created_at)

    with pytest.raises(InvalidInputError, match="earlier"):
        ledger.start_task(task.id, occurred_at=created_at - timedelta(seconds=1))

    started = ledger.start_task(task.id, occurred_at=created_at + timedelta(seconds=3))
    assert started.wait_ms == 3000
    assert started.version == 2


def test_idempotent_repeat_returns_first_result(
    ledger: TaskLedger, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    first = ledger.start_task(task.id, idempotency_key="start-1")
    ledger.wait_task(task.id)

    again = ledger.start_task(task.id, idempotency_key="start-1")

    assert again.version == first.version
    assert again.status is TaskStatus.PROCESSING
    count = db.execute(
        "select count(*) from task_events where task_id = %s", (task.id,)
    ).fetchone()
    assert count == (3,)


def test_idempotency_key_reused_by_other_command_is_rejected(
    ledger: TaskLedger,
) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    ledger.start_task(task.id, idempotency_key="k")

    with pytest.raises(IdempotencyConflictError):
        ledger.fail_task(task.id, "x", idempotency_key="k")


def test_concurrent_terminal_commands_one_wins(ledger: TaskLedger) -> None:
    for _ in range(20):
        task = ledger.create_task("a", "A", "m", "chat")
        ledger.start_task(task.id)

        outcomes = race(
            partial(ledger.complete_task, task.id, "done"),
            partial(ledger.fail_task, task.id, "broke"),
        )

        errors = [o for o in outcomes if isinstance(o, Exception)]
        assert len(errors) == 1
        assert isinstance(errors[0], InvalidTransitionError | ConcurrencyConflictError)


def race(*commands: Callable[[], object]) -> list[object]:
    """Run the commands in threads released together; return results or errors."""
    barrier = threading.Barrier(len(commands))
    outcomes: list[object] = []

    def run(command: Callable[[], object]) -> None:
        barrier.wait()
        try:
            outcomes.append(command())
        except Exception as error:
            outcomes.append(error)

    threads = [threading.Thread(target=run, args=(c,)) for c in commands]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
