"""Names of the tables one projection writes, so a rebuild can target copies."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.sql import SQL, Composed, Identifier

MAIN_PROJECTION = "agent_tasks"
REBUILD_PROJECTION = "agent_tasks_rebuild"


@dataclass(frozen=True)
class ProjectionTables:
    """Where a projection keeps its rows, and the checkpoint row it advances."""

    schema: str
    projection: str = MAIN_PROJECTION
    tasks: str = "agent_tasks"
    updates: str | None = "task_updates"
    statistics: str = "task_statistics"
    duration_bins: str = "task_duration_bins"
    statistics_totals: str = "task_statistics_totals"
    duration_bins_totals: str = "task_duration_bins_totals"

    @classmethod
    def rebuild_copies(cls, schema: str) -> ProjectionTables:
        """The tables a rebuild fills before they replace the live ones.

        A rebuild writes no task_updates, so subscribers never see old changes
        again.
        """
        return cls(
            schema,
            projection=REBUILD_PROJECTION,
            tasks="agent_tasks_rebuild",
            updates=None,
            statistics="task_statistics_rebuild",
            duration_bins="task_duration_bins_rebuild",
            statistics_totals="task_statistics_totals_rebuild",
            duration_bins_totals="task_duration_bins_totals_rebuild",
        )

    @property
    def read_model_names(self) -> tuple[str, ...]:
        """The tables a rebuild replaces: the statistics tables, then tasks."""
        return (*self.statistics_names, self.tasks)

    def lock_read_model(self, mode: str) -> Composed:
        """Return a LOCK of every read_model_names table in the given mode.

        Readers and a rebuild's swap lock the tables with this one statement,
        so they take the locks in the same order and cannot deadlock.
        """
        tables = SQL(", ").join(self.table(name) for name in self.read_model_names)
        return SQL("lock table {} in {} mode").format(tables, SQL(mode))

    @property
    def statistics_names(self) -> tuple[str, str, str, str]:
        return (
            self.statistics,
            self.duration_bins,
            self.statistics_totals,
            self.duration_bins_totals,
        )

    def table(self, name: str) -> Identifier:
        return Identifier(self.schema, name)

    @property
    def tasks_table(self) -> Identifier:
        return self.table(self.tasks)

    @property
    def statistics_table(self) -> Identifier:
        return self.table(self.statistics)

    @property
    def duration_bins_table(self) -> Identifier:
        return self.table(self.duration_bins)

    @property
    def statistics_totals_table(self) -> Identifier:
        return self.table(self.statistics_totals)

    @property
    def duration_bins_totals_table(self) -> Identifier:
        return self.table(self.duration_bins_totals)

    @property
    def statistics_bucket_function(self) -> Identifier:
        """The SQL function that maps a grain and a created time to its bucket."""
        return self.table("task_statistics_bucket")

    @property
    def duration_bin_function(self) -> Identifier:
        """The SQL function that maps a duration in ms to its histogram bin."""
        return self.table("task_duration_bin")

    @property
    def duration_bin_value_function(self) -> Identifier:
        """The SQL function that returns the duration a histogram bin reports."""
        return self.table("task_duration_bin_value")

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
