"""The embedded server: it stops when its last live user closes it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from infrastructure.embedded import HANDLES_FILE, EmbeddedPostgres

pytest.importorskip("pgserver")
psutil = pytest.importorskip("psutil")


def ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def zombie() -> subprocess.Popen[bytes]:
    """Start a process that exits and is not reaped until its wait()."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while psutil.Process(process.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return process


@pytest.mark.parametrize("state", ["reaped", "zombie"])
def test_server_stops_after_killed_user(tmp_path: Path, state: str) -> None:
    data_dir = tmp_path / "pgdata"
    first = EmbeddedPostgres(data_dir)
    first.start()
    first.stop()
    unreaped = zombie() if state == "zombie" else None
    pid = ended_pid() if unreaped is None else unreaped.pid
    (data_dir / HANDLES_FILE).write_text(json.dumps([pid, ["not a pid"]]))

    server = EmbeddedPostgres(data_dir)
    url = server.start()
    server.stop()
    if unreaped is not None:
        unreaped.wait()

    assert json.loads((data_dir / HANDLES_FILE).read_text()) == []
    assert not (data_dir / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()
