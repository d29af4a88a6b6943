"""taskledger: an event-sourced task ledger for AI-agent services."""

from domain.errors import (
    CommandRejectedError,
    ConcurrencyConflictError,
    ConfigurationError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    IdempotencyConflictError,
    InvalidInputError,
    InvalidTransitionError,
    LedgerError,
    ProjectionError,
    ProjectionLagError,
    ReadModelDamagedError,
    StorageError,
    TaskNotFoundError,
)
from domain.record import TaskRecord
from domain.status import TaskStatus
from domain.update import TaskUpdate, UpdatesPrunedError
from projections.subscriptions import Subscription
from taskledger.ledger import TaskLedger

__version__ = "0.1.0"

__all__ = [
    "CommandRejectedError",
    "ConcurrencyConflictError",
    "ConfigurationError",
    "DatabaseTimeoutError",
    "DatabaseUnavailableError",
    "IdempotencyConflictError",
    "InvalidInputError",
    "InvalidTransitionError",
    "LedgerError",
    "ProjectionError",
    "ProjectionLagError",
    "ReadModelDamagedError",
    "StorageError",
    "Subscription",
    "TaskLedger",
    "TaskNotFoundError",
    "TaskRecord",
    "TaskStatus",
    "TaskUpdate",
    "UpdatesPrunedError",
    "__version__",
]
