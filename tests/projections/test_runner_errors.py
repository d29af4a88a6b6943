from __future__ import annotations

import pytest
from psycopg import Cursor
from psycopg.rows import DictRow

from domain.errors import ProjectionError
from projections.changes import TaskChange
from taskledger import TaskLedger


class BrokenWriter:
    """A ChangeWriter with a bug: it raises on every batch."""

    def write(self, cursor: Cursor[DictRow], changes: list[TaskChange]) -> None:
        raise RuntimeError("writer bug")


def test_unexpected_error_stops_projection_visibly(
    database_url: str, schema: str
) -> None:
    with TaskLedger.open(database_url, schema=schema) as ledger:
        # The schema has no events yet, so no batch has run before this.
        ledger._projector.projector.writers.append(BrokenWriter())
        task = ledger.create_task("a", "A", "m", "chat")

        with pytest.raises(ProjectionError, match="writer bug"):
            ledger.get_task(task.id)

        assert isinstance(ledger._projector.error, ProjectionError)
        assert isinstance(ledger._projector.error.__cause__, RuntimeError)
