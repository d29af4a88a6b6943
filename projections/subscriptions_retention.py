"""Delete task_updates rows older than a retention, a few at a time.

The projector's runner calls prune_if_due() on its own connection whenever it
has caught up, so pruning happens in the process that is projecting. Each call
stops after about PRUNE_TIME_BUDGET seconds (plus one batch) and the next call
continues, so pruning never delays projection for long.

Rows are deleted as a prefix by position: every row at or below the newest
row older than the retention. A reader can thus tell how far pruning went
(infrastructure.listen_updates), and a subscriber whose position is below it
gets UpdatesPrunedError instead of a silent gap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from psycopg import Connection, sql
from psycopg.rows import DictRow

from projections.tables import ProjectionTables

logger = logging.getLogger(__name__)

DEFAULT_UPDATE_RETENTION = timedelta(days=3)
PRUNE_BATCH_SIZE = 1000
PRUNE_TIME_BUDGET = 0.2
MAX_PRUNE_INTERVAL = 60.0


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    # False when the time budget ran out before every old row was deleted.
    finished: bool


class UpdatePruner:
    """Keeps task_updates within a retention period."""

    def __init__(
        self,
        tables: ProjectionTables,
        retention: timedelta = DEFAULT_UPDATE_RETENTION,
        *,
        batch_size: int = PRUNE_BATCH_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tables.updates is None:
            raise ValueError("the projection writes no task_updates to prune")
        if retention <= timedelta(0):
            raise ValueError(f"retention must be positive, got {retention}")
        self.retention = retention
        self.batch_size = batch_size
        # Prune about ten times per retention period, and at least once a minute.
        self.interval = min(MAX_PRUNE_INTERVAL, retention.total_seconds() / 10)
        self._clock = clock
        self._next_run = clock()
        table = tables.table(tables.updates)
        self._newest_expired = sql.SQL(
            "select position from {} "
            "where projected_at < clock_timestamp() - %s "
            "order by projected_at desc limit 1"
        ).format(table)
        self._delete = sql.SQL(
            "delete from {0} where position in ("
            " select position from {0} where position <= %s"
            " order by position limit %s)"
        ).format(table)

    def prune_if_due(self, conn: Connection[DictRow]) -> None:
        """Prune when the interval has passed or the previous run was cut short."""
        if self._clock() < self._next_run:
            return
        try:
            result = self.prune(conn)
        except psycopg.Error as error:
            logger.warning(
                "pruning task_updates failed, retrying in %.0f s: %s",
                self.interval,
                error,
                extra={"action": "prune_failed"},
            )
            self._next_run = self._clock() + self.interval
            return
        self._next_run = self._clock() + (self.interval if result.finished else 0)

    def prune(
        self, conn: Connection[DictRow], time_budget: float = PRUNE_TIME_BUDGET
    ) -> PruneResult:
        """Delete rows older than the retention, in batches, until done or out of time.

        The connection must be in autocommit mode: each batch commits alone,
        so no lock is held for long.
        """
        row = conn.execute(self._newest_expired, (self.retention,)).fetchone()
        if row is None:
            return PruneResult(0, finished=True)
        through = int(row["position"])
        deadline = self._clock() + time_budget
        deleted = 0
        while True:
            count = conn.execute(self._delete, (through, self.batch_size)).rowcount
            deleted += count
            if count < self.batch_size:
                finished = True
                break
            if self._clock() >= deadline:
                finished = False
                break
        logger.debug(
            "pruned %d task_updates rows through position %d",
            deleted,
            through,
            extra={"action": "prune", "position": through, "deleted": deleted},
        )
        return PruneResult(deleted, finished)
