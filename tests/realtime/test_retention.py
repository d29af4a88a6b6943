"""Pruning of task_updates and what subscribers behind the retention get."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg.rows import DictRow, dict_row

from projections.runner import run_projector
from projections.subscriptions_retention import UpdatePruner
from projections.tables import ProjectionTables
from taskledger import TaskLedger, TaskUpdate, UpdatesPrunedError
from tests.realtime.helpers import (
    Recorder,
    event_positions,
    expected_positions,
    run_lifecycles,
    wait_until,
)

Db = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def ledger(database_url: str, schema: str) -> Iterator[TaskLedger]:
    """A ledger whose own pruner keeps every row these tests age by days.

    Its projector prunes whenever it is idle; with the default retention it
    would race the pruners that the tests run themselves.
    """
    with TaskLedger.open(
        database_url, schema=schema, update_retention=timedelta(days=3650)
    ) as opened:
        yield opened


@pytest.fixture
def dict_db(database_url: str) -> Iterator[psycopg.Connection[DictRow]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


def age_updates(db: Db, through: int, days: int = 4) -> None:
    db.execute(
        "update task_updates set projected_at = projected_at - %s * interval '1 day' "
        "where position <= %s",
        (days, through),
    )


def kept_positions(db: Db) -> list[int]:
    rows = db.execute("select position from task_updates order by position").fetchall()
    return [int(row[0]) for row in rows]


def test_pruner_deletes_old_prefix(
    ledger: TaskLedger, db: Db, dict_db: psycopg.Connection[DictRow], schema: str
) -> None:
    last = run_lifecycles(ledger, writer=0, tasks=20)
    ledger.wait_for_projection(last)
    positions = event_positions(db)
    cut = positions[29]
    age_updates(db, cut)
    pruner = UpdatePruner(ProjectionTables(schema), timedelta(days=3))

    result = pruner.prune(dict_db)

    assert result.deleted == 30
    assert result.finished
    assert kept_positions(db) == positions[30:]


def test_pruner_stops_at_time_budget(
    ledger: TaskLedger, db: Db, dict_db: psycopg.Connection[DictRow], schema: str
) -> None:
    last = run_lifecycles(ledger, writer=0, tasks=5)
    ledger.wait_for_projection(last)
    age_updates(db, last)
    pruner = UpdatePruner(ProjectionTables(schema), batch_size=10)

    first = pruner.prune(dict_db, time_budget=0)
    second = pruner.prune(dict_db, time_budget=0)

    assert first.deleted == 10
    assert not first.finished
    assert second.deleted == 5
    assert second.finished
    assert kept_positions(db) == []


def test_old_after_position_is_rejected(
    ledger: TaskLedger, db: Db, dict_db: psycopg.Connection[DictRow], schema: str
) -> None:
    last = run_lifecycles(ledger, writer=0, tasks=10)
    ledger.wait_for_projection(last)
    positions = event_positions(db)
    cut = positions[9]
    age_updates(db, cut)
    UpdatePruner(ProjectionTables(schema)).prune(dict_db)

    with pytest.raises(UpdatesPrunedError) as raised:
        ledger.subscribe(Recorder(), after_position=positions[3])
    assert raised.value.after_position == positions[3]
    assert raised.value.pruned_through == cut

    received = Recorder()
    with ledger.subscribe(received, after_position=cut) as subscription:
        wait_until(lambda: subscription.position >= last)
    assert received.positions == positions[10:]


def test_everything_pruned_still_detected(
    ledger: TaskLedger, db: Db, dict_db: psycopg.Connection[DictRow], schema: str
) -> None:
    last = run_lifecycles(ledger, writer=0, tasks=3)
    ledger.wait_for_projection(last)
    age_updates(db, last)
    UpdatePruner(ProjectionTables(schema)).prune(dict_db)

    with pytest.raises(UpdatesPrunedError):
        ledger.subscribe(Recorder(), after_position=0)
    with ledger.subscribe(Recorder(), after_position=last) as subscription:
        assert subscription.active


def test_lagging_subscription_ends_with_error(
    ledger: TaskLedger, db: Db, dict_db: psycopg.Connection[DictRow], schema: str
) -> None:
    last = run_lifecycles(ledger, writer=0, tasks=60)
    ledger.wait_for_projection(last)
    entered, release = threading.Event(), threading.Event()
    received: list[TaskUpdate] = []

    def blocked(update: TaskUpdate) -> None:
        entered.set()
        release.wait(10)
        received.append(update)

    subscription = ledger.subscribe(blocked, after_position=0)
    assert entered.wait(5)
    age_updates(db, last)
    UpdatePruner(ProjectionTables(schema)).prune(dict_db)
    release.set()
    wait_until(lambda: not subscription.active)

    assert isinstance(subscription.error, UpdatesPrunedError)
    # The first read-ahead batch was in memory before the prune.
    assert [u.position for u in received] == event_positions(db)[:100]


def test_async_iterator_raises_pruned(
    ledger: TaskLedger, db: Db, dict_db: psycopg.Connection[DictRow], schema: str
) -> None:
    last = run_lifecycles(ledger, writer=0, tasks=3)
    ledger.wait_for_projection(last)
    age_updates(db, last)
    UpdatePruner(ProjectionTables(schema)).prune(dict_db)

    async def consume() -> None:
        async for _ in ledger.updates(after_position=0):
            pass

    with pytest.raises(UpdatesPrunedError):
        asyncio.run(consume())


def test_projector_prunes_on_its_own(database_url: str, schema: str, db: Db) -> None:
    with TaskLedger.open(
        database_url, schema=schema, update_retention=timedelta(seconds=1)
    ) as ledger:
        old = run_lifecycles(ledger, writer=0, tasks=5)
        ledger.wait_for_projection(old)
        wait_until(lambda: kept_positions(db) == [], timeout=10)
        new = run_lifecycles(ledger, writer=1, tasks=1)
        ledger.wait_for_projection(new)

        assert kept_positions(db) == expected_positions(db, after=old)
        assert len(kept_positions(db)) == 3


def test_run_projector_prunes_too(database_url: str, schema: str, db: Db) -> None:
    stop = threading.Event()
    with TaskLedger.open(database_url, schema=schema, project=False) as ledger:
        last = run_lifecycles(ledger, writer=0, tasks=5)
    projector = threading.Thread(
        target=run_projector,
        args=(database_url, schema, stop),
        kwargs={"update_retention": timedelta(seconds=1)},
    )
    projector.start()
    try:
        wait_until(lambda: len(kept_positions(db)) == 15, timeout=10)
        wait_until(lambda: kept_positions(db) == [], timeout=10)
    finally:
        stop.set()
        projector.join(10)

    assert event_positions(db)[-1] == last
