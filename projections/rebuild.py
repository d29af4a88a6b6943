"""Rebuild the read model from all events while writes and reads go on.

The rebuild projects every event into copies of agent_tasks and the statistics
tables, under a projection and checkpoint of its own, so an interrupted
rebuild continues where it stopped when run again. Once it has caught up, one
transaction swaps the copies in:

1. lock the live projection's checkpoint row, which pauses the live projector
   (each of its batches starts by locking that row);
2. let the live projection apply the events it has not seen yet, so that
   task_updates and subscribers miss nothing, then let the copies apply the
   same events, up to the same position;
3. lock the live tables, drop them, rename the copies to their names and give
   them the live tables' grants, policies and publication membership;
4. drop the rebuild's checkpoint row.

Readers use the old tables until that transaction commits. The rebuild never
writes task_updates, so subscribers do not receive history again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg.sql import SQL
from pydantic import BaseModel, ConfigDict

from domain.errors import (
    ConfigurationError,
    LedgerError,
    ReadModelDamagedError,
    StorageError,
)
from infrastructure.recorders import EVENTS_TABLE
from projections.missed_updates import MissedUpdates
from projections.projector import BatchResult, TaskProjector
from projections.read_model import PROJECTED_COLUMNS
from projections.runner import projection_lock_key
from projections.table_copies import (
    copy_other_columns,
    create_copy,
    replace_table,
    same_columns,
    table_exists,
)
from projections.table_dependents import dependents
from projections.tables import ProjectionTables

logger = logging.getLogger(__name__)

APPLICATION_NAME = "taskledger-rebuild"
DEFAULT_REBUILD_BATCH_SIZE = 5000
DEFAULT_LOCK_TIMEOUT = 5.0
DEFAULT_SWAP_ATTEMPTS = 5
# Passes of the replay before the swap. Each pass ends at the head it read
# first. The later passes shorten what the swap applies under its lock.
CATCH_UP_PASSES = 3


class RebuildInProgressError(LedgerError):
    """Another process is rebuilding the same schema's read model."""


class RebuildBlockedError(LedgerError):
    """A rebuild that cannot replace a read model table, because objects
    outside the ledger depend on it. The message names them."""


class RebuildProgress(BaseModel):
    """The state of a running rebuild, reported after each batch."""

    model_config = ConfigDict(frozen=True)

    # Events applied by this run, and the rebuild's checkpoint after them.
    events_done: int
    position: int
    # The head of task_events, and the positions between the checkpoint and it
    # (positions of rolled-back appends are never used, so this can exceed the
    # number of events still to apply).
    head: int
    remaining: int
    # Events per second applied by this run.
    rate: float


class RebuildResult(BaseModel):
    """The outcome of a finished rebuild."""

    model_config = ConfigDict(frozen=True)

    events: int
    position: int
    seconds: float
    resumed: bool


ProgressCallback = Callable[[RebuildProgress], None]


def rebuild_projection(
    conninfo: str,
    schema: str,
    *,
    progress: ProgressCallback | None = None,
    batch_size: int = DEFAULT_REBUILD_BATCH_SIZE,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    swap_attempts: int = DEFAULT_SWAP_ATTEMPTS,
) -> RebuildResult:
    """Rebuild agent_tasks and the statistics of schema from task_events.

    Raises ConfigurationError when the schema has no ledger tables,
    RebuildInProgressError when another rebuild of the schema runs,
    RebuildBlockedError when other objects, such as views, depend on the live
    tables, and StorageError when readers kept the live tables locked
    longer than lock_timeout seconds in each of swap_attempts attempts.
    """
    live = ProjectionTables(schema)
    copies = ProjectionTables.rebuild_copies(schema)
    started = time.monotonic()
    with psycopg.connect(
        conninfo,
        autocommit=True,
        row_factory=dict_row,
        application_name=APPLICATION_NAME,
    ) as conn:
        _require_ledger_tables(conn, live)
        check_no_dependents(conn, live)
        _hold_rebuild_lock(conn, copies)
        resumed = _prepare_copies(conn, live, copies)
        projector = TaskProjector(copies, batch_size=batch_size, notify=False)
        events = _catch_up(conn, projector, started, progress)
        swap = _Swap(conn, live, copies, lock_timeout)
        position = swap.run(swap_attempts)
    seconds = time.monotonic() - started
    logger.info(
        "rebuilt %s.%s up to position %d in %.1f s",
        schema,
        live.tasks,
        position,
        seconds,
        extra={"action": "rebuild_swapped", "position": position},
    )
    return RebuildResult(
        events=events + swap.events, position=position, seconds=seconds, resumed=resumed
    )


def _require_ledger_tables(conn: Connection[DictRow], live: ProjectionTables) -> None:
    for name in (EVENTS_TABLE, live.tasks):
        if not table_exists(conn, live.schema, name):
            raise ConfigurationError(
                f"schema {live.schema!r} has no table {name}; run `taskledger "
                "migrate`, or check the schema name"
            )


def check_no_dependents(conn: Connection[DictRow], live: ProjectionTables) -> None:
    """Raise RebuildBlockedError if objects depend on a live read model table.

    The swap drops the live tables, which fails while any object outside the
    table depends on one (see table_dependents).
    """
    found = [
        (name, objects)
        for name in live.read_model_names
        if (objects := dependents(conn, live.schema, name))
    ]
    if not found:
        return
    listed = "; ".join(f"{name}: {', '.join(objects)}" for name, objects in found)
    raise RebuildBlockedError(
        f"the rebuild cannot replace tables that other objects depend on ({listed}); "
        "drop those objects, rebuild, then create them again"
    )


def _hold_rebuild_lock(conn: Connection[DictRow], copies: ProjectionTables) -> None:
    # A session lock: it is released when the connection closes, also on a crash.
    key = projection_lock_key(copies.schema, copies.projection)
    row = conn.execute("select pg_try_advisory_lock(%s) as locked", (key,)).fetchone()
    if not (row and row["locked"]):
        raise RebuildInProgressError(
            f"another process is rebuilding the read model of schema "
            f"{copies.schema}; wait for it to finish or stop it"
        )


def _prepare_copies(
    conn: Connection[DictRow], live: ProjectionTables, copies: ProjectionTables
) -> bool:
    """Create the copies and their checkpoint, or keep them; True when kept."""
    schema = live.schema
    pairs = list(zip(live.read_model_names, copies.read_model_names, strict=True))
    checkpoint = SQL("select position from {} where projection = %s for update").format(
        copies.checkpoints_table
    )
    with conn.transaction():
        row = conn.execute(checkpoint, (copies.projection,)).fetchone()
        usable = row is not None and all(
            table_exists(conn, schema, copy) and same_columns(conn, schema, name, copy)
            for name, copy in pairs
        )
        if usable:
            assert row is not None
            logger.info(
                "resuming the rebuild of %s from position %d",
                schema,
                row["position"],
                extra={"action": "rebuild_resumed", "position": row["position"]},
            )
            return True
        for name, copy in pairs:
            conn.execute(SQL("drop table if exists {}").format(copies.table(copy)))
            create_copy(conn, schema, name, copy)
        conn.execute(
            SQL(
                "insert into {} (projection, position) values (%s, 0) "
                "on conflict (projection) do update set position = 0, "
                "updated_at = clock_timestamp()"
            ).format(copies.checkpoints_table),
            (copies.projection,),
        )
    logger.info("started a rebuild of %s", schema, extra={"action": "rebuild_started"})
    return False


def _catch_up(
    conn: Connection[DictRow],
    projector: TaskProjector,
    started: float,
    progress: ProgressCallback | None,
) -> int:
    """Replay into the copies up to the head, in CATCH_UP_PASSES passes.

    Each pass stops at the head it read when it began, so writers that append
    faster than the replay cannot keep it from ending. The swap applies what
    came after the last pass.
    """
    events = 0
    for _ in range(CATCH_UP_PASSES):
        through = read_head(conn, projector.tables)
        if projector.checkpoint(conn) >= through:
            break
        events += _catch_up_to(conn, projector, through, started, events, progress)
    return events


def _catch_up_to(
    conn: Connection[DictRow],
    projector: TaskProjector,
    through: int,
    started: float,
    events_before: int,
    progress: ProgressCallback | None,
) -> int:
    events = 0

    def report(result: BatchResult) -> None:
        nonlocal events
        events += result.events
        if progress is None:
            return
        head = read_head(conn, projector.tables)
        elapsed = max(time.monotonic() - started, 1e-9)
        progress(
            RebuildProgress(
                events_done=events_before + events,
                position=result.last_position,
                head=head,
                remaining=max(0, head - result.last_position),
                rate=(events_before + events) / elapsed,
            )
        )

    projector.catch_up(conn, through, on_batch=report)
    return events


def read_head(conn: Connection[DictRow], tables: ProjectionTables) -> int:
    """Return the position of the last event in task_events, 0 if none."""
    row = conn.execute(
        SQL("select coalesce(max(position), 0) as head from {}").format(
            tables.events_table
        )
    ).fetchone()
    return 0 if row is None else int(row["head"])


class _Swap:
    """The transaction that finishes the copies and puts them in place."""

    def __init__(
        self,
        conn: Connection[DictRow],
        live: ProjectionTables,
        copies: ProjectionTables,
        lock_timeout: float,
    ) -> None:
        self.conn = conn
        self.live = live
        self.copies = copies
        self.lock_timeout_ms = max(1, round(lock_timeout * 1000))
        self.events = 0
        self.live_projector = TaskProjector(live)
        self.copy_projector = TaskProjector(copies, notify=False)

    def run(self, attempts: int) -> int:
        """Swap the copies in; return the position both projections reached."""
        for attempt in range(1, attempts + 1):
            try:
                return self._swap()
            except psycopg.errors.LockNotAvailable as error:
                if attempt == attempts:
                    raise StorageError(
                        f"readers kept the read model locked for more than "
                        f"{self.lock_timeout_ms} ms in each of {attempts} attempts "
                        "to swap in the rebuilt tables; they are kept, so run the "
                        "rebuild again to retry the swap"
                    ) from error
                logger.warning(
                    "readers kept the read model locked for %d ms; retrying the "
                    "swap (attempt %d of %d)",
                    self.lock_timeout_ms,
                    attempt + 1,
                    attempts,
                    extra={"action": "rebuild_swap_retry"},
                )
        raise AssertionError("the loop returns or raises")

    def _swap(self) -> int:
        conn = self.conn
        with conn.transaction():
            conn.execute(
                "select set_config('lock_timeout', %s, true)",
                (f"{self.lock_timeout_ms}ms",),
            )
            with conn.cursor() as cursor:
                self.live_projector.lock_checkpoint(cursor)
            # Up to the head as the lock was taken: the live projector applies
            # later events after the swap, so writers cannot prolong it.
            head = read_head(conn, self.live)
            try:
                while self.live_projector.project_batch(conn, through=head):
                    pass
            except ReadModelDamagedError as error:
                self._skip_damage(error, head)
            position = self.live_projector.checkpoint(conn)
            events = 0
            while (
                result := self.copy_projector.project_batch(conn, through=position)
            ) is not None:
                events += result.events
            self._lock_live_tables()
            check_no_dependents(conn, self.live)
            copy_other_columns(
                conn,
                self.live.schema,
                self.live.tasks,
                self.copies.tasks,
                PROJECTED_COLUMNS,
            )
            for name, copy in zip(
                self.live.read_model_names, self.copies.read_model_names, strict=True
            ):
                replace_table(conn, self.live.schema, name, copy)
            conn.execute(
                SQL("delete from {} where projection = %s").format(
                    self.copies.checkpoints_table
                ),
                (self.copies.projection,),
            )
        self.events = events
        return position

    def _skip_damage(self, error: ReadModelDamagedError, head: int) -> None:
        """Write the live task updates up to head from the events alone.

        The live read model is about to be replaced, so its damaged rows need
        no repair, but its subscribers still need the updates it could not
        write.
        """
        checkpoint = self.live_projector.checkpoint(self.conn)
        logger.warning(
            "the live read model is damaged (%s); the rebuild replaces it, and "
            "writes the task updates after position %d from the events",
            error,
            checkpoint,
            extra={"action": "rebuild_damaged_read_model", "position": checkpoint},
        )
        MissedUpdates(self.live_projector).write(self.conn, checkpoint, head)

    def _lock_live_tables(self) -> None:
        self.conn.execute(self.live.lock_read_model("access exclusive"))
