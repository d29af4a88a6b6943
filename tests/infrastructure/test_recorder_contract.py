"""eventsourcing's own recorder test cases, run against the task_events recorders.

Each test gets a new schema on the session's database with the migrations
applied, so positions start at 1 as the test cases expect.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    ProcessRecorder,
    TrackingRecorder,
)
from eventsourcing.tests import persistence as contract
from eventsourcing.utils import Environment

from infrastructure.datastore import LedgerDatastore
from infrastructure.persistence import Factory, TaskEventsProcessRecorder
from infrastructure.recorders import (
    CheckpointTrackingRecorder,
    TaskEventsAggregateRecorder,
    TaskEventsRecorder,
)
from infrastructure.settings import DatabaseSettings


class SchemaPerTest:
    """Gives each test a datastore on a schema of its own (dropped afterwards)."""

    datastore: LedgerDatastore

    @pytest.fixture(autouse=True)
    def _datastore(self, database_url: str, schema: str) -> Iterator[None]:
        self.database_url = database_url
        self.schema = schema
        self.datastore = LedgerDatastore(DatabaseSettings(database_url, schema))
        yield
        self.datastore.close()


class TestAggregateRecorder(SchemaPerTest, contract.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        recorder = TaskEventsAggregateRecorder(self.datastore)
        recorder.create_table()
        return recorder


class TestApplicationRecorder(SchemaPerTest, contract.ApplicationRecorderTestCase):
    def create_recorder(self) -> ApplicationRecorder:
        recorder = TaskEventsRecorder(self.datastore)
        recorder.create_table()
        return recorder

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestTrackingRecorder(SchemaPerTest, contract.TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        recorder = CheckpointTrackingRecorder(self.datastore)
        recorder.create_table()
        return recorder


class TestProcessRecorder(SchemaPerTest, contract.ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        recorder = TaskEventsProcessRecorder(self.datastore)
        recorder.create_table()
        return recorder


class TestNonInterleavingPositions(
    SchemaPerTest, contract.NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> ApplicationRecorder:
        recorder = TaskEventsRecorder(self.datastore)
        recorder.create_table()
        return recorder


class CheckpointTrackingSubclass(CheckpointTrackingRecorder):
    pass


class TestFactory(SchemaPerTest, contract.InfrastructureFactoryTestCase[Factory]):
    def setUp(self) -> None:
        self.env = Environment(
            "TestFactory",
            {
                "PERSISTENCE_MODULE": "infrastructure.persistence",
                "TASKLEDGER_DATABASE_URL": self.database_url,
                "TASKLEDGER_SCHEMA": self.schema,
            },
        )
        super().setUp()

    def expected_factory_class(self) -> type[Factory]:
        return Factory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return TaskEventsAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return TaskEventsRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return CheckpointTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return CheckpointTrackingSubclass

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return TaskEventsProcessRecorder
