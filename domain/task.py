"""The Task aggregate: decides commands from its past events and records new ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.errors import InvalidInputError, InvalidTransitionError
from domain.record import TaskRecord, evolve
from domain.status import TaskStatus, is_allowed
from domain.values import check_merged_metadata


class Task(Aggregate):
    """A unit of agent work moving through the statuses of TaskStatus."""

    record: TaskRecord

    class Event(Aggregate.Event):
        event_type: ClassVar[str] = ""
        resulting_status: ClassVar[TaskStatus | None] = None

        def apply(self, aggregate: Any) -> None:
            aggregate.record = evolve(aggregate.record, self)

    class Created(Event, Aggregate.Created):
        event_type = "created"
        resulting_status = TaskStatus.PENDING
        agent_id: str
        agent_name: str
        message: str
        task_type: str
        user_id: str | None
        metadata: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.record = evolve(None, self)

    class Started(Event):
        event_type = "started"
        resulting_status = TaskStatus.PROCESSING
        metadata: dict[str, Any]

    class Waiting(Event):
        event_type = "waiting"
        resulting_status = TaskStatus.WAITING
        metadata: dict[str, Any]

    class Completed(Event):
        event_type = "completed"
        resulting_status = TaskStatus.COMPLETED
        response: str | None
        response_data: Any
        metadata: dict[str, Any]

    class Failed(Event):
        """Version 2 renamed `error` to `error_message` and added `metadata`."""

        event_type = "failed"
        resulting_status = TaskStatus.FAILED
        class_version = 2
        error_message: str
        metadata: dict[str, Any]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["error_message"] = state.pop("error", "")
            state.setdefault("metadata", {})

    class Cancelled(Event):
        event_type = "cancelled"
        resulting_status = TaskStatus.CANCELLED
        reason: str | None
        metadata: dict[str, Any]

    class Retried(Event):
        event_type = "retried"
        resulting_status = TaskStatus.PENDING
        metadata: dict[str, Any]

    def __init__(
        self,
        agent_id: str,
        agent_name: str,
        message: str,
        task_type: str,
        user_id: str | None,
        metadata: dict[str, Any],
    ) -> None:
        # The Created event's apply() builds the record from the same values.
        del agent_id, agent_name, message, task_type, user_id, metadata

    @classmethod
    def create(
        cls,
        *,
        agent_id: str,
        agent_name: str,
        message: str,
        task_type: str,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        task_id: UUID | None = None,
        timestamp: datetime | None = None,
    ) -> Task:
        return cls._create(
            cls.Created,
            id=task_id or uuid4(),
            timestamp=timestamp,
            agent_id=agent_id,
            agent_name=agent_name,
            message=message,
            task_type=task_type,
            user_id=user_id,
            metadata=metadata or {},
        )

    @property
    def status(self) -> TaskStatus:
        return self.record.status

    def start(self, *, metadata: dict[str, Any], timestamp: datetime | None) -> None:
        self._move(self.Started, timestamp, metadata=metadata)

    def wait(self, *, metadata: dict[str, Any], timestamp: datetime | None) -> None:
        self._move(self.Waiting, timestamp, metadata=metadata)

    def complete(
        self,
        *,
        response: str | None,
        response_data: Any,
        metadata: dict[str, Any],
        timestamp: datetime | None,
    ) -> None:
        self._move(
            self.Completed,
            timestamp,
            response=response,
            response_data=response_data,
            metadata=metadata,
        )

    def fail(
        self,
        *,
        error_message: str,
        metadata: dict[str, Any],
        timestamp: datetime | None,
    ) -> None:
        self._move(
            self.Failed, timestamp, error_message=error_message, metadata=metadata
        )

    def cancel(
        self,
        *,
        reason: str | None,
        metadata: dict[str, Any],
        timestamp: datetime | None,
    ) -> None:
        self._move(self.Cancelled, timestamp, reason=reason, metadata=metadata)

    def retry(self, *, metadata: dict[str, Any], timestamp: datetime | None) -> None:
        self._move(self.Retried, timestamp, metadata=metadata)

    def _move(
        self, event_class: type[Task.Event], timestamp: datetime | None, **fields: Any
    ) -> None:
        requested = event_class.resulting_status
        assert requested is not None
        if not is_allowed(self.status, requested):
            raise InvalidTransitionError(self.id, self.status.value, requested.value)
        if timestamp is not None and timestamp < self.modified_on:
            raise InvalidInputError(
                f"occurred_at {timestamp.isoformat()} is earlier than task "
                f"{self.id}'s previous event at {self.modified_on.isoformat()}"
            )
        metadata = fields.get("metadata")
        if metadata:
            check_merged_metadata({**self.record.metadata, **metadata})
        self.trigger_event(event_class, timestamp=timestamp, **fields)


EVENT_CLASSES: dict[str, type[Task.Event]] = {
    cls.event_type: cls
    for cls in (
        Task.Created,
        Task.Started,
        Task.Waiting,
        Task.Completed,
        Task.Failed,
        Task.Cancelled,
        Task.Retried,
    )
}
