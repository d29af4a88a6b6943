"""Run a projector in a background thread, one active process per projection.

The active runner holds a session-level advisory lock for its projection on its
own connection. Others wait as standbys and retry the lock, so when the active
process stops or its connection drops, a standby takes over within about one
poll interval. The checkpoint row is also locked in every batch, so even two
runners that both believed they were active could not apply an event twice.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg
from psycopg import Connection, sql
from psycopg.rows import DictRow, dict_row

from domain.errors import ProjectionError
from projections.projector import DEFAULT_BATCH_SIZE, BatchResult, TaskProjector
from projections.subscriptions_retention import DEFAULT_UPDATE_RETENTION, UpdatePruner
from projections.tables import ProjectionTables

logger = logging.getLogger(__name__)

APPLICATION_NAME = "taskledger-projector"
MAX_BACKOFF_SECONDS = 5.0
# A batch cancelled this many times in a row stops the projection.
MAX_CANCELLED_BATCHES = 3
STOP_CHECK_SECONDS = 0.05


def projection_lock_key(schema: str, projection: str) -> int:
    digest = hashlib.sha256(
        f"taskledger.project:{schema}:{projection}".encode()
    ).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ProjectorRunner:
    """Keeps one projection up to date until stopped."""

    def __init__(
        self,
        conninfo: str,
        projector: TaskProjector,
        *,
        poll_interval: float = 0.5,
        on_batch: Callable[[BatchResult], None] | None = None,
        on_idle: Callable[[Connection[DictRow]], None] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.projector = projector
        self.poll_interval = poll_interval
        self.on_batch = on_batch
        # Housekeeping (pruning task_updates) run by the active runner on its
        # connection after each catch-up.
        self.on_idle = on_idle
        tables = projector.tables
        self.lock_key = projection_lock_key(tables.schema, tables.projection)
        self.error: ProjectionError | None = None
        self.is_active = False
        self._checkpoint = 0
        # Batches cancelled in a row (statement or lock timeout, or a cancel).
        self._cancelled = 0
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def checkpoint(self) -> int:
        """The last position this runner saw committed."""
        return self._checkpoint

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run,
            name=f"projector-{self.projector.tables.projection}",
            daemon=True,
        )
        self._thread.start()

    def resume(self) -> None:
        """Start again after the projection stopped with an error."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.error = None
        self._cancelled = 0
        self.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until the checkpoint reaches position; False on timeout or error."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._checkpoint < position and self.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    return False
                self._changed.wait(min(remaining, 0.05))
        return self._checkpoint >= position

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    self.conninfo,
                    autocommit=True,
                    row_factory=dict_row,
                    application_name=APPLICATION_NAME,
                ) as conn:
                    backoff = 0.1
                    self._serve(conn)
            except ProjectionError as error:
                self._fail(error)
                return
            except psycopg.errors.QueryCanceled as error:
                if not self._retry_cancelled(error):
                    return
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                self.is_active = False
                logger.warning(
                    "projector connection failed, retrying in %.1f s: %s",
                    backoff,
                    error,
                    extra={"action": "projector_reconnect"},
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception as error:
                # A data error or a bug fails the same batch again on every
                # retry, so the projection stops and queries report why.
                name = self.projector.tables.projection
                logger.exception(
                    "projection %s failed", name, extra={"action": "projection_failed"}
                )
                stopped = ProjectionError(
                    f"projection {name} stopped after an unexpected error: {error}; "
                    "fix the cause and restart the process to resume from its "
                    "checkpoint"
                )
                stopped.__cause__ = error
                self._fail(stopped)
                return

    def _retry_cancelled(self, error: psycopg.errors.QueryCanceled) -> bool:
        """Wait before the batch runs again, or stop after too many cancellations.

        A statement timeout that every run of a batch exceeds would otherwise
        be retried forever as if the connection had failed.
        """
        self.is_active = False
        self._cancelled += 1
        name = self.projector.tables.projection
        if self._cancelled >= MAX_CANCELLED_BATCHES:
            stopped = ProjectionError(
                f"projection {name} stopped: its next batch was cancelled "
                f"{self._cancelled} times in a row ({error}); if a timeout "
                "cancelled it, raise the statement_timeout or lock_timeout of the "
                "projector's role or database URL, then restart the process"
            )
            stopped.__cause__ = error
            self._fail(stopped)
            return False
        delay = min(0.1 * 2**self._cancelled, MAX_BACKOFF_SECONDS)
        logger.warning(
            "projection %s: batch cancelled, retrying in %.1f s: %s",
            name,
            delay,
            error,
            extra={"action": "projector_batch_cancelled"},
        )
        self._stopping.wait(delay)
        return True

    def _fail(self, error: ProjectionError) -> None:
        name = self.projector.tables.projection
        message = str(error)
        if not message.startswith(f"projection {name} "):
            message = f"projection {name} stopped: {message}"
        logger.error("%s", message, extra={"action": "projection_stopped"})
        self.error = error
        with self._changed:
            self._changed.notify_all()

    def _serve(self, conn: Connection[DictRow]) -> None:
        # New events wake the active runner; committed batches wake standbys,
        # which then publish the checkpoint to their read-your-writes waiters.
        tables = self.projector.tables
        for channel in (tables.events_channel, tables.updates_channel):
            conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
        standby_logged = False
        while not self._stopping.is_set():
            if not self.is_active:
                self.is_active = self._try_lock(conn)
                if self.is_active:
                    logger.info(
                        "projection %s is active in this process",
                        self.projector.tables.projection,
                        extra={"action": "projection_active"},
                    )
                elif not standby_logged:
                    logger.info(
                        "projection %s: another process is projecting; waiting "
                        "to take over",
                        self.projector.tables.projection,
                        extra={"action": "projection_standby"},
                    )
                    standby_logged = True
            if self.is_active:
                self._catch_up(conn)
                if self.on_idle is not None:
                    self.on_idle(conn)
            else:
                self._publish(self.projector.checkpoint(conn))
            self._wait_for_events(conn)

    def _try_lock(self, conn: Connection[DictRow]) -> bool:
        row = conn.execute(
            "select pg_try_advisory_lock(%s) as locked", (self.lock_key,)
        ).fetchone()
        return bool(row and row["locked"])

    def _catch_up(self, conn: Connection[DictRow]) -> None:
        self.projector.catch_up(
            conn, on_batch=self._committed, stopping=self._stopping.is_set
        )
        if not self._stopping.is_set():
            self._publish(self.projector.checkpoint(conn))

    def _committed(self, result: BatchResult) -> None:
        self._cancelled = 0
        self._publish(result.last_position)
        if self.on_batch is not None:
            self.on_batch(result)

    def _wait_for_events(self, conn: Connection[DictRow]) -> None:
        # A notification only wakes the loop; the batch query finds the events.
        # Waiting in short slices lets stop() end the thread within one slice.
        deadline = time.monotonic() + self.poll_interval
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            slice_seconds = min(remaining, STOP_CHECK_SECONDS)
            for _ in conn.notifies(timeout=slice_seconds, stop_after=1):
                return

    def _publish(self, checkpoint: int) -> None:
        with self._changed:
            if checkpoint != self._checkpoint:
                self._checkpoint = checkpoint
                self._changed.notify_all()


def run_projector(
    conninfo: str,
    schema: str,
    stop: threading.Event,
    *,
    on_batch: Callable[[BatchResult], None] | None = None,
    poll_interval: float = 0.5,
    batch_size: int = DEFAULT_BATCH_SIZE,
    update_retention: timedelta = DEFAULT_UPDATE_RETENTION,
) -> None:
    """Keep schema's read model up to date until stop is set.

    The process projects while it has the projection's advisory lock, and
    otherwise waits as a standby until the lock is free. Raises the
    ProjectionError that stopped the projection, if one did.
    """
    tables = ProjectionTables(schema)
    runner = ProjectorRunner(
        conninfo,
        TaskProjector(tables, batch_size=batch_size),
        poll_interval=poll_interval,
        on_batch=on_batch,
        on_idle=UpdatePruner(tables, update_retention).prune_if_due,
    )
    runner.start()
    try:
        while not stop.wait(poll_interval):
            if runner.error is not None:
                raise runner.error
    finally:
        runner.stop()
