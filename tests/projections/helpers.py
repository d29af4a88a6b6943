"""Test helpers: a plain fold of task_events, expected statistics, bulk appends.

The expected statistics are computed here from folded tasks, without the
projector's statistics code, so that a test can compare the two.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from domain.record import TaskRecord, evolve
from domain.status import TaskStatus
from domain.task import Task
from infrastructure.mapper import PydanticMapper
from infrastructure.recorders import AppendContext, TaskEventsRecorder
from projections.events import decode_event
from projections.read_model import record_from_row
from taskledger.connect import connect

PERCENTILE_ERROR = 0.025
STATISTICS_COLUMNS = (
    *(status.value for status in TaskStatus),
    "retried",
    "duration_count",
    "duration_sum_ms",
    "wait_count",
    "wait_sum_ms",
)


@dataclass(frozen=True)
class FoldedTask:
    record: TaskRecord
    created_position: int


def fold_events(database_url: str, schema: str) -> dict[UUID, FoldedTask]:
    """Fold every event of task_events, in position order, with evolve."""
    mapper = PydanticMapper()
    folded: dict[UUID, FoldedTask] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            sql.SQL(
                "select position, task_id, version, topic, payload::text as payload, "
                "state from {} order by position"
            ).format(sql.Identifier(schema, "task_events"))
        )
        for row in rows:
            before = folded.get(row["task_id"])
            record = evolve(
                None if before is None else before.record, decode_event(mapper, row)
            ).model_copy(update={"position": row["position"]})
            created = row["position"] if before is None else before.created_position
            folded[record.id] = FoldedTask(record, created)
    return folded


def projected_tasks(
    database_url: str, schema: str, table: str = "agent_tasks"
) -> dict[UUID, FoldedTask]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            sql.SQL("select * from {}").format(sql.Identifier(schema, table))
        ).fetchall()
    return {
        row["id"]: FoldedTask(record_from_row(row), row["created_position"])
        for row in rows
    }


def table_rows(
    database_url: str, schema: str, table: str, where: str = ""
) -> list[tuple[Any, ...]]:
    """Return a table's rows in a stable order, for comparing two tables."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            sql.SQL("select * from {} {}").format(
                sql.Identifier(schema, table), sql.SQL(where)
            )
        ).fetchall()
    return sorted(rows, key=repr)


def read_model(database_url: str, schema: str) -> dict[str, list[Any]]:
    return {
        "agent_tasks": table_rows(database_url, schema, "agent_tasks"),
        "task_statistics": table_rows(database_url, schema, "task_statistics"),
        # A bin that a later event emptied keeps a row with 0 tasks in the live
        # table; a rebuild that projects both events in one batch writes none.
        "task_duration_bins": table_rows(
            database_url, schema, "task_duration_bins", "where tasks <> 0"
        ),
        "task_statistics_totals": table_rows(
            database_url, schema, "task_statistics_totals"
        ),
        "task_duration_bins_totals": table_rows(
            database_url, schema, "task_duration_bins_totals", "where tasks <> 0"
        ),
    }


def nearest_rank(values: list[int], fraction: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def expected_statistics(
    tasks: Iterable[TaskRecord],
    agent_id: str | None = None,
    task_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Compute the statistics of get_statistics directly from task records."""
    chosen = [
        task
        for task in tasks
        if (agent_id is None or task.agent_id == agent_id)
        and (task_type is None or task.task_type == task_type)
        and (since is None or task.created_at >= since)
        and (until is None or task.created_at < until)
    ]
    counts = {
        status.value: sum(1 for t in chosen if t.status is status)
        for status in TaskStatus
    }
    durations = [
        t.duration_ms
        for t in chosen
        if t.status is TaskStatus.COMPLETED and t.duration_ms is not None
    ]
    waits = [t.wait_ms for t in chosen if t.wait_ms is not None]
    finished = counts["completed"] + counts["failed"]
    return {
        "total": len(chosen),
        **counts,
        "avg_duration_ms": sum(durations) / len(durations) if durations else None,
        "p50_duration_ms": nearest_rank(durations, 0.5),
        "p95_duration_ms": nearest_rank(durations, 0.95),
        "avg_wait_ms": sum(waits) / len(waits) if waits else None,
        "failure_rate": counts["failed"] / finished if finished else None,
        "retried": sum(1 for t in chosen if t.attempts > 1),
    }


def _grain_start(created: datetime, grain: str) -> datetime | None:
    if grain == "all":
        return None
    hour = created.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if grain == "hour":
        return hour
    day = hour.replace(hour=0)
    return day if grain == "day" else day.replace(day=1)


CounterKey = tuple[str, str, str, datetime | None]


def expected_counter_rows(
    tasks: Iterable[TaskRecord],
) -> dict[CounterKey, dict[str, int]]:
    """The statistics rows a plain fold gives, by agent, type, grain and start.

    The grain "all", with no start, is a row of task_statistics_totals.
    """
    rows: dict[CounterKey, dict[str, int]] = {}
    for task in tasks:
        completed = task.status is TaskStatus.COMPLETED and task.duration_ms is not None
        adds = {
            task.status.value: 1,
            "retried": int(task.attempts > 1),
            "duration_count": int(completed),
            "duration_sum_ms": (task.duration_ms or 0) if completed else 0,
            "wait_count": int(task.wait_ms is not None),
            "wait_sum_ms": task.wait_ms or 0,
        }
        for grain in ("hour", "day", "month", "all"):
            start = _grain_start(task.created_at, grain)
            key = (task.agent_id, task.task_type, grain, start)
            row = rows.setdefault(key, dict.fromkeys(STATISTICS_COLUMNS, 0))
            for name, value in adds.items():
                row[name] += value
    return rows


def projected_counter_rows(
    database_url: str, schema: str
) -> dict[CounterKey, dict[str, int]]:
    """task_statistics and task_statistics_totals, keyed as expected_counter_rows."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            sql.SQL(
                "select agent_id, task_type, grain, bucket, {columns} from {hourly} "
                "union all "
                "select agent_id, task_type, 'all', null, {columns} from {totals}"
            ).format(
                columns=sql.SQL(", ").join(map(sql.Identifier, STATISTICS_COLUMNS)),
                hourly=sql.Identifier(schema, "task_statistics"),
                totals=sql.Identifier(schema, "task_statistics_totals"),
            )
        ).fetchall()
    return {
        (row["agent_id"], row["task_type"], row["grain"], row["bucket"]): {
            name: int(row[name]) for name in STATISTICS_COLUMNS
        }
        for row in rows
    }


def assert_statistics_match(actual: Any, expected: dict[str, Any]) -> None:
    """Compare a TaskStatistics with expected_statistics(); percentiles by bound."""
    figures = actual.model_dump()
    for name in ("p50_duration_ms", "p95_duration_ms"):
        exact = expected[name]
        estimate = figures[name]
        if exact is None:
            assert estimate is None, name
        else:
            assert estimate is not None, name
            assert abs(estimate - exact) <= PERCENTILE_ERROR * exact + 1e-9, (
                name,
                estimate,
                exact,
            )
    for name in ("avg_duration_ms", "avg_wait_ms", "failure_rate"):
        if expected[name] is None:
            assert figures[name] is None, name
        else:
            assert figures[name] is not None, name
            assert math.isclose(figures[name], expected[name], rel_tol=1e-9), name
    for name, value in expected.items():
        if not name.endswith(("_ms", "_rate")):
            assert figures[name] == value, (name, figures[name], value)


# Bulk appends: whole random lifecycles decided by the aggregate, appended
# thousands of events per transaction through the ledger's recorder.

AGENTS = ("marketing", "sales", "support")
TASK_TYPES = ("generation", "analysis", "research", "chat")


def random_lifecycle(rng: random.Random, start: datetime) -> Task:
    task = Task.create(
        agent_id=rng.choice(AGENTS),
        agent_name="Agent",
        message="work",
        task_type=rng.choice(TASK_TYPES),
        timestamp=start,
    )
    moment = start
    for _ in range(rng.randint(0, 6)):
        moment += timedelta(milliseconds=rng.randint(0, 120_000))
        choices = _next_commands(task.status)
        name = rng.choice(choices)
        if name == "complete":
            task.complete(
                response="ok", response_data=None, metadata={}, timestamp=moment
            )
        elif name == "fail":
            task.fail(error_message="broke", metadata={}, timestamp=moment)
        elif name == "cancel":
            task.cancel(reason="stop", metadata={}, timestamp=moment)
        else:
            getattr(task, name)(metadata={"step": name}, timestamp=moment)
    return task


def _next_commands(status: TaskStatus) -> list[str]:
    if status is TaskStatus.PENDING:
        return ["start", "start", "cancel"]
    if status is TaskStatus.PROCESSING:
        return ["wait", "complete", "complete", "fail", "cancel", "retry"]
    if status is TaskStatus.WAITING:
        return ["start", "complete", "fail", "cancel", "retry"]
    return ["retry"]


def bulk_append(
    database_url: str,
    schema: str,
    tasks: int,
    *,
    seed: int,
    start: datetime,
    per_append: int = 500,
) -> int:
    """Migrate the schema, append random lifecycles; return the event count."""
    rng = random.Random(seed)  # noqa: S311 (test data, not secrets)
    connection = connect(database_url, schema, None, migrate=True, pool_size=1)
    mapper = PydanticMapper()
    context = AppendContext(use_database_clock=False)
    events = 0
    try:
        recorder = connection.app.recorder
        assert isinstance(recorder, TaskEventsRecorder)
        for chunk in _chunks(range(tasks), per_append):
            stored = [
                mapper.to_stored_event(event)
                for number in chunk
                for event in random_lifecycle(
                    rng, start + timedelta(seconds=number * 7)
                ).collect_events()
            ]
            recorder.append(stored, context=context)
            events += len(stored)
    finally:
        connection.app.close()
    return events


def _chunks(items: Iterable[int], size: int) -> Iterator[list[int]]:
    chunk: list[int] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
