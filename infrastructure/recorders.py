"""eventsourcing recorders that keep events in the task_events table.

Appends are serialised with a transaction-level advisory lock, held until
commit, so positions become visible in the order they were issued and a reader
that follows positions never passes an event that commits later. The table's
statement triggers take the same lock for every INSERT and send the NOTIFY that
wakes subscribers (migration 20261204000010_serialise_appends.sql).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
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

EVENTS_TABLE = "task_events"
CHECKPOINTS_TABLE = "projection_checkpoints"
IDEMPOTENCY_INDEX = "task_events_idempotency_key"
# PostgreSQL truncates identifiers, and rejects NOTIFY channel names, longer
# than NAMEDATALEN - 1 bytes (63 in standard builds).
MAX_CHANNEL_NAME_BYTES = 63
_MAX_DECIMAL_DIGITS = 1000


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


# insert_events() is eventsourcing's interface, whose callers expect to read back
# exactly the state they stored, so it never rewrites a payload's timestamp.
_EVENT_TIMES = AppendContext(use_database_clock=False)


def event_type_of(topic: str) -> str:
    """Return a topic's short event type: 'domain.task:Task.Started' is 'started'."""
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1].lower()


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
        self.insert_statement = SQL(_INSERT).format(table=self.table)
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
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            if tracking is not None:
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
        params = _insert_parameters(commands)
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


def _insert_parameters(
    commands: Sequence[tuple[Sequence[StoredEvent], AppendContext]],
) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "task_ids",
            "versions",
            "event_types",
            "topics",
            "texts",
            "states",
            "metadata",
            "user_ids",
            "times",
            "clocks",
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
        parsed = _json_object(event.state)
        text, document = parsed if parsed is not None else (None, None)
        metadata = dict(context.metadata)
        if index == last and context.idempotency_key is not None:
            metadata["idempotency_key"] = context.idempotency_key
        columns["task_ids"].append(event.originator_id)
        columns["versions"].append(event.originator_version)
        columns["event_types"].append(event_type_of(event.topic))
        columns["topics"].append(event.topic)
        columns["texts"].append(text)
        columns["states"].append(event.state if text is None else None)
        columns["metadata"].append(json.dumps(metadata))
        columns["user_ids"].append(_user_id(document, event.originator_version))
        columns["times"].append(
            None if context.use_database_clock else _event_time(document)
        )
        columns["clocks"].append(context.use_database_clock)


def _json_object(state: bytes) -> tuple[str, dict[str, Any]] | None:
    """Return the state as text and parsed, if it is a JSON object jsonb accepts.

    json.loads() accepts NaN, the infinities, lone surrogate escapes, \\u0000
    and numbers beyond numeric's range, which jsonb rejects. Whether the text
    is also in jsonb's own form is checked in SQL.
    """
    if not state.startswith(b"{"):
        return None
    try:
        text = state.decode("utf-8")
        document = json.loads(
            text, parse_float=_bounded_decimal, parse_constant=_no_constant
        )
        again = json.dumps(document, ensure_ascii=False, default=str)
        again.encode("utf-8")
    except (ValueError, RecursionError, ArithmeticError):
        return None
    if not isinstance(document, dict) or "\\u0000" in again:
        return None
    return text, document


def _bounded_decimal(text: str) -> Decimal:
    # numeric keeps at most 16383 digits after the point and 131072 before it;
    # stay well inside both.
    number = Decimal(text)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # json.loads never passes NaN or Infinity here
    if number.adjusted() > _MAX_DECIMAL_DIGITS or -exponent > _MAX_DECIMAL_DIGITS:
        raise ValueError(f"{text} is outside the range kept as jsonb")
    return number


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _user_id(document: dict[str, Any] | None, version: int) -> str | None:
    if document is None or version != 1:
        return None
    user_id = document.get("user_id")
    return user_id if isinstance(user_id, str) else None


def _event_time(document: dict[str, Any] | None) -> datetime | None:
    """Return the payload's "timestamp" if it is an ISO 8601 time with a zone."""
    value = None if document is None else document.get("timestamp")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


# A candidate text is kept as jsonb only if jsonb prints it back unchanged.
# Otherwise its UTF-8 bytes go to state. occurred_at is the event's own time
# when one was given, else the database clock but never earlier than the task's
# previous event. With the database clock, a payload's "timestamp" is set to it.
_INSERT = """
insert into {table} (
    task_id, version, event_type, topic, payload, state, metadata, user_id,
    occurred_at
)
select b.task_id, b.version, b.event_type, b.topic,
    case
        when not j.exact then null
        when b.database_clock and j.document ? 'timestamp'
            then jsonb_set(j.document, '{{timestamp}}', to_jsonb(t.occurred_at))
        else j.document
    end,
    case when j.exact then null else coalesce(b.state, convert_to(b.text, 'UTF8')) end,
    b.metadata::jsonb, b.user_id, t.occurred_at
from unnest(
    %(task_ids)s::uuid[], %(versions)s::bigint[], %(event_types)s::text[],
    %(topics)s::text[], %(texts)s::text[], %(states)s::bytea[],
    %(metadata)s::text[], %(user_ids)s::text[], %(times)s::timestamptz[],
    %(clocks)s::boolean[]
) with ordinality as b(
    task_id, version, event_type, topic, text, state, metadata, user_id,
    given_time, database_clock, n
)
cross join lateral (select b.text::jsonb as document) d
cross join lateral (
    select d.document, coalesce(d.document::text = b.text, false) as exact
) j
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
