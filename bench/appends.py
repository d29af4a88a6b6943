"""Figure 1 (and 6): commands per second against single-row baselines.

Every command, and every baseline insert, is its own transaction. The ledger
runs create, start and complete commands on new tasks. The baselines insert
the same three events (the ledger's encoded payloads) under new task ids.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder

from bench.baselines import (
    PLAIN_INSERT,
    copy_plain,
    copy_stock,
    create_plain_table,
    plain_row,
    stock_recorder,
)
from bench.database import BenchDatabase
from bench.loader import load_events
from bench.profiling import profiled
from bench.results import Line, ratio_at_least
from bench.timing import rate
from bench.workload import (
    MEAN_EVENTS_PER_TASK,
    TaskPlan,
    create_arguments,
    plan_tasks,
    step_arguments,
    template_events,
)
from infrastructure.mapper import PydanticMapper
from infrastructure.recorders import TaskEventsRecorder
from taskledger import TaskLedger

WRITER_COUNTS = (1, 4)
PLAIN_TARGET = 0.5
STOCK_TARGET = 1.0
_PREFILL_TIME = "2026-11-01T00:00:00Z"


@dataclass
class AppendSystems:
    """The ledger and both baselines, each in a schema of its own."""

    database: BenchDatabase
    ledger: TaskLedger
    plain_schema: str
    stock: PostgresApplicationRecorder
    templates: list[StoredEvent]
    events: int = 0
    _schemas: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, database: BenchDatabase, label: str) -> AppendSystems:
        ledger_schema = database.new_schema(f"{label}_ledger")
        plain_schema = database.new_schema(f"{label}_plain")
        stock_schema = database.new_schema(f"{label}_stock")
        ledger = TaskLedger.open(database.url, schema=ledger_schema, project=False)
        with database.connect(plain_schema) as conn:
            create_plain_table(conn)
        stock = stock_recorder(database.url, stock_schema, max(WRITER_COUNTS))
        systems = cls(
            database,
            ledger,
            plain_schema,
            stock,
            template_events(PydanticMapper()),
        )
        systems._schemas = [ledger_schema, plain_schema, stock_schema]
        return systems

    def close(self) -> None:
        self.ledger.close()
        self.stock.datastore.close()
        for schema in self._schemas:
            self.database.drop_schema(schema)

    def prefill(self, events: int, seed: int) -> None:
        """Add about events events to all three tables, the ledger's by append."""
        missing = events - self.count_events()
        if missing <= 0:
            return
        tasks = math.ceil(missing / MEAN_EVENTS_PER_TASK)
        recorder = self.ledger_recorder()
        with (
            self.database.connect(self.plain_schema) as plain,
            psycopg.connect(self.database.url, autocommit=True) as stock,
        ):
            stock.execute(
                psycopg.sql.SQL("set search_path to {}").format(
                    psycopg.sql.Identifier(self.stock.datastore.schema)
                )
            )
            load_events(
                recorder,
                plan_tasks(tasks, seed=seed),
                also=(
                    lambda batch: copy_plain(plain, batch, _PREFILL_TIME),
                    lambda batch: copy_stock(stock, batch),
                ),
            )
            for conn, table in ((plain, "plain_events"), (stock, "stored_events")):
                conn.execute(
                    psycopg.sql.SQL("analyze {}").format(psycopg.sql.Identifier(table))
                )
        with self.database.connect(self.ledger.schema) as conn:
            conn.execute("analyze task_events")

    def ledger_recorder(self) -> TaskEventsRecorder:
        recorder = self.ledger._connection.app.recorder
        assert isinstance(recorder, TaskEventsRecorder)
        return recorder

    def count_events(self) -> int:
        with self.database.connect(self.ledger.schema) as conn:
            row = conn.execute("select count(*) from task_events").fetchone()
        assert row is not None
        return int(row[0])

    def ledger_worker(self, plans: Iterator[TaskPlan]) -> Callable[[], int]:
        return LedgerWriter(self.ledger, plans)

    def plain_worker(self, conn: psycopg.Connection[Any]) -> Callable[[], int]:
        return PlainWriter(conn, self.templates)

    def stock_worker(self) -> Callable[[], int]:
        return StockWriter(self.stock, self.templates)


class LedgerWriter:
    """Runs create, start and complete on one new task after another."""

    def __init__(self, ledger: TaskLedger, plans: Iterator[TaskPlan]) -> None:
        self.ledger = ledger
        self.plans = plans
        self.task_id: uuid.UUID | None = None
        self.steps: list[str] = []

    def __call__(self) -> int:
        if self.task_id is None or not self.steps:
            plan = next(self.plans)
            self.task_id = self.ledger.create_task(**create_arguments(plan)).id
            self.steps = ["start", "complete"]
            return 1
        name = self.steps.pop(0)
        command = getattr(self.ledger, f"{name}_task")
        command(self.task_id, **step_arguments(name))
        return 1


class PlainWriter:
    """Inserts the template events, one row per transaction, under new task ids."""

    def __init__(
        self, conn: psycopg.Connection[Any], templates: list[StoredEvent]
    ) -> None:
        self.conn = conn
        self.rows = [plain_row(event)[1:] for event in templates]
        self.task_id = uuid.uuid4()
        self.index = 0

    def __call__(self) -> int:
        if self.index == 0:
            self.task_id = uuid.uuid4()
        row = self.rows[self.index]
        self.conn.execute(PLAIN_INSERT, (self.task_id, *row), prepare=True)
        self.index = (self.index + 1) % len(self.rows)
        return 1


class StockWriter:
    """Saves the template events, one per insert_events call, under new task ids."""

    def __init__(
        self, recorder: PostgresApplicationRecorder, templates: list[StoredEvent]
    ) -> None:
        self.recorder = recorder
        self.templates = templates
        self.task_id = uuid.uuid4()
        self.index = 0

    def __call__(self) -> int:
        if self.index == 0:
            self.task_id = uuid.uuid4()
        template = self.templates[self.index]
        event = StoredEvent(
            originator_id=self.task_id,
            originator_version=template.originator_version,
            topic=template.topic,
            state=template.state,
        )
        self.recorder.insert_events([event])
        self.index = (self.index + 1) % len(self.templates)
        return 1


def measure_appends(
    systems: AppendSystems,
    *,
    figure: str,
    label: str,
    seconds: float,
    seed: int,
    rounds: int = 3,
) -> list[Line]:
    """Measure all three systems with 1 and 4 writers; return two lines per count.

    The time is split into rounds that take the systems in turn, so that a
    change in the machine's load during the run falls on all three alike.
    """
    lines = []
    for writers in WRITER_COUNTS:
        plan_streams = [
            plan_tasks(10_000_000, seed=seed * 100 + index) for index in range(writers)
        ]
        ledger_writers = [systems.ledger_worker(p) for p in plan_streams]
        stock_writers = [systems.stock_worker() for _ in range(writers)]
        connections = [
            systems.database.connect(systems.plain_schema) for _ in range(writers)
        ]
        totals = {"plain": 0.0, "stock": 0.0, "ledger": 0.0}
        try:
            plain_writers = [systems.plain_worker(c) for c in connections]
            share = seconds / rounds
            warmup = min(0.5, share / 2)
            for _ in range(rounds):
                totals["plain"] += rate(plain_writers, share, warmup) / rounds
                totals["stock"] += rate(stock_writers, share, warmup) / rounds
                totals["ledger"] += rate(ledger_writers, share, warmup) / rounds
        finally:
            for conn in connections:
                conn.close()
        name = f"appends{label}, {writers} writer{'s' if writers > 1 else ''}"
        lines.append(
            Line(
                figure,
                name,
                "commands/s",
                totals["ledger"],
                totals["plain"],
                "plain INSERT",
                (ratio_at_least(PLAIN_TARGET),),
            )
        )
        lines.append(
            Line(
                figure,
                name,
                "commands/s",
                totals["ledger"],
                totals["stock"],
                "eventsourcing recorder",
                (ratio_at_least(STOCK_TARGET),),
            )
        )
    return lines


def profile_commands(
    systems: AppendSystems, seconds: float, directory: Path, seed: int
) -> None:
    """Profile one writer's commands in this thread (pyinstrument sees only it)."""
    writer = systems.ledger_worker(plan_tasks(10_000_000, seed=seed))
    with profiled(directory, "appends_1_writer"):
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            writer()
