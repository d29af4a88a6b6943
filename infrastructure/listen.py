"""One LISTEN connection whose notifications wake the handlers registered on it.

A notification carries no data that a handler relies on. It only signals that
something changed, and each handler reads what it needs by position. So a
notification lost while the connection is down costs nothing, provided every
handler is woken once more after the reconnect, which this listener does.
PostgreSQL queues notifications only for sessions that are listening at commit
time (https://www.postgresql.org/docs/current/sql-notify.html).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from infrastructure.settings import mask_conninfo

logger = logging.getLogger(__name__)

APPLICATION_NAME = "taskledger-listen"
INITIAL_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
# How often the thread looks up from waiting to notice stop().
_STOP_CHECK_SECONDS = 0.25

Handler = Callable[[], None]


class NotificationListener:
    """Listens on one channel in a daemon thread, reconnecting with backoff.

    Handlers run on the listener's thread and must return quickly (setting a
    threading.Event is the intended use).
    """

    def __init__(self, conninfo: str, channel: str, *, connect_timeout: int = 10):
        self.conninfo = conninfo
        self.channel = channel
        self.connect_timeout = connect_timeout
        self._handlers: set[Handler] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, handler: Handler) -> None:
        with self._lock:
            self._handlers.add(handler)

    def remove(self, handler: Handler) -> None:
        with self._lock:
            self._handlers.discard(handler)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"listen-{self.channel}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = INITIAL_BACKOFF_SECONDS
        lost_at: float | None = None
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    self.conninfo,
                    autocommit=True,
                    application_name=APPLICATION_NAME,
                    connect_timeout=self.connect_timeout,
                    # TCP keepalives make a connection whose network path was
                    # lost fail within about 25 s instead of waiting forever.
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                ) as conn:
                    conn.execute(
                        sql.SQL("listen {}").format(sql.Identifier(self.channel))
                    )
                    if lost_at is not None:
                        self._log_restored(time.monotonic() - lost_at)
                    lost_at = None
                    backoff = INITIAL_BACKOFF_SECONDS
                    # Changes made while the connection was down are found by
                    # reading, so every handler gets one wake-up now.
                    self._wake_all()
                    self._receive(conn)
            except psycopg.Error as error:
                if lost_at is None:
                    lost_at = time.monotonic()
                    self._log_lost(error)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _receive(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        while not self._stopping.is_set():
            for _ in conn.notifies(timeout=_STOP_CHECK_SECONDS):
                self._wake_all()

    def _wake_all(self) -> None:
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler()

    def _log_lost(self, error: psycopg.Error) -> None:
        logger.warning(
            "listening on %s via %s failed, reconnecting with backoff: %s",
            self.channel,
            mask_conninfo(self.conninfo),
            str(error).strip() or type(error).__name__,
            extra={"action": "listen_lost", "channel": self.channel},
        )

    def _log_restored(self, outage_seconds: float) -> None:
        logger.warning(
            "listening on %s again after an outage of %.1f s",
            self.channel,
            outage_seconds,
            extra={
                "action": "listen_restored",
                "channel": self.channel,
                "outage_seconds": round(outage_seconds, 3),
            },
        )
