"""The mapping of stored events to task_events rows: columns, JSON checks, INSERT.

A state is stored in the payload jsonb column only if jsonb prints it back as
the same bytes. Every other state goes to the state bytea column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.rows import DictRow

from domain.values import EARLIEST_TIME, LATEST_TIME
from infrastructure.mapper import JsonStoredEvent

MAX_DECIMAL_DIGITS = 1000


@dataclass(frozen=True)
class AppendContext:
    """Context of an append, stored in the metadata column of its events.

    With use_database_clock, each event's occurred_at is the database clock at
    the append, never earlier than the task's previous event. Otherwise it is
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


def state_of_row(row: DictRow) -> bytes:
    """Return the stored state of a row selected with `payload::text as payload`."""
    if row["payload"] is not None:
        return str(row["payload"]).encode("utf-8")
    return bytes(row["state"])


# The INSERT's parameters, one list each with a value per event, and the
# PostgreSQL type of their values.
PARAMETER_TYPES = {
    "task_ids": "uuid",
    "versions": "bigint",
    "event_types": "text",
    "topics": "text",
    "texts": "text",
    "states": "bytea",
    "metadata": "text",
    "user_ids": "text",
    "times": "timestamptz",
    "clocks": "boolean",
}

# The columns of the FROM item of INSERT_EVENTS, whichever form it takes.
_SOURCE_COLUMNS = (
    "b(task_id, version, event_type, topic, text, state, metadata, user_id, "
    "given_time, database_clock, n)"
)

# Appends of up to this many events send one parameter per value: psycopg
# needs 0.2 ms of Python to dump ten arrays, more than the server's work for a
# one-event append. Larger appends send one array per column, so their
# statement does not grow with the event count. The arrays go in binary form:
# psycopg writes text-form arrays with a regular expression per element, which
# took a quarter of an import's time, and binary ones 30 times faster.
MAX_ROW_VALUES = 16


def insert_parameters(
    commands: Sequence[tuple[Sequence[StoredEvent], AppendContext]],
) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {name: [] for name in PARAMETER_TYPES}
    for stored_events, context in commands:
        _add_columns(columns, stored_events, context)
    return columns


def insert_source(events: int) -> str:
    """Return the FROM item of INSERT_EVENTS for an append of this many events.

    Its columns are those of PARAMETER_TYPES in that order, then n, the
    event's place in the append.
    """
    if events > MAX_ROW_VALUES:
        arrays = ", ".join(
            f"%({name})b::{kind}[]" for name, kind in PARAMETER_TYPES.items()
        )
        return f"unnest({arrays}) with ordinality as {_SOURCE_COLUMNS}"
    row = ", ".join(f"%s::{kind}" for kind in PARAMETER_TYPES.values())
    rows = ", ".join(f"({row}, {n}::bigint)" for n in range(1, events + 1))
    return f"(values {rows}) as {_SOURCE_COLUMNS}"


def source_parameters(
    columns: dict[str, list[Any]],
) -> dict[str, list[Any]] | list[Any]:
    """Return the parameters that insert_source() expects for these columns."""
    if len(columns["task_ids"]) > MAX_ROW_VALUES:
        return columns
    return [value for row in zip(*columns.values(), strict=True) for value in row]


def _add_columns(
    columns: dict[str, list[Any]],
    stored_events: Sequence[StoredEvent],
    context: AppendContext,
) -> None:
    last = len(stored_events) - 1
    for index, event in enumerate(stored_events):
        parsed = (
            (event.text, event.document)
            if isinstance(event, JsonStoredEvent)
            else _json_object(event.state)
        )
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
    if not isinstance(document, dict) or _NUL_ESCAPE.search(again):
        return None
    return text, document


# jsonb rejects the escape \u0000. A backslash escaped as \\ and followed by
# u0000 is ordinary text, so the escape must follow an even run of backslashes.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _bounded_decimal(text: str) -> Decimal:
    # numeric keeps at most 16383 digits after the point and 131072 before it;
    # stay well inside both.
    number = Decimal(text)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # json.loads never passes NaN or Infinity here
    if number.adjusted() > MAX_DECIMAL_DIGITS or -exponent > MAX_DECIMAL_DIGITS:
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
    """Return the payload's "timestamp" if it is an ISO 8601 time with a zone.

    A time outside the range the ledger accepts for occurred_at gives None, so
    the event takes the database clock. PostgreSQL stores times that psycopg
    cannot read back, such as 0001-01-01T00:00+14:00 (a year 0 in UTC), and
    an append that failed to read its RETURNING rows would already have
    committed.
    """
    value = None if document is None else document.get("timestamp")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.utcoffset() is None:
        return None
    try:
        within = EARLIEST_TIME <= moment < LATEST_TIME
    except OverflowError:
        within = False
    return moment if within else None


# TODO: the clock rule reads only committed rows, so in one append_commands()
# call a database-clock event may precede a given time of the same task.
# A candidate text is kept as jsonb only if jsonb prints it back unchanged.
# Otherwise its UTF-8 bytes go to state. occurred_at is the event's own time
# when one was given, else the database clock but never earlier than the task's
# previous event. With the database clock, a payload's "timestamp" is set to it.
INSERT_EVENTS = """
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
from {source}
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
