"""Shared pieces of the realtime tests: task traffic, waiting, and expectations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from taskledger import DatabaseUnavailableError, TaskLedger, TaskRecord, TaskUpdate

AGENTS = ("alpha", "beta")
USERS = ("u1", "u2", None)
TYPES = ("chat", "analysis")


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


@dataclass
class Recorder:
    """A subscription callback that keeps what it received."""

    updates: list[TaskUpdate] = field(default_factory=list)

    def __call__(self, update: TaskUpdate) -> None:
        self.updates.append(update)

    @property
    def positions(self) -> list[int]:
        return [update.position for update in self.updates]


def run_lifecycles(
    ledger: TaskLedger,
    writer: int,
    tasks: int,
    *,
    pause: float = 0.0,
    retry_unavailable: bool = False,
) -> int:
    """Create tasks and move each through three statuses; return the last position.

    Every command carries an idempotency key, so one that failed because the
    database was unreachable is repeated safely when retry_unavailable is set.
    """

    def command(
        call: Callable[..., TaskRecord], *args: object, **kw: object
    ) -> TaskRecord:
        while True:
            try:
                return call(*args, **kw)
            except DatabaseUnavailableError:
                if not retry_unavailable:
                    raise
                time.sleep(0.05)

    last = 0
    for number in range(tasks):
        key = f"w{writer}-t{number}"
        agent = AGENTS[number % len(AGENTS)]
        user = USERS[(number + writer) % len(USERS)]
        task_type = TYPES[number % len(TYPES)]
        task = command(
            ledger.create_task,
            agent,
            agent.title(),
            f"message {key}",
            task_type,
            user,
            idempotency_key=f"{key}-create",
        )
        command(ledger.start_task, task.id, idempotency_key=f"{key}-start")
        if number % 3 == 0:
            done = command(
                ledger.fail_task, task.id, "boom", idempotency_key=f"{key}-fail"
            )
        else:
            done = command(
                ledger.complete_task, task.id, "ok", idempotency_key=f"{key}-complete"
            )
        last = max(last, done.position or 0)
        if pause:
            time.sleep(pause)
    return last


def run_writers(
    ledger: TaskLedger, writers: int, tasks: int, **options: object
) -> tuple[list[threading.Thread], list[int]]:
    """Start writer threads running run_lifecycles; return them and their results."""
    results: list[int] = []

    def write(writer: int) -> None:
        results.append(run_lifecycles(ledger, writer, tasks, **options))

    threads = [
        threading.Thread(target=write, args=(writer,), daemon=True)
        for writer in range(writers)
    ]
    for thread in threads:
        thread.start()
    return threads, results


def expected_positions(
    conn: psycopg.Connection[tuple[object, ...]],
    after: int = 0,
    **filters: str,
) -> list[int]:
    """Positions of task_updates rows after a position that match the filters."""
    conditions = [sql.SQL("position > %s")]
    params: list[object] = [after]
    for column, value in filters.items():
        conditions.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
        params.append(value)
    rows = conn.execute(
        sql.SQL("select position from task_updates where {} order by position").format(
            sql.SQL(" and ").join(conditions)
        ),
        params,
    ).fetchall()
    return [int(row[0]) for row in rows]


def event_positions(
    conn: psycopg.Connection[tuple[object, ...]], after: int = 0
) -> list[int]:
    """Positions of every event in task_events after a position."""
    rows = conn.execute(
        "select position from task_events where position > %s order by position",
        (after,),
    ).fetchall()
    return [int(row[0]) for row in rows]
