"""Simulate agent services running tasks, several threads emitting events.

Each simulated task moves through its lifecycle step by step: it is created,
waits in the queue, runs, sometimes pauses for input, and ends completed,
failed (often retried) or cancelled. Steps are due at simulated times kept in a
heap, and a few worker threads send each due step to the ledger, so many tasks
run at once without a thread per task.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domain.errors import LedgerError
from domain.status import TaskStatus
from taskledger.ledger import TaskLedger

logger = logging.getLogger(__name__)

AGENTS = [
    ("marketing", "Marketing"),
    ("sales", "Sales"),
    ("support", "Support"),
    ("research", "Research"),
    ("finance", "Finance"),
    ("legal", "Legal"),
    ("ops", "Operations"),
    ("hr", "People"),
]
# Median run time in seconds of each task type; run times are log-normal.
TASK_TYPES = {"chat": 0.6, "analysis": 1.5, "generation": 2.0, "research": 3.5}
MESSAGES = {
    "chat": "Answer a customer question",
    "analysis": "Summarise last week's numbers",
    "generation": "Draft a post",
    "research": "Compare three vendors",
}
ERRORS = ["model timed out", "rate limited by the provider", "tool call failed"]


@dataclass(frozen=True)
class FleetConfig:
    """Size and load of the simulated fleet."""

    agents: int = 4
    tasks: int | None = None
    rate: float = 5.0
    workers: int = 4
    seed: int | None = None
    cancel_share: float = 0.05
    wait_share: float = 0.1
    fail_share: float = 0.12
    retry_share: float = 0.6
    max_attempts: int = 3
    speed: float = 1.0


@dataclass
class FleetTotals:
    """Counters of the simulator's work so far."""

    created: int = 0
    events: int = 0
    errors: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    statuses: Counter[TaskStatus] = field(default_factory=Counter)
    agents: Counter[str] = field(default_factory=Counter)


@dataclass
class _SimTask:
    agent_id: str
    agent_name: str
    task_type: str
    task_id: Any = None
    status: TaskStatus | None = None
    attempts: int = 1
    waited: bool = False


class FleetSimulator:
    """Runs simulated tasks against a ledger until stopped or done."""

    def __init__(self, ledger: TaskLedger, config: FleetConfig) -> None:
        self.ledger = ledger
        self.config = config
        self.random = random.Random(config.seed)  # noqa: S311 (a simulation)
        self.agents = [AGENTS[i % len(AGENTS)] for i in range(max(1, config.agents))]
        self.totals = FleetTotals()
        self._lock = threading.Lock()
        self._due = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, _SimTask]] = []
        self._order = itertools.count()
        self._active = 0
        self._stopping = threading.Event()
        self._feeding_done = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the feeder and the worker threads."""
        feeder = threading.Thread(target=self._feed, name="fleet-feeder", daemon=True)
        self._threads.append(feeder)
        for number in range(max(1, self.config.workers)):
            worker = threading.Thread(
                target=self._work, name=f"fleet-worker-{number}", daemon=True
            )
            self._threads.append(worker)
        for thread in self._threads:
            thread.start()

    def drain(self, timeout: float) -> bool:
        """Stop creating tasks and wait until the running ones have ended.

        Returns False if some were still running after `timeout` seconds.
        """
        self._feeding_done.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._active == 0:
                    return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop scheduling new steps and wait for the threads to end."""
        self._stopping.set()
        self._feeding_done.set()
        with self._due:
            self._due.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def cancel_unfinished(self, reason: str) -> int:
        """Cancel the tasks that stop() left pending, processing or waiting.

        Call it after stop(). Returns how many tasks were cancelled.
        """
        with self._due:
            left = [task for _, _, task in self._heap]
            self._heap.clear()
        cancelled = 0
        for task in left:
            if task.status is None or task.status.is_terminal:
                continue
            try:
                self._move(task, TaskStatus.CANCELLED, reason)
            except LedgerError as error:
                logger.warning(
                    "cancelling an unfinished simulated task failed: %s",
                    error,
                    extra={"action": "demo_cancel", "task_id": str(task.task_id)},
                )
                continue
            cancelled += 1
            with self._lock:
                self.totals.events += 1
                self.totals.by_kind["cancelled"] += 1
        return cancelled

    @property
    def finished(self) -> bool:
        """True once a bounded run has created all its tasks and ended them."""
        with self._lock:
            return (
                self.config.tasks is not None
                and self.totals.created >= self.config.tasks
                and self._active == 0
            )

    def snapshot(self) -> FleetTotals:
        with self._lock:
            return FleetTotals(
                created=self.totals.created,
                events=self.totals.events,
                errors=self.totals.errors,
                by_kind=Counter(self.totals.by_kind),
                statuses=Counter(self.totals.statuses),
                agents=Counter(self.totals.agents),
            )

    def _feed(self) -> None:
        interval = 1.0 / self.config.rate if self.config.rate > 0 else 0.0
        planned = 0
        next_at = time.monotonic()
        while not self._stopping.is_set() and not self._feeding_done.is_set():
            if self.config.tasks is not None and planned >= self.config.tasks:
                return
            agent_id, agent_name = self.random.choice(self.agents)
            task_type = self.random.choice(list(TASK_TYPES))
            self._schedule(_SimTask(agent_id, agent_name, task_type), 0.0)
            planned += 1
            next_at += interval
            self._feeding_done.wait(max(0.0, next_at - time.monotonic()))

    def _schedule(self, task: _SimTask, delay: float) -> None:
        with self._due:
            if task.status is None:
                self._active += 1
            heapq.heappush(
                self._heap, (time.monotonic() + delay, next(self._order), task)
            )
            self._due.notify()

    def _work(self) -> None:
        while True:
            task = self._next_due()
            if task is None:
                return
            delay = self._step(task)
            if delay is None or self._stopping.is_set():
                with self._lock:
                    self._active -= 1
            else:
                self._schedule(task, delay / self.config.speed)

    def _next_due(self) -> _SimTask | None:
        with self._due:
            while not self._stopping.is_set():
                if self._heap:
                    due, _, task = self._heap[0]
                    wait = due - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        return task
                    self._due.wait(wait)
                else:
                    self._due.wait(0.5)
            return None

    def _step(self, task: _SimTask) -> float | None:
        """Send the task's next command and return the delay before the one after."""
        try:
            kind, delay = self._advance(task)
        except LedgerError as error:
            logger.warning(
                "the ledger rejected a simulated command: %s",
                error,
                extra={"action": "demo_command", "task_id": str(task.task_id)},
            )
            with self._lock:
                self.totals.errors += 1
            return None
        with self._lock:
            self.totals.events += 1
            self.totals.by_kind[kind] += 1
        return delay

    def _advance(self, task: _SimTask) -> tuple[str, float | None]:
        chance = self.random.random
        if task.status is None:
            return "created", self._create(task)
        if task.status is TaskStatus.PENDING:
            return self._pick_up(task)
        if task.status is TaskStatus.PROCESSING:
            if not task.waited and chance() < self.config.wait_share:
                task.waited = True
                self._move(task, TaskStatus.WAITING)
                return "waiting", self.random.uniform(0.3, 2.0)
            return self._finish(task)
        if task.status is TaskStatus.WAITING:
            self._move(task, TaskStatus.PROCESSING)
            return "resumed", self._run_time(task) / 2
        # failed and retried: back to pending, picked up again shortly
        self._move(task, TaskStatus.PENDING)
        return "retried", self.random.uniform(0.1, 0.5)

    def _pick_up(self, task: _SimTask) -> tuple[str, float | None]:
        if task.attempts == 1 and self.random.random() < self.config.cancel_share:
            self._move(task, TaskStatus.CANCELLED, "cancelled by the user")
            return "cancelled", None
        self._move(task, TaskStatus.PROCESSING)
        return "started", self._run_time(task) / 2

    def _create(self, task: _SimTask) -> float:
        created = self.ledger.create_task(
            task.agent_id,
            task.agent_name,
            MESSAGES[task.task_type],
            task.task_type,
            user_id=f"user-{self.random.randrange(1, 50):03d}",
            metadata={"source": "demo"},
        )
        task.task_id = created.id
        with self._lock:
            self.totals.created += 1
            self.totals.agents[task.agent_id] += 1
        self._count_status(task, TaskStatus.PENDING)
        return self.random.uniform(0.05, 0.6)

    def _finish(self, task: _SimTask) -> tuple[str, float | None]:
        if self.random.random() < self.config.fail_share:
            self._move(task, TaskStatus.FAILED, self.random.choice(ERRORS))
            retry = (
                task.attempts < self.config.max_attempts
                and self.random.random() < self.config.retry_share
            )
            if retry:
                task.attempts += 1
                task.waited = False
                return "failed", self.random.uniform(0.2, 1.0)
            return "failed", None
        self._move(task, TaskStatus.COMPLETED)
        return "completed", None

    def _move(self, task: _SimTask, status: TaskStatus, text: str = "") -> None:
        ledger = self.ledger
        calls: dict[TaskStatus, Callable[[], Any]] = {
            TaskStatus.PENDING: lambda: ledger.retry_task(task.task_id),
            TaskStatus.PROCESSING: lambda: ledger.start_task(task.task_id),
            TaskStatus.WAITING: lambda: ledger.wait_task(task.task_id),
            TaskStatus.COMPLETED: lambda: ledger.complete_task(
                task.task_id,
                response="done",
                metadata={"tokens": self.random.randrange(200, 4000)},
            ),
            TaskStatus.FAILED: lambda: ledger.fail_task(task.task_id, text),
            TaskStatus.CANCELLED: lambda: ledger.cancel_task(task.task_id, text),
        }
        calls[status]()
        self._count_status(task, status)

    def _count_status(self, task: _SimTask, status: TaskStatus) -> None:
        with self._lock:
            if task.status is not None:
                self.totals.statuses[task.status] -= 1
            self.totals.statuses[status] += 1
        task.status = status

    def _run_time(self, task: _SimTask) -> float:
        median = TASK_TYPES[task.task_type]
        return min(median * self.random.lognormvariate(0.0, 0.5), median * 5)
