"""An embedded PostgreSQL (pgserver) that a test may restart, in a temp directory.

Restart tests never touch a shared server: they start their own from the
pgserver wheel, which listens on a Unix socket only, and restart that one with
the pg_ctl that the wheel ships.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class RestartableServer:
    """A pgserver instance that pg_ctl can restart."""

    def __init__(self, server: Any) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        self.server = server
        self.pg_ctl_path = POSTGRES_BIN_PATH / "pg_ctl"
        self.url = str(server.get_uri())

    def pg_ctl(self, *arguments: str) -> None:
        # The server writes to its log file. pg_ctl's own output goes to
        # /dev/null, because a pipe that the postmaster inherits never closes.
        subprocess.run(
            [str(self.pg_ctl_path), "-D", str(self.server.pgdata), *arguments],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self.server.system_user,
            timeout=60,
        )

    def restart(self, mode: str = "fast") -> None:
        """Stop the server and start it again.

        Shutdown mode "fast" ends every session and writes a checkpoint;
        "immediate" stops without one, like a crash, so the start recovers
        from the write-ahead log.
        """
        from pgserver.utils import PostmasterInfo

        self.pg_ctl("-w", "-m", mode, "-l", str(self.server.log), "restart")
        # pgserver stops the postmaster it recorded at start-up, so record the
        # new one for its cleanup.
        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(
            self.server.pgdata
        )


@contextmanager
def restartable_server(data_dir: Path) -> Iterator[RestartableServer]:
    """Start a server in data_dir; stop it and delete its data afterwards."""
    import pgserver

    server = pgserver.get_server(data_dir, cleanup_mode="delete")  # type: ignore[attr-defined]
    restartable = RestartableServer(server)
    try:
        yield restartable
    finally:
        server.cleanup()
