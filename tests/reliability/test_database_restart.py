"""The database restarts under load: commands fail clearly or succeed, nothing is lost.

The test starts its own embedded PostgreSQL and restarts it twice, once with a
fast shutdown and once with an immediate one (a simulated crash), while writer
threads send commands, a reader queries and a subscription receives updates.
A command may fail only with DatabaseUnavailableError, and the writers then
retry it with the same idempotency key, as a client should. Afterwards the
pool, the projector and the subscription have recovered: the read model equals
the fold of task_events, every command reported as committed is in
task_events, and the subscription received every update once, in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg
import pytest

from domain.errors import ProjectionLagError
from taskledger import DatabaseUnavailableError, TaskLedger, TaskRecord, TaskUpdate
from tests.projections.helpers import fold_events, projected_tasks
from tests.reliability.embedded_server import RestartableServer, restartable_server
from tests.reliability.helpers import fold_each, wait_until

WRITERS = 4
# A fast shutdown, then one without a checkpoint that recovers like a crash.
SHUTDOWN_MODES = ["fast", "immediate"]
SECONDS_BETWEEN_RESTARTS = 1.5
RETRY_SECONDS = 30.0


@dataclass
class Outcomes:
    """The outcomes of the client threads' commands and queries."""

    committed: list[TaskRecord] = field(default_factory=list)
    unavailable: int = 0
    unexpected: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def retrying(self, command: Callable[[], TaskRecord]) -> TaskRecord | None:
        """Run a command, repeating it while the database is unavailable."""
        deadline = time.monotonic() + RETRY_SECONDS
        while time.monotonic() < deadline:
            try:
                record = command()
            except DatabaseUnavailableError:
                with self.lock:
                    self.unavailable += 1
                time.sleep(0.05)
                continue
            except Exception as error:
                with self.lock:
                    self.unexpected.append(error)
                return None
            with self.lock:
                self.committed.append(record)
            return record
        return None


def write(
    ledger: TaskLedger, writer: int, stop: threading.Event, seen: Outcomes
) -> None:
    number = 0
    while not stop.is_set():
        key = f"w{writer}-t{number}"
        create = partial(
            ledger.create_task,
            "agent",
            "Agent",
            key,
            "chat",
            idempotency_key=f"{key}-c",
        )
        task = seen.retrying(create)
        if task is None:
            return
        seen.retrying(partial(ledger.start_task, task.id, idempotency_key=f"{key}-s"))
        if number % 3 == 0:
            finish = partial(
                ledger.fail_task, task.id, "boom", idempotency_key=f"{key}-f"
            )
        else:
            finish = partial(
                ledger.complete_task, task.id, "ok", idempotency_key=f"{key}-d"
            )
        seen.retrying(finish)
        number += 1


def read(ledger: TaskLedger, stop: threading.Event, seen: Outcomes) -> None:
    while not stop.is_set():
        try:
            ledger.get_tasks(limit=10)
            ledger.get_statistics(agent_id="agent")
        except (DatabaseUnavailableError, ProjectionLagError):
            with seen.lock:
                seen.unavailable += 1
            time.sleep(0.05)
        except Exception as error:
            with seen.lock:
                seen.unexpected.append(error)
            return


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RestartableServer]:
    with restartable_server(tmp_path / "pgdata") as started:
        yield started


def test_restart_under_load_loses_nothing(server: RestartableServer) -> None:
    schema = "restart"
    received: list[TaskUpdate] = []
    seen = Outcomes()
    stop = threading.Event()

    with TaskLedger.open(server.url, schema=schema, read_timeout=30) as ledger:
        subscription = ledger.subscribe(received.append, after_position=0)
        threads = [
            threading.Thread(target=write, args=(ledger, n, stop, seen))
            for n in range(WRITERS)
        ]
        threads.append(threading.Thread(target=read, args=(ledger, stop, seen)))
        for thread in threads:
            thread.start()
        for mode in SHUTDOWN_MODES:
            time.sleep(SECONDS_BETWEEN_RESTARTS)
            server.restart(mode)
        time.sleep(SECONDS_BETWEEN_RESTARTS)
        stop.set()
        for thread in threads:
            thread.join(RETRY_SECONDS + 10)
            assert not thread.is_alive()

        head = max(record.position or 0 for record in seen.committed)
        ledger.wait_for_projection(head, timeout=60)
        wait_until(lambda: subscription.position >= head, timeout=60)
        subscription.unsubscribe()
        assert subscription.error is None
        after = ledger.create_task("agent", "Agent", "after", "chat")

    assert seen.unexpected == []
    assert seen.unavailable > 0
    with psycopg.connect(server.url) as conn:
        stored = set(
            conn.execute(
                f"select task_id, version, position from {schema}.task_events"
            ).fetchall()
        )
    reported = {(r.id, r.version, r.position) for r in seen.committed}
    assert reported <= stored
    # A create retried after a lost reply returned its first task, not a second.
    created = {r.id for r in seen.committed if r.version == 1}
    assert {task_id for task_id, version, _ in stored if version == 1} == created | {
        after.id
    }
    assert after.version == 1
    folded = fold_events(server.url, schema)
    assert projected_tasks(server.url, schema) == folded
    by_position = fold_each(server.url, schema)
    assert [update.position for update in received] == sorted(by_position)[:-1]
    for update in received:
        assert update.task == by_position[update.position]
