from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from infrastructure.migrator import set_search_path
from projections.projector import TaskProjector
from projections.tables import ProjectionTables
from taskledger import InvalidInputError, TaskLedger
from tests.projections.helpers import (
    PERCENTILE_ERROR,
    assert_statistics_match,
    expected_statistics,
    fold_events,
    nearest_rank,
    table_rows,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIGRATIONS = Path(__file__).parents[2] / "infrastructure" / "migrations"
STATISTICS_MIGRATIONS = (
    MIGRATIONS / "20261204000004_task_statistics.sql",
    MIGRATIONS / "20261204000005_statistics_grains.sql",
)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def drift_case(ledger: TaskLedger) -> None:
    """One task fails, is retried and completes; one is cancelled; one runs."""
    retried = ledger.create_task("a", "A", "m", "chat", occurred_at=at(1))
    ledger.start_task(retried.id, occurred_at=at(2))
    ledger.fail_task(retried.id, "broke", occurred_at=at(3))
    ledger.retry_task(retried.id, occurred_at=at(4))
    ledger.start_task(retried.id, occurred_at=at(5))
    ledger.complete_task(retried.id, "ok", occurred_at=at(7))
    cancelled = ledger.create_task("a", "A", "m", "chat", occurred_at=at(8))
    ledger.cancel_task(cancelled.id, occurred_at=at(9))
    running = ledger.create_task("a", "A", "m", "chat", occurred_at=at(10))
    ledger.start_task(running.id, occurred_at=at(11))


def test_statistics_follow_current_status(ledger: TaskLedger) -> None:
    drift_case(ledger)

    figures = ledger.get_statistics()

    assert figures.total == 3
    assert figures.processing == 1
    assert figures.completed == 1
    assert figures.cancelled == 1
    assert figures.failed == 0
    assert figures.pending == 0
    assert figures.waiting == 0
    assert figures.retried == 1
    assert figures.failure_rate == 0.0
    # From the first start (minute 2) to the completion (minute 7).
    assert figures.avg_duration_ms == 5 * 60_000
    # Waits of the two started tasks: 1 minute each.
    assert figures.avg_wait_ms == 60_000


def test_statistics_same_after_rebuild_and_group_by(
    ledger: TaskLedger, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    drift_case(ledger)
    before = ledger.get_statistics()

    ledger.rebuild()

    assert ledger.get_statistics() == before
    grouped = dict(
        db.execute("select status, count(*) from agent_tasks group by status")
    )
    assert grouped == {"processing": 1, "completed": 1, "cancelled": 1}


def test_task_with_attempts_counts_once(ledger: TaskLedger) -> None:
    task = ledger.create_task("a", "A", "m", "chat", occurred_at=at(0))
    for attempt in range(3):
        ledger.start_task(task.id, occurred_at=at(10 * attempt + 1))
        ledger.complete_task(task.id, "ok", occurred_at=at(10 * attempt + 2))
        ledger.retry_task(task.id, occurred_at=at(10 * attempt + 3))
    ledger.start_task(task.id, occurred_at=at(40))
    ledger.complete_task(task.id, "ok", occurred_at=at(45))

    figures = ledger.get_statistics()

    assert figures.total == 1
    assert figures.completed == 1
    assert figures.retried == 1
    # The duration runs from the first start (minute 1) to the last completion.
    assert figures.avg_duration_ms == 44 * 60_000
    assert figures.p50_duration_ms is not None
    assert abs(figures.p50_duration_ms - 44 * 60_000) <= 0.025 * 44 * 60_000


def test_nothing_to_count_is_null(ledger: TaskLedger) -> None:
    ledger.create_task("a", "A", "m", "chat", occurred_at=at(0))

    figures = ledger.get_statistics()

    assert figures.total == 1
    assert figures.pending == 1
    assert figures.avg_duration_ms is None
    assert figures.p50_duration_ms is None
    assert figures.p95_duration_ms is None
    assert figures.avg_wait_ms is None
    assert figures.failure_rate is None
    assert ledger.get_statistics(agent_id="nobody").total == 0


def test_filters_by_agent_and_task_type(ledger: TaskLedger) -> None:
    ledger.create_task("a", "A", "m", "chat", occurred_at=at(0))
    ledger.create_task("a", "A", "m", "research", occurred_at=at(0))
    ledger.create_task("b", "B", "m", "chat", occurred_at=at(0))

    assert ledger.get_statistics(agent_id="a").total == 2
    assert ledger.get_statistics(task_type="chat").total == 2
    assert ledger.get_statistics(agent_id="a", task_type="chat").total == 1


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        # Partial hours at both edges, one whole hour between them.
        (at(30), at(150), {at(50), at(80), at(140)}),
        # Edges on the hour: buckets only.
        (at(0), at(120), {at(10), at(50), at(80)}),
        # Inside one hour.
        (at(20), at(55), {at(50)}),
        # Across one hour boundary without a whole hour.
        (at(45), at(125), {at(50), at(80)}),
        # Open ends.
        (None, at(60), {at(10), at(50)}),
        (at(81), None, {at(140), at(200)}),
        # An empty window.
        (at(50), at(50), set()),
    ],
)
def test_window_counts_tasks_created_inside(
    ledger: TaskLedger,
    since: datetime | None,
    until: datetime | None,
    expected: set[datetime],
) -> None:
    for minute in (10, 50, 80, 140, 200):
        ledger.create_task("a", "A", "m", "chat", occurred_at=at(minute))

    figures = ledger.get_statistics(since=since, until=until)

    assert figures.total == len(expected)
    assert figures.pending == len(expected)


def test_window_edges_read_partial_hours_exactly(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    for minute, run in ((5, 3), (59, 10), (61, 7), (119, 20), (121, 1)):
        task = ledger.create_task("a", "A", "m", "chat", occurred_at=at(minute))
        ledger.start_task(task.id, occurred_at=at(minute))
        ledger.complete_task(task.id, occurred_at=at(minute + run))
    records = [task.record for task in fold_events(database_url, schema).values()]

    for since, until in ((at(30), at(120.5)), (at(59), at(61.5)), (at(0), at(200))):
        assert_statistics_match(
            ledger.get_statistics(since=since, until=until),
            expected_statistics(records, since=since, until=until),
        )


def test_percentiles_within_error_bound(ledger: TaskLedger) -> None:
    durations = [0, 1, 2, 3, 7, 40, 999, 1000, 1001, 65_432, 3_600_000, 86_400_000]
    durations += [int(1.37**k) for k in range(60)]
    for number, duration in enumerate(durations):
        start = at(number)
        task = ledger.create_task("a", "A", "m", "chat", occurred_at=start)
        ledger.start_task(task.id, occurred_at=start)
        ledger.complete_task(
            task.id, occurred_at=start + timedelta(milliseconds=duration)
        )

    for first, last in ((0, 0), (0, 4), (5, 19), (0, len(durations) - 1)):
        subset = durations[first : last + 1]
        figures = ledger.get_statistics(since=at(first), until=at(last + 0.5))
        for estimate, fraction in (
            (figures.p50_duration_ms, 0.5),
            (figures.p95_duration_ms, 0.95),
        ):
            exact = nearest_rank(subset, fraction)
            assert exact is not None
            assert estimate is not None
            assert abs(estimate - exact) <= PERCENTILE_ERROR * exact + 1e-9


def test_naive_window_is_rejected(ledger: TaskLedger) -> None:
    with pytest.raises(InvalidInputError, match="time zone"):
        ledger.get_statistics(since=datetime(2026, 1, 1))
    with pytest.raises(InvalidInputError, match="time zone"):
        ledger.get_statistics(until=datetime(2026, 1, 1))


def test_reversed_window_is_rejected(ledger: TaskLedger) -> None:
    with pytest.raises(InvalidInputError, match="later than"):
        ledger.get_statistics(since=at(10), until=at(0))


def test_buckets_are_utc_in_any_time_zone(database_url: str, schema: str) -> None:
    with TaskLedger.open(database_url, schema=schema, project=False) as writer:
        writer.create_task("a", "A", "m", "chat", occurred_at=at(40))
    projector = TaskProjector(ProjectionTables(schema))

    with psycopg.connect(
        database_url,
        autocommit=True,
        row_factory=dict_row,
        options="-c timezone=Asia/Kolkata",
    ) as conn:
        projector.project_batch(conn)
        rows = conn.execute(
            sql.SQL("select grain, bucket from {}").format(
                sql.Identifier(schema, "task_statistics")
            )
        ).fetchall()

    assert {row["grain"]: row["bucket"] for row in rows} == {
        "hour": T0,
        "day": datetime(2026, 3, 2, tzinfo=UTC),
        "month": datetime(2026, 3, 1, tzinfo=UTC),
    }


def test_migration_backfills_existing_tasks(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    drift_case(ledger)
    ledger.get_statistics()  # waits for the projection of the writes above
    statistics = table_rows(database_url, schema, "task_statistics")
    bins = table_rows(database_url, schema, "task_duration_bins", "where tasks <> 0")

    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            set_search_path(conn, schema, local=True)
            conn.execute("delete from task_statistics")
            conn.execute("delete from task_duration_bins")
        with conn.transaction():
            set_search_path(conn, schema, local=True)
            conn.execute("set local timezone = 'Asia/Kolkata'")
            for migration in STATISTICS_MIGRATIONS:
                conn.execute(migration.read_text())  # type: ignore[call-overload]

    assert table_rows(database_url, schema, "task_statistics") == statistics
    assert (
        table_rows(database_url, schema, "task_duration_bins", "where tasks <> 0")
        == bins
    )


def statistics_tables(database_url: str, schema: str) -> dict[str, list[Any]]:
    nonzero = "where tasks <> 0"
    return {
        "task_statistics": table_rows(database_url, schema, "task_statistics"),
        "task_duration_bins": table_rows(
            database_url, schema, "task_duration_bins", nonzero
        ),
        "task_statistics_totals": table_rows(
            database_url, schema, "task_statistics_totals"
        ),
        "task_duration_bins_totals": table_rows(
            database_url, schema, "task_duration_bins_totals", nonzero
        ),
    }


def test_upgrade_from_hourly_rows_sums_the_coarser_grains(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    drift_case(ledger)
    ledger.create_task("b", "B", "m", "research", occurred_at=at(60 * 24 * 40))
    ledger.get_statistics()  # waits for the projection of the writes above
    expected = statistics_tables(database_url, schema)
    earlier = sorted(
        p for p in MIGRATIONS.glob("*.sql") if p < STATISTICS_MIGRATIONS[1]
    )
    upgraded = f"{schema}_upgraded"

    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(upgraded)))
            set_search_path(conn, upgraded)
            for migration in earlier:
                with conn.transaction():
                    conn.execute(migration.read_text())  # type: ignore[call-overload]
            # The hourly rows as the projector kept them before the upgrade.
            for table in ("task_statistics", "task_duration_bins"):
                columns = [
                    row[0]
                    for row in conn.execute(
                        "select column_name from information_schema.columns "
                        "where table_schema = %s and table_name = %s",
                        (upgraded, table),
                    )
                ]
                listed = sql.SQL(", ").join(map(sql.Identifier, columns))
                conn.execute(
                    sql.SQL(
                        "insert into {} ({}) select {} from {} where grain = 'hour'"
                    ).format(
                        sql.Identifier(upgraded, table),
                        listed,
                        listed,
                        sql.Identifier(schema, table),
                    )
                )
            with conn.transaction():
                conn.execute(STATISTICS_MIGRATIONS[1].read_text())  # type: ignore[call-overload]
            upgraded_rows = statistics_tables(database_url, upgraded)
        finally:
            conn.execute(
                sql.SQL("drop schema if exists {} cascade").format(
                    sql.Identifier(upgraded)
                )
            )

    assert upgraded_rows == expected
    # grain is the last column: the upgrade adds it to the hourly table.
    assert {row[-1] for row in expected["task_statistics"]} == {"hour", "day", "month"}
    assert len(expected["task_statistics_totals"]) == 2
