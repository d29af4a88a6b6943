"""Projection commands: `project` runs the projector, `rebuild` replays events."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated

import psycopg
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from infrastructure.errors import translated_errors
from infrastructure.migrator import apply_migrations
from infrastructure.settings import mask_conninfo
from projections.projector import BatchResult
from projections.rebuild import RebuildProgress
from projections.runner import run_projector
from taskledger.cli_common import (
    console,
    database_target,
    error_console,
    open_ledger,
    reported_errors,
    settings_of,
)


@reported_errors
def project(
    context: typer.Context,
    seconds: Annotated[
        float | None,
        typer.Option(
            "--seconds",
            min=0.1,
            help="Stop after this many seconds.",
            show_default="run until Ctrl-C",
        ),
    ] = None,
) -> None:
    """Keep the read model up to date, as the active projector or a standby."""
    stop = threading.Event()
    applied = [0, 0]

    def on_batch(batch: BatchResult) -> None:
        applied[0] += batch.events
        applied[1] = batch.last_position

    if seconds is not None:
        timer = threading.Timer(seconds, stop.set)
        timer.daemon = True
        timer.start()
    with database_target(settings_of(context)) as (url, schema):
        with (
            translated_errors(f"migrating {mask_conninfo(url)}"),
            psycopg.connect(url, autocommit=True, connect_timeout=10) as conn,
        ):
            apply_migrations(conn, schema)
        console.print(
            f"Projecting schema {schema} on {mask_conninfo(url)}; Ctrl-C stops.",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        try:
            with translated_errors("projecting"), _stop_on_sigterm(stop):
                run_projector(url, schema, stop, on_batch=on_batch)
        except KeyboardInterrupt:
            stop.set()
    summary = (
        f"Applied {applied[0]:,} events, up to position {applied[1]:,}."
        if applied[0]
        else "Applied no events: the read model had every event already, or "
        "another process was the active projector."
    )
    console.print(summary, highlight=False)


@contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """Set stop on SIGTERM, so that the command ends as after --seconds.

    Python can install signal handlers only in the main thread, so elsewhere
    SIGTERM keeps its previous handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@reported_errors
def rebuild(
    context: typer.Context,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", min=1, max=100_000, help="Events applied per transaction."
        ),
    ] = 5_000,
) -> None:
    """Replay every event into fresh read-model tables, then swap them in."""
    progress = Progress(
        TextColumn("rebuilding"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} events"),
        TextColumn("{task.fields[rate]:,.0f}/s"),
        TimeRemainingColumn(),
        console=error_console,
        transient=True,
        disable=not error_console.is_terminal,
    )
    started = time.monotonic()
    with open_ledger(settings_of(context), project=False) as ledger, progress:
        bar = progress.add_task("rebuild", total=None, rate=0.0)

        def report(step: RebuildProgress) -> None:
            total = step.events_done + step.remaining
            progress.update(
                bar, completed=step.events_done, total=total, rate=step.rate
            )

        result = ledger.rebuild(progress=report, batch_size=batch_size)
    resumed = " (resumed an interrupted rebuild)" if result.resumed else ""
    console.print(
        f"Rebuilt the read model from {result.events:,} events up to position "
        f"{result.position:,} in {time.monotonic() - started:,.1f} s{resumed}.",
        highlight=False,
    )
