"""TaskLedger, the public facade: commands, queries and subscriptions."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self
from uuid import UUID

from psycopg import Connection as PgConnection
from psycopg.rows import DictRow

from domain.errors import ProjectionLagError, ReadModelDamagedError
from domain.record import TaskRecord
from domain.status import TaskStatus
from domain.update import TaskUpdate
from domain.values import (
    optional_id,
    parse_task_id,
)
from infrastructure.errors import translated_errors
from infrastructure.listen_updates import UpdateFilter
from infrastructure.settings import mask_conninfo
from projections.history import (
    HistoryEntry,
    check_point_in_time,
    get_history,
    get_task_at,
)
from projections.lag import LagReport, read_lag
from projections.projector import TaskProjector
from projections.queries import (
    TaskFilter,
    TaskPage,
    check_page,
    decode_cursor,
    get_task,
    get_tasks,
)
from projections.rebuild import (
    DEFAULT_REBUILD_BATCH_SIZE,
    RebuildProgress,
    RebuildResult,
    rebuild_projection,
)
from projections.runner import ProjectorRunner
from projections.statistics_query import (
    StatisticsWindow,
    TaskStatistics,
    get_statistics,
)
from projections.subscriptions import Subscription, UpdateFeed
from projections.subscriptions_async import iterate_updates
from projections.subscriptions_retention import (
    DEFAULT_UPDATE_RETENTION,
    UpdatePruner,
)
from projections.tables import ProjectionTables
from taskledger.commands import TaskCommands
from taskledger.connect import Connection, LedgerApplication, connect
from taskledger.ledger_commands import LedgerCommands

logger = logging.getLogger(__name__)

DEFAULT_READ_TIMEOUT = 10.0
CHECKPOINT_POLL_SECONDS = 0.02


class TaskLedger(LedgerCommands):
    """Record task transitions as events and read the projected tasks.

    Open one with TaskLedger.open(); it is a context manager, and close()
    releases its connections (and stops the embedded server if it started one).
    """

    def __init__(
        self,
        connection: Connection,
        *,
        project: bool = True,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        update_retention: timedelta = DEFAULT_UPDATE_RETENTION,
    ) -> None:
        self._connection = connection
        self._commands = TaskCommands(connection.app)
        self._tables = ProjectionTables(connection.schema)
        self._read_timeout = read_timeout
        self._written_position = 0
        self._feed = UpdateFeed(connection.url, self._tables, self._pooled_connection)
        pruner = UpdatePruner(self._tables, update_retention)
        self._projector = ProjectorRunner(
            connection.url, TaskProjector(self._tables), on_idle=pruner.prune_if_due
        )
        self._project = project
        if project:
            self._projector.start()

    @classmethod
    def open(
        cls,
        database_url: str | None = None,
        *,
        schema: str | None = None,
        data_dir: str | Path | None = None,
        migrate: bool = True,
        project: bool = True,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        update_retention: timedelta = DEFAULT_UPDATE_RETENTION,
    ) -> TaskLedger:
        """Connect to the database URL, TASKLEDGER_DATABASE_URL or the embedded one.

        Pending migrations are applied unless migrate is False. With project
        (the default) this process runs the projector in a background thread,
        as the active one or as a standby if another process already does.
        Queries wait up to read_timeout seconds for the projection to reach
        this ledger's own latest write. The projector keeps task_updates rows,
        which subscriptions read, for update_retention.
        """
        path = None if data_dir is None else Path(data_dir)
        connection = connect(database_url, schema, path, migrate=migrate)
        return cls(
            connection,
            project=project,
            read_timeout=read_timeout,
            update_retention=update_retention,
        )

    @property
    def application(self) -> LedgerApplication:
        """The eventsourcing application that stores this ledger's events.

        Its recorder and mapper serve bulk work such as imports, which append
        many commands in one transaction.
        """
        return self._connection.app

    @property
    def schema(self) -> str:
        return self._connection.schema

    @property
    def database(self) -> str:
        """The database URL, with its password replaced by ***."""
        return mask_conninfo(self._connection.url)

    def close(self) -> None:
        self._feed.close()
        self._projector.stop()
        self._connection.app.close()
        if self._connection.embedded is not None:
            self._connection.embedded.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Queries

    def get_task(self, task_id: UUID | str) -> TaskRecord:
        """Return the task as projected, including this ledger's own writes."""
        identifier = parse_task_id(task_id)
        with self._reading("get_task") as conn:
            return get_task(conn, self._tables, identifier)

    def get_tasks(
        self,
        agent_id: str | None = None,
        status: TaskStatus | str | None = None,
        user_id: str | None = None,
        task_type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        after: str | None = None,
    ) -> TaskPage:
        """Return a page of matching tasks, newest first, and the count of matches.

        created_after is inclusive and created_before exclusive; limit is 1 to
        1000. The page and its total come from one snapshot. after, a page's
        next_cursor, starts the page after that one, so that tasks created
        meanwhile shift nothing.
        """
        task_filter = TaskFilter.validated(
            agent_id, status, user_id, task_type, created_after, created_before
        )
        page_limit, page_offset = check_page(limit, offset)
        cursor = None if after is None else decode_cursor(after)
        with self._reading("get_tasks") as conn:
            return get_tasks(
                conn, self._tables, task_filter, page_limit, page_offset, cursor
            )

    def get_statistics(
        self,
        agent_id: str | None = None,
        task_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> TaskStatistics:
        """Return figures over the tasks created in [since, until).

        since and until must carry a time zone; either may be None for an
        open end. A figure with nothing to count is None.
        """
        window = StatisticsWindow.validated(since, until)
        agent = optional_id("agent_id", agent_id)
        kind = optional_id("task_type", task_type)
        with self._reading("get_statistics") as conn:
            return get_statistics(conn, self._tables, window, agent, kind)

    def get_history(self, task_id: UUID | str) -> list[HistoryEntry]:
        """Return the task's events in order, with who caused each and when."""
        identifier = parse_task_id(task_id)
        with self._reading("get_history", wait=False) as conn:
            return get_history(conn, self._tables, identifier)

    def get_task_at(
        self,
        task_id: UUID | str,
        version: int | None = None,
        at: datetime | None = None,
    ) -> TaskRecord:
        """Return the task after a version, or as of an occurred time.

        Give at most one of them; with neither, the task after its last event.
        The task is folded from its events, never read from agent_tasks.
        """
        identifier = parse_task_id(task_id)
        checked_version, moment = check_point_in_time(version, at)
        with self._reading("get_task_at", wait=False) as conn:
            return get_task_at(conn, self._tables, identifier, checked_version, moment)

    def lag(self) -> LagReport:
        """Return the head position and how far each projection is behind it."""
        with self._reading("lag", wait=False) as conn:
            return read_lag(conn, self._tables)

    def rebuild(
        self,
        progress: Callable[[RebuildProgress], None] | None = None,
        batch_size: int = DEFAULT_REBUILD_BATCH_SIZE,
    ) -> RebuildResult:
        """Replay every event into fresh read-model tables and swap them in.

        Commands and queries go on meanwhile; an interrupted rebuild resumes
        when called again. progress receives a report after each batch. A
        projection of this ledger that stopped at a damaged row resumes.
        """
        with translated_errors("rebuild"):
            result = rebuild_projection(
                self._connection.url,
                self.schema,
                progress=progress,
                batch_size=batch_size,
            )
        if self._project and isinstance(self._projector.error, ReadModelDamagedError):
            # The damaged rows that stopped the projection are gone.
            self._projector.resume()
        return result

    @contextmanager
    def _reading(
        self, action: str, *, wait: bool = True
    ) -> Iterator[PgConnection[DictRow]]:
        if wait:
            self.wait_for_projection(self._written_position)
        with (
            translated_errors(action),
            self._connection.app.recorder.datastore.get_connection() as conn,  # type: ignore[attr-defined]
        ):
            yield conn

    def wait_for_projection(self, position: int, timeout: float | None = None) -> None:
        """Block until the projection has applied every event up to position.

        Other processes get read-your-writes the same way: pass the position of
        their last command (TaskRecord.position) to this method before reading.
        """
        if position <= 0:
            return
        limit = self._read_timeout if timeout is None else timeout
        if not self._project:
            checkpoint = self._poll_checkpoint(position, limit)
            if checkpoint >= position:
                return
            raise ProjectionLagError(position, checkpoint, limit)
        if self._projector.wait_for(position, limit):
            return
        if self._projector.error is not None:
            raise self._projector.error
        # The runner holds only the checkpoints it read or committed itself,
        # none before its first read and no new ones while another process
        # is the active projector.
        checkpoint = self._poll_checkpoint(position, 0.0)
        if checkpoint >= position:
            return
        raise ProjectionLagError(position, checkpoint, limit)

    def _poll_checkpoint(self, position: int, timeout: float) -> int:
        """Read the checkpoint until it reaches position or timeout seconds pass.

        A ledger opened with project=False runs no projector thread to publish
        the checkpoint, so it reads the one that another process commits.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._reading("wait_for_projection", wait=False) as conn:
                checkpoint = self._projector.projector.checkpoint(conn)
            if checkpoint >= position or time.monotonic() >= deadline:
                return checkpoint
            time.sleep(CHECKPOINT_POLL_SECONDS)

    # Subscriptions

    def subscribe(
        self,
        callback: Callable[[TaskUpdate], object],
        agent_id: str | None = None,
        status: TaskStatus | str | None = None,
        user_id: str | None = None,
        task_type: str | None = None,
        after_position: int | None = None,
    ) -> Subscription:
        """Call callback with every projected task update that matches the filters.

        Filters match the task as projected after the event. Without
        after_position, delivery starts at the head: with the first event
        appended after subscribe returns. With it, every matching update after
        that position comes first, then live ones, with no gap and no
        duplicate. Updates arrive in position order on the subscription's own
        thread. A callback that raises an Exception is logged and delivery goes
        on. SystemExit or KeyboardInterrupt ends the subscription, and its error
        is that exception. Raises UpdatesPrunedError if retention already
        deleted updates after after_position.
        """
        update_filter = UpdateFilter.of(agent_id, status, user_id, task_type)
        return self._feed.subscribe(callback, update_filter, after_position)

    def updates(
        self,
        agent_id: str | None = None,
        status: TaskStatus | str | None = None,
        user_id: str | None = None,
        task_type: str | None = None,
        after_position: int | None = None,
    ) -> AsyncIterator[TaskUpdate]:
        """Return an async iterator over the updates subscribe() would deliver.

        The subscription starts at the first iteration. Wrap the iterator in
        contextlib.aclosing() to end it as soon as the `async for` is left.
        """
        update_filter = UpdateFilter.of(agent_id, status, user_id, task_type)
        return iterate_updates(self._feed, update_filter, after_position)

    def _pooled_connection(self) -> AbstractContextManager[PgConnection[DictRow]]:
        datastore = self._connection.app.recorder.datastore  # type: ignore[attr-defined]
        connection: AbstractContextManager[PgConnection[DictRow]]
        connection = datastore.get_connection()
        return connection
