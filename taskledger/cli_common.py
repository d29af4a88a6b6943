"""Settings, ledger access and error output shared by the `taskledger` commands."""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from domain.errors import LedgerError
from infrastructure.embedded import EmbeddedPostgres
from infrastructure.settings import resolve_database_url, resolve_schema
from taskledger.importing import ImportFileError, MappingError, XesFormatError
from taskledger.ledger import TaskLedger

logger = logging.getLogger("taskledger.cli")


class _PipedConsole(Console):
    """A rich Console that lets a closed pipe end the command with status 141.

    rich's own handler exits with status 1 and no message, which reads as a
    failure when the reader of the output just stopped (`... 2>&1 | head`).
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


console = _PipedConsole()
error_console = _PipedConsole(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Settings:
    """The global options, shared by every command through the click context."""

    database_url: str | None = None
    data_dir: Path | None = None
    schema: str | None = None
    log_level: LogLevel = LogLevel.WARNING


def settings_of(context: typer.Context) -> Settings:
    """Return the global options that the main callback stored."""
    found = context.find_object(Settings)
    return found or Settings()


def configure_logging(level: LogLevel) -> None:
    """Send log records at `level` and above to standard error, once."""
    root = logging.getLogger()
    if not any(isinstance(handler, RichHandler) for handler in root.handlers):
        handler = RichHandler(
            console=error_console, show_path=False, log_time_format="[%Y-%m-%d %X]"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(level.upper())


@contextmanager
def open_ledger(settings: Settings, **options: Any) -> Iterator[TaskLedger]:
    """Open the ledger the global options name, and close it afterwards."""
    with TaskLedger.open(
        settings.database_url,
        schema=settings.schema,
        data_dir=settings.data_dir,
        **options,
    ) as ledger:
        yield ledger


@contextmanager
def database_target(settings: Settings) -> Iterator[tuple[str, str]]:
    """Yield the database URL and schema to use, starting the embedded server if
    no URL is set (and stopping it afterwards)."""
    schema = resolve_schema(settings.schema)
    url = resolve_database_url(settings.database_url)
    if url is not None:
        yield url, schema
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    try:
        yield embedded.start(), schema
    finally:
        embedded.stop()


class CommandFailedError(Exception):
    """A command cannot go on; the message is the sentence shown to the user."""


def format_milliseconds(value: float) -> str:
    """Write a duration in milliseconds, with the largest unit that fits it."""
    if value < 9.95:
        return f"{value:,.1f} ms"
    if round(value) < 10_000:
        return f"{value:,.0f} ms"
    # A unit fits where the value, rounded as printed, is at least 1.0 of it.
    for unit, size in _DURATION_UNITS:
        if round(value / size, 1) >= 1:
            return f"{value / size:,.1f} {unit}"
    raise AssertionError("every value from 10 s up fits seconds")


_DURATION_UNITS = (
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("min", 60_000),
    ("s", 1_000),
)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error sentence and return the exit to raise."""
    error_console.print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)


def reported_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can fix into one sentence and a non-zero exit.

    With --log-level debug the traceback is logged as well.
    """

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except BrokenPipeError:
            # The reader of stdout or stderr has gone (`... | head`): stop
            # quietly, as other Unix tools do, and keep Python from failing
            # again when it flushes its streams at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.dup2(devnull, sys.stderr.fileno())
            raise typer.Exit(141) from None
        except Exception as error:
            message = describe_error(error) or (
                f"unexpected {type(error).__name__}: {error}; run with "
                "--log-level debug to see the traceback"
            )
            if _log_level(args, kwargs) is LogLevel.DEBUG:
                logger.exception("the command failed")
            raise fail(message) from None

    return wrapper


def _log_level(args: tuple[Any, ...], kwargs: dict[str, Any]) -> LogLevel:
    # Typer passes the click context, of which typer.Context is only a subclass
    # for annotations, so the context is recognised by its find_object method.
    for value in (*args, *kwargs.values()):
        find_object = getattr(value, "find_object", None)
        if callable(find_object):
            found = find_object(Settings)
            if isinstance(found, Settings):
                return found.log_level
    return LogLevel.WARNING


def describe_error(error: Exception) -> str | None:
    """Return the sentence for an error the user can act on, else None."""
    if isinstance(
        error,
        CommandFailedError
        | LedgerError
        | MappingError
        | XesFormatError
        | ImportFileError,
    ):
        return str(error)
    if isinstance(error, OSError):
        return _describe_os_error(error)
    if isinstance(error, EOFError):
        detail = str(error) or "no detail"
        return f"the input ended unexpectedly ({detail}); the file may be truncated"
    return None


def _describe_os_error(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return f"file {error.filename} not found; check the path"
    if isinstance(error, IsADirectoryError):
        return f"{error.filename} is a directory; give a file"
    if isinstance(error, PermissionError):
        return f"permission denied reading {error.filename}"
    # Errors raised by libraries (gzip, for example) often carry no strerror.
    reason = error.strerror or str(error) or type(error).__name__
    return f"{error.filename or 'a file'} cannot be read: {reason}"


# A date with a UTC offset and no time, such as 2024-05-01+05:30.
_DATE_WITH_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}[+-]\d{2}:\d{2}")


def aware_datetime(text: str) -> datetime:
    """Parse an ISO 8601 time that carries a UTC offset, or a date with one."""
    readable = text
    if _DATE_WITH_OFFSET.fullmatch(text):
        # Python reads 2024-05-01+05:30 as 05:30 on that day, taking '+' as the
        # separator of date and time. The user means midnight at +05:30.
        readable = f"{text[:10]}T00:00:00{text[10:]}"
    try:
        moment = datetime.fromisoformat(readable)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time, e.g. 2024-05-01T10:00:00+00:00"
        ) from None
    if moment.tzinfo is None:
        example = moment.replace(tzinfo=UTC).isoformat()
        raise typer.BadParameter(
            f"{text!r} has no UTC offset; give a time with one, e.g. {example}"
        )
    return moment
