"""Turn Supabase Realtime postgres_changes payloads for agent_tasks into TaskUpdates.

A payload carries the agent_tasks row after the change, not the event that
caused it, and the projector writes one row per task per batch. So a payload
is the task after its last event in that batch, and its position is the row's
`position`. The event type follows from the row alone, because each event type
leaves a status of its own. Created and retried both leave pending, and only a
creation leaves version 1. Earlier events of the same task in the same batch
are not in any payload, but task_updates has them.
"""

from __future__ import annotations

from pydantic import ValidationError
from realtime.types import PostgresChangesPayload, RealtimePostgresChangesListenEvent

from domain.record import TaskRecord
from domain.status import TaskStatus
from domain.task import EVENT_CLASSES, Task
from domain.update import TaskUpdate

_ROW_EVENTS = (
    RealtimePostgresChangesListenEvent.Insert,
    RealtimePostgresChangesListenEvent.Update,
)
# Every event type except the two that leave a task pending, by the status it
# leaves.
_EVENT_TYPE_BY_STATUS = {
    event_class.resulting_status: event_type
    for event_type, event_class in EVENT_CLASSES.items()
    if event_class.resulting_status is not TaskStatus.PENDING
}


class IncompletePayloadError(ValueError):
    """A payload lacks the row, or the row is not a valid task.

    When a row is larger than Realtime's payload limit, Realtime sends only the
    small columns and lists an error. The consumer then reads the row with SQL.
    """


def event_type_of(task: TaskRecord) -> str:
    """Return the type of the event that left the task as it is."""
    if task.status is TaskStatus.PENDING:
        if task.version == 1:
            return Task.Created.event_type
        return Task.Retried.event_type
    return _EVENT_TYPE_BY_STATUS[task.status]


def update_from_payload(
    payload: PostgresChangesPayload, schema: str, table: str = "agent_tasks"
) -> TaskUpdate | None:
    """Return the update a payload reports, or None for one about no task state.

    DELETE payloads (a rebuild swapping tables) and payloads of other tables
    return None. Raises IncompletePayloadError when the row cannot be used.
    """
    data = payload["data"]
    if data["schema"] != schema or data["table"] != table:
        return None
    if data["type"] not in _ROW_EVENTS:
        return None
    errors = data.get("errors")
    if errors:
        raise IncompletePayloadError(f"Realtime reported errors: {errors}")
    record = data.get("record")
    if not record:
        raise IncompletePayloadError("the payload has no record")
    try:
        task = TaskRecord.model_validate(record)
    except ValidationError as error:
        raise IncompletePayloadError(
            f"the record is not a valid task: {error.error_count()} errors, "
            f"first: {error.errors()[0]['msg']} at {error.errors()[0]['loc']}"
        ) from error
    if task.position is None:
        raise IncompletePayloadError(f"the record of task {task.id} has no position")
    return TaskUpdate(task=task, event_type=event_type_of(task), position=task.position)
