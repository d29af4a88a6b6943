"""The embedded server: it stops when its last live user closes it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from infrastructure.embedded import HANDLES_FILE, EmbeddedPostgres

pytest.importorskip("pgserver")


def ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_server_stops_after_killed_user(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    first = EmbeddedPostgres(data_dir)
    first.start()
    first.stop()
    (data_dir / HANDLES_FILE).write_text(json.dumps([ended_pid()]))

    server = EmbeddedPostgres(data_dir)
    url = server.start()
    server.stop()

    assert json.loads((data_dir / HANDLES_FILE).read_text()) == []
    assert not (data_dir / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()
