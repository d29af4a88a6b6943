"""Load imported tasks back from the ledger and find where a source resumes.

Every imported command records its source and line in the events' metadata.
When a task enters the importer's memory at line L of source S, the commands
that S recorded from line L on are the ones this run has yet to meet: they are
kept aside to be matched (and skipped), and the task's state is replayed up to
just before them. A re-run of the same file therefore skips what it imported
before, a task that comes back after eviction resumes at its latest state, and
a second file that continues a task appends after the first file's events.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL

from domain.status import TaskStatus
from domain.task import Task
from infrastructure.recorders import TaskEventsRecorder

KEY_PREFIX = "import:"


def idempotency_key(task_id: UUID, ordinal: int) -> str:
    """Return the key of a task's imported transition number `ordinal` (from 0)."""
    return f"{KEY_PREFIX}{task_id}:{ordinal}"


def ordinal_of(key: str | None) -> int | None:
    if key is None or not key.startswith(KEY_PREFIX):
        return None
    tail = key.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


@dataclass
class RecordedCommand:
    """The events one earlier command appended, with what identifies it."""

    events: list[Task.Event] = field(default_factory=list)
    key: str | None = None
    fingerprint: str | None = None
    source: str | None = None
    line: int | None = None

    @property
    def ordinal(self) -> int | None:
        return ordinal_of(self.key)

    @property
    def transition(self) -> tuple[TaskStatus, datetime] | None:
        """Return the status the command moved the task to, and when."""
        if not self.events:
            return None
        last = self.events[-1]
        status = type(last).resulting_status
        return None if status is None else (status, last.timestamp)


@dataclass(slots=True)
class TrackedTask:
    """A task in the importer's memory: its aggregate and what lies ahead.

    An import keeps one per task in flight. The deque of commands ahead
    exists only while it contains some, because an empty deque takes 760
    bytes, a quarter of a tracked task. other_source is the latest source,
    other than this import's, that imported commands of the task.
    elsewhere lists the status and time of each of those commands in order,
    and elsewhere_next is the index of the one the next line may repeat.
    """

    task: Task | None
    next_ordinal: int
    ahead: deque[RecordedCommand] | None = None
    other_source: str | None = None
    elsewhere: list[tuple[TaskStatus, datetime]] | None = None
    elsewhere_next: int | None = None

    def repeats_elsewhere(self, transition: tuple[TaskStatus, datetime]) -> bool:
        """Return whether the transition repeats what another source imported.

        The task's first line in this file may repeat any of those commands,
        and each later line must repeat the one after the previous match. The
        first line that does not ends the matching for this task, so a file
        that continues another appends everything after that line.
        """
        if self.elsewhere is None:
            return False
        if self.elsewhere_next is None:
            matches = transition in self.elsewhere
            index = self.elsewhere.index(transition) if matches else 0
        else:
            index = self.elsewhere_next
            matches = (
                index < len(self.elsewhere) and self.elsewhere[index] == transition
            )
        if not matches:
            self.elsewhere = None
            return False
        self.elsewhere_next = index + 1
        return True

    def next_ahead(self) -> RecordedCommand | None:
        """Return the first command ahead, if any, without taking it."""
        return self.ahead[0] if self.ahead else None

    def apply_next_ahead(self) -> None:
        """Take the first command ahead and apply it."""
        assert self.ahead
        command = self.ahead.popleft()
        if not self.ahead:
            self.ahead = None
        self.apply_recorded(command)

    def apply_recorded(self, command: RecordedCommand) -> None:
        task: Any = self.task
        for event in command.events:
            task = event.mutate(task)
        self.task = task
        if command.ordinal is not None:
            self.next_ordinal = command.ordinal + 1

    def skip_foreign(self, source: str) -> None:
        """Apply the commands ahead that other writers or sources recorded."""
        while (command := self.next_ahead()) and command.source != source:
            self.apply_next_ahead()


class TaskLoader:
    """Reads the events of many tasks in one query and rebuilds their state."""

    def __init__(self, app: Application[UUID], source: str) -> None:
        recorder = app.recorder
        assert isinstance(recorder, TaskEventsRecorder)
        self.app = app
        self.recorder = recorder
        self.source = source
        self._select = SQL(
            "select task_id, version, topic, payload::text as payload, state, "
            "metadata from {table} where task_id = any(%s) "
            "order by task_id, version"
        ).format(table=recorder.table)

    def load(self, first_lines: dict[UUID, int]) -> dict[UUID, TrackedTask]:
        """Return the tracked state of each task, resuming at its given line."""
        histories: dict[UUID, list[RecordedCommand]] = {}
        if first_lines:
            with self.recorder.datastore.get_connection() as conn:
                rows = conn.execute(self._select, (list(first_lines),)).fetchall()
            histories = self._group(rows)
        return {
            task_id: self._resume(histories.get(task_id, []), line)
            for task_id, line in first_lines.items()
        }

    def _group(self, rows: Iterable[Any]) -> dict[UUID, list[RecordedCommand]]:
        histories: dict[UUID, list[RecordedCommand]] = {}
        open_commands: dict[UUID, RecordedCommand] = {}
        for row in rows:
            metadata = row["metadata"] or {}
            imported = metadata.get("import")
            event = self._to_event(row)
            command = open_commands.pop(row["task_id"], None) or RecordedCommand()
            command.events.append(event)
            if imported is None:
                histories.setdefault(row["task_id"], []).append(command)
                continue
            if "idempotency_key" not in metadata:
                open_commands[row["task_id"]] = command
                continue
            command.key = metadata["idempotency_key"]
            command.fingerprint = (metadata.get("command") or {}).get("fingerprint")
            command.source = imported.get("source")
            command.line = imported.get("line")
            histories.setdefault(row["task_id"], []).append(command)
        return histories

    def _to_event(self, row: Any) -> Task.Event:
        body = row["payload"]
        state = body.encode("utf-8") if body is not None else bytes(row["state"])
        stored = StoredEvent(
            originator_id=row["task_id"],
            originator_version=row["version"],
            topic=row["topic"],
            state=state,
        )
        event = self.app.mapper.to_domain_event(stored)
        assert isinstance(event, Task.Event)
        return event

    def _resume(self, history: list[RecordedCommand], line: int) -> TrackedTask:
        tracked = TrackedTask(task=None, next_ordinal=0)
        for command in history:
            if command.source not in (None, self.source):
                tracked.other_source = command.source
                if (transition := command.transition) is not None:
                    tracked.elsewhere = tracked.elsewhere or []
                    tracked.elsewhere.append(transition)
        split = len(history)
        for index, command in enumerate(history):
            if command.source == self.source and (command.line or 0) >= line:
                split = index
                break
        for command in history[:split]:
            tracked.apply_recorded(command)
        if split < len(history):
            tracked.ahead = deque(history[split:])
        return tracked
