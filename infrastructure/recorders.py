"""eventsourcing recorders that keep events in the task_events table.

JSON event state goes to the payload jsonb column, any other state to the state
bytea column. Appends are serialised with a transaction-level advisory lock, held
until commit, so positions become visible in the order they were issued and a
reader that follows positions never passes an event that commits later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
import psycopg.errors
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
    Subscription,
    Tracking,
)
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresSubscription,
    PostgresTrackingRecorder,
)
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

EVENTS_TABLE = "task_events"
CHECKPOINTS_TABLE = "projection_checkpoints"
IDEMPOTENCY_INDEX = "task_events_idempotency_key"


class DuplicateIdempotencyKeyError(IntegrityError):
    """Another event already carries this idempotency key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} is already recorded")
        self.key = key


@dataclass(frozen=True)
class AppendContext:
    """Who and what caused an append; stored in the metadata column.

    With use_database_clock, each event's occurred_at is the database clock at
    the append (never earlier than the task's previous event); otherwise it is
    the event's own timestamp.
    """

    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    use_database_clock: bool = True


@dataclass(frozen=True)
class AppendedEvent:
    """Where and when the database recorded one appended event."""

    position: int
    task_id: UUID
    version: int
    occurred_at: datetime
    recorded_at: datetime


def event_type_of(topic: str) -> str:
    """Return a topic's short event type: 'domain.task:Task.Started' is 'started'."""
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1].lower()


def append_lock_key(schema: str) -> int:
    """Return the advisory lock key that serialises appends in one schema."""
    digest = hashlib.sha256(f"taskledger.append:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class TaskEventsRecorder(PostgresApplicationRecorder):
    """Application recorder on task_events, the table the migrations create."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = EVENTS_TABLE
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements = []
        self.channel_name = f"{datastore.schema}_{events_table_name}"
        table = Identifier(datastore.schema, events_table_name)
        self.lock_key = append_lock_key(datastore.schema)
        self.insert_statement = SQL(_INSERT).format(table=table)
        self.select_events_statement = SQL(
            "select task_id, version, topic, payload::text as payload, state "
            "from {table} where task_id = %s"
        ).format(table=table)
        self.max_notification_id_statement = SQL(
            "select max(position) as max from {table}"
        ).format(table=table)
        self.table = table

    def create_table(self) -> None:
        from infrastructure.migrator import apply_migrations  # noqa: PLC0415

        with self.datastore.get_connection() as conn:
            apply_migrations(conn, self.datastore.schema)

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        appended = self.append(stored_events, **kwargs)
        return [event.position for event in appended]

    def append(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        context: AppendContext | None = None,
        tracking: Tracking | None = None,
        **_: Any,
    ) -> list[AppendedEvent]:
        """Append events in one transaction and return where they were recorded."""
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
        version or idempotency key) rolls back the whole batch.
        """
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            if tracking is not None:
                self._insert_tracking_in(curs, tracking)
            if not any(events for events, _ in commands):
                return []
            curs.execute("select pg_advisory_xact_lock(%s)", (self.lock_key,))
            rows = self._insert_rows(curs, commands)
            curs.execute(
                "select pg_notify(%s, %s)",
                (self.channel_name, str(rows[-1].position)),
            )
        return rows

    def _insert_tracking_in(self, curs: Cursor[DictRow], tracking: Tracking) -> None:
        raise IntegrityError("this recorder does not record tracking")

    def _insert_rows(
        self,
        curs: Cursor[DictRow],
        commands: Sequence[tuple[Sequence[StoredEvent], AppendContext]],
    ) -> list[AppendedEvent]:
        params = _columns(commands)
        try:
            curs.execute(self.insert_statement, params, prepare=True)
        except psycopg.errors.UniqueViolation as error:
            if error.diag.constraint_name == IDEMPOTENCY_INDEX:
                keys = [c.idempotency_key for _, c in commands if c.idempotency_key]
                raise DuplicateIdempotencyKeyError(", ".join(keys)) from error
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
                    state=_body(row),
                )
                for row in curs.fetchall()
            ]

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
                    state=_body(row),
                )
                for row in curs.fetchall()
            ]

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[Any]:
        return PostgresSubscription(recorder=self, gt=gt, topics=topics)


def _body(row: DictRow) -> bytes:
    if row["payload"] is not None:
        return str(row["payload"]).encode("utf-8")
    return bytes(row["state"])


def _columns(
    commands: Sequence[tuple[Sequence[StoredEvent], AppendContext]],
) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "task_ids",
            "versions",
            "event_types",
            "topics",
            "payloads",
            "states",
            "metadata",
            "user_ids",
            "times",
        )
    }
    for stored_events, context in commands:
        _add_columns(columns, stored_events, context)
    return columns


def _add_columns(
    columns: dict[str, list[Any]],
    stored_events: Sequence[StoredEvent],
    context: AppendContext,
) -> None:
    last = len(stored_events) - 1
    for index, event in enumerate(stored_events):
        document = _json_object(event.state)
        metadata = dict(context.metadata)
        if index == last and context.idempotency_key is not None:
            metadata["idempotency_key"] = context.idempotency_key
        columns["task_ids"].append(event.originator_id)
        columns["versions"].append(event.originator_version)
        columns["event_types"].append(event_type_of(event.topic))
        columns["topics"].append(event.topic)
        columns["payloads"].append(None if document is None else event.state.decode())
        columns["states"].append(event.state if document is None else None)
        columns["metadata"].append(json.dumps(metadata))
        columns["user_ids"].append(_user_id(document, event.originator_version))
        given = None
        if not context.use_database_clock and document is not None:
            given = document.get("timestamp")
        columns["times"].append(given)


def _json_object(state: bytes) -> dict[str, Any] | None:
    """Return the state parsed as a JSON object that jsonb can store, else None."""
    if not state.startswith(b"{"):
        return None
    try:
        document = json.loads(state)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict) or b"\\u0000" in state:
        return None
    return document


def _user_id(document: dict[str, Any] | None, version: int) -> str | None:
    if document is None or version != 1:
        return None
    user_id = document.get("user_id")
    return user_id if isinstance(user_id, str) else None


# The occurred time is the given one, or the database clock but never earlier than
# the task's previous event. Payloads with a "timestamp" key get the same value.
_INSERT = """
insert into {table} (
    task_id, version, event_type, topic, payload, state, metadata, user_id,
    occurred_at
)
select b.task_id, b.version, b.event_type, b.topic,
    case
        when b.payload is null then null
        when b.payload::jsonb ? 'timestamp'
            then jsonb_set(b.payload::jsonb, '{{timestamp}}', to_jsonb(t.occurred_at))
        else b.payload::jsonb
    end,
    b.state, b.metadata::jsonb, b.user_id, t.occurred_at
from unnest(
    %(task_ids)s::uuid[], %(versions)s::bigint[], %(event_types)s::text[],
    %(topics)s::text[], %(payloads)s::text[], %(states)s::bytea[],
    %(metadata)s::text[], %(user_ids)s::text[], %(times)s::timestamptz[]
) with ordinality as b(
    task_id, version, event_type, topic, payload, state, metadata, user_id,
    given_time, n
)
cross join lateral (
    select coalesce(
        b.given_time,
        greatest(
            clock_timestamp(),
            (select max(p.occurred_at) from {table} p where p.task_id = b.task_id)
        )
    ) as occurred_at
) t
order by b.n
returning position, task_id, version, occurred_at, recorded_at
"""


class CheckpointTrackingRecorder(PostgresTrackingRecorder):
    """Tracking recorder on projection_checkpoints: one row per projection."""

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
        from infrastructure.migrator import apply_migrations  # noqa: PLC0415

        with self.datastore.get_connection() as conn:
            apply_migrations(conn, self.datastore.schema)
