"""The ledger's exceptions, all under one root, LedgerError."""

from __future__ import annotations

from uuid import UUID


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""


class CommandRejectedError(LedgerError):
    """A command was not accepted, and nothing was written."""


class InvalidInputError(CommandRejectedError, ValueError):
    """A command argument failed validation."""


class TaskNotFoundError(CommandRejectedError, LookupError):
    def __init__(self, task_id: UUID | str, reason: str = "not found") -> None:
        super().__init__(f"task {task_id} {reason}")
        self.task_id = task_id


class InvalidTransitionError(CommandRejectedError):
    def __init__(self, task_id: UUID, current: str, requested: str) -> None:
        super().__init__(f"task {task_id} is {current}: it cannot move to {requested}")
        self.task_id = task_id
        self.current = current
        self.requested = requested


class ConcurrencyConflictError(CommandRejectedError):
    """Another writer appended to the task first, and re-deciding did not help."""

    def __init__(self, task_id: UUID, expected_version: int, actual_version: int):
        if expected_version == 0:
            # A create whose task id is taken, by an earlier or a concurrent one.
            message = (
                f"task {task_id} already exists (at version {actual_version}); "
                "create it with another id, or omit task_id"
            )
        else:
            message = (
                f"task {task_id} changed concurrently: expected version "
                f"{expected_version}, found {actual_version}"
            )
        super().__init__(message)
        self.task_id = task_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class IdempotencyConflictError(CommandRejectedError):
    """An idempotency key was reused with a different command or arguments."""

    def __init__(self, idempotency_key: str) -> None:
        super().__init__(
            f"idempotency key {idempotency_key!r} was already used by a "
            "different command or with different arguments"
        )
        self.idempotency_key = idempotency_key


class StorageError(LedgerError):
    """The database failed or could not be reached."""


class DatabaseUnavailableError(StorageError):
    """The database could not be reached; the command may be retried."""

    retryable = True


class DatabaseTimeoutError(StorageError):
    """A statement hit statement_timeout or lock_timeout; it may be retried."""

    retryable = True


class ConfigurationError(LedgerError):
    """The ledger's settings are invalid, for example an unusable database URL."""


class ProjectionError(LedgerError):
    """The projector met an event it cannot apply."""


class ReadModelDamagedError(ProjectionError):
    """A read model row does not follow from the events before it.

    Something other than the projector deleted or changed the row, so the
    next event of its task cannot be applied to it.
    """


class ProjectionLagError(LedgerError):
    """The projection did not reach a position in time."""

    def __init__(self, position: int, checkpoint: int, timeout: float) -> None:
        super().__init__(
            f"the projection did not reach position {position} within {timeout:g} s "
            f"(it is at {checkpoint}); check that a projector is running "
            "(TaskLedger.open(project=True) or `taskledger project`)"
        )
        self.position = position
        self.checkpoint = checkpoint
