"""Create empty copies of read-model tables, and put a copy in a table's place.

CREATE TABLE ... (LIKE ... INCLUDING ALL) copies columns, defaults, constraints
and indexes, but not the table's owner, grants, row level security and its
policies, replica identity, storage parameters, comment, triggers and their
enabled state, rules, foreign keys, column statistics targets or publication
membership, and it gives the indexes new names. A publication
lists tables by OID, so a renamed copy is not in the live table's publications
until it is added. replace_table() reads all of these from the live table
before dropping it and applies them to the copy after renaming it.
Column-level grants are not carried over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composable, Composed, Identifier, Literal

# The table's own settings that LIKE does not copy.
_TABLE_SETTINGS = """
select c.oid, pg_get_userbyid(c.relowner) as owner,
    c.relrowsecurity as row_security, c.relforcerowsecurity as force_row_security,
    c.relreplident as replica_identity, c.reloptions as options,
    obj_description(c.oid, 'pg_class') as comment,
    (select ci.relname from pg_index i join pg_class ci on ci.oid = i.indexrelid
     where i.indrelid = c.oid and i.indisreplident) as replica_index
from pg_class c
where c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text))
"""

# Table privileges granted to roles other than the owner (grantee 0 is PUBLIC).
_GRANTS = """
select coalesce(r.rolname, 'public') as grantee, a.privilege_type, a.is_grantable
from pg_class c
cross join lateral aclexplode(c.relacl) a
left join pg_roles r on r.oid = a.grantee
where c.oid = %s and a.grantee <> c.relowner
order by 1, 2
"""

# Row level security policies with their expressions as SQL text.
_POLICIES = """
select p.polname as name, p.polpermissive as permissive, p.polcmd as command,
    array(select coalesce(r.rolname, 'public')
          from unnest(p.polroles) as u(oid) left join pg_roles r on r.oid = u.oid
          order by 1) as roles,
    pg_get_expr(p.polqual, p.polrelid) as using_expression,
    pg_get_expr(p.polwithcheck, p.polrelid) as check_expression
from pg_policy p
where p.polrelid = %s
order by p.polname
"""

# Publication membership, with the row filter and column list of PostgreSQL 15+.
_PUBLICATIONS = """
select p.pubname as publication,
    pg_get_expr(pr.prqual, pr.prrelid) as row_filter,
    (select array_agg(a.attname::text order by a.attnum) from pg_attribute a
     where a.attrelid = pr.prrelid and a.attnum = any(pr.prattrs::int2[]))
        as columns
from pg_publication_rel pr
join pg_publication p on p.oid = pr.prpubid
where pr.prrelid = %s
order by p.pubname
"""

_TRIGGERS = """
select t.tgname as name, pg_get_triggerdef(t.oid) as definition,
    t.tgenabled as enabled
from pg_trigger t
where t.tgrelid = %s and not t.tgisinternal
order by t.tgname
"""

# Rules other than a view's, and foreign keys, which LIKE does not copy.
_RULES_AND_FOREIGN_KEYS = """
select pg_get_ruledef(r.oid) as definition
from pg_rewrite r
where r.ev_class = %(oid)s and r.rulename <> '_RETURN'
union all
select format('alter table %%s add constraint %%I %%s', c.conrelid::regclass,
    c.conname, pg_get_constraintdef(c.oid))
from pg_constraint c
where c.conrelid = %(oid)s and c.contype = 'f'
"""

# Columns with a statistics target of their own (-1 is the default).
_STATISTICS_TARGETS = """
select a.attname as name, a.attstattarget as target
from pg_attribute a
where a.attrelid = %s and a.attnum > 0 and not a.attisdropped
  and a.attstattarget >= 0
order by a.attnum
"""

# The columns of a table that are stored, not generated.
_STORED_COLUMNS = """
select a.attname as name
from pg_attribute a
where a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))
  and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
order by a.attnum
"""

# The ALTER TABLE clause for each pg_trigger.tgenabled state but the default.
_TRIGGER_STATES = {"D": "disable", "R": "enable replica", "A": "enable always"}

_INDEXES = """
select ci.relname as name, pg_get_indexdef(i.indexrelid) as definition
from pg_index i join pg_class ci on ci.oid = i.indexrelid
where i.indrelid = %s
order by ci.relname
"""

_COLUMNS = """
select a.attname as name, format_type(a.atttypid, a.atttypmod) as type,
    a.attnotnull as not_null
from pg_attribute a
where a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))
  and a.attnum > 0 and not a.attisdropped
order by a.attnum
"""

_CONSTRAINTS = """
select pg_get_constraintdef(c.oid) as definition
from pg_constraint c
where c.conrelid = to_regclass(format('%%I.%%I', %s::text, %s::text))
  and c.contype <> 'f'
order by 1
"""

_POLICY_COMMANDS = {"r": "select", "a": "insert", "w": "update", "d": "delete"}
_REPLICA_IDENTITIES = {"d": "default", "f": "full", "n": "nothing"}


@dataclass(frozen=True)
class TableSettings:
    """The settings that replace_table() carries from a live table to its copy."""

    settings: dict[str, Any]
    grants: list[DictRow]
    policies: list[DictRow]
    publications: list[DictRow]
    triggers: list[DictRow]
    indexes: dict[str, str]
    rules_and_foreign_keys: list[str]
    statistics_targets: list[DictRow]


def table_exists(conn: Connection[DictRow], schema: str, name: str) -> bool:
    row = conn.execute(
        "select to_regclass(format('%%I.%%I', %s::text, %s::text)) is not null "
        "as found",
        (schema, name),
    ).fetchone()
    return bool(row and row["found"])


def same_columns(
    conn: Connection[DictRow], schema: str, first: str, other: str
) -> bool:
    """Tell whether two tables have the same columns, types and NOT NULLs in
    order, and the same constraints apart from their names."""
    shapes = [
        (
            conn.execute(_COLUMNS, (schema, name)).fetchall(),
            conn.execute(_CONSTRAINTS, (schema, name)).fetchall(),
        )
        for name in (first, other)
    ]
    return shapes[0] == shapes[1]


def copy_other_columns(
    conn: Connection[DictRow],
    schema: str,
    live: str,
    copy: str,
    written: frozenset[str],
) -> None:
    """Copy the values of the stored columns that the projector does not write.

    Columns that users added to the live table keep their values in the copy,
    matched by id.
    """
    rows = conn.execute(_STORED_COLUMNS, (schema, live)).fetchall()
    others = [Identifier(row["name"]) for row in rows if row["name"] not in written]
    if not others:
        return
    names = SQL(", ").join(others)
    values = SQL(", ").join(SQL("l.{}").format(column) for column in others)
    conn.execute(
        SQL("update {} c set ({}) = row({}) from {} l where c.id = l.id").format(
            Identifier(schema, copy), names, values, Identifier(schema, live)
        )
    )


def create_copy(conn: Connection[DictRow], schema: str, live: str, copy: str) -> None:
    """Create an empty copy of a table that no role but its owner can read.

    Row level security is on from the start and every grant is revoked,
    because default privileges (Supabase grants new tables in public to its
    API roles) would otherwise expose the half-built table.
    """
    target = Identifier(schema, copy)
    conn.execute(
        SQL("create table {} (like {} including all)").format(
            target, Identifier(schema, live)
        )
    )
    conn.execute(SQL("alter table {} enable row level security").format(target))
    oid = _settings(conn, schema, copy)["oid"]
    _revoke_grants(conn, target, conn.execute(_GRANTS, (oid,)).fetchall())


def replace_table(conn: Connection[DictRow], schema: str, live: str, copy: str) -> None:
    """Drop the live table and rename the copy to its name, with its settings.

    Run it inside a transaction that holds an ACCESS EXCLUSIVE lock on the
    live table, so that readers see either the old table or the new one.
    """
    settings = _capture(conn, schema, live)
    copy_indexes = _capture(conn, schema, copy).indexes
    conn.execute(SQL("drop table {}").format(Identifier(schema, live)))
    conn.execute(
        SQL("alter table {} rename to {}").format(
            Identifier(schema, copy), Identifier(live)
        )
    )
    _rename_indexes(conn, schema, settings.indexes, copy_indexes)
    _apply(conn, schema, live, settings)


def _settings(conn: Connection[DictRow], schema: str, name: str) -> DictRow:
    row = conn.execute(_TABLE_SETTINGS, (schema, name)).fetchone()
    if row is None:
        raise LookupError(f"table {schema}.{name} does not exist")
    return row


def _capture(conn: Connection[DictRow], schema: str, name: str) -> TableSettings:
    settings = _settings(conn, schema, name)
    oid = settings["oid"]
    return TableSettings(
        settings=dict(settings),
        grants=conn.execute(_GRANTS, (oid,)).fetchall(),
        policies=conn.execute(_POLICIES, (oid,)).fetchall(),
        publications=conn.execute(_PUBLICATIONS, (oid,)).fetchall(),
        triggers=conn.execute(_TRIGGERS, (oid,)).fetchall(),
        indexes={
            row["name"]: row["definition"] for row in conn.execute(_INDEXES, (oid,))
        },
        rules_and_foreign_keys=[
            row["definition"]
            for row in conn.execute(_RULES_AND_FOREIGN_KEYS, {"oid": oid})
        ],
        statistics_targets=conn.execute(_STATISTICS_TARGETS, (oid,)).fetchall(),
    )


def _index_shape(definition: str) -> str:
    """Return an index definition without its name and table, to match copies."""
    head, _, body = definition.partition(" USING ")
    return f"{head.startswith('CREATE UNIQUE')} {body}"


def _rename_indexes(
    conn: Connection[DictRow],
    schema: str,
    live_indexes: dict[str, str],
    copy_indexes: dict[str, str],
) -> None:
    """Give the copy's indexes the live names; create or drop to match the live set.

    The live table was dropped first, so its index names are free. An index
    that a migration added after the copy was made is created from the live
    definition, which names the live table: the renamed copy.
    """
    unmatched = dict(copy_indexes)
    for live_name, definition in live_indexes.items():
        shape = _index_shape(definition)
        match = next(
            (name for name, d in unmatched.items() if _index_shape(d) == shape), None
        )
        if match is None:
            conn.execute(SQL(definition))
            continue
        del unmatched[match]
        if match != live_name:
            conn.execute(
                SQL("alter index {} rename to {}").format(
                    Identifier(schema, match), Identifier(live_name)
                )
            )
    for name in unmatched:
        conn.execute(SQL("drop index {}").format(Identifier(schema, name)))


def _apply(
    conn: Connection[DictRow], schema: str, name: str, captured: TableSettings
) -> None:
    table = Identifier(schema, name)
    settings = captured.settings
    current = _settings(conn, schema, name)
    if current["owner"] != settings["owner"]:
        conn.execute(
            SQL("alter table {} owner to {}").format(
                table, Identifier(settings["owner"])
            )
        )
    _apply_row_security(conn, table, settings)
    if settings["options"]:
        options = SQL(", ").join(SQL(option) for option in settings["options"])
        conn.execute(SQL("alter table {} set ({})").format(table, options))
    conn.execute(
        SQL("comment on table {} is {}").format(table, Literal(settings["comment"]))
        if settings["comment"] is not None
        else SQL("comment on table {} is null").format(table)
    )
    _apply_replica_identity(conn, table, settings)
    _revoke_grants(conn, table, conn.execute(_GRANTS, (current["oid"],)).fetchall())
    for grant in captured.grants:
        conn.execute(_grant_statement(table, grant))
    for policy in captured.policies:
        conn.execute(_policy_statement(table, policy))
    _apply_triggers(conn, table, captured.triggers)
    for definition in captured.rules_and_foreign_keys:
        conn.execute(SQL(definition))
    for column in captured.statistics_targets:
        conn.execute(
            SQL("alter table {} alter column {} set statistics {}").format(
                table, Identifier(column["name"]), Literal(column["target"])
            )
        )
    for membership in captured.publications:
        conn.execute(_publication_statement(table, membership))


def _apply_triggers(
    conn: Connection[DictRow], table: Identifier, triggers: list[DictRow]
) -> None:
    for trigger in triggers:
        conn.execute(SQL(trigger["definition"]))
        state = _TRIGGER_STATES.get(trigger["enabled"])
        if state is not None:
            conn.execute(
                SQL(f"alter table {{}} {state} trigger {{}}").format(
                    table, Identifier(trigger["name"])
                )
            )


def _apply_row_security(
    conn: Connection[DictRow], table: Identifier, settings: dict[str, Any]
) -> None:
    enable = "enable" if settings["row_security"] else "disable"
    force = "force" if settings["force_row_security"] else "no force"
    conn.execute(SQL(f"alter table {{}} {enable} row level security").format(table))
    conn.execute(SQL(f"alter table {{}} {force} row level security").format(table))


def _apply_replica_identity(
    conn: Connection[DictRow], table: Identifier, settings: dict[str, Any]
) -> None:
    identity = settings["replica_identity"]
    if identity == "i" and settings["replica_index"] is not None:
        conn.execute(
            SQL("alter table {} replica identity using index {}").format(
                table, Identifier(settings["replica_index"])
            )
        )
    elif identity in _REPLICA_IDENTITIES:
        clause = _REPLICA_IDENTITIES[identity]
        conn.execute(SQL(f"alter table {{}} replica identity {clause}").format(table))


def _role(name: str) -> Composable:
    return SQL("public") if name == "public" else Identifier(name)


def _revoke_grants(
    conn: Connection[DictRow], table: Identifier, grants: list[DictRow]
) -> None:
    for grantee in sorted({grant["grantee"] for grant in grants}):
        conn.execute(SQL("revoke all on {} from {}").format(table, _role(grantee)))


def _grant_statement(table: Identifier, grant: DictRow) -> Composed:
    statement = SQL("grant {} on {} to {}").format(
        SQL(grant["privilege_type"]), table, _role(grant["grantee"])
    )
    if grant["is_grantable"]:
        statement += SQL(" with grant option")
    return statement


def _policy_statement(table: Identifier, policy: DictRow) -> Composed:
    statement = SQL("create policy {} on {} as {} for {} to {}").format(
        Identifier(policy["name"]),
        table,
        SQL("permissive" if policy["permissive"] else "restrictive"),
        SQL(_POLICY_COMMANDS.get(policy["command"], "all")),
        SQL(", ").join(_role(role) for role in policy["roles"]),
    )
    # The expressions are SQL text that PostgreSQL printed from its catalog.
    if policy["using_expression"] is not None:
        statement += SQL(" using ({})").format(SQL(policy["using_expression"]))
    if policy["check_expression"] is not None:
        statement += SQL(" with check ({})").format(SQL(policy["check_expression"]))
    return statement


def _publication_statement(table: Identifier, membership: DictRow) -> Composed:
    statement = SQL("alter publication {} add table {}").format(
        Identifier(membership["publication"]), table
    )
    if membership["columns"]:
        statement += SQL(" ({})").format(
            SQL(", ").join(Identifier(column) for column in membership["columns"])
        )
    if membership["row_filter"] is not None:
        statement += SQL(" where ({})").format(SQL(membership["row_filter"]))
    return statement
