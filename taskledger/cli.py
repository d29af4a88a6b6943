"""The `taskledger` command line: migrations, imports, the demo and queries."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import psycopg
import typer
from rich.table import Table

from infrastructure.embedded import DATA_DIR_VARIABLE
from infrastructure.errors import translated_errors
from infrastructure.migrator import Migration, apply_migrations, pending_migrations
from infrastructure.settings import (
    DATABASE_URL_VARIABLE,
    SCHEMA_VARIABLE,
    mask_conninfo,
)
from taskledger import __version__
from taskledger.cli_common import (
    LogLevel,
    Settings,
    configure_logging,
    console,
    database_target,
    fail,
    reported_errors,
    settings_of,
)
from taskledger.cli_demo import demo
from taskledger.cli_import import import_command
from taskledger.cli_projection import project, rebuild
from taskledger.cli_queries import history, lag, stats, tail, tasks

app = typer.Typer(
    name="taskledger",
    help="Record, import and inspect the task events of AI-agent services.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _show_version(value: bool) -> None:
    if value:
        console.print(f"taskledger {__version__}", highlight=False)
        raise typer.Exit


@app.callback()
def global_options(
    context: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar=DATABASE_URL_VARIABLE,
            show_envvar=True,
            help=(
                "PostgreSQL URL of the ledger: a direct connection or a "
                "session-mode pooler. Without it an embedded PostgreSQL starts."
            ),
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar=DATA_DIR_VARIABLE,
            show_envvar=True,
            file_okay=False,
            help=(
                "Data directory of the embedded PostgreSQL, used when no database "
                "URL is set."
            ),
            show_default="the user data directory",
        ),
    ] = None,
    schema: Annotated[
        str | None,
        typer.Option(
            "--schema",
            envvar=SCHEMA_VARIABLE,
            show_envvar=True,
            help="Schema that contains the ledger's tables.",
            show_default="public",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel,
        typer.Option(
            "--log-level",
            case_sensitive=False,
            help="Lowest level of log messages shown on standard error; debug "
            "also shows the traceback of an error.",
        ),
    ] = LogLevel.WARNING,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version of taskledger and exit.",
        ),
    ] = False,
) -> None:
    """Record, import and inspect the task events of AI-agent services."""
    del version
    configure_logging(log_level)
    context.obj = Settings(database_url, data_dir, schema, log_level)


@app.command()
@reported_errors
def migrate(
    context: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the SQL of pending migrations without running it."
        ),
    ] = False,
) -> None:
    """Apply the pending SQL migrations to the ledger's schema and list them."""
    with (
        database_target(settings_of(context)) as (url, schema),
        translated_errors(f"migrating {mask_conninfo(url)}"),
        psycopg.connect(url, autocommit=True, connect_timeout=10) as conn,
    ):
        if dry_run:
            _print_pending_sql(pending_migrations(conn, schema), schema)
            return
        applied = apply_migrations(conn, schema)
    _print_applied(applied, schema, mask_conninfo(url))


def _print_pending_sql(pending: list[Migration], schema: str) -> None:
    if not pending:
        typer.echo(f"-- schema {schema} is up to date: no migration would run")
        return
    for migration in pending:
        typer.echo(f"-- migration {migration.version}_{migration.name}")
        typer.echo(f'set local search_path to "{schema}", public;')
        typer.echo(migration.sql.rstrip() + "\n")


def _print_applied(applied: list[Migration], schema: str, url: str) -> None:
    if not applied:
        console.print(
            f"Schema {schema} on {url} is up to date; no migration applied.",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return
    console.print(
        f"Applied {len(applied)} migrations to schema {schema} on {url}:",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    table = Table()
    table.add_column("version")
    table.add_column("name")
    for migration in applied:
        table.add_row(migration.version, migration.name)
    console.print(table)


app.command("import")(import_command)
app.command("demo")(demo)
app.command("project")(project)
app.command("rebuild")(rebuild)
app.command("stats")(stats)
app.command("tasks")(tasks)
app.command("history")(history)
app.command("lag")(lag)
app.command("tail")(tail)


def main() -> None:
    """Run the command line (the `taskledger` console script)."""
    # SIGTERM unwinds like an exit, so the ledger closes and an embedded
    # PostgreSQL that this process started is stopped. `project` installs its
    # own handler for the time it runs.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    misplaced = misplaced_global_option(sys.argv[1:])
    if misplaced is not None:
        option, command = misplaced
        fail(
            f"{option} is a global option, so it goes before the command: "
            f"taskledger {option} VALUE {command} ...",
            USAGE_ERROR,
        )
        raise SystemExit(USAGE_ERROR)
    app()


# The exit code of a command line that cannot be parsed, as click uses.
USAGE_ERROR = 2
GLOBAL_OPTIONS = frozenset({"--database-url", "--data-dir", "--schema", "--log-level"})


def misplaced_global_option(args: list[str]) -> tuple[str, str] | None:
    """Return a global option given after the command, and that command.

    The global options take a value each. The command is the first argument
    that is neither an option nor the value of a global option.
    """
    index = 0
    while index < len(args) and args[index].startswith("-"):
        if args[index] == "--":
            return None
        index += 2 if args[index] in GLOBAL_OPTIONS else 1
    if index >= len(args):
        return None
    for arg in args[index + 1 :]:
        if arg == "--":
            return None
        option = arg.split("=", 1)[0]
        if option in GLOBAL_OPTIONS:
            return option, args[index]
    return None


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
