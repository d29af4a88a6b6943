"""`taskledger import FILE`: import task histories with a progress bar."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from domain.errors import ProjectionLagError, StorageError
from taskledger.cli_common import (
    CommandFailedError,
    aware_datetime,
    console,
    describe_error,
    error_console,
    fail,
    open_ledger,
    reported_errors,
    settings_of,
)
from taskledger.importing import (
    DEFAULT_BATCH_SIZE,
    ImportFormat,
    ImportOptions,
    ImportSummary,
    Rejected,
    detect_format,
    import_file,
    load_mapping,
)
from taskledger.importing.alibaba import UNIX_EPOCH
from taskledger.ledger import TaskLedger

DEFAULT_MAX_REPORTS = 100
# After the import, how often the progress of the projection is shown, and
# how long it may stand still before the command stops waiting for it.
PROJECTION_POLL_SECONDS = 0.5
STALLED_SECONDS = 30.0


@reported_errors
def import_command(
    context: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="File to import: JSON Lines (.jsonl or .ndjson), an XES log "
            "(.xes) or Alibaba's GPU pod list (.csv); gzip is detected.",
        ),
    ],
    file_format: Annotated[
        ImportFormat | None,
        typer.Option(
            "--format",
            help="Format of the file.",
            show_default="from the file name",
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            help="TOML file that maps XES attributes to task statuses and fields "
            "(required for XES).",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Stop at the first invalid entry and exit with code 1, instead "
            "of reporting and skipping it.",
        ),
    ] = False,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Name recorded with each imported event, by which a re-run "
            "recognises what it imported before.",
            show_default="the file name",
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            max=10_000,
            help="Transitions appended per transaction.",
        ),
    ] = DEFAULT_BATCH_SIZE,
    epoch: Annotated[
        datetime | None,
        typer.Option(
            "--epoch",
            parser=aware_datetime,
            metavar="TIME",
            help="Time that second 0 of an Alibaba trace stands for, with a UTC "
            "offset, e.g. 2023-01-01T00:00:00+00:00.",
            show_default="1970-01-01T00:00:00+00:00",
        ),
    ] = None,
    max_reports: Annotated[
        int,
        typer.Option(
            "--max-reports",
            min=0,
            help="Number of rejected entries listed on standard error; the "
            "summary counts them all.",
        ),
    ] = DEFAULT_MAX_REPORTS,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
) -> None:
    """Import task transitions from a file; a re-run appends nothing new."""
    options = _options(file, file_format, mapping, strict, source, batch_size, epoch)
    reporter = _Reporter(max_reports)
    started = time.monotonic()
    with open_ledger(settings_of(context)) as ledger, _progress(as_json) as progress:
        bar = progress.add_task(
            "importing", total=file.stat().st_size, entries=0, rate=0.0
        )

        latest: list[ImportSummary] = []

        def on_progress(summary: ImportSummary, done: int, total: int) -> None:
            latest[:] = [summary]
            entries = _entries(summary)
            rate = entries / max(time.monotonic() - started, 1e-9)
            progress.update(bar, completed=min(done, total), entries=entries, rate=rate)

        try:
            summary = import_file(
                ledger,
                file,
                options,
                on_rejected=reporter.report,
                on_progress=on_progress,
            )
            latest[:] = [summary]
            seconds = time.monotonic() - started
            progress.remove_task(bar)
            projected = _wait_for_projection(ledger, summary.last_position, progress)
        except KeyboardInterrupt:
            progress.stop()
            raise fail(_stopped_message("interrupted", latest), 130) from None
        except StorageError as error:
            # An outage mid-import: report what was kept, as for an interrupt.
            progress.stop()
            cause = (describe_error(error) or str(error)).rstrip(".")
            stopped = _stopped_message("The import stopped", latest)
            raise fail(f"{cause}. {stopped}") from None
        except SystemExit:
            # SIGTERM ends a command with SystemExit(143) (see cli.main).
            progress.stop()
            fail(_stopped_message("terminated", latest))
            raise
    reporter.finish()
    _print_summary(summary, seconds, as_json)
    if not projected:
        error_console.print(
            "warning: the read model has not applied every imported event yet; "
            "it catches up while a projector runs (`taskledger project`)",
            highlight=False,
        )
    if summary.stopped_at is not None:
        stop = summary.stopped_at
        raise CommandFailedError(
            f"{stop.where} is invalid: {stop.reason}; the import stopped there "
            "(entries before it were imported). Fix it, or drop --strict to skip "
            "invalid entries"
        )


def _options(
    file: Path,
    file_format: ImportFormat | None,
    mapping: Path | None,
    strict: bool,
    source: str | None,
    batch_size: int,
    epoch: datetime | None,
) -> ImportOptions:
    if not file.is_file():
        if file.exists():
            raise CommandFailedError(f"{file} is not a file; give a file to import")
        raise CommandFailedError(f"file {file} not found; check the path")
    chosen = file_format or detect_format(file)
    if chosen is None:
        raise CommandFailedError(
            f"the format of {file.name} is unknown; name it .jsonl, .ndjson, .xes "
            "or .csv (each optionally .gz), or give --format"
        )
    if chosen is ImportFormat.XES and mapping is None:
        raise CommandFailedError(
            "an XES import needs --mapping FILE.toml; see examples/mappings/"
        )
    _reject_unused_options(file, chosen, mapping, epoch)
    if epoch is not None and epoch.tzinfo is None:
        raise CommandFailedError("--epoch needs a UTC offset, e.g. +00:00")
    return ImportOptions(
        format=chosen,
        mapping=None if mapping is None else load_mapping(mapping),
        strict=strict,
        source=source,
        batch_size=batch_size,
        epoch=UNIX_EPOCH if epoch is None else epoch,
    )


_FORMAT_NAMES = {
    ImportFormat.JSONL: "JSON Lines",
    ImportFormat.XES: "an XES log",
    ImportFormat.ALIBABA: "an Alibaba pod list",
}


def _reject_unused_options(
    file: Path, chosen: ImportFormat, mapping: Path | None, epoch: datetime | None
) -> None:
    """Raise for an option that the chosen format would silently ignore."""
    read_as = f"{file.name} is read as {_FORMAT_NAMES[chosen]}"
    if mapping is not None and chosen is not ImportFormat.XES:
        raise CommandFailedError(
            f"--mapping applies only to XES logs, but {read_as}; drop --mapping "
            "or give --format xes"
        )
    if epoch is not None and chosen is not ImportFormat.ALIBABA:
        raise CommandFailedError(
            f"--epoch applies only to the Alibaba pod list, but {read_as}; drop "
            "--epoch or give --format alibaba"
        )


class _Reporter:
    """Lists rejected entries on standard error, up to a maximum."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def report(self, rejected: Rejected) -> None:
        self.count += 1
        if self.count <= self.limit:
            error_console.print(
                f"rejected {rejected.where}: {rejected.reason}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    def finish(self) -> None:
        if self.count > self.limit:
            error_console.print(
                f"... and {self.count - self.limit} more rejected entries "
                "(raise --max-reports to list them)",
                highlight=False,
            )


def _wait_for_projection(ledger: TaskLedger, position: int, progress: Progress) -> bool:
    """Wait until the read model has applied the events up to position.

    Returns False if the projection made no progress for STALLED_SECONDS,
    as when another process is the active projector and has stopped.
    """
    if position <= 0:
        return True
    bar = progress.add_task("projecting", total=position, entries=0, rate=0.0)
    started = time.monotonic()
    first = last = None
    moved_at = started
    while True:
        try:
            ledger.wait_for_projection(position, timeout=PROJECTION_POLL_SECONDS)
        except ProjectionLagError as lag:
            checkpoint = lag.checkpoint
        else:
            progress.update(bar, completed=position)
            return True
        now = time.monotonic()
        first = checkpoint if first is None else first
        if checkpoint != last:
            last, moved_at = checkpoint, now
        elif now - moved_at >= STALLED_SECONDS:
            return False
        applied = checkpoint - first
        rate = applied / max(now - started, 1e-9)
        progress.update(bar, completed=checkpoint, entries=applied, rate=rate)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[entries]:,} entries"),
        TextColumn("{task.fields[rate]:,.0f}/s"),
        TimeRemainingColumn(),
        console=error_console,
        transient=True,
        disable=quiet or not error_console.is_terminal,
    )


def _stopped_message(outcome: str, latest: list[ImportSummary]) -> str:
    imported = latest[0].imported if latest else 0
    if imported == 0:
        # A batch may have committed just before the signal, before it was
        # counted, so this does not claim that nothing was imported.
        return (
            f"{outcome} before the first batch was counted. Run the same command "
            "again to import the file; it skips any entries already imported"
        )
    entries = "entry was" if imported == 1 else "entries were"
    return (
        f"{outcome}: at least {imported:,} {entries} imported and kept. "
        "Run the same command again to import the rest; it skips the entries "
        "already imported"
    )


def _entries(summary: ImportSummary) -> int:
    return summary.imported + summary.skipped + summary.rejected + summary.ignored


def _print_summary(summary: ImportSummary, seconds: float, as_json: bool) -> None:
    rate = summary.imported / seconds if seconds > 0 else 0.0
    counts = {
        "imported": summary.imported,
        "skipped": summary.skipped,
        "rejected": summary.rejected,
        "ignored": summary.ignored,
        "seconds": round(seconds, 3),
        "imported_per_second": round(rate, 1),
    }
    if as_json:
        typer.echo(json.dumps(counts))
        return
    table = Table(show_header=False, title="Import summary", title_justify="left")
    table.add_column("count")
    table.add_column("value", justify="right")
    table.add_row("imported (appended)", f"{summary.imported:,}")
    table.add_row("skipped (already in the ledger)", f"{summary.skipped:,}")
    table.add_row("rejected (invalid)", f"{summary.rejected:,}")
    table.add_row("ignored (not a transition)", f"{summary.ignored:,}")
    table.add_row("time", f"{seconds:,.1f} s ({rate:,.0f} imported/s)")
    console.print(table)
