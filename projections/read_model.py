"""Read and write agent_tasks rows and task_updates rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from domain.record import TaskRecord
from infrastructure.mapper import jsonb_text
from projections.changes import TaskChange

TASK_COLUMNS = (
    "id", "agent_id", "agent_name", "message", "task_type", "user_id", "status",
    "response", "response_data", "error_message", "metadata", "created_at",
    "updated_at", "started_at", "finished_at", "duration_ms", "wait_ms",
    "attempts", "version", "position",
)  # fmt: skip
# The SQL type of each agent_tasks column that the projector writes.
_COLUMN_TYPES = {
    "id": "uuid", "agent_id": "text", "agent_name": "text", "message": "text",
    "task_type": "text", "user_id": "text", "status": "text", "response": "text",
    "response_data": "jsonb", "error_message": "text", "metadata": "jsonb",
    "created_at": "timestamptz", "updated_at": "timestamptz",
    "started_at": "timestamptz", "finished_at": "timestamptz",
    "duration_ms": "bigint", "wait_ms": "bigint", "attempts": "integer",
    "version": "bigint", "position": "bigint", "created_position": "bigint",
}  # fmt: skip
# The agent_tasks columns that the projector writes.
PROJECTED_COLUMNS = frozenset(_COLUMN_TYPES)


def record_from_row(row: DictRow) -> TaskRecord:
    return TaskRecord.model_validate({name: row[name] for name in TASK_COLUMNS})


def load_records(
    cursor: Cursor[DictRow], table: Identifier, task_ids: Iterable[UUID]
) -> dict[UUID, TaskRecord]:
    cursor.execute(
        SQL("select * from {} where id = any(%b)").format(table), (list(task_ids),)
    )
    return {row["id"]: record_from_row(row) for row in cursor.fetchall()}


class TaskRowWriter:
    """Upserts the latest state of each changed task into an agent_tasks table.

    A batch is one statement whose columns arrive as arrays in binary form:
    PostgreSQL inserts the rows in one executor run, where a statement per row
    would start one each, and psycopg dumps each array in a single pass.
    """

    def __init__(self, table: Identifier) -> None:
        names = (*TASK_COLUMNS, "created_position")
        columns = SQL(", ").join(Identifier(name) for name in names)
        arrays = SQL(", ").join(
            SQL("%b::{}[]").format(SQL(_COLUMN_TYPES[name])) for name in names
        )
        updates = SQL(", ").join(
            SQL("{0} = excluded.{0}").format(Identifier(name))
            for name in TASK_COLUMNS
            if name != "id"
        )
        self.statement = SQL(
            "insert into {table} ({columns}) select * from unnest({arrays}) "
            "on conflict (id) do update set {updates}"
        ).format(table=table, columns=columns, arrays=arrays, updates=updates)

    def write(self, cursor: Cursor[DictRow], changes: list[TaskChange]) -> None:
        latest: dict[UUID, TaskChange] = {}
        created: dict[UUID, int] = {}
        for change in changes:
            # Moving a task to the end keeps the upserts, and so the logical
            # replication stream that Supabase Realtime reads, in position order.
            latest.pop(change.after.id, None)
            latest[change.after.id] = change
            if change.before is None:
                created[change.after.id] = change.position
        rows = [
            (*_row_values(change.after), created.get(task_id, change.position))
            for task_id, change in latest.items()
        ]
        if rows:
            cursor.execute(
                self.statement, [list(column) for column in zip(*rows, strict=True)]
            )


class TaskUpdateWriter:
    """Appends one task_updates row per change, for subscribers."""

    def __init__(self, table: Identifier) -> None:
        self.copy = SQL(
            "copy {} (position, task_id, event_type, agent_id, status, user_id, "
            "task_type, task) from stdin"
        ).format(table)

    def write(self, cursor: Cursor[DictRow], changes: list[TaskChange]) -> None:
        with cursor.copy(self.copy) as copy:
            for change in changes:
                task = change.after
                copy.write_row(
                    (
                        change.position,
                        task.id,
                        change.event_type,
                        task.agent_id,
                        task.status.value,
                        task.user_id,
                        task.task_type,
                        _task_json(task),
                    )
                )


def _row_values(record: TaskRecord) -> tuple[Any, ...]:
    values = []
    for name in TASK_COLUMNS:
        value = getattr(record, name)
        if name == "metadata":
            value = _jsonb(value)
        elif name == "response_data":
            value = None if value is None else _jsonb(value)
        elif name == "status":
            value = value.value
        values.append(value)
    return tuple(values)


def _jsonb(value: Any) -> Jsonb:
    if _has_large_float(value):
        return Jsonb(value, dumps=jsonb_text)
    return Jsonb(value)


def _task_json(task: TaskRecord) -> str:
    if _has_large_float(task.metadata) or _has_large_float(task.response_data):
        return jsonb_text(task.model_dump(mode="json"))
    return task.model_dump_json()


def _has_large_float(value: Any) -> bool:
    """Return whether value contains a float of magnitude 1e16 or more.

    json.dumps and pydantic print such floats with an exponent, which jsonb
    stores as a whole number, so they would read back as integers. jsonb_text
    prints them with a decimal point, but it costs more, so the projector
    calls it only for these values.
    """
    if isinstance(value, float):
        return abs(value) >= 1e16
    if isinstance(value, dict):
        items: Iterable[Any] = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return False
    # A plain loop that skips the common scalars, because this runs for every
    # change of a batch.
    for item in items:
        if type(item) in _SCALARS:
            continue
        if _has_large_float(item):
            return True
    return False


_SCALARS = (str, int, bool, type(None))
