"""Measure how far each projection's checkpoint is behind the head of task_events."""

from __future__ import annotations

from datetime import datetime

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL
from pydantic import BaseModel, ConfigDict

from projections.tables import ProjectionTables

# Per checkpoint row: the events after it, and the age (database clock) of the
# oldest of them. Both use the unique index on task_events.position.
_CHECKPOINT_LAG = """
select c.projection, c.position as checkpoint, c.updated_at,
    (select count(*) from {events} e where e.position > c.position) as events,
    coalesce(extract(epoch from clock_timestamp() - (
        select e.recorded_at from {events} e
        where e.position > c.position order by e.position limit 1
    )), 0)::float8 as seconds
from {checkpoints} c
order by c.projection
"""


class ProjectionLag(BaseModel):
    """One projection's checkpoint and how far it is behind the head."""

    model_config = ConfigDict(frozen=True)

    projection: str
    checkpoint: int
    events_behind: int
    # Age of the oldest event not yet projected; 0 when none is waiting.
    seconds_behind: float
    updated_at: datetime | None


class LagReport(BaseModel):
    """The head position of task_events and the lag of every projection."""

    model_config = ConfigDict(frozen=True)

    head: int
    projections: list[ProjectionLag]

    def projection(self, name: str) -> ProjectionLag:
        for lag in self.projections:
            if lag.projection == name:
                return lag
        raise KeyError(name)


def read_lag(conn: Connection[DictRow], tables: ProjectionTables) -> LagReport:
    """Return the lag of every checkpoint row, read in one snapshot.

    The main projection is listed at checkpoint 0 before its first batch.
    """
    with conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        head_row = conn.execute(
            SQL("select coalesce(max(position), 0) as head from {}").format(
                tables.events_table
            )
        ).fetchone()
        rows = conn.execute(
            SQL(_CHECKPOINT_LAG).format(
                events=tables.events_table, checkpoints=tables.checkpoints_table
            )
        ).fetchall()
        lags = [
            ProjectionLag(
                projection=row["projection"],
                checkpoint=row["checkpoint"],
                events_behind=row["events"],
                seconds_behind=max(0.0, row["seconds"]),
                updated_at=row["updated_at"],
            )
            for row in rows
        ]
        if all(lag.projection != tables.projection for lag in lags):
            lags.insert(0, _never_run(conn, tables))
    assert head_row is not None
    return LagReport(head=int(head_row["head"]), projections=lags)


def _never_run(conn: Connection[DictRow], tables: ProjectionTables) -> ProjectionLag:
    row = conn.execute(
        SQL(
            "select (select count(*) from {0}) as events, "
            "coalesce(extract(epoch from clock_timestamp() - (select recorded_at "
            "from {0} order by position limit 1)), 0)::float8 as seconds"
        ).format(tables.events_table)
    ).fetchone()
    assert row is not None
    return ProjectionLag(
        projection=tables.projection,
        checkpoint=0,
        events_behind=row["events"],
        seconds_behind=max(0.0, row["seconds"]),
        updated_at=None,
    )
