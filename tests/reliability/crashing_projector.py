"""Run the projector until it dies inside a batch, for the crash tests.

Usage:
    python -m tests.reliability.crashing_projector \
        URL SCHEMA BATCH_SIZE CRASH_BATCH LOG

The process projects with a writer that, in batch number CRASH_BATCH (from 1),
runs after the read model's rows were written but before the checkpoint moves
and the transaction commits. It records in LOG what the open transaction
already wrote ("first last written"), then ends the process with os._exit, as
a kill or a power cut would: no rollback, no cleanup.
"""

from __future__ import annotations

import os
import sys
import threading

from psycopg import Cursor, sql
from psycopg.rows import DictRow

from projections.changes import TaskChange
from projections.projector import TaskProjector
from projections.runner import ProjectorRunner
from projections.tables import ProjectionTables

CRASH_EXIT_CODE = 86


class CrashingWriter:
    """A ChangeWriter that ends the process in one chosen batch."""

    def __init__(self, tables: ProjectionTables, crash_batch: int, log: str) -> None:
        self.tables = tables
        self.crash_batch = crash_batch
        self.log = log
        self.batches = 0

    def write(self, cursor: Cursor[DictRow], changes: list[TaskChange]) -> None:
        self.batches += 1
        if self.batches < self.crash_batch:
            return
        # Read in the batch's own transaction, which reads its uncommitted rows.
        cursor.execute(
            sql.SQL("select coalesce(max(position), 0) as written from {}").format(
                self.tables.tasks_table
            )
        )
        row = cursor.fetchone()
        assert row is not None
        with open(self.log, "a", encoding="utf-8") as out:
            out.write(
                f"{changes[0].position} {changes[-1].position} {row['written']}\n"
            )
            out.flush()
            os.fsync(out.fileno())
        os._exit(CRASH_EXIT_CODE)


def main() -> None:
    url, schema, batch_size, crash_batch, log = sys.argv[1:6]
    tables = ProjectionTables(schema)
    writer = CrashingWriter(tables, int(crash_batch), log)
    projector = TaskProjector(
        tables, extra_writers=[writer], batch_size=int(batch_size)
    )
    runner = ProjectorRunner(url, projector, poll_interval=0.1)
    runner.start()
    # The writer ends the process; reaching the timeout means it never ran.
    threading.Event().wait(60)
    sys.exit(1)


if __name__ == "__main__":
    main()
