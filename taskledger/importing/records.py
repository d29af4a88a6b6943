"""What the readers produce: validated transitions, rejected and ignored entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from domain.status import TaskStatus

# External task ids become task UUIDs as uuid5(TASK_ID_NAMESPACE, external_id),
# so anyone can compute the id an imported task gets. Never change this value:
# re-imports would create new tasks instead of recognising the old ones.
TASK_ID_NAMESPACE = UUID("fd69ed2b-eba2-4c38-846f-fe293cbca65c")

DEFAULT_ID = "unknown"


def task_uuid(external_id: str) -> UUID:
    """Return the ledger's UUID for a task id from an imported file."""
    return uuid5(TASK_ID_NAMESPACE, external_id)


class AfterTerminal(StrEnum):
    """What a transition to processing, waiting or a terminal status does after
    the task reached a terminal status."""

    REJECT = "reject"
    RETRY = "retry"
    IGNORE = "ignore"


@dataclass(frozen=True)
class ReadRules:
    """How a format's transitions are fitted to the state machine.

    collapse_repeats treats a transition to the task's current status as no
    change (ignored) instead of rejecting it. after_terminal decides what a
    transition other than pending does once the task has finished: reject it,
    start a new attempt (retry, then the transition, at the same instant), or
    ignore it.
    """

    collapse_repeats: bool = False
    after_terminal: AfterTerminal = AfterTerminal.REJECT


@dataclass(frozen=True)
class Transition:
    """One validated transition of one task, read from position `line`.

    `line` orders the entries of one source (a line number, or an event number
    in an XES log); `where` names the entry in reports.
    """

    line: int
    where: str
    external_id: str
    task_id: UUID
    status: TaskStatus
    occurred_at: datetime
    creation: dict[str, Any] = field(default_factory=dict)
    response: str | None = None
    response_data: Any = None
    error_message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """An entry that was not imported, and why."""

    line: int
    where: str
    reason: str


@dataclass(frozen=True)
class Ignored:
    """An entry that is no transition: mapped to ignore, or a repeated status."""

    line: int
    where: str
    reason: str


Entry = Transition | Rejected | Ignored
