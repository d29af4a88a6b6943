"""SupabaseRealtimeConsumer against a real Supabase project.

Runs only when SUPABASE_URL and SUPABASE_KEY (the service role key) are set,
and TASKLEDGER_TEST_DATABASE_URL points at the same project's database (its
direct or session-pooler URL), so that the ledger writes where Realtime reads.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import aclosing

import psycopg
import pytest
from psycopg import sql

from infrastructure.supabase_realtime import SupabaseRealtimeConsumer
from taskledger import TaskLedger, TaskUpdate
from tests.realtime.helpers import run_lifecycles

Db = psycopg.Connection[tuple[object, ...]]

pytestmark = [
    pytest.mark.skipif(
        not (os.environ.get("SUPABASE_URL") and os.environ.get("SUPABASE_KEY")),
        reason="SUPABASE_URL and SUPABASE_KEY are not set",
    ),
    pytest.mark.filterwarnings(
        r"ignore:ConnectionClosed\.(code|reason) is deprecated:DeprecationWarning"
    ),
]


def test_consumer_follows_supabase_project(
    ledger: TaskLedger, db: Db, schema: str, database_url: str
) -> None:
    # Realtime checks access with the key's role, which needs the schema too.
    db.execute(
        sql.SQL("grant usage on schema {} to service_role, authenticated").format(
            sql.Identifier(schema)
        )
    )
    consumer = SupabaseRealtimeConsumer(
        os.environ["SUPABASE_URL"],
        os.environ["SUPABASE_KEY"],
        database_url,
        schema=schema,
        after_position=0,
    )
    received: list[TaskUpdate] = []

    async def scenario() -> int:
        async def consume() -> None:
            async with aclosing(consumer.updates()) as updates:
                async for update in updates:
                    received.append(update)

        consuming = asyncio.create_task(consume())
        try:
            await asyncio.sleep(3)
            last = await asyncio.to_thread(run_lifecycles, ledger, 0, 5)
            async with asyncio.timeout(30):
                while not received or received[-1].position < last:
                    await asyncio.sleep(0.05)
        finally:
            consuming.cancel()
            await asyncio.gather(consuming, return_exceptions=True)
        return last

    last = asyncio.run(scenario())

    positions = [u.position for u in received]
    projected = [
        row[0] for row in db.execute("select position from task_updates").fetchall()
    ]
    assert positions == sorted(set(positions))
    assert set(positions) <= set(projected)
    assert positions[-1] == last
    final = {u.task.id: u.task for u in received}
    assert all(task == ledger.get_task(task.id) for task in final.values())
