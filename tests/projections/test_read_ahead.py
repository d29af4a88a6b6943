"""catch_up folds the next batch while the last one is written: same results."""

from __future__ import annotations

from uuid import uuid4

import psycopg
import pytest
from psycopg.rows import dict_row

from domain.errors import ProjectionError
from projections.projector import BatchResult, TaskProjector
from projections.tables import ProjectionTables
from taskledger import TaskLedger
from tests.projections.test_batch_failures import (
    Db,
    append_tasks,
    assert_equal_to_fold,
    checkpoint,
    head,
)

AGENTS = ["a", "b", "a", "c", "b", "a", "d"]


def append_undecodable_event(db: Db) -> None:
    """Append, as plain SQL, the creation of a task under a topic no code has."""
    db.execute(
        "insert into task_events (task_id, version, event_type, topic, payload, "
        "occurred_at) values (%s, 1, 'created', 'unknown:Event', '{}', now())",
        (uuid4(),),
    )


def test_catch_up_equals_fold_across_batches(
    database_url: str, schema: str, db: Db
) -> None:
    # Batches of two split every task's three events over two batches, so
    # each batch folded ahead starts from states the last one has not
    # committed yet.
    append_tasks(database_url, schema, AGENTS)
    projector = TaskProjector(ProjectionTables(schema), batch_size=2)
    results: list[BatchResult] = []

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        applied = projector.catch_up(conn, on_batch=results.append)

    assert applied == head(db) == 3 * len(AGENTS)
    assert [r.first_position for r in results] == list(range(1, head(db) + 1, 2))
    assert checkpoint(db) == head(db)
    assert_equal_to_fold(database_url, schema, db)


def test_fold_ahead_uses_uncommitted_states(
    database_url: str, schema: str, db: Db
) -> None:
    # Batches of two: the creations, the starts, the completions. The
    # completions are folded while the starts are being written, so they
    # must start from the started tasks, not from the committed pending ones.
    with TaskLedger.open(database_url, schema=schema, project=False) as ledger:
        tasks = [ledger.create_task(agent, "Agent", "m", "chat") for agent in "ab"]
        for task in tasks:
            ledger.start_task(task.id)
        for task in tasks:
            ledger.complete_task(task.id, response="ok")
    projector = TaskProjector(ProjectionTables(schema), batch_size=2)

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        assert projector.catch_up(conn) == 6

    assert_equal_to_fold(database_url, schema, db)


def test_catch_up_stops_at_through(database_url: str, schema: str, db: Db) -> None:
    append_tasks(database_url, schema, AGENTS)
    projector = TaskProjector(ProjectionTables(schema), batch_size=2)

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        assert projector.catch_up(conn, through=7) == 7
        assert checkpoint(db) == 7
        assert projector.catch_up(conn) == head(db) - 7

    assert_equal_to_fold(database_url, schema, db)


def test_undecodable_event_ahead_commits_last_batch(
    database_url: str, schema: str, db: Db
) -> None:
    append_tasks(database_url, schema, ["a", "b", "c"])
    append_undecodable_event(db)
    projector = TaskProjector(ProjectionTables(schema), batch_size=3)
    results: list[BatchResult] = []

    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn,
        pytest.raises(ProjectionError, match="position 10 "),
    ):
        projector.catch_up(conn, on_batch=results.append)

    # The bad event was folded ahead during the batch of 7 to 9, which
    # committed; the error came when its own batch was folded.
    assert [r.last_position for r in results] == [3, 6, 9]
    assert checkpoint(db) == 9


@pytest.mark.parametrize("batch_size", [4, 100])
def test_undecodable_event_stops_projection_there(
    database_url: str, schema: str, db: Db, batch_size: int
) -> None:
    append_tasks(database_url, schema, ["a", "b", "c"])
    append_undecodable_event(db)
    append_tasks(database_url, schema, ["d"])
    projector = TaskProjector(ProjectionTables(schema), batch_size=batch_size)

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        with pytest.raises(ProjectionError, match="position 10 "):
            projector.catch_up(conn)
        with pytest.raises(ProjectionError, match="position 10 "):
            projector.project_batch(conn)

    # Every event before the undecodable one is applied, none after it.
    assert checkpoint(db) == 9


def test_fold_ahead_dropped_after_checkpoint_moves(
    database_url: str, schema: str, db: Db
) -> None:
    append_tasks(database_url, schema, AGENTS)
    tables = ProjectionTables(schema)
    projector = TaskProjector(tables, batch_size=2)
    other = TaskProjector(tables, batch_size=3)
    results: list[BatchResult] = []

    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn,
        psycopg.connect(
            database_url, autocommit=True, row_factory=dict_row
        ) as other_conn,
    ):

        def interleave(result: BatchResult) -> None:
            results.append(result)
            if len(results) == 1:
                # Another projector applies events 3 to 5, which the first
                # one has already folded ahead as its next batch.
                other.project_batch(other_conn)

        projector.catch_up(conn, on_batch=interleave)

    assert [r.first_position for r in results[:2]] == [1, 6]
    assert checkpoint(db) == head(db)
    assert_equal_to_fold(database_url, schema, db)
