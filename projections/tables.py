"""Names of the tables one projection writes, so a rebuild can target copies."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.sql import Identifier

MAIN_PROJECTION = "agent_tasks"


@dataclass(frozen=True)
class ProjectionTables:
    """Where a projection keeps its rows, and the checkpoint row it advances."""

    schema: str
    projection: str = MAIN_PROJECTION
    tasks: str = "agent_tasks"
    updates: str | None = "task_updates"

    def table(self, name: str) -> Identifier:
        return Identifier(self.schema, name)

    @property
    def tasks_table(self) -> Identifier:
        return self.table(self.tasks)

    @property
    def checkpoints_table(self) -> Identifier:
        return self.table("projection_checkpoints")

    @property
    def events_table(self) -> Identifier:
        return self.table("task_events")

    @property
    def events_channel(self) -> str:
        """The channel the recorder notifies after each append."""
        return f"{self.schema}_task_events"

    @property
    def updates_channel(self) -> str:
        """The channel the projector notifies after each committed batch."""
        return f"{self.schema}_task_updates"
