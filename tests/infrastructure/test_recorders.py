"""task_events recorders beyond eventsourcing's contract: columns, times, atomicity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    IntegrityError,
    ProgrammingError,
    StoredEvent,
    Tracking,
)
from psycopg import sql

from domain.errors import ConfigurationError
from domain.task import Task
from infrastructure.datastore import LedgerDatastore
from infrastructure.event_rows import MAX_ROW_VALUES
from infrastructure.mapper import JsonStoredEvent, PydanticMapper, jsonb_text
from infrastructure.persistence import TaskEventsProcessRecorder
from infrastructure.recorders import (
    AppendContext,
    TaskEventsRecorder,
    append_lock_key,
    notification_channel,
)
from infrastructure.settings import DatabaseSettings
from taskledger import TaskLedger

Db = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture
def datastore(database_url: str, schema: str) -> Iterator[LedgerDatastore]:
    store = LedgerDatastore(DatabaseSettings(database_url, schema))
    yield store
    store.close()


@pytest.fixture
def recorder(datastore: LedgerDatastore) -> TaskEventsRecorder:
    created = TaskEventsRecorder(datastore)
    created.create_table()
    return created


def stored(
    state: bytes, version: int = 1, topic: str = "t:Task.Created"
) -> StoredEvent:
    return StoredEvent(
        originator_id=uuid4(), originator_version=version, topic=topic, state=state
    )


def columns(db: Db, event: StoredEvent) -> tuple[Any, ...]:
    row = db.execute(
        "select payload is not null, state is not null from task_events "
        "where task_id = %s and version = %s",
        (event.originator_id, event.originator_version),
    ).fetchone()
    assert row is not None
    return row


CANONICAL_STATES = [
    b"{}",
    b'{"a": 1, "bb": [1.5, null, true], "ccc": {"x": "\\u001f\xc3\xa9"}}',
    b'{"timestamp": "not a time"}',
    # A backslash and then u0000 as text, not the escape that jsonb rejects.
    b'{"a": "\\\\u0000", "b": "\\\\\\\\u0000"}',
]
OTHER_STATES = [
    b"state1",
    b'{"a":1}',
    b'{"b": 1, "a": 2}',
    b'{"a": 1, "a": 2}',
    b'{"a": 1e2}',
    b'{"a": NaN}',
    b'{"a": "\\u0000"}',
    b'{"a": "\\\\\\u0000"}',
    b'{"a": "\\ud800"}',
    b'{"a": "\\ud83d\\ude00"}',
    b'{"a": 1e-20000}',
    b'{"a": 0.' + b"0" * 20000 + b"1}",
    b"[1, 2]",
    b"{\xff}",
    b'{"a": ' * 3000 + b"1" + b"}" * 3000,
    '{"a": 1}'.encode("utf-16-le"),
]


@pytest.mark.parametrize("state", CANONICAL_STATES + OTHER_STATES)
def test_state_reads_back_byte_for_byte(
    recorder: TaskEventsRecorder, state: bytes
) -> None:
    event = stored(state)

    [position] = recorder.insert_events([event]) or []

    assert recorder.select_events(event.originator_id) == [event]
    [notification] = recorder.select_notifications(position, 1)
    assert notification.state == state


@pytest.mark.parametrize("count", [3, MAX_ROW_VALUES, MAX_ROW_VALUES + 2])
def test_appends_of_any_size_store_each_event_alike(
    recorder: TaskEventsRecorder, db: Db, count: int
) -> None:
    # Up to MAX_ROW_VALUES events are sent as rows of values, more as arrays.
    states = (CANONICAL_STATES + OTHER_STATES) * 2
    events = [stored(state) for state in states[:count]]

    positions = recorder.insert_events(events) or []

    assert positions == sorted(positions)
    for appended, position in zip(events, positions, strict=True):
        assert recorder.select_events(appended.originator_id) == [appended]
        [notification] = recorder.select_notifications(position, 1)
        assert notification.originator_id == appended.originator_id
        as_payload = appended.state in CANONICAL_STATES
        assert columns(db, appended) == (as_payload, not as_payload)


@pytest.mark.parametrize("state", CANONICAL_STATES)
def test_jsonb_form_is_kept_as_payload(
    recorder: TaskEventsRecorder, db: Db, state: bytes
) -> None:
    event = stored(state)

    recorder.insert_events([event])

    assert columns(db, event) == (True, False)


@pytest.mark.parametrize("state", OTHER_STATES)
def test_other_states_are_kept_as_bytes(
    recorder: TaskEventsRecorder, db: Db, state: bytes
) -> None:
    event = stored(state)

    recorder.insert_events([event])

    assert columns(db, event) == (False, True)


def test_mapper_state_stored_like_parsed_state(
    recorder: TaskEventsRecorder, db: Db
) -> None:
    mapper = PydanticMapper()
    fields = {
        "agent_id": "a",
        "agent_name": "A",
        "message": "m",
        "task_type": "chat",
        "user_id": "u1",
        "metadata": {"f": 0.1, "n": 2**60, "s": "\u00e9\u001f", "big": 1e20},
        "timestamp": datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
    }
    [first] = Task.create(**fields).collect_events()
    [second] = Task.create(**fields).collect_events()
    mapped = mapper.to_stored_event(first)
    state = mapper.to_stored_event(second)
    plain = StoredEvent(state.originator_id, 1, state.topic, state.state)
    context = AppendContext(use_database_clock=False)

    recorder.append([mapped], context=context)
    recorder.append([plain], context=context)
    rows = db.execute(
        "select payload, user_id, occurred_at, event_type, state "
        "from task_events order by position"
    ).fetchall()

    assert isinstance(mapped, JsonStoredEvent)
    assert rows[0] == rows[1]
    assert rows[0][1] == "u1"
    assert rows[0][2] == fields["timestamp"]
    assert rows[0][4] is None


def test_ledger_events_are_payloads(ledger: TaskLedger, db: Db) -> None:
    task = ledger.create_task("a", "A", "m", "chat", "u1", {"f": 0.1, "n": 2**60})
    ledger.start_task(task.id, {"step": 1e-7})
    ledger.complete_task(task.id, "done", {"deep": [{"x": -0.0}]})

    rows = db.execute(
        "select version, payload is not null, state is null, user_id "
        "from task_events order by version"
    ).fetchall()

    assert rows == [(1, True, True, "u1"), (2, True, True, "u1"), (3, True, True, "u1")]


def test_database_clock_sets_payload_timestamp(
    recorder: TaskEventsRecorder, db: Db
) -> None:
    event = stored(jsonb_text({"timestamp": "2000-01-01T00:00:00+00:00"}).encode())

    [appended] = recorder.append([event], context=AppendContext())

    [read] = recorder.select_events(event.originator_id)
    timestamp = datetime.fromisoformat(json.loads(read.state)["timestamp"])
    assert timestamp == appended.occurred_at
    assert appended.occurred_at.year > 2000


def test_event_time_is_kept_without_database_clock(
    recorder: TaskEventsRecorder, db: Db
) -> None:
    state = jsonb_text({"timestamp": "2000-01-01T00:00:00Z"}).encode()
    event = stored(state)

    [appended] = recorder.append(
        [event], context=AppendContext(use_database_clock=False)
    )

    assert appended.occurred_at == datetime(2000, 1, 1, tzinfo=UTC)
    assert recorder.select_events(event.originator_id)[0].state == state


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+14:00", "1850-06-01T00:00:00Z", "2300-01-01T00:00Z"]
)
def test_event_time_out_of_range_takes_database_clock(
    recorder: TaskEventsRecorder, moment: str
) -> None:
    state = jsonb_text({"timestamp": moment}).encode()
    event = stored(state)
    before = datetime.now(UTC)

    [appended] = recorder.append(
        [event], context=AppendContext(use_database_clock=False)
    )

    assert appended.occurred_at >= before - timedelta(minutes=1)
    assert recorder.select_events(event.originator_id)[0].state == state


def test_database_clock_never_precedes_previous_event(
    recorder: TaskEventsRecorder,
) -> None:
    future = "2199-01-01T00:00:00+00:00"
    first = stored(jsonb_text({"timestamp": future}).encode())
    second = StoredEvent(first.originator_id, 2, "t:Task.Started", b"{}")
    recorder.append([first], context=AppendContext(use_database_clock=False))

    [appended] = recorder.append([second], context=AppendContext())

    assert appended.occurred_at == datetime.fromisoformat(future)


def test_idempotency_key_goes_on_last_event(
    recorder: TaskEventsRecorder, db: Db
) -> None:
    first = stored(b"{}")
    second = StoredEvent(first.originator_id, 2, "t:Task.Started", b"{}")
    context = AppendContext(metadata={"actor": "w"}, idempotency_key="k1")

    recorder.append([first, second], context=context)

    rows = db.execute("select metadata from task_events order by version").fetchall()
    assert rows == [({"actor": "w"},), ({"actor": "w", "idempotency_key": "k1"},)]


def test_version_without_predecessor_is_rejected(
    recorder: TaskEventsRecorder, db: Db
) -> None:
    first = stored(b"{}")
    third = StoredEvent(first.originator_id, 3, "t:Task.Started", b"{}")
    recorder.append([first])

    with pytest.raises(IntegrityError, match="no version 2"):
        recorder.append([third])

    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.execute(
            "insert into task_events (task_id, version, event_type, topic, "
            "payload, occurred_at) values (%s, 3, 'started', 't', '{}', now())",
            (first.originator_id,),
        )
    count = db.execute("select count(*) from task_events").fetchone()
    assert count == (1,)


def test_batch_may_carry_consecutive_versions(
    recorder: TaskEventsRecorder, db: Db
) -> None:
    first = stored(b"{}")
    later = [
        StoredEvent(first.originator_id, version, "t:Task.Started", b"{}")
        for version in range(2, MAX_ROW_VALUES + 4)
    ]

    recorder.append([first, *later])

    versions = db.execute("select version from task_events order by version")
    assert [row[0] for row in versions] == list(range(1, MAX_ROW_VALUES + 4))


def test_application_recorder_rejects_tracking(recorder: TaskEventsRecorder) -> None:
    with pytest.raises(ProgrammingError, match="process recorder"):
        recorder.insert_events([stored(b"x")], tracking=Tracking("p", 1))

    assert recorder.max_notification_id() is None


@pytest.fixture
def process_recorder(datastore: LedgerDatastore) -> TaskEventsProcessRecorder:
    created = TaskEventsProcessRecorder(datastore)
    created.create_table()
    return created


def test_rejected_event_discards_tracking(
    process_recorder: TaskEventsProcessRecorder,
) -> None:
    event = stored(b"x")
    process_recorder.insert_events([event], tracking=Tracking("p", 1))

    with pytest.raises(IntegrityError):
        process_recorder.insert_events([event], tracking=Tracking("p", 2))

    assert process_recorder.max_tracking_id("p") == 1


def test_rejected_tracking_discards_events(
    process_recorder: TaskEventsProcessRecorder,
) -> None:
    process_recorder.insert_events([stored(b"x")], tracking=Tracking("p", 5))
    later = stored(b"y")

    with pytest.raises(IntegrityError):
        process_recorder.insert_events([later], tracking=Tracking("p", 5))

    assert process_recorder.select_events(later.originator_id) == []
    assert process_recorder.max_notification_id() == 1


def test_checkpoint_is_one_row_per_projection(
    process_recorder: TaskEventsProcessRecorder, db: Db
) -> None:
    for position in (3, 7, 9):
        process_recorder.insert_tracking(Tracking("agent_tasks", position))
    process_recorder.insert_tracking(Tracking("statistics", 2))

    rows = db.execute(
        "select projection, position from projection_checkpoints order by projection"
    ).fetchall()

    assert rows == [("agent_tasks", 9), ("statistics", 2)]


def test_longest_schema_name_appends_and_notifies(database_url: str) -> None:
    name = "s" + uuid4().hex + "_" * 30
    name = name[:63]
    store = LedgerDatastore(DatabaseSettings(database_url, name))
    try:
        recorder = TaskEventsRecorder(store)
        recorder.create_table()
        with recorder.subscribe(gt=None) as subscription:
            recorder.insert_events([stored(b"x")])
            received = next(iter(subscription))
        assert received.state == b"x"
        assert len(notification_channel(name).encode()) == 63
    finally:
        store.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(name)))


class Counter(Aggregate):
    @event("Created")
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @event("Incremented")
    def increment(self, by: int) -> None:
        self.count += by


def persistence_env(database_url: str, schema: str, **extra: str) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "infrastructure.persistence",
        "TASKLEDGER_DATABASE_URL": database_url,
        "TASKLEDGER_SCHEMA": schema,
        **extra,
    }


def test_application_saves_and_reads_aggregate(
    database_url: str, schema: str, db: Db
) -> None:
    app: Application[Any] = Application(env=persistence_env(database_url, schema))
    try:
        counter = Counter("c")
        counter.increment(by=2**60)
        app.save(counter)

        copy = app.repository.get(counter.id)

        assert copy.count == 2**60
        assert copy.name == "c"
        assert db.execute("select count(payload) from task_events").fetchone() == (2,)
    finally:
        app.close()


def test_snapshotting_is_rejected(database_url: str, schema: str) -> None:
    env = persistence_env(database_url, schema, IS_SNAPSHOTTING_ENABLED="yes")

    with pytest.raises(ConfigurationError, match="snapshot"):
        Application(env=env)


@pytest.mark.parametrize("name", ["public", "t_0", "a" * 63, "x9"])
def test_lock_key_matches_insert_trigger(db: Db, name: str) -> None:
    row = db.execute(
        "select ('x' || left(md5('taskledger.append:' || %s), 16))::bit(64)::bigint",
        (name,),
    ).fetchone()

    assert row == (append_lock_key(name),)
