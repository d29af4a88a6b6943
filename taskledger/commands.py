"""Run task commands: decide with the aggregate, append, and handle races.

A command loads its task, lets the aggregate decide, and appends the new events
under optimistic concurrency: a writer that loses the race for a version
re-decides from the fresh state a bounded number of times. Idempotency keys are
global; a repeated key with the same command returns the first result.

The tasks this process changed last stay in a cache, so their next command
skips the load. Events are never changed or deleted, so a cached task is either
the latest state or older than it. An older one cannot append, because its
next version is taken, and a command it rejects is decided again from the
database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from cachetools import LRUCache
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError
from psycopg.sql import SQL, Identifier

from domain.errors import (
    CommandRejectedError,
    ConcurrencyConflictError,
    IdempotencyConflictError,
    TaskNotFoundError,
)
from domain.record import TaskRecord, evolve
from domain.task import Task
from domain.values import check_event_size, optional_id
from infrastructure.errors import translated_errors
from infrastructure.recorders import (
    AppendContext,
    AppendedEvent,
    DuplicateIdempotencyKeyError,
    TaskEventsRecorder,
)

MAX_DECIDE_ATTEMPTS = 5
# Memory for tasks cached between commands, by estimate: 2.5 KB of Python
# objects for a small task (tracemalloc), plus six times the record's JSON,
# since a task with 1.4 MB of float metadata grew the process by 7.7 MB.
TASK_CACHE_BYTES = 32 * 1024 * 1024
TASK_BASE_BYTES = 2500
TASK_BYTES_PER_JSON_BYTE = 6


@dataclass(frozen=True)
class CommandContext:
    """Origin of a command (key, time, actor, ids), recorded with its events."""

    idempotency_key: str | None = None
    occurred_at: datetime | None = None
    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None

    def validated(self) -> CommandContext:
        from domain.values import require_aware  # noqa: PLC0415

        return CommandContext(
            idempotency_key=optional_id("idempotency_key", self.idempotency_key),
            occurred_at=None
            if self.occurred_at is None
            else require_aware("occurred_at", self.occurred_at),
            actor=optional_id("actor", self.actor),
            correlation_id=optional_id("correlation_id", self.correlation_id),
            causation_id=optional_id("causation_id", self.causation_id),
        )


@dataclass(frozen=True)
class CommandResult:
    """The task as the command left it, and the position of its last event."""

    task: TaskRecord
    position: int
    repeated: bool = False


class TaskCommands:
    """Executes commands against the event store of one eventsourcing Application."""

    def __init__(self, app: Application[UUID]) -> None:
        self.app = app
        recorder = app.recorder
        assert isinstance(recorder, TaskEventsRecorder)
        self.recorder = recorder
        self._task_cache: LRUCache[UUID, _CachedTask] = LRUCache(
            maxsize=TASK_CACHE_BYTES, getsizeof=lambda cached: cached.size
        )
        self._task_cache_lock = threading.Lock()
        self._find_key = SQL(
            "select task_id, version, position, metadata -> 'command' as command "
            "from {table} where metadata ? 'idempotency_key' "
            "and metadata ->> 'idempotency_key' = %s"
        ).format(
            table=Identifier(recorder.datastore.schema, recorder.events_table_name)
        )

    def create(
        self,
        fields: dict[str, Any],
        context: CommandContext,
        then: Callable[[Task], None] | None = None,
        task_id: UUID | None = None,
    ) -> CommandResult:
        """Create a task, optionally applying a first transition in the same append."""
        fingerprint = _fingerprint("create", task_id, fields, then is not None)

        def new_task(_: Task | None) -> Task:
            task = Task.create(task_id=task_id, timestamp=context.occurred_at, **fields)
            if then is not None:
                then(task)
            return task

        with translated_errors("create_task"):
            return self._run(None, fingerprint, context, lambda: None, new_task)

    def change(
        self,
        task_id: UUID,
        name: str,
        arguments: dict[str, Any],
        context: CommandContext,
        decide: Callable[[Task], None],
    ) -> CommandResult:
        fingerprint = _fingerprint(name, task_id, arguments, False)

        def decide_on(task: Task | None) -> Task:
            assert task is not None
            decide(task)
            return task

        with translated_errors(name):
            return self._run(
                task_id, fingerprint, context, lambda: self._load(task_id), decide_on
            )

    def task_at_version(self, task_id: UUID, version: int) -> TaskRecord:
        stored = self.recorder.select_events(task_id, lte=version)
        record: TaskRecord | None = None
        for stored_event in stored:
            event = self.app.mapper.to_domain_event(stored_event)
            assert isinstance(event, Task.Event)
            record = evolve(record, event)
        if record is None:
            raise TaskNotFoundError(task_id)
        return record

    def _load(self, task_id: UUID) -> Task:
        try:
            task: Task = self.app.repository.get(task_id)
        except AggregateNotFoundError:
            raise TaskNotFoundError(task_id) from None
        assert isinstance(task, Task)
        return task

    def _run(
        self,
        task_id: UUID | None,
        fingerprint: str,
        context: CommandContext,
        load: Callable[[], Task | None],
        decide: Callable[[Task | None], Task],
    ) -> CommandResult:
        earlier = self._repeated(context, fingerprint)
        if earlier is not None:
            return earlier
        expected = 0
        for attempt in range(MAX_DECIDE_ATTEMPTS):
            cached = self._take_cached(task_id) if attempt == 0 else None
            loaded = load() if cached is None else cached
            before = None if loaded is None else loaded.record
            try:
                task = decide(loaded)
            except CommandRejectedError:
                if cached is not None:
                    # The cached state may be older than the database's.
                    continue
                # A repeat of this command that committed after the check above
                # has moved the task on, so its key returns that first result.
                earlier = self._repeated(context, fingerprint)
                if earlier is not None:
                    return earlier
                raise
            pending = list(task.collect_events())
            expected = pending[0].originator_version - 1
            append_context = _append_context(context, fingerprint)
            try:
                appended = self.recorder.append(
                    [self.app.mapper.to_stored_event(e) for e in pending],
                    context=append_context,
                )
            except DuplicateIdempotencyKeyError as error:
                assert context.idempotency_key is not None
                earlier = self._earlier_result(context.idempotency_key, fingerprint)
                if earlier is None:
                    raise IdempotencyConflictError(error.key) from error
                return earlier
            except IntegrityError as error:
                # A concurrent repeat of this command may have taken the version
                # first, and then its key returns that first result.
                earlier = self._repeated(context, fingerprint)
                if earlier is not None:
                    return earlier
                if task_id is None:
                    # A create whose task id is already taken has nothing to
                    # re-decide.
                    raise ConcurrencyConflictError(
                        task.id, expected, self._head_version(task.id)
                    ) from error
                continue
            record = _replay(before, pending, appended)
            self._cache_task(task, record, appended[-1])
            position = appended[-1].position
            return CommandResult(
                record.model_copy(update={"position": position}), position
            )
        assert task_id is not None
        raise ConcurrencyConflictError(task_id, expected, self._head_version(task_id))

    def _take_cached(self, task_id: UUID | None) -> Task | None:
        """Remove and return the cached state of the task, if any."""
        if task_id is None:
            return None
        with self._task_cache_lock:
            cached = self._task_cache.pop(task_id, None)
        return None if cached is None else cached.task

    def _cache_task(self, task: Task, record: TaskRecord, last: AppendedEvent) -> None:
        """Cache the task as a load from the database would return it.

        The aggregate timed its events by this machine's clock. The database
        may have given other times, which the record and modified_on take, so
        the next command checks its occurred_at against the stored time.
        """
        text = record.model_dump_json()
        size = TASK_BASE_BYTES + TASK_BYTES_PER_JSON_BYTE * len(text)
        if size > TASK_CACHE_BYTES:
            return
        # A copy read from JSON, as a load would decode it, shares no dict or
        # list with the record returned to the caller or the caller's input.
        task.record = TaskRecord.model_validate_json(text)
        task.modified_on = last.occurred_at
        with self._task_cache_lock:
            self._task_cache[task.id] = _CachedTask(task, size)

    def _repeated(
        self, context: CommandContext, fingerprint: str
    ) -> CommandResult | None:
        """Return the first result of the command's idempotency key, if recorded."""
        if context.idempotency_key is None:
            return None
        return self._earlier_result(context.idempotency_key, fingerprint)

    def _earlier_result(self, key: str, fingerprint: str) -> CommandResult | None:
        with self.recorder.datastore.get_connection() as conn:
            row = conn.execute(self._find_key, (key,)).fetchone()
        if row is None:
            return None
        command = row["command"] or {}
        if command.get("fingerprint") != fingerprint:
            raise IdempotencyConflictError(key)
        task = self.task_at_version(row["task_id"], row["version"])
        position = int(row["position"])
        return CommandResult(
            task.model_copy(update={"position": position}), position, True
        )

    def _head_version(self, task_id: UUID) -> int:
        latest = self.recorder.select_events(task_id, desc=True, limit=1)
        return latest[0].originator_version if latest else 0


@dataclass(frozen=True)
class _CachedTask:
    """A cached task and its estimated size in bytes."""

    task: Task
    size: int


def _replay(
    record: TaskRecord | None, pending: list[Any], appended: list[AppendedEvent]
) -> TaskRecord:
    """Return the task after its new events, with the times the database gave them."""
    times = {row.version: row for row in appended}
    for event in pending:
        recorded = times[event.originator_version]
        record = evolve(
            record, dataclasses.replace(event, timestamp=recorded.occurred_at)
        )
    assert record is not None
    return record


def _append_context(context: CommandContext, fingerprint: str) -> AppendContext:
    metadata: dict[str, Any] = {"command": {"fingerprint": fingerprint}}
    for name in ("actor", "correlation_id", "causation_id"):
        value = getattr(context, name)
        if value is not None:
            metadata[name] = value
    return AppendContext(
        metadata=metadata,
        idempotency_key=context.idempotency_key,
        use_database_clock=context.occurred_at is None,
    )


def _fingerprint(
    name: str, task_id: UUID | None, arguments: dict[str, Any], then: bool
) -> str:
    canonical = json.dumps(
        {
            "command": name,
            "task_id": str(task_id),
            "arguments": arguments,
            "then": then,
        },
        sort_keys=True,
        default=str,
        ensure_ascii=False,
    )
    check_event_size(arguments)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
