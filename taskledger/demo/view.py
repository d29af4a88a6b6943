"""Counts, figures and updates that the demo's live view reads from the ledger."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from psycopg.sql import SQL
from rich.table import Table

from domain.update import TaskUpdate
from infrastructure.recorders import TaskEventsRecorder
from projections.lag import LagReport
from projections.statistics_query import TaskStatistics
from taskledger.ledger import TaskLedger

LATEST_UPDATES = 8


@dataclass
class LedgerFigures:
    """The ledger's side of the view, as last read."""

    by_type: dict[str, int] = field(default_factory=dict)
    statistics: TaskStatistics | None = None
    lag: LagReport | None = None
    updates: list[TaskUpdate] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(self.by_type.values())

    def renderables(self) -> list[Any]:
        return [_events_table(self.by_type), _figures_table(self), _updates(self)]


class LedgerWatcher:
    """Follows the ledger for the live view: a subscription and a few queries."""

    def __init__(self, ledger: TaskLedger) -> None:
        self.ledger = ledger
        self._latest: deque[TaskUpdate] = deque(maxlen=LATEST_UPDATES)
        self._lock = threading.Lock()
        self._subscription = ledger.subscribe(self._received)

    def read(self) -> LedgerFigures:
        with self._lock:
            latest = list(self._latest)
        return LedgerFigures(
            by_type=_events_by_type(self.ledger),
            statistics=self.ledger.get_statistics(),
            lag=self.ledger.lag(),
            updates=latest,
        )

    def close(self) -> None:
        self._subscription.unsubscribe()

    def _received(self, update: TaskUpdate) -> None:
        with self._lock:
            self._latest.append(update)


def _events_by_type(ledger: TaskLedger) -> dict[str, int]:
    """Count the ledger's events by type with SQL on task_events."""
    recorder = ledger.application.recorder
    assert isinstance(recorder, TaskEventsRecorder)
    statement = SQL(
        "select event_type, count(*) as n from {table} group by event_type"
    ).format(table=recorder.table)
    with recorder.datastore.get_connection() as conn:
        rows = conn.execute(statement).fetchall()
    return {str(row["event_type"]): int(row["n"]) for row in rows}


def _events_table(by_type: dict[str, int]) -> Table:
    table = Table(title="Events in the ledger", title_justify="left")
    table.add_column("event type")
    table.add_column("count", justify="right")
    for event_type, count in sorted(by_type.items()):
        table.add_row(event_type, f"{count:,}")
    return table


def _figures_table(figures: LedgerFigures) -> Table:
    table = Table(title="Projected figures", title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    statistics = figures.statistics
    if statistics is not None:
        table.add_row("tasks", f"{statistics.total:,}")
        table.add_row("mean duration", _milliseconds(statistics.avg_duration_ms))
        table.add_row("p50 duration", _milliseconds(statistics.p50_duration_ms))
        table.add_row("p95 duration", _milliseconds(statistics.p95_duration_ms))
        table.add_row("mean wait", _milliseconds(statistics.avg_wait_ms))
        rate = statistics.failure_rate
        table.add_row("failure rate", "-" if rate is None else f"{rate:.1%}")
    if figures.lag is not None:
        behind = max((p.events_behind for p in figures.lag.projections), default=0)
        table.add_row("projection lag", f"{behind:,} events")
    return table


def _updates(figures: LedgerFigures) -> Table:
    table = Table(title="Latest updates", title_justify="left")
    for column in ("position", "agent", "event", "status", "attempt"):
        table.add_column(column)
    for update in reversed(figures.updates):
        table.add_row(
            f"{update.position:,}",
            update.task.agent_id,
            update.event_type,
            update.task.status.value,
            str(update.task.attempts),
        )
    return table


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:,.2f} s"
