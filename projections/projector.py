"""Apply task events to the read model in batches, exactly once.

Each batch runs in one transaction: it locks the projection's checkpoint row,
reads the events after it in position order, writes the read-model rows (and
whatever else the projection's writers keep), moves the checkpoint, and sends
NOTIFY. A crash at any point rolls the whole batch back, so an event is never
lost or applied twice.

During catch_up, a full batch's transaction also reads the events and tasks of
the next batch, and Python folds them while PostgreSQL runs the batch's
writes. The next transaction takes that fold only if the checkpoint it locks
is still the one the fold followed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import psycopg
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL

from domain.errors import ProjectionError, ReadModelDamagedError
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


@dataclass(frozen=True)
class FoldedBatch:
    """A batch of events read after a checkpoint and folded, not yet written."""

    checkpoint: int
    changes: list[TaskChange]
    # The state of each task of the batch after its last event.
    records: dict[UUID, TaskRecord]

    @property
    def result(self) -> BatchResult:
        changes = self.changes
        return BatchResult(changes[0].position, changes[-1].position, len(changes))


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
        result, _ = self._project(conn, through, None, read_ahead=False)
        return result

    def catch_up(
        self,
        conn: Connection[DictRow],
        through: int = LAST_POSITION,
        *,
        on_batch: Callable[[BatchResult], None] | None = None,
        stopping: Callable[[], bool] | None = None,
    ) -> int:
        """Apply batches up to position through until none is left.

        While PostgreSQL runs a full batch's writes, the batch's transaction
        reads the next batch's events and tasks and Python folds them, so the
        two overlap. on_batch is called after each commit, and stopping is
        asked before each batch. Returns the number of events applied.
        """
        applied = 0
        ahead: FoldedBatch | None = None
        while not (stopping is not None and stopping()):
            result, ahead = self._project(conn, through, ahead, read_ahead=True)
            if result is None:
                break
            applied += result.events
            if on_batch is not None:
                on_batch(result)
        return applied

    def _project(
        self,
        conn: Connection[DictRow],
        through: int,
        ahead: FoldedBatch | None,
        *,
        read_ahead: bool,
    ) -> tuple[BatchResult | None, FoldedBatch | None]:
        """Apply one batch, the one folded ahead if it still follows the
        checkpoint; return what it did and the next batch, if read ahead."""
        with conn.transaction(), conn.cursor() as cursor:
            checkpoint = self.lock_checkpoint(cursor)
            batch = ahead if ahead and ahead.checkpoint == checkpoint else None
            if batch is None:
                rows = self._read_events(cursor, checkpoint, through)
                if not rows:
                    return None, None
                records = self._load(cursor, rows, {})
                batch = self._fold(checkpoint, rows, records)
            full = len(batch.changes) >= self.batch_size
            following = self._write(
                conn, cursor, batch, through if read_ahead and full else None
            )
        return batch.result, following

    def _read_events(
        self, cursor: Cursor[DictRow], checkpoint: int, through: int
    ) -> list[DictRow]:
        cursor.execute(self._select_events, (checkpoint, through, self.batch_size))
        return cursor.fetchall()

    def _load(
        self,
        cursor: Cursor[DictRow],
        rows: list[DictRow],
        known: dict[UUID, TaskRecord],
    ) -> dict[UUID, TaskRecord]:
        """Return the state of each task of rows: from known, which contains
        states not yet committed, else from the read model."""
        task_ids = {row["task_id"] for row in rows}
        records = {id: known[id] for id in task_ids & known.keys()}
        missing = task_ids - records.keys()
        if missing:
            records.update(load_records(cursor, self.tables.tasks_table, missing))
        return records

    def _fold(
        self, checkpoint: int, rows: list[DictRow], records: dict[UUID, TaskRecord]
    ) -> FoldedBatch:
        changes = []
        for index, row in enumerate(rows):
            try:
                event = self._decode(row)
            except ProjectionError:
                if index == 0:
                    raise
                # Apply the events before the undecodable one. The next batch
                # starts at it and raises, so the projection stops right there.
                break
            before = records.get(row["task_id"])
            self._check_follows(before, event, row)
            after = evolve(before, event, row["position"])
            records[after.id] = after
            changes.append(TaskChange(row["position"], event.event_type, before, after))
        return FoldedBatch(checkpoint, changes, records)

    def _check_follows(
        self, before: TaskRecord | None, event: Task.Event, row: DictRow
    ) -> None:
        """Raise ReadModelDamagedError unless the event is the task's next one."""
        version = 0 if before is None else before.version
        if event.originator_version == version + 1:
            return
        found = "no row" if before is None else f"a row at version {version}"
        raise ReadModelDamagedError(
            f"{self.tables.tasks} has {found} for task {row['task_id']}, but its "
            f"event at position {row['position']} is version "
            f"{event.originator_version}: the row was deleted or changed outside "
            "the projector. Run `taskledger rebuild` (TaskLedger.rebuild() in "
            "Python) to rebuild the read model from the events, then restart the "
            "processes whose projection stopped"
        )

    def _write(
        self,
        conn: Connection[DictRow],
        cursor: Cursor[DictRow],
        batch: FoldedBatch,
        read_ahead_through: int | None,
    ) -> FoldedBatch | None:
        """Write the batch and move the checkpoint past it.

        With read_ahead_through, also read and fold the next batch up to that
        position, and return it.
        """
        changes = batch.changes
        following = self._write_pipelined(conn, cursor, batch, read_ahead_through)
        if self.update_writer is not None:
            self.update_writer.write(cursor, changes)
        for writer in self.extra_writers:
            writer.write(cursor, changes)
        self.advance(cursor, changes[-1].position)
        return following

    def advance(self, cursor: Cursor[DictRow], position: int) -> None:
        """Move the checkpoint to position and, with notify, wake subscribers."""
        cursor.execute(self._move_checkpoint, (position, self.tables.projection))
        if self.notify:
            cursor.execute(
                "select pg_notify(%s, %s)", (self.tables.updates_channel, str(position))
            )

    def _write_pipelined(
        self,
        conn: Connection[DictRow],
        cursor: Cursor[DictRow],
        batch: FoldedBatch,
        read_ahead_through: int | None,
    ) -> FoldedBatch | None:
        """Run the writers in a pipeline, so PostgreSQL runs each statement while
        Python prepares the next writer's rows, and then folds the next batch.

        The next batch's events and tasks are read before the writers' first
        statement, because a read in a pipeline waits for every statement sent
        before it.
        """
        last = batch.changes[-1].position
        with conn.pipeline() as pipeline:
            try:
                rows: list[DictRow] = []
                records: dict[UUID, TaskRecord] = {}
                if read_ahead_through is not None:
                    rows = self._read_events(cursor, last, read_ahead_through)
                    records = self._load(cursor, rows, batch.records)
                for writer in self.writers:
                    writer.write(cursor, batch.changes)
            except psycopg.Error:
                raise
            except Exception:
                # A statement sent before this error may have failed first, and
                # its error is read only at a sync: raise that one instead.
                pipeline.sync()
                raise
            return self._fold_ahead(last, rows, records)

    def _fold_ahead(
        self, checkpoint: int, rows: list[DictRow], records: dict[UUID, TaskRecord]
    ) -> FoldedBatch | None:
        if not rows:
            return None
        try:
            return self._fold(checkpoint, rows, records)
        except Exception:
            # This batch must still commit. The next one is folded again in
            # its own transaction, which raises the error there.
            return None

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

    def _decode(self, row: DictRow) -> Task.Event:
        try:
            return decode_event(self.mapper, row)
        except ProjectionError as error:
            raise ProjectionError(
                f"{error}; the projector stopped there and skips nothing"
            ) from error
