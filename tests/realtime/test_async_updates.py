"""`async for update in ledger.updates(...)` against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from contextlib import aclosing

import psycopg

from taskledger import TaskLedger, TaskUpdate
from tests.realtime.helpers import expected_positions, run_lifecycles, wait_until

Db = psycopg.Connection[tuple[object, ...]]


def delivery_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "task-subscription"]


def test_async_iterator_catches_up_then_follows(ledger: TaskLedger, db: Db) -> None:
    run_lifecycles(ledger, writer=0, tasks=10)

    async def consume() -> list[TaskUpdate]:
        received: list[TaskUpdate] = []
        writer = None
        async with aclosing(ledger.updates(agent_id="alpha", after_position=0)) as it:
            async for update in it:
                received.append(update)
                if writer is None:
                    # Live updates: appended while the iterator is running.
                    writer = asyncio.create_task(
                        asyncio.to_thread(run_lifecycles, ledger, 1, 10)
                    )
                if len(received) == 30:
                    break
        assert writer is not None
        await writer
        return received

    received = asyncio.run(consume())

    assert [u.position for u in received] == expected_positions(db, agent_id="alpha")
    assert all(u.task.agent_id == "alpha" for u in received)


def test_slow_async_consumer_gets_everything(ledger: TaskLedger, db: Db) -> None:
    last = run_lifecycles(ledger, writer=0, tasks=80)
    ledger.wait_for_projection(last)

    async def consume() -> list[int]:
        positions: list[int] = []
        async with aclosing(ledger.updates(after_position=0)) as it:
            async for update in it:
                positions.append(update.position)
                if len(positions) % 50 == 0:
                    await asyncio.sleep(0.05)
                if update.position == last:
                    break
        return positions

    positions = asyncio.run(consume())

    assert positions == expected_positions(db)


def test_leaving_async_loop_unsubscribes(ledger: TaskLedger) -> None:
    task = ledger.create_task("alpha", "Alpha", "One", "chat")

    async def first() -> TaskUpdate:
        async with aclosing(ledger.updates(after_position=0)) as it:
            async for update in it:
                return update
        raise AssertionError("no update")

    update = asyncio.run(first())

    assert update.task.id == task.id
    wait_until(lambda: not delivery_threads(), timeout=5)
