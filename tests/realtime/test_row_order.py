"""The projector writes a batch's agent_tasks rows in position order.

Supabase Realtime sends row changes in the order the transaction made them,
and the Realtime consumer drops any payload whose position is not above the
last one. A row trigger records that order here, because logical decoding
needs wal_level=logical, which the test server may not have.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from projections.projector import TaskProjector
from projections.tables import ProjectionTables
from taskledger import TaskLedger

Db = psycopg.Connection[tuple[object, ...]]

ORDER_LOG = """
create table row_order (n serial primary key, position bigint not null);
create function log_row_order() returns trigger language plpgsql
set search_path from current as $$
begin
    insert into row_order (position) values (new.position);
    return new;
end;
$$;
create trigger log_row_order after insert or update on agent_tasks
    for each row execute function log_row_order();
"""


def test_batch_rows_follow_positions(database_url: str, schema: str, db: Db) -> None:
    with TaskLedger.open(database_url, schema=schema, project=False) as ledger:
        db.execute(ORDER_LOG)  # type: ignore[call-overload]
        first = ledger.create_task("alpha", "Alpha", "First", "chat")
        second = ledger.create_task("alpha", "Alpha", "Second", "chat")
        ledger.start_task(first.id)
        ledger.start_task(second.id)
        ledger.complete_task(first.id, "ok")

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        result = TaskProjector(ProjectionTables(schema)).project_batch(conn)
    logged = db.execute("select position from row_order order by n").fetchall()

    assert result is not None
    assert result.events == 5
    assert [row[0] for row in logged] == [4, 5]
