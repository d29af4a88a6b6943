"""Soak: agents, two projector processes and subscribers against one database.

Eight agent threads on two TaskLedgers (as two server instances) and a
canceller send commands for a while. Two projector processes keep the read
model, and midway the active one is killed and replaced. Subscribers on a third
TaskLedger receive updates. At the end the read model, the statistics and every
subscriber's log must equal the fold of task_events.

The short run always takes SHORT_SECONDS. Set TASKLEDGER_SOAK_SECONDS to also
run a long one of that many seconds, which kills a projector every minute.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from domain.record import TaskRecord
from taskledger import Subscription, TaskLedger, TaskUpdate
from tests.projections.helpers import (
    assert_statistics_match,
    expected_statistics,
    fold_events,
    projected_tasks,
)
from tests.reliability.helpers import checkpoint, fold_each, head_position, wait_until
from tests.reliability.soak import TASK_TYPES, Agent, SoakLog, cancel_at_random

logger = logging.getLogger(__name__)

ROOT = Path(__file__).parents[2]
SHORT_SECONDS = 30.0
LONG_SECONDS_VARIABLE = "TASKLEDGER_SOAK_SECONDS"
AGENTS = [f"agent-{number}" for number in range(8)]
KILL_INTERVAL_SECONDS = 60.0
BATCH_SIZE = 100


class ProjectorProcesses:
    """Projector processes on one schema, each logging its committed batches."""

    def __init__(self, database_url: str, schema: str, folder: Path) -> None:
        self.database_url = database_url
        self.schema = schema
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = self.log(len(self.processes))
        log.touch()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.projections.projector_process",
                self.database_url,
                self.schema,
                str(log),
                str(BATCH_SIZE),
            ],
            cwd=ROOT,
        )
        self.processes.append(process)
        return process

    def kill_active(self) -> None:
        """Kill (SIGKILL) the process that projects, and start another one.

        Only the active process commits batches, so it is the running one whose
        log has lines.
        """
        for index, process in enumerate(self.processes):
            if process.poll() is None and self.log(index).stat().st_size > 0:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
        self.start()

    def log(self, index: int) -> Path:
        return self.folder / f"projector-{index}.log"

    def logs_with_batches(self) -> int:
        return sum(
            1
            for index in range(len(self.processes))
            if self.log(index).exists() and self.log(index).stat().st_size > 0
        )

    def batch_ranges(self) -> list[tuple[int, int]]:
        ranges = []
        for log in sorted(self.folder.glob("projector-*.log")):
            for line in log.read_text().splitlines():
                first, last = line.split()
                ranges.append((int(first), int(last)))
        return sorted(ranges)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(10)


@dataclass
class Subscriber:
    """A subscription and the updates it received."""

    name: str
    subscription: Subscription
    received: list[TaskUpdate]
    started_after: int
    agent_id: str | None = None
    status: str | None = None

    def delivered_through(self, position: int) -> bool:
        return self.subscription.position >= position

    def expects(self, position: int, record: TaskRecord) -> bool:
        return (
            position > self.started_after
            and (self.agent_id is None or record.agent_id == self.agent_id)
            and (self.status is None or record.status.value == self.status)
        )


def subscribe(
    ledger: TaskLedger, name: str, *, from_start: bool = True, **filters: str
) -> Subscriber:
    received: list[TaskUpdate] = []
    subscription = ledger.subscribe(
        received.append, after_position=0 if from_start else None, **filters
    )
    return Subscriber(name, subscription, received, subscription.position, **filters)


@pytest.fixture
def projectors(
    database_url: str, schema: str, tmp_path: Path
) -> Iterator[ProjectorProcesses]:
    processes = ProjectorProcesses(database_url, schema, tmp_path)
    try:
        yield processes
    finally:
        processes.stop()


def run_soak(
    database_url: str,
    schema: str,
    db: psycopg.Connection[tuple[object, ...]],
    projectors: ProjectorProcesses,
    seconds: float,
) -> None:
    log = SoakLog()
    stop = threading.Event()
    with (
        TaskLedger.open(database_url, schema=schema, project=False) as first,
        TaskLedger.open(database_url, schema=schema, project=False) as second,
        TaskLedger.open(database_url, schema=schema, project=False) as watcher,
    ):
        projectors.start()
        projectors.start()
        subscribers = [
            subscribe(watcher, "all"),
            subscribe(watcher, "agent-3", agent_id="agent-3"),
            subscribe(watcher, "failed", status="failed"),
        ]
        agents = [
            Agent(first if n % 2 == 0 else second, name, n, log, stop)
            for n, name in enumerate(AGENTS)
        ]
        threads = [threading.Thread(target=agent.run) for agent in agents]
        threads.append(
            threading.Thread(target=cancel_at_random, args=(first, log, stop, 99))
        )
        for thread in threads:
            thread.start()

        began = time.monotonic()
        next_kill = began + min(seconds / 2, KILL_INTERVAL_SECONDS)
        late: Subscriber | None = None
        while time.monotonic() - began < seconds:
            time.sleep(0.2)
            if late is None and time.monotonic() - began > seconds / 3:
                late = subscribe(watcher, "late", from_start=False)
                subscribers.append(late)
            if time.monotonic() >= next_kill:
                projectors.kill_active()
                next_kill += KILL_INTERVAL_SECONDS
        stop.set()
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive()

        head = head_position(db)
        wait_until(lambda: checkpoint(db) == head, timeout=60)
        for subscriber in subscribers:
            wait_until(partial(subscriber.delivered_through, head), timeout=60)
            subscriber.subscription.unsubscribe()
        with TaskLedger.open(database_url, schema=schema, project=False) as reader:
            statistics = {
                (agent, kind): reader.get_statistics(agent_id=agent, task_type=kind)
                for agent in (None, *AGENTS[:2])
                for kind in (None, *TASK_TYPES[:2])
            }

    logger.info("soak of %.0f s: %d events, %s", seconds, head, dict(log.counts))
    assert log.unexpected == []
    assert_read_model_is_fold(database_url, schema, db, log, head)
    records = [task.record for task in fold_events(database_url, schema).values()]
    for (agent, kind), figures in statistics.items():
        assert_statistics_match(
            figures, expected_statistics(records, agent_id=agent, task_type=kind)
        )
    by_position = fold_each(database_url, schema)
    for subscriber in subscribers:
        expected = [p for p, r in by_position.items() if subscriber.expects(p, r)]
        assert [u.position for u in subscriber.received] == sorted(expected), (
            subscriber.name
        )
        for update in subscriber.received:
            assert update.task == by_position[update.position], subscriber.name
    # The killed process and the one that took over both committed batches, and
    # no two batches overlap.
    assert projectors.logs_with_batches() >= 2
    ranges = projectors.batch_ranges()
    for (_, last), (first_position, _) in itertools.pairwise(ranges):
        assert last < first_position


def assert_read_model_is_fold(
    database_url: str,
    schema: str,
    db: psycopg.Connection[tuple[object, ...]],
    log: SoakLog,
    head: int,
) -> None:
    folded = fold_events(database_url, schema)
    assert projected_tasks(database_url, schema) == folded
    stored = set(
        db.execute("select task_id, version, position from task_events").fetchall()
    )
    reported: set[tuple[UUID, int, int | None]] = {
        (r.id, r.version, r.position) for r in log.committed
    }
    assert reported <= stored
    updates = db.execute(
        "select count(*), count(distinct position), max(position) from task_updates"
    ).fetchone()
    assert updates == (len(stored), len(stored), head)
    for task in folded.values():
        assert (task.record.duration_ms or 0) >= 0
        assert (task.record.wait_ms or 0) >= 0


def test_short_soak_ends_equal_to_fold(
    database_url: str,
    schema: str,
    db: psycopg.Connection[tuple[object, ...]],
    projectors: ProjectorProcesses,
) -> None:
    run_soak(database_url, schema, db, projectors, SHORT_SECONDS)


@pytest.mark.skipif(
    not os.environ.get(LONG_SECONDS_VARIABLE),
    reason=f"set {LONG_SECONDS_VARIABLE} to run the long soak",
)
def test_long_soak_ends_equal_to_fold(
    database_url: str,
    schema: str,
    db: psycopg.Connection[tuple[object, ...]],
    projectors: ProjectorProcesses,
) -> None:
    seconds = float(os.environ[LONG_SECONDS_VARIABLE])
    run_soak(database_url, schema, db, projectors, seconds)
