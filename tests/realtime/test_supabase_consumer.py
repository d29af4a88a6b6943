"""SupabaseRealtimeConsumer against a local stand-in for the Realtime server.

supabase-py's real client talks to FakeRealtimeServer on 127.0.0.1; catch-up
reads go to the test's PostgreSQL. The server pushes only what the test hands
it, so a change that is never pushed stands for one lost in a gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any
from uuid import UUID

import psycopg
import pytest

from infrastructure.listen_updates import UpdateFilter
from infrastructure.supabase_realtime import SupabaseRealtimeConsumer
from taskledger import TaskLedger, TaskRecord, TaskUpdate
from tests.realtime.fake_realtime import FakeRealtimeServer
from tests.realtime.helpers import run_lifecycles

Db = psycopg.Connection[tuple[object, ...]]

# realtime 2.34.1 reads ConnectionClosed.code and .reason, which websockets 15
# deprecates, when its socket fails. With that warning turned into an error,
# the client's reading task dies before it can report CHANNEL_ERROR.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:ConnectionClosed\.(code|reason) is deprecated:DeprecationWarning"
)


async def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def row_of(db: Db, task_id: UUID) -> dict[str, Any]:
    row = db.execute(
        "select to_jsonb(t) from agent_tasks t where id = %s", (task_id,)
    ).fetchone()
    assert row is not None
    assert isinstance(row[0], dict)
    return row[0]


def all_updates(db: Db) -> list[tuple[int, str]]:
    rows = db.execute(
        "select position, event_type from task_updates order by position"
    ).fetchall()
    return [(int(p), str(t)) for p, t in rows]  # type: ignore[call-overload]


class Harness:
    """A consumer running in a task, with the ledger, database and server."""

    def __init__(
        self,
        ledger: TaskLedger,
        db: Db,
        schema: str,
        server: FakeRealtimeServer,
        consumer: SupabaseRealtimeConsumer,
    ) -> None:
        self.ledger, self.db, self.schema = ledger, db, schema
        self.server, self.consumer = server, consumer
        self.received: list[TaskUpdate] = []

    async def consume(self) -> None:
        async with aclosing(self.consumer.updates()) as updates:
            async for update in updates:
                self.received.append(update)

    async def command(self, call: Callable[[], TaskRecord]) -> TaskRecord:
        """Run a ledger command and wait until the projector applied it."""
        task = await asyncio.to_thread(call)
        await asyncio.to_thread(self.ledger.wait_for_projection, task.position or 0)
        return task

    async def push_live(self, call: Callable[[], TaskRecord]) -> TaskRecord:
        """Run a command, then push its agent_tasks row as Realtime would."""
        task = await self.command(call)
        await self.server.push(self.schema, row_of(self.db, task.id))
        return task


async def run_with_consumer(
    ledger: TaskLedger,
    db: Db,
    schema: str,
    database_url: str,
    scenario: Callable[[Harness], Awaitable[None]],
    **options: Any,
) -> Harness:
    async with FakeRealtimeServer() as server:
        consumer = SupabaseRealtimeConsumer(
            server.url, "test-key", database_url, schema=schema, **options
        )
        harness = Harness(ledger, db, schema, server, consumer)
        consuming = asyncio.create_task(harness.consume())
        try:
            await scenario(harness)
        finally:
            consuming.cancel()
            await asyncio.gather(consuming, return_exceptions=True)
    return harness


def test_consumer_delivers_live_and_fills_gap(
    ledger: TaskLedger,
    db: Db,
    schema: str,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="infrastructure.supabase_realtime")
    run_lifecycles(ledger, writer=0, tasks=3)

    async def scenario(h: Harness) -> None:
        # Catch-up after the join: every update committed before.
        await eventually(lambda: len(h.received) == 9)
        assert h.server.joins == 1

        # Live: one event per projector batch, pushed as its row.
        task = await h.push_live(
            lambda: h.ledger.create_task("alpha", "Alpha", "Live", "chat")
        )
        await h.push_live(lambda: h.ledger.start_task(task.id))
        await eventually(lambda: len(h.received) == 11)

        # Gap: the socket dies and changes are made that are never pushed.
        h.server.drop_connections()
        await h.command(lambda: h.ledger.wait_task(task.id))
        await h.command(lambda: h.ledger.complete_task(task.id, "ok"))
        await eventually(lambda: h.server.joins == 2)
        await eventually(lambda: len(h.received) == 13)

        # A late or replayed payload for a delivered position is dropped.
        await h.server.push(h.schema, row_of(h.db, task.id))
        await h.push_live(lambda: h.ledger.retry_task(task.id))
        await eventually(lambda: len(h.received) == 14)

    harness = asyncio.run(
        run_with_consumer(ledger, db, schema, database_url, scenario, after_position=0)
    )

    received = [(u.position, u.event_type) for u in harness.received]
    assert received == all_updates(db)
    assert harness.received[-1].task == ledger.get_task(harness.received[-1].task.id)
    restored = [r for r in caplog.records if "after an outage" in r.message]
    assert len(restored) == 1
    assert restored[0].outage_seconds > 0  # type: ignore[attr-defined]


def test_consumer_reads_unusable_payload_with_sql(
    ledger: TaskLedger, db: Db, schema: str, database_url: str
) -> None:
    async def scenario(h: Harness) -> None:
        await eventually(lambda: h.server.joins == 1)
        await asyncio.sleep(0.2)
        task = await h.command(
            lambda: h.ledger.create_task("alpha", "Alpha", "Big", "chat")
        )
        record = row_of(h.db, task.id)
        small = {k: v for k, v in record.items() if k in ("id", "status")}
        await h.server.push(h.schema, small, "INSERT", ["Error 413: Too Large"])
        await eventually(lambda: len(h.received) == 1)

    harness = asyncio.run(run_with_consumer(ledger, db, schema, database_url, scenario))

    assert [(u.position, u.event_type) for u in harness.received] == all_updates(db)


def test_consumer_overflow_falls_back_to_sql(
    ledger: TaskLedger, db: Db, schema: str, database_url: str
) -> None:
    async def scenario(h: Harness) -> None:
        await eventually(lambda: h.server.joins == 1)
        await asyncio.sleep(0.2)
        tasks = [
            await h.command(
                lambda n=n: h.ledger.create_task("alpha", "Alpha", f"T{n}", "chat")
            )
            for n in range(6)
        ]
        for task in tasks:
            await h.server.push(h.schema, row_of(h.db, task.id), "INSERT")
        await eventually(lambda: len(h.received) == 6)

    harness = asyncio.run(
        run_with_consumer(ledger, db, schema, database_url, scenario, queue_size=2)
    )

    assert [(u.position, u.event_type) for u in harness.received] == all_updates(db)


def test_consumer_applies_filter_to_both_paths(
    ledger: TaskLedger, db: Db, schema: str, database_url: str
) -> None:
    run_lifecycles(ledger, writer=0, tasks=4)

    async def scenario(h: Harness) -> None:
        await eventually(lambda: len(h.received) == 6)
        task = await h.push_live(
            lambda: h.ledger.create_task("beta", "Beta", "Other", "chat")
        )
        mine = await h.push_live(
            lambda: h.ledger.create_task("alpha", "Alpha", "Mine", "chat")
        )
        await eventually(lambda: len(h.received) == 7)
        assert h.received[-1].task.id == mine.id
        assert task.id not in {u.task.id for u in h.received}

    harness = asyncio.run(
        run_with_consumer(
            ledger,
            db,
            schema,
            database_url,
            scenario,
            after_position=0,
            update_filter=UpdateFilter.of(agent_id="alpha"),
        )
    )

    expected = db.execute(
        "select position from task_updates where agent_id = 'alpha' order by position"
    ).fetchall()
    assert [u.position for u in harness.received] == [row[0] for row in expected]
