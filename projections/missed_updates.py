"""Write the task updates of events that a damaged read model could not apply.

When a row of agent_tasks was deleted or changed outside the projector, the
live projection stops at the first event of that task. A rebuild then replaces
the read model, and the task_updates of the events after the live checkpoint
are written here from a fold of the events alone, so subscribers miss none.
"""

from __future__ import annotations

from uuid import UUID

from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL

from domain.record import TaskRecord, evolve
from projections.changes import TaskChange
from projections.events import decode_event
from projections.projector import TaskProjector
from projections.read_model import TaskUpdateWriter

BATCH_SIZE = 1000
_COLUMNS = SQL("position, task_id, version, topic, payload::text as payload, state")


class MissedUpdates:
    """A writer of a projection's task_updates and checkpoint, from events alone."""

    def __init__(self, projector: TaskProjector) -> None:
        tables = projector.tables
        assert tables.updates is not None
        self.projector = projector
        self.mapper = projector.mapper
        self.writer = TaskUpdateWriter(tables.table(tables.updates))
        self._select_batch = SQL(
            "select {} from {} where position > %s and position <= %s "
            "order by position limit %s"
        ).format(_COLUMNS, tables.events_table)
        self._select_earlier = SQL(
            "select {} from {} where task_id = any(%s) and position <= %s "
            "order by position"
        ).format(_COLUMNS, tables.events_table)

    def write(self, conn: Connection[DictRow], after: int, through: int) -> int:
        """Write the updates of events after position `after` up to `through`.

        The caller holds the projection's checkpoint lock. Returns the number of
        events written.
        """
        records: dict[UUID, TaskRecord] = {}
        position = after
        written = 0
        with conn.cursor() as cursor:
            while rows := cursor.execute(
                self._select_batch, (position, through, BATCH_SIZE)
            ).fetchall():
                self._load_earlier(cursor, rows, records, after)
                changes = [self._change(row, records) for row in rows]
                self.writer.write(cursor, changes)
                position = rows[-1]["position"]
                written += len(rows)
            self.projector.advance(cursor, through)
        return written

    def _load_earlier(
        self,
        cursor: Cursor[DictRow],
        rows: list[DictRow],
        records: dict[UUID, TaskRecord],
        after: int,
    ) -> None:
        """Fold the events up to `after` of the tasks in rows not yet known."""
        unknown = list({row["task_id"] for row in rows} - records.keys())
        if not unknown:
            return
        for row in cursor.execute(self._select_earlier, (unknown, after)).fetchall():
            event = decode_event(self.mapper, row)
            records[row["task_id"]] = evolve(
                records.get(row["task_id"]), event, row["position"]
            )

    def _change(self, row: DictRow, records: dict[UUID, TaskRecord]) -> TaskChange:
        event = decode_event(self.mapper, row)
        before = records.get(row["task_id"])
        after = evolve(before, event, row["position"])
        records[row["task_id"]] = after
        return TaskChange(row["position"], event.event_type, before, after)
