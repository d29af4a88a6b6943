"""Subscriptions through TaskLedger.subscribe against a real PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import pytest

from taskledger import (
    InvalidInputError,
    TaskLedger,
    TaskStatus,
    TaskUpdate,
)
from tests.realtime.helpers import (
    Recorder,
    event_positions,
    expected_positions,
    run_lifecycles,
    run_writers,
    wait_until,
)

Db = psycopg.Connection[tuple[object, ...]]


def test_filtered_subscribers_get_exact_updates(ledger: TaskLedger, db: Db) -> None:
    by_agent, by_status, by_user_type = Recorder(), Recorder(), Recorder()
    subscriptions = [
        ledger.subscribe(by_agent, agent_id="alpha"),
        ledger.subscribe(by_status, status="completed"),
        ledger.subscribe(by_user_type, user_id="u1", task_type="chat"),
    ]

    threads, results = run_writers(ledger, writers=4, tasks=120)
    for thread in threads:
        thread.join(60)
    head = max(results)
    ledger.wait_for_projection(head)
    for subscription in subscriptions:
        wait_until(lambda s=subscription: s.position >= head)
    for subscription in subscriptions:
        subscription.unsubscribe()

    assert len(event_positions(db)) == 4 * 120 * 3
    assert by_agent.positions == expected_positions(db, agent_id="alpha")
    assert by_status.positions == expected_positions(db, status="completed")
    assert by_user_type.positions == expected_positions(
        db, user_id="u1", task_type="chat"
    )
    assert all(u.task.agent_id == "alpha" for u in by_agent.updates)
    assert all(u.task.status is TaskStatus.COMPLETED for u in by_status.updates)
    assert all(u.event_type == "completed" for u in by_status.updates)
    assert all(u.task.position == u.position for u in by_user_type.updates)


def test_update_carries_projected_task(ledger: TaskLedger) -> None:
    received = Recorder()
    with ledger.subscribe(received):
        task = ledger.create_task("alpha", "Alpha", "Draft", "chat", "u1")
        ledger.start_task(task.id)
        done = ledger.complete_task(task.id, "ok", {"n": 1})
        wait_until(lambda: len(received.updates) == 3)

    assert [u.event_type for u in received.updates] == [
        "created",
        "started",
        "completed",
    ]
    assert received.updates[-1].task == ledger.get_task(task.id)
    assert received.updates[-1].position == done.position


def test_subscription_starts_at_head(ledger: TaskLedger, db: Db) -> None:
    before = ledger.create_task("alpha", "Alpha", "Old", "chat")
    ledger.wait_for_projection(before.position or 0)
    received = Recorder()

    with ledger.subscribe(received) as subscription:
        after = ledger.create_task("alpha", "Alpha", "New", "chat")
        wait_until(lambda: subscription.position >= (after.position or 0))

    assert [u.task.id for u in received.updates] == [after.id]
    assert received.positions == expected_positions(db, after=before.position or 0)


def test_catch_up_then_live_without_gap(ledger: TaskLedger, db: Db) -> None:
    first = run_lifecycles(ledger, writer=0, tasks=60)
    middle = event_positions(db)[90]
    ledger.wait_for_projection(first)
    received = Recorder()

    subscription = ledger.subscribe(received, after_position=middle)
    threads, results = run_writers(ledger, writers=2, tasks=60, pause=0.002)
    for thread in threads:
        thread.join(60)
    head = max(results)
    ledger.wait_for_projection(head)
    wait_until(lambda: subscription.position >= head)
    subscription.unsubscribe()

    assert received.positions == expected_positions(db, after=middle)
    assert received.positions == event_positions(db, after=middle)


def test_raising_callback_keeps_subscription(
    ledger: TaskLedger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="projections.subscriptions")
    seen: list[TaskUpdate] = []

    def flaky(update: TaskUpdate) -> None:
        seen.append(update)
        if len(seen) % 2 == 1:
            raise RuntimeError(f"cannot handle {update.position}")

    with ledger.subscribe(flaky) as subscription:
        task = ledger.create_task("alpha", "Alpha", "Draft", "chat")
        ledger.start_task(task.id)
        ledger.complete_task(task.id, "ok")
        wait_until(lambda: len(seen) == 3)
        assert subscription.active

    failures = [r for r in caplog.records if "callback failed" in r.getMessage()]
    assert len(failures) == 2
    assert str(task.id) in failures[0].getMessage()
    assert failures[0].position == seen[0].position  # type: ignore[attr-defined]
    assert failures[1].position == seen[2].position  # type: ignore[attr-defined]


def test_exiting_callback_ends_subscription(
    ledger: TaskLedger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="projections.subscriptions")
    seen: list[TaskUpdate] = []

    def exiting(update: TaskUpdate) -> None:
        seen.append(update)
        raise SystemExit(3)

    subscription = ledger.subscribe(exiting)
    task = ledger.create_task("alpha", "Alpha", "Draft", "chat")
    wait_until(lambda: not subscription.active)

    assert len(seen) == 1
    assert isinstance(subscription.error, SystemExit)
    ended = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert ended == [
        f"subscription ended: its callback raised SystemExit(3) for task {task.id} "
        f"at position {seen[0].position}"
    ]


def test_slow_callback_does_not_block_others(ledger: TaskLedger) -> None:
    release = threading.Event()
    fast = Recorder()

    def slow(update: TaskUpdate) -> None:
        release.wait(10)

    with ledger.subscribe(slow), ledger.subscribe(fast):
        task = ledger.create_task("alpha", "Alpha", "Draft", "chat")
        done = ledger.complete_task(ledger.start_task(task.id).id, "ok")
        wait_until(lambda: len(fast.updates) == 3, timeout=5)
        assert ledger.get_task(task.id).position == done.position
        release.set()


def test_unsubscribe_stops_delivery(ledger: TaskLedger) -> None:
    received = Recorder()
    subscription = ledger.subscribe(received)
    first = ledger.create_task("alpha", "Alpha", "One", "chat")
    wait_until(lambda: len(received.updates) == 1)

    subscription.unsubscribe()
    ledger.start_task(first.id)
    time.sleep(0.3)

    assert not subscription.active
    assert len(received.updates) == 1


def test_unsubscribe_inside_callback(ledger: TaskLedger) -> None:
    received = Recorder()

    def once(update: TaskUpdate) -> None:
        received(update)
        subscription.unsubscribe()

    subscription = ledger.subscribe(once)
    task = ledger.create_task("alpha", "Alpha", "One", "chat")
    ledger.start_task(task.id)
    wait_until(lambda: not subscription.active)
    time.sleep(0.2)

    assert len(received.updates) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"status": "done"}, "status filter"),
        ({"agent_id": " "}, "agent_id"),
        ({"after_position": -1}, "after_position"),
        ({"after_position": "5"}, "after_position"),
    ],
)
def test_invalid_subscription_is_rejected(
    ledger: TaskLedger, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ledger.subscribe(Recorder(), **arguments)  # type: ignore[arg-type]
