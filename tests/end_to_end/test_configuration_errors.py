from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from domain.errors import DatabaseTimeoutError, DatabaseUnavailableError
from infrastructure.errors import translated_errors
from infrastructure.settings import mask_conninfo, validate_schema
from taskledger import ConfigurationError, InvalidInputError, TaskLedger, TaskStatus


def test_missing_database_is_configuration_error(database_url: str) -> None:
    wrong = psycopg.conninfo.make_conninfo(database_url, dbname="no_such_db_here")

    with pytest.raises(ConfigurationError, match="does not exist"):
        TaskLedger.open(wrong, schema="anything")


def test_malformed_option_is_configuration_error(database_url: str) -> None:
    wrong = psycopg.conninfo.make_conninfo(database_url, sslmode="bogus")

    with pytest.raises(ConfigurationError, match="invalid sslmode value"):
        TaskLedger.open(wrong, schema="anything")


def test_missing_schema_without_migrate_is_reported(
    database_url: str, schema: str
) -> None:
    with pytest.raises(ConfigurationError, match="has no ledger tables"):
        TaskLedger.open(database_url, schema=schema, migrate=False)

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from pg_namespace where nspname = %s", (schema,)
        ).fetchone()
    assert row == (0,)


def test_statement_timeout_is_timeout_error(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("set statement_timeout = 10")

        with (
            pytest.raises(DatabaseTimeoutError, match="timed out"),
            translated_errors("sleeping"),
        ):
            conn.execute("select pg_sleep(1)")


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("postgresql://u:secret@h/db", "secret"),
        ("postgresql://u:se@cret@h/db", "cret"),
        ("postgresql://u@h/db?password=secret&sslmode=require", "secret"),
        ("host=h password=secret dbname=db", "secret"),
    ],
)
def test_masked_url_hides_password(url: str, hidden: str) -> None:
    assert hidden not in mask_conninfo(url)


def test_schema_name_leaves_room_for_channels() -> None:
    assert validate_schema("s" * 48) == "s" * 48

    with pytest.raises(ConfigurationError, match="at most 48"):
        validate_schema("s" * 49)


def test_occurred_at_outside_range_is_rejected(ledger: TaskLedger) -> None:
    far = datetime(9999, 12, 31, tzinfo=UTC)

    with pytest.raises(InvalidInputError, match="outside the supported range"):
        ledger.create_task("a", "A", "m", "chat", occurred_at=far)


def test_offset_with_seconds_is_kept_exactly(ledger: TaskLedger) -> None:
    paris_1900 = timezone(timedelta(minutes=9, seconds=21))
    local = datetime(1905, 6, 1, 12, 0, tzinfo=paris_1900)

    task = ledger.create_task("a", "A", "m", "chat", occurred_at=local)

    assert task.created_at == local
    assert ledger.get_task(task.id).created_at == local


def test_merged_metadata_size_is_bounded(ledger: TaskLedger) -> None:
    task = ledger.create_task("a", "A", "m", "chat", metadata={"a": "x" * 1_500_000})

    with pytest.raises(InvalidInputError, match="merged metadata"):
        ledger.start_task(task.id, metadata={"b": "y" * 1_500_000})

    assert ledger.get_task(task.id).version == 1


def test_track_keeps_caller_error_when_message_is_huge(ledger: TaskLedger) -> None:
    with pytest.raises(RuntimeError), ledger.track("a", "A", "m", "chat") as tracked:
        raise RuntimeError("x" * 3_000_000)

    failed = ledger.get_task(tracked.id)
    assert failed.status == "failed"
    assert failed.error_message is not None
    assert failed.error_message.endswith("[truncated]")


def test_track_updates_task_after_error(ledger: TaskLedger) -> None:
    with (
        pytest.raises(RuntimeError, match="model timed out"),
        ledger.track("a", "A", "m", "chat") as tracked,
    ):
        raise RuntimeError("model timed out")

    assert tracked.task.status is TaskStatus.FAILED
    assert tracked.task.error_message == "model timed out"
    assert tracked.task == ledger.get_task(tracked.id)


def test_track_keeps_error_when_fail_fails(
    ledger: TaskLedger,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unreachable(*args: object, **kwargs: object) -> None:
        raise DatabaseUnavailableError("the database could not be reached")

    monkeypatch.setattr(ledger, "fail_task", unreachable)

    with (
        pytest.raises(RuntimeError, match="model timed out"),
        ledger.track("a", "A", "m", "chat") as tracked,
    ):
        raise RuntimeError("model timed out")

    assert tracked.task.status is TaskStatus.PROCESSING
    assert "could not record the failure" in caplog.text


@pytest.mark.parametrize("with_data_dir", [False, True])
def test_missing_pgserver_is_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, with_data_dir: bool
) -> None:
    # As on Python 3.13, where neither pgserver nor its platformdirs installs.
    monkeypatch.setitem(sys.modules, "pgserver", None)
    monkeypatch.setitem(sys.modules, "platformdirs", None)
    monkeypatch.delenv("TASKLEDGER_DATABASE_URL", raising=False)
    if with_data_dir:
        monkeypatch.setenv("TASKLEDGER_DATA_DIR", str(tmp_path))
    else:
        monkeypatch.delenv("TASKLEDGER_DATA_DIR", raising=False)

    with pytest.raises(ConfigurationError, match="set TASKLEDGER_DATABASE_URL"):
        TaskLedger.open(schema="anything")
