"""Find the objects that keep a rebuild from dropping a read model table."""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import DictRow

# Every object with a normal dependency on the table or on its row type, for
# which DROP TABLE fails. Examples are views, functions that read the table or
# use its row type, policies and foreign keys of other tables, and columns or
# composite types of its row type. The table's own rules, policies, triggers,
# constraints, defaults, indexes and statistics are left out, because the
# rebuild carries them over.
_DEPENDENTS = """
with target as (
    select c.oid, c.reltype from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = %(schema)s and c.relname = %(name)s
),
dependent as (
    select d.classid, d.objid, d.objsubid
    from pg_depend d, target t
    where d.deptype = 'n'
      and (d.refclassid = 'pg_class'::regclass and d.refobjid = t.oid
           or d.refclassid = 'pg_type'::regclass and d.refobjid = t.reltype)
)
select distinct
    case when d.classid = 'pg_rewrite'::regclass
        then (select pg_describe_object('pg_class'::regclass, r.ev_class, 0)
              from pg_rewrite r where r.oid = d.objid)
        else pg_describe_object(d.classid, d.objid, d.objsubid)
    end as object
from dependent d, target t
where not (
    d.classid = 'pg_class'::regclass and d.objid = t.oid
    or d.classid = 'pg_rewrite'::regclass and exists (
        select from pg_rewrite r where r.oid = d.objid and r.ev_class = t.oid)
    or d.classid = 'pg_policy'::regclass and exists (
        select from pg_policy p where p.oid = d.objid and p.polrelid = t.oid)
    or d.classid = 'pg_trigger'::regclass and exists (
        select from pg_trigger g where g.oid = d.objid and g.tgrelid = t.oid)
    or d.classid = 'pg_constraint'::regclass and exists (
        select from pg_constraint c where c.oid = d.objid and c.conrelid = t.oid)
    or d.classid = 'pg_attrdef'::regclass and exists (
        select from pg_attrdef a where a.oid = d.objid and a.adrelid = t.oid)
    or d.classid = 'pg_class'::regclass and exists (
        select from pg_index i where i.indexrelid = d.objid and i.indrelid = t.oid)
    or d.classid = 'pg_statistic_ext'::regclass and exists (
        select from pg_statistic_ext s where s.oid = d.objid and s.stxrelid = t.oid)
    or d.classid = 'pg_publication_rel'::regclass
)
order by 1
"""


def dependents(conn: Connection[DictRow], schema: str, name: str) -> list[str]:
    """Return descriptions of the objects that depend on a table."""
    rows = conn.execute(_DEPENDENTS, {"schema": schema, "name": name}).fetchall()
    return [row["object"] for row in rows]
