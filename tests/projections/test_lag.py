from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from projections.projector import TaskProjector
from projections.rebuild import RebuildProgress
from projections.tables import REBUILD_PROJECTION, ProjectionTables
from taskledger import TaskLedger


@pytest.fixture
def writer(database_url: str, schema: str) -> Iterator[TaskLedger]:
    """A ledger that runs no projector, so its events wait unprojected."""
    with TaskLedger.open(database_url, schema=schema, project=False) as opened:
        yield opened


def project(database_url: str, schema: str, batch_size: int) -> None:
    projector = TaskProjector(ProjectionTables(schema), batch_size=batch_size)
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        projector.project_batch(conn)


def test_lag_before_first_batch(writer: TaskLedger) -> None:
    task = writer.create_task("a", "A", "m", "chat")
    writer.start_task(task.id)
    time.sleep(0.2)

    report = writer.lag()

    assert report.head == 2
    lag = report.projection("agent_tasks")
    assert lag.checkpoint == 0
    assert lag.events_behind == 2
    assert lag.seconds_behind >= 0.2
    assert lag.updated_at is None


def test_lag_counts_events_after_checkpoint(
    writer: TaskLedger, database_url: str, schema: str
) -> None:
    task = writer.create_task("a", "A", "m", "chat")
    writer.start_task(task.id)
    time.sleep(0.2)
    writer.complete_task(task.id)
    project(database_url, schema, batch_size=2)

    lag = writer.lag().projection("agent_tasks")

    assert lag.checkpoint == 2
    assert lag.events_behind == 1
    # The oldest waiting event is the completion, recorded just now.
    assert 0 <= lag.seconds_behind < 0.2
    assert lag.updated_at is not None


def test_lag_is_zero_when_caught_up(ledger: TaskLedger) -> None:
    ledger.create_task("a", "A", "m", "chat")
    ledger.get_tasks()

    report = ledger.lag()

    assert report.head == 1
    assert report.projection("agent_tasks").events_behind == 0
    assert report.projection("agent_tasks").seconds_behind == 0.0


def test_lag_lists_an_unfinished_rebuild(ledger: TaskLedger) -> None:
    for _ in range(3):
        ledger.create_task("a", "A", "m", "chat")

    def stop_after_first_batch(report: RebuildProgress) -> None:
        raise KeyboardInterrupt(report.position)

    with pytest.raises(KeyboardInterrupt):
        ledger.rebuild(progress=stop_after_first_batch, batch_size=1)
    lag = ledger.lag().projection(REBUILD_PROJECTION)

    assert lag.checkpoint == 1
    assert lag.events_behind == 2
