"""Prototypes of changes to the hot paths, measured against the code as it is.

Nothing here is used by the ledger. Each prototype wraps the ledger's own
recorder or projector from outside, so a measured gain points at a change that
would go in infrastructure/recorders.py, taskledger/commands.py or
projections/read_model.py. The two variants run
in alternating short rounds on the same ledger, and the line reports the
median of the per-round ratios, because other processes on a small machine
can change its speed from one second to the next.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from bench.appends import LedgerWriter
from bench.baselines import PLAIN_INSERT, create_plain_table, plain_row
from bench.catchup import load_schema
from bench.database import BenchDatabase
from bench.results import Line
from bench.timing import rate
from bench.workload import plan_tasks, template_events
from infrastructure.event_rows import insert_parameters, source_parameters
from infrastructure.mapper import PydanticMapper
from infrastructure.recorders import AppendContext, AppendedEvent, TaskEventsRecorder
from projections.projector import TaskProjector
from projections.read_model import TaskRowWriter
from projections.tables import ProjectionTables
from taskledger import TaskLedger

Workers = list[Callable[[], int]]


class RawAppender:
    """Appends the template events, one per call, through a recorder's append()."""

    def __init__(self, append: Callable[..., Any], templates: list[StoredEvent]):
        self.append = append
        self.templates = templates
        self.task_id = uuid.uuid4()
        self.index = 0

    def __call__(self) -> int:
        if self.index == 0:
            self.task_id = uuid.uuid4()
        template = self.templates[self.index]
        event = StoredEvent(
            self.task_id, template.originator_version, template.topic, template.state
        )
        self.append([event], context=AppendContext())
        self.index = (self.index + 1) % len(self.templates)
        return 1


class GroupCommitter:
    """Appends the commands of concurrent callers in shared transactions.

    The first caller to find no append under way becomes the leader: it takes
    every waiting command and appends them all with append_commands() in one
    transaction, then hands each caller its own rows. Callers that arrive
    meanwhile wait for the next leader.
    """

    def __init__(self, recorder: TaskEventsRecorder) -> None:
        self.recorder = recorder
        self._lock = threading.Lock()
        self._turn = threading.Lock()
        self._waiting: list[_Request] = []
        self.batches = 0
        self.commands = 0

    def append(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        context: AppendContext | None = None,
        **_: Any,
    ) -> list[AppendedEvent]:
        request = _Request(stored_events, context or AppendContext())
        with self._lock:
            self._waiting.append(request)
        while not request.done.is_set():
            if self._turn.acquire(blocking=False):
                try:
                    self._lead()
                finally:
                    self._turn.release()
            else:
                request.done.wait(0.0005)
        if request.error is not None:
            raise request.error
        return request.rows

    def _lead(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        if not batch:
            return
        self.batches += 1
        self.commands += len(batch)
        try:
            rows = self.recorder.append_commands(
                [(request.events, request.context) for request in batch]
            )
        except Exception as error:
            # NOTE: a conflict rolls back the whole batch; the ledger would retry
            # the other commands alone. No conflict occurs in these runs.
            for request in batch:
                request.error = error
                request.done.set()
            return
        by_event = {(str(row.task_id), row.version): row for row in rows}
        for request in batch:
            request.rows = [
                by_event[(str(event.originator_id), event.originator_version)]
                for event in request.events
            ]
            request.done.set()


class _Request:
    def __init__(self, events: Sequence[StoredEvent], context: AppendContext):
        self.events = events
        self.context = context
        self.rows: list[AppendedEvent] = []
        self.error: BaseException | None = None
        self.done = threading.Event()


class _RecorderWithAppend:
    """The ledger's recorder, with append() replaced."""

    def __init__(self, recorder: TaskEventsRecorder, append: Callable[..., Any]):
        self._recorder = recorder
        self.append = append

    def __getattr__(self, name: str) -> Any:
        return getattr(self._recorder, name)


def generic_plans(recorder: TaskEventsRecorder) -> Callable[[], None]:
    """Make the recorder's pooled connections use generic plans; return an undo.

    With the default plan_cache_mode, PostgreSQL plans the append's INSERT
    anew at every execution when its generic plan looks costlier.
    """
    datastore = recorder.datastore
    original = datastore.get_connection
    configured: set[int] = set()

    @contextmanager
    def get_connection(*args: Any, **kwargs: Any) -> Iterator[Connection[Any]]:
        with original(*args, **kwargs) as conn:
            if id(conn) not in configured:
                conn.execute("set plan_cache_mode = force_generic_plan")
                configured.add(id(conn))
            yield conn

    datastore.get_connection = get_connection  # type: ignore[method-assign]

    def undo() -> None:
        datastore.get_connection = original  # type: ignore[method-assign]
        with original() as conn:
            conn.execute("reset plan_cache_mode")

    return undo


def compare(
    name: str,
    before: Workers,
    after: Workers,
    setup: Callable[[], AbstractContextManager[None]],
    *,
    rounds: int,
    seconds: float,
) -> Line:
    """Run before and after in alternating rounds; report the median ratio."""
    ratios = []
    before_rates = []
    after_rates = []
    for _ in range(rounds):
        before_rates.append(rate(before, seconds, warmup=0.2))
        with setup():
            after_rates.append(rate(after, seconds, warmup=0.2))
        ratios.append(after_rates[-1] / before_rates[-1])
    return Line(
        "P",
        name,
        "per s",
        statistics.median(after_rates),
        statistics.median(before_rates),
        "as it is",
        note=f"median ratio of {rounds} alternating rounds: "
        f"{statistics.median(ratios):.2f}",
    )


def measure_prototypes(
    database: BenchDatabase, seconds: float, seed: int, rounds: int = 7
) -> list[Line]:
    lines = []
    templates = template_events(PydanticMapper())
    with (
        database.schema("prototypes") as schema,
        TaskLedger.open(database.url, schema=schema, project=False) as ledger,
    ):
        recorder = ledger._connection.app.recorder
        assert isinstance(recorder, TaskEventsRecorder)
        commands = ledger._commands
        committer = GroupCommitter(recorder)
        share = seconds / rounds

        @contextmanager
        def generic() -> Iterator[None]:
            undo = generic_plans(recorder)
            try:
                yield
            finally:
                undo()

        @contextmanager
        def grouped() -> Iterator[None]:
            commands.recorder = _RecorderWithAppend(  # type: ignore[assignment]
                recorder, committer.append
            )
            try:
                yield
            finally:
                commands.recorder = recorder

        streams = iter(range(seed * 1000, seed * 1000 + 100))

        def writers(count: int) -> Workers:
            return [
                LedgerWriter(ledger, plan_tasks(10_000_000, seed=next(streams)))
                for _ in range(count)
            ]

        lines.append(
            compare(
                "appends, raw, 1 writer, generic plans",
                [RawAppender(recorder.append, templates)],
                [RawAppender(recorder.append, templates)],
                generic,
                rounds=rounds,
                seconds=share,
            )
        )
        lines.append(
            compare(
                "commands, 1 writer, generic plans",
                writers(1),
                writers(1),
                generic,
                rounds=rounds,
                seconds=share,
            )
        )
        lines.append(
            compare(
                "appends, raw, 4 writers, group commit",
                [RawAppender(recorder.append, templates) for _ in range(4)],
                [RawAppender(committer.append, templates) for _ in range(4)],
                _nothing,
                rounds=rounds,
                seconds=share,
            )
        )
        lines.append(
            compare(
                "commands, 4 writers, group commit",
                writers(4),
                writers(4),
                grouped,
                rounds=rounds,
                seconds=share,
            )
        )
        if committer.batches:
            lines[-1] = _with_note(
                lines[-1],
                f"{committer.commands / committer.batches:.1f} commands per "
                "transaction on average",
            )
    return lines


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _with_note(line: Line, note: str) -> Line:
    return replace(line, note=f"{line.note}; {note}")


def reset_projection(database: BenchDatabase, tables: ProjectionTables) -> None:
    """Empty the projection's tables and checkpoint so that it starts again."""
    names = [
        getattr(tables, field, None)
        for field in ("tasks", "updates", "statistics", "duration_bins")
    ]
    with database.connect(tables.schema) as conn:
        for name in names:
            if name:
                conn.execute(SQL("truncate {}").format(Identifier(tables.schema, name)))
        conn.execute(
            SQL("delete from {} where projection = %s").format(
                tables.checkpoints_table
            ),
            (tables.projection,),
        )


def rows_only(projector: TaskProjector) -> None:
    projector.writers = [
        writer for writer in projector.writers if isinstance(writer, TaskRowWriter)
    ]
    projector.update_writer = None


CATCHUP_VARIANTS: dict[str, Callable[[TaskProjector], None]] = {
    "agent_tasks only, no statistics or task_updates": rows_only,
}


def catchup_rate(
    database: BenchDatabase,
    tables: ProjectionTables,
    change: Callable[[TaskProjector], None] | None,
) -> float:
    """Project every event from the start; return events per second."""
    projector = TaskProjector(tables)
    if change is not None:
        change(projector)
    events = 0
    with psycopg.connect(database.url, autocommit=True, row_factory=dict_row) as conn:
        started = time.perf_counter()
        while (batch := projector.project_batch(conn)) is not None:
            events += batch.events
        return events / (time.perf_counter() - started)


def measure_catchup_prototypes(
    database: BenchDatabase, events: int, seed: int, rounds: int = 3
) -> list[Line]:
    """Compare catch-up as it is with each variant, in alternating rounds."""
    lines = []
    with database.schema("prototype_catchup") as schema:
        load_schema(database, schema, events, seed)
        tables = ProjectionTables(schema)
        for name, change in CATCHUP_VARIANTS.items():
            before_rates = []
            after_rates = []
            for _ in range(rounds):
                reset_projection(database, tables)
                before_rates.append(catchup_rate(database, tables, None))
                reset_projection(database, tables)
                after_rates.append(catchup_rate(database, tables, change))
            ratios = [a / b for a, b in zip(after_rates, before_rates, strict=True)]
            lines.append(
                Line(
                    "P",
                    f"catch-up over {events:,} events, {name}",
                    "events/s",
                    statistics.median(after_rates),
                    statistics.median(before_rates),
                    "as it is",
                    note=f"median ratio of {rounds} alternating rounds: "
                    f"{statistics.median(ratios):.2f}",
                )
            )
    return lines


def measure_statement_costs(
    database: BenchDatabase, rounds: int = 5, count: int = 300
) -> list[Line]:
    """Time one append statement against one plain INSERT on one connection.

    Each is timed in autocommit mode (a transaction per row) and inside one
    open transaction (no commit per row), which separates the statement's own
    cost from the commit's. Milliseconds per row, medians of alternating rounds.
    """
    templates = template_events(PydanticMapper())
    timings: dict[str, list[float]] = {}
    with (
        database.schema("statement_costs") as schema,
        TaskLedger.open(database.url, schema=schema, project=False) as ledger,
        database.connect(schema) as conn,
    ):
        recorder = ledger._connection.app.recorder
        assert isinstance(recorder, TaskEventsRecorder)
        create_plain_table(conn)
        created = templates[0]

        def ledger_row() -> None:
            event = StoredEvent(uuid.uuid4(), 1, created.topic, created.state)
            parameters = insert_parameters([([event], AppendContext())])
            conn.execute(
                recorder.insert_statements[1],
                source_parameters(parameters),
                prepare=True,
            )

        def plain_insert() -> None:
            conn.execute(
                PLAIN_INSERT,
                (uuid.uuid4(), *plain_row(created)[1:]),
                prepare=True,
            )

        cases = {"ledger append statement": ledger_row, "plain INSERT": plain_insert}
        for _ in range(rounds):
            for name, run in cases.items():
                for in_transaction in (False, True):
                    mode = "one open transaction" if in_transaction else "autocommit"
                    key = f"{name}, {mode}"
                    started = time.perf_counter()
                    if in_transaction:
                        with conn.transaction():
                            for _ in range(count):
                                run()
                    else:
                        for _ in range(count):
                            run()
                    elapsed = time.perf_counter() - started
                    timings.setdefault(key, []).append(elapsed / count * 1000)
    return [
        Line(
            "P",
            key,
            "ms per row",
            statistics.median(values),
            note=f"median of {rounds} rounds of {count} rows",
        )
        for key, values in timings.items()
    ]
