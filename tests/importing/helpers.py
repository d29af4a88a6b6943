"""Helpers shared by the import tests: files, counts and task state from SQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from taskledger.importing import task_uuid


def write_jsonl(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    """Write dictionaries as JSON lines and strings as they are."""
    text = "\n".join(
        line if isinstance(line, str) else json.dumps(line) for line in lines
    )
    path.write_text(text + "\n", encoding="utf-8")
    return path


def line(task: str, status: str, minute: int, **fields: Any) -> dict[str, Any]:
    """Return one transition line at 2024-05-01 10:MM UTC."""
    return {
        "task_id": task,
        "status": status,
        "occurred_at": f"2024-05-01T10:{minute:02d}:00+00:00",
        **fields,
    }


def event_count(db: psycopg.Connection[Any]) -> int:
    row = db.execute("select count(*) from task_events").fetchone()
    assert row is not None
    return int(row[0])


def event_types(db: psycopg.Connection[Any], external_id: str) -> list[str]:
    rows = db.execute(
        "select event_type from task_events where task_id = %s order by version",
        (task_uuid(external_id),),
    ).fetchall()
    return [str(row[0]) for row in rows]


def events_of(db: psycopg.Connection[Any], task_id: UUID) -> list[dict[str, Any]]:
    cursor = db.cursor(row_factory=psycopg.rows.dict_row)
    return cursor.execute(
        "select version, event_type, occurred_at, payload, metadata "
        "from task_events where task_id = %s order by version",
        (task_id,),
    ).fetchall()
