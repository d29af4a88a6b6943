"""get_statistics: sum the buckets that cover a window, and its partial hours.

The whole hours of a window come from the statistics tables, each span from
the coarsest grain that fits it. Whole months come from monthly rows, the days
at either side of them from daily rows, and the hours at either edge from
hourly rows. A window without bounds reads the all-time totals. The parts that
do not cover a whole hour, at most one partial hour at each edge, are counted
from agent_tasks. The cost therefore depends on the agents and task types,
on at most 46 hours and 60 days, on the months of the window, and on the
tasks of its partial hours, never on all tasks. All reads share one snapshot.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Composed, Identifier
from pydantic import BaseModel, ConfigDict

from domain.errors import InvalidInputError
from domain.values import require_aware
from projections.statistics import COUNTER_COLUMNS, STATUS_COLUMNS, created_hour
from projections.tables import ProjectionTables

# Relative error bound of p50/p95: (gamma - 1) / (gamma + 1) for the bin ratio
# gamma = 1.025 / 0.975 of the task_duration_bin SQL function.
PERCENTILE_RELATIVE_ERROR = 0.025

_ONE_HOUR = timedelta(hours=1)

# A range [start, end) of bucket starts at one grain of the statistics tables.
GrainRange = tuple[str, datetime | None, datetime | None]
# The ranges of a window without bounds, read from the all-time totals.
ALL_TIME: list[GrainRange] = [("all", None, None)]
# One SELECT of get_statistics and its parameters.
_Part = tuple[Composed, tuple[object, ...]]

# One row of counter sums for the tasks of the partial hours.
_PARTIAL_COUNTERS = """
count(*) filter (where status = 'pending') as pending,
count(*) filter (where status = 'processing') as processing,
count(*) filter (where status = 'waiting') as waiting,
count(*) filter (where status = 'completed') as completed,
count(*) filter (where status = 'failed') as failed,
count(*) filter (where status = 'cancelled') as cancelled,
count(*) filter (where attempts > 1) as retried,
count(duration_ms) filter (where status = 'completed') as duration_count,
coalesce(sum(duration_ms) filter (where status = 'completed'), 0) as duration_sum_ms,
count(wait_ms) as wait_count,
coalesce(sum(wait_ms), 0) as wait_sum_ms
"""


class TaskStatistics(BaseModel):
    """Figures over the tasks created in a window; null where nothing is counted.

    Counts are by current status. Durations and percentiles cover completed
    tasks, avg_wait_ms covers tasks that have started, failure_rate is failed /
    (completed + failed), retried counts tasks with more than one attempt.
    p50 and p95 are within 2.5% of the exact nearest-rank percentiles.
    """

    model_config = ConfigDict(frozen=True)

    total: int
    pending: int
    processing: int
    waiting: int
    completed: int
    failed: int
    cancelled: int
    avg_duration_ms: float | None
    p50_duration_ms: float | None
    p95_duration_ms: float | None
    avg_wait_ms: float | None
    failure_rate: float | None
    retried: int


@dataclass(frozen=True)
class StatisticsWindow:
    """A window [since, until) split into whole hours and partial-hour edges."""

    since: datetime | None
    until: datetime | None

    @classmethod
    def validated(cls, since: object, until: object) -> StatisticsWindow:
        """Check that both bounds are aware datetimes and since <= until."""
        start = None if since is None else require_aware("since", since)
        end = None if until is None else require_aware("until", until, end=True)
        if start is not None and end is not None and start > end:
            raise InvalidInputError(
                f"since {start.isoformat()} is later than until {end.isoformat()}"
            )
        return cls(start, end)

    @property
    def whole_hours(self) -> tuple[datetime | None, datetime | None] | None:
        """The [first, end) range of whole-hour buckets, or None if there are none."""
        first = None if self.since is None else _ceil_hour(self.since)
        end = None if self.until is None else created_hour(self.until)
        if first is not None and end is not None and first >= end:
            return None
        return first, end

    @property
    def grain_ranges(self) -> list[GrainRange]:
        """The buckets whose sum covers the whole hours, coarsest grain first."""
        hours = self.whole_hours
        if hours is None:
            return []
        if hours == (None, None):
            return ALL_TIME
        return _cover(*hours, grains=("month", "day", "hour"))

    @property
    def partial_ranges(self) -> list[tuple[datetime | None, datetime | None]]:
        """The [start, end) ranges read from agent_tasks."""
        hours = self.whole_hours
        if hours is None:
            return [(self.since, self.until)]
        first, end = hours
        ranges: list[tuple[datetime | None, datetime | None]] = []
        if self.since is not None and first is not None and self.since < first:
            ranges.append((self.since, first))
        if self.until is not None and end is not None and end < self.until:
            ranges.append((end, self.until))
        return ranges


def get_statistics(
    conn: Connection[DictRow],
    tables: ProjectionTables,
    window: StatisticsWindow,
    agent_id: str | None = None,
    task_type: str | None = None,
) -> TaskStatistics:
    filters = _filters(agent_id, task_type)
    with conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        # LOCK takes no snapshot, so a query that waits here behind a rebuild's
        # swap gets its snapshot afterwards; the order matches the swap's.
        conn.execute(tables.lock_read_model("access share"))
        # One statement sums the counters and one the histogram, each a UNION
        # ALL of the bucket rows and the partial hours.
        counter_parts: list[_Part] = []
        bin_parts: list[_Part] = []
        ranges = window.grain_ranges
        if ranges:
            counter_parts.append(_bucket_counters(tables, filters, ranges))
            bin_parts.append(_bucket_bins(tables, filters, ranges))
        for edge in window.partial_ranges:
            counter_parts.append(_partial_counters(tables, filters, edge))
            bin_parts.append(_partial_bins(tables, filters, edge))
        counters = _counter_rows(conn, counter_parts)
        bins = _bin_rows(conn, bin_parts)
    return _figures(counters, bins)


def nearest_rank(bins: Counter[float], fraction: float) -> float | None:
    """Return the value at rank ceil(fraction * n) of a histogram {value: count}."""
    total = sum(bins.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    running = 0
    for value in sorted(bins):
        running += bins[value]
        if running >= rank:
            return value
    raise AssertionError("a rank within the total is always reached")


def _figures(counters: Counter[str], bins: Counter[float]) -> TaskStatistics:
    completed = counters["completed"]
    failed = counters["failed"]
    finished = completed + failed
    return TaskStatistics(
        total=sum(counters[name] for name in STATUS_COLUMNS),
        pending=counters["pending"],
        processing=counters["processing"],
        waiting=counters["waiting"],
        completed=completed,
        failed=failed,
        cancelled=counters["cancelled"],
        avg_duration_ms=_ratio(counters["duration_sum_ms"], counters["duration_count"]),
        p50_duration_ms=nearest_rank(bins, 0.5),
        p95_duration_ms=nearest_rank(bins, 0.95),
        avg_wait_ms=_ratio(counters["wait_sum_ms"], counters["wait_count"]),
        failure_rate=_ratio(failed, finished),
        retried=counters["retried"],
    )


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


@dataclass(frozen=True)
class _Conditions:
    """A conjunction of SQL conditions with %s placeholders, and their values."""

    terms: tuple[Composable, ...] = ()
    params: tuple[object, ...] = ()

    def having(self, term: str, *params: object, column: str = "") -> _Conditions:
        composed = SQL(term).format(Identifier(column)) if column else SQL(term)
        return _Conditions((*self.terms, composed), (*self.params, *params))

    def within(
        self, column: str, bounds: tuple[datetime | None, datetime | None]
    ) -> _Conditions:
        start, end = bounds
        conditions = self
        if start is not None:
            conditions = conditions.having("{} >= %s", start, column=column)
        if end is not None:
            conditions = conditions.having("{} < %s", end, column=column)
        return conditions

    def covering(self, ranges: list[GrainRange]) -> _Conditions:
        """Return these conditions and that the grain and bucket fit one range."""
        arms: list[Composable] = []
        params: list[object] = []
        for grain, start, end in ranges:
            arm = _Conditions().having("grain = %s", grain)
            arm = arm.within("bucket", (start, end))
            arms.append(SQL("(") + SQL(" and ").join(arm.terms) + SQL(")"))
            params.extend(arm.params)
        either = SQL("(") + SQL(" or ").join(arms) + SQL(")")
        return _Conditions((*self.terms, either), (*self.params, *params))

    @property
    def where(self) -> Composable:
        if not self.terms:
            return SQL("")
        return SQL(" where ") + SQL(" and ").join(self.terms)


def _filters(agent_id: str | None, task_type: str | None) -> _Conditions:
    filters = _Conditions()
    if agent_id is not None:
        filters = filters.having("agent_id = %s", agent_id)
    if task_type is not None:
        filters = filters.having("task_type = %s", task_type)
    return filters


def _bucket_counters(
    tables: ProjectionTables,
    filters: _Conditions,
    ranges: list[GrainRange],
) -> _Part:
    sums = SQL(", ").join(
        SQL("coalesce(sum({0}), 0) as {0}").format(Identifier(name))
        for name in COUNTER_COLUMNS
    )
    table, conditions = tables.statistics_table, filters.covering(ranges)
    if ranges == ALL_TIME:
        table, conditions = tables.statistics_totals_table, filters
    query = SQL("select {} from {}{}").format(sums, table, conditions.where)
    return query, conditions.params


def _partial_counters(
    tables: ProjectionTables,
    filters: _Conditions,
    edge: tuple[datetime | None, datetime | None],
) -> _Part:
    conditions = filters.within("created_at", edge)
    query = SQL("select {} from {}{}").format(
        SQL(_PARTIAL_COUNTERS), tables.tasks_table, conditions.where
    )
    return query, conditions.params


def _bucket_bins(
    tables: ProjectionTables,
    filters: _Conditions,
    ranges: list[GrainRange],
) -> _Part:
    table, conditions = tables.duration_bins_table, filters.covering(ranges)
    if ranges == ALL_TIME:
        table, conditions = tables.duration_bins_totals_table, filters
    query = SQL(
        "select {value}(bin) as value, sum(tasks) as tasks from {table}{where} "
        "group by bin"
    ).format(
        value=tables.duration_bin_value_function,
        table=table,
        where=conditions.where,
    )
    return query, conditions.params


def _partial_bins(
    tables: ProjectionTables,
    filters: _Conditions,
    edge: tuple[datetime | None, datetime | None],
) -> _Part:
    conditions = (
        filters.having("status = 'completed'")
        .having("duration_ms is not null")
        .within("created_at", edge)
    )
    query = SQL(
        "select {value}({bin}(duration_ms)) as value, count(*) as tasks "
        "from {table}{where} group by 1"
    ).format(
        value=tables.duration_bin_value_function,
        bin=tables.duration_bin_function,
        table=tables.tasks_table,
        where=conditions.where,
    )
    return query, conditions.params


def _counter_rows(conn: Connection[DictRow], parts: list[_Part]) -> Counter[str]:
    """Run the parts as one statement and add up the counter rows they return."""
    counters: Counter[str] = Counter()
    if not parts:
        return counters
    for row in conn.execute(*_union(parts)).fetchall():
        counters.update({name: int(row[name]) for name in COUNTER_COLUMNS})
    return counters


def _bin_rows(conn: Connection[DictRow], parts: list[_Part]) -> Counter[float]:
    """Run the parts as one statement and add up the tasks of each bin value."""
    bins: Counter[float] = Counter()
    if not parts:
        return bins
    for row in conn.execute(*_union(parts)).fetchall():
        bins[float(row["value"])] += int(row["tasks"])
    return bins


def _union(parts: list[_Part]) -> tuple[Composed, tuple[object, ...]]:
    query = SQL(" union all ").join(query for query, _ in parts)
    params = tuple(param for _, values in parts for param in values)
    return query, params


def _ceil_hour(moment: datetime) -> datetime:
    start = created_hour(moment)
    return start if start == moment else start + _ONE_HOUR


def _cover(
    first: datetime | None, end: datetime | None, grains: tuple[str, ...]
) -> list[GrainRange]:
    """Split whole hours [first, end) into ranges of the coarsest grains that fit.

    The first grain takes the whole units inside the span; the parts before
    and after them are covered by the next grains in turn. An open bound
    stays open at every grain.
    """
    grain, finer = grains[0], grains[1:]
    if not finer:
        return [(grain, first, end)]
    start = None if first is None else _ceil(first, grain)
    stop = None if end is None else _floor(end, grain)
    if start is not None and stop is not None and start >= stop:
        return _cover(first, end, finer)
    ranges: list[GrainRange] = [(grain, start, stop)]
    if first is not None and start is not None and first < start:
        ranges += _cover(first, start, finer)
    if end is not None and stop is not None and stop < end:
        ranges += _cover(stop, end, finer)
    return ranges


def _floor(moment: datetime, grain: str) -> datetime:
    """Return the start of the UTC day or month that contains moment."""
    day = created_hour(moment).replace(hour=0)
    return day.replace(day=1) if grain == "month" else day


def _ceil(moment: datetime, grain: str) -> datetime:
    """Return the first start of a UTC day or month at or after moment."""
    start = _floor(moment, grain)
    if start == moment:
        return start
    if grain == "day":
        return start + timedelta(days=1)
    return (start + timedelta(days=32)).replace(day=1)
