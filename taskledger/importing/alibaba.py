"""Read the pod list of Alibaba's GPU cluster trace (2023) as task histories.

Each row is one pod: created (pending) at creation_time, scheduled
(processing) at scheduled_time, and ended at deletion_time, where the row has
one, according to its final phase: Succeeded is completed, Failed is failed,
and Pending (never scheduled) and Running (deleted while running) are
cancelled. Times in the trace are seconds from the start of the trace; `epoch`
places that start.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from domain.status import TaskStatus
from domain.values import EARLIEST_TIME, LATEST_TIME, check_time_range, require_id
from taskledger.importing.records import (
    Entry,
    ReadRules,
    Rejected,
    Transition,
    task_uuid,
)
from taskledger.importing.sources import ImportFileError

ALIBABA_RULES = ReadRules()
AGENT_ID = "alibaba-gpu"
AGENT_NAME = "Alibaba GPU cluster"
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Each row yields up to three transitions; positions leave room for them.
_STEPS_PER_ROW = 3

_END_STATUS = {
    "Succeeded": TaskStatus.COMPLETED,
    "Failed": TaskStatus.FAILED,
    "Pending": TaskStatus.CANCELLED,
    "Running": TaskStatus.CANCELLED,
}
_REQUIRED = (
    "name",
    "qos",
    "pod_phase",
    "creation_time",
    "deletion_time",
    "scheduled_time",
)
_RESOURCES = ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec")


def read_alibaba(
    stream: IO[bytes], epoch: datetime = UNIX_EPOCH, name: str = "the file"
) -> Generator[Entry]:
    """Yield the transitions of every pod row, in row order.

    Raises ImportFileError, naming the file, when its header lacks a column.
    """
    # utf-8-sig drops the byte order mark that spreadsheet programs write.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        rows = csv.DictReader(text)
        missing = [name for name in _REQUIRED if name not in (rows.fieldnames or [])]
        if missing:
            raise ImportFileError(
                f"{name} is not an Alibaba pod list: its header (line 1) lacks "
                f"{', '.join(missing)}; check the file, or give the right "
                "--format (jsonl or xes)"
            )
        # Line 1 is the header, so the first pod is on line 2.
        for number, row in enumerate(rows, start=2):
            yield from _pod(row, number, epoch)
    finally:
        # The caller owns the binary stream: leave it open.
        text.detach()


def _pod(row: dict[str, Any], number: int, epoch: datetime) -> Iterator[Entry]:
    where = f"line {number}"
    position = number * _STEPS_PER_ROW
    try:
        # Trimmed and cleaned as in JSON Lines, so `history NAME` finds the pod.
        name = require_id("name", row["name"])
        created = _time(row, "creation_time", epoch)
        deleted = _optional_time(row, "deletion_time", epoch)
        scheduled = _optional_time(row, "scheduled_time", epoch)
    except ValueError as error:  # require_id raises InvalidInputError, a ValueError
        yield Rejected(position, where, str(error))
        return

    end = _END_STATUS.get(row["pod_phase"])
    if end is None:
        yield Rejected(position, where, f"pod_phase {row['pod_phase']!r} is unknown")
        return

    common: dict[str, Any] = {
        "external_id": name,
        "task_id": task_uuid(name),
        "where": where,
    }
    creation = {
        "agent_id": AGENT_ID,
        "agent_name": AGENT_NAME,
        "task_type": row["qos"] or "unknown",
        "user_id": None,
        "message": name,
    }
    resources = {key: row[key] for key in _RESOURCES if row.get(key)}

    yield Transition(
        line=position,
        status=TaskStatus.PENDING,
        occurred_at=created,
        creation=creation,
        metadata=resources,
        **common,
    )
    if scheduled is not None:
        yield Transition(
            line=position + 1,
            status=TaskStatus.PROCESSING,
            occurred_at=scheduled,
            **common,
        )

    if deleted is None:
        # The pod still existed when the trace ended.
        return
    reason = f"pod phase {row['pod_phase']} at deletion"
    yield Transition(
        line=position + 2,
        status=end,
        occurred_at=deleted,
        error_message=None if end is TaskStatus.COMPLETED else reason,
        **common,
    )


def _optional_time(
    row: dict[str, Any], column: str, epoch: datetime
) -> datetime | None:
    return _time(row, column, epoch) if row.get(column) else None


def _time(row: dict[str, Any], column: str, epoch: datetime) -> datetime:
    text = row.get(column) or ""
    try:
        seconds = int(text)
    except ValueError:
        raise ValueError(
            f"{column} {text!r} is not a whole number of seconds"
        ) from None
    try:
        return check_time_range(column, epoch + timedelta(seconds=seconds))
    except OverflowError:
        raise ValueError(
            f"{column} {text!r} is outside the supported range "
            f"{EARLIEST_TIME.isoformat()} to {LATEST_TIME.isoformat()}"
        ) from None
