"""A command whose reply was lost is sent again: one event, the first result.

A client that timed out cannot know whether its command committed, so it sends
the same command with the same idempotency key again, maybe through another
TaskLedger, maybe while the first attempt is still running.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from uuid import UUID, uuid4

import pytest

from taskledger import (
    IdempotencyConflictError,
    InvalidTransitionError,
    TaskLedger,
    TaskRecord,
    TaskStatus,
)
from tests.reliability.helpers import Db, event_count, race

ROUNDS = 15


def started(ledger: TaskLedger) -> TaskRecord:
    task = ledger.create_task("a", "A", "m", "chat")
    return ledger.start_task(task.id)


def test_repeat_returns_first_result(
    ledger: TaskLedger, other: TaskLedger, db: Db
) -> None:
    task = started(ledger)

    first = ledger.complete_task(task.id, "ok", {"n": 1}, idempotency_key="done-1")
    again = ledger.complete_task(task.id, "ok", {"n": 1}, idempotency_key="done-1")
    elsewhere = other.complete_task(task.id, "ok", {"n": 1}, idempotency_key="done-1")
    through_status = other.update_task_status(
        task.id, "completed", "ok", {"n": 1}, idempotency_key="done-1"
    )

    assert again == first
    assert elsewhere == first
    assert through_status == first
    assert event_count(db, task.id) == 3


def test_repeat_after_later_events_returns_first_result(
    ledger: TaskLedger, other: TaskLedger, db: Db
) -> None:
    task = ledger.create_task("a", "A", "m", "chat", idempotency_key="create-1")
    first = ledger.start_task(task.id, idempotency_key="start-1")
    ledger.complete_task(task.id, "ok")

    again = other.start_task(task.id, idempotency_key="start-1")
    created = other.create_task("a", "A", "m", "chat", idempotency_key="create-1")

    assert again == first
    assert again.status is TaskStatus.PROCESSING
    assert created == task
    assert event_count(db) == 3


def test_concurrent_repeats_append_one_event(
    ledger: TaskLedger, other: TaskLedger, db: Db
) -> None:
    for number in range(ROUNDS):
        task = started(ledger)
        key = f"complete-{number}"
        send = [
            partial(ledger.complete_task, task.id, "ok", idempotency_key=key),
            partial(other.complete_task, task.id, "ok", idempotency_key=key),
            partial(
                ledger.update_task_status,
                task.id,
                "completed",
                "ok",
                idempotency_key=key,
            ),
            partial(
                other.update_task_status,
                task.id,
                "completed",
                "ok",
                idempotency_key=key,
            ),
        ]

        outcomes = race(*send)

        records = [o for o in outcomes if isinstance(o, TaskRecord)]
        assert len(records) == len(outcomes), outcomes
        assert len({record.model_dump_json() for record in records}) == 1
        assert event_count(db, task.id) == 3


@pytest.mark.parametrize("explicit_id", [False, True], ids=["new-id", "given-id"])
def test_concurrent_repeated_creates_make_one_task(
    ledger: TaskLedger, other: TaskLedger, db: Db, explicit_id: bool
) -> None:
    for number in range(ROUNDS):
        key = f"create-{number}"
        task_id: UUID | None = uuid4() if explicit_id else None
        send: list[Callable[[], object]] = [
            partial(
                ledger_.create_task,
                "a",
                "A",
                "m",
                "chat",
                idempotency_key=key,
                task_id=task_id,
            )
            for ledger_ in (ledger, other, ledger, other)
        ]

        outcomes = race(*send)

        records = [o for o in outcomes if isinstance(o, TaskRecord)]
        assert len(records) == len(outcomes), outcomes
        assert len({record.model_dump_json() for record in records}) == 1
    assert event_count(db) == ROUNDS


def test_same_key_with_other_status_is_rejected(
    ledger: TaskLedger, other: TaskLedger, db: Db
) -> None:
    task = started(ledger)
    ledger.update_task_status(task.id, "completed", "ok", idempotency_key="end")

    with pytest.raises(IdempotencyConflictError):
        other.update_task_status(
            task.id, "failed", error_message="x", idempotency_key="end"
        )
    with pytest.raises(IdempotencyConflictError):
        ledger.update_task_status(
            task.id, "completed", "other response", idempotency_key="end"
        )
    with pytest.raises(IdempotencyConflictError):
        ledger.create_task("a", "A", "m", "chat", idempotency_key="end")
    assert event_count(db, task.id) == 3


def test_racing_keys_with_other_status_one_wins(
    ledger: TaskLedger, other: TaskLedger, db: Db
) -> None:
    for number in range(ROUNDS):
        task = started(ledger)
        key = f"end-{number}"

        outcomes = race(
            partial(
                ledger.update_task_status,
                task.id,
                "completed",
                "ok",
                idempotency_key=key,
            ),
            partial(
                other.update_task_status,
                task.id,
                "failed",
                error_message="x",
                idempotency_key=key,
            ),
        )

        records = [o for o in outcomes if isinstance(o, TaskRecord)]
        errors = [o for o in outcomes if isinstance(o, Exception)]
        assert len(records) == 1, outcomes
        assert len(errors) == 1, outcomes
        assert isinstance(errors[0], IdempotencyConflictError | InvalidTransitionError)
        assert event_count(db, task.id) == 3
