"""Import the BPI Challenge 2013 incident log and check it against a plain reading.

Runs only when TASKLEDGER_REAL_LOGS names a folder that contains
bpic2013_incidents.xes.gz. The plain reading below applies the shipped
mapping's rules on its own, with the standard library's XML parser, so the two
sides share no code.
"""

from __future__ import annotations

import gzip
import os
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from taskledger import TaskLedger
from taskledger.importing import ImportFormat, ImportOptions, import_file, load_mapping

LOG_NAME = "bpic2013_incidents.xes.gz"
MAPPING = (
    Path(__file__).parents[2] / "examples" / "mappings" / "bpic2013_incidents.toml"
)
TERMINAL = {"completed", "failed", "cancelled"}
FIRST_STATUSES = {"pending", "processing", "cancelled"}
ALL_STATUSES = ("pending", "processing", "waiting", *sorted(TERMINAL))
# The transitions of the state machine, without retries (pending from anywhere).
ALLOWED = {
    "pending": {"processing", "cancelled"},
    "processing": {"waiting", "completed", "failed", "cancelled"},
    "waiting": {"processing", "completed", "failed", "cancelled"},
}


def real_log() -> Path:
    folder = os.environ.get("TASKLEDGER_REAL_LOGS")
    if not folder or not (Path(folder) / LOG_NAME).is_file():
        pytest.skip(f"TASKLEDGER_REAL_LOGS does not name a folder with {LOG_NAME}")
    return Path(folder) / LOG_NAME


def mapped_status(name: str | None, lifecycle: str | None) -> str | None:
    """The shipped mapping's rules, written out by hand."""
    if name == "Queued":
        return "pending"
    if name == "Accepted":
        return "waiting" if (lifecycle or "").startswith("Wait") else "processing"
    if name == "Completed":
        return "cancelled" if lifecycle == "Cancelled" else "completed"
    return None


@dataclass
class PlainTask:
    status: str | None = None
    last_time: datetime | None = None
    first_processing: datetime | None = None
    last_terminal: datetime | None = None


def plain_reading(path: Path) -> tuple[Counter[str], float]:
    """Return final statuses and the mean duration of completed tasks in ms."""
    namespace = "{http://www.xes-standard.org/}"
    finals: Counter[str] = Counter()
    durations: list[float] = []
    with gzip.open(path) as stream:
        for _, element in ET.iterparse(stream):  # noqa: S314 (a known public log)
            if element.tag != f"{namespace}trace":
                continue
            task = plain_task(element, namespace)
            element.clear()
            if task.status is None:
                continue
            finals[task.status] += 1
            if task.status == "completed" and task.first_processing is not None:
                assert task.last_terminal is not None
                span = task.last_terminal - task.first_processing
                durations.append(span.total_seconds() * 1000)
    return finals, sum(durations) / len(durations)


def plain_task(trace: Any, namespace: str) -> PlainTask:
    task = PlainTask()
    for event in trace.findall(f"{namespace}event"):
        values = {child.get("key"): child.get("value") for child in event}
        status = mapped_status(
            values.get("concept:name"), values.get("lifecycle:transition")
        )
        if status is None:
            continue
        moment = datetime.fromisoformat(str(values["time:timestamp"]))
        step(task, status, moment)
    return task


def step(task: PlainTask, status: str, moment: datetime) -> None:
    """Apply one mapped event under the mapping's rules, or drop it."""
    current = task.status
    if current is None:
        accepted = status in FIRST_STATUSES
    elif status == current:
        accepted = False  # collapse_repeats
    else:
        # pending is a retry from anywhere; after_terminal = "retry" reopens.
        accepted = (
            status == "pending" or current in TERMINAL or status in ALLOWED[current]
        )
    if not accepted or (task.last_time is not None and moment < task.last_time):
        return
    reopened = current in TERMINAL and status != "pending"
    if status == "processing" or reopened:
        task.first_processing = task.first_processing or moment
    task.status, task.last_time = status, moment
    if status in TERMINAL:
        task.last_terminal = moment


def ledger_reading(ledger: TaskLedger) -> tuple[Counter[str], float]:
    figures = ledger.get_statistics()
    finals = Counter(
        {
            status: getattr(figures, status)
            for status in ALL_STATUSES
            if getattr(figures, status)
        }
    )
    assert figures.avg_duration_ms is not None
    return finals, figures.avg_duration_ms


@pytest.mark.slow
def test_bpic2013_matches_plain_reading(ledger: TaskLedger) -> None:
    path = real_log()
    expected_finals, expected_mean = plain_reading(path)

    summary = import_file(
        ledger,
        path,
        ImportOptions(format=ImportFormat.XES, mapping=load_mapping(MAPPING)),
    )
    ledger.wait_for_projection(summary.last_position, timeout=120)
    finals, mean = ledger_reading(ledger)

    assert summary.imported > 40_000
    assert finals == expected_finals
    assert mean == pytest.approx(expected_mean, rel=1e-9)
    assert expected_finals["completed"] > 7000
