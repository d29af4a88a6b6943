"""Queries on the agent_tasks read model."""

from __future__ import annotations

from uuid import UUID

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL

from domain.errors import TaskNotFoundError
from domain.record import TaskRecord
from projections.read_model import record_from_row
from projections.tables import ProjectionTables


def get_task(
    conn: Connection[DictRow], tables: ProjectionTables, task_id: UUID
) -> TaskRecord:
    row = conn.execute(
        SQL("select * from {} where id = %s").format(tables.tasks_table), (task_id,)
    ).fetchone()
    if row is None:
        raise TaskNotFoundError(task_id)
    return record_from_row(row)
