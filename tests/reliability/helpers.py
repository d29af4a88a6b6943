"""Shared pieces of the reliability tests: races, waiting, counting and folding."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from domain.record import TaskRecord, evolve
from infrastructure.mapper import PydanticMapper
from projections.events import decode_event
from tests.projections.helpers import FoldedTask

Db = psycopg.Connection[tuple[Any, ...]]


def race(*commands: Callable[[], object], timeout: float = 30.0) -> list[object]:
    """Run the commands in threads released together; return results or errors.

    The outcomes are in the order of the commands.
    """
    barrier = threading.Barrier(len(commands))
    outcomes: list[object] = [None] * len(commands)

    def run(index: int, command: Callable[[], object]) -> None:
        barrier.wait()
        try:
            outcomes[index] = command()
        except Exception as error:
            outcomes[index] = error

    threads = [
        threading.Thread(target=run, args=(index, command), daemon=True)
        for index, command in enumerate(commands)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a racing command did not finish"
    return outcomes


def wait_until(
    condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.02
) -> float:
    """Poll condition until it holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def event_count(db: Db, task_id: UUID | None = None) -> int:
    if task_id is None:
        row = db.execute("select count(*) from task_events").fetchone()
    else:
        row = db.execute(
            "select count(*) from task_events where task_id = %s", (task_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def head_position(db: Db) -> int:
    row = db.execute("select coalesce(max(position), 0) from task_events").fetchone()
    assert row is not None
    return int(row[0])


def checkpoint(db: Db, projection: str = "agent_tasks") -> int:
    row = db.execute(
        "select coalesce(max(position), 0) from projection_checkpoints "
        "where projection = %s",
        (projection,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def fold_through(
    database_url: str, schema: str, position: int
) -> dict[UUID, FoldedTask]:
    """Fold the events up to position, in the form projected_tasks() returns."""
    mapper = PydanticMapper()
    folded: dict[UUID, FoldedTask] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            sql.SQL(
                "select position, task_id, version, topic, payload::text as payload, "
                "state from {} where position <= %s order by position"
            ).format(sql.Identifier(schema, "task_events")),
            (position,),
        )
        for row in rows:
            before = folded.get(row["task_id"])
            record = evolve(
                None if before is None else before.record, decode_event(mapper, row)
            ).model_copy(update={"position": row["position"]})
            created = row["position"] if before is None else before.created_position
            folded[record.id] = FoldedTask(record, created)
    return folded


def fold_each(database_url: str, schema: str) -> dict[int, TaskRecord]:
    """Return, for every event's position, its task as folded up to that event."""
    mapper = PydanticMapper()
    records: dict[UUID, TaskRecord] = {}
    at_position: dict[int, TaskRecord] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            sql.SQL(
                "select position, task_id, version, topic, payload::text as payload, "
                "state from {} order by position"
            ).format(sql.Identifier(schema, "task_events"))
        )
        for row in rows:
            record = evolve(records.get(row["task_id"]), decode_event(mapper, row))
            record = record.model_copy(update={"position": row["position"]})
            records[record.id] = record
            at_position[row["position"]] = record
    return at_position
