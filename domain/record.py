"""TaskRecord, the task as the read model shows it, and the fold that builds it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from domain.status import TaskStatus

if TYPE_CHECKING:
    from domain.task import Task


class TaskRecord(BaseModel):
    """One task's current state: the row of the agent_tasks read model."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    agent_id: str
    agent_name: str
    message: str
    task_type: str
    user_id: str | None
    status: TaskStatus
    response: str | None = None
    response_data: Any = None
    error_message: str | None = None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    wait_ms: int | None = None
    attempts: int = 1
    version: int
    position: int | None = None


def milliseconds_between(start: datetime, end: datetime) -> int:
    """Return whole milliseconds from start to end, never negative."""
    return max(0, (end - start) // _ONE_MS)


def evolve(
    record: TaskRecord | None, event: Task.Event, position: int | None = None
) -> TaskRecord:
    """Return the task as it is after the event: the fold of the ledger.

    A position, where given, becomes the record's. Otherwise it keeps its own.
    Times are in UTC, whatever offset the event was recorded with.
    """
    from domain.task import Task  # noqa: PLC0415 (the aggregate imports this module)

    if isinstance(event, Task.Created):
        return _created(event, position)
    if record is None:
        raise ValueError(f"event {type(event).__name__} before the task was created")

    moment = event.timestamp.astimezone(UTC)
    changes: dict[str, Any] = {
        "updated_at": moment,
        "version": event.originator_version,
    }
    if position is not None:
        changes["position"] = position
    metadata = getattr(event, "metadata", None)
    if metadata:
        changes["metadata"] = {**record.metadata, **metadata}
    status = type(event).resulting_status
    assert status is not None
    changes["status"] = status

    if isinstance(event, Task.Started) and record.started_at is None:
        changes["started_at"] = moment
        changes["wait_ms"] = milliseconds_between(record.created_at, moment)
    elif isinstance(event, Task.Completed):
        changes["response"] = event.response
        changes["response_data"] = event.response_data
    elif isinstance(event, Task.Failed):
        changes["error_message"] = event.error_message
    elif isinstance(event, Task.Cancelled):
        changes["error_message"] = event.reason
    elif isinstance(event, Task.Retried):
        changes.update(
            response=None,
            response_data=None,
            error_message=None,
            finished_at=None,
            duration_ms=None,
            attempts=record.attempts + 1,
        )
    if status.is_terminal:
        changes["finished_at"] = moment
        if record.started_at is not None:
            changes["duration_ms"] = milliseconds_between(record.started_at, moment)
    return record.model_copy(update=changes)


def _created(event: Task.Created, position: int | None) -> TaskRecord:
    moment = event.timestamp.astimezone(UTC)
    return TaskRecord(
        id=event.originator_id,
        agent_id=event.agent_id,
        agent_name=event.agent_name,
        message=event.message,
        task_type=event.task_type,
        user_id=event.user_id,
        status=TaskStatus.PENDING,
        metadata=dict(event.metadata),
        created_at=moment,
        updated_at=moment,
        version=event.originator_version,
        position=position,
    )


_ONE_MS = timedelta(milliseconds=1)
