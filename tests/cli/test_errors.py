"""The CLI's error output: one sentence, non-zero exit, no traceback."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from domain.errors import DatabaseUnavailableError
from taskledger import cli_import
from taskledger.cli import app, main, misplaced_global_option
from taskledger.cli_common import describe_error
from taskledger.importing import ImportSummary
from tests.cli.conftest import Invoke

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("TASKLEDGER_DATABASE_URL", raising=False)


def test_unreachable_database_is_one_sentence() -> None:
    url = "postgresql://alice:s3cret@127.0.0.1:1/ledger"

    result = runner.invoke(app, ["--database-url", url, "migrate"])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: migrating postgresql://alice:***@")
    assert "database is unavailable" in result.stderr
    assert "s3cret" not in result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_transaction_pooler_url_is_rejected() -> None:
    url = "postgresql://alice:s3cret@127.0.0.1:6543/postgres"

    result = runner.invoke(app, ["--database-url", url, "migrate"])

    assert result.exit_code == 1
    assert "transaction-mode pooler (port 6543)" in result.stderr
    assert "alice:***@" in result.stderr
    assert "s3cret" not in result.output


def test_empty_url_option_is_rejected() -> None:
    result = runner.invoke(app, ["--database-url", " ", "tasks"])

    assert result.exit_code == 1
    assert "database URL is empty" in result.stderr
    assert "leave out --database-url" in result.stderr


def test_empty_url_variable_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLEDGER_DATABASE_URL", "")

    result = runner.invoke(app, ["tasks"])

    assert result.exit_code == 1
    assert "TASKLEDGER_DATABASE_URL is set but empty" in result.stderr
    assert "unset it" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["tasks", "--schema", "s"], ("--schema", "tasks")),
        (
            ["--schema", "tasks", "import", "f", "--database-url=u"],
            ("--database-url", "import"),
        ),
        (["--log-level", "debug", "tasks", "--limit", "2"], None),
        (["import", "--source", "s", "f.jsonl"], None),
        (["import", "--", "--schema"], None),
        (["--version"], None),
    ],
)
def test_misplaced_global_option_is_found(
    args: list[str], expected: tuple[str, str] | None
) -> None:
    assert misplaced_global_option(args) == expected


def test_misplaced_global_option_is_explained(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["taskledger", "tasks", "--schema", "s"])

    with pytest.raises(SystemExit) as stopped:
        main()

    assert stopped.value.code == 2
    assert capfd.readouterr().err.strip() == (
        "error: --schema is a global option, so it goes before the command: "
        "taskledger --schema VALUE tasks ..."
    )


def test_debug_log_level_shows_traceback() -> None:
    url = "postgresql://alice:s3cret@127.0.0.1:6543/postgres"

    result = runner.invoke(
        app, ["--database-url", url, "--log-level", "debug", "migrate"]
    )

    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "s3cret" not in result.output


def test_missing_file_is_named(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("import", str(tmp_path / "absent.jsonl"))

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: file {tmp_path / 'absent.jsonl'} not found; check the path"
    )


def test_unknown_format_is_named(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "tasks.txt"
    path.write_text("{}\n")

    result = invoke("import", str(path))

    assert result.exit_code == 1
    assert "the format of tasks.txt is unknown" in result.stderr


def test_xes_without_mapping_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "log.xes"
    path.write_text("<log/>")

    result = invoke("import", str(path))

    assert result.exit_code == 1
    assert "needs --mapping" in result.stderr


def test_wrong_mapping_is_one_sentence(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "log.xes"
    path.write_text("<log/>")
    mapping = tmp_path / "map.toml"
    mapping.write_text("[[status]]\nname = 'A'\nstatus = 'finished'\n")

    result = invoke("import", str(path), "--mapping", str(mapping))

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: mapping file {mapping} is invalid: ")
    assert "key status is 'finished', not one of" in result.stderr
    assert "Traceback" not in result.output


def test_malformed_line_with_strict_exits_non_zero(
    invoke: Invoke, tmp_path: Path
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(
        '{"task_id": "a", "status": "pending", '
        '"occurred_at": "2024-01-01T00:00:00Z"}\n{"task_id": \n'
    )

    result = invoke("import", "--strict", str(path))

    assert result.exit_code == 1
    assert "rejected line 2: invalid JSON" in result.stderr
    assert "error: line 2 is invalid: invalid JSON" in result.stderr
    assert "drop --strict" in result.stderr


def test_malformed_xes_is_one_sentence(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "log.xes"
    path.write_text("<log><trace>")
    mapping = tmp_path / "map.toml"
    mapping.write_text("[[status]]\nname = 'A'\nstatus = 'pending'\n")

    result = invoke("import", str(path), "--mapping", str(mapping))

    assert result.exit_code == 1
    assert "log.xes is not well-formed XML" in result.stderr


def test_csv_named_xes_suggests_format(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "pods.xes"
    path.write_text("name,creation_time,deletion_time\npod-1,0,60\n")
    mapping = tmp_path / "map.toml"
    mapping.write_text("[[status]]\nname = 'A'\nstatus = 'pending'\n")

    result = invoke("import", str(path), "--mapping", str(mapping))

    assert result.exit_code == 1
    assert result.stderr.startswith("error: pods.xes is not an XES log")
    assert "--format jsonl or --format alibaba" in result.stderr
    assert "Import summary" not in result.stdout


def test_truncated_gzip_is_one_sentence(invoke: Invoke, tmp_path: Path) -> None:
    plain = "".join(
        f'{{"task_id": "t{number}", "status": "pending", '
        f'"occurred_at": "2024-01-01T00:00:00Z"}}\n'
        for number in range(2_000)
    )
    path = tmp_path / "h.jsonl.gz"
    path.write_bytes(gzip.compress(plain.encode())[:-40])

    result = invoke("import", "--batch-size", "10", str(path))

    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: {path} is a damaged or truncated gzip file"
    )
    assert "nothing was imported" in result.stderr
    assert "None" not in result.stderr
    assert "Import summary" not in result.stdout


def test_os_error_without_strerror_shows_text() -> None:
    error = OSError("Not a gzipped file (b'xx')")

    message = describe_error(error)

    assert message == "a file cannot be read: Not a gzipped file (b'xx')"


def test_eof_error_is_described() -> None:
    message = describe_error(EOFError("Compressed file ended early"))

    assert message is not None
    assert message.startswith("the input ended unexpectedly (Compressed file")


def test_gzip_xes_as_jsonl_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "log.xes.gz"
    log = "<log>\n" + "<trace><event/></trace>\n" * 500 + "</log>\n"
    path.write_bytes(gzip.compress(log.encode()))

    result = invoke("import", "--format", "jsonl", str(path))

    assert result.exit_code == 1
    assert result.stderr.startswith("error: log.xes.gz is not JSON Lines")
    assert "--format xes" in result.stderr
    assert "rejected" not in result.stderr


@pytest.mark.parametrize(
    ("name", "option", "message"),
    [
        (
            "h.jsonl",
            "--mapping",
            "error: --mapping applies only to XES logs, but h.jsonl is read as "
            "JSON Lines; drop --mapping or give --format xes",
        ),
        (
            "pods.csv",
            "--mapping",
            "error: --mapping applies only to XES logs, but pods.csv is read as "
            "an Alibaba pod list; drop --mapping or give --format xes",
        ),
        (
            "h.jsonl",
            "--epoch",
            "error: --epoch applies only to the Alibaba pod list, but h.jsonl is "
            "read as JSON Lines; drop --epoch or give --format alibaba",
        ),
    ],
)
def test_option_of_other_format_is_rejected(
    invoke: Invoke, tmp_path: Path, name: str, option: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text("{}\n")
    mapping = tmp_path / "map.toml"
    mapping.write_text("[[status]]\nname = 'A'\nstatus = 'pending'\n")
    value = str(mapping) if option == "--mapping" else "2023-01-01T00:00:00+00:00"

    result = invoke("import", str(path), option, value)

    assert result.exit_code == 1
    assert result.stderr.strip() == message
    assert "Import summary" not in result.stdout


def test_epoch_with_xes_is_rejected(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "log.xes"
    path.write_text("<log/>")
    mapping = tmp_path / "map.toml"
    mapping.write_text("[[status]]\nname = 'A'\nstatus = 'pending'\n")

    result = invoke(
        "import",
        str(path),
        "--mapping",
        str(mapping),
        "--epoch",
        "2023-01-01T00:00:00+00:00",
    )

    assert result.exit_code == 1
    assert "--epoch applies only to the Alibaba pod list" in result.stderr


def test_outage_during_import_reports_kept_entries(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("")

    def import_until_outage(*args: Any, on_progress: Any, **kwargs: Any) -> None:
        # The first batches were appended, then the server went away.
        on_progress(ImportSummary(imported=1200), 10, 20)
        raise DatabaseUnavailableError("the database is not reachable; retry later")

    monkeypatch.setattr(cli_import, "import_file", import_until_outage)

    result = invoke("import", str(path))

    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert message.startswith("error: the database is not reachable; retry later.")
    assert "The import stopped: at least 1,200 entries were imported and kept" in (
        message
    )
