"""Figures the demo's live view reads from the ledger itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg.sql import SQL
from rich.table import Table

from infrastructure.recorders import TaskEventsRecorder
from taskledger.ledger import TaskLedger


@dataclass
class LedgerFigures:
    """What the ledger holds, as last read."""

    events: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    def renderables(self) -> list[Any]:
        table = Table(title="Events in the ledger by type", title_justify="left")
        table.add_column("event type")
        table.add_column("count", justify="right")
        for event_type, count in sorted(self.by_type.items()):
            table.add_row(event_type, f"{count:,}")
        return [table]


def read_ledger_figures(ledger: TaskLedger, previous: LedgerFigures) -> LedgerFigures:
    """Count the ledger's events by type with SQL on task_events."""
    recorder = ledger._commands.recorder
    assert isinstance(recorder, TaskEventsRecorder)
    statement = SQL(
        "select event_type, count(*) as n from {table} group by event_type"
    ).format(table=recorder.table)
    with recorder.datastore.get_connection() as conn:
        rows = conn.execute(statement).fetchall()
    by_type = {str(row["event_type"]): int(row["n"]) for row in rows}
    del previous
    return LedgerFigures(events=sum(by_type.values()), by_type=by_type)
