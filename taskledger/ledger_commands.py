"""The command methods of TaskLedger: validate, decide, append."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.errors import InvalidInputError, LedgerError
from domain.record import TaskRecord
from domain.status import TaskStatus
from domain.task import Task
from domain.values import (
    clean_json,
    clean_metadata,
    optional_id,
    optional_text,
    parse_task_id,
    require_id,
    require_text,
)
from taskledger.commands import CommandContext, CommandResult, TaskCommands
from taskledger.tracking import TrackedTask

logger = logging.getLogger(__name__)

# An exception's message is kept up to this length when track() records it.
TRACKED_ERROR_CHARACTERS = 64 * 1024


class LedgerCommands:
    """Commands that record task transitions; TaskLedger inherits them."""

    _commands: TaskCommands
    _written_position: int

    def create_task(
        self,
        agent_id: str,
        agent_name: str,
        message: str,
        task_type: str,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
        *,
        task_id: UUID | str | None = None,
        actor: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> TaskRecord:
        """Create a pending task and return it."""
        fields = {
            "agent_id": require_id("agent_id", agent_id),
            "agent_name": require_id("agent_name", agent_name),
            "message": require_text("message", message),
            "task_type": require_id("task_type", task_type),
            "user_id": optional_id("user_id", user_id),
            "metadata": clean_metadata(metadata),
        }
        context = CommandContext(
            idempotency_key, occurred_at, actor, correlation_id, causation_id
        ).validated()
        chosen_id = None if task_id is None else parse_task_id(task_id)
        return self._finish(self._commands.create(fields, context, task_id=chosen_id))

    def start_task(
        self,
        task_id: UUID | str,
        metadata: dict[str, Any] | None = None,
        **context: Any,
    ) -> TaskRecord:
        """Move a pending or waiting task to processing."""
        arguments = {"metadata": clean_metadata(metadata)}
        return self._change(task_id, "start", arguments, context)

    def wait_task(
        self,
        task_id: UUID | str,
        metadata: dict[str, Any] | None = None,
        **context: Any,
    ) -> TaskRecord:
        """Pause a processing task until it gets input (status waiting)."""
        arguments = {"metadata": clean_metadata(metadata)}
        return self._change(task_id, "wait", arguments, context)

    def complete_task(
        self,
        task_id: UUID | str,
        response: str | None = None,
        response_data: Any = None,
        metadata: dict[str, Any] | None = None,
        **context: Any,
    ) -> TaskRecord:
        """Mark a task completed with the agent's response."""
        arguments = {
            "response": optional_text("response", response),
            "response_data": clean_json("response_data", response_data),
            "metadata": clean_metadata(metadata),
        }
        return self._change(task_id, "complete", arguments, context)

    def fail_task(
        self,
        task_id: UUID | str,
        error_message: str,
        metadata: dict[str, Any] | None = None,
        **context: Any,
    ) -> TaskRecord:
        """Mark a task failed with the error that ended it."""
        arguments = {
            "error_message": require_text("error_message", error_message),
            "metadata": clean_metadata(metadata),
        }
        return self._change(task_id, "fail", arguments, context)

    def cancel_task(
        self,
        task_id: UUID | str,
        reason: str | None = None,
        metadata: dict[str, Any] | None = None,
        **context: Any,
    ) -> TaskRecord:
        """Cancel a task that has not finished; the reason shows as error_message."""
        arguments = {
            "reason": optional_text("reason", reason),
            "metadata": clean_metadata(metadata),
        }
        return self._change(task_id, "cancel", arguments, context)

    def retry_task(
        self,
        task_id: UUID | str,
        metadata: dict[str, Any] | None = None,
        **context: Any,
    ) -> TaskRecord:
        """Start a new attempt: the task returns to pending, attempts grows by one."""
        arguments = {"metadata": clean_metadata(metadata)}
        return self._change(task_id, "retry", arguments, context)

    def update_task_status(
        self,
        task_id: UUID | str,
        status: TaskStatus | str,
        response: str | None = None,
        response_data: Any = None,
        metadata: dict[str, Any] | None = None,
        error_message: str | None = None,
        **context: Any,
    ) -> TaskRecord:
        """Move a task to a status, as the earlier task manager's call did.

        "pending" on a task that already ran is a retry; "failed" without an
        error message records an empty one.
        """
        try:
            target = TaskStatus(status)
        except ValueError:
            allowed = ", ".join(s.value for s in TaskStatus)
            raise InvalidInputError(
                f"status {status!r} is not one of: {allowed}"
            ) from None
        if target is TaskStatus.PENDING:
            return self.retry_task(task_id, metadata, **context)
        if target is TaskStatus.PROCESSING:
            return self.start_task(task_id, metadata, **context)
        if target is TaskStatus.WAITING:
            return self.wait_task(task_id, metadata, **context)
        if target is TaskStatus.COMPLETED:
            return self.complete_task(
                task_id, response, response_data, metadata, **context
            )
        if target is TaskStatus.FAILED:
            return self.fail_task(task_id, error_message or "", metadata, **context)
        return self.cancel_task(task_id, error_message, metadata, **context)

    @contextmanager
    def track(
        self,
        agent_id: str,
        agent_name: str,
        message: str,
        task_type: str,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Iterator[TrackedTask]:
        """Create and start a task, complete it after the block, fail it on error.

        The block may set `response`, `response_data` and `metadata` on the
        object it receives. After the block, its `task` is the completed task.
        After an exception, `task` is the failed task and the exception is
        re-raised. If recording the failure fails, for example because the
        database is unreachable, that error is logged, `task` stays the
        processing task and the block's exception is still re-raised.
        """
        created = self.create_task(
            agent_id, agent_name, message, task_type, user_id, metadata
        )
        started = self.start_task(created.id)
        tracked = TrackedTask(started)
        try:
            yield tracked
        except BaseException as error:
            tracked.task = self._fail_tracked(started, error)
            raise
        tracked.task = self.complete_task(
            started.id, tracked.response, tracked.response_data, tracked.metadata
        )

    def _fail_tracked(self, task: TaskRecord, error: BaseException) -> TaskRecord:
        """Fail a tracked task and return the failed task.

        A LedgerError while recording the failure is logged and `task` is
        returned unchanged, so the block's error is never hidden.
        """
        message_text = str(error) or type(error).__name__
        if len(message_text) > TRACKED_ERROR_CHARACTERS:
            message_text = message_text[:TRACKED_ERROR_CHARACTERS] + " [truncated]"
        try:
            return self.fail_task(task.id, message_text)
        except LedgerError:
            logger.exception(
                "could not record the failure of tracked task %s",
                task.id,
                extra={"action": "track_fail", "task_id": str(task.id)},
            )
            return task

    def _change(
        self,
        task_id: UUID | str,
        name: str,
        arguments: dict[str, Any],
        context: dict[str, Any],
    ) -> TaskRecord:
        identifier = parse_task_id(task_id)
        command_context = _context(context)

        def decide(task: Task) -> None:
            method = getattr(task, name)
            method(timestamp=command_context.occurred_at, **arguments)

        result = self._commands.change(
            identifier, name, arguments, command_context, decide
        )
        return self._finish(result)

    def _finish(self, result: CommandResult) -> TaskRecord:
        self._written_position = max(self._written_position, result.position)
        return result.task


_CONTEXT_NAMES = frozenset(
    {"idempotency_key", "occurred_at", "actor", "correlation_id", "causation_id"}
)


def _context(values: dict[str, Any]) -> CommandContext:
    unknown = set(values) - _CONTEXT_NAMES
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")
    return CommandContext(**values).validated()
