"""eventsourcing recorders that keep events in the task_events table.

Appends are serialised with a transaction-level advisory lock, held until
commit, so positions become visible in the order they were issued and a reader
that follows positions never passes an event that commits later. The table's
statement triggers take the same lock for every INSERT and send the NOTIFY that
wakes subscribers (migration 20261204000010_serialise_appends.sql).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg.errors
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    ProgrammingError,
    StoredEvent,
    Subscription,
    Tracking,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresSubscription,
    PostgresTrackingRecorder,
)
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from infrastructure.event_rows import (
    INSERT_EVENTS,
    MAX_ROW_VALUES,
    AppendContext,
    AppendedEvent,
    event_type_of,
    insert_parameters,
    insert_source,
    source_parameters,
    state_of_row,
)

# AppendContext, AppendedEvent and event_type_of are defined in event_rows, and
# callers import them from here as well.
__all__ = [
    "CHECKPOINTS_TABLE",
    "EVENTS_TABLE",
    "IDEMPOTENCY_INDEX",
    "MAX_CHANNEL_NAME_BYTES",
    "AppendContext",
    "AppendedEvent",
    "CheckpointTrackingRecorder",
    "DuplicateIdempotencyKeyError",
    "TaskEventsAggregateRecorder",
    "TaskEventsRecorder",
    "append_lock_key",
    "event_type_of",
    "notification_channel",
]

EVENTS_TABLE = "task_events"
CHECKPOINTS_TABLE = "projection_checkpoints"
IDEMPOTENCY_INDEX = "task_events_idempotency_key"
# PostgreSQL truncates identifiers, and rejects NOTIFY channel names, longer
# than NAMEDATALEN - 1 bytes (63 in standard builds).
MAX_CHANNEL_NAME_BYTES = 63


class DuplicateIdempotencyKeyError(IntegrityError):
    """Another event already carries this idempotency key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} is already recorded")
        self.key = key


# insert_events() is eventsourcing's interface, whose callers expect to read back
# exactly the state they stored, so it never rewrites a payload's timestamp.
_EVENT_TIMES = AppendContext(use_database_clock=False)


def append_lock_key(schema: str) -> int:
    """Return the advisory lock key that serialises appends in one schema.

    The same number as the insert trigger's: the first 64 bits of the MD5 of
    'taskledger.append:<schema>', read as a signed big-endian integer.
    """
    text = f"taskledger.append:{schema}".encode()
    digest = hashlib.md5(text, usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def notification_channel(schema: str, table: str = EVENTS_TABLE) -> str:
    """Return the channel the insert trigger notifies, cut to 63 bytes."""
    name = f"{schema}_{table}".encode()[:MAX_CHANNEL_NAME_BYTES]
    return name.decode("utf-8", "ignore")


class TaskEventsAggregateRecorder(PostgresAggregateRecorder):
    """Aggregate recorder on task_events, the table the migrations create.

    A stored event's state goes to the payload jsonb column when it is a JSON
    object whose jsonb text form (what `payload::text` returns) is the same
    bytes, and to the state bytea column otherwise. So select_events() and
    select_notifications() return every state byte for byte as it was given,
    while the events of PydanticMapper, which writes that form, stay readable
    in SQL. Other JSON (compact, with other key order or number spelling,
    duplicate keys, NaN, NUL or lone surrogate escapes) is kept as bytes.

    One exception is deliberate: append() with AppendContext.use_database_clock
    sets the payload's top-level "timestamp" to the event's occurred_at (the
    database clock), so events read back with the time the database gave them.
    A state kept as bytes is never changed, and its occurred_at is the
    database clock while its own timestamp stays what the caller encoded.
    """

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = EVENTS_TABLE
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements = []
        self.table = Identifier(datastore.schema, events_table_name)
        self.channel_name = notification_channel(datastore.schema, events_table_name)
        self.lock_key = append_lock_key(datastore.schema)
        # One statement per event count up to MAX_ROW_VALUES, then one for any.
        self.insert_statements = {
            events: SQL(INSERT_EVENTS).format(
                table=self.table, source=SQL(insert_source(events))
            )
            for events in range(1, MAX_ROW_VALUES + 2)
        }
        self.select_events_statement = SQL(
            "select task_id, version, topic, payload::text as payload, state "
            "from {table} where task_id = %s"
        ).format(table=self.table)

    def create_table(self) -> None:
        """Apply the ledger's migrations, which create task_events."""
        from infrastructure.migrator import apply_migrations  # noqa: PLC0415

        with self.datastore.get_connection() as conn:
            apply_migrations(conn, self.datastore.schema)

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        self.append(stored_events, context=_EVENT_TIMES, **kwargs)
        return None

    def append(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        context: AppendContext | None = None,
        tracking: Tracking | None = None,
        **_: Any,
    ) -> list[AppendedEvent]:
        """Append events (and a tracking record) in one transaction.

        Returns where and when each event was recorded, in position order.
        """
        return self.append_commands(
            [(stored_events, context or AppendContext())], tracking=tracking
        )

    def append_commands(
        self,
        commands: Sequence[tuple[Sequence[StoredEvent], AppendContext]],
        *,
        tracking: Tracking | None = None,
    ) -> list[AppendedEvent]:
        """Append the events of several commands in one transaction and statement.

        Each command's context applies to its own events. One conflict (a taken
        version or idempotency key) rolls back the whole batch, tracking included.
        """
        if tracking is None:
            if not any(events for events, _ in commands):
                return []
            # One autocommit statement is the whole transaction: its insert
            # trigger takes the append lock, so this costs one round trip. The
            # statement's snapshot may predate the lock wait, which is harmless:
            # an append that committed meanwhile on the same task took the same
            # version, so this one fails on the primary key (a conflict).
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                return self._insert_rows(curs, commands)
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            self._insert_tracking_in(curs, tracking)
            if not any(events for events, _ in commands):
                return []
            # The insert trigger takes this same lock. Taking it here first gives
            # the INSERT a snapshot that includes every earlier append, because
            # the clock rule compares with the task's previous occurred_at.
            curs.execute("select pg_advisory_xact_lock(%s)", (self.lock_key,))
            return self._insert_rows(curs, commands)

    def _insert_tracking_in(self, curs: Cursor[DictRow], tracking: Tracking) -> None:
        raise ProgrammingError(
            f"{type(self).__name__} does not record tracking; use the process "
            f"recorder to record {tracking.application_name} position "
            f"{tracking.notification_id} with events"
        )

    def _insert_rows(
        self,
        curs: Cursor[DictRow],
        commands: Sequence[tuple[Sequence[StoredEvent], AppendContext]],
    ) -> list[AppendedEvent]:
        columns = insert_parameters(commands)
        events = len(columns["task_ids"])
        statement = self.insert_statements[min(events, MAX_ROW_VALUES + 1)]
        try:
            curs.execute(statement, source_parameters(columns), prepare=True)
        except psycopg.errors.UniqueViolation as error:
            if error.diag.constraint_name == IDEMPOTENCY_INDEX:
                keys = [c.idempotency_key for _, c in commands if c.idempotency_key]
                raise DuplicateIdempotencyKeyError(", ".join(keys)) from error
            raise IntegrityError(str(error)) from error
        except psycopg.errors.ForeignKeyViolation as error:
            # The insert trigger found no previous version: the writer decided
            # on a state the database no longer holds, as a taken version would.
            raise IntegrityError(str(error)) from error
        rows = [
            AppendedEvent(
                position=row["position"],
                task_id=row["task_id"],
                version=row["version"],
                occurred_at=row["occurred_at"],
                recorded_at=row["recorded_at"],
            )
            for row in curs.fetchall()
        ]
        rows.sort(key=lambda row: row.position)
        return rows

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        statement: Composed = self.select_events_statement
        params: list[Any] = [originator_id]
        if gt is not None:
            statement += SQL(" and version > %s")
            params.append(gt)
        if lte is not None:
            statement += SQL(" and version <= %s")
            params.append(lte)
        statement += SQL(" order by version desc" if desc else " order by version")
        if limit is not None:
            statement += SQL(" limit %s")
            params.append(limit)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return [
                StoredEvent(
                    originator_id=row["task_id"],
                    originator_version=row["version"],
                    topic=row["topic"],
                    state=state_of_row(row),
                )
                for row in curs.fetchall()
            ]


class TaskEventsRecorder(TaskEventsAggregateRecorder, PostgresApplicationRecorder):
    """Application recorder on task_events: events plus their global positions."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = EVENTS_TABLE
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.max_notification_id_statement = SQL(
            "select max(position) as max from {table}"
        ).format(table=self.table)

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        appended = self.append(stored_events, context=_EVENT_TIMES, **kwargs)
        return [event.position for event in appended]

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        conditions: list[SQL] = []
        params: list[Any] = []
        if start is not None:
            conditions.append(
                SQL("position >= %s") if inclusive_of_start else SQL("position > %s")
            )
            params.append(start)
        if stop is not None:
            conditions.append(SQL("position <= %s"))
            params.append(stop)
        if topics:
            conditions.append(SQL("topic = any(%s)"))
            params.append(list(topics))
        statement = SQL(
            "select position, task_id, version, topic, payload::text as payload, state "
            "from {table}"
        ).format(table=self.table)
        if conditions:
            statement += SQL(" where ") + SQL(" and ").join(conditions)
        statement += SQL(" order by position limit %s")
        params.append(limit)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return [
                Notification(
                    id=row["position"],
                    originator_id=row["task_id"],
                    originator_version=row["version"],
                    topic=row["topic"],
                    state=state_of_row(row),
                )
                for row in curs.fetchall()
            ]

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[Any]:
        return PostgresSubscription(recorder=self, gt=gt, topics=topics)


class CheckpointTrackingRecorder(PostgresTrackingRecorder):
    """Tracking recorder on projection_checkpoints: one row per projection.

    A projection's row contains the highest position recorded for it. Recording
    a position at or below it raises IntegrityError and changes nothing, so a
    position is applied once and a checkpoint never moves backwards.
    """

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        tracking_table_name: str = CHECKPOINTS_TABLE,
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        self.sql_create_statements = []
        table = Identifier(datastore.schema, tracking_table_name)
        self.insert_tracking_statement = SQL(
            "insert into {table} (projection, position) "
            "values (%(application_name)s, %(notification_id)s) "
            "on conflict (projection) do update "
            "set position = excluded.position, updated_at = clock_timestamp() "
            "where {table}.position < excluded.position "
            "returning position"
        ).format(table=table)
        self.max_tracking_id_statement = SQL(
            "select max(position) as max from {table} where projection = %s"
        ).format(table=table)

    def create_table(self) -> None:
        """Apply the ledger's migrations, which create projection_checkpoints."""
        from infrastructure.migrator import apply_migrations  # noqa: PLC0415

        with self.datastore.get_connection() as conn:
            apply_migrations(conn, self.datastore.schema)
