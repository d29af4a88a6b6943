"""Figure 4: time from a command's return to the subscriber's callback.

Writer threads issue create, start and complete commands at a fixed total
rate (open loop: each command has a scheduled time, and a late one is sent at
once). The ledger projects in its background thread, and a subscription on the
same TaskLedger records when each position reaches its callback. Both times
come from one monotonic clock in one process.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from typing import Any

from bench.database import BenchDatabase
from bench.results import Line, below
from bench.timing import percentile
from bench.workload import create_arguments, plan_tasks, step_arguments
from taskledger import TaskLedger

COMMANDS_PER_SECOND = 500.0
WRITERS = 4
P50_TARGET_MS = 10.0
P99_TARGET_MS = 50.0
DRAIN_SECONDS = 10.0


class PacedWriter:
    """Issues lifecycle commands at its share of the total rate."""

    def __init__(
        self, ledger: TaskLedger, rate: float, seed: int, returned: dict[int, float]
    ) -> None:
        self.ledger = ledger
        self.interval = 1.0 / rate
        self.plans = plan_tasks(10_000_000, seed=seed)
        self.returned = returned
        self.sent = 0

    def run(self, start: float, seconds: float) -> None:
        task_id = None
        steps: list[str] = []
        while True:
            scheduled = start + self.sent * self.interval
            if scheduled >= start + seconds:
                return
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if task_id is None or not steps:
                record = self.ledger.create_task(**create_arguments(next(self.plans)))
                task_id = record.id
                steps = ["start", "complete"]
            else:
                name = steps.pop(0)
                record = getattr(self.ledger, f"{name}_task")(
                    task_id, **step_arguments(name)
                )
            now = time.perf_counter()
            assert record.position is not None
            self.returned[record.position] = now
            self.sent += 1


def measure_realtime(database: BenchDatabase, seconds: float, seed: int) -> list[Line]:
    if not hasattr(TaskLedger, "subscribe"):
        return [_missing("TaskLedger.subscribe is not available")]
    delivered: dict[int, float] = {}
    returned: list[dict[int, float]] = [{} for _ in range(WRITERS)]
    projected: list[tuple[int, float]] = []

    def on_update(update: Any) -> None:
        delivered[int(update.position)] = time.perf_counter()

    def on_batch(batch: Any) -> None:
        projected.append((int(batch.last_position), time.perf_counter()))

    with (
        database.schema("realtime") as schema,
        TaskLedger.open(database.url, schema=schema) as ledger,
    ):
        # The runner reports each committed batch; that splits the latency into
        # the projector's part and the subscription's part.
        ledger._projector.on_batch = on_batch
        subscription = ledger.subscribe(on_update)
        try:
            writers = [
                PacedWriter(ledger, COMMANDS_PER_SECOND / WRITERS, seed * 10 + n, r)
                for n, r in enumerate(returned)
            ]
            start = time.perf_counter() + 0.2
            threads = [
                threading.Thread(target=w.run, args=(start, seconds)) for w in writers
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - start
            expected = {p for r in returned for p in r}
            deadline = time.perf_counter() + DRAIN_SECONDS
            while not expected <= delivered.keys() and time.perf_counter() < deadline:
                time.sleep(0.05)
        finally:
            subscription.unsubscribe()
    latencies = [
        (delivered[position] - sent) * 1000
        for r in returned
        for position, sent in r.items()
        if position in delivered
    ]
    until_projected = projection_latencies(returned, projected)
    sent_count = sum(len(r) for r in returned)
    note = (
        f"{sent_count:,} commands at {sent_count / elapsed:,.0f}/s (requested "
        f"{COMMANDS_PER_SECOND:.0f}/s) from {WRITERS} threads; {len(latencies):,} "
        f"delivered within {DRAIN_SECONDS:.0f} s of the last; max "
        f"{max(latencies, default=0):.1f} ms; until projected p50 "
        f"{percentile(until_projected, 0.5):.1f} ms, p99 "
        f"{percentile(until_projected, 0.99):.1f} ms"
    )
    return [
        Line(
            "4",
            f"realtime latency p50 at {COMMANDS_PER_SECOND:.0f} commands/s",
            "ms",
            percentile(latencies, 0.50),
            targets=(below(P50_TARGET_MS),),
            note=note,
        ),
        Line(
            "4",
            f"realtime latency p99 at {COMMANDS_PER_SECOND:.0f} commands/s",
            "ms",
            percentile(latencies, 0.99),
            targets=(below(P99_TARGET_MS),),
        ),
    ]


def projection_latencies(
    returned: list[dict[int, float]], projected: list[tuple[int, float]]
) -> list[float]:
    """Return milliseconds from each command's return to its batch's commit."""
    batches = sorted(projected)
    latencies = []
    for sent in returned:
        for position, moment in sent.items():
            index = bisect.bisect_left(batches, (position, -math.inf))
            if index < len(batches):
                latencies.append((batches[index][1] - moment) * 1000)
    return latencies


def _missing(reason: str) -> Line:
    return Line("4", "realtime latency", "ms", None, note=reason)
