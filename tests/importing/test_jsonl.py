"""JSON Lines import through the library: rules, reports and re-runs."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid5

import psycopg
import pytest

from taskledger import TaskLedger
from taskledger.importing import (
    TASK_ID_NAMESPACE,
    ImportFormat,
    ImportOptions,
    ImportSummary,
    Rejected,
    import_file,
    task_uuid,
)
from taskledger.importing.jsonl import parse_line
from taskledger.importing.records import Transition
from tests.importing.generate_history import write_history
from tests.importing.helpers import (
    event_count,
    event_types,
    events_of,
    line,
    write_jsonl,
)

Db = psycopg.Connection[Any]


def run_import(
    ledger: TaskLedger, path: Path, **options: Any
) -> tuple[ImportSummary, list[Rejected]]:
    rejected: list[Rejected] = []
    summary = import_file(
        ledger,
        path,
        ImportOptions(format=ImportFormat.JSONL, **options),
        on_rejected=rejected.append,
    )
    return summary, rejected


def test_lifecycle_lines_become_events(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [
            line(
                "a",
                "pending",
                0,
                agent_id="sales",
                agent_name="Sales",
                task_type="chat",
                user_id="u1",
                message="Hi",
            ),
            line("a", "processing", 1),
            line("a", "waiting", 2),
            line("a", "processing", 3),
            line(
                "a",
                "completed",
                4,
                response="done",
                response_data={"n": 1},
                metadata={"tokens": 5},
            ),
        ],
    )

    summary, rejected = run_import(ledger, path)

    assert rejected == []
    assert (summary.imported, summary.skipped, summary.rejected) == (5, 0, 0)
    assert event_types(db, "a") == [
        "created",
        "started",
        "waiting",
        "started",
        "completed",
    ]
    events = events_of(db, task_uuid("a"))
    assert events[0]["payload"]["agent_id"] == "sales"
    assert events[0]["payload"]["user_id"] == "u1"
    assert events[4]["payload"]["response_data"] == {"n": 1}
    assert events[4]["payload"]["metadata"] == {"tokens": 5}
    assert events[4]["occurred_at"].isoformat() == "2024-05-01T10:04:00+00:00"


def test_task_ids_are_uuid5_in_documented_namespace() -> None:
    # The README documents this namespace; changing it would break re-imports.
    assert str(TASK_ID_NAMESPACE) == "fd69ed2b-eba2-4c38-846f-fe293cbca65c"
    assert task_uuid("order-17") == uuid5(TASK_ID_NAMESPACE, "order-17")


def test_missing_fields_get_defaults(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", [line("a", "pending", 0)])

    run_import(ledger, path)

    payload = events_of(db, task_uuid("a"))[0]["payload"]
    assert payload["agent_id"] == "unknown"
    assert payload["agent_name"] == "unknown"
    assert payload["task_type"] == "unknown"
    assert payload["message"] == ""
    assert payload["user_id"] is None


@pytest.mark.parametrize("field", ["agent_id", "agent_name", "task_type"])
@pytest.mark.parametrize("value", ["", "  "])
def test_explicitly_empty_id_is_rejected(
    ledger: TaskLedger, db: Db, tmp_path: Path, field: str, value: str
) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [line("a", "pending", 0), line("b", "pending", 1, **{field: value})],
    )

    summary, rejected = run_import(ledger, path)

    assert [item.where for item in rejected] == ["line 2"]
    assert rejected[0].reason == f"{field} must not be empty"
    assert summary.imported == 1
    assert event_types(db, "b") == []


@pytest.mark.parametrize(
    ("status", "types"),
    [
        ("pending", ["created"]),
        ("processing", ["created", "started"]),
        ("cancelled", ["created", "cancelled"]),
    ],
)
def test_first_line_status_creates_task(
    ledger: TaskLedger, db: Db, tmp_path: Path, status: str, types: list[str]
) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", [line("a", status, 0)])

    summary, _ = run_import(ledger, path)

    assert summary.imported == 1
    assert event_types(db, "a") == types
    times = {event["occurred_at"] for event in events_of(db, task_uuid("a"))}
    assert len(times) == 1


@pytest.mark.parametrize("status", ["waiting", "completed", "failed"])
def test_first_line_other_status_is_rejected(
    ledger: TaskLedger, db: Db, tmp_path: Path, status: str
) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", [line("a", status, 0)])

    summary, rejected = run_import(ledger, path)

    assert summary.rejected == 1
    assert rejected[0].where == "line 1"
    assert "first transition must be pending, processing or cancelled" in (
        rejected[0].reason
    )
    assert event_count(db) == 0


def test_pending_after_run_is_retry(ledger: TaskLedger, db: Db, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [
            line("a", "processing", 0),
            line("a", "failed", 1, error_message="boom"),
            line("a", "pending", 2),
            line("a", "processing", 3),
            line("a", "pending", 4),
        ],
    )

    summary, rejected = run_import(ledger, path)

    assert rejected == []
    assert summary.imported == 5
    assert event_types(db, "a") == [
        "created",
        "started",
        "failed",
        "retried",
        "started",
        "retried",
    ]


def test_invalid_lines_are_reported_and_skipped(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [
            line("a", "processing", 5),
            "{not json",
            {"status": "pending", "occurred_at": "2024-05-01T10:00:00Z"},
            line("b", "paused", 0),
            line("a", "waiting", 6) | {"occurred_at": "2024-05-01T10:06:00"},
            line("a", "completed", 4),
            line("a", "completed", 7),
            line("a", "cancelled", 8),
            "",
            "[1, 2]",
            line("c", "pending", 0) | {"colour": "red"},
        ],
    )

    summary, rejected = run_import(ledger, path)

    reasons = {item.where: item.reason for item in rejected}
    assert list(reasons) == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
        "line 6",
        "line 8",
        "line 10",
        "line 11",
    ]
    assert reasons["line 2"].startswith("invalid JSON")
    assert reasons["line 3"] == "field task_id is missing"
    assert reasons["line 4"].startswith("status 'paused' is not one of")
    assert "timezone" in reasons["line 5"]
    assert "of task 'a' is earlier than its previous event" in reasons["line 6"]
    assert "is completed: it cannot move to cancelled" in reasons["line 8"]
    assert "not a JSON object" in reasons["line 10"]
    assert reasons["line 11"] == "field colour is not a known field"
    assert (summary.imported, summary.rejected) == (2, 8)
    assert event_types(db, "a") == ["created", "started", "completed"]


@pytest.mark.parametrize(
    "occurred_at",
    [
        "1800-05-01T10:00:00Z",
        "2999-05-01T10:00:00Z",
        "9999-12-31T23:59:59-10:00",
        "0001-01-01T00:30:00+01:00",
    ],
)
def test_time_outside_range_is_rejected(
    ledger: TaskLedger, db: Db, tmp_path: Path, occurred_at: str
) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [
            line("a", "pending", 0) | {"occurred_at": occurred_at},
            line("b", "pending", 0),
        ],
    )

    summary, rejected = run_import(ledger, path)

    assert [item.where for item in rejected] == ["line 1"]
    assert "outside the supported range" in rejected[0].reason
    assert (summary.imported, summary.rejected) == (1, 1)
    assert event_types(db, "a") == []
    assert event_types(db, "b") == ["created"]


def test_strict_stops_at_first_invalid_line(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [line("a", "pending", 0), line("a", "done", 1), line("b", "pending", 2)],
    )

    summary, rejected = run_import(ledger, path, strict=True)

    assert summary.stopped_at is not None
    assert summary.stopped_at.where == "line 2"
    assert [item.where for item in rejected] == ["line 2"]
    assert event_types(db, "a") == ["created"]
    assert event_types(db, "b") == []


def test_reimport_appends_nothing(ledger: TaskLedger, db: Db, tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = [
        line("a", "pending", 0),
        line("b", "processing", 0),
        line("a", "processing", 1),
        "broken",
        line("a", "completed", 2),
        line("b", "failed", 3, error_message="x"),
        line("b", "pending", 4),
        line("b", "processing", 5),
    ]
    path = write_jsonl(tmp_path / "h.jsonl", lines)
    first, _ = run_import(ledger, path, batch_size=3)
    events_after_first = event_count(db)

    second, rejected = run_import(ledger, path, batch_size=2)

    assert (first.imported, first.rejected) == (7, 1)
    assert (second.imported, second.skipped, second.rejected) == (0, 7, 1)
    assert [item.where for item in rejected] == ["line 4"]
    assert event_count(db) == events_after_first


def test_reimport_of_grown_file_appends_new_lines(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    lines: list[dict[str, Any] | str] = [
        line("a", "pending", 0),
        line("a", "processing", 1),
    ]
    path = write_jsonl(tmp_path / "h.jsonl", lines)
    run_import(ledger, path)

    write_jsonl(path, [*lines, line("a", "completed", 2), line("b", "pending", 3)])
    summary, _ = run_import(ledger, path)

    assert (summary.imported, summary.skipped) == (2, 2)
    assert event_types(db, "a") == ["created", "started", "completed"]
    keys = [e["metadata"]["idempotency_key"] for e in events_of(db, task_uuid("a"))]
    assert keys == [f"import:{task_uuid('a')}:{n}" for n in range(3)]


def test_changed_line_is_reported_on_reimport(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl", [line("a", "pending", 0), line("a", "processing", 1)]
    )
    run_import(ledger, path)

    write_jsonl(path, [line("a", "pending", 0), line("a", "cancelled", 1)])
    summary, rejected = run_import(ledger, path)

    assert (summary.imported, summary.skipped, summary.rejected) == (0, 1, 1)
    assert "recorded a different transition" in rejected[0].reason
    assert event_types(db, "a") == ["created", "started"]


def test_second_file_continues_tasks_of_first(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    first = write_jsonl(tmp_path / "monday.jsonl", [line("a", "processing", 0)])
    second = write_jsonl(tmp_path / "tuesday.jsonl", [line("a", "completed", 9)])
    run_import(ledger, first)

    summary, rejected = run_import(ledger, second)
    again, _ = run_import(ledger, second)

    assert rejected == []
    assert summary.imported == 1
    assert again.skipped == 1
    assert event_types(db, "a") == ["created", "started", "completed"]


def test_renamed_file_skips_imported_lines(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    lines = [
        line("a", "pending", 0),
        line("a", "processing", 1),
        line("b", "pending", 2),
        line("b", "cancelled", 2),
    ]
    run_import(ledger, write_jsonl(tmp_path / "monday.jsonl", lines))

    summary, rejected = run_import(ledger, write_jsonl(tmp_path / "copy.jsonl", lines))

    assert rejected == []
    assert (summary.imported, summary.skipped) == (0, 4)
    assert event_types(db, "a") == ["created", "started"]
    assert event_types(db, "b") == ["created", "cancelled"]


def test_overlapping_file_appends_only_new_lines(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    monday = [line("a", "pending", 0), line("a", "processing", 1)]
    tuesday = [line("a", "processing", 1), line("a", "completed", 2)]
    run_import(ledger, write_jsonl(tmp_path / "monday.jsonl", monday))

    summary, rejected = run_import(ledger, write_jsonl(tmp_path / "tue.jsonl", tuesday))
    again, _ = run_import(ledger, tmp_path / "tue.jsonl")

    assert rejected == []
    assert (summary.imported, summary.skipped) == (1, 1)
    assert (again.imported, again.skipped) == (0, 2)
    assert event_types(db, "a") == ["created", "started", "completed"]


def test_continuation_in_same_second_is_not_skipped(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    monday = [line("a", "pending", 0), line("a", "processing", 0)]
    tuesday = [
        line("a", "failed", 0),
        line("a", "pending", 0),
        line("a", "processing", 0),
        line("a", "completed", 1),
    ]
    run_import(ledger, write_jsonl(tmp_path / "monday.jsonl", monday))

    summary, rejected = run_import(ledger, write_jsonl(tmp_path / "tue.jsonl", tuesday))

    assert rejected == []
    assert (summary.imported, summary.skipped) == (4, 0)
    assert event_types(db, "a") == [
        "created",
        "started",
        "failed",
        "retried",
        "started",
        "completed",
    ]


def test_changed_copy_names_earlier_source(ledger: TaskLedger, tmp_path: Path) -> None:
    first = [line("a", "pending", 0), line("a", "processing", 5)]
    changed = [line("a", "pending", 0), line("a", "processing", 3)]
    run_import(ledger, write_jsonl(tmp_path / "monday.jsonl", first))

    summary, rejected = run_import(
        ledger, write_jsonl(tmp_path / "copy.jsonl", changed)
    )
    again, again_rejected = run_import(
        ledger, tmp_path / "copy.jsonl", source="monday.jsonl"
    )

    assert (summary.skipped, summary.rejected) == (1, 1)
    assert "cannot move to processing" in rejected[0].reason
    assert "imported from 'monday.jsonl'" in rejected[0].reason
    assert "source 'monday.jsonl' (--source monday.jsonl)" in rejected[0].reason
    assert (again.skipped, again.rejected) == (1, 1)
    assert "recorded a different transition" in again_rejected[0].reason


def test_same_source_rejection_has_no_hint(ledger: TaskLedger, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl", [line("a", "processing", 0), line("a", "processing", 1)]
    )

    _, rejected = run_import(ledger, path)

    assert len(rejected) == 1
    assert "cannot move to processing" in rejected[0].reason
    assert "--source" not in rejected[0].reason


def test_finished_tasks_leave_memory_and_come_back(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [
            line("a", "processing", 0),
            line("a", "completed", 1),
            line("b", "processing", 2),
            line("a", "pending", 3),
            line("a", "processing", 4),
            line("a", "completed", 5),
        ],
    )

    summary, rejected = run_import(ledger, path, batch_size=1)
    again, _ = run_import(ledger, path, batch_size=1)

    assert rejected == []
    assert summary.imported == 6
    assert summary.tasks_in_memory == 1
    assert again.skipped == 6
    assert event_types(db, "a") == [
        "created",
        "started",
        "completed",
        "retried",
        "started",
        "completed",
    ]


def test_offset_times_read_back_in_utc(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    moment = "2024-05-01T10:00:00+02:00"
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [{"task_id": "a", "status": "processing", "occurred_at": moment}],
    )
    run_import(ledger, path)
    ledger.wait_for_projection(ledger.lag().head)

    row = db.execute("select task->>'created_at' from task_updates").fetchone()
    task = ledger.get_task(task_uuid("a"))

    assert row == ("2024-05-01T08:00:00Z",)
    assert task.started_at is not None
    assert task.started_at.isoformat() == "2024-05-01T08:00:00+00:00"


def test_offset_with_seconds_is_exact(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    # Amsterdam's local mean time in 1900 was 19 minutes 32 seconds ahead.
    moment = "1900-06-01T12:19:32+00:19:32"
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [{"task_id": "a", "status": "pending", "occurred_at": moment}],
    )

    summary, rejected = run_import(ledger, path)
    row = db.execute("select occurred_at from task_events").fetchone()

    assert rejected == []
    assert summary.imported == 1
    assert row == (datetime(1900, 6, 1, 12, 0, tzinfo=UTC),)


def test_batch_conflict_falls_back_to_single_appends(
    ledger: TaskLedger, db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [line("a", "processing", 0), line("b", "processing", 0)],
    )
    run_import(ledger, path)
    write_jsonl(
        path,
        [
            line("a", "processing", 0),
            line("b", "processing", 0),
            line("a", "completed", 1),
            line("b", "completed", 1),
        ],
    )
    recorder = ledger._commands.recorder
    real_append = recorder.append_commands
    calls: list[int] = []

    def append_after_other_writer(commands: Any, **kwargs: Any) -> Any:
        calls.append(len(commands))
        if len(calls) == 1:
            moment = datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC)
            ledger.wait_task(task_uuid("a"), occurred_at=moment)
        return real_append(commands, **kwargs)

    monkeypatch.setattr(recorder, "append_commands", append_after_other_writer)
    summary, rejected = run_import(ledger, path)

    assert calls[0] == 2
    assert rejected == []
    assert summary.imported == 2
    assert summary.skipped == 2
    assert event_types(db, "a") == ["created", "started", "waiting", "completed"]
    assert event_types(db, "b") == ["created", "started", "completed"]


def test_batch_conflicts_warn_once(
    ledger: TaskLedger,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = ["a", "b", "c", "d"]
    started = [line(task, "processing", 0) for task in tasks]
    path = write_jsonl(tmp_path / "h.jsonl", started)
    run_import(ledger, path)
    write_jsonl(path, [*started, *(line(task, "completed", 1) for task in tasks)])
    recorder = ledger._commands.recorder
    real_append = recorder.append_commands
    # Before each of the two batches of completions, another writer moves
    # the batch's first task on, so both batches conflict.
    moved_first = ["a", "c"]

    def append_after_other_writer(commands: Any, **kwargs: Any) -> Any:
        if len(commands) == 2 and moved_first:
            moment = datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC)
            ledger.wait_task(task_uuid(moved_first.pop(0)), occurred_at=moment)
        return real_append(commands, **kwargs)

    monkeypatch.setattr(recorder, "append_commands", append_after_other_writer)
    caplog.set_level(logging.DEBUG, logger="taskledger.importing.importer")
    summary, rejected = run_import(ledger, path, batch_size=2)

    conflicts = [
        record
        for record in caplog.records
        if getattr(record, "action", None) == "import_batch_conflict"
    ]
    assert rejected == []
    assert summary.imported == 4
    assert [record.levelno for record in conflicts] == [logging.WARNING, logging.DEBUG]
    assert "another import of the same file" in conflicts[0].getMessage()


def test_metadata_records_source_and_line(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", ["", line("a", "processing", 0)])

    run_import(ledger, path, source="nightly")

    metadata = events_of(db, task_uuid("a"))[-1]["metadata"]
    assert metadata["import"] == {"source": "nightly", "line": 2}
    assert json.dumps(metadata).count("idempotency_key") == 1


def test_memory_follows_tasks_in_flight(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, 3000, in_flight=20)
    peak = 0

    def watch(summary: ImportSummary, done: int, total: int) -> None:
        nonlocal peak
        peak = max(peak, summary.tasks_in_memory)

    summary = import_file(
        ledger,
        path,
        ImportOptions(format=ImportFormat.JSONL, batch_size=100),
        on_progress=watch,
    )
    tasks = db.execute("select count(distinct task_id) from task_events").fetchone()

    assert (summary.imported, summary.rejected) == (3000, 0)
    assert tasks is not None
    assert tasks[0] > 400
    assert peak <= 20


def test_byte_order_mark_and_crlf_are_accepted(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "h.jsonl"
    first = json.dumps(line("a", "processing", 0))
    second = json.dumps(line("a", "completed", 1))
    path.write_bytes(b"\xef\xbb\xbf" + f"{first}\r\n{second}\r\n".encode())

    summary, rejected = run_import(ledger, path)

    assert rejected == []
    assert summary.imported == 2
    assert event_types(db, "a") == ["created", "started", "completed"]


def test_concurrent_imports_append_each_line_once(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "h.jsonl"
    write_history(path, 2000, in_flight=30)
    summaries: list[ImportSummary] = []

    def run(batch_size: int) -> None:
        summaries.append(run_import(ledger, path, batch_size=batch_size)[0])

    threads = [threading.Thread(target=run, args=(size,)) for size in (50, 70)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(summaries) == 2
    assert sum(summary.imported for summary in summaries) == 2000
    assert sum(summary.skipped for summary in summaries) == 2000
    assert sum(summary.rejected for summary in summaries) == 0
    assert event_count(db) >= 2000
    keys = db.execute(
        "select count(*) from task_events where metadata ? 'idempotency_key'"
    ).fetchone()
    assert keys == (2000,)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"task_id": "a"\n', "EOF while parsing an object at the end of the line"),
        (b'{"task_id": "a",, }\r\n', "key must be a string at column 17"),
    ],
)
def test_invalid_json_names_the_file_line_column(raw: bytes, reason: str) -> None:
    rejected = parse_line(raw, 5)

    assert isinstance(rejected, Rejected)
    assert rejected.reason == f"invalid JSON: {reason}"


@pytest.mark.parametrize(
    ("task_id", "reason"),
    [
        ("100", None),
        ("12345678901234567890", None),
        ("100.0", "field task_id is invalid: give a string or a whole number"),
        ("1e400", "field task_id is invalid: give a string or a whole number"),
    ],
)
def test_numeric_task_id_must_be_whole(task_id: str, reason: str | None) -> None:
    raw = (
        f'{{"task_id": {task_id}, "status": "pending", '
        '"occurred_at": "2024-05-01T10:00:00Z"}'
    )

    entry = parse_line(raw.encode(), 3)

    if reason is None:
        assert isinstance(entry, Transition)
        assert entry.external_id == task_id
    else:
        assert entry == Rejected(3, "line 3", reason)


def test_lone_surrogate_escape_becomes_replacement() -> None:
    raw = (
        b'{"task_id": "a\\ud800b", "status": "pending", '
        b'"occurred_at": "2024-05-01T10:00:00Z", "message": "x\\udfff"}'
    )

    entry = parse_line(raw, 1)

    assert isinstance(entry, Transition)
    assert entry.external_id == "a\ufffdb"
    assert entry.creation["message"] == "x\ufffd"


def test_misspelt_field_is_named_first() -> None:
    raw = b'{"task_id": "a", "state": "pending", "occurred_at": "2024-05-01T10:00:00Z"}'

    entry = parse_line(raw, 2)

    assert entry == Rejected(2, "line 2", "field state is not a known field")


def test_field_given_twice_is_rejected() -> None:
    raw = (
        b'{"task_id": "a", "status": "pending", "status": "cancelled", '
        b'"occurred_at": "2024-05-01T10:00:00Z"}'
    )

    entry = parse_line(raw, 4)

    assert entry == Rejected(
        4, "line 4", "field status is given more than once; keep one of them"
    )


def test_nested_field_names_are_not_repeats() -> None:
    raw = (
        b'{"task_id": "a", "status": "pending", "occurred_at": "2024-05-01T10:00:00Z",'
        b' "metadata": {"status": 1, "deep": {"status": 2}}, "message": "\\"status\\""}'
    )

    entry = parse_line(raw, 1)

    assert isinstance(entry, Transition)
    assert entry.metadata == {"status": 1, "deep": {"status": 2}}
