"""Checks on the import file itself: damaged gzip and a format that does not fit."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import psycopg
import pytest

from taskledger import TaskLedger
from taskledger.importing import (
    ImportFileError,
    ImportFormat,
    ImportOptions,
    import_file,
)
from tests.importing.helpers import event_count, line, write_jsonl

Db = psycopg.Connection[Any]

LINES = 3_000


def gzip_history(tmp_path: Path) -> bytes:
    """Return a gzip JSON Lines history of LINES tasks, large enough for batches."""
    lines = [line(f"task-{number}", "pending", number % 60) for number in range(LINES)]
    plain = write_jsonl(tmp_path / "plain.jsonl", [*lines])
    return gzip.compress(plain.read_bytes())


def truncated(data: bytes) -> bytes:
    return data[: len(data) - 40]


def bad_checksum(data: bytes) -> bytes:
    # The trailer's first four bytes are the CRC-32 of the uncompressed data.
    damaged = bytearray(data)
    damaged[-8] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize("damage", [truncated, bad_checksum])
def test_damaged_gzip_appends_nothing(
    ledger: TaskLedger, db: Db, tmp_path: Path, damage: Any
) -> None:
    path = tmp_path / "history.jsonl.gz"
    path.write_bytes(damage(gzip_history(tmp_path)))
    options = ImportOptions(format=ImportFormat.JSONL, batch_size=50)

    with pytest.raises(ImportFileError) as raised:
        import_file(ledger, path, options)

    assert str(raised.value).startswith(f"{path} is a damaged or truncated gzip file (")
    assert "nothing was imported" in str(raised.value)
    assert event_count(db) == 0


def test_intact_gzip_imports_every_line(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "history.jsonl.gz"
    path.write_bytes(gzip_history(tmp_path))

    summary = import_file(ledger, path, ImportOptions(format=ImportFormat.JSONL))

    assert summary.imported == LINES
    assert summary.rejected == 0
    assert event_count(db) == LINES


XES_LOG = b"""<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0">
  <trace><string key="concept:name" value="a"/></trace>
</log>
"""


def test_xes_read_as_jsonl_is_refused(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    path = tmp_path / "log.xes.gz"
    path.write_bytes(gzip.compress(XES_LOG))

    with pytest.raises(ImportFileError) as raised:
        import_file(ledger, path, ImportOptions(format=ImportFormat.JSONL))

    assert str(raised.value).startswith("log.xes.gz is not JSON Lines: it starts")
    assert "--format xes" in str(raised.value)
    assert event_count(db) == 0


def test_binary_read_as_jsonl_is_refused(
    ledger: TaskLedger, db: Db, tmp_path: Path
) -> None:
    # Compressed twice, so the first decompression still yields binary data.
    path = tmp_path / "history.jsonl.gz"
    path.write_bytes(gzip.compress(gzip.compress(b'{"task_id": "a"}\n' * 50)))

    with pytest.raises(ImportFileError) as raised:
        import_file(ledger, path, ImportOptions(format=ImportFormat.JSONL))

    assert "is not JSON Lines: its first line is not UTF-8 text" in str(raised.value)
    assert event_count(db) == 0
