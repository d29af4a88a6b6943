"""An append that stays open: later appends wait for it, and the projector too.

Transaction A inserts an event with plain SQL and stays open. B, a command
through the ledger, starts after it. The insert trigger's advisory lock makes B
wait until A ends, so no position above A's can commit while A is open, and the
projector, which follows positions, can never pass A and miss it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from domain.task import Task
from infrastructure.mapper import PydanticMapper
from infrastructure.recorders import append_lock_key
from projections.projector import BatchResult, TaskProjector
from projections.tables import ProjectionTables
from taskledger import TaskLedger, TaskRecord
from tests.projections.helpers import fold_events, projected_tasks
from tests.reliability.helpers import Db, checkpoint, head_position, wait_until

HOLD_SECONDS = 1.0


@dataclass
class CheckpointSampler:
    """Reads the projection's checkpoint every few milliseconds in a thread."""

    database_url: str
    schema: str
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[None]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(10)

    def _run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("set search_path to {}").format(sql.Identifier(self.schema))
            )
            while not self._stop.is_set():
                self.samples.append((time.monotonic(), checkpoint(conn)))
                time.sleep(0.005)

    def between(self, start: float, end: float) -> list[int]:
        return [value for moment, value in self.samples if start <= moment <= end]


def insert_created_event(conn: Db) -> int:
    """Insert a task's creation event with plain SQL; return its position."""
    task = Task.create(agent_id="raw", agent_name="Raw", message="m", task_type="chat")
    stored = PydanticMapper().to_stored_event(task.collect_events()[0])
    row = conn.execute(
        "insert into task_events (task_id, version, event_type, topic, payload, "
        "occurred_at) values (%s, 1, 'created', %s, %s::jsonb, %s) "
        "returning position",
        (task.id, stored.topic, stored.state.decode(), datetime.now(UTC)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def waiting_on_advisory_lock(db: Db, schema: str) -> bool:
    row = db.execute(
        "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
        "and wait_event = 'advisory' and position(%s in query) > 0",
        (schema,),
    ).fetchone()
    assert row is not None
    return int(row[0]) > 0


def project_once(database_url: str, schema: str) -> BatchResult | None:
    """Run one projector batch on a connection of its own."""
    projector = TaskProjector(ProjectionTables(schema))
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        return projector.project_batch(conn)


@pytest.fixture
def holder(database_url: str, schema: str) -> Iterator[Db]:
    """Connection A: not in autocommit, so an insert stays open until it ends."""
    with psycopg.connect(database_url) as conn:
        conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(schema)))
        conn.commit()
        yield conn


@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_open_append_holds_back_later_ones(
    ledger: TaskLedger,
    holder: Db,
    db: Db,
    database_url: str,
    schema: str,
    ending: str,
) -> None:
    first = ledger.create_task("a", "A", "before", "chat")
    ledger.wait_for_projection(first.position or 0)
    sampler = CheckpointSampler(database_url, schema)
    outcome: list[TaskRecord] = []

    with sampler.running():
        position_a = insert_created_event(holder)
        opened = time.monotonic()
        writer = threading.Thread(
            target=lambda: outcome.append(ledger.create_task("b", "B", "after", "chat"))
        )
        writer.start()
        wait_until(lambda: waiting_on_advisory_lock(db, schema), timeout=10)
        time.sleep(HOLD_SECONDS)

        assert writer.is_alive()
        assert head_position(db) == first.position
        assert project_once(database_url, schema) is None
        if ending == "commit":
            holder.commit()
        else:
            holder.rollback()
        closed = time.monotonic()
        writer.join(10)
        assert not writer.is_alive()
        ledger.wait_for_projection(outcome[0].position or 0)

    (b,) = outcome
    assert b.position is not None
    assert b.position > position_a
    while_open = sampler.between(opened, closed)
    assert while_open
    assert max(while_open) < position_a
    assert checkpoint(db) == b.position
    folded = fold_events(database_url, schema)
    assert projected_tasks(database_url, schema) == folded
    assert len(folded) == (3 if ending == "commit" else 2)
    row = db.execute(
        "select array_agg(position order by position) from task_updates"
    ).fetchone()
    assert row is not None
    expected = [first.position, position_a, b.position]
    if ending == "rollback":
        expected.remove(position_a)
    assert row[0] == expected


def test_waiting_insert_has_not_drawn_position(
    ledger: TaskLedger, holder: Db, db: Db, schema: str
) -> None:
    # A takes the append lock before inserting anything. If B drew its position
    # before waiting for the lock, A's later insert would get a lower position
    # than B's and commit first, which is the order the lock must rule out.
    holder.execute("select pg_advisory_xact_lock(%s)", (append_lock_key(schema),))
    outcome: list[TaskRecord] = []
    writer = threading.Thread(
        target=lambda: outcome.append(ledger.create_task("b", "B", "after", "chat"))
    )
    writer.start()
    wait_until(lambda: waiting_on_advisory_lock(db, schema), timeout=10)

    position_a = insert_created_event(holder)
    holder.commit()
    writer.join(10)

    assert not writer.is_alive()
    assert outcome[0].position is not None
    assert outcome[0].position > position_a
