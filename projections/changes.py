"""TaskChange: what one event did to one task, as the projector saw it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from psycopg import Cursor
from psycopg.rows import DictRow

from domain.record import TaskRecord


@dataclass(frozen=True)
class TaskChange:
    """The task before and after one event at a global position."""

    position: int
    event_type: str
    before: TaskRecord | None
    after: TaskRecord


class ChangeWriter(Protocol):
    """A part of a projection that writes its rows for a batch of changes.

    It runs inside the projector's transaction, so its rows commit together
    with the read model and the checkpoint, or not at all.
    """

    def write(self, cursor: Cursor[DictRow], changes: list[TaskChange]) -> None: ...
