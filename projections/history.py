"""Audit queries on task_events: a task's history, and the task at a past point.

Both read the events themselves (never agent_tasks), decoded through the
mapper, so events stored by older versions of an event class are upcast.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL
from pydantic import BaseModel, ConfigDict, TypeAdapter

from domain.errors import InvalidInputError, TaskNotFoundError
from domain.record import TaskRecord, evolve
from domain.task import Task
from domain.values import require_aware
from infrastructure.mapper import PydanticMapper
from projections.events import decode_event
from projections.tables import ProjectionTables

# Event fields that HistoryEntry shows in columns of its own, or that only the
# event store uses.
_ENVELOPE_FIELDS = ("originator_id", "originator_version", "timestamp")
_STORE_FIELDS = ("originator_topic",)


class HistoryEntry(BaseModel):
    """One event of a task, as the audit trail shows it."""

    model_config = ConfigDict(frozen=True)

    position: int
    task_id: UUID
    version: int
    event_type: str
    occurred_at: datetime
    recorded_at: datetime
    actor: str | None
    correlation_id: str | None
    causation_id: str | None
    idempotency_key: str | None
    payload: dict[str, Any]


def get_history(
    conn: Connection[DictRow], tables: ProjectionTables, task_id: UUID
) -> list[HistoryEntry]:
    """Return the task's events in version order; raise TaskNotFoundError if none."""
    rows = _select_events(conn, tables, task_id)
    mapper = PydanticMapper()
    return [_entry(row, decode_event(mapper, row)) for row in rows]


def check_point_in_time(
    version: object, at: object
) -> tuple[int | None, datetime | None]:
    """Validate get_task_at's arguments: at most one of version and at."""
    if version is not None and at is not None:
        raise InvalidInputError("give either version or at, not both")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise InvalidInputError(f"version must be an integer >= 1, got {version!r}")
    moment = None if at is None else require_aware("at", at)
    return version, moment


def get_task_at(
    conn: Connection[DictRow],
    tables: ProjectionTables,
    task_id: UUID,
    version: int | None = None,
    at: datetime | None = None,
) -> TaskRecord:
    """Fold the task's events up to a version or an occurred time (else all)."""
    rows = _select_events(conn, tables, task_id)
    head = int(rows[-1]["version"])
    if version is not None and version > head:
        raise InvalidInputError(
            f"version {version} is beyond task {task_id}'s head version {head}"
        )
    mapper = PydanticMapper()
    record: TaskRecord | None = None
    for row in rows:
        if version is not None and row["version"] > version:
            break
        if at is not None and row["occurred_at"] > at:
            break
        record = evolve(record, decode_event(mapper, row))
        record = record.model_copy(update={"position": row["position"]})
    if record is None:
        assert at is not None
        created = rows[0]["occurred_at"].isoformat()
        raise TaskNotFoundError(
            task_id,
            f"did not exist yet at {at.isoformat()}: it was created at {created}",
        )
    return record


def _select_events(
    conn: Connection[DictRow], tables: ProjectionTables, task_id: UUID
) -> list[DictRow]:
    rows = conn.execute(
        SQL(
            "select position, task_id, version, topic, payload::text as payload, "
            "state, metadata, occurred_at, recorded_at from {} "
            "where task_id = %s order by version"
        ).format(tables.events_table),
        (task_id,),
    ).fetchall()
    if not rows:
        raise TaskNotFoundError(task_id)
    return rows


def _entry(row: DictRow, event: Task.Event) -> HistoryEntry:
    metadata = row["metadata"] or {}
    return HistoryEntry(
        position=row["position"],
        task_id=row["task_id"],
        version=row["version"],
        event_type=event.event_type,
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        actor=metadata.get("actor"),
        correlation_id=metadata.get("correlation_id"),
        causation_id=metadata.get("causation_id"),
        idempotency_key=metadata.get("idempotency_key"),
        payload=_payload(event),
    )


def _payload(event: Task.Event) -> dict[str, Any]:
    fields: dict[str, Any] = _adapter(type(event)).dump_python(event, mode="json")
    for name in (*_ENVELOPE_FIELDS, *_STORE_FIELDS):
        fields.pop(name, None)
    return fields


@cache
def _adapter(event_class: type[Task.Event]) -> TypeAdapter[Any]:
    return TypeAdapter(event_class)
