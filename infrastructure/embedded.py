"""The embedded PostgreSQL server (pgserver), used when no database URL is set."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from domain.errors import ConfigurationError

logger = logging.getLogger(__name__)

DATA_DIR_VARIABLE = "TASKLEDGER_DATA_DIR"
# pgserver 0.1.4 ships wheels for CPython 3.9 to 3.12 only.
NOT_INSTALLED = (
    "no database URL is set and the embedded PostgreSQL (pgserver) is not "
    "installed; set TASKLEDGER_DATABASE_URL, or install pgserver on Python 3.11 "
    "or 3.12"
)


def default_data_dir() -> Path:
    configured = os.environ.get(DATA_DIR_VARIABLE)
    if configured:
        return Path(configured)
    try:
        import platformdirs  # noqa: PLC0415 (installed with pgserver)
    except ImportError as error:
        raise ConfigurationError(NOT_INSTALLED) from error
    return Path(platformdirs.user_data_dir("taskledger")) / "pgdata"


class EmbeddedPostgres:
    """A PostgreSQL 16 server started on demand from the pgserver wheel.

    The server keeps running while any process uses it, and the last process
    to close it stops it. A process that ended without closing it, as after
    SIGKILL, is forgotten at the next start. The data stays in the data
    directory between runs.
    """

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = data_dir or default_data_dir()
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server and return its connection URL."""
        with warnings.catch_warnings():
            # platformdirs warns on every start where XDG_RUNTIME_DIR is unset,
            # as in containers and over ssh, and falls back to /tmp.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            return self._start()

    def _start(self) -> str:
        try:
            import pgserver  # noqa: PLC0415 (slow import, needed only here)
        except ImportError as error:
            raise ConfigurationError(NOT_INSTALLED) from error
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _forget_ended_processes(self.data_dir)
        logger.info(
            "starting embedded PostgreSQL",
            extra={"action": "embedded_start", "data_dir": str(self.data_dir)},
        )
        try:
            self._server = pgserver.get_server(  # type: ignore[attr-defined]
                self.data_dir, cleanup_mode="stop"
            )
        except Exception as error:
            raise ConfigurationError(
                f"the embedded PostgreSQL in {self.data_dir} failed to start: {error}"
            ) from error
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


# pgserver 0.1 lists the processes that use a server in this file of the data
# directory, and the last one to close stops the server.
HANDLES_FILE = ".handle_pids.json"


def _forget_ended_processes(data_dir: Path) -> None:
    """Remove the ended processes from pgserver's list of the server's users.

    A process killed with SIGKILL stays in the list, so the server would
    otherwise run on after every live user has closed it.
    """
    from pgserver.postgres_server import PostgresServer  # noqa: PLC0415

    path = data_dir / HANDLES_FILE
    with PostgresServer._lock:
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if not isinstance(pids, list):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _is_running(pid)]
        if alive != pids:
            ended = [pid for pid in pids if pid not in alive]
            logger.info(
                "forgetting ended users of the embedded PostgreSQL: %s",
                ended,
                extra={"action": "embedded_forget"},
            )
            path.write_text(json.dumps(alive))


def _is_running(pid: int) -> bool:
    """Return whether the process runs; a zombie, killed but not reaped, does not."""
    import psutil  # noqa: PLC0415 (installed with pgserver)

    if pid <= 0:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
