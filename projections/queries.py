"""Queries on the agent_tasks read model."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier
from pydantic import BaseModel, ConfigDict

from domain.errors import InvalidInputError, TaskNotFoundError
from domain.record import TaskRecord
from domain.status import TaskStatus
from domain.values import optional_id, require_aware
from projections.read_model import record_from_row
from projections.tables import ProjectionTables

MAX_PAGE_SIZE = 1000
MAX_OFFSET = 2**31 - 1


class TaskPage(BaseModel):
    """One page of a task list and the number of tasks that match in all.

    next_cursor, passed as `after`, gives the page after this one; it is None
    when this page has fewer tasks than the limit.
    """

    model_config = ConfigDict(frozen=True)

    tasks: list[TaskRecord]
    total: int
    next_cursor: str | None = None


# A cursor names the last task of a page by its place in the page order.
Cursor = tuple[datetime, int]
_MAX_CURSOR_LENGTH = 100


def encode_cursor(created_at: datetime, created_position: int) -> str:
    """Return the cursor after a task, as get_tasks orders them."""
    text = f"{created_at.isoformat()}|{created_position}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: object) -> Cursor:
    """Return the place a cursor names, or raise InvalidInputError."""
    invalid = InvalidInputError(
        f"after {cursor!r:.60} is not a cursor that get_tasks returned; pass a "
        "page's next_cursor"
    )
    if not isinstance(cursor, str) or not 0 < len(cursor) <= _MAX_CURSOR_LENGTH:
        raise invalid
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
        moment, position = text.split("|")
        created_at = datetime.fromisoformat(moment)
        created_position = int(position)
    except (ValueError, UnicodeError, binascii.Error):
        raise invalid from None
    if created_at.tzinfo is None or created_position < 0:
        raise invalid
    return created_at, created_position


@dataclass(frozen=True)
class TaskFilter:
    """The filters of a task list. created_after is inclusive, created_before not."""

    agent_id: str | None = None
    status: TaskStatus | None = None
    user_id: str | None = None
    task_type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    @classmethod
    def validated(
        cls,
        agent_id: object = None,
        status: object = None,
        user_id: object = None,
        task_type: object = None,
        created_after: object = None,
        created_before: object = None,
    ) -> TaskFilter:
        """Check and clean the filter values; raise InvalidInputError if invalid."""
        return cls(
            agent_id=optional_id("agent_id", agent_id),
            status=None if status is None else parse_status(status),
            user_id=optional_id("user_id", user_id),
            task_type=optional_id("task_type", task_type),
            created_after=_optional_time("created_after", created_after),
            created_before=_optional_time("created_before", created_before),
        )

    @property
    def counted_by_statistics(self) -> bool:
        """True when only agent, task type and status filter the tasks."""
        return (
            self.user_id is None
            and self.created_after is None
            and self.created_before is None
        )

    def where(self) -> tuple[Composed, list[object]]:
        terms: list[str] = []
        params: list[object] = []
        for column, value in (
            ("agent_id", self.agent_id),
            ("status", None if self.status is None else self.status.value),
            ("user_id", self.user_id),
            ("task_type", self.task_type),
        ):
            if value is not None:
                terms.append(f"{column} = %s")
                params.append(value)
        if self.created_after is not None:
            terms.append("created_at >= %s")
            params.append(self.created_after)
        if self.created_before is not None:
            terms.append("created_at < %s")
            params.append(self.created_before)
        if not terms:
            return Composed([]), params
        return Composed([SQL(" where " + " and ".join(terms))]), params


def parse_status(value: object) -> TaskStatus:
    if isinstance(value, str):
        try:
            return TaskStatus(value)
        except ValueError:
            pass
    allowed = ", ".join(status.value for status in TaskStatus)
    raise InvalidInputError(f"status {value!r} is not one of: {allowed}")


def check_page(limit: object, offset: object) -> tuple[int, int]:
    """Return (limit, offset) if limit is 1..MAX_PAGE_SIZE and offset >= 0."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInputError(f"limit must be an integer, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise InvalidInputError(f"offset must be an integer, got {offset!r}")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError(
            f"limit {limit} is out of range; use 1 to {MAX_PAGE_SIZE}"
        )
    if offset < 0:
        raise InvalidInputError(f"offset {offset} is negative; use 0 or more")
    if offset > MAX_OFFSET:
        raise InvalidInputError(f"offset {offset} is above the maximum {MAX_OFFSET}")
    return limit, offset


def _optional_time(name: str, value: object) -> datetime | None:
    return None if value is None else require_aware(name, value)


def get_task(
    conn: Connection[DictRow], tables: ProjectionTables, task_id: UUID
) -> TaskRecord:
    row = conn.execute(
        SQL("select * from {} where id = %s").format(tables.tasks_table), (task_id,)
    ).fetchone()
    if row is None:
        raise TaskNotFoundError(task_id)
    return record_from_row(row)


def page_statement(tables: ProjectionTables, where: Composed) -> Composed:
    """Select one page (limit, offset) of tasks, newest first."""
    return SQL(
        "select * from {}{} "
        "order by created_at desc, created_position desc limit %s offset %s"
    ).format(tables.tasks_table, where)


def _count_matches(
    conn: Connection[DictRow], tables: ProjectionTables, task_filter: TaskFilter
) -> int:
    """Count the tasks that match, from the all-time counters where they suffice.

    The projector counts every task by agent, task type and current status in
    the same transaction as agent_tasks. For filters on those columns alone,
    the sum of those counters equals a count of agent_tasks. Its cost grows
    with the number of agents and task types, not with the number of tasks.
    """
    if task_filter.counted_by_statistics:
        statement, params = _statistics_count(tables, task_filter)
    else:
        where, params = task_filter.where()
        statement = SQL("select count(*) as matches from {}{}").format(
            tables.tasks_table, where
        )
    row = conn.execute(statement, params).fetchone()
    return 0 if row is None or row["matches"] is None else int(row["matches"])


def _statistics_count(
    tables: ProjectionTables, task_filter: TaskFilter
) -> tuple[Composed, list[object]]:
    statuses = (
        [task_filter.status] if task_filter.status is not None else list(TaskStatus)
    )
    total = SQL(" + ").join(Identifier(status.value) for status in statuses)
    terms: list[Composed] = []
    params: list[object] = []
    for column, value in (
        ("agent_id", task_filter.agent_id),
        ("task_type", task_filter.task_type),
    ):
        if value is not None:
            terms.append(SQL("{} = %s").format(Identifier(column)))
            params.append(value)
    where = SQL(" where ") + SQL(" and ").join(terms) if terms else SQL("")
    statement = SQL("select sum({}) as matches from {}{}").format(
        total, tables.statistics_totals_table, where
    )
    return statement, params


def get_tasks(
    conn: Connection[DictRow],
    tables: ProjectionTables,
    task_filter: TaskFilter,
    limit: int,
    offset: int,
    after: Cursor | None = None,
) -> TaskPage:
    """Return the newest tasks first, with the total read in the same snapshot.

    The page and the count are two statements in one repeatable-read
    transaction. A window count on the page query would make PostgreSQL read
    every match in page order, while a separate count can use an index-only
    scan of the filter's index.
    """
    where, params = _after(*task_filter.where(), after)
    with conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        # LOCK takes no snapshot, so a query that waits here behind a rebuild's
        # swap gets its snapshot afterwards and reads the swapped-in rows. The
        # count may read the statistics, so they are locked too. Locking
        # agent_tasks alone and then the statistics could deadlock with a swap.
        conn.execute(tables.lock_read_model("access share"))
        rows = conn.execute(
            page_statement(tables, where), [*params, limit, offset]
        ).fetchall()
        if offset == 0 and after is None and len(rows) < limit:
            total = len(rows)
        else:
            total = _count_matches(conn, tables, task_filter)
    next_cursor = None
    if rows and len(rows) == limit:
        next_cursor = encode_cursor(
            rows[-1]["created_at"], rows[-1]["created_position"]
        )
    return TaskPage(
        tasks=[record_from_row(row) for row in rows],
        total=total,
        next_cursor=next_cursor,
    )


def _after(
    where: Composed, params: list[object], after: Cursor | None
) -> tuple[Composed, list[object]]:
    """Add the condition that keeps the tasks after a cursor, in page order."""
    if after is None:
        return where, params
    term = SQL("(created_at, created_position) < (%s, %s)")
    joined = where + SQL(" and ") + term if list(where) else SQL(" where ") + term
    return Composed([joined]), [*params, *after]
