"""Deliver projected task updates to subscribers, in position order.

Every subscription has its own delivery thread. The thread reads the matching
task_updates rows after the last position it examined, at most READ_AHEAD rows
at a time, and calls the callback for each row. Once it has caught up, it
sleeps until the shared listener wakes it or poll_interval passes. The table is the
buffer: a slow callback makes only its own subscription lag, never the
projector or the other subscribers, and a subscription holds at most
READ_AHEAD updates in memory. No connection is held while a callback runs.

Catch-up and live delivery are the same loop, so they leave no gap and no
duplicate between them; a notification only wakes the loop, so a lost one
delays delivery by at most poll_interval and loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Self

from psycopg import Connection
from psycopg.rows import DictRow

from domain.errors import InvalidInputError, StorageError
from domain.update import TaskUpdate, UpdatesPrunedError
from infrastructure.errors import translated_errors
from infrastructure.listen import NotificationListener
from infrastructure.listen_updates import (
    UpdateBatch,
    UpdateFilter,
    UpdateQueries,
    UpdateTables,
    check_retained,
    read_head,
    read_updates,
)
from projections.tables import ProjectionTables

logger = logging.getLogger(__name__)

READ_AHEAD = 100
DEFAULT_POLL_INTERVAL = 5.0
INITIAL_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
# A callback that keeps failing is logged on every update, with the traceback
# at most once per this many seconds.
TRACEBACK_INTERVAL_SECONDS = 60.0

Callback = Callable[[TaskUpdate], object]
ConnectionSource = Callable[[], AbstractContextManager[Connection[DictRow]]]
Reader = Callable[[int, UpdateFilter, int], UpdateBatch]


class Subscription:
    """A running subscription; unsubscribe() or leave its `with` block to end it."""

    def __init__(
        self,
        callback: Callback,
        update_filter: UpdateFilter,
        after_position: int,
        read: Reader,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_end: Callable[[Subscription], None] | None = None,
    ) -> None:
        self.filter = update_filter
        self._callback = callback
        self._read = read
        self._poll_interval = poll_interval
        self._on_end = on_end
        self._position = after_position
        self._error: BaseException | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._last_traceback = -TRACEBACK_INTERVAL_SECONDS
        self._thread = threading.Thread(
            target=self._run, name="task-subscription", daemon=True
        )

    @property
    def position(self) -> int:
        """The position up to which every matching update has been delivered."""
        return self._position

    @property
    def error(self) -> BaseException | None:
        """The error that ended the subscription, if one did."""
        return self._error

    @property
    def active(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Make the delivery thread read now; the listener calls this."""
        self._wake.set()

    def unsubscribe(self, timeout: float = 5.0) -> None:
        """Stop delivery; no callback starts after this returns.

        A callback that is running finishes first (waiting up to timeout
        seconds for it). Called from inside the callback, it returns at once.
        """
        self._stopping.set()
        self._wake.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.unsubscribe()

    def _run(self) -> None:
        try:
            self._deliver_until_stopped()
        except UpdatesPrunedError as error:
            logger.error(  # noqa: TRY400 (the message is the whole story)
                "subscription ended: %s",
                error,
                extra={"action": "subscription_pruned", "position": self._position},
            )
            self._error = error
        except Exception as error:
            logger.exception(
                "subscription ended by an unexpected error after position %d",
                self._position,
                extra={"action": "subscription_failed", "position": self._position},
            )
            self._error = error
        except BaseException as error:
            # SystemExit or KeyboardInterrupt from the callback, which _call
            # logged. Without this, the thread would end and leave error None.
            self._error = error
        finally:
            self._stopping.set()
            if self._on_end is not None:
                self._on_end(self)

    def _deliver_until_stopped(self) -> None:
        outage_started: float | None = None
        backoff = INITIAL_BACKOFF_SECONDS
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                batch = self._read(self._position, self.filter, READ_AHEAD)
            except UpdatesPrunedError:
                raise
            except StorageError as error:
                if outage_started is None:
                    outage_started = time.monotonic()
                    _log_read_failed(error, self._position)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            if outage_started is not None:
                _log_read_restored(time.monotonic() - outage_started, self._position)
                outage_started = None
                backoff = INITIAL_BACKOFF_SECONDS
            for update in batch.updates:
                if self._stopping.is_set():
                    return
                self._call(update)
                self._position = update.position
            self._position = max(self._position, batch.through)
            if len(batch.updates) < READ_AHEAD:
                self._wake.wait(self._poll_interval)

    def _call(self, update: TaskUpdate) -> None:
        try:
            self._callback(update)
        except (SystemExit, KeyboardInterrupt) as error:
            logger.error(  # noqa: TRY400 (the message is the whole story)
                "subscription ended: its callback raised %r for task %s at position %d",
                error,
                update.task.id,
                update.position,
                extra={
                    "action": "subscription_failed",
                    "task_id": str(update.task.id),
                    "position": update.position,
                },
            )
            raise
        except Exception as error:
            now = time.monotonic()
            with_traceback = now - self._last_traceback >= TRACEBACK_INTERVAL_SECONDS
            if with_traceback:
                self._last_traceback = now
            logger.warning(
                "subscription callback failed for task %s at position %d: %r",
                update.task.id,
                update.position,
                error,
                exc_info=with_traceback,
                extra={
                    "action": "subscription_callback_failed",
                    "task_id": str(update.task.id),
                    "position": update.position,
                },
            )


class UpdateFeed:
    """The subscriptions of one ledger, woken by one shared LISTEN connection.

    One listening connection serves every subscription of the ledger, and
    reads go through the ledger's pool, so a subscription costs a thread but
    no connection of its own.
    """

    # TODO: every wake-up costs one query per subscription, which delays the
    # last callbacks when a ledger has many subscriptions (about 55 ms at the
    # median with 50 on a 2-core machine); one shared read would cost one.

    def __init__(
        self,
        conninfo: str,
        tables: ProjectionTables,
        connections: ConnectionSource,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if tables.updates is None:
            raise ValueError("a feed needs a projection that writes task_updates")
        self.queries = UpdateQueries(
            UpdateTables(tables.schema, tables.updates, tables.projection)
        )
        self.listener = NotificationListener(conninfo, tables.updates_channel)
        self._connections = connections
        self._poll_interval = poll_interval
        self._subscriptions: set[Subscription] = set()
        self._lock = threading.Lock()

    def subscribe(
        self,
        callback: Callback,
        update_filter: UpdateFilter,
        after_position: int | None = None,
        *,
        on_end: Callable[[Subscription], None] | None = None,
    ) -> Subscription:
        """Start a subscription after a position, or after the current head.

        Raises UpdatesPrunedError if retention already deleted updates after
        after_position, and DatabaseUnavailableError if the database cannot be
        reached to find the starting position.
        """
        start = self._starting_position(after_position)
        self.listener.start()

        def ended(subscription: Subscription) -> None:
            self._forget(subscription)
            if on_end is not None:
                on_end(subscription)

        subscription = Subscription(
            callback,
            update_filter,
            start,
            self._read,
            poll_interval=self._poll_interval,
            on_end=ended,
        )
        with self._lock:
            self._subscriptions.add(subscription)
        self.listener.add(subscription.wake)
        subscription.start()
        return subscription

    def close(self) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.unsubscribe()
        self.listener.stop()

    def _starting_position(self, after_position: int | None) -> int:
        if after_position is not None and (
            isinstance(after_position, bool) or not isinstance(after_position, int)
        ):
            raise InvalidInputError(
                f"after_position must be an integer, got {after_position!r}"
            )
        if after_position is not None and after_position < 0:
            raise InvalidInputError(
                f"after_position must be 0 or more, got {after_position}"
            )
        with (
            translated_errors("subscribing to task updates"),
            self._connections() as conn,
        ):
            if after_position is None:
                return read_head(conn, self.queries)
            check_retained(conn, self.queries, after_position)
            return after_position

    def _read(self, after: int, update_filter: UpdateFilter, limit: int) -> UpdateBatch:
        with translated_errors("reading task updates"), self._connections() as conn:
            return read_updates(conn, self.queries, after, update_filter, limit)

    def _forget(self, subscription: Subscription) -> None:
        self.listener.remove(subscription.wake)
        with self._lock:
            self._subscriptions.discard(subscription)


def _log_read_failed(error: StorageError, position: int) -> None:
    logger.warning(
        "subscription cannot read task updates, retrying with backoff: %s",
        error,
        extra={"action": "subscription_read_failed", "position": position},
    )


def _log_read_restored(outage_seconds: float, position: int) -> None:
    logger.warning(
        "subscription reads task updates again after an outage of %.1f s, "
        "resuming after position %d",
        outage_seconds,
        position,
        extra={
            "action": "subscription_read_restored",
            "position": position,
            "outage_seconds": round(outage_seconds, 3),
        },
    )
