"""Decode task_events rows into Task events through the mapper (upcasting them)."""

from __future__ import annotations

from eventsourcing.persistence import StoredEvent
from psycopg.rows import DictRow

from domain.errors import ProjectionError
from domain.task import Task
from infrastructure.mapper import PydanticMapper


def decode_event(mapper: PydanticMapper, row: DictRow) -> Task.Event:
    """Decode a row with position, task_id, version, topic, payload (text), state.

    Raises ProjectionError, naming the position, when the row cannot be decoded
    or is not a task event.
    """
    payload = row["payload"]
    stored = StoredEvent(
        originator_id=row["task_id"],
        originator_version=row["version"],
        topic=row["topic"],
        state=payload.encode() if payload is not None else bytes(row["state"]),
    )
    try:
        event = mapper.to_domain_event(stored)
    except Exception as error:
        raise ProjectionError(
            f"event at position {row['position']} ({row['topic']}) cannot be "
            f"decoded: {error}"
        ) from error
    if not isinstance(event, Task.Event):
        raise ProjectionError(
            f"event at position {row['position']} has topic {row['topic']}, "
            "which is not a task event"
        )
    return event
