"""Fill a ledger schema with many tasks through the ledger's own append path.

Commands would take hours for a million tasks, so the loader decides each
task's whole lifecycle with the Task aggregate, encodes the events with the
ledger's mapper, and appends thousands of them per call to
TaskEventsRecorder.append, each with the time the plan gives it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from eventsourcing.persistence import StoredEvent

from bench.workload import TaskPlan, chunks, stored_events
from infrastructure.mapper import PydanticMapper
from infrastructure.recorders import AppendContext, TaskEventsRecorder
from taskledger.connect import Connection, connect

LOADER_CONTEXT = AppendContext(
    metadata={"actor": "bench-loader"}, use_database_clock=False
)


@dataclass(frozen=True)
class LoadResult:
    tasks: int
    events: int
    seconds: float


def open_ledger_store(url: str, schema: str) -> Connection:
    """Migrate schema and return the ledger's application on it, no projector."""
    return connect(url, schema, None, migrate=True)


def load_events(
    recorder: TaskEventsRecorder,
    plans: Iterator[TaskPlan],
    *,
    tasks_per_append: int = 2000,
    also: Sequence[Callable[[list[StoredEvent]], None]] = (),
    progress: Callable[[int, int], None] | None = None,
) -> LoadResult:
    """Append the plans' events in batches; also hand each batch to the callables."""
    mapper = PydanticMapper()
    tasks = 0
    events = 0
    started = time.perf_counter()
    for batch in chunks(plans, tasks_per_append):
        encoded = stored_events(batch, mapper)
        recorder.append(encoded, context=LOADER_CONTEXT)
        for sink in also:
            sink(encoded)
        tasks += len(batch)
        events += len(encoded)
        if progress is not None:
            progress(tasks, events)
    return LoadResult(tasks, events, time.perf_counter() - started)


def ledger_recorder(connection: Connection) -> TaskEventsRecorder:
    recorder = connection.app.recorder
    assert isinstance(recorder, TaskEventsRecorder)
    return recorder
