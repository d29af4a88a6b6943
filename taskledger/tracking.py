"""The object that TaskLedger.track() hands to its block."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.record import TaskRecord


@dataclass
class TrackedTask:
    """The tracked task, and what the block sets for its completion."""

    task: TaskRecord
    response: str | None = None
    response_data: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> Any:
        return self.task.id
