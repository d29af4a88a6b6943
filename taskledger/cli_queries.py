"""Read commands: `stats`, `tasks`, `history`, `lag` and `tail`."""

from __future__ import annotations

import json
import queue
import time
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import typer
from pydantic import BaseModel
from rich.table import Table
from rich.text import Text

from domain.errors import ProjectionLagError, TaskNotFoundError
from domain.record import TaskRecord
from domain.status import TaskStatus
from domain.update import TaskUpdate
from domain.values import require_id
from projections.history import HistoryEntry
from taskledger.cli_common import (
    aware_datetime,
    console,
    error_console,
    fail,
    format_milliseconds,
    open_ledger,
    reported_errors,
    settings_of,
)
from taskledger.importing import task_uuid
from taskledger.ledger import TaskLedger

DEFAULT_WAIT_SECONDS = 10.0
# Below this many columns, the task table squeezes its columns to a few
# letters, so `tasks` prints two lines per task instead.
TASK_TABLE_WIDTH = 130
# Below this many columns, the history table folds idempotency keys over
# several lines, so `history` prints a line per event and one per key.
HISTORY_TABLE_WIDTH = 120


AgentOption = Annotated[
    str | None, typer.Option("--agent-id", help="Only tasks of this agent.")
]
TaskTypeOption = Annotated[
    str | None, typer.Option("--task-type", help="Only tasks of this type.")
]
UserOption = Annotated[
    str | None, typer.Option("--user-id", help="Only tasks of this user.")
]
StatusOption = Annotated[
    TaskStatus | None, typer.Option("--status", help="Only tasks in this status.")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of a table.")
]
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0.0,
        help="Seconds to wait for the read model to catch up with the newest "
        "event before answering.",
    ),
]


def _time_option(name: str, text: str) -> Any:
    return typer.Option(name, parser=aware_datetime, help=text)


@reported_errors
def stats(
    context: typer.Context,
    agent_id: AgentOption = None,
    task_type: TaskTypeOption = None,
    since: Annotated[
        datetime | None,
        _time_option("--since", "Only tasks created at or after this time (ISO 8601)."),
    ] = None,
    until: Annotated[
        datetime | None,
        _time_option("--until", "Only tasks created before this time (ISO 8601)."),
    ] = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    as_json: JsonOption = False,
) -> None:
    """Print task counts by status, durations and the failure rate."""
    with open_ledger(settings_of(context), migrate=False) as ledger:
        _catch_up(ledger, wait)
        figures = ledger.get_statistics(agent_id, task_type, since, until)
    if as_json:
        typer.echo(figures.model_dump_json())
        return
    _print_model("Statistics", figures)


@reported_errors
def tasks(
    context: typer.Context,
    agent_id: AgentOption = None,
    status: StatusOption = None,
    user_id: UserOption = None,
    task_type: TaskTypeOption = None,
    created_after: Annotated[
        datetime | None,
        _time_option("--created-after", "Only tasks created at or after this time."),
    ] = None,
    created_before: Annotated[
        datetime | None,
        _time_option("--created-before", "Only tasks created before this time."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="Tasks per page.")
    ] = 50,
    offset: Annotated[
        int, typer.Option("--offset", min=0, help="Matching tasks to skip first.")
    ] = 0,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            metavar="CURSOR",
            help="Start after the page that printed this cursor; tasks created "
            "meanwhile shift nothing.",
        ),
    ] = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    as_json: JsonOption = False,
) -> None:
    """List tasks, newest first, with the number of tasks that match."""
    with open_ledger(settings_of(context), migrate=False) as ledger:
        _catch_up(ledger, wait)
        page = ledger.get_tasks(
            agent_id,
            status,
            user_id,
            task_type,
            created_after,
            created_before,
            limit,
            offset,
            after,
        )
    if as_json:
        typer.echo(page.model_dump_json())
        return
    caption = f"{len(page.tasks):,} of {page.total:,} matching tasks"
    if page.next_cursor is not None:
        caption += f"\nnext page: --after {page.next_cursor}"
    if console.width < TASK_TABLE_WIDTH:
        _print_task_lines(page.tasks, caption)
        return
    table = Table(caption=caption)
    table.add_column("id", no_wrap=True, min_width=36)
    for column in ("agent", "type", "status", "attempts"):
        table.add_column(column)
    table.add_column("created", no_wrap=True, min_width=25)
    table.add_column("duration")
    for task in page.tasks:
        table.add_row(
            str(task.id),
            # Text, not markup: brackets in a user's ids are kept as written.
            Text(task.agent_id),
            Text(task.task_type),
            task.status.value,
            str(task.attempts),
            task.created_at.isoformat(timespec="seconds"),
            "" if task.duration_ms is None else format_milliseconds(task.duration_ms),
        )
    console.print(table)


def _print_task_lines(tasks: list[TaskRecord], caption: str) -> None:
    """Print each task as two lines, for terminals too narrow for the table."""
    for task in tasks:
        heading = f"{task.id}  {task.status.value}"
        if task.duration_ms is not None:
            heading += f"  {format_milliseconds(task.duration_ms)}"
        attempts = f"{task.attempts} attempt{'' if task.attempts == 1 else 's'}"
        created = f"created {task.created_at.isoformat(timespec='seconds')}"
        details = " · ".join((task.agent_id, task.task_type, attempts, created))
        console.print(heading, highlight=False, markup=False)
        console.print(f"  {details}", highlight=False, markup=False)
    console.print(caption, highlight=False)


@reported_errors
def history(
    context: typer.Context,
    task_id: Annotated[
        str,
        typer.Argument(
            metavar="TASK_ID", help="The task's UUID, or its id in an imported file."
        ),
    ],
    imported: Annotated[
        bool,
        typer.Option(
            "--imported",
            help="Read TASK_ID as an id from an imported file, even if it is a UUID.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Print every event of a task: when, what, and who caused it."""
    ledger_id, from_import = _ledger_task_id(task_id, imported)
    with open_ledger(settings_of(context), migrate=False, project=False) as ledger:
        try:
            entries = ledger.get_history(ledger_id)
        except TaskNotFoundError:
            raise fail(_not_found_message(task_id, ledger_id, from_import)) from None
    if as_json:
        for entry in entries:
            typer.echo(entry.model_dump_json())
        return
    title = f"History of task {ledger_id}"
    if from_import:
        title += f" (imported id {task_id!r})"
    if console.width < HISTORY_TABLE_WIDTH:
        _print_history_lines(entries, title)
        return
    table = Table(title=Text(title), title_justify="left")
    table.add_column("version")
    table.add_column("event")
    table.add_column("occurred", no_wrap=True, min_width=25)
    table.add_column("actor")
    table.add_column("idempotency key", overflow="fold")
    for entry in entries:
        table.add_row(
            str(entry.version),
            entry.event_type,
            entry.occurred_at.isoformat(),
            Text(entry.actor or ""),
            Text(entry.idempotency_key or ""),
        )
    console.print(table)


def _print_history_lines(entries: list[HistoryEntry], title: str) -> None:
    """Print each event as a line, and its idempotency key on the next one."""
    console.print(title, highlight=False, markup=False)
    for entry in entries:
        line = f"v{entry.version}  {entry.event_type}  {entry.occurred_at.isoformat()}"
        if entry.actor:
            line += f"  by {entry.actor}"
        console.print(line, highlight=False, markup=False)
        if entry.idempotency_key:
            key = f"  idempotency key {entry.idempotency_key}"
            console.print(key, highlight=False, markup=False, soft_wrap=True)


def _ledger_task_id(task_id: str, imported: bool) -> tuple[UUID, bool]:
    """Return the ledger's UUID for TASK_ID, and whether an import derived it.

    TASK_ID is the UUID itself unless --imported is given or it is not a UUID.
    """
    if not imported:
        try:
            return UUID(task_id.strip()), False
        except ValueError:
            pass
    # Trimmed and cleaned as the JSON Lines and XES readers do.
    return task_uuid(require_id("task id", task_id)), True


def _not_found_message(task_id: str, ledger_id: UUID, from_import: bool) -> str:
    if from_import:
        return (
            f"no task has the imported id {task_id!r} (ledger id {ledger_id}); "
            "check the id in the imported file, including its case and spaces"
        )
    return (
        f"task {ledger_id} not found. If it is an id from an imported file, "
        "add --imported"
    )


@reported_errors
def lag(context: typer.Context, as_json: JsonOption = False) -> None:
    """Print the newest event's position and how far each projection is behind."""
    with open_ledger(settings_of(context), migrate=False, project=False) as ledger:
        report = ledger.lag()
    if as_json:
        typer.echo(report.model_dump_json())
        return
    table = Table(caption=f"newest event at position {report.head:,}")
    for column in ("projection", "checkpoint", "events behind", "seconds behind"):
        table.add_column(column)
    for item in report.projections:
        table.add_row(
            item.projection,
            f"{item.checkpoint:,}",
            f"{item.events_behind:,}",
            f"{item.seconds_behind:,.1f}",
        )
    console.print(table)


@reported_errors
def tail(
    context: typer.Context,
    agent_id: AgentOption = None,
    status: StatusOption = None,
    user_id: UserOption = None,
    task_type: TaskTypeOption = None,
    after_position: Annotated[
        int | None,
        typer.Option(
            "--after-position",
            min=0,
            help="Start with the updates after this event position.",
            show_default="only updates from now on",
        ),
    ] = None,
    max_updates: Annotated[
        int | None,
        typer.Option("--max-updates", min=1, help="Exit after this many updates."),
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option("--seconds", min=0.1, help="Exit after this many seconds."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print task updates as they are projected, until Ctrl-C."""
    received: queue.Queue[TaskUpdate] = queue.Queue()
    deadline = None if seconds is None else time.monotonic() + seconds
    shown = 0
    with open_ledger(settings_of(context), migrate=False) as ledger:
        subscription = ledger.subscribe(
            received.put, agent_id, status, user_id, task_type, after_position
        )
        try:
            while max_updates is None or shown < max_updates:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                try:
                    update = received.get(timeout=min(left or 0.5, 0.5))
                except queue.Empty:
                    continue
                _print_update(update, as_json)
                shown += 1
        except KeyboardInterrupt:
            pass
        finally:
            subscription.unsubscribe()


def _print_update(update: TaskUpdate, as_json: bool) -> None:
    if as_json:
        typer.echo(update.model_dump_json())
        return
    task = update.task
    console.print(
        f"{update.position:>8} {task.updated_at.isoformat(timespec='seconds')} "
        f"{task.id} {task.agent_id} {update.event_type} -> {task.status.value}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _catch_up(ledger: TaskLedger, seconds: float) -> None:
    """Wait until the read model has applied the newest event, or warn."""
    head = ledger.lag().head
    try:
        ledger.wait_for_projection(head, timeout=seconds)
    except ProjectionLagError as error:
        error_console.print(
            f"warning: the answer may be out of date: {error}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _print_model(title: str, model: BaseModel) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in model.model_dump().items():
        # Each duration carries its own unit, so the label drops "_ms".
        table.add_row(name.removesuffix("_ms"), _format(name, value))
    console.print(table)


def _format(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith("_ms") and isinstance(value, int | float):
        return format_milliseconds(value)
    if name.endswith("_rate") and isinstance(value, float):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return json.dumps(value, default=str)
