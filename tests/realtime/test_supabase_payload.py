"""postgres_changes payloads for agent_tasks, parsed as the realtime package does.

Each payload is a server message in JSON, validated by realtime's own
ServerMessageAdapter (the parser its client runs on every frame). Its record is
the agent_tasks row encoded by to_jsonb, which is how Realtime encodes column
values.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import psycopg
import pytest
from realtime.message import PostgresChangesMessage, ServerMessageAdapter
from realtime.types import PostgresChangesPayload

from infrastructure.supabase_realtime_payload import (
    IncompletePayloadError,
    update_from_payload,
)
from taskledger import TaskLedger, TaskRecord, TaskUpdate

Db = psycopg.Connection[tuple[object, ...]]


def row_of(db: Db, task_id: UUID) -> dict[str, Any]:
    row = db.execute(
        "select to_jsonb(t) from agent_tasks t where id = %s", (task_id,)
    ).fetchone()
    assert row is not None
    record = row[0]
    assert isinstance(record, dict)
    return record


def parse(
    schema: str,
    record: dict[str, Any] | None,
    change: str = "UPDATE",
    table: str = "agent_tasks",
    errors: list[str] | None = None,
) -> PostgresChangesPayload:
    data: dict[str, Any] = {
        "schema": schema,
        "table": table,
        "commit_timestamp": "2026-12-04T15:31:00.123Z",
        "type": change,
        "errors": errors,
        "columns": [{"name": "id", "type": "uuid"}, {"name": "status", "type": "text"}],
    }
    if record is not None:
        data["record"] = record
    frame = json.dumps(
        {
            "event": "postgres_changes",
            "topic": "realtime:taskledger",
            "payload": {"data": data, "ids": [7]},
            "ref": None,
        }
    )
    message = ServerMessageAdapter.validate_json(frame)
    assert isinstance(message, PostgresChangesMessage)
    return message.payload


def projected_update(db: Db, position: int) -> TaskUpdate:
    row = db.execute(
        "select event_type, task::text from task_updates where position = %s",
        (position,),
    ).fetchone()
    assert row is not None
    event_type, task = row
    assert isinstance(event_type, str)
    assert isinstance(task, str)
    return TaskUpdate(
        task=TaskRecord.model_validate_json(task),
        event_type=event_type,
        position=position,
    )


def test_payload_matches_every_event_type(
    ledger: TaskLedger, db: Db, schema: str
) -> None:
    task = ledger.create_task("alpha", "Alpha", "Draft", "chat", "u1", {"a": 1})
    steps = [
        lambda: ledger.start_task(task.id),
        lambda: ledger.wait_task(task.id),
        lambda: ledger.start_task(task.id),
        lambda: ledger.complete_task(task.id, "ok", {"n": [1, 2]}, {"tokens": 5}),
        lambda: ledger.retry_task(task.id),
        lambda: ledger.start_task(task.id),
        lambda: ledger.fail_task(task.id, "boom"),
        lambda: ledger.retry_task(task.id),
        lambda: ledger.cancel_task(task.id, "stop"),
    ]
    seen = []
    for step in [lambda: task, *steps]:
        position = step().position or 0
        ledger.wait_for_projection(position)
        payload = parse(schema, row_of(db, task.id), "INSERT" if not seen else "UPDATE")

        update = update_from_payload(payload, schema)

        assert update == projected_update(db, position)
        seen.append(update.event_type if update else None)
    assert seen == [
        "created",
        "started",
        "waiting",
        "started",
        "completed",
        "retried",
        "started",
        "failed",
        "retried",
        "cancelled",
    ]


def test_payload_without_task_state_is_skipped(
    ledger: TaskLedger, db: Db, schema: str
) -> None:
    task = ledger.create_task("alpha", "Alpha", "Draft", "chat")
    ledger.wait_for_projection(task.position or 0)
    record = row_of(db, task.id)

    assert update_from_payload(parse(schema, None, "DELETE"), schema) is None
    assert update_from_payload(parse(schema, record, table="other"), schema) is None
    assert update_from_payload(parse("elsewhere", record), schema) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"errors": ["Error 413: Payload Too Large"]}, "Payload Too Large"),
        ({"record": None}, "no record"),
        ({"drop": "created_at"}, "not a valid task"),
        ({"drop": "position"}, "no position"),
        ({"set": ("status", "lost")}, "not a valid task"),
    ],
)
def test_unusable_payload_is_reported(
    ledger: TaskLedger, db: Db, schema: str, change: dict[str, Any], message: str
) -> None:
    task = ledger.create_task("alpha", "Alpha", "Draft", "chat")
    ledger.wait_for_projection(task.position or 0)
    record: dict[str, Any] | None = row_of(db, task.id)
    assert record is not None
    if "drop" in change:
        del record[change["drop"]]
    if "set" in change:
        name, value = change["set"]
        record[name] = value
    if "record" in change:
        record = change["record"]
    payload = parse(schema, record, errors=change.get("errors"))

    with pytest.raises(IncompletePayloadError, match=message):
        update_from_payload(payload, schema)
