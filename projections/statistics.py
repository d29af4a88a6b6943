"""Keep task statistics: counters and a duration histogram per hourly bucket.

Each task contributes to exactly one bucket: its agent_id, task_type and
created hour in UTC. There it adds one count under its current status, one
under retried when it has more than one attempt, its duration while it is
completed, and its wait once it has started. An event changes a task's
contribution, so the writer subtracts the task's contribution before the
event and adds the one after it.
A task that completes, is retried and completes again therefore counts one
duration, its latest.

The writer sends hourly deltas; the upserts add each one at every grain of
GRAINS (hour, day and month) and to the all-time totals, so a query sums few
rows whatever the span of its window.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.record import TaskRecord
from domain.status import TaskStatus
from projections.changes import TaskChange
from projections.tables import ProjectionTables

STATUS_COLUMNS = tuple(status.value for status in TaskStatus)
COUNTER_COLUMNS = (
    *STATUS_COLUMNS,
    "retried",
    "duration_count",
    "duration_sum_ms",
    "wait_count",
    "wait_sum_ms",
)

# The grains of the statistics tables, finest first. task_statistics_bucket()
# in SQL maps a created time to its bucket at each. All-time figures are kept
# in the totals tables instead.
GRAINS = ("hour", "day", "month")

BucketKey = tuple[str, str, datetime]


def created_hour(moment: datetime) -> datetime:
    """Return the start of the UTC hour that contains moment."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def bucket_key(record: TaskRecord) -> BucketKey:
    return (record.agent_id, record.task_type, created_hour(record.created_at))


def completed_duration(record: TaskRecord) -> int | None:
    """Return the duration the histogram counts: a completed task's, else None."""
    if record.status is TaskStatus.COMPLETED:
        return record.duration_ms
    return None


class StatisticsWriter:
    """Applies each change's statistics delta to the counters and the histogram."""

    def __init__(self, tables: ProjectionTables) -> None:
        columns = SQL(", ").join(Identifier(name) for name in COUNTER_COLUMNS)
        arrays = SQL(", ").join(SQL("%b::bigint[]") for _ in COUNTER_COLUMNS)
        additions = SQL(", ").join(
            SQL("{0} = s.{0} + excluded.{0}").format(Identifier(name))
            for name in COUNTER_COLUMNS
        )
        sums = SQL(", ").join(
            SQL("sum(d.{})").format(Identifier(name)) for name in COUNTER_COLUMNS
        )
        # ON CONFLICT may not update one row twice in a statement, and several
        # deltas can fall into one row: the hours of a day, the durations of a
        # bin. The rows are therefore grouped before each upsert. The totals
        # are written by a WITH clause, so a batch costs one statement for the
        # counters and one for the histogram.
        self.upsert_counters = SQL(
            "with d as (select * from unnest(%b::text[], %b::text[], "
            "%b::timestamptz[], {arrays}) as d(agent_id, task_type, bucket, "
            "{columns})), "
            "totals as (insert into {totals} as s (agent_id, task_type, {columns}) "
            "select d.agent_id, d.task_type, {sums} from d group by 1, 2 "
            "on conflict (agent_id, task_type) do update set {additions}) "
            "insert into {table} as s (agent_id, task_type, grain, bucket, {columns}) "
            "select d.agent_id, d.task_type, g.grain, {bucket}(g.grain, d.bucket), "
            "{sums} from d cross join unnest(%b::text[]) as g(grain) "
            "group by 1, 2, 3, 4 "
            "on conflict (agent_id, task_type, grain, bucket) do update set "
            "{additions}"
        ).format(
            arrays=arrays,
            columns=columns,
            totals=tables.statistics_totals_table,
            sums=sums,
            additions=additions,
            table=tables.statistics_table,
            bucket=tables.statistics_bucket_function,
        )
        self.upsert_bins = SQL(
            "with d as (select d.agent_id, d.task_type, d.bucket, "
            "{bin}(d.duration_ms) as bin, d.tasks from unnest(%b::text[], "
            "%b::text[], %b::timestamptz[], %b::bigint[], %b::bigint[]) "
            "as d(agent_id, task_type, bucket, duration_ms, tasks)), "
            "totals as (insert into {totals} as b (agent_id, task_type, bin, tasks) "
            "select agent_id, task_type, bin, sum(tasks) from d group by 1, 2, 3 "
            "on conflict (agent_id, task_type, bin) "
            "do update set tasks = b.tasks + excluded.tasks) "
            "insert into {table} as b (agent_id, task_type, grain, bucket, bin, tasks) "
            "select d.agent_id, d.task_type, g.grain, {bucket}(g.grain, d.bucket), "
            "d.bin, sum(d.tasks) from d cross join unnest(%b::text[]) as g(grain) "
            "group by 1, 2, 3, 4, 5 "
            "on conflict (agent_id, task_type, grain, bucket, bin) "
            "do update set tasks = b.tasks + excluded.tasks"
        ).format(
            bin=tables.duration_bin_function,
            totals=tables.duration_bins_totals_table,
            table=tables.duration_bins_table,
            bucket=tables.statistics_bucket_function,
        )

    def write(self, cursor: Cursor[DictRow], changes: list[TaskChange]) -> None:
        counters: dict[BucketKey, list[int]] = {}
        durations: Counter[tuple[BucketKey, int]] = Counter()
        for change in changes:
            # A task's agent, type and creation time never change, so the
            # record before an event falls into the same bucket as after it.
            key = bucket_key(change.after)
            counts = counters.get(key)
            if counts is None:
                counts = counters[key] = [0] * len(COUNTER_COLUMNS)
            if change.before is not None:
                _add_contribution(counts, change.before, -1)
                _add_duration(durations, key, change.before, -1)
            _add_contribution(counts, change.after, 1)
            _add_duration(durations, key, change.after, 1)
        self._write_counters(cursor, counters)
        self._write_durations(cursor, durations)

    def _write_counters(
        self, cursor: Cursor[DictRow], counters: dict[BucketKey, list[int]]
    ) -> None:
        rows = [(*key, *counts) for key, counts in counters.items() if any(counts)]
        if rows:
            cursor.execute(
                self.upsert_counters,
                [*(list(c) for c in zip(*rows, strict=True)), list(GRAINS)],
            )

    def _write_durations(
        self, cursor: Cursor[DictRow], durations: Counter[tuple[BucketKey, int]]
    ) -> None:
        rows = [
            (*key, duration, tasks)
            for (key, duration), tasks in durations.items()
            if tasks != 0
        ]
        if rows:
            cursor.execute(
                self.upsert_bins,
                [*(list(c) for c in zip(*rows, strict=True)), list(GRAINS)],
            )


def _add_contribution(counts: list[int], record: TaskRecord, sign: int) -> None:
    """Add what the task contributes to its bucket's counters, times sign."""
    counts[_STATUS_INDEX[record.status]] += sign
    if record.attempts > 1:
        counts[_RETRIED] += sign
    if completed_duration(record) is not None:
        counts[_DURATION_COUNT] += sign
        counts[_DURATION_SUM] += sign * (record.duration_ms or 0)
    if record.wait_ms is not None:
        counts[_WAIT_COUNT] += sign
        counts[_WAIT_SUM] += sign * record.wait_ms


def _add_duration(
    durations: Counter[tuple[BucketKey, int]],
    key: BucketKey,
    record: TaskRecord,
    sign: int,
) -> None:
    """Add the task's completed duration, if any, to the histogram, times sign."""
    duration = completed_duration(record)
    if duration is not None:
        durations[(key, duration)] += sign


_STATUS_INDEX = {status: STATUS_COLUMNS.index(status.value) for status in TaskStatus}
# The indexes of the counters after the statuses, in COUNTER_COLUMNS order.
_RETRIED, _DURATION_COUNT, _DURATION_SUM, _WAIT_COUNT, _WAIT_SUM = range(
    len(STATUS_COLUMNS), len(COUNTER_COLUMNS)
)
