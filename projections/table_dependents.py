"""Find the objects that keep a rebuild from dropping a read model table."""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import DictRow

# Views (through their rewrite rules), functions that take or return the
# table's row type, and foreign keys of other tables that reference it. DROP
# TABLE fails for each of them.
_DEPENDENTS = """
with target as (
    select c.oid, c.reltype from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = %(schema)s and c.relname = %(name)s
)
select distinct format('view %%s', r.ev_class::regclass) as object
from target
join pg_depend d on d.refobjid = target.oid
    and d.classid = 'pg_rewrite'::regclass
join pg_rewrite r on r.oid = d.objid and r.ev_class <> target.oid
union
select distinct format('function %%s', d.objid::regprocedure)
from target
join pg_depend d on d.refobjid = target.reltype
    and d.classid = 'pg_proc'::regclass
union
select format('foreign key %%I of table %%s', con.conname, con.conrelid::regclass)
from target
join pg_constraint con on con.confrelid = target.oid and con.conrelid <> target.oid
order by 1
"""


def dependents(conn: Connection[DictRow], schema: str, name: str) -> list[str]:
    """Return the views, functions and foreign keys that depend on a table."""
    rows = conn.execute(_DEPENDENTS, {"schema": schema, "name": name}).fetchall()
    return [row["object"] for row in rows]
