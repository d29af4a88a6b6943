"""Apply task events to the read model in batches, exactly once.

Each batch runs in one transaction: it locks the projection's checkpoint row,
reads the events after it in position order, writes the read-model rows (and
whatever else the projection's writers keep), moves the checkpoint, and sends
NOTIFY. A crash at any point rolls the whole batch back, so an event is never
lost or applied twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

import psycopg
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL

from domain.errors import ProjectionError
from domain.record import TaskRecord, evolve
from domain.task import Task
from infrastructure.mapper import PydanticMapper
from projections.changes import ChangeWriter, TaskChange
from projections.events import decode_event
from projections.read_model import TaskRowWriter, TaskUpdateWriter, load_records
from projections.statistics import StatisticsWriter
from projections.tables import ProjectionTables

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000
# The largest bigint: a batch bound that no position reaches.
LAST_POSITION = 2**63 - 1


@dataclass(frozen=True)
class BatchResult:
    """What one committed batch did."""

    first_position: int
    last_position: int
    events: int


class TaskProjector:
    """Projects task_events into one set of ProjectionTables."""

    def __init__(
        self,
        tables: ProjectionTables,
        extra_writers: list[ChangeWriter] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        notify: bool = True,
    ) -> None:
        self.tables = tables
        self.batch_size = batch_size
        self.notify = notify
        self.mapper = PydanticMapper()
        # The read model's writers run in a pipeline (see _write_pipelined).
        self.writers: list[ChangeWriter] = [
            TaskRowWriter(tables.tasks_table),
            StatisticsWriter(tables),
        ]
        # COPY cannot run in a pipeline, and statements in one report no row
        # counts, so task_updates and the extra writers run after it.
        self.update_writer = (
            None
            if tables.updates is None
            else TaskUpdateWriter(tables.table(tables.updates))
        )
        self.extra_writers: list[ChangeWriter] = list(extra_writers or [])
        self._select_events = SQL(
            "select position, task_id, version, topic, payload::text as payload, "
            "state from {} where position > %s and position <= %s "
            "order by position limit %s"
        ).format(tables.events_table)
        self._lock_checkpoint = SQL(
            "select position from {} where projection = %s for update"
        ).format(tables.checkpoints_table)
        self._create_checkpoint = SQL(
            "insert into {} (projection, position) values (%s, 0) "
            "on conflict (projection) do nothing"
        ).format(tables.checkpoints_table)
        self._move_checkpoint = SQL(
            "update {} set position = %s, updated_at = clock_timestamp() "
            "where projection = %s"
        ).format(tables.checkpoints_table)

    def project_batch(
        self, conn: Connection[DictRow], through: int = LAST_POSITION
    ) -> BatchResult | None:
        """Apply the next batch of events up to position through.

        Returns None when there are none. Inside a transaction of the caller's,
        the batch runs in a savepoint and commits with that transaction.
        """
        with conn.transaction(), conn.cursor() as cursor:
            checkpoint = self.lock_checkpoint(cursor)
            cursor.execute(self._select_events, (checkpoint, through, self.batch_size))
            rows = cursor.fetchall()
            if not rows:
                return None
            changes = self._changes(cursor, rows)
            last = rows[-1]["position"]
            self._write_pipelined(conn, cursor, changes)
            if self.update_writer is not None:
                self.update_writer.write(cursor, changes)
            for writer in self.extra_writers:
                writer.write(cursor, changes)
            cursor.execute(self._move_checkpoint, (last, self.tables.projection))
            if self.notify:
                cursor.execute(
                    "select pg_notify(%s, %s)", (self.tables.updates_channel, str(last))
                )
        return BatchResult(rows[0]["position"], last, len(rows))

    def _write_pipelined(
        self,
        conn: Connection[DictRow],
        cursor: Cursor[DictRow],
        changes: list[TaskChange],
    ) -> None:
        """Run the writers in a pipeline, so PostgreSQL runs each statement while
        Python prepares the next writer's rows."""
        with conn.pipeline() as pipeline:
            try:
                for writer in self.writers:
                    writer.write(cursor, changes)
            except psycopg.Error:
                raise
            except Exception:
                # A statement sent before this error may have failed first, and
                # its error is read only at a sync: raise that one instead.
                pipeline.sync()
                raise

    def checkpoint(self, conn: Connection[DictRow]) -> int:
        with conn.cursor() as cursor:
            cursor.execute(
                SQL("select position from {} where projection = %s").format(
                    self.tables.checkpoints_table
                ),
                (self.tables.projection,),
            )
            row = cursor.fetchone()
        return 0 if row is None else int(row["position"])

    def lock_checkpoint(self, cursor: Cursor[DictRow]) -> int:
        """Lock the projection's checkpoint row (creating it) and return it.

        The lock lasts until the transaction ends; every batch takes it first,
        so a transaction that holds it pauses this projection everywhere.
        """
        cursor.execute(self._lock_checkpoint, (self.tables.projection,))
        row = cursor.fetchone()
        if row is None:
            cursor.execute(self._create_checkpoint, (self.tables.projection,))
            cursor.execute(self._lock_checkpoint, (self.tables.projection,))
            row = cursor.fetchone()
        assert row is not None
        return int(row["position"])

    def _changes(
        self, cursor: Cursor[DictRow], rows: list[DictRow]
    ) -> list[TaskChange]:
        task_ids = {row["task_id"] for row in rows}
        records: dict[UUID, TaskRecord] = load_records(
            cursor, self.tables.tasks_table, task_ids
        )
        changes = []
        for row in rows:
            event = self._decode(row)
            before = records.get(row["task_id"])
            after = evolve(before, event, row["position"])
            records[after.id] = after
            changes.append(TaskChange(row["position"], event.event_type, before, after))
        return changes

    def _decode(self, row: DictRow) -> Task.Event:
        try:
            return decode_event(self.mapper, row)
        except ProjectionError as error:
            raise ProjectionError(
                f"{error}; the projector stopped there and skips nothing"
            ) from error
