"""The baselines: a plain events table and eventsourcing's stock recorder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.conninfo import conninfo_to_dict

from infrastructure.recorders import event_type_of

# The ledger's task_events without its triggers, lock, user id and idempotency
# index: the same key on (task_id, version) and the same unique position.
PLAIN_TABLE = """
create table plain_events (
    position bigint generated always as identity,
    task_id uuid not null,
    version bigint not null,
    event_type text not null,
    payload jsonb not null,
    metadata jsonb not null default '{}'::jsonb,
    occurred_at timestamptz not null,
    recorded_at timestamptz not null default clock_timestamp(),
    primary key (task_id, version),
    unique (position)
)
"""
PLAIN_INSERT = (
    "insert into plain_events (task_id, version, event_type, payload, occurred_at) "
    "values (%s, %s, %s, %s::jsonb, clock_timestamp())"
)
PLAIN_COPY = (
    "copy plain_events (task_id, version, event_type, payload, occurred_at) from stdin"
)
STOCK_COPY = (
    "copy stored_events (originator_id, originator_version, topic, state) from stdin"
)


def create_plain_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(PLAIN_TABLE)


def plain_row(event: StoredEvent) -> tuple[Any, ...]:
    return (
        event.originator_id,
        event.originator_version,
        event_type_of(event.topic),
        event.state.decode(),
    )


def copy_plain(
    conn: psycopg.Connection[Any], events: Sequence[StoredEvent], occurred: str
) -> None:
    """COPY the events into plain_events, each with the given occurred time."""
    with conn.cursor() as cursor, cursor.copy(PLAIN_COPY) as copy:
        for event in events:
            copy.write_row((*plain_row(event), occurred))


def stock_recorder(
    url: str, schema: str, pool_size: int
) -> PostgresApplicationRecorder:
    """Return eventsourcing's PostgresApplicationRecorder on its own table in schema.

    It is configured as eventsourcing's factory configures it by default: no
    database functions, so each insert locks the table as the library does.
    """
    params = conninfo_to_dict(url)
    datastore = PostgresDatastore(
        dbname=str(params.get("dbname", "postgres")),
        host=str(params.get("host", "127.0.0.1")),
        port=str(params.get("port", "5432")),
        user=str(params.get("user", "postgres")),
        password=str(params.get("password", "")),
        schema=schema,
        pool_size=pool_size,
        max_overflow=pool_size,
    )
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


def copy_stock(conn: psycopg.Connection[Any], events: Sequence[StoredEvent]) -> None:
    with conn.cursor() as cursor, cursor.copy(STOCK_COPY) as copy:
        for event in events:
            copy.write_row(
                (
                    event.originator_id,
                    event.originator_version,
                    event.topic,
                    event.state,
                )
            )
