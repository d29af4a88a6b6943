"""A projector process that dies between its read-model writes and its checkpoint.

The crash leaves the batch's transaction uncommitted, so PostgreSQL discards
its rows. After a restart every event is applied exactly once: agent_tasks
equals the fold of task_events, task_updates has one row per event, and the
statistics count each task once.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from taskledger import TaskLedger
from tests.projections.helpers import (
    assert_statistics_match,
    bulk_append,
    expected_statistics,
    fold_events,
    projected_tasks,
)
from tests.reliability.crashing_projector import CRASH_EXIT_CODE
from tests.reliability.helpers import Db, checkpoint, fold_through, head_position

ROOT = Path(__file__).parents[2]
START = datetime(2026, 5, 1, tzinfo=UTC)
# (batch size, the batch in which the process dies), one round each.
CRASHES = [(40, 1), (25, 3), (60, 2)]


def run_crashing_projector(
    database_url: str, schema: str, batch_size: int, crash_batch: int, log: Path
) -> int:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reliability.crashing_projector",
            database_url,
            schema,
            str(batch_size),
            str(crash_batch),
            str(log),
        ],
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    return completed.returncode


def test_crash_before_checkpoint_applies_once(
    database_url: str, schema: str, db: Db, tmp_path: Path
) -> None:
    bulk_append(database_url, schema, 200, seed=11, start=START)
    log = tmp_path / "crashes.log"

    for number, (batch_size, crash_batch) in enumerate(CRASHES):
        before = checkpoint(db)

        code = run_crashing_projector(
            database_url, schema, batch_size, crash_batch, log
        )

        assert code == CRASH_EXIT_CODE
        first, last, written = map(int, log.read_text().splitlines()[number].split())
        after = checkpoint(db)
        # The dying batch had written its rows, but neither they nor the
        # checkpoint survived, so the read model is the batches before it.
        assert written == last
        assert after == first - 1
        assert after >= before
        assert projected_tasks(database_url, schema) == fold_through(
            database_url, schema, after
        )
        bulk_append(database_url, schema, 30, seed=20 + number, start=START)

    with TaskLedger.open(database_url, schema=schema) as ledger:
        ledger.wait_for_projection(head_position(db), timeout=60)
        statistics = ledger.get_statistics()
        by_agent = ledger.get_statistics(agent_id="sales")

    folded = fold_events(database_url, schema)
    assert projected_tasks(database_url, schema) == folded
    updates = db.execute(
        "select count(*), count(distinct position) from task_updates"
    ).fetchone()
    events = db.execute("select count(*) from task_events").fetchone()
    assert events is not None
    assert updates == (events[0], events[0])
    records = [task.record for task in folded.values()]
    assert_statistics_match(statistics, expected_statistics(records))
    assert_statistics_match(by_agent, expected_statistics(records, agent_id="sales"))
