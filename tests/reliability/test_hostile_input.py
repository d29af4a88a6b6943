"""Hostile input at the facade: huge values and SQL text.

Huge values are rejected before anything reaches the database, and quickly.
SQL text is data everywhere: stored and read back verbatim, matched literally
by filters, and never run. A rejected command leaves task_events unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from typing import Any

import pytest

from domain.values import MAX_EVENT_BYTES
from taskledger import (
    ConcurrencyConflictError,
    IdempotencyConflictError,
    InvalidInputError,
    InvalidTransitionError,
    Subscription,
    TaskLedger,
    TaskRecord,
    TaskUpdate,
)
from tests.reliability.helpers import Db, wait_until

SIZE = 50 * 1024 * 1024
SQL_TEXTS = [
    "'; drop table agent_tasks; --",
    "x' or '1'='1",
    '"); delete from task_events; --',
    "1; select pg_sleep(10)",
    "%s %(x)s $1 ? ?| \\ ''",
    "$$; truncate task_events; $$",
]


def delivered_through(subscription: Subscription, position: int) -> bool:
    return subscription.position >= position


def snapshot(db: Db) -> list[tuple[Any, ...]]:
    return db.execute("select * from task_events order by position").fetchall()


@pytest.fixture
def no_database(ledger: TaskLedger, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if the ledger takes a database connection meanwhile."""
    datastore = ledger._commands.recorder.datastore

    def refuse() -> AbstractContextManager[Any]:
        raise AssertionError("a rejected command reached the database")

    with monkeypatch.context() as patch:
        patch.setattr(datastore, "get_connection", refuse)
        yield


def huge_commands(
    ledger: TaskLedger, task: TaskRecord
) -> dict[str, Callable[[], object]]:
    text = "x" * SIZE
    nul = "\x00" * SIZE
    wide = "\u00e9" * (SIZE // 2)
    many = ["ab"] * (SIZE // 5)
    return {
        "response": lambda: ledger.complete_task(task.id, text),
        "response-nul": lambda: ledger.complete_task(task.id, nul),
        "response-wide": lambda: ledger.complete_task(task.id, wide),
        "response-status": lambda: ledger.update_task_status(
            task.id, "completed", text
        ),
        "response_data": lambda: ledger.complete_task(task.id, "r", {"blob": text}),
        "response_data-items": lambda: ledger.complete_task(task.id, "r", many),
        "metadata": lambda: ledger.wait_task(task.id, {"blob": text}),
        "metadata-key": lambda: ledger.wait_task(task.id, {text: 1}),
        "error_message": lambda: ledger.fail_task(task.id, nul),
        "reason": lambda: ledger.cancel_task(task.id, text),
        "message": lambda: ledger.create_task("a", "A", text, "chat"),
        "agent_id": lambda: ledger.create_task(text, "A", "m", "chat"),
        "idempotency_key": lambda: ledger.wait_task(task.id, idempotency_key=text),
        "actor": lambda: ledger.wait_task(task.id, actor=text),
        "task_id": lambda: ledger.wait_task(text),
    }


def test_huge_values_are_rejected_before_the_database(
    ledger: TaskLedger, db: Db, request: pytest.FixtureRequest
) -> None:
    task = ledger.start_task(ledger.create_task("a", "A", "m", "chat").id)
    before = snapshot(db)
    commands = huge_commands(ledger, task)

    request.getfixturevalue("no_database")
    for command in commands.values():
        with pytest.raises(InvalidInputError):
            command()

    assert snapshot(db) == before


@pytest.mark.parametrize("text", SQL_TEXTS)
def test_sql_text_is_stored_verbatim(ledger: TaskLedger, text: str) -> None:
    task = ledger.create_task(
        text,
        text,
        text,
        text,
        text,
        {text: text, "nested": {text: [text]}},
        idempotency_key=f"create {text}",
        actor=text,
        correlation_id=text,
        causation_id=text,
    )
    done = ledger.update_task_status(
        task.id,
        "cancelled",
        metadata={text: 1},
        error_message=text,
        idempotency_key=f"cancel {text}",
    )
    repeated = ledger.create_task(
        text,
        text,
        text,
        text,
        text,
        {text: text, "nested": {text: [text]}},
        idempotency_key=f"create {text}",
    )

    stored = ledger.get_task(task.id)
    assert stored == done
    assert repeated == task
    for value in (
        stored.agent_id,
        stored.agent_name,
        stored.message,
        stored.task_type,
        stored.user_id,
        stored.error_message,
    ):
        assert value == text
    assert stored.metadata == {text: 1, "nested": {text: [text]}}
    created, cancelled = ledger.get_history(task.id)
    assert created.actor == text
    assert created.correlation_id == text
    assert created.causation_id == text
    assert created.idempotency_key == f"create {text}"
    assert cancelled.idempotency_key == f"cancel {text}"


def test_sql_text_in_filters_matches_literally(ledger: TaskLedger, db: Db) -> None:
    tasks = {text: ledger.create_task(text, "A", "m", text, text) for text in SQL_TEXTS}
    plain = ledger.create_task("plain", "Plain", "m", "chat", "u1")
    before = snapshot(db)

    for text, task in tasks.items():
        for page in (
            ledger.get_tasks(agent_id=text),
            ledger.get_tasks(user_id=text),
            ledger.get_tasks(task_type=text),
            ledger.get_tasks(
                agent_id=text, user_id=text, task_type=text, status="pending"
            ),
        ):
            assert page.total == 1
            assert [t.id for t in page.tasks] == [task.id]
        statistics = ledger.get_statistics(agent_id=text, task_type=text)
        assert statistics.total == 1
        assert statistics.pending == 1
        assert ledger.get_statistics(agent_id=text, task_type="chat").total == 0

    assert ledger.get_tasks(limit=1000).total == len(SQL_TEXTS) + 1
    assert ledger.get_statistics().total == len(SQL_TEXTS) + 1
    assert ledger.get_tasks(agent_id="plain").tasks == [plain]
    assert snapshot(db) == before


def test_sql_text_in_subscription_filters_matches_literally(
    ledger: TaskLedger,
) -> None:
    tasks = {text: ledger.create_task(text, "A", "m", text, text) for text in SQL_TEXTS}
    head = max(task.position or 0 for task in tasks.values())
    received: dict[str, list[TaskUpdate]] = {text: [] for text in SQL_TEXTS}
    subscriptions = [
        ledger.subscribe(
            received[text].append,
            agent_id=text,
            user_id=text,
            task_type=text,
            after_position=0,
        )
        for text in SQL_TEXTS
    ]

    for subscription in subscriptions:
        wait_until(partial(delivered_through, subscription, head))
        subscription.unsubscribe()

    for text, task in tasks.items():
        assert [update.task for update in received[text]] == [task]


@pytest.mark.parametrize("text", SQL_TEXTS)
def test_sql_text_in_typed_arguments_is_rejected(
    ledger: TaskLedger, db: Db, text: str
) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    before = snapshot(db)
    calls: list[Callable[[], object]] = [
        lambda: ledger.get_tasks(status=text),
        lambda: ledger.get_tasks(created_after=text),  # type: ignore[arg-type]
        lambda: ledger.get_tasks(created_before=text),  # type: ignore[arg-type]
        lambda: ledger.get_tasks(limit=text),  # type: ignore[arg-type]
        lambda: ledger.get_tasks(offset=text),  # type: ignore[arg-type]
        lambda: ledger.get_statistics(since=text),  # type: ignore[arg-type]
        lambda: ledger.get_statistics(until=text),  # type: ignore[arg-type]
        lambda: ledger.get_task(text),
        lambda: ledger.get_history(text),
        lambda: ledger.get_task_at(text),
        lambda: ledger.get_task_at(task.id, version=text),  # type: ignore[arg-type]
        lambda: ledger.start_task(text),
        lambda: ledger.update_task_status(task.id, text),
        lambda: ledger.create_task("a", "A", "m", "chat", task_id=text),
        lambda: ledger.subscribe(print, status=text),
    ]

    for call in calls:
        with pytest.raises(InvalidInputError):
            call()

    assert snapshot(db) == before
    assert ledger.get_task(task.id) == task


def test_rejected_commands_leave_stream_unchanged(ledger: TaskLedger, db: Db) -> None:
    task = ledger.start_task(ledger.create_task("a", "A", "m", "chat").id)
    ledger.complete_task(task.id, "ok", idempotency_key="done")
    before = snapshot(db)
    half = "x" * (MAX_EVENT_BYTES // 2)
    rejected: list[tuple[type[Exception], Callable[[], object]]] = [
        (InvalidTransitionError, lambda: ledger.start_task(task.id)),
        (InvalidTransitionError, lambda: ledger.complete_task(task.id, "again")),
        (
            IdempotencyConflictError,
            lambda: ledger.fail_task(task.id, "late", idempotency_key="done"),
        ),
        (InvalidInputError, lambda: ledger.retry_task(task.id, {"a": half, "b": half})),
        (InvalidInputError, lambda: ledger.retry_task(task.id, {"n": float("nan")})),
        (
            ConcurrencyConflictError,
            lambda: ledger.create_task("a", "A", "m", "chat", task_id=task.id),
        ),
        (
            IdempotencyConflictError,
            lambda: ledger.create_task("a", "A", "m", "chat", idempotency_key="done"),
        ),
    ]

    for error, command in rejected:
        with pytest.raises(error):
            command()

    assert snapshot(db) == before
