"""Simulated agents for the soak test: task lifecycles sent from many threads.

Each agent thread creates tasks and moves them through their statuses with
idempotency keys, sometimes sending a command twice as a client that lost the
reply would. A canceller thread cancels random tasks in flight, so agents meet
tasks that changed under them.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from taskledger import (
    ConcurrencyConflictError,
    InvalidTransitionError,
    TaskLedger,
    TaskRecord,
    TaskStatus,
)

TASK_TYPES = ("chat", "analysis", "generation", "research")
USERS = ("u1", "u2", None)
# The errors an agent expects when the canceller got to its task first.
RACE_ERRORS = (InvalidTransitionError, ConcurrencyConflictError)


class TaskAbandonedError(Exception):
    """The task changed under the agent (cancelled), so it moves on."""


@dataclass
class SoakLog:
    """The outcomes of the client threads' commands, shared between the threads."""

    committed: list[TaskRecord] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    unexpected: list[BaseException] = field(default_factory=list)
    in_flight: deque[UUID] = field(default_factory=lambda: deque(maxlen=50))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, result: TaskRecord, name: str) -> None:
        with self.lock:
            self.committed.append(result)
            self.counts[name] += 1


@dataclass
class Agent:
    """One agent service thread."""

    ledger: TaskLedger
    name: str
    seed: int
    log: SoakLog
    stop: threading.Event

    def run(self) -> None:
        rng = random.Random(self.seed)  # noqa: S311 (test data, not secrets)
        number = 0
        while not self.stop.is_set():
            try:
                self._lifecycle(rng, f"{self.name}-{number}")
            except TaskAbandonedError:
                with self.log.lock:
                    self.log.counts["abandoned"] += 1
            except Exception as error:
                with self.log.lock:
                    self.log.unexpected.append(error)
                return
            number += 1

    def _lifecycle(self, rng: random.Random, key: str) -> None:
        ledger = self.ledger
        # Arguments are drawn once, so that a repeated command is the same one.
        task_type, user = rng.choice(TASK_TYPES), rng.choice(USERS)
        score, tokens = rng.randint(0, 100), rng.randint(1, 2000)
        task = self._send(
            rng,
            "create",
            lambda: ledger.create_task(
                self.name,
                self.name.title(),
                f"work {key}",
                task_type,
                user,
                {"key": key},
                idempotency_key=f"{key}-create",
            ),
        )
        with self.log.lock:
            self.log.in_flight.append(task.id)
        task_id = task.id
        self._send(
            rng,
            "start",
            lambda: ledger.start_task(task_id, idempotency_key=f"{key}-s1"),
        )
        if rng.random() < 0.25:
            self._send(
                rng,
                "wait",
                lambda: ledger.wait_task(task_id, idempotency_key=f"{key}-w"),
            )
            self._send(
                rng,
                "start",
                lambda: ledger.start_task(task_id, idempotency_key=f"{key}-s2"),
            )
        outcome = rng.random()
        if outcome < 0.65:
            self._send(
                rng,
                "complete",
                lambda: ledger.complete_task(
                    task_id,
                    "done",
                    {"score": score},
                    {"tokens": tokens},
                    idempotency_key=f"{key}-done",
                ),
            )
        elif outcome < 0.9:
            self._fail_and_maybe_retry(rng, task_id, key)
        else:
            self._send(
                rng,
                "cancel",
                lambda: ledger.cancel_task(
                    task_id, "not needed", idempotency_key=f"{key}-cancel"
                ),
            )

    def _fail_and_maybe_retry(
        self, rng: random.Random, task_id: UUID, key: str
    ) -> None:
        ledger = self.ledger
        self._send(
            rng,
            "fail",
            lambda: ledger.fail_task(
                task_id, "model error", idempotency_key=f"{key}-fail"
            ),
        )
        if rng.random() < 0.5:
            self._send(
                rng,
                "retry",
                lambda: ledger.retry_task(task_id, idempotency_key=f"{key}-r"),
            )
            self._send(
                rng,
                "start",
                lambda: ledger.start_task(task_id, idempotency_key=f"{key}-s3"),
            )
            self._send(
                rng,
                "complete",
                lambda: ledger.complete_task(
                    task_id, "second try", idempotency_key=f"{key}-done2"
                ),
            )

    def _send(
        self, rng: random.Random, name: str, command: Callable[[], TaskRecord]
    ) -> TaskRecord:
        """Send a command, sometimes twice as after a lost reply."""
        time.sleep(rng.uniform(0, 0.004))
        try:
            result = command()
            if rng.random() < 0.1:
                again = command()
                assert again == result, (again, result)
                with self.log.lock:
                    self.log.counts["repeated"] += 1
        except RACE_ERRORS as error:
            raise TaskAbandonedError(str(error)) from error
        self.log.record(result, name)
        return result


def cancel_at_random(
    ledger: TaskLedger, log: SoakLog, stop: threading.Event, seed: int
) -> None:
    """Cancel a random recent task every 20 to 60 ms, as users do."""
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    while not stop.wait(rng.uniform(0.02, 0.06)):
        with log.lock:
            candidates = list(log.in_flight)
        if not candidates:
            continue
        try:
            result = ledger.cancel_task(rng.choice(candidates), "user cancelled")
        except RACE_ERRORS:
            with log.lock:
                log.counts["cancel rejected"] += 1
            continue
        except Exception as error:
            with log.lock:
                log.unexpected.append(error)
            return
        if result.status is TaskStatus.CANCELLED:
            log.record(result, "user cancel")
