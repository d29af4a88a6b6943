"""Each CLI command, driven through typer's CliRunner on real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from psycopg import sql
from typer.testing import CliRunner

from taskledger import __version__, cli_import
from taskledger.cli import app
from tests.cli.conftest import Invoke
from tests.importing.generate_history import write_history
from tests.importing.helpers import event_count, line, write_jsonl

Db = psycopg.Connection[Any]


def table_exists(database_url: str, schema: str, table: str) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select to_regclass(%s)", (f"{schema}.{table}",)).fetchone()
    return row is not None and row[0] is not None


def test_version_is_printed() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout.strip() == f"taskledger {__version__}"


def test_every_option_has_help() -> None:
    command = typer.main.get_command(app)
    context = command.make_context("taskledger", [], resilient_parsing=True)
    commands = {"": command}
    commands.update(command.commands)  # type: ignore[attr-defined]

    for name, sub in commands.items():
        assert sub.help, f"command {name!r} has no help"
        for parameter in sub.get_params(context):
            text = getattr(parameter, "help", None)
            if parameter.name == "context":
                continue
            assert text, f"option {parameter.name!r} of {name!r} has no help"


def test_migrate_applies_then_reports_up_to_date(
    invoke: Invoke, database_url: str, schema: str
) -> None:
    first = invoke("migrate")
    second = invoke("migrate")

    assert first.exit_code == 0, first.output
    assert "task_events" in first.stdout
    assert table_exists(database_url, schema, "task_events")
    assert second.exit_code == 0
    assert "is up to date; no migration applied" in second.stdout


def test_migrate_dry_run_prints_sql_only(
    invoke: Invoke, database_url: str, schema: str
) -> None:
    result = invoke("migrate", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "create table if not exists task_events" in result.stdout
    assert f'set local search_path to "{schema}", public;' in result.stdout
    assert not table_exists(database_url, schema, "task_events")


def test_import_prints_summary_and_reports(
    invoke: Invoke, db: Db, tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "h.jsonl",
        [line("a", "processing", 0), "oops", line("a", "completed", 1)],
    )

    first = invoke("import", str(path), "--json")
    second = invoke("import", str(path), "--json")

    assert first.exit_code == 0, first.output
    assert "rejected line 2: invalid JSON" in first.stderr
    counts = json.loads(first.stdout)
    assert (counts["imported"], counts["skipped"], counts["rejected"]) == (2, 0, 1)
    again = json.loads(second.stdout)
    assert (again["imported"], again["skipped"], again["rejected"]) == (0, 2, 1)
    assert event_count(db) == 3


def test_import_ends_with_events_projected(
    invoke: Invoke, db: Db, tmp_path: Path
) -> None:
    lines: list[dict[str, Any] | str] = [
        line(f"t{n}", status, minute)
        for n in range(1000)
        for status, minute in (("processing", 0), ("completed", 1))
    ]
    path = write_jsonl(tmp_path / "h.jsonl", lines)

    result = invoke("import", str(path), "--json", "--batch-size", "50")

    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    head = db.execute("select max(position) from task_events").fetchone()
    checkpoint = db.execute("select position from projection_checkpoints").fetchone()
    assert head is not None
    assert checkpoint == head
    tasks = db.execute("select count(*) from agent_tasks where status = 'completed'")
    assert tasks.fetchone() == (1000,)


@pytest.mark.parametrize(
    "epoch", ["2023-07-01+02:00", "2023-06-30T22:00:00Z", "2023-07-01T00:00:00+02:00"]
)
def test_import_epoch_takes_any_aware_form(
    invoke: Invoke, db: Db, tmp_path: Path, epoch: str
) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(
        "name,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
        "pod-1,LS,Succeeded,60,120,90\n"
    )

    result = invoke("import", str(path), "--epoch", epoch, "--json")

    assert result.exit_code == 0, result.output
    row = db.execute("select min(occurred_at) from task_events").fetchone()
    assert row is not None
    assert row[0].isoformat() == "2023-06-30T22:01:00+00:00"


def test_import_warns_when_projection_stalls(
    invoke: Invoke,
    database_url: str,
    schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_import, "STALLED_SECONDS", 1.0)
    assert invoke("migrate").exit_code == 0
    path = write_jsonl(tmp_path / "h.jsonl", [line("a", "pending", 0)])
    # A transaction that locks the checkpoint row pauses every projector.
    checkpoints = sql.Identifier(schema, "projection_checkpoints")
    holder = psycopg.connect(database_url)
    holder.execute(
        sql.SQL(
            "insert into {} (projection, position) values ('agent_tasks', 0)"
        ).format(checkpoints)
    )
    holder.execute(sql.SQL("select position from {} for update").format(checkpoints))
    release = threading.Timer(4.0, holder.rollback)
    release.start()
    try:
        result = invoke("import", str(path), "--json")
    finally:
        release.join()
        holder.close()

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 1
    assert "warning: the read model has not applied every imported event" in (
        result.stderr
    )


@pytest.mark.slow
def test_import_ctrl_c_in_projection_wait(
    invoke: Invoke, database_url: str, schema: str, db: Db, tmp_path: Path
) -> None:
    assert invoke("migrate").exit_code == 0
    path = write_jsonl(tmp_path / "h.jsonl", [line("a", "pending", 0)])
    checkpoints = sql.Identifier(schema, "projection_checkpoints")
    # A transaction that locks the checkpoint row pauses every projector, so
    # the import waits for the read model after its last batch.
    with psycopg.connect(database_url) as holder:
        holder.execute(
            sql.SQL(
                "insert into {} (projection, position) values ('agent_tasks', 0)"
            ).format(checkpoints)
        )
        holder.execute(
            sql.SQL("select position from {} for update").format(checkpoints)
        )
        returncode, _, errors = interrupt_command(
            database_url,
            schema,
            ["import", str(path)],
            ready=lambda: events_in(db, schema) > 0,
        )
        holder.rollback()

    assert returncode == 130, errors
    assert "at least 1 entry was imported and kept" in errors


def test_import_table_summary(invoke: Invoke, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", [line("a", "pending", 0)])

    result = invoke("import", str(path))

    assert result.exit_code == 0, result.output
    assert "imported (appended)" in result.stdout
    assert "skipped (already in the ledger)" in result.stdout


def test_import_limits_listed_rejections(invoke: Invoke, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", ["x", "y", "z"])

    result = invoke("import", str(path), "--max-reports", "1")

    assert result.exit_code == 0
    assert result.stderr.count("rejected line") == 1
    assert "... and 2 more rejected entries" in result.stderr


@pytest.mark.slow
def test_demo_runs_for_given_seconds(invoke: Invoke, db: Db) -> None:
    result = invoke(
        "demo", "--seconds", "2", "--rate", "20", "--speed", "10", "--no-live"
    )

    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("The demo runs for 2 s on schema ")
    assert "Demo summary" in result.stdout
    assert "tasks created" in result.stdout
    assert "p95 duration (ledger)" in result.stdout
    assert event_count(db) > 20
    rows = db.execute(
        "select count(distinct task_id), count(distinct payload->>'agent_id') "
        "from task_events where event_type = 'created'"
    ).fetchone()
    assert rows is not None
    assert rows[0] >= 20
    assert rows[1] > 1


@pytest.mark.slow
def test_demo_ctrl_c_cancels_open_tasks(database_url: str, schema: str, db: Db) -> None:
    # --seconds bounds the run if the test fails before the signal.
    returncode, output, errors = interrupt_command(
        database_url,
        schema,
        ["demo", "--rate", "20", "--no-live", "--seconds", "90"],
        ready=lambda: events_in(db, schema) >= 30,
    )

    assert returncode == 0, errors
    assert "Demo summary" in output
    open_tasks = db.execute(
        "select count(*) from (select distinct on (task_id) task_id, event_type "
        "from task_events order by task_id, version desc) last "
        "where event_type not in ('completed', 'failed', 'cancelled')"
    ).fetchone()
    assert open_tasks == (0,)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "exit_code", "outcome"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_stopped_import_keeps_batches(
    invoke: Invoke,
    database_url: str,
    schema: str,
    db: Db,
    tmp_path: Path,
    signum: int,
    exit_code: int,
    outcome: str,
) -> None:
    path = tmp_path / "history.jsonl"
    write_history(path, 30_000, in_flight=500)
    returncode, _, errors = interrupt_command(
        database_url,
        schema,
        ["import", str(path)],
        ready=lambda: events_in(db, schema) > 0,
        signum=signum,
    )
    events_kept = event_count(db)
    again = invoke("import", str(path), "--json")

    assert returncode == exit_code, errors
    # The signal may come after a batch committed but before it was counted.
    assert errors.startswith(f"error: {outcome}")
    assert "Run the same command again" in errors
    assert 0 < events_kept < 30_000
    assert again.exit_code == 0, again.output
    counts = json.loads(again.stdout)
    assert counts["skipped"] >= events_kept
    assert counts["imported"] + counts["skipped"] == 30_000
    assert event_count(db) == 30_000


def interrupt_command(
    database_url: str,
    schema: str,
    args: list[str],
    ready: Callable[[], bool],
    signum: int = signal.SIGINT,
) -> tuple[int, str, str]:
    """Run the command line in a child, send signum once ready() is true (at most
    60 s), and return its exit code, stdout and stderr."""
    script = Path(sys.executable).with_name("taskledger")
    command = [str(script), "--database-url", database_url, "--schema", schema]
    with subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and the child
        # would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    ) as child:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ready():
            time.sleep(0.05)
        child.send_signal(signum)
        output, errors = child.communicate(timeout=60)
    return child.returncode, output, errors


def events_in(db: Db, schema: str) -> int:
    """Count the schema's events, 0 before its tables exist."""
    table = db.execute("select to_regclass(%s)", (f'"{schema}".task_events',))
    if table.fetchone() == (None,):
        return 0
    return event_count(db)


def test_console_script_imports_in_subprocess(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("taskledger")
    path = write_jsonl(tmp_path / "h.jsonl", [line("a", "pending", 0), "oops"])
    command = [str(script), "--database-url", database_url, "--schema", schema]

    lenient = subprocess.run(
        [*command, "import", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    strict = subprocess.run(
        [*command, "import", "--strict", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert lenient.returncode == 0, lenient.stderr
    assert json.loads(lenient.stdout)["imported"] == 1
    assert strict.returncode == 1
    assert "error: line 2 is invalid" in strict.stderr
    assert "Traceback" not in strict.stderr


def test_help_shows_descriptive_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")

    result = CliRunner().invoke(app, ["import", "--help"])

    assert result.exit_code == 0
    assert "(from the file name)" in result.stdout
    assert "(the file name)" in result.stdout


def test_help_shows_flags_without_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")

    result = CliRunner().invoke(app, ["import", "--help"])

    assert result.exit_code == 0
    assert "--strict" in result.stdout
    assert "<bool>" not in result.stdout


def run_with_closed_pipe(
    arguments: list[str], stream: str
) -> subprocess.CompletedProcess[str]:
    """Run the console script with stdout or stderr on a pipe whose reader is gone."""
    script = Path(sys.executable).with_name("taskledger")
    # The reader end is closed before the command writes, as when `head` exits.
    reader, writer = os.pipe()
    os.close(reader)
    streams: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    streams[stream] = writer
    try:
        return subprocess.run(
            [str(script), *arguments],
            text=True,
            timeout=120,
            check=False,
            **streams,
        )
    finally:
        os.close(writer)


def test_closed_stdout_ends_quietly(database_url: str, schema: str) -> None:
    script = Path(sys.executable).with_name("taskledger")
    command = ["--database-url", database_url, "--schema", schema]
    subprocess.run(
        [str(script), *command, "migrate"], capture_output=True, timeout=120, check=True
    )

    closed = run_with_closed_pipe([*command, "lag", "--json"], "stdout")

    assert closed.returncode == 141
    assert closed.stderr == ""


def test_closed_stderr_ends_import_quietly(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    command = ["--database-url", database_url, "--schema", schema]
    path = write_jsonl(tmp_path / "h.jsonl", [line("a", "pending", 0), "oops"])

    closed = run_with_closed_pipe([*command, "import", str(path)], "stderr")

    assert closed.returncode == 141
    assert closed.stdout == ""


@pytest.mark.slow
def test_sigterm_stops_embedded_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pgserver")
    monkeypatch.delenv("TASKLEDGER_DATABASE_URL", raising=False)
    script = Path(sys.executable).with_name("taskledger")
    command = [str(script), "--data-dir", str(tmp_path)]
    subprocess.run([*command, "migrate"], capture_output=True, timeout=120, check=True)
    pid_file = tmp_path / "postmaster.pid"
    with subprocess.Popen(  # the command runs until stopped
        [*command, "tail"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as child:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # past the start of the server, into the wait for updates
        child.terminate()
        child.communicate(timeout=60)

    assert child.returncode == 128 + signal.SIGTERM
    assert not pid_file.exists()
