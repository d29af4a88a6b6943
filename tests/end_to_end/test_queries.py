from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from projections.queries import TaskFilter, page_statement
from projections.tables import ProjectionTables
from taskledger import (
    InvalidInputError,
    ProjectionLagError,
    TaskLedger,
    TaskNotFoundError,
    TaskStatus,
    TaskUpdate,
)

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# get_tasks


def test_tasks_newest_first_then_by_position(ledger: TaskLedger) -> None:
    first = ledger.create_task("a", "A", "m", "chat", occurred_at=at(0))
    second = ledger.create_task("a", "A", "m", "chat", occurred_at=at(0))
    newest = ledger.create_task("a", "A", "m", "chat", occurred_at=at(5))
    ledger.start_task(first.id, occurred_at=at(9))

    page = ledger.get_tasks()

    assert [task.id for task in page.tasks] == [newest.id, second.id, first.id]
    assert page.total == 3


def test_tasks_page_carries_total_of_matches(ledger: TaskLedger) -> None:
    created = [
        ledger.create_task("a", "A", "m", "chat", occurred_at=at(n)) for n in range(7)
    ]
    ledger.create_task("b", "B", "m", "chat", occurred_at=at(3))

    page = ledger.get_tasks(agent_id="a", limit=3, offset=2)

    assert [task.id for task in page.tasks] == [t.id for t in created[::-1][2:5]]
    assert page.total == 7


def test_tasks_cursor_survives_ties_and_inserts(ledger: TaskLedger) -> None:
    created = [
        ledger.create_task("a", "A", "m", "chat", occurred_at=at(0)) for _ in range(7)
    ]
    seen = []
    page = ledger.get_tasks(limit=3)
    while True:
        seen.extend(task.id for task in page.tasks)
        # A task created between pages goes first, before the cursor.
        ledger.create_task("a", "A", "m", "chat", occurred_at=at(5))
        if page.next_cursor is None:
            break
        page = ledger.get_tasks(limit=3, after=page.next_cursor)

    assert seen == [task.id for task in reversed(created)]


def test_tasks_cursor_of_last_page_is_none(ledger: TaskLedger) -> None:
    for n in range(4):
        ledger.create_task("a", "A", "m", "chat", occurred_at=at(n))

    first = ledger.get_tasks(limit=2)
    second = ledger.get_tasks(limit=3, after=first.next_cursor)

    assert first.next_cursor is not None
    assert len(second.tasks) == 2
    assert second.next_cursor is None
    assert second.total == 4


@pytest.mark.parametrize("cursor", ["", "nonsense", "MjAyNnxh", "x" * 300])
def test_tasks_foreign_cursor_is_rejected(ledger: TaskLedger, cursor: str) -> None:
    with pytest.raises(InvalidInputError, match="not a cursor that get_tasks returned"):
        ledger.get_tasks(after=cursor)


def test_tasks_page_past_end_keeps_total(ledger: TaskLedger) -> None:
    for n in range(3):
        ledger.create_task("a", "A", "m", "chat", occurred_at=at(n))

    page = ledger.get_tasks(offset=10)

    assert page.tasks == []
    assert page.total == 3
    assert ledger.get_tasks(agent_id="nobody").total == 0


def test_tasks_filters(ledger: TaskLedger) -> None:
    chat = ledger.create_task("a", "A", "m", "chat", "u1", occurred_at=at(0))
    research = ledger.create_task("a", "A", "m", "research", "u2", occurred_at=at(10))
    other = ledger.create_task("b", "B", "m", "chat", "u1", occurred_at=at(20))
    ledger.start_task(research.id, occurred_at=at(30))

    def ids(**filters: object) -> set[object]:
        return {task.id for task in ledger.get_tasks(**filters).tasks}  # type: ignore[arg-type]

    assert ids(agent_id="a") == {chat.id, research.id}
    assert ids(status="processing") == {research.id}
    assert ids(status=TaskStatus.PENDING) == {chat.id, other.id}
    assert ids(user_id="u1") == {chat.id, other.id}
    assert ids(task_type="chat") == {chat.id, other.id}
    assert ids(created_after=at(10)) == {research.id, other.id}
    assert ids(created_before=at(10)) == {chat.id}
    assert ids(created_after=at(10), created_before=at(20)) == {research.id}
    assert ids(agent_id="a", status="pending", user_id="u1") == {chat.id}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"limit": 0}, "limit 0 is out of range"),
        ({"limit": 1001}, "limit 1001 is out of range"),
        ({"limit": True}, "limit must be an integer"),
        ({"limit": "5"}, "limit must be an integer"),
        ({"offset": -1}, "offset -1 is negative"),
        ({"status": "done"}, "status 'done' is not one of"),
        ({"created_after": datetime(2026, 1, 1)}, "time zone"),
        ({"agent_id": " "}, "agent_id must not be empty"),
    ],
)
def test_tasks_arguments_are_validated(
    ledger: TaskLedger, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ledger.get_tasks(**arguments)  # type: ignore[arg-type]


def test_tasks_largest_page_is_accepted(ledger: TaskLedger) -> None:
    ledger.create_task("a", "A", "m", "chat")

    assert ledger.get_tasks(limit=1000).total == 1


def test_tasks_total_matches_page_under_writes(ledger: TaskLedger) -> None:
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            ledger.create_task("a", "A", "m", "chat")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(40):
            page = ledger.get_tasks(limit=1000)
            assert len(page.tasks) == page.total
    finally:
        stop.set()
        writer.join()


# 20,000 tasks of 20 agents and 500 users over about 23 days, for realistic plans.
FILL_AGENT_TASKS = """
insert into agent_tasks (id, agent_id, agent_name, message, task_type, user_id,
    status, created_at, updated_at, version, created_position, position)
select gen_random_uuid(), 'agent' || n % 20, 'Agent', 'm', 'chat', 'u' || n % 500,
    (array['pending', 'processing', 'waiting', 'completed', 'failed',
           'cancelled'])[n % 6 + 1],
    timestamptz '2026-05-01 00:00+00' + n * interval '100 seconds',
    timestamptz '2026-05-01 00:00+00' + n * interval '100 seconds', 1, n, n
from generate_series(1, 20000) as n
"""


@pytest.mark.parametrize(
    ("task_filter", "index", "condition"),
    [
        (TaskFilter(agent_id="agent3"), "agent_tasks_agent_created", "agent_id ="),
        (
            TaskFilter(agent_id="agent3", status=TaskStatus.PENDING),
            "agent_tasks_agent_status_created",
            "status =",
        ),
        (
            TaskFilter(status=TaskStatus.PENDING),
            "agent_tasks_status_created",
            "status =",
        ),
        (TaskFilter(user_id="u1"), "agent_tasks_user_created", "user_id ="),
        (
            TaskFilter(created_after=T0, created_before=T0 + timedelta(hours=2)),
            "agent_tasks_created",
            "created_at >=",
        ),
    ],
)
def test_task_filters_have_an_index(
    ledger: TaskLedger,
    db: psycopg.Connection[tuple[object, ...]],
    schema: str,
    task_filter: TaskFilter,
    index: str,
    condition: str,
) -> None:
    del ledger  # migrates the schema
    db.execute(FILL_AGENT_TASKS)
    db.execute("analyze agent_tasks")
    where, params = task_filter.where()

    plan = db.execute(
        sql.SQL("explain ") + page_statement(ProjectionTables(schema), where),
        [*params, 50, 0],
    ).fetchall()

    lines = [str(row[0]) for row in plan]
    assert any(index in line and "Index Scan" in line for line in lines), lines
    index_conditions = [line for line in lines if "Index Cond:" in line]
    assert any(condition in line for line in index_conditions), lines


# get_history and get_task_at


def test_history_lists_events_with_context(ledger: TaskLedger) -> None:
    task = ledger.create_task(
        "a", "A", "m", "chat", "u1", occurred_at=at(0), actor="api", correlation_id="c1"
    )
    ledger.start_task(task.id, occurred_at=at(2), actor="worker-1", causation_id="q9")
    done = ledger.complete_task(
        task.id, "ok", {"n": 1}, {"tokens": 5}, occurred_at=at(5), idempotency_key="k1"
    )

    history = ledger.get_history(task.id)

    event_types = [entry.event_type for entry in history]
    assert event_types == ["created", "started", "completed"]
    assert [entry.version for entry in history] == [1, 2, 3]
    assert history[-1].position == done.position
    assert [entry.occurred_at for entry in history] == [at(0), at(2), at(5)]
    assert all(entry.recorded_at is not None for entry in history)
    assert (history[0].actor, history[0].correlation_id) == ("api", "c1")
    assert (history[1].actor, history[1].causation_id) == ("worker-1", "q9")
    assert history[2].idempotency_key == "k1"
    assert history[0].idempotency_key is None
    assert history[0].payload == {
        "agent_id": "a",
        "agent_name": "A",
        "message": "m",
        "task_type": "chat",
        "user_id": "u1",
        "metadata": {},
    }
    assert history[2].payload == {
        "response": "ok",
        "response_data": {"n": 1},
        "metadata": {"tokens": 5},
    }


def test_history_of_unknown_task_is_not_found(ledger: TaskLedger) -> None:
    with pytest.raises(TaskNotFoundError):
        ledger.get_history("00000000-0000-0000-0000-000000000000")


def test_task_at_version_and_time(ledger: TaskLedger) -> None:
    task = ledger.create_task("a", "A", "m", "chat", occurred_at=at(0))
    ledger.start_task(task.id, occurred_at=at(10))
    ledger.fail_task(task.id, "broke", occurred_at=at(20))
    head = ledger.retry_task(task.id, occurred_at=at(30))

    assert ledger.get_task_at(task.id, version=1).status is TaskStatus.PENDING
    after_failure = ledger.get_task_at(task.id, version=3)
    assert after_failure.status is TaskStatus.FAILED
    assert after_failure.error_message == "broke"
    assert after_failure.position == head.position - 1
    assert ledger.get_task_at(task.id, at=at(15)).status is TaskStatus.PROCESSING
    assert ledger.get_task_at(task.id, at=at(20)).status is TaskStatus.FAILED
    assert ledger.get_task_at(task.id) == ledger.get_task(task.id)
    assert ledger.get_task_at(task.id).attempts == 2


def test_task_at_rejects_bad_points(ledger: TaskLedger) -> None:
    task = ledger.create_task("a", "A", "m", "chat", occurred_at=at(0))
    ledger.start_task(task.id, occurred_at=at(10))

    with pytest.raises(InvalidInputError, match="head version 2"):
        ledger.get_task_at(task.id, version=3)
    with pytest.raises(TaskNotFoundError, match=r"did not exist yet at .*: it was"):
        ledger.get_task_at(task.id, at=at(-1))
    with pytest.raises(InvalidInputError, match="either version or at"):
        ledger.get_task_at(task.id, version=1, at=at(5))
    with pytest.raises(InvalidInputError, match="version must be"):
        ledger.get_task_at(task.id, version=0)
    with pytest.raises(InvalidInputError, match="time zone"):
        ledger.get_task_at(task.id, at=datetime(2026, 5, 4, 9, 0))
    with pytest.raises(TaskNotFoundError, match=r"0000 not found$"):
        ledger.get_task_at("00000000-0000-0000-0000-000000000000")


# Upcasting: an event stored by version 1 of Failed


def insert_version_1_failure(
    db: psycopg.Connection[tuple[object, ...]], task_id: object, moment: datetime
) -> int:
    payload = {"timestamp": moment.isoformat(), "error": "legacy boom"}
    row = db.execute(
        "insert into task_events (task_id, version, event_type, topic, payload, "
        "occurred_at) values (%s, 3, 'failed', 'domain.task:Task.Failed', %s, %s) "
        "returning position",
        (task_id, json.dumps(payload), moment),
    ).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def test_version_1_failure_reads_as_current(
    ledger: TaskLedger, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    task = ledger.create_task("a", "A", "m", "chat", occurred_at=at(0))
    ledger.start_task(task.id, occurred_at=at(1))
    position = insert_version_1_failure(db, task.id, at(2))
    ledger.wait_for_projection(position)

    projected = ledger.get_task(task.id)
    assert projected.status is TaskStatus.FAILED
    assert projected.error_message == "legacy boom"
    history = ledger.get_history(task.id)
    assert history[2].event_type == "failed"
    assert history[2].payload == {"error_message": "legacy boom", "metadata": {}}
    assert ledger.get_task_at(task.id, version=3).error_message == "legacy boom"

    ledger.rebuild()
    assert ledger.get_task(task.id) == projected

    retried = ledger.retry_task(task.id, occurred_at=at(3))
    assert retried.status is TaskStatus.PENDING
    assert retried.attempts == 2
    assert retried.version == 4


def test_tasks_total_equals_count_for_every_filter(
    ledger: TaskLedger, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    for index in range(12):
        task = ledger.create_task(
            f"agent{index % 2}", "A", "m", f"type{index % 3}", f"user{index % 2}"
        )
        if index % 4:
            ledger.start_task(task.id)
        if index % 4 == 2:
            ledger.complete_task(task.id, "ok")
    filters: list[dict[str, str]] = [
        {},
        {"agent_id": "agent1"},
        {"task_type": "type2"},
        {"status": "processing"},
        {"agent_id": "agent0", "status": "pending"},
        {"agent_id": "agent1", "task_type": "type1", "status": "completed"},
        {"user_id": "user1"},
        {"agent_id": "nobody"},
    ]

    for task_filter in filters:
        page = ledger.get_tasks(**task_filter, limit=1)  # type: ignore[arg-type]
        where = " and ".join(f"{column} = %s" for column in task_filter)
        counted = db.execute(
            "select count(*) from agent_tasks" + (f" where {where}" if where else ""),
            list(task_filter.values()),
        ).fetchone()
        assert counted is not None
        assert page.total == counted[0], task_filter


def test_lag_error_reports_stored_checkpoint(
    ledger: TaskLedger, database_url: str, schema: str
) -> None:
    task = ledger.create_task("a", "A", "m", "chat")
    ledger.wait_for_projection(task.position)

    # The second ledger's projector has not read the checkpoint yet when the
    # wait ends, and then becomes a standby of the first.
    with (
        TaskLedger.open(database_url, schema=schema) as other,
        pytest.raises(ProjectionLagError) as raised,
    ):
        other.wait_for_projection(task.position + 1000, timeout=0.0)

    assert raised.value.checkpoint == task.position


# JSON values in the read model


def test_large_floats_read_back_as_floats(ledger: TaskLedger) -> None:
    # json.dumps prints 1e16 and more with an exponent, which jsonb keeps as a
    # whole number.
    task = ledger.create_task(
        "a", "A", "m", "chat", metadata={"budget": 1e23, "sizes": [2.5e16, 1.5]}
    )
    ledger.start_task(task.id)
    done = ledger.complete_task(task.id, response_data={"score": 1e16})
    received: list[TaskStatus] = []
    delivered = threading.Event()

    def collect(update: TaskUpdate) -> None:
        assert update.task.metadata == done.metadata
        received.append(update.task.status)
        if update.task.status is TaskStatus.COMPLETED:
            assert update.task.response_data == done.response_data
            delivered.set()

    with ledger.subscribe(collect, after_position=0):
        assert delivered.wait(10)
    read = ledger.get_task(task.id)

    assert read == done
    assert read == ledger.get_task_at(task.id)
    assert type(read.metadata["budget"]) is float
    assert type(read.response_data["score"]) is float
    assert ledger.get_tasks(agent_id="a").tasks == [done]
    assert received == [TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED]
