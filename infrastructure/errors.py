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

from domain.errors import DatabaseUnavailableError, LedgerError, StorageError


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
        psycopg_pool.PoolTimeout,
        psycopg.OperationalError,
        OperationalError,
        InterfaceError,
        psycopg.InterfaceError,
    ) as error:
        raise DatabaseUnavailableError(
            f"{action} failed because the database is unavailable: "
            f"{_first_line(error)}; retry when it is reachable again"
        ) from error
    except (psycopg.Error, PersistenceError) as error:
        raise StorageError(
            f"{action} failed in the database: {_first_line(error)}"
        ) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
