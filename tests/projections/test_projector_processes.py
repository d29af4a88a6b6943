"""Projector processes: killed at random points, and two running side by side."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from taskledger import TaskLedger
from tests.projections.helpers import (
    assert_statistics_match,
    bulk_append,
    expected_statistics,
    fold_events,
    projected_tasks,
)

ROOT = Path(__file__).parents[2]
START = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)

pytestmark = pytest.mark.slow


def start_projector(
    database_url: str, schema: str, log: Path, batch_size: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.projections.projector_process",
            database_url,
            schema,
            str(log),
            str(batch_size),
        ],
        cwd=ROOT,
    )


def positions(database_url: str, schema: str) -> tuple[int, int, int]:
    """Return the head, the main checkpoint and the count of task_updates rows."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            sql.SQL(
                "select (select coalesce(max(position), 0) from {events}), "
                "(select coalesce(max(position), 0) from {checkpoints} "
                "where projection = 'agent_tasks'), "
                "(select count(*) from {updates})"
            ).format(
                events=sql.Identifier(schema, "task_events"),
                checkpoints=sql.Identifier(schema, "projection_checkpoints"),
                updates=sql.Identifier(schema, "task_updates"),
            )
        ).fetchone()
    assert row is not None
    return row  # type: ignore[return-value]


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """Poll condition until it holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def caught_up(database_url: str, schema: str) -> Callable[[], bool]:
    def check() -> bool:
        head, checkpoint, _ = positions(database_url, schema)
        return checkpoint == head

    return check


def has_lines(log: Path) -> bool:
    return log.exists() and log.stat().st_size > 0


def batch_ranges(*logs: Path) -> list[tuple[int, int]]:
    ranges = []
    for log in logs:
        if log.exists():
            for line in log.read_text().splitlines():
                first, last = line.split()
                ranges.append((int(first), int(last)))
    return sorted(ranges)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    assert process.wait(timeout=10) == 0


def test_killed_projector_ends_equal_to_fold(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    bulk_append(database_url, schema, 1000, seed=1, start=START)
    rng = random.Random(5)  # noqa: S311 (test data, not secrets)
    interrupted = 0

    for round_number in range(6):
        log = tmp_path / f"round-{round_number}.log"
        process = start_projector(database_url, schema, log, batch_size=20)
        wait_until(partial(has_lines, log), timeout=20)
        time.sleep(rng.uniform(0.0, 0.1))
        process.kill()
        process.wait()
        head, checkpoint, _ = positions(database_url, schema)
        interrupted += checkpoint < head
        bulk_append(database_url, schema, 150, seed=100 + round_number, start=START)

    final = start_projector(database_url, schema, tmp_path / "final.log", 40)
    try:
        wait_until(caught_up(database_url, schema), timeout=60)
    finally:
        stop(final)

    assert interrupted >= 3
    head, _, updates = positions(database_url, schema)
    assert updates == head
    folded = fold_events(database_url, schema)
    assert projected_tasks(database_url, schema) == folded
    records = [task.record for task in folded.values()]
    assert all((r.duration_ms or 0) >= 0 and (r.wait_ms or 0) >= 0 for r in records)
    with TaskLedger.open(database_url, schema=schema, project=False) as reader:
        assert_statistics_match(reader.get_statistics(), expected_statistics(records))


def test_two_projectors_never_apply_one_event_twice(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    bulk_append(database_url, schema, 300, seed=2, start=START)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    processes = [start_projector(database_url, schema, log, 50) for log in logs]
    try:
        wait_until(caught_up(database_url, schema), timeout=30)
        active = [i for i, log in enumerate(logs) if has_lines(log)]
        assert len(active) == 1
        standby = 1 - active[0]

        stop(processes[active[0]])
        bulk_append(database_url, schema, 100, seed=3, start=START)
        takeover = wait_until(caught_up(database_url, schema), timeout=10)
    finally:
        for process in processes:
            if process.poll() is None:
                stop(process)

    assert takeover < 5
    assert logs[standby].read_text()
    ranges = batch_ranges(*logs)
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert last < first
    head, _, updates = positions(database_url, schema)
    covered = sum(last - first + 1 for first, last in ranges)
    assert covered == head
    assert updates == head
    assert projected_tasks(database_url, schema) == fold_events(database_url, schema)
