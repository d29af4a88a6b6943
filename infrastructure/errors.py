"""Translate driver and eventsourcing errors into LedgerError at one boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg_pool
from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    PersistenceError,
)

from domain.errors import (
    ConfigurationError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    LedgerError,
    StorageError,
)


@contextmanager
def translated_errors(action: str) -> Iterator[None]:
    """Re-raise database failures during `action` as StorageError subclasses.

    Connection losses, timeouts and server shutdowns become
    DatabaseUnavailableError, which callers may retry; the original error is
    kept as __cause__.
    """
    try:
        yield
    except LedgerError:
        raise
    except (
        psycopg.Error,
        psycopg_pool.PoolTimeout,
        PersistenceError,
    ) as error:
        raise _translated(action, error) from error


def _translated(action: str, error: BaseException) -> LedgerError:
    classified = _classified(action, error)
    if classified is not None:
        return classified
    if isinstance(
        error,
        psycopg_pool.PoolTimeout
        | psycopg.OperationalError
        | OperationalError
        | InterfaceError
        | psycopg.InterfaceError,
    ):
        return DatabaseUnavailableError(
            f"{action} failed because the database is unavailable: "
            f"{_first_line(error)}; check the host and port of the database URL, "
            "or retry when the server is reachable again"
        )
    return StorageError(f"{action} failed in the database: {_first_line(error)}")


# SQLSTATEs that a retry cannot cure: the URL names a database or role that does
# not exist, or the credentials are wrong.
_CONFIGURATION_STATES = frozenset({"3D000", "3F000", "28000", "28P01"})
# query_canceled (statement_timeout) and lock_not_available (lock_timeout).
_TIMEOUT_STATES = frozenset({"57014", "55P03"})
# Connection failures carry no SQLSTATE, so these are recognised by their text.
_CONFIGURATION_TEXTS = (
    "could not translate host name",
    "failed to resolve host",
    "password authentication failed",
    "no password supplied",
    "does not exist",
    # libpq rejects a malformed URL or option before it connects.
    "invalid sslmode value",
    "invalid connection option",
    "invalid integer value",
    "invalid port number",
)


def _classified(action: str, error: BaseException) -> LedgerError | None:
    """Return the error to raise for a configuration fault or a timeout, else None."""
    cause = _driver_error(error)
    state = getattr(cause, "sqlstate", None)
    text = _first_line(cause or error)
    connecting = cause is not None and state is None
    if state in _CONFIGURATION_STATES or (
        connecting and any(marker in text for marker in _CONFIGURATION_TEXTS)
    ):
        return ConfigurationError(
            f"{action} failed: {text}; check the database URL (host, database, "
            "user and password)"
        )
    if state in _TIMEOUT_STATES:
        return DatabaseTimeoutError(
            f"{action} timed out in the database ({text}); retry, or raise the "
            "role's statement_timeout or lock_timeout"
        )
    return None


def _driver_error(error: BaseException) -> psycopg.Error | None:
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, psycopg.Error):
            return current
        current = current.__cause__
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
