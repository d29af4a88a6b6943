"""Read task_updates: the rows after a position, the head, and the pruned range.

The projector writes one task_updates row per applied event, in position order,
and retention deletes the oldest rows as a prefix (every row at or below some
position). A reader that follows positions therefore gets every row after its
position. When retention has deleted some of them, `pruned_through` reveals
the gap, so it is never silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, Connection, sql
from psycopg.rows import DictRow

from domain.errors import InvalidInputError
from domain.record import TaskRecord
from domain.status import TaskStatus
from domain.update import TaskUpdate, UpdatesPrunedError
from domain.values import optional_id


@dataclass(frozen=True)
class UpdateFilter:
    """Values a task must have, after the event, for its update to be delivered."""

    agent_id: str | None = None
    status: TaskStatus | None = None
    user_id: str | None = None
    task_type: str | None = None

    @classmethod
    def of(
        cls,
        agent_id: str | None = None,
        status: TaskStatus | str | None = None,
        user_id: str | None = None,
        task_type: str | None = None,
    ) -> UpdateFilter:
        """Validate the filter values; raise InvalidInputError on a bad one."""
        chosen_status = None
        if status is not None:
            try:
                chosen_status = TaskStatus(status)
            except ValueError:
                allowed = ", ".join(s.value for s in TaskStatus)
                raise InvalidInputError(
                    f"status filter {status!r} is not one of: {allowed}"
                ) from None
        return cls(
            agent_id=optional_id("agent_id", agent_id),
            status=chosen_status,
            user_id=optional_id("user_id", user_id),
            task_type=optional_id("task_type", task_type),
        )

    def matches(self, task: TaskRecord) -> bool:
        return all(
            getattr(task, name) == value for name, value in self.columns().items()
        )

    def columns(self) -> dict[str, str]:
        """The filtered columns of task_updates and the value each must have."""
        values = {
            "agent_id": self.agent_id,
            "status": None if self.status is None else self.status.value,
            "user_id": self.user_id,
            "task_type": self.task_type,
        }
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class UpdateTables:
    """Schema, task_updates table and projection name that readers use."""

    schema: str
    updates: str = "task_updates"
    projection: str = "agent_tasks"

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)


class UpdateQueries:
    """The SQL that readers of one task_updates table run."""

    def __init__(self, tables: UpdateTables) -> None:
        self.tables = tables
        updates = tables.table(tables.updates)
        events = tables.table("task_events")
        self.head = sql.SQL(
            "select coalesce(max(position), 0) as position from {}"
        ).format(events)
        self.bounds = sql.SQL(
            "select min(position) as oldest, max(position) as newest from {}"
        ).format(updates)
        # The highest event position whose update row is gone: the last event
        # below the oldest kept row or, when retention emptied the table, the
        # last event the projection applied.
        self.pruned_through = sql.SQL(
            "select coalesce(max(position), 0) as position from {events} "
            "where position < coalesce("
            " (select min(position) from {updates}),"
            " (select position + 1 from {checkpoints} where projection = %s),"
            " 1)"
        ).format(
            events=events,
            updates=updates,
            checkpoints=tables.table("projection_checkpoints"),
        )
        self._select = sql.SQL(
            "select position, event_type, task::text as task from {} "
            "where position > %s{} order by position limit %s"
        )

    def select_after(
        self, position: int, update_filter: UpdateFilter, limit: int
    ) -> tuple[sql.Composed, list[Any]]:
        conditions = [
            sql.SQL(" and {} = %s").format(sql.Identifier(name))
            for name in update_filter.columns()
        ]
        statement = self._select.format(
            self.tables.table(self.tables.updates), sql.SQL("").join(conditions)
        )
        return statement, [position, *update_filter.columns().values(), limit]


def update_from_row(row: DictRow) -> TaskUpdate:
    return TaskUpdate(
        task=TaskRecord.model_validate_json(row["task"]),
        event_type=row["event_type"],
        position=row["position"],
    )


def read_head(conn: Connection[DictRow], queries: UpdateQueries) -> int:
    """Return the position of the last committed event (0 for an empty ledger)."""
    row = conn.execute(queries.head).fetchone()
    return 0 if row is None else int(row["position"])


@dataclass(frozen=True)
class UpdateBatch:
    """Updates read after a position, and how far the read looked."""

    updates: list[TaskUpdate]
    # Every row up to this position was examined: a reader resumes after it,
    # even when the filter matched nothing there.
    through: int


def check_retained(
    conn: Connection[DictRow], queries: UpdateQueries, after: int
) -> None:
    """Raise UpdatesPrunedError if retention deleted updates after `after`."""
    with conn.transaction():
        conn.execute(_SNAPSHOT)
        _check_retained(conn, queries, after)


def read_updates(
    conn: Connection[DictRow],
    queries: UpdateQueries,
    after: int,
    update_filter: UpdateFilter,
    limit: int,
) -> UpdateBatch:
    """Return up to limit matching updates after a position, in position order.

    Raises UpdatesPrunedError when retention deleted updates after `after`. The
    check and the read share one snapshot, so a prune that commits between them
    cannot hide rows.
    """
    with conn.transaction():
        conn.execute(_SNAPSHOT)
        newest = _check_retained(conn, queries, after)
        statement, params = queries.select_after(after, update_filter, limit)
        rows = conn.execute(statement, params).fetchall()
    return _batch(rows, after, newest, limit)


async def aread_head(conn: AsyncConnection[DictRow], queries: UpdateQueries) -> int:
    """Return the position of the last committed event (0 for an empty ledger)."""
    cursor = await conn.execute(queries.head)
    row = await cursor.fetchone()
    return 0 if row is None else int(row["position"])


async def aread_updates(
    conn: AsyncConnection[DictRow],
    queries: UpdateQueries,
    after: int,
    update_filter: UpdateFilter,
    limit: int,
) -> UpdateBatch:
    """Async form of read_updates, with the same snapshot and pruning check."""
    async with conn.transaction():
        await conn.execute(_SNAPSHOT)
        bounds = await (await conn.execute(queries.bounds)).fetchone()
        if _may_be_pruned(bounds, after):
            cursor = await conn.execute(
                queries.pruned_through, (queries.tables.projection,)
            )
            _raise_if_pruned(await cursor.fetchone(), after)
        statement, params = queries.select_after(after, update_filter, limit)
        rows = await (await conn.execute(statement, params)).fetchall()
    return _batch(rows, after, _newest(bounds), limit)


# Both queries of a read must see the same committed rows.
_SNAPSHOT = "set transaction isolation level repeatable read, read only"


def _check_retained(
    conn: Connection[DictRow], queries: UpdateQueries, after: int
) -> int | None:
    bounds = conn.execute(queries.bounds).fetchone()
    if _may_be_pruned(bounds, after):
        row = conn.execute(
            queries.pruned_through, (queries.tables.projection,)
        ).fetchone()
        _raise_if_pruned(row, after)
    return _newest(bounds)


def _may_be_pruned(bounds: DictRow | None, after: int) -> bool:
    # Rows after `after` are all present when the oldest kept row is at or
    # below after + 1. Only otherwise is the slower pruned_through query needed
    # (positions may also skip numbers, where an append was rolled back).
    oldest = None if bounds is None else bounds["oldest"]
    return oldest is None or oldest > after + 1


def _newest(bounds: DictRow | None) -> int | None:
    return None if bounds is None else bounds["newest"]


def _raise_if_pruned(row: DictRow | None, after: int) -> None:
    pruned_through = 0 if row is None else int(row["position"])
    if pruned_through > after:
        raise UpdatesPrunedError(after, pruned_through)


def _batch(
    rows: list[DictRow], after: int, newest: int | None, limit: int
) -> UpdateBatch:
    updates = [update_from_row(row) for row in rows]
    if len(rows) == limit and rows:
        return UpdateBatch(updates, int(rows[-1]["position"]))
    # A short read saw every row of the snapshot, up to the newest one.
    return UpdateBatch(updates, max(after, newest or 0))
