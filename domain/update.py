"""TaskUpdate, one projected change of a task, and the error for pruned updates."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from domain.errors import LedgerError
from domain.record import TaskRecord


class TaskUpdate(BaseModel):
    """A task as projected after the event at a global position."""

    model_config = ConfigDict(frozen=True)

    task: TaskRecord
    event_type: str
    position: int


class UpdatesPrunedError(LedgerError):
    """Updates after a position were deleted by retention before being delivered."""

    def __init__(self, after_position: int, pruned_through: int) -> None:
        super().__init__(
            f"updates after position {after_position} are no longer kept: "
            f"task_updates was pruned through position {pruned_through}; "
            "subscribe from the head (no after_position) or from a position "
            f"at or after {pruned_through}, and read older history from "
            "task_events"
        )
        self.after_position = after_position
        self.pruned_through = pruned_through
