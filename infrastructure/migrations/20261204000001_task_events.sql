-- The ledger: every task transition as an immutable event, in global order.
-- Re-runnable: every statement checks for what already exists.
-- Unqualified names resolve through search_path, so `taskledger migrate --schema`
-- can place the tables in any schema; the Supabase CLI applies them to public.

create table if not exists task_events (
    position bigint generated always as identity,
    task_id uuid not null,
    -- Tasks start at version 1; eventsourcing's recorder contract also writes 0.
    version bigint not null check (version >= 0),
    event_type text not null,
    topic text not null,
    -- The encoded event when it is JSON; otherwise state holds its bytes.
    payload jsonb,
    state bytea,
    -- actor, correlation_id, causation_id, idempotency_key, command
    metadata jsonb not null default '{}'::jsonb,
    user_id text,
    occurred_at timestamptz not null,
    recorded_at timestamptz not null default clock_timestamp(),
    constraint task_events_pkey primary key (task_id, version),
    constraint task_events_position_key unique (position),
    constraint task_events_one_body check ((payload is null) <> (state is null))
);

comment on table task_events is
    'Append-only ledger of task events; position is the global order.';

-- Idempotency keys are global: one event (the last of its command) carries each.
create unique index if not exists task_events_idempotency_key
    on task_events ((metadata ->> 'idempotency_key'))
    where metadata ? 'idempotency_key';

create index if not exists task_events_user_id on task_events (user_id)
    where user_id is not null;

-- Later events inherit the user of the task's creation event, so that row level
-- security can filter events by owner without a join.
create or replace function task_events_fill_user_id() returns trigger
language plpgsql as $$
begin
    if new.user_id is null and new.version > 1 then
        select e.user_id into new.user_id
        from task_events e
        where e.task_id = new.task_id and e.version = 1;
    end if;
    return new;
end;
$$;

create or replace trigger task_events_fill_user_id
    before insert on task_events
    for each row execute function task_events_fill_user_id();

-- Events are immutable for every role, the owner and superusers included.
create or replace function task_events_reject_change() returns trigger
language plpgsql as $$
begin
    raise exception 'task_events is append-only: % is not allowed', tg_op
        using errcode = 'insufficient_privilege',
              hint = 'Record a new event instead of changing an old one.';
end;
$$;

create or replace trigger task_events_no_update_or_delete
    before update or delete on task_events
    for each row execute function task_events_reject_change();

create or replace trigger task_events_no_truncate
    before truncate on task_events
    for each statement execute function task_events_reject_change();

-- One row per projection: the position of the last event it applied, written in
-- the same transaction as the rows that event changed.
create table if not exists projection_checkpoints (
    projection text primary key,
    position bigint not null check (position >= 0),
    updated_at timestamptz not null default clock_timestamp()
);

alter table task_events enable row level security;
alter table projection_checkpoints enable row level security;

-- Supabase roles exist only on Supabase (or after the test bootstrap), so the
-- grants and policies are applied only where the roles are present.
do $$
declare
    tbl text := format('%I.task_events', current_schema());
    chk text := format('%I.projection_checkpoints', current_schema());
begin
    if exists (select from pg_roles where rolname = 'service_role') then
        execute format('grant usage on schema %I to service_role, authenticated',
                       current_schema());
        execute format('revoke all on %s from anon, authenticated, service_role', tbl);
        execute format('grant select, insert on %s to service_role', tbl);
        execute format('grant select on %s to authenticated', tbl);
        execute format('revoke all on %s from anon, authenticated', chk);
        execute format('grant select, insert, update on %s to service_role', chk);

        execute format('drop policy if exists task_events_service on %s', tbl);
        execute format(
            'create policy task_events_service on %s for all to service_role '
            'using (true) with check (true)', tbl);
        execute format('drop policy if exists projection_checkpoints_service on %s', chk);
        execute format(
            'create policy projection_checkpoints_service on %s for all '
            'to service_role using (true) with check (true)', chk);
    end if;
    if to_regprocedure('auth.uid()') is not null
       and exists (select from pg_roles where rolname = 'authenticated') then
        execute format('drop policy if exists task_events_owner_read on %s', tbl);
        execute format(
            'create policy task_events_owner_read on %s for select to authenticated '
            'using (user_id = (select auth.uid())::text)', tbl);
    end if;
end;
$$;
