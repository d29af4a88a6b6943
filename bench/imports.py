"""Figure 2: `taskledger import` of JSON Lines against COPY into a plain table.

The import runs as its own process, exactly as a user runs it, so its time
includes start-up, and its peak memory is that process's maximum resident
set size (from wait4). The baseline COPYs the same events (same task ids and
versions, payloads encoded by the ledger's mapper) into the plain table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.baselines import PLAIN_COPY, create_plain_table, plain_row
from bench.database import BenchDatabase
from bench.profiling import profiled
from bench.results import Line, below, ratio_at_least
from bench.workload import (
    MEAN_EVENTS_PER_TASK,
    TaskPlan,
    chunks,
    create_arguments,
    plan_tasks,
    step_arguments,
    stored_events,
)
from infrastructure.mapper import PydanticMapper
from taskledger import TaskLedger
from taskledger.importing import ImportFormat, ImportOptions, import_file, task_uuid

RATIO_TARGET = 0.25
MEMORY_TARGET_MB = 300.0
_STATUS_OF_STEP = {
    "create": "pending",
    "start": "processing",
    "complete": "completed",
    "fail": "failed",
    "retry": "pending",
    "wait": "waiting",
    "cancel": "cancelled",
}


def imported_plans(lines: int, seed: int) -> Iterator[tuple[str, TaskPlan]]:
    """Yield plans whose task ids are those the importer gives their external ids."""
    tasks = math.ceil(lines / MEAN_EVENTS_PER_TASK) + 100
    for plan in plan_tasks(tasks, seed=seed):
        external = f"job-{plan.task_id.hex[:16]}"
        yield external, dataclasses.replace(plan, task_id=task_uuid(external))


def transition_lines(external: str, plan: TaskPlan) -> list[tuple[datetime, str]]:
    """Return one JSON Lines line per step of a plan, with the step's time."""
    lines = []
    for step, moment in zip(plan.steps, plan.times, strict=True):
        document: dict[str, Any] = {
            "task_id": external,
            "status": _STATUS_OF_STEP[step],
            "occurred_at": moment.isoformat(),
        }
        if step == "create":
            arguments = create_arguments(plan)
        else:
            arguments = dict(step_arguments(step))
            if "reason" in arguments:
                arguments["error_message"] = arguments.pop("reason")
        document.update(arguments)
        lines.append((moment, json.dumps(document)))
    return lines


def write_files(directory: Path, lines: int, seed: int) -> tuple[Path, Path, int]:
    """Write the JSON Lines file and the equivalent COPY text; return both and count.

    Lines of tasks created close together interleave in time order, as in a log.
    """
    jsonl = directory / "transitions.jsonl"
    copy_text = directory / "events.copy"
    mapper = PydanticMapper()
    written = 0
    with jsonl.open("w") as lines_out, copy_text.open("w") as copy_out:
        for batch in chunks(imported_plans(lines, seed), 2000):
            timed = []
            for external, plan in batch:
                timed.extend(transition_lines(external, plan))
            timed.sort(key=lambda item: item[0])
            kept = min(len(timed), lines - written)
            lines_out.writelines(text + "\n" for _, text in timed[:kept])
            # The same tasks' events, cut at the same number of rows.
            events = stored_events([plan for _, plan in batch], mapper)[:kept]
            for event in events:
                task_id, version, event_type, payload = plain_row(event)
                copy_out.write(
                    f"{task_id}\t{version}\t{event_type}\t"
                    f"{_copy_escape(payload)}\t{_time_of(payload)}\n"
                )
            written += kept
            if written >= lines:
                break
    return jsonl, copy_text, written


def _copy_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _time_of(payload: str) -> str:
    return str(json.loads(payload)["timestamp"])


def run_import(database: BenchDatabase, schema: str, jsonl: Path) -> dict[str, Any]:
    """Run `taskledger import` in a child process; return its summary, time, RSS."""
    script = Path(sys.executable).with_name("taskledger")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "taskledger"]
    command += [
        "--database-url",
        database.url,
        "--schema",
        schema,
        "import",
        str(jsonl),
        "--json",
    ]

    started = time.perf_counter()
    with subprocess.Popen(  # noqa: S603 (fixed program, arguments from this module)
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        assert child.stdout is not None
        assert child.stderr is not None
        output = child.stdout.read()
        errors = child.stderr.read()

    if child.returncode != 0:
        raise RuntimeError(
            f"taskledger import exited {child.returncode}: {errors[-2000:]}"
        )
    summary: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    summary["wall_seconds"] = seconds
    # ru_maxrss is in KiB on Linux.
    summary["max_rss_mb"] = usage.ru_maxrss / 1024
    return summary


def copy_baseline(database: BenchDatabase, schema: str, copy_text: Path) -> float:
    with database.connect(schema) as conn:
        create_plain_table(conn)
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(PLAIN_COPY) as copy,
            copy_text.open("rb") as source,
        ):
            while block := source.read(1 << 20):
                copy.write(block)
        return time.perf_counter() - started


def profile_import(
    database: BenchDatabase, schema: str, jsonl: Path, directory: Path
) -> None:
    """Import in this process under pyinstrument (the CLI's code minus its output).

    The projector thread is off, so the profile shows the import alone.
    """
    with (
        TaskLedger.open(database.url, schema=schema, project=False) as ledger,
        profiled(directory, "import"),
    ):
        import_file(ledger, jsonl, ImportOptions(format=ImportFormat.JSONL))


def measure_import(
    database: BenchDatabase, lines: int, seed: int, profile_dir: Path | None = None
) -> list[Line]:
    with tempfile.TemporaryDirectory(prefix="taskledger-bench-") as directory:
        jsonl, copy_text, written = write_files(Path(directory), lines, seed)
        with database.schema("import_ledger") as schema:
            summary = run_import(database, schema, jsonl)
        with database.schema("import_copy") as schema:
            copy_seconds = copy_baseline(database, schema, copy_text)
        if profile_dir is not None:
            with database.schema("import_profile") as schema:
                profile_import(database, schema, jsonl, profile_dir)
    imported = int(summary["imported"])
    note = (
        f"{written:,} lines: imported {imported:,}, skipped {summary['skipped']}, "
        f"rejected {summary['rejected']}; process wall time "
        f"{summary['wall_seconds']:.1f} s, import's own time {summary['seconds']:.1f} s"
    )
    return [
        Line(
            "2",
            f"import of {written:,} JSONL transitions",
            "lines/s",
            written / summary["wall_seconds"],
            written / copy_seconds,
            "COPY into plain table",
            (ratio_at_least(RATIO_TARGET),),
            note,
        ),
        Line(
            "2",
            f"import of {written:,} JSONL transitions, peak memory",
            "MB (max RSS)",
            summary["max_rss_mb"],
            targets=(below(MEMORY_TARGET_MB),),
        ),
    ]
