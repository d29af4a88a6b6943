"""Figure 3 (and 6): projector catch-up against a set-based SQL rebuild."""

from __future__ import annotations

import math
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from bench.database import BenchDatabase
from bench.loader import ledger_recorder, load_events, open_ledger_store
from bench.profiling import profiled
from bench.results import Line, at_least, ratio_at_least
from bench.workload import MEAN_EVENTS_PER_TASK, plan_tasks
from projections.projector import TaskProjector
from projections.read_model import TASK_COLUMNS
from projections.tables import ProjectionTables
from taskledger import TaskLedger

RATIO_TARGET = 0.2
RATE_TARGET = 20_000.0
SQL_DIR = Path(__file__).parent / "sql"
SETBASED_TABLE = "agent_tasks_setbased"
MERGE_AGGREGATE = "bench_jsonb_merge"


def load_schema(database: BenchDatabase, schema: str, events: int, seed: int) -> int:
    """Append about events events to a new ledger schema; return the exact count."""
    connection = open_ledger_store(database.url, schema)
    try:
        tasks = math.ceil(events / MEAN_EVENTS_PER_TASK)
        result = load_events(ledger_recorder(connection), plan_tasks(tasks, seed=seed))
    finally:
        connection.app.close()
    with database.connect(schema) as conn:
        conn.execute("vacuum analyze task_events")
    return result.events


def rebuild_set_based(conn: psycopg.Connection[object], schema: str) -> float:
    """Create agent_tasks_setbased, fill it in one statement; return seconds."""
    merge = Identifier(schema, MERGE_AGGREGATE)
    target = Identifier(schema, SETBASED_TABLE)
    conn.execute(
        SQL("create table {} (like {} including all)").format(
            target, Identifier(schema, "agent_tasks")
        )
    )
    conn.execute(SQL(_sql("setbased_merge.sql")).format(merge=merge))
    statement = SQL(_sql("setbased_rebuild.sql")).format(
        target=target, events=Identifier(schema, "task_events"), merge=merge
    )
    started = time.perf_counter()
    conn.execute(statement)
    return time.perf_counter() - started


def project_all(database: BenchDatabase, schema: str) -> float:
    """Run the ledger's projector over every event; return seconds."""
    projector = TaskProjector(ProjectionTables(schema))
    with psycopg.connect(database.url, autocommit=True, row_factory=dict_row) as conn:
        started = time.perf_counter()
        projector.catch_up(conn)
        return time.perf_counter() - started


def count_differences(conn: psycopg.Connection[object], schema: str) -> int:
    """Count rows that differ between the projector's table and the set-based one."""
    columns = SQL(", ").join(
        Identifier(name) for name in (*TASK_COLUMNS, "created_position")
    )
    query = SQL(
        "select count(*) from ("
        "(select {c} from {a} except all select {c} from {b}) union all "
        "(select {c} from {b} except all select {c} from {a})) d"
    ).format(
        c=columns,
        a=Identifier(schema, "agent_tasks"),
        b=Identifier(schema, SETBASED_TABLE),
    )
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[index]


def measure_catchup(
    database: BenchDatabase,
    events: int,
    seed: int,
    *,
    figure: str,
    profile_dir: Path | None = None,
) -> list[Line]:
    with database.schema(f"catchup_{events}") as schema:
        loaded = load_schema(database, schema, events, seed)
        with database.connect(schema) as conn:
            setbased = rebuild_set_based(conn, schema)
        with profiled(profile_dir, f"catchup_{events}"):
            projected = project_all(database, schema)
        with database.connect(schema) as conn:
            differences = count_differences(conn, schema)
        rebuilt = rebuild_seconds(database, schema)
    note = f"{loaded:,} events; set-based and projected rows differ in {differences}"
    lines = [
        Line(
            figure,
            f"catch-up over {loaded:,} events",
            "events/s",
            loaded / projected,
            loaded / setbased,
            "set-based SQL",
            (ratio_at_least(RATIO_TARGET), at_least(RATE_TARGET)),
            note,
        )
    ]
    if rebuilt is not None:
        lines.append(
            Line(
                figure,
                f"rebuild() over {loaded:,} events",
                "events/s",
                loaded / rebuilt,
                loaded / setbased,
                "set-based SQL",
                (ratio_at_least(RATIO_TARGET), at_least(RATE_TARGET)),
                "TaskLedger.rebuild(): replays into table copies, then swaps them in",
            )
        )
    return lines


def rebuild_seconds(database: BenchDatabase, schema: str) -> float | None:
    """Time TaskLedger.rebuild() on the loaded schema, if the ledger has it."""
    if not hasattr(TaskLedger, "rebuild"):
        return None
    with TaskLedger.open(database.url, schema=schema, project=False) as ledger:
        started = time.perf_counter()
        ledger.rebuild()
        return time.perf_counter() - started


def _sql(name: str) -> str:
    return (SQL_DIR / name).read_text()
