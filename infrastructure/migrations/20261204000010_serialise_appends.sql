-- Serialise every INSERT into task_events, whoever runs it, and announce it.
-- Re-runnable: functions and triggers are replaced.
--
-- A reader that follows positions must never pass a position whose transaction
-- commits later. Positions come from an identity sequence, so two concurrent
-- inserts could commit out of order. The statement trigger below takes a
-- transaction-level advisory lock before any row (and so any position) is
-- produced, and PostgreSQL releases that lock only after the commit is visible:
-- inserts therefore commit in position order. Taking the lock in a trigger also
-- covers writers that bypass the recorder (SQL from service_role, for example).
-- https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS

create or replace function task_events_serialise() returns trigger
language plpgsql as $$
begin
    perform pg_advisory_xact_lock(
        ('x' || left(md5('taskledger.append:' || tg_table_schema), 16))::bit(64)::bigint
    );
    return null;
end;
$$;

create or replace trigger task_events_serialise
    before insert on task_events
    for each statement execute function task_events_serialise();

-- Wake projectors and other listeners; the payload is empty because readers
-- always query for what is new.
create or replace function task_events_announce() returns trigger
language plpgsql as $$
begin
    -- Channel names longer than 63 bytes are rejected; LISTEN truncates them.
    perform pg_notify(left(tg_table_schema || '_' || tg_table_name, 63), '');
    return null;
end;
$$;

create or replace trigger task_events_announce
    after insert on task_events
    for each statement execute function task_events_announce();
