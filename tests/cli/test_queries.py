"""The read and projection commands, on a ledger filled through the facade."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from projections.runner import projection_lock_key
from projections.tables import MAIN_PROJECTION
from taskledger import TaskLedger
from taskledger.cli_common import format_milliseconds
from tests.cli.conftest import Invoke
from tests.importing.helpers import line, write_jsonl


def fill(ledger: TaskLedger) -> list[Any]:
    done = ledger.create_task("sales", "Sales", "Quote", "chat", actor="api")
    ledger.start_task(done.id)
    ledger.complete_task(done.id, response="ok")
    broken = ledger.create_task("support", "Support", "Fix", "analysis")
    ledger.start_task(broken.id)
    ledger.fail_task(broken.id, "timeout")
    waiting = ledger.create_task("sales", "Sales", "Ask", "chat")
    last = ledger.start_task(waiting.id)
    ledger.wait_for_projection(last.position or 0)
    return [done.id, broken.id, waiting.id]


def test_stats_json_counts_by_status(invoke: Invoke, ledger: TaskLedger) -> None:
    fill(ledger)

    result = invoke("stats", "--json")
    by_agent = invoke("stats", "--agent-id", "sales", "--json")

    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["total"], figures["completed"], figures["failed"]) == (3, 1, 1)
    assert figures["processing"] == 1
    assert figures["failure_rate"] == 0.5
    assert json.loads(by_agent.stdout)["total"] == 2


def test_stats_table_shows_units(invoke: Invoke, ledger: TaskLedger) -> None:
    fill(ledger)

    result = invoke("stats")

    assert result.exit_code == 0, result.output
    assert re.search(r"failure_rate\s+│\s+50\.0%", result.stdout)
    assert re.search(r"avg_duration\s+│\s+[\d.,]+ ms", result.stdout)


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [
        (3.25, "3.2 ms"),
        (5046.57, "5,047 ms"),
        (12_345, "12.3 s"),
        (90_000, "1.5 min"),
        (7_200_000, "2.0 h"),
        (723_130_962.567, "8.4 d"),
        (9_999.6, "10.0 s"),
        (59_999, "1.0 min"),
        (3_599_999, "1.0 h"),
        (86_399_000, "1.0 d"),
    ],
)
def test_format_milliseconds_picks_unit(milliseconds: float, text: str) -> None:
    assert format_milliseconds(milliseconds) == text


def test_brackets_in_ids_print_as_written(invoke: Invoke, ledger: TaskLedger) -> None:
    task = ledger.create_task("[/bold]", "A", "m", "[red]t[/red]", actor="[/x]")
    ledger.wait_for_projection(task.position or 0)

    listed = invoke("tasks")
    history = invoke("history", str(task.id))

    assert listed.exit_code == 0, listed.output
    assert "[/bold]" in listed.stdout
    assert "[red]t[/red]" in listed.stdout
    assert history.exit_code == 0, history.output
    assert "[/x]" in history.stdout


@pytest.mark.parametrize(
    ("since", "example"),
    [
        ("2024-05-01T10:00:00", "2024-05-01T10:00:00+00:00"),
        ("2024-05-01", "2024-05-01T00:00:00+00:00"),
    ],
)
def test_stats_rejects_time_without_offset(
    invoke: Invoke, since: str, example: str
) -> None:
    result = invoke("stats", "--since", since)

    assert result.exit_code == 2
    assert "has no UTC offset" in result.output
    assert example in result.output


def test_stats_names_invalid_date_as_typed(invoke: Invoke) -> None:
    result = invoke("stats", "--since", "2024-13-01+05:30")

    assert result.exit_code == 2
    assert "'2024-13-01+05:30' is not an ISO 8601 time" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["tasks"],
        ["history", "00000000-0000-0000-0000-000000000000"],
        ["lag"],
        ["tail", "--seconds", "0.5"],
    ],
    ids=lambda command: command[0],
)
def test_read_command_does_not_migrate(
    invoke: Invoke, database_url: str, schema: str, command: list[str]
) -> None:
    result = invoke(*command)

    assert result.exit_code == 1, result.output
    assert "has no ledger tables" in result.stderr
    assert "taskledger migrate" in result.stderr
    assert "Traceback" not in result.output
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from pg_tables where schemaname = %s", (schema,)
        ).fetchone()
    assert row == (0,)


def test_tasks_lists_filtered_page(invoke: Invoke, ledger: TaskLedger) -> None:
    ids = fill(ledger)

    result = invoke("tasks", "--agent-id", "sales", "--limit", "1", "--json")
    table = invoke("tasks", "--status", "failed")

    assert result.exit_code == 0, result.output
    page = json.loads(result.stdout)
    assert page["total"] == 2
    assert [task["id"] for task in page["tasks"]] == [str(ids[2])]
    assert table.exit_code == 0
    assert str(ids[1]) in table.stdout
    assert str(ids[0]) not in table.stdout


def test_tasks_after_cursor_prints_next_page(
    invoke: Invoke, ledger: TaskLedger
) -> None:
    ids = fill(ledger)

    first = invoke("tasks", "--limit", "2", "--json")
    cursor = json.loads(first.stdout)["next_cursor"]
    table = invoke("tasks", "--limit", "2")
    second = invoke("tasks", "--limit", "2", "--after", cursor, "--json")
    wrong = invoke("tasks", "--after", "nonsense")

    assert first.exit_code == 0, first.output
    assert f"next page: --after {cursor}" in table.stdout
    page = json.loads(second.stdout)
    assert [task["id"] for task in page["tasks"]] == [str(ids[0])]
    assert page["next_cursor"] is None
    assert wrong.exit_code == 1
    assert "is not a cursor that get_tasks returned" in wrong.stderr


def test_tasks_narrow_terminal_prints_lines(
    invoke: Invoke, ledger: TaskLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = fill(ledger)
    monkeypatch.setenv("COLUMNS", "80")

    result = invoke("tasks")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(text) <= 80 for text in lines)
    assert any(text.startswith(f"{ids[1]}  failed  ") for text in lines)
    assert "  support · analysis · 1 attempt · created " in result.stdout
    assert lines[-1] == "3 of 3 matching tasks"


def test_stats_reads_date_with_offset_as_midnight(
    invoke: Invoke, ledger: TaskLedger
) -> None:
    fill(ledger)

    # The tasks were created now, after midnight at +05:30 on 2024-05-01.
    since = invoke("stats", "--since", "2024-05-01+05:30", "--json")
    until = invoke("stats", "--until", "2024-05-01+05:30", "--json")

    assert since.exit_code == 0, since.output
    assert json.loads(since.stdout)["total"] == 3
    assert until.exit_code == 0, until.output
    assert json.loads(until.stdout)["total"] == 0


def test_history_shows_each_event(invoke: Invoke, ledger: TaskLedger) -> None:
    ids = fill(ledger)

    result = invoke("history", str(ids[0]), "--json")
    missing = invoke("history", "not-a-uuid")
    unknown = invoke("history", "00000000-0000-0000-0000-000000000000")

    assert result.exit_code == 0, result.output
    entries = [json.loads(text) for text in result.stdout.splitlines()]
    assert [entry["event_type"] for entry in entries] == [
        "created",
        "started",
        "completed",
    ]
    assert entries[0]["actor"] == "api"
    assert missing.exit_code == 1
    assert "no task has the imported id 'not-a-uuid'" in missing.stderr
    assert unknown.exit_code == 1
    assert "task 00000000-0000-0000-0000-000000000000 not found" in unknown.stderr


def test_history_narrow_terminal_prints_lines(
    invoke: Invoke, ledger: TaskLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "import:orders.jsonl:" + "0123456789abcdef" * 3
    task = ledger.create_task("sales", "Sales", "Quote", "chat", actor="api")
    ledger.start_task(task.id, idempotency_key=key)
    monkeypatch.setenv("COLUMNS", "80")

    result = invoke("history", str(task.id))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"History of task {task.id}"
    assert lines[1].startswith("v1  created  ")
    assert lines[1].endswith("  by api")
    assert lines[2].startswith("v2  started  ")
    assert lines[3] == f"  idempotency key {key}"


def test_history_finds_imported_id(invoke: Invoke, tmp_path: Path) -> None:
    uuid_shaped = "11111111-2222-3333-4444-555555555555"
    path = write_jsonl(
        tmp_path / "log.jsonl",
        [
            line("order 17", "pending", 0),
            line("order 17", "processing", 1),
            line(uuid_shaped, "pending", 2),
        ],
    )
    assert invoke("import", str(path)).exit_code == 0

    by_name = invoke("history", " order 17 ", "--json")
    by_shaped = invoke("history", uuid_shaped, "--imported", "--json")
    as_uuid = invoke("history", uuid_shaped)

    assert by_name.exit_code == 0, by_name.output
    events = [json.loads(text)["event_type"] for text in by_name.stdout.splitlines()]
    assert events == ["created", "started"]
    assert by_shaped.exit_code == 0, by_shaped.output
    assert len(by_shaped.stdout.splitlines()) == 1
    assert as_uuid.exit_code == 1
    assert "add --imported" in as_uuid.stderr


def test_lag_reports_head(invoke: Invoke, ledger: TaskLedger) -> None:
    fill(ledger)

    result = invoke("lag", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["head"] >= 8
    assert report["projections"][0]["events_behind"] == 0


def test_tail_prints_updates_as_json_lines(invoke: Invoke, ledger: TaskLedger) -> None:
    fill(ledger)

    result = invoke("tail", "--after-position", "0", "--max-updates", "3", "--json")

    assert result.exit_code == 0, result.output
    updates = [json.loads(text) for text in result.stdout.splitlines()]
    assert [update["position"] for update in updates] == [1, 2, 3]
    assert [update["event_type"] for update in updates] == [
        "created",
        "started",
        "completed",
    ]
    assert updates[2]["task"]["status"] == "completed"


def test_tail_filters_and_follows_live_updates(
    invoke: Invoke, ledger: TaskLedger
) -> None:
    def write_later() -> None:
        time.sleep(1.0)
        fill(ledger)

    writer = threading.Thread(target=write_later)
    writer.start()
    result = invoke(
        "tail", "--status", "failed", "--seconds", "20", "--max-updates", "1"
    )
    writer.join()

    assert result.exit_code == 0, result.output
    assert "failed -> failed" in result.stdout
    assert len(result.stdout.splitlines()) == 1


def test_rebuild_replays_events(
    invoke: Invoke, ledger: TaskLedger, db: psycopg.Connection[Any]
) -> None:
    fill(ledger)

    result = invoke("rebuild")

    assert result.exit_code == 0, result.output
    assert "Rebuilt the read model from 8 events" in result.stdout
    rows = db.execute("select count(*) from agent_tasks").fetchone()
    assert rows is not None
    assert rows[0] == 3


def test_project_runs_for_given_seconds(
    invoke: Invoke, database_url: str, schema: str
) -> None:
    with TaskLedger.open(database_url, schema=schema, project=False) as writer:
        task = writer.create_task("ops", "Ops", "Rotate keys", "chat")

    result = invoke("project", "--seconds", "2")

    assert result.exit_code == 0, result.output
    assert "Applied 1 events, up to position 1." in result.stdout
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f'select status from "{schema}".agent_tasks where id = %s', (task.id,)
        ).fetchone()
    assert row == ("pending",)


def test_project_standby_logs_that_it_waits(
    invoke: Invoke, database_url: str, schema: str
) -> None:
    assert invoke("migrate").exit_code == 0
    key = projection_lock_key(schema, MAIN_PROJECTION)

    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (key,))
        result = invoke("--log-level", "info", "project", "--seconds", "1")

    assert result.exit_code == 0, result.output
    assert "another process is projecting; waiting to take over" in result.stderr
    assert "Applied no events" in result.stdout


def test_project_prints_applied_on_sigterm(database_url: str, schema: str) -> None:
    with TaskLedger.open(database_url, schema=schema, project=False) as writer:
        writer.create_task("ops", "Ops", "Rotate keys", "chat")
    script = Path(sys.executable).with_name("taskledger")
    command = [str(script), "--database-url", database_url, "--schema", schema]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}

    process = subprocess.Popen(
        [*command, "project"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Projecting schema")
        # Let the projector apply the one event before the signal arrives.
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()

    assert process.returncode == 0, stderr
    assert "Applied 1 events, up to position 1." in stdout


def test_project_migrates_new_schema(
    invoke: Invoke, database_url: str, schema: str
) -> None:
    result = invoke("project", "--seconds", "1")

    assert result.exit_code == 0, result.output
    assert "Applied no events" in result.stdout
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select to_regclass(%s) is not null", (f"{schema}.task_events",)
        ).fetchone()
    assert row == (True,)
