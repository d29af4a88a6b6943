"""`taskledger demo`: a simulated agent fleet with a live view of the ledger."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from domain.status import TaskStatus
from taskledger.cli_common import (
    console,
    error_console,
    format_milliseconds,
    open_ledger,
    reported_errors,
    settings_of,
)
from taskledger.demo import FleetConfig, FleetSimulator, FleetTotals
from taskledger.demo.view import LedgerFigures, LedgerWatcher
from taskledger.ledger import TaskLedger

# Seconds that tasks still running at the end get to finish, after --seconds
# or --tasks and after Ctrl-C. The tasks still open then are cancelled.
DRAIN_SECONDS = 15.0
INTERRUPTED_DRAIN_SECONDS = 2.0
UNFINISHED_REASON = "the demo stopped before the task finished"
REFRESH_PER_SECOND = 4


@reported_errors
def demo(
    context: typer.Context,
    agents: Annotated[
        int, typer.Option("--agents", min=1, max=8, help="Number of agent services.")
    ] = 4,
    tasks: Annotated[
        int | None,
        typer.Option(
            "--tasks",
            min=1,
            help="Number of tasks to run.",
            show_default="no limit",
        ),
    ] = None,
    rate: Annotated[
        float,
        typer.Option("--rate", min=0.1, max=1000.0, help="New tasks per second."),
    ] = 5.0,
    seconds: Annotated[
        float | None,
        typer.Option(
            "--seconds",
            min=1.0,
            help="Stop creating tasks after this many seconds, let running tasks "
            "finish, print a summary and exit.",
            show_default="run until Ctrl-C or until --tasks are done",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, max=32, help="Threads that send events to the ledger."
        ),
    ] = 4,
    speed: Annotated[
        float,
        typer.Option(
            "--speed",
            min=0.1,
            max=100.0,
            help="How many times faster than real time the simulated tasks run "
            "(run times have medians of 0.6 s to 3.5 s at speed 1).",
        ),
    ] = 1.0,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed of the simulation's random choices."),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live/--no-live",
            help="Show the live view (only on a terminal).",
        ),
    ] = True,
) -> None:
    """Run a simulated fleet of agents that records its tasks in the ledger."""
    config = FleetConfig(
        agents=agents,
        tasks=tasks,
        rate=rate,
        workers=workers,
        seed=seed,
        speed=speed,
    )
    with open_ledger(settings_of(context)) as ledger:
        if not (live and console.is_terminal):
            _announce(ledger, seconds)
        simulator = FleetSimulator(ledger, config)
        watcher = LedgerWatcher(ledger)
        started = time.monotonic()
        try:
            cancelled, figures = _run(simulator, watcher, started, seconds, live)
        finally:
            watcher.close()
        _print_summary(simulator.snapshot(), figures, time.monotonic() - started)
    if cancelled:
        console.print(
            f"{cancelled} {'task was' if cancelled == 1 else 'tasks were'} still "
            "open at the end and cancelled.",
            highlight=False,
        )


def _announce(ledger: TaskLedger, seconds: float | None) -> None:
    """Print the demo's length and database, as nothing else shows until the end."""
    length = "until Ctrl-C" if seconds is None else f"for {seconds:g} s"
    error_console.print(
        f"The demo runs {length} on schema {ledger.schema} of {ledger.database}; "
        "its summary follows.",
        highlight=False,
        soft_wrap=True,
    )


def _run(
    simulator: FleetSimulator,
    watcher: LedgerWatcher,
    started: float,
    seconds: float | None,
    live: bool,
) -> tuple[int, LedgerFigures]:
    """Run the fleet under the live view until the end or Ctrl-C.

    Returns how many open tasks were cancelled at the end, and the last
    figures read.
    """
    figures = LedgerFigures()
    view: Live | _NoLive = _NoLive()
    if live and console.is_terminal:
        view = Live(console=console, refresh_per_second=REFRESH_PER_SECOND)
    with view:
        simulator.start()
        try:
            drain_seconds = DRAIN_SECONDS
            try:
                _show(simulator, watcher, view, started, seconds)
            except KeyboardInterrupt:
                drain_seconds = INTERRUPTED_DRAIN_SECONDS
            simulator.drain(drain_seconds)
        finally:
            simulator.stop()
        cancelled = simulator.cancel_unfinished(UNFINISHED_REASON)
        figures = watcher.read()
        view.update(_render(simulator.snapshot(), figures, started))
    return cancelled, figures


def _show(
    simulator: FleetSimulator,
    watcher: LedgerWatcher,
    view: Live | _NoLive,
    started: float,
    seconds: float | None,
) -> None:
    """Refresh the live view until the run is done."""
    figures = LedgerFigures()
    refreshes = 0
    while not _done(simulator, started, seconds):
        if refreshes % REFRESH_PER_SECOND == 0:
            figures = watcher.read()
        view.update(_render(simulator.snapshot(), figures, started))
        refreshes += 1
        time.sleep(1.0 / REFRESH_PER_SECOND)


class _NoLive:
    """Stands in for rich's Live when the output is not a terminal."""

    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def update(self, _: object) -> None:
        return None


def _done(simulator: FleetSimulator, started: float, seconds: float | None) -> bool:
    if seconds is not None and time.monotonic() - started >= seconds:
        return True
    return simulator.finished


def _render(totals: FleetTotals, figures: LedgerFigures, started: float) -> Group:
    elapsed = max(time.monotonic() - started, 1e-9)
    header = Table.grid(padding=(0, 2))
    header.add_row(
        f"[bold]{elapsed:,.0f} s[/]",
        f"{totals.created:,} tasks",
        f"{totals.events:,} events sent ({totals.events / elapsed:,.1f}/s)",
        f"{figures.events:,} events in the ledger",
        f"{totals.errors:,} errors",
    )
    statuses = Table(title="Tasks by status (simulator)", title_justify="left")
    for status in TaskStatus:
        statuses.add_column(status.value, justify="right")
    statuses.add_row(*(f"{totals.statuses[s]:,}" for s in TaskStatus))
    agents = Table(title="Tasks by agent", title_justify="left")
    agents.add_column("agent")
    agents.add_column("tasks", justify="right")
    for agent, count in sorted(totals.agents.items()):
        agents.add_row(agent, f"{count:,}")
    events_table, figures_table, updates = figures.renderables()
    middle = Table.grid(padding=(0, 2))
    middle.add_row(agents, events_table, figures_table)
    return Group(header, statuses, middle, updates)


def _print_summary(totals: FleetTotals, figures: LedgerFigures, seconds: float) -> None:
    table = Table(title="Demo summary", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("time", f"{seconds:,.1f} s")
    table.add_row("tasks created", f"{totals.created:,}")
    for status in TaskStatus:
        table.add_row(f"tasks {status.value}", f"{totals.statuses[status]:,}")
    table.add_row("retries", f"{totals.by_kind['retried']:,}")
    table.add_row("waits", f"{totals.by_kind['waiting']:,}")
    table.add_row("events sent", f"{totals.events:,}")
    table.add_row("events per second", f"{totals.events / max(seconds, 1e-9):,.1f}")
    table.add_row("events in the ledger", f"{figures.events:,}")
    table.add_row("errors", f"{totals.errors:,}")
    statistics = figures.statistics
    if statistics is not None:
        # Projected over every task in the schema, earlier runs included.
        for label, value in (
            ("mean duration (ledger)", statistics.avg_duration_ms),
            ("p50 duration (ledger)", statistics.p50_duration_ms),
            ("p95 duration (ledger)", statistics.p95_duration_ms),
        ):
            table.add_row(label, "-" if value is None else format_milliseconds(value))
    console.print(table)
