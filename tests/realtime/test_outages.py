"""Subscriptions survive terminated connections without losing or repeating updates.

Only connections of the test's own ledger are terminated: they are found by the
test's schema name, which appears in the last statement each one ran.
"""

from __future__ import annotations

import logging
import time

import psycopg
import pytest

from taskledger import TaskLedger
from tests.realtime.helpers import (
    Recorder,
    event_positions,
    run_writers,
    wait_until,
)

Db = psycopg.Connection[tuple[object, ...]]


def listener_pids(db: Db, schema: str) -> list[int]:
    rows = db.execute(
        "select pid from pg_stat_activity "
        "where application_name = 'taskledger-listen' "
        "and datname = current_database() and position(%s in query) > 0",
        (f"{schema}_task_updates",),
    ).fetchall()
    return [int(row[0]) for row in rows]


def terminate(db: Db, pids: list[int]) -> int:
    rows = db.execute(
        "select pg_terminate_backend(pid) from unnest(%s::int[]) as pid", (pids,)
    ).fetchall()
    return sum(1 for row in rows if row[0])


def ledger_pids(db: Db, schema: str) -> list[int]:
    """Every connection of the test's ledger whose last statement named its schema."""
    rows = db.execute(
        "select pid from pg_stat_activity "
        "where datname = current_database() and pid <> pg_backend_pid() "
        "and position(%s in query) > 0",
        (schema,),
    ).fetchall()
    return [int(row[0]) for row in rows]


def test_listener_killed_mid_stream(
    ledger: TaskLedger, db: Db, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="infrastructure.listen")
    received = Recorder()
    subscription = ledger.subscribe(received)
    wait_until(lambda: len(listener_pids(db, schema)) == 1)

    threads, results = run_writers(ledger, writers=2, tasks=80, pause=0.02)
    for _ in range(3):
        time.sleep(0.3)
        assert any(thread.is_alive() for thread in threads)
        old = listener_pids(db, schema)
        assert terminate(db, old) == 1
        wait_until(lambda old=old: listener_pids(db, schema) not in ([], old))
    for thread in threads:
        thread.join(60)
    head = max(results)
    ledger.wait_for_projection(head)
    wait_until(lambda: subscription.position >= head)
    subscription.unsubscribe()

    assert received.positions == event_positions(db)
    assert len(received.positions) == 2 * 80 * 3
    restored = [r for r in caplog.records if "again after an outage" in r.message]
    assert len(restored) == 3
    assert all(r.levelno == logging.WARNING for r in restored)
    assert all(r.outage_seconds >= 0 for r in restored)  # type: ignore[attr-defined]


def test_all_connections_killed_mid_stream(
    ledger: TaskLedger, db: Db, schema: str
) -> None:
    received = Recorder()
    subscription = ledger.subscribe(received, agent_id="alpha")
    wait_until(lambda: len(listener_pids(db, schema)) == 1)

    threads, results = run_writers(
        ledger, writers=2, tasks=60, pause=0.02, retry_unavailable=True
    )
    for _ in range(2):
        time.sleep(0.4)
        assert any(thread.is_alive() for thread in threads)
        # A listing misses pool connections whose last statement did not name
        # the schema, so terminate across listings until two have ended.
        terminated = [0]

        def terminate_more(terminated: list[int] = terminated) -> bool:
            terminated[0] += terminate(db, ledger_pids(db, schema))
            return terminated[0] >= 2

        wait_until(terminate_more, timeout=10)
    for thread in threads:
        thread.join(60)
    head = max(results)
    ledger.wait_for_projection(head)
    wait_until(lambda: subscription.position >= head)
    subscription.unsubscribe()

    expected = db.execute(
        "select position from task_updates where agent_id = 'alpha' order by position"
    ).fetchall()
    assert received.positions == [row[0] for row in expected]
    assert len(received.positions) == len(set(received.positions))
    assert len(event_positions(db)) == 2 * 60 * 3
