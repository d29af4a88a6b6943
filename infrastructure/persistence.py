"""An eventsourcing persistence module for the task_events table.

Select it with PERSISTENCE_MODULE=infrastructure.persistence and give the
database with TASKLEDGER_DATABASE_URL (and optionally TASKLEDGER_SCHEMA).
CREATE_TABLE (default yes) applies the ledger's migrations when a recorder is made.
Snapshots are not supported, because task_events contains events only.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    Mapper,
    ProcessRecorder,
    Tracking,
    Transcoder,
)
from eventsourcing.postgres import BasePostgresFactory, PostgresDatastore
from eventsourcing.utils import Environment, EnvType, resolve_topic, strtobool
from psycopg import Cursor
from psycopg.rows import DictRow

from domain.errors import ConfigurationError
from infrastructure.datastore import LedgerDatastore
from infrastructure.mapper import PydanticMapper
from infrastructure.recorders import (
    CheckpointTrackingRecorder,
    TaskEventsAggregateRecorder,
    TaskEventsRecorder,
)
from infrastructure.settings import (
    DATABASE_URL_VARIABLE,
    SCHEMA_VARIABLE,
    DatabaseSettings,
    check_connection_mode,
    validate_schema,
)


class TaskEventsProcessRecorder(
    CheckpointTrackingRecorder, TaskEventsRecorder, ProcessRecorder
):
    """Records events and a projection's checkpoint in one transaction.

    If either is rejected (a duplicate event, or a position at or below the
    checkpoint), neither is recorded.
    """

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore)

    def _insert_tracking_in(self, curs: Cursor[DictRow], tracking: Tracking) -> None:
        self._insert_tracking(curs, tracking)


class Factory(
    BasePostgresFactory[CheckpointTrackingRecorder],
    InfrastructureFactory[CheckpointTrackingRecorder],
):
    """Builds the ledger's recorders from the environment."""

    aggregate_recorder_class = TaskEventsAggregateRecorder
    application_recorder_class = TaskEventsRecorder
    tracking_recorder_class = CheckpointTrackingRecorder
    process_recorder_class = TaskEventsProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        InfrastructureFactory.__init__(self, env)
        url = self.env.get(DATABASE_URL_VARIABLE)
        if not url:
            raise ConfigurationError(
                f"{DATABASE_URL_VARIABLE} is not set; the persistence module needs "
                "a PostgreSQL URL"
            )
        check_connection_mode(url)
        schema = validate_schema(self.env.get(SCHEMA_VARIABLE) or "public")
        pool_size = int(self.env.get("POSTGRES_POOL_SIZE") or 4)
        self.datastore = LedgerDatastore(
            DatabaseSettings(url, schema), pool_size=pool_size
        )

    def env_create_table(self) -> bool:
        return strtobool(self.env.get(self.CREATE_TABLE) or "yes")

    def mapper(
        self,
        transcoder: Transcoder | None = None,
        mapper_class: type[Mapper[Any]] | None = None,
    ) -> Mapper[Any]:
        """Return a PydanticMapper, unless MAPPER_TOPIC or mapper_class names one."""
        if mapper_class is not None or self.env.get(self.MAPPER_TOPIC):
            return super().mapper(transcoder, mapper_class)
        return PydanticMapper(
            transcoder,
            cipher=self.cipher(),
            compressor=self.compressor(),
        )

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        if purpose != "events":
            raise ConfigurationError(
                f"the taskledger persistence module has no {purpose} table: "
                "task_events contains events only, so unset IS_SNAPSHOTTING_ENABLED "
                "and snapshotting_intervals"
            )
        recorder = TaskEventsAggregateRecorder(self.datastore)
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def application_recorder(self) -> ApplicationRecorder:
        topic = self.env.get(self.APPLICATION_RECORDER_TOPIC)
        recorder_class = resolve_topic(topic) if topic else TaskEventsRecorder
        recorder: TaskEventsRecorder = recorder_class(self.datastore)
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def tracking_recorder(
        self, tracking_recorder_class: type[CheckpointTrackingRecorder] | None = None
    ) -> CheckpointTrackingRecorder:
        if tracking_recorder_class is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            tracking_recorder_class = (
                resolve_topic(topic) if topic else CheckpointTrackingRecorder
            )
        assert tracking_recorder_class is not None
        recorder = tracking_recorder_class(self.datastore)
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def process_recorder(self) -> ProcessRecorder:
        topic = self.env.get(self.PROCESS_RECORDER_TOPIC)
        recorder_class = resolve_topic(topic) if topic else TaskEventsProcessRecorder
        recorder: TaskEventsProcessRecorder = recorder_class(self.datastore)
        if self.env_create_table():
            recorder.create_table()
        return recorder
