"""Figure 5: query latency on a ledger of many tasks, through the facade.

The tasks are appended in bulk by bench.loader (the ledger's own append path,
with the times the plans give), then a TaskLedger with its projector thread
catches up before any query runs. Each query runs repeatedly with varied
arguments on a warm connection pool; p50 and p95 are over those runs.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.database import BenchDatabase
from bench.loader import ledger_recorder, load_events, open_ledger_store
from bench.results import Line, below, ratio_below
from bench.timing import percentile
from bench.workload import AGENTS, plan_tasks
from taskledger import TaskLedger

P95_TARGET_MS = 5.0
STATISTICS_GROWTH_TARGET = 1.5
PAGE_SIZE = 50
# The plans end here (bench.workload.plan_tasks); a day window ends mid-hour so
# that its partial-hour edges are read as well as whole hourly buckets.
DATA_END = datetime(2026, 12, 1, tzinfo=UTC)
DAY_UNTIL = DATA_END - timedelta(hours=5, minutes=17)


@dataclass(frozen=True)
class Dataset:
    """A loaded and projected ledger schema."""

    schema: str
    tasks: int
    events: int
    load_seconds: float
    projection_seconds: float


def build_dataset(
    database: BenchDatabase, schema: str, tasks: int, seed: int
) -> Dataset:
    """Append tasks' events in bulk, then let a TaskLedger's projector catch up."""
    connection = open_ledger_store(database.url, schema)
    try:
        loaded = load_events(ledger_recorder(connection), plan_tasks(tasks, seed=seed))
    finally:
        connection.app.close()
    with database.connect(schema) as conn:
        conn.execute("vacuum analyze task_events")
        row = conn.execute("select max(position) from task_events").fetchone()
    assert row is not None
    head = int(row[0])
    started = time.perf_counter()
    with TaskLedger.open(database.url, schema=schema) as ledger:
        ledger.wait_for_projection(head, timeout=3600)
    projected = time.perf_counter() - started
    with database.connect(schema) as conn:
        conn.execute("vacuum analyze")
    return Dataset(schema, loaded.tasks, loaded.events, loaded.seconds, projected)


def time_calls(call: Callable[[int], object], repeats: int) -> list[float]:
    """Return the milliseconds of call(i) for each i below repeats, after warm-up."""
    for index in range(min(5, repeats)):
        call(index)
    timings = []
    for index in range(repeats):
        started = time.perf_counter()
        call(index)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def sample_ids(database: BenchDatabase, schema: str, count: int) -> list[Any]:
    with database.connect(schema) as conn:
        rows = conn.execute(
            "select id from agent_tasks order by md5(id::text) limit %s", (count,)
        ).fetchall()
    return [row[0] for row in rows]


def query_lines(
    database: BenchDatabase, dataset: Dataset, repeats: int, seed: int
) -> tuple[list[Line], float | None]:
    """Time each query; return the lines and the all-time statistics p50."""
    rng = random.Random(seed)
    ids = sample_ids(database, dataset.schema, repeats)
    label = f"{dataset.tasks:,} tasks"
    lines: list[Line] = []
    statistics_p50 = None
    with TaskLedger.open(database.url, schema=dataset.schema) as ledger:
        calls = _calls(ledger, ids, rng)
        for name, call, targeted in calls:
            if call is None:
                lines.append(Line("5", f"{name}, {label}", "ms", None, note=targeted))
                continue
            timings = time_calls(call, repeats)
            p50 = percentile(timings, 0.5)
            if name == "get_statistics, all time":
                statistics_p50 = p50
            lines.append(
                Line(
                    "5",
                    f"{name} p95, {label}",
                    "ms",
                    percentile(timings, 0.95),
                    targets=(below(P95_TARGET_MS),) if targeted else (),
                    note=f"p50 {p50:.2f} ms over {repeats} calls",
                )
            )
    return lines, statistics_p50


def _calls(
    ledger: TaskLedger, ids: list[Any], rng: random.Random
) -> list[tuple[str, Any, Any]]:
    """Return (name, call or None, targeted or the reason it is missing)."""
    agents = [agent_id for agent_id, _ in AGENTS]
    calls: list[tuple[str, Any, Any]] = []
    calls.append(("get_task", lambda i: ledger.get_task(ids[i % len(ids)]), True))
    if hasattr(ledger, "get_tasks"):
        get_tasks: Any = ledger.get_tasks
        first = get_tasks(agent_id="marketing", status="completed", limit=PAGE_SIZE)
        deep_offset = max(0, (int(first.total) * 9 // 10) // PAGE_SIZE * PAGE_SIZE)
        calls.append(
            (
                "get_tasks by agent and status, first page",
                lambda i: get_tasks(
                    agent_id=agents[i % len(agents)],
                    status=rng.choice(("completed", "pending", "failed")),
                    limit=PAGE_SIZE,
                ),
                True,
            )
        )
        calls.append(
            (
                f"get_tasks by agent and status, offset {deep_offset:,}",
                lambda i: get_tasks(
                    agent_id=agents[i % len(agents)],
                    status="completed",
                    limit=PAGE_SIZE,
                    offset=deep_offset,
                ),
                False,
            )
        )
    else:
        calls.append(("get_tasks", None, "TaskLedger.get_tasks is not available"))
    if hasattr(ledger, "get_history"):
        get_history: Any = ledger.get_history
        calls.append(("get_history", lambda i: get_history(ids[i % len(ids)]), True))
    else:
        calls.append(("get_history", None, "TaskLedger.get_history is not available"))
    if hasattr(ledger, "get_statistics"):
        get_statistics: Any = ledger.get_statistics
        since = DAY_UNTIL - timedelta(days=1)
        calls.append(
            (
                "get_statistics, one day",
                lambda i: get_statistics(
                    agent_id=agents[i % len(agents)], since=since, until=DAY_UNTIL
                ),
                True,
            )
        )
        calls.append(("get_statistics, all time", lambda i: get_statistics(), True))
    else:
        calls.append(
            ("get_statistics", None, "TaskLedger.get_statistics is not available")
        )
    return calls


def measure_queries(database: BenchDatabase, sizes: Any, seed: int) -> list[Line]:
    lines: list[Line] = []
    p50s: dict[int, float | None] = {}
    for tasks in (sizes.query_small_tasks, sizes.query_tasks):
        with database.schema(f"queries_{tasks}") as schema:
            dataset = build_dataset(database, schema, tasks, seed * 10 + len(p50s))
            measured, p50s[tasks] = query_lines(
                database, dataset, sizes.query_repeats, seed
            )
        lines.append(
            Line(
                "5",
                f"data set of {dataset.tasks:,} tasks, projector catch-up",
                "events/s",
                dataset.events / dataset.projection_seconds,
                note=(
                    f"{dataset.events:,} events appended in "
                    f"{dataset.load_seconds:.0f} s, projected in "
                    f"{dataset.projection_seconds:.0f} s"
                ),
            )
        )
        lines.extend(measured)
    small, large = p50s.get(sizes.query_small_tasks), p50s.get(sizes.query_tasks)
    if small is not None and large is not None and not math.isnan(small):
        lines.append(
            Line(
                "5",
                f"get_statistics all time p50, {sizes.query_tasks:,} vs "
                f"{sizes.query_small_tasks:,} tasks",
                "ms",
                large,
                small,
                f"p50 at {sizes.query_small_tasks:,} tasks",
                (ratio_below(STATISTICS_GROWTH_TARGET),),
            )
        )
    return lines
